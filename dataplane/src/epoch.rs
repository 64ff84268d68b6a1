//! Instants as small numbers: offsets from one process-wide epoch, for what is kept per
//! connection (an `Instant` is 16 bytes; these are 8 or 4).

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Sets the epoch, if not yet set: called first thing by `main`, so that every instant the
/// process deals in is after it (an earlier one counts as the epoch itself).
pub fn start() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since the epoch (585,000 years of range).
pub fn micros(t: Instant) -> u64 {
    t.saturating_duration_since(start()).as_micros() as u64
}

/// Milliseconds since the epoch, never 0 (free for "none"). Wraps after 49 days:
/// differences taken with `wrapping_sub` stay right across the wrap.
pub fn millis32(t: Instant) -> u32 {
    (t.saturating_duration_since(start()).as_millis() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn later_instants_are_larger_numbers() {
        // Past the first millisecond, which `millis32` reports as 1.
        let a = start() + Duration::from_millis(10);
        let b = a + Duration::from_millis(3);
        assert_eq!(micros(b) - micros(a), 3000);
        assert_eq!(millis32(b).wrapping_sub(millis32(a)), 3);
        assert!(millis32(a) >= 1);
    }
}
