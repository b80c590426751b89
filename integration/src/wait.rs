//! Waiting on conditions, never on clocks: tests poll until something is
//! true (or fail naming what they waited for and what they last saw), so a
//! loaded CI machine makes them slower, not flaky.
//!
//! This is the one place in integration/ that sleeps to wait; anything else
//! that sleeps says why on the line above (`// sleep-ok: ...`, checked by
//! tools/check-sleeps.sh).

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled: short, so a test goes on soon after
/// the condition holds.
pub const POLL: Duration = Duration::from_millis(20);

/// What a polled check returns: done (with a value), or not yet (with what
/// it observed, for the failure message).
pub trait Check {
    type Out;
    fn done(self) -> Result<Self::Out, String>;
}

impl Check for bool {
    type Out = ();
    fn done(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".into())
        }
    }
}

impl<T> Check for Option<T> {
    type Out = T;
    fn done(self) -> Result<T, String> {
        self.ok_or_else(|| "None".into())
    }
}

/// `Err(e)` means "not yet, last saw `e`".
impl<T, E: Debug> Check for Result<T, E> {
    type Out = T;
    fn done(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

fn timed_out(what: &str, limit: Duration, last: &str) -> String {
    format!("{what}: not true after {limit:?} (last observed: {last})")
}

/// Polls `check` until it is done; after `limit`, an error naming `what`
/// and the last observed value.
pub async fn poll<C, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<C::Out, String>
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await.done() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(timed_out(what, limit, &last)),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Polls `check` (returning `bool`, `Option<T>` or `Result<T, E>`) until it
/// is done and returns its value; panics naming `what` and the last
/// observed value after `limit`.
pub async fn eventually<C, F, Fut>(limit: Duration, what: &str, check: F) -> C::Out
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    poll(limit, what, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The blocking form of [`poll`], for the harness and for code that runs
/// on threads (psql, pgbench, child processes).
pub fn poll_blocking<C: Check>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> C,
) -> Result<C::Out, String> {
    let deadline = Instant::now() + limit;
    loop {
        match check().done() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(timed_out(what, limit, &last)),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// The blocking form of [`eventually`].
pub fn eventually_blocking<C: Check>(
    limit: Duration,
    what: &str,
    check: impl FnMut() -> C,
) -> C::Out {
    poll_blocking(limit, what, check).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_done() {
        let mut n = 0;
        let got = eventually_blocking(Duration::from_secs(5), "n reaches 3", || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(got, 3);
    }

    #[test]
    fn times_out_naming_what_and_the_last_value() {
        let mut n = 0;
        let e = poll_blocking(Duration::from_millis(60), "n reaches 1000", || {
            n += 1;
            if n >= 1000 {
                Ok(())
            } else {
                Err(n)
            }
        })
        .unwrap_err();
        assert!(e.starts_with("n reaches 1000: not true after 60ms"), "{e}");
        assert!(e.contains(&format!("last observed: {n}")), "{e}");
    }

    #[tokio::test]
    async fn async_form_polls_bool() {
        let t = Instant::now();
        eventually(Duration::from_secs(5), "time passes", || async {
            t.elapsed() >= Duration::from_millis(50)
        })
        .await;
        let e = poll(Duration::from_millis(30), "never", || async { false })
            .await
            .unwrap_err();
        assert!(e.contains("last observed: false"), "{e}");
    }
}
