//! Gives freed heap back to the system after many clients leave. jemalloc
//! (main.rs) returns unused pages only as it keeps allocating (its decay
//! runs on allocator activity): a pooler left idle after a flood of
//! clients would otherwise keep its peak RSS. A purge of every arena
//! returns them at once.

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

#[cfg(target_os = "linux")]
fn release() {
    // `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena's unused dirty pages
    // go back to the system.
    const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: a documented mallctl that reads and writes nothing; jemalloc
    // purges each arena under its own lock.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

#[cfg(not(target_os = "linux"))]
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
