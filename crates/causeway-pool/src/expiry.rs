//! query_wait_timeout without a timer per waiter. Each pool has one
//! watcher task that sleeps until the earliest deadline among its waiters
//! and tells the waiters whose deadline has passed. A wait is usually over
//! long before its deadline, so the watcher wakes about once per timeout
//! period under steady load (to find the waiter it slept for served and
//! sleep again until the front one's deadline), and a waiter costs no
//! timer registration. A new waiter wakes the watcher only when its
//! deadline is earlier than the one the watcher sleeps for (or none).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{self, Sleep};

/// Runs `turn` on each wake-up with the watcher's timer (to set and
/// poll) until it returns false (the pool closed or is gone).
pub(crate) async fn watch(mut turn: impl FnMut(&mut Context<'_>, Pin<&mut Sleep>) -> bool) {
    // Reset to a deadline before it is first polled.
    let sleep = time::sleep_until(time::Instant::now());
    tokio::pin!(sleep);
    poll_fn(|cx| match turn(cx, sleep.as_mut()) {
        true => Poll::Pending,
        false => Poll::Ready(()),
    })
    .await
}
