//! An idle client parked without a task. Once a client has been idle for a
//! while (the registry's sweep asks, see `Clients::park_idle`), its
//! session leaves its task: the task and the session's loop future (~240
//! bytes) are freed, and the session waits in a [`Parked`] entry (32
//! bytes) whose waker is registered where the task's was: the socket's
//! readiness, the session's [`crate::wake::Wake`] (KILL, shutdown) and its
//! timer if a deadline is due (client_idle_timeout, a write's token, the
//! drain grace). The first of them to fire spawns a task that resumes the
//! session in its idle wait, where it handles what woke it as if it had
//! never left. A busy client is never asked, so it keeps its task and a
//! transaction pays nothing for this.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use tokio::runtime::Handle;

use super::Session;

/// Which deadline an idle client's timer is set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    Nothing,
    /// client_idle_timeout: the client is closed.
    IdleTimeout,
    /// Draining: leave_if_due closes the client.
    DrainGrace,
    /// A write's token is reported.
    Token,
}

/// What ended an idle client's wait.
#[derive(Debug, Clone, Copy)]
pub(super) enum Woke {
    /// The client's socket is readable (false: it failed).
    Readable(bool),
    /// KILL, shutdown or PAUSE.
    Woken,
    Timer,
}

/// How a session goes back to its idle wait after parking.
#[derive(Debug, Clone, Copy)]
pub(super) struct Resume {
    /// The deadline its timer was set to (kept, not restarted).
    pub due: Due,
    /// What woke it, when already taken (a KILL's or shutdown's call is
    /// taken once); None: the wait polls again.
    pub woke: Option<Woke>,
}

/// One parked session. Only its wakers hold it; the first wake-up takes
/// the session out, and later ones (stale wakers not yet replaced by the
/// resumed task's) find it empty.
pub(crate) struct Parked {
    slot: Mutex<Slot>,
}

struct Slot {
    session: Option<Box<Session>>,
    /// The deadline its timer is set to (the resumed wait keeps it).
    due: Due,
    /// A wake-up came (possibly before the session was put here).
    woken: bool,
}

/// Where a session resumes when woken by a thread outside the runtime
/// (parking always happens inside it).
static RUNTIME: OnceLock<Handle> = OnceLock::new();

/// Parks `session` (idle, its deadline `due` on its timer). Err: woken
/// already (by what, when the registration saw it); it stays with the
/// caller, which goes on waiting as the resumed session would.
pub(super) fn park(mut session: Box<Session>, due: Due) -> Result<(), (Box<Session>, Resume)> {
    RUNTIME.get_or_init(Handle::current);
    let entry = Arc::new(Parked {
        slot: Mutex::new(Slot {
            session: None,
            due,
            woken: false,
        }),
    });
    let waker = Waker::from(entry.clone());
    // Registers the entry's waker with every source (a source that is
    // ready leaves the session here, and its readiness is seen again by
    // the wait the caller goes back to).
    let timed = due != Due::Nothing;
    if let Poll::Ready(woke) = session.poll_woke(&mut Context::from_waker(&waker), timed) {
        let woke = Some(woke);
        return Err((session, Resume { due, woke }));
    }
    let mut slot = entry.slot.lock();
    if slot.woken {
        // Woken between the registration and now: the wait polls again.
        return Err((session, Resume { due, woke: None }));
    }
    session.info.info.set_parked(true);
    slot.session = Some(session);
    Ok(())
}

impl std::task::Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let (session, due) = {
            let mut slot = self.slot.lock();
            slot.woken = true;
            (slot.session.take(), slot.due)
        };
        let Some(session) = session else {
            return;
        };
        session.info.info.set_parked(false);
        let resume = session.serve(Some(Resume { due, woke: None }));
        match Handle::try_current()
            .ok()
            .or_else(|| RUNTIME.get().cloned())
        {
            Some(rt) => drop(rt.spawn(resume)),
            // No runtime left (the process is ending): the client closes.
            None => drop(resume),
        }
    }
}

impl Session {
    /// Ready when the client's socket is readable (or failed), the session
    /// is woken or (`timed`) its timer fires.
    pub(super) fn poll_woke(&mut self, cx: &mut Context<'_>, timed: bool) -> Poll<Woke> {
        use std::future::Future;
        if let Poll::Ready(r) = self.client.stream.poll_read_ready(cx) {
            return Poll::Ready(Woke::Readable(r.is_ok()));
        }
        if self.info.info.wake.poll_woken(cx).is_ready() {
            return Poll::Ready(Woke::Woken);
        }
        if let Some(timer) = self.timer.as_mut().filter(|_| timed) {
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Woke::Timer);
            }
        }
        Poll::Pending
    }
}
