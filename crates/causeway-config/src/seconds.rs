//! Durations in settings: seconds as `f64`, PgBouncer's convention that 0
//! (or less) means off.

use std::time::Duration;

/// A setting in seconds: None when it is off (0 or less).
pub fn secs(v: f64) -> Option<Duration> {
    (v > 0.0).then(|| Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negative_are_off() {
        assert_eq!(secs(0.0), None);
        assert_eq!(secs(-1.0), None);
        assert_eq!(secs(1.5), Some(Duration::from_millis(1500)));
    }
}
