//! The loop that polls both sockets: read more, check newly read bytes,
//! write what is due each way, see whether the attachment is over.
//! Each step says whether it made progress; with none, the flow waits
//! for a socket or the deadline.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use causeway_config::PoolMode;
use causeway_pool::{ParamSet, ServerConn};
use causeway_protocol::{backend, sqlstate};
use tokio::io::AsyncWrite;
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

use super::{End, Flow, HIGH_WATER};
use crate::client::Client;
use crate::session::SHUTDOWN_MESSAGE;

/// Keep at least this much room to read into.
const READ_ROOM: usize = 8 * 1024;

/// Bits of `Flow::unflushed`: a side written since its last flush.
pub(super) const UNFLUSHED_CLIENT: u8 = 1;
pub(super) const UNFLUSHED_SERVER: u8 = 2;

/// A step's outcome: whether it progressed, or how the flow ends.
type Stepped = Result<bool, End>;

/// A read's outcome.
enum Read {
    Got,
    /// Nothing there: the socket's readiness wakes the task.
    Pending,
    /// Not read now (backpressure, or the work is over).
    Skipped,
}

impl Flow {
    /// Runs until something needs the session's attention.
    pub async fn run(
        &mut self,
        client: &mut Client,
        conn: &mut ServerConn,
        params: &mut ParamSet,
        timer: &mut Pin<Box<Sleep>>,
    ) -> End {
        poll_fn(|cx| self.poll(cx, client, conn, params, timer.as_mut())).await
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut Client,
        conn: &mut ServerConn,
        params: &mut ParamSet,
        timer: Pin<&mut Sleep>,
    ) -> Poll<End> {
        match self.turns(cx, client, conn, params) {
            Ok(()) => self.wait(cx, timer),
            Err(end) => Poll::Ready(end),
        }
    }

    /// Turns until no step progresses (Ok) or the flow ends.
    fn turns(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut Client,
        conn: &mut ServerConn,
        params: &mut ParamSet,
    ) -> Result<(), End> {
        // A socket whose read was pending is not read again in this poll:
        // its readiness wakes the task (a read costs a waker registration
        // under the reactor's lock, and most turns would find nothing).
        let (mut server_parked, mut client_parked) = (false, false);
        // Read, check, write: what a turn reads is checked and written in
        // the same turn.
        loop {
            let mut progress = false;
            if !server_parked {
                match self.read_server(cx, conn)? {
                    Read::Got => progress = true,
                    Read::Pending => server_parked = true,
                    Read::Skipped => {}
                }
            }
            if !client_parked {
                match self.read_client(cx, client)? {
                    Read::Got => progress = true,
                    Read::Pending => client_parked = true,
                    Read::Skipped => {}
                }
            }
            progress |= self.check(client, conn, params)?;
            progress |= self.write_to_client(cx, client, conn)?;
            progress |= self.write_to_server(cx, client, conn)?;
            let client_flushed = self.flush(cx, client, conn)?;
            self.finished(client_flushed)?;
            if !progress {
                return Ok(());
            }
        }
    }

    /// Nothing to do until a socket is ready, or the deadline passes.
    fn wait(&mut self, cx: &mut Context<'_>, mut timer: Pin<&mut Sleep>) -> Poll<End> {
        if let Some(d) = self.clock.deadline() {
            if timer.as_mut().deadline() != d {
                timer.as_mut().reset(d);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(self.timeout_end());
            }
        }
        Poll::Pending
    }

    /// Checked server bytes go to the client.
    fn write_to_client(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut Client,
        conn: &mut ServerConn,
    ) -> Stepped {
        if self.s.ready == 0 {
            return Ok(false);
        }
        match Pin::new(&mut client.stream).poll_write(cx, &conn.buf()[..self.s.ready]) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Err(End::ClientGone),
            Poll::Ready(Ok(n)) => {
                conn.buf_mut().advance(n);
                self.s.ready -= n;
                self.meter.bytes_out += n as u64;
                self.unflushed |= UNFLUSHED_CLIENT;
                Ok(true)
            }
            Poll::Pending => Ok(false),
        }
    }

    /// Checked client bytes go to the server, then the rewritten requests
    /// (and the client bytes queued behind them).
    fn write_to_server(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut Client,
        conn: &mut ServerConn,
    ) -> Stepped {
        let mut progress = false;
        if self.c.due() > 0 {
            match conn.poll_send(cx, &client.buf[self.c.kept..self.c.ready]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(self.server_gone()),
                Poll::Ready(Ok(n)) => {
                    self.c.wrote(&mut client.buf, n, self.hold.active());
                    self.meter.bytes_in += n as u64;
                    self.unflushed |= UNFLUSHED_SERVER;
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        if !self.prep.out.is_empty() && self.c.due() == 0 {
            match conn.poll_send(cx, &self.prep.out) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(self.server_gone()),
                Poll::Ready(Ok(n)) => {
                    self.prep.out.advance(n);
                    self.meter.bytes_in += n as u64;
                    self.unflushed |= UNFLUSHED_SERVER;
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    /// TLS may hold written bytes until flushed (a no-op on plain
    /// sockets); a pending flush is woken by socket writability. A side
    /// written nothing since its last flush is not flushed again. True:
    /// the client's side is flushed.
    fn flush(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut Client,
        conn: &mut ServerConn,
    ) -> Stepped {
        if self.unflushed & UNFLUSHED_CLIENT != 0 {
            match Pin::new(&mut client.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed &= !UNFLUSHED_CLIENT,
                Poll::Ready(Err(_)) => return Err(End::ClientGone),
                Poll::Pending => {}
            }
        }
        if self.unflushed & UNFLUSHED_SERVER != 0 {
            match conn.poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed &= !UNFLUSHED_SERVER,
                Poll::Ready(Err(_)) => return Err(self.server_gone()),
                Poll::Pending => {}
            }
        }
        Ok(self.unflushed & UNFLUSHED_CLIENT == 0)
    }

    /// The attachment is over if the work is done and written out.
    fn finished(&self, client_flushed: bool) -> Result<(), End> {
        if self.release_seen
            && self.s.ready == 0
            && client_flushed
            && self.server_idle()
            && (self.mode != PoolMode::Session || self.stop_when_idle)
        {
            return Err(End::Release);
        }
        if self.c.terminate && self.c.ready == 0 {
            return Err(End::ClientGone);
        }
        if self.restore_pending && self.s.ready == 0 {
            return Err(End::Restore);
        }
        Ok(())
    }

    /// Checks the bytes read on both sides.
    fn check(
        &mut self,
        client: &mut Client,
        conn: &mut ServerConn,
        params: &mut ParamSet,
    ) -> Stepped {
        let mut progress = self.scan_server(conn, params)?;
        if !self.hold.active() {
            // Committed: the held request bytes are done with.
            progress |= self.c.drop_kept(&mut client.buf);
        }
        progress |= self
            .scan_client(client, conn)
            .map_err(End::ClientProtocol)?;
        if self.release_seen && self.stop_when_idle && !self.goodbye && client.buf.is_empty() {
            self.say_goodbye(conn);
            progress = true;
        }
        Ok(progress)
    }

    fn read_server(&mut self, cx: &mut Context<'_>, conn: &mut ServerConn) -> Result<Read, End> {
        if self.release_seen || self.s.ready >= HIGH_WATER {
            return Ok(Read::Skipped);
        }
        match conn.poll_fill(cx, READ_ROOM) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Err(self.server_gone()),
            Poll::Ready(Ok(_)) => Ok(Read::Got),
            Poll::Pending => Ok(Read::Pending),
        }
    }

    fn read_client(&mut self, cx: &mut Context<'_>, client: &mut Client) -> Result<Read, End> {
        if self.c.terminate || client.buf.len() >= HIGH_WATER.max(self.c.need) {
            return Ok(Read::Skipped);
        }
        if client.buf.capacity() - client.buf.len() < READ_ROOM {
            client.buf.reserve(2 * READ_ROOM);
        }
        match poll_read_buf(Pin::new(&mut client.stream), cx, &mut client.buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Err(End::ClientGone),
            Poll::Ready(Ok(_)) => Ok(Read::Got),
            Poll::Pending => Ok(Read::Pending),
        }
    }

    /// Draining: the transaction is over and the client has sent nothing
    /// more, so it is closed here. The FATAL goes into the same write as
    /// the ReadyForQuery: a client reads both together and knows the
    /// connection is gone before it sends its next query, instead of
    /// sending it into a socket about to close. (Bytes the client sends
    /// after this are never run.)
    fn say_goodbye(&mut self, conn: &mut ServerConn) {
        let mut msg = BytesMut::with_capacity(64);
        backend::write_error(&mut msg, true, sqlstate::ADMIN_SHUTDOWN, SHUTDOWN_MESSAGE);
        let buf = conn.buf_mut();
        let tail = buf.split_off(self.s.ready);
        buf.extend_from_slice(&msg);
        buf.unsplit(tail);
        self.s.ready += msg.len();
        self.goodbye = true;
    }

    /// The server socket failed: a held read is retried, else the client
    /// is told (if at a message boundary).
    fn server_gone(&self) -> End {
        match self.hold.lost() {
            Some(cause) => End::Retry {
                cause,
                reusable: false,
            },
            None => End::ServerGone {
                clean: self.s.scan.at_boundary(),
            },
        }
    }

    fn timeout_end(&self) -> End {
        if !self.owed.is_empty() {
            End::Timeout("57014", "query_timeout")
        } else if self.status != b'I' {
            End::Timeout("25P03", "idle_transaction_timeout")
        } else {
            End::Timeout("57P05", "client_idle_timeout")
        }
    }
}
