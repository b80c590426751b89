//! Waiting on conditions, never on clocks: tests poll until something is
//! true (or fail with what they waited for), so a loaded CI machine makes
//! them slower, not flaky.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it returns true; panics naming `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not true after {limit:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` until it returns `Some`; panics naming `what` after `limit`.
pub async fn eventually_some<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not true after {limit:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The blocking form, for tests that drive psql or pgbench from threads.
pub fn eventually_blocking(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not true after {limit:?}"
        );
        std::thread::sleep(POLL);
    }
}
