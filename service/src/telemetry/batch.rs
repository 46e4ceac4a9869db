//! Log lines from Tokio workers leave in batches, and wake the writer seldom.
//!
//! tracing-appender's non-blocking writer queues every write as a message and wakes its
//! worker thread for each: with the access log on, that thread took a tenth of the
//! service's CPU (perf, `add` at 64 connections), and waking it on every park of a Tokio
//! worker still cost it 0.5 µs of CPU a line, most of it going to sleep and waking up.
//! So a [`Batched`] sink moves lines in three steps:
//!
//! 1. A Tokio worker holds its lines in a buffer of its own thread: no lock, no wake-up.
//! 2. When the worker parks (the runtime calls [`flush_this_thread`]), or the buffer passes
//!    [`CHUNK_BYTES`], or its oldest line is [`MAX_HOLD`] old, the lines move to the
//!    sink's pending buffer, still without waking anyone.
//! 3. The pending buffer goes to the writer as one message once it passes
//!    [`PENDING_BYTES`] (sent by the thread that filled it), or once its oldest line is
//!    [`MAX_HOLD`] old (sent by the sink's `log-flush` thread, which sleeps while nothing
//!    is pending), or when the [`FlushGuard`] drops at shutdown.
//!
//! A line so waits at most about [`MAX_HOLD`] before it is written. Threads that never
//! park as Tokio workers (the main thread, blocking tasks) hold nothing: their lines join
//! the pending buffer at once, after every line the workers hold, which they collect
//! first, so a line such as "shutdown complete" comes after the requests' lines even when
//! a worker has not parked since. A worker's buffer is therefore a [`Slot`] the sink can
//! reach too: its mutex is taken once a line, and is only contended on those rare lines.
//!
//! Locks are taken pending buffer first, then slot, on every path; a line written into a
//! slot takes only the slot's.

use std::cell::RefCell;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::NonBlocking;
use tracing_subscriber::fmt::MakeWriter;

/// A worker's own buffer moves to the pending buffer once it holds this many bytes.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// The pending buffer goes to the writer once it holds this many bytes (about 1 000 access
/// lines): a message on the writer's queue is at most this plus one chunk. At 64 KiB the
/// writers woke four times as often, and an access line cost about 0.2 µs more CPU under
/// a CPU limit (the bench's `add`).
pub const PENDING_BYTES: usize = 256 * 1024;
/// ... or once its oldest line has waited this long.
pub const MAX_HOLD: Duration = Duration::from_millis(100);

/// Lines that went in batches the sink's full queue refused, beyond the one message each
/// batch counts as in the sink's own counter.
static DROPPED_IN_BATCHES: AtomicU64 = AtomicU64::new(0);

/// Lines dropped in batches, to add to the sinks' own counts of dropped messages.
pub fn dropped_in_batches() -> u64 {
    DROPPED_IN_BATCHES.load(Ordering::Relaxed)
}

thread_local! {
    static HELD: RefCell<Held> = const { RefCell::new(Held { holding: false, chunks: Vec::new() }) };
}

struct Held {
    /// Set the first time this thread parks as a Tokio worker.
    holding: bool,
    chunks: Vec<Chunk>,
}

impl Drop for Held {
    /// A thread that ends passes on what it still holds.
    fn drop(&mut self) {
        for chunk in &self.chunks {
            chunk.pass_on();
        }
    }
}

/// One sink's lines held on this thread.
struct Chunk {
    sink: Arc<Sink>,
    slot: Arc<Slot>,
}

impl Chunk {
    fn pass_on(&self) {
        let mut pending = self.sink.lock();
        self.sink.collect(&mut pending, &self.slot);
    }
}

/// The lines a worker holds for one sink; the sink keeps a [`Weak`] to it, so that a
/// thread which holds nothing can collect them before it adds its own.
struct Slot(Mutex<Lines>);

struct Lines {
    bytes: Vec<u8>,
    /// When the oldest held line arrived.
    since: Instant,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Lines> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Moves this thread's held lines to their sinks' pending buffers, and holds its lines
/// from now on. The runtime calls it as a worker thread parks.
pub fn flush_this_thread() {
    let _ = HELD.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            held.holding = true;
            for chunk in &held.chunks {
                chunk.pass_on();
            }
        }
    });
}

/// A sink's pending buffer and the writers behind it (each line goes to every one).
struct Sink {
    writers: Vec<NonBlocking>,
    pending: Mutex<Pending>,
    /// Tells the `log-flush` thread that lines are pending, or that it should stop.
    changed: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// When the oldest pending line arrived.
    since: Option<Instant>,
    /// Set by the [`FlushGuard`]: from then on lines go straight to the writer.
    closed: bool,
    /// The workers' slots for this sink (those of ended threads are dropped as found).
    slots: Vec<Weak<Slot>>,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A thread that panicked while holding the lock left valid bytes behind.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the lines of a thread that holds none: after every line the workers hold.
    fn stash_after_held(&self, bytes: &[u8]) {
        let mut pending = self.lock();
        self.collect_all(&mut pending);
        self.stash(&mut pending, bytes);
    }

    /// Moves the lines of every worker's slot to the pending buffer.
    fn collect_all(&self, pending: &mut Pending) {
        let slots = std::mem::take(&mut pending.slots);
        let live: Vec<_> = slots
            .into_iter()
            .filter(|slot| {
                slot.upgrade().is_some_and(|slot| {
                    self.collect(pending, &slot);
                    true
                })
            })
            .collect();
        pending.slots = live;
    }

    /// Moves the lines of one worker's slot to the pending buffer.
    fn collect(&self, pending: &mut Pending, slot: &Slot) {
        let mut lines = slot.lock();
        if !lines.bytes.is_empty() {
            self.stash(pending, &lines.bytes);
            lines.bytes.clear();
        }
    }

    /// Adds `bytes` (whole lines) to the pending buffer, and hands the buffer to the writer
    /// once it is full. Wakes the `log-flush` thread only when the buffer was empty.
    fn stash(&self, pending: &mut Pending, bytes: &[u8]) {
        if pending.closed {
            self.send(bytes);
            return;
        }
        if pending.bytes.is_empty() {
            pending.since = Some(Instant::now());
            self.changed.notify_one();
        }
        pending.bytes.extend_from_slice(bytes);
        if pending.bytes.len() >= PENDING_BYTES {
            self.hand_over(pending);
        }
    }

    /// Sends the pending buffer to the writers. They are lossy, so this never blocks: each
    /// copies the bytes into its queue, or drops them and counts them.
    fn hand_over(&self, pending: &mut Pending) {
        self.send(&pending.bytes);
        pending.bytes.clear();
        pending.since = None;
    }

    /// The `log-flush` thread: sleeps while nothing is pending, hands the pending buffer
    /// over once its oldest line is [`MAX_HOLD`] old, and everything when closed.
    fn flush_until_closed(&self) {
        let mut pending = self.lock();
        loop {
            let wait = match pending.since {
                _ if pending.closed => {
                    self.hand_over(&mut pending);
                    return;
                }
                None => None,
                Some(since) => {
                    let Some(left) = MAX_HOLD
                        .checked_sub(since.elapsed())
                        .filter(|d| !d.is_zero())
                    else {
                        self.hand_over(&mut pending);
                        continue;
                    };
                    Some(left)
                }
            };
            pending = match wait {
                None => self
                    .changed
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(wait) => {
                    self.changed
                        .wait_timeout(pending, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Writes `bytes` to each writer as one message, counting the lines in it when a
    /// writer's full queue refuses them.
    fn send(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        for writer in &self.writers {
            let counter = writer.error_counter();
            let before = counter.dropped_lines();
            let _ = writer.make_writer().write_all(bytes);
            if counter.dropped_lines() > before {
                #[allow(clippy::naive_bytecount)] // once per refused batch: not worth a crate
                let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
                DROPPED_IN_BATCHES.fetch_add(lines.saturating_sub(1), Ordering::Relaxed);
            }
        }
    }
}

/// Stops a sink's `log-flush` thread once it has handed every pending line to the writer.
/// Drop it before the writer's own guard, which then writes them out.
#[derive(Debug)]
#[must_use = "dropping the guard flushes and stops the sink's batching"]
pub struct FlushGuard {
    sink: Arc<Sink>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        // The calling thread's own held lines first (a Tokio worker shutting down).
        flush_this_thread();
        let mut pending = self.sink.lock();
        self.sink.collect_all(&mut pending);
        pending.closed = true;
        drop(pending);
        self.sink.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("writers", &self.writers.len())
            .finish_non_exhaustive()
    }
}

/// A [`MakeWriter`] over non-blocking writers that batches the lines of Tokio workers and
/// gives each writer every line.
#[derive(Debug, Clone)]
pub struct Batched {
    sink: Arc<Sink>,
}

impl Batched {
    /// Batches lines for `writers`, with a `log-flush` thread that sends what waits too
    /// long; the guard stops it. Each writer has its own queue and thread, so one that
    /// stalls (a stdout nobody reads) costs the others nothing.
    pub fn new(writers: Vec<NonBlocking>) -> io::Result<(Self, FlushGuard)> {
        let sink = Arc::new(Sink {
            writers,
            pending: Mutex::new(Pending {
                bytes: Vec::with_capacity(PENDING_BYTES + CHUNK_BYTES),
                ..Pending::default()
            }),
            changed: Condvar::new(),
        });
        let flusher = Arc::clone(&sink);
        let thread = std::thread::Builder::new()
            .name("log-flush".to_owned())
            .spawn(move || flusher.flush_until_closed())?;
        Ok((
            Self {
                sink: Arc::clone(&sink),
            },
            FlushGuard {
                sink,
                thread: Some(thread),
            },
        ))
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line { batched: self }
    }
}

/// The writer for one line (the fmt layer writes each line whole).
#[derive(Debug)]
pub struct Line<'a> {
    batched: &'a Batched,
}

impl io::Write for Line<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let held = HELD
            .try_with(|held| {
                let Ok(mut held) = held.try_borrow_mut() else {
                    return false;
                };
                if !held.holding {
                    return false;
                }
                let sink = &self.batched.sink;
                let index = if let Some(index) =
                    held.chunks.iter().position(|c| Arc::ptr_eq(&c.sink, sink))
                {
                    index
                } else {
                    let slot = Arc::new(Slot(Mutex::new(Lines {
                        bytes: Vec::with_capacity(CHUNK_BYTES + 1024),
                        since: Instant::now(),
                    })));
                    sink.lock().slots.push(Arc::downgrade(&slot));
                    held.chunks.push(Chunk {
                        sink: Arc::clone(sink),
                        slot,
                    });
                    held.chunks.len() - 1
                };
                let chunk = &held.chunks[index];
                let mut lines = chunk.slot.lock();
                if lines.bytes.is_empty() {
                    lines.since = Instant::now();
                }
                lines.bytes.extend_from_slice(line);
                let full = lines.bytes.len() >= CHUNK_BYTES || lines.since.elapsed() >= MAX_HOLD;
                drop(lines);
                if full {
                    chunk.pass_on();
                }
                true
            })
            .unwrap_or(false);
        if !held {
            self.batched.sink.stash_after_held(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_appender::non_blocking::NonBlockingBuilder;

    use super::*;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl io::Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn writes(sink: &Recorder) -> Vec<String> {
        sink.0
            .lock()
            .unwrap()
            .iter()
            .map(|w| String::from_utf8(w.clone()).unwrap())
            .collect()
    }

    /// Runs `f` on a fresh thread (thread-local state starts clean), then drops the flush
    /// guard and the writer's guard, in that order, and returns what reached the sink.
    fn on_a_thread(f: impl FnOnce(&Batched, &Recorder) + Send + 'static) -> Vec<String> {
        let sink = Recorder::default();
        let (writer, guard) = NonBlockingBuilder::default().finish(sink.clone());
        let (batched, flush) = Batched::new(vec![writer]).unwrap();
        let seen = sink.clone();
        std::thread::spawn(move || f(&batched, &seen))
            .join()
            .unwrap();
        drop(flush);
        drop(guard);
        writes(&sink)
    }

    fn line(byte: u8, len: usize) -> Vec<u8> {
        let mut line = vec![byte; len - 1];
        line.push(b'\n');
        line
    }

    /// Waits up to five seconds for the sink to have received `count` writes.
    fn wait_for_writes(sink: &Recorder, count: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            let written = writes(sink);
            if written.len() >= count || started.elapsed() > Duration::from_secs(5) {
                return written;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_thread_that_never_parked_adds_its_lines_after_those_passed_on() {
        let sink = Recorder::default();
        let (writer, guard) = NonBlockingBuilder::default().finish(sink.clone());
        let (batched, flush) = Batched::new(vec![writer]).unwrap();
        let worker = batched.clone();
        std::thread::spawn(move || {
            flush_this_thread();
            worker.make_writer().write_all(b"request\n").unwrap();
            flush_this_thread();
        })
        .join()
        .unwrap();
        std::thread::spawn(move || {
            batched
                .make_writer()
                .write_all(b"shutdown complete\n")
                .unwrap();
        })
        .join()
        .unwrap();
        drop(flush);
        drop(guard);

        assert_eq!(writes(&sink), ["request\nshutdown complete\n"]);
    }

    #[test]
    fn a_thread_that_never_parked_adds_its_lines_after_those_a_busy_worker_holds() {
        let sink = Recorder::default();
        let (writer, guard) = NonBlockingBuilder::default().finish(sink.clone());
        let (batched, flush) = Batched::new(vec![writer]).unwrap();
        let worker = batched.clone();
        let (written, wrote) = std::sync::mpsc::channel();
        let (end, ended) = std::sync::mpsc::channel::<()>();
        // A worker that logged a request and has not parked since, still running.
        let busy = std::thread::spawn(move || {
            flush_this_thread();
            worker.make_writer().write_all(b"request\n").unwrap();
            written.send(()).unwrap();
            let _ = ended.recv();
        });
        wrote.recv().unwrap();
        batched
            .make_writer()
            .write_all(b"shutdown complete\n")
            .unwrap();
        drop(flush);
        end.send(()).unwrap();
        busy.join().unwrap();
        drop(guard);

        assert_eq!(writes(&sink).concat(), "request\nshutdown complete\n");
    }

    #[test]
    fn lines_of_several_parks_leave_together_once_the_oldest_is_max_hold_old() {
        let written = on_a_thread(|batched, sink| {
            flush_this_thread();
            batched.make_writer().write_all(b"one\n").unwrap();
            flush_this_thread();
            let parked = Instant::now();
            batched.make_writer().write_all(b"two\n").unwrap();
            flush_this_thread();
            let written = wait_for_writes(sink, 1);
            assert!(
                parked.elapsed() >= MAX_HOLD / 2,
                "written {:?} after the park, before the hold was over: {written:?}",
                parked.elapsed()
            );
            assert_eq!(written, ["one\ntwo\n"], "one message, without another park");
        });
        assert_eq!(written, ["one\ntwo\n"]);
    }

    #[test]
    fn a_full_pending_buffer_leaves_at_once() {
        let written = on_a_thread(|batched, sink| {
            flush_this_thread();
            for _ in 0..PENDING_BYTES / 1024 {
                batched.make_writer().write_all(&line(b'x', 1024)).unwrap();
                flush_this_thread();
            }
            batched.make_writer().write_all(b"y\n").unwrap();
            flush_this_thread();
            // Held for the whole hold, the last line would have left with the others.
            let written = wait_for_writes(sink, 2);
            assert_eq!(written.len(), 2);
            assert_eq!(written[0].len(), PENDING_BYTES);
            assert_eq!(written[1], "y\n");
        });
        assert_eq!(written.len(), 2);
    }

    #[test]
    fn a_full_chunk_or_an_old_line_moves_on_without_a_park() {
        let written = on_a_thread(|batched, sink| {
            flush_this_thread();
            for _ in 0..CHUNK_BYTES / 1024 {
                batched.make_writer().write_all(&line(b'x', 1024)).unwrap();
            }
            // The full chunk is pending: it leaves after the hold, with no park.
            assert_eq!(wait_for_writes(sink, 1)[0].len(), CHUNK_BYTES);
            batched.make_writer().write_all(b"old\n").unwrap();
            std::thread::sleep(MAX_HOLD);
            batched.make_writer().write_all(b"new\n").unwrap();
            assert_eq!(wait_for_writes(sink, 2)[1], "old\nnew\n");
        });
        assert_eq!(written.len(), 2, "{written:?}");
    }

    #[test]
    fn the_flush_guard_hands_over_what_is_pending_and_held() {
        let sink = Recorder::default();
        let (writer, guard) = NonBlockingBuilder::default().finish(sink.clone());
        let (batched, flush) = Batched::new(vec![writer]).unwrap();
        std::thread::spawn(move || {
            flush_this_thread();
            batched.make_writer().write_all(b"pending\n").unwrap();
            flush_this_thread();
            batched.make_writer().write_all(b"held\n").unwrap();
            // Dropped on this thread, as a Tokio worker would at shutdown.
            drop(flush);
            batched.make_writer().write_all(b"after\n").unwrap();
            flush_this_thread();
        })
        .join()
        .unwrap();
        drop(guard);

        assert_eq!(writes(&sink).concat(), "pending\nheld\nafter\n");
    }
}
