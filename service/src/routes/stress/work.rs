//! The work of `POST /stress`: CPU by counting primes, memory by filling an anonymous
//! mapping and serialising it to JSON. Both look at a [`Stop`] between steps and give up
//! once the request's deadline has passed or the request was dropped (its client went
//! away, or the deadline layer answered 503), so abandoned work frees its permits at once.

use std::hint::black_box;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use memmap2::MmapMut;

/// One CPU iteration counts the primes below this bound by trial division: about 1 ms on
/// one core of a current x86-64 server in a release build (docs/api.md, "Stress").
pub const PRIMES_BELOW: u32 = 35_000;

const MIB: usize = 1024 * 1024;

/// Why work ended before it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// The deadline passed or the request was dropped.
    Stopped,
    /// The kernel would not map the memory asked for.
    NoMemory,
}

/// When work must end early: at its deadline, or once its [`CancelOnDrop`] is dropped.
#[derive(Debug, Clone)]
pub struct Stop {
    deadline: Instant,
    cancelled: Arc<AtomicBool>,
}

/// Cancels its [`Stop`] when dropped. The handler holds it, so whatever drops the request
/// (a closed connection, the deadline layer) also stops the work on the blocking pool.
#[derive(Debug)]
pub struct CancelOnDrop(Arc<AtomicBool>);

impl Stop {
    /// A stop at `deadline`, and the guard that cancels it earlier.
    #[must_use]
    pub fn new(deadline: Instant) -> (Self, CancelOnDrop) {
        let cancelled = Arc::new(AtomicBool::new(false));
        let guard = CancelOnDrop(Arc::clone(&cancelled));
        (
            Self {
                deadline,
                cancelled,
            },
            guard,
        )
    }

    /// `Err` once the work should end.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.cancelled.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return Err(Interrupted::Stopped);
        }
        Ok(())
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `iterations` CPU iterations, checking `stop` before each; returns the primes found
/// over all of them.
pub fn burn_cpu(iterations: u32, stop: &Stop) -> Result<u64, Interrupted> {
    let mut primes = 0;
    for _ in 0..iterations {
        stop.check()?;
        primes += u64::from(count_primes_below(black_box(PRIMES_BELOW)));
    }
    Ok(primes)
}

/// Maps `mb` MiB, writes every byte, serialises them to JSON into a sink that keeps
/// nothing, and unmaps them before returning. The seed's `json.Marshal` of a byte slice
/// wrote a JSON string; this writes one per MiB, of printable bytes, at a cost linear in
/// the size. The peak is `mb` MiB plus a few KiB: no second buffer holds the JSON, and the
/// mapping goes back to the kernel on drop instead of staying in the allocator's cache.
pub fn churn_memory(mb: u32, stop: &Stop) -> Result<(), Interrupted> {
    if mb == 0 {
        return Ok(());
    }
    let len = usize::try_from(mb).map_err(|_| Interrupted::NoMemory)? * MIB;
    let mut region = MmapMut::map_anon(len).map_err(|_| Interrupted::NoMemory)?;
    for chunk in region.chunks_mut(MIB) {
        stop.check()?;
        chunk.fill(b'x');
    }
    // `["xx…","xx…",…]`, one string a MiB, so the stop is checked between them.
    let mut sink = Sink;
    discard(b"[");
    for (index, chunk) in region.chunks(MIB).enumerate() {
        stop.check()?;
        if index > 0 {
            discard(b",");
        }
        // Every byte is b'x', so the chunk is always a string; and a string always
        // serialises into a sink that never fails.
        let text = std::str::from_utf8(chunk).unwrap_or_default();
        let _ = serde_json::to_writer(&mut sink, black_box(text));
    }
    discard(b"]");
    Ok(())
}

/// A writer that keeps nothing.
struct Sink;

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        discard(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Drops `bytes`, in a way the optimiser cannot see through, so the serialisation that
/// produced them is not optimised away.
fn discard(bytes: &[u8]) {
    black_box(bytes);
}

fn count_primes_below(limit: u32) -> u32 {
    let mut count = 0;
    for n in 2..limit {
        let mut divisor = 2;
        let mut prime = true;
        while divisor * divisor <= n {
            if n % divisor == 0 {
                prime = false;
                break;
            }
            divisor += 1;
        }
        count += u32::from(prime);
    }
    count
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn later() -> Instant {
        Instant::now() + Duration::from_mins(10)
    }

    #[test]
    fn counts_primes_correctly() {
        let (stop, _guard) = Stop::new(later());

        assert_eq!(count_primes_below(10), 4);
        assert_eq!(count_primes_below(PRIMES_BELOW), 3732);
        assert_eq!(burn_cpu(3, &stop), Ok(3 * 3732));
    }

    #[test]
    fn work_stops_once_the_guard_is_dropped() {
        let (stop, guard) = Stop::new(later());

        drop(guard);

        assert_eq!(burn_cpu(u32::MAX, &stop), Err(Interrupted::Stopped));
        assert_eq!(churn_memory(64, &stop), Err(Interrupted::Stopped));
    }

    #[test]
    fn work_stops_at_the_deadline() {
        let (stop, _guard) = Stop::new(Instant::now());

        assert_eq!(burn_cpu(u32::MAX, &stop), Err(Interrupted::Stopped));
    }

    #[test]
    fn memory_is_churned_when_there_is_time() {
        let (stop, _guard) = Stop::new(later());

        assert_eq!(churn_memory(2, &stop), Ok(()));
        assert_eq!(churn_memory(0, &stop), Ok(()));
    }
}
