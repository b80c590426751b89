//! A session's wake-up call (KILL / KILL_CLIENT, shutdown phases, PAUSE
//! checks): a flag and the one task that waits for it. The session polls
//! it beside its sockets on every turn of the hot path, so a poll is an
//! atomic load or two: the task's waker is registered once and stays until
//! a call takes it, with no waiter list to lock or to unlink from when the
//! wait ends (as tokio's `Notify` has). One task waits at a time (the
//! session's own).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

#[derive(Debug, Default)]
pub struct Wake {
    /// A call not yet seen (kept until a wait takes it, like a permit).
    set: AtomicBool,
    waker: AtomicWaker,
    /// The data pointer of the waker `waker` holds (null: none). Only the
    /// waiting task touches it; a call takes the waker but also sets the
    /// flag, and the task clears this when it sees the flag.
    armed: AtomicPtr<()>,
}

impl Wake {
    /// Wakes the waiting session, or the next wait if none is waiting.
    pub fn wake(&self) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready (once per call) when woken; else the task is woken by the
    /// next call.
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.take() {
            return Poll::Ready(());
        }
        let me = cx.waker().data() as *mut ();
        if self.armed.load(Ordering::Relaxed) == me {
            return Poll::Pending;
        }
        self.waker.register(cx.waker());
        self.armed.store(me, Ordering::Relaxed);
        // A call between the test and the registration is seen here.
        match self.take() {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    /// Until woken.
    pub async fn woken(&self) {
        poll_fn(|cx| self.poll_woken(cx)).await
    }

    fn take(&self) -> bool {
        if self.set.load(Ordering::Relaxed) && self.set.swap(false, Ordering::Acquire) {
            // The call took the registered waker.
            self.armed.store(std::ptr::null_mut(), Ordering::Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_call_before_the_wait_is_kept_for_it_and_taken_once() {
        let w = Wake::default();
        w.wake();
        w.wake();
        tokio::time::timeout(Duration::from_secs(5), w.woken())
            .await
            .expect("kept call");
        let again = tokio::time::timeout(Duration::from_millis(50), w.woken()).await;
        assert!(again.is_err(), "two calls before a wait are one wake-up");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_task_is_woken_from_another_thread_every_time() {
        let w = Arc::new(Wake::default());
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        // One task waits again and again (new waits, the same waker).
        let waiter = tokio::spawn({
            let w = w.clone();
            async move {
                for _ in 0..500 {
                    w.woken().await;
                    tx.send(()).await.expect("receiver");
                }
            }
        });
        for _ in 0..500 {
            tokio::task::yield_now().await;
            w.wake();
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("woken")
                .expect("sender");
        }
        waiter.await.expect("task");
    }
}
