//! The hand-over of a grant to one waiting client: a one-shot channel
//! made for the pool's waiters. Nearly every lease waits under load, so
//! this is on the hot path: a send or a poll is one uncontended lock, and
//! the shared block is reused by the waiter's thread once both ends are
//! done with it (no allocation per wait).
//!
//! Same contract as tokio's oneshot: a send to a closed receiver hands
//! the grant back; closing, then `try_recv`, takes whatever was sent
//! before the close (the pool does both under its own lock).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::server::ServerConn;
use crate::slot::SlotGuard;

/// What a waiting client is handed.
pub(crate) enum Grant {
    /// A ready connection.
    Conn(ServerConn),
    /// Permission (a slot already counted) to open a new connection.
    Slot(SlotGuard),
    /// query_wait_timeout passed (from the expiry watcher).
    Expired,
}

/// Blocks kept per thread for reuse.
const KEEP: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Arc<Shared>>> = const { RefCell::new(Vec::new()) };
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    /// The receiver closed (read without the lock by the pool's queue).
    closed: AtomicBool,
}

#[derive(Default)]
struct Slot {
    value: Option<Grant>,
    waker: Option<Waker>,
    /// The sender was dropped without sending.
    sender_gone: bool,
}

pub(crate) fn channel() -> (Sender, Receiver) {
    let shared = FREE
        .try_with(|f| f.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default();
    (
        Sender {
            shared: shared.clone(),
            sent: false,
        },
        Receiver { shared },
    )
}

pub(crate) struct Sender {
    shared: Arc<Shared>,
    sent: bool,
}

impl Sender {
    /// Hands `g` over; Err(g) if the receiver is closed.
    pub(crate) fn send(mut self, g: Grant) -> Result<(), Grant> {
        let waker = {
            let mut slot = self.shared.slot.lock();
            if self.shared.closed.load(Ordering::Relaxed) {
                return Err(g);
            }
            slot.value = Some(g);
            slot.waker.take()
        };
        self.sent = true;
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.sent {
            return;
        }
        let waker = {
            let mut slot = self.shared.slot.lock();
            slot.sender_gone = true;
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Err(()) when the sender was dropped without sending.
pub(crate) struct Receiver {
    shared: Arc<Shared>,
}

impl Receiver {
    /// No send succeeds after this.
    pub(crate) fn close(&mut self) {
        let _slot = self.shared.slot.lock();
        self.shared.closed.store(true, Ordering::Relaxed);
    }

    /// What was sent, if anything.
    pub(crate) fn try_recv(&mut self) -> Result<Grant, ()> {
        self.shared.slot.lock().value.take().ok_or(())
    }
}

impl Future for Receiver {
    type Output = Result<Grant, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.shared.slot.lock();
        if let Some(g) = slot.value.take() {
            return Poll::Ready(Ok(g));
        }
        if slot.sender_gone {
            return Poll::Ready(Err(()));
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Both ends done (the sender sent or is gone): the block is reused.
        let Some(shared) = Arc::get_mut(&mut self.shared) else {
            return;
        };
        let slot = shared.slot.get_mut();
        // A grant never taken is dropped here, as with the block.
        *slot = Slot::default();
        *shared.closed.get_mut() = false;
        let shared = self.shared.clone();
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < KEEP {
                f.push(shared);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Weak;

    use super::*;
    use crate::slot::{SlotGuard, SlotOwner};

    struct NoOwner;
    impl SlotOwner for NoOwner {
        fn slot_freed(self: Arc<Self>, _: u64) {}
    }

    /// A grant that belongs to no pool.
    fn grant() -> Grant {
        Grant::Slot(SlotGuard::new(Weak::<NoOwner>::new()))
    }

    fn ptr(r: &Receiver) -> *const Shared {
        Arc::as_ptr(&r.shared)
    }

    #[tokio::test]
    async fn a_grant_reaches_a_waiting_receiver_and_the_block_is_reused() {
        let (tx, rx) = channel();
        let first = ptr(&rx);
        let waiter = tokio::spawn(async move { rx.await.is_ok() });
        tokio::task::yield_now().await;
        assert!(tx.send(grant()).is_ok());
        assert!(waiter.await.unwrap(), "woken with the grant");
        // Both ends are gone: the next wait on this thread takes the block.
        let (tx, rx) = channel();
        assert_eq!(ptr(&rx), first);
        assert!(!tx.is_closed());
    }

    #[tokio::test]
    async fn a_closed_receiver_refuses_a_send_and_keeps_what_came_before() {
        let (tx, mut rx) = channel();
        rx.close();
        assert!(tx.is_closed());
        assert!(tx.send(grant()).is_err(), "handed back");
        assert!(rx.try_recv().is_err());

        let (tx, mut rx) = channel();
        assert!(tx.send(grant()).is_ok());
        rx.close();
        assert!(rx.try_recv().is_ok(), "sent before the close");
    }

    #[tokio::test]
    async fn a_sender_dropped_without_sending_ends_the_wait() {
        let (tx, rx) = channel();
        let waiter = tokio::spawn(async move { rx.await.is_err() });
        tokio::task::yield_now().await;
        drop(tx);
        assert!(waiter.await.unwrap());
    }
}
