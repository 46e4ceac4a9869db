//! [`Throttle`]: a warning that can recur on every request (Redis down, connections
//! refused at the cap) is written once per interval, carrying how many were not written.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one log line per `interval` for one recurring event.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    /// When the last line was written, and the occurrences since that were not.
    last: Mutex<Option<(Instant, u64)>>,
}

impl Throttle {
    #[must_use]
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
        }
    }

    /// Records one occurrence. `Some(n)` when this one is to be logged, `n` being the
    /// occurrences since the last line that were not; `None` inside the interval.
    pub fn admit(&self) -> Option<u64> {
        let mut last = self.last.lock().ok()?;
        match &mut *last {
            Some((at, count)) if at.elapsed() < self.interval => {
                *count += 1;
                None
            }
            last => Some(
                last.replace((Instant::now(), 0))
                    .map_or(0, |(_, count)| count),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_is_logged_then_one_per_interval_with_the_count() {
        let throttle = Throttle::new(Duration::from_millis(50));

        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(throttle.admit(), Some(2));
        assert_eq!(throttle.admit(), None);
    }
}
