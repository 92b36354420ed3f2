//! The log lines' way to stdout (stderr for a one-shot command): a request
//! appends its line to a shared buffer and goes on; a thread of its own
//! writes the buffer out, all of it in one `write(2)`, when it is woken.
//!
//! Measured on the cached product read (docs/performance.md): one `write`
//! per line cost 6-7 % of the gateway's CPU; a queue of lines to a writer
//! thread (tracing-appender's `non_blocking`) cost more than it saved on 2
//! cores, because every line woke that thread. Here the first line of a
//! batch wakes it, and it waits [`GATHER`] before writing, so under load it
//! is one wake-up and one write per batch.
//!
//! Nothing is dropped silently: a line that finds the buffer full (the
//! output has not taken anything for a while) is counted, in
//! `shop_log_lines_unwritten_total` and on stderr at exit. At exit the
//! buffer is written out, and lines logged after that are written directly.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer gathers lines after the first of a batch wakes it:
/// how late a line may reach stdout.
const GATHER: Duration = Duration::from_millis(20);
/// The most the buffer holds before lines are dropped (and counted): at
/// 30,000 requests/s of ~250-byte lines, half a second of output that has
/// not been taken.
const MOST: usize = 4 * 1024 * 1024;
/// Past this the writer is woken at once, not after `GATHER`.
const WAKE_AT: usize = 256 * 1024;

/// Where lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Nowhere (tests).
    #[cfg(test)]
    Sink,
}

impl Stream {
    fn write(self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Self::Stderr => std::io::stderr().lock().write_all(bytes),
            #[cfg(test)]
            Self::Sink => Ok(()),
        }
    }
}

struct Shared {
    stream: Stream,
    buffer: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    /// The writer has stopped: lines are written by whoever logs them.
    direct: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn buffer(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while appending leaves at worst a partial line: keep going.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The logging side: cheap to clone; each `write` is one whole line (what
/// `log_lines` hands it).
#[derive(Clone)]
pub struct Lines {
    shared: Arc<Shared>,
    /// `None`: no writer thread could be started; lines are written directly.
    writer: Option<std::thread::Thread>,
}

/// The writing side, stopped by [`Output::finish`].
pub struct Output {
    lines: Lines,
    thread: Option<JoinHandle<()>>,
}

impl Output {
    /// Starts the writer thread (if the system will not start one, every
    /// line is written as it comes, as before there was one).
    pub fn start(stream: Stream) -> Self {
        let shared = Arc::new(Shared {
            stream,
            buffer: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            direct: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let writing = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("shop-log-writer".into()).spawn(move || write_out(&writing)).ok();
        let writer = thread.as_ref().map(|thread| thread.thread().clone());
        shared.direct.store(writer.is_none(), Ordering::Release);
        Self { lines: Lines { shared, writer }, thread }
    }

    pub fn lines(&self) -> Lines {
        self.lines.clone()
    }

    /// Writes what is buffered and stops the writer; later lines are
    /// written directly. Returns how many lines were dropped in all.
    pub fn finish(self) -> u64 {
        self.lines.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread {
            thread.thread().unpark();
            // The thread only ends by writing the buffer out; a panic in it
            // leaves the buffer, written below.
            let _ = thread.join();
        }
        let shared = &self.lines.shared;
        let rest = {
            let mut buffer = shared.buffer();
            shared.direct.store(true, Ordering::Release);
            std::mem::take(&mut *buffer)
        };
        if !rest.is_empty() {
            let _ = shared.stream.write(&rest);
        }
        shared.dropped.load(Ordering::Relaxed)
    }
}

impl Lines {
    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn append(&self, line: &[u8]) {
        let shared = &self.shared;
        let mut buffer = shared.buffer();
        if shared.direct.load(Ordering::Acquire) {
            drop(buffer);
            // A closed stream must not take the process down: the line is lost.
            let _ = shared.stream.write(line);
            return;
        }
        if buffer.len() + line.len() > MOST {
            drop(buffer);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.wake();
            return;
        }
        let was_empty = buffer.is_empty();
        let crossed = buffer.len() < WAKE_AT && buffer.len() + line.len() >= WAKE_AT;
        buffer.extend_from_slice(line);
        drop(buffer);
        if was_empty || crossed {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(writer) = &self.writer {
            writer.unpark();
        }
    }
}

/// The writer thread: sleeps until a batch starts, lets it gather, then
/// writes it in one go; at stop, writes what is left and ends.
fn write_out(shared: &Shared) {
    let mut batch = Vec::new();
    loop {
        std::thread::park();
        let stopping = shared.stop.load(Ordering::Acquire);
        if !stopping && shared.buffer().len() < WAKE_AT {
            std::thread::park_timeout(GATHER);
        }
        std::mem::swap(&mut batch, &mut *shared.buffer());
        if !batch.is_empty() {
            // A closed or failing stream loses this batch; logging goes on.
            let _ = shared.stream.write(&batch);
            batch.clear();
            // Memory a burst took is given back once the burst is over.
            if batch.capacity() > WAKE_AT {
                batch = Vec::new();
            }
        }
        if shared.stop.load(Ordering::Acquire) {
            std::mem::swap(&mut batch, &mut *shared.buffer());
            let _ = shared.stream.write(&batch);
            return;
        }
    }
}

impl Write for Lines {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_gathered_and_all_written_at_finish_even_after_it() {
        let output = Output::start(Stream::Sink);
        let mut lines = output.lines();
        for n in 0..1000 {
            lines.write_all(format!("line {n}\n").as_bytes()).expect("buffered");
        }
        assert_eq!(output.finish(), 0);
        assert!(lines.shared.buffer().is_empty(), "written out at finish");
        lines.write_all(b"after finish\n").expect("written directly");
        assert!(lines.shared.buffer().is_empty(), "not buffered after finish");
    }

    #[test]
    fn a_full_buffer_counts_what_it_drops() {
        let output = Output::start(Stream::Sink);
        let lines = output.lines();
        // The writer is held off by holding the buffer: fill it to the brim.
        let shared = Arc::clone(&lines.shared);
        let mut buffer = shared.buffer();
        buffer.resize(MOST, b'\n');
        drop(buffer);
        lines.append(b"one too many\n");
        assert_eq!(lines.dropped(), 1);
        assert_eq!(output.finish(), 1);
    }
}
