//! Gives freed heap back to the system after many clients leave. glibc
//! keeps freed memory in its arenas, and the few chunks still live among
//! it stop the arenas from shrinking by themselves: without this, a flood
//! of clients would leave its peak RSS behind for good.

/// Clients that must have left since the peak before a trim is worth it.
const MIN_DROP: usize = 256;

/// Watches the client count (once per maintenance tick) and trims when it
/// has fallen to half of its peak since the last trim.
#[derive(Default)]
pub struct Trim {
    peak: usize,
}

impl Trim {
    /// Returns true when it trimmed.
    pub fn tick(&mut self, clients: usize) -> bool {
        self.peak = self.peak.max(clients);
        if self.peak - clients < MIN_DROP || clients * 2 > self.peak {
            return false;
        }
        self.peak = clients;
        release();
        true
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release() {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() {}

#[cfg(test)]
mod tests {
    use super::Trim;

    #[test]
    fn trims_once_the_count_halves_from_its_peak() {
        let mut t = Trim::default();
        assert!(!t.tick(10_000));
        assert!(!t.tick(6_000), "not yet half");
        assert!(t.tick(4_000));
        assert!(!t.tick(3_000), "the peak starts again from the trim");
        assert!(t.tick(1_500));
        assert!(!t.tick(1_300), "fewer than MIN_DROP left since");
        assert!(t.tick(0));
        assert!(!t.tick(0));
    }
}
