//! The host's own stdout and stderr, for guests that inherit them (`urlcap run`).
//!
//! wasmtime's inherited streams write with a blocking `write` inside the guest's host call: a
//! reader that stops reading (`urlcap run … | stuck`) would hold the guest, and the thread its
//! wall clock runs on, forever. Here each stream is written by a thread of its own, through the
//! same bounded queue as the audit log: the guest's stream says it has no room while more
//! than the queue's high-water mark wait, and the guest waits in an `await` its wall clock
//! ends. At exit the process waits at most `EXIT_GRACE` for what is left. A stream that
//! takes nothing for the queue's stall limit stops being waited for: what the guest writes
//! after that is dropped and counted (see [`dropped`]), so a guest with no wall clock
//! cannot be held by it either.

use super::capture::Accept;
use crate::audit::writer::{Outcome, Queue};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One of the host's output streams, shared by every guest that inherits it.
#[derive(Clone)]
pub(crate) struct HostOutput {
    stream: &'static Stream,
}

struct Stream {
    queue: Arc<Queue>,
    dropped: AtomicU64,
}

/// The writer thread reports nothing back: output bytes are not records.
struct Unreported;

impl Outcome for Unreported {
    fn written(&self, _records: u64) {}
    fn failed(&self, _records: u64) {}
}

static STDOUT: OnceLock<Stream> = OnceLock::new();
static STDERR: OnceLock<Stream> = OnceLock::new();

fn stream(cell: &'static OnceLock<Stream>, sink: fn() -> Box<dyn Write + Send>) -> &'static Stream {
    cell.get_or_init(|| {
        let queue = Arc::new(Queue::new());
        let writer = queue.clone();
        let mut sink = sink();
        let spawned = std::thread::Builder::new()
            .name("urlcap-output".into())
            .spawn(move || writer.run(&mut *sink, &Unreported));
        if spawned.is_err() {
            // No thread, no writer: everything written is counted as dropped.
            queue.close_and_drain();
        }
        Stream {
            queue,
            dropped: AtomicU64::new(0),
        }
    })
}

impl HostOutput {
    /// The host's stdout.
    pub(crate) fn stdout() -> HostOutput {
        HostOutput {
            stream: stream(&STDOUT, || Box::new(std::io::stdout())),
        }
    }

    /// The host's stderr.
    pub(crate) fn stderr() -> HostOutput {
        HostOutput {
            stream: stream(&STDERR, || Box::new(std::io::stderr())),
        }
    }
}

impl Accept for HostOutput {
    fn accept(&self, bytes: &[u8]) {
        if self.stream.queue.push(bytes, false).is_none() {
            self.stream
                .dropped
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    }

    fn has_room(&self) -> bool {
        !self.stream.queue.backlogged() || self.stream.queue.stalled()
    }

    fn wait_for_room(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.stream.queue.wait_until(|| self.has_room()))
    }
}

/// How long the process waits at exit for a reader to take what guests left queued: a slow
/// reader must not keep it alive long past the guest's wall clock.
pub(crate) const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Write out what guests left in the host's stdout and stderr queues, waiting at most
/// `EXIT_GRACE` for each; what is still queued then counts as dropped. Call before the
/// process exits.
pub fn flush() {
    for cell in [&STDOUT, &STDERR] {
        if let Some(stream) = cell.get() {
            let left = stream.queue.drain_within(EXIT_GRACE);
            stream.dropped.fetch_add(left, Ordering::Relaxed);
        }
    }
}

/// Bytes of guest output the host's stdout and stderr dropped because their readers stopped
/// reading.
pub fn dropped() -> u64 {
    [&STDOUT, &STDERR]
        .iter()
        .filter_map(|cell| cell.get())
        .map(|s| s.dropped.load(Ordering::Relaxed))
        .sum()
}
