//! COPY FROM STDIN as the pump sees it: between the server's
//! CopyInResponse and the client's CopyDone/CopyFail the server ignores
//! Syncs (they are owed nothing) and an error must reach the client at
//! once (it is still sending data).

use super::owed::Owed;

#[derive(Default)]
pub struct CopyIn {
    active: bool,
}

impl CopyIn {
    /// The server is in COPY FROM STDIN and the client has not ended it.
    pub fn active(&self) -> bool {
        self.active
    }

    /// CopyInResponse. True: COPY mode begins. False: the client had
    /// already ended this COPY (CopyDone/CopyFail sent early), and what it
    /// sent after that is read by the server as usual.
    pub fn server_started(&mut self, owed: &mut Owed) -> bool {
        if owed.take_front_copy_end() {
            return false;
        }
        self.active = true;
        owed.copy_started();
        true
    }

    /// CopyDone or CopyFail from the client. Before the CopyInResponse it
    /// ends the COPY of the request it follows (if no COPY starts, the
    /// server ignores it).
    pub fn client_ended(&mut self, owed: &mut Owed) {
        if self.active {
            self.active = false;
        } else {
            owed.mark_copy_end();
        }
    }
}
