//! Log lines from a Tokio worker leave in chunks.
//!
//! tracing-appender's non-blocking writer queues every write as a message of its own, and
//! its worker thread woke, spun and wrote for each: with the access log on, that thread
//! took a tenth of the service's CPU (perf, `add` at 64 connections). [`Batched`] holds a
//! worker thread's lines in a buffer of that thread and queues them as one message when
//! the buffer passes [`CHUNK_BYTES`], when its oldest line is [`MAX_HOLD`] old, and
//! whenever the worker runs out of tasks: the runtime calls [`flush_this_thread`] as a
//! worker parks, which is also what turns holding on for the thread. Other threads (the
//! main thread, blocking tasks) never park, so they write through.

use std::cell::RefCell;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::NonBlocking;
use tracing_subscriber::fmt::MakeWriter;

/// A chunk is queued once it holds this many bytes (about 60 access lines).
pub const CHUNK_BYTES: usize = 16 * 1024;
/// ... or once its oldest line has waited this long.
pub const MAX_HOLD: Duration = Duration::from_millis(100);

/// Lines that went in chunks the sink's full queue refused, beyond the one message each
/// chunk counts as in the sink's own counter.
static DROPPED_IN_CHUNKS: AtomicU64 = AtomicU64::new(0);

/// Lines dropped in chunks, to add to the sinks' own counts of dropped messages.
pub fn dropped_in_chunks() -> u64 {
    DROPPED_IN_CHUNKS.load(Ordering::Relaxed)
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
    /// A thread that ends sends what it still holds.
    fn drop(&mut self) {
        for chunk in &mut self.chunks {
            chunk.send();
        }
    }
}

/// One sink's lines held on this thread.
struct Chunk {
    sink: usize,
    writer: NonBlocking,
    bytes: Vec<u8>,
    since: Instant,
}

impl Chunk {
    fn send(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let counter = self.writer.error_counter();
        let before = counter.dropped_lines();
        let _ = self.writer.write_all(&self.bytes);
        if counter.dropped_lines() > before {
            #[allow(clippy::naive_bytecount)] // once per refused chunk: not worth a crate
            let lines = self.bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            DROPPED_IN_CHUNKS.fetch_add(lines.saturating_sub(1), Ordering::Relaxed);
        }
        self.bytes.clear();
    }
}

/// Queues this thread's held lines, and holds its lines from now on. The runtime calls it
/// as a worker thread parks.
pub fn flush_this_thread() {
    let _ = HELD.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            held.holding = true;
            for chunk in &mut held.chunks {
                chunk.send();
            }
        }
    });
}

/// A [`MakeWriter`] over a non-blocking sink that holds lines on Tokio workers.
#[derive(Debug, Clone)]
pub struct Batched {
    sink: usize,
    writer: NonBlocking,
}

impl Batched {
    pub fn new(writer: NonBlocking) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Self {
            sink: NEXT.fetch_add(1, Ordering::Relaxed),
            writer,
        }
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
                let sink = self.batched.sink;
                let index = if let Some(index) = held.chunks.iter().position(|c| c.sink == sink) {
                    index
                } else {
                    held.chunks.push(Chunk {
                        sink,
                        writer: self.batched.writer.clone(),
                        bytes: Vec::with_capacity(CHUNK_BYTES + 1024),
                        since: Instant::now(),
                    });
                    held.chunks.len() - 1
                };
                let chunk = &mut held.chunks[index];
                if chunk.bytes.is_empty() {
                    chunk.since = Instant::now();
                }
                chunk.bytes.extend_from_slice(line);
                if chunk.bytes.len() >= CHUNK_BYTES || chunk.since.elapsed() >= MAX_HOLD {
                    chunk.send();
                }
                true
            })
            .unwrap_or(false);
        if !held {
            self.batched.writer.make_writer().write_all(line)?;
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
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn writes(sink: &Sink) -> Vec<String> {
        sink.0
            .lock()
            .unwrap()
            .iter()
            .map(|w| String::from_utf8(w.clone()).unwrap())
            .collect()
    }

    /// Runs `f` on a fresh thread (thread-local state starts clean) and waits for the
    /// sink's worker to write what it was given.
    fn on_a_thread(f: impl FnOnce(&Batched) + Send + 'static) -> Vec<String> {
        let sink = Sink::default();
        let (writer, guard) = NonBlockingBuilder::default().finish(sink.clone());
        let batched = Batched::new(writer);
        std::thread::spawn(move || f(&batched)).join().unwrap();
        drop(guard);
        writes(&sink)
    }

    #[test]
    fn a_thread_that_never_parked_writes_each_line_through() {
        let written = on_a_thread(|batched| {
            batched.make_writer().write_all(b"one\n").unwrap();
            batched.make_writer().write_all(b"two\n").unwrap();
        });
        assert_eq!(written, ["one\n", "two\n"]);
    }

    #[test]
    fn after_a_park_lines_leave_together_on_the_next_park() {
        let written = on_a_thread(|batched| {
            flush_this_thread();
            batched.make_writer().write_all(b"one\n").unwrap();
            batched.make_writer().write_all(b"two\n").unwrap();
            flush_this_thread();
            batched.make_writer().write_all(b"three\n").unwrap();
            flush_this_thread();
        });
        assert_eq!(written, ["one\ntwo\n", "three\n"]);
    }

    #[test]
    fn a_full_chunk_or_an_old_line_leaves_without_a_park() {
        let line = vec![b'x'; 1023];
        let written = on_a_thread(move |batched| {
            flush_this_thread();
            for _ in 0..CHUNK_BYTES / 1024 {
                let mut with_newline = line.clone();
                with_newline.push(b'\n');
                batched.make_writer().write_all(&with_newline).unwrap();
            }
            batched.make_writer().write_all(b"old\n").unwrap();
            std::thread::sleep(MAX_HOLD);
            batched.make_writer().write_all(b"new\n").unwrap();
        });
        assert_eq!(written.len(), 2, "{written:?}");
        assert_eq!(written[0].len(), CHUNK_BYTES);
        assert_eq!(written[1], "old\nnew\n");
    }
}
