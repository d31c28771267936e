//! One line per served request: when, which request, method, path, status, duration, route.
//!
//! Written through the audit log's writer machinery: beside the audit records when both go to
//! stderr (one stream of whole lines, so neither can land inside the other), else by a writer
//! thread of its own, so a reader that stops reading never holds a request. Lines are
//! gathered and handed over every [`BATCH`] (or sooner past [`BATCH_BYTES`]): one hand-over
//! per line would wake the writer thread once per request, which on a busy server costs more
//! than the request's own work.

use crate::audit::AuditLog;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long a line may wait to be handed to the writer.
pub const BATCH: Duration = Duration::from_millis(50);

/// Lines gathered past this many bytes are handed over at once.
const BATCH_BYTES: usize = 64 << 10;

/// Where access-log lines go.
pub struct AccessLog {
    sink: Arc<AuditLog>,
    /// Lines not yet handed to the writer.
    pending: Arc<Mutex<Vec<u8>>>,
    /// Whether the task that hands them over every [`BATCH`] runs yet (it starts with the
    /// first line, inside the server's runtime).
    flusher: AtomicBool,
}

/// Longest path kept on a line (request targets are client text).
const MAX_PATH: usize = 1024;

impl AccessLog {
    /// Lines written beside `audit`'s records, in its order (both on stderr).
    pub fn beside(audit: Arc<AuditLog>) -> AccessLog {
        AccessLog::on(audit)
    }

    fn on(sink: Arc<AuditLog>) -> AccessLog {
        AccessLog {
            sink,
            pending: Arc::default(),
            flusher: AtomicBool::new(false),
        }
    }

    /// Lines appended to `path` by a thread of their own.
    pub fn to_file(path: &std::path::Path) -> std::io::Result<AccessLog> {
        Ok(AccessLog::on(Arc::new(AuditLog::to_file(path)?)))
    }

    /// Lines written in place to `sink`, which must never block (memory, a channel).
    pub fn to_writer(sink: Box<dyn std::io::Write + Send>) -> AccessLog {
        AccessLog::on(Arc::new(AuditLog::new(sink)))
    }

    /// Lines to stderr by a thread of their own.
    pub fn stderr() -> std::io::Result<AccessLog> {
        Ok(AccessLog::on(Arc::new(AuditLog::stderr()?)))
    }

    /// `TS REQUEST_ID METHOD PATH STATUS DURATION route=PREFIX` (`route=-` when none matched).
    pub(crate) fn log(
        &self,
        request_id: &str,
        method: &str,
        path: &str,
        status: u16,
        took: Duration,
        route: Option<&str>,
    ) {
        let line = format!(
            "{} {request_id} {} {} {status} {:.1}ms route={}\n",
            humantime::format_rfc3339_millis(SystemTime::now()),
            printable(method, 64),
            printable(path, MAX_PATH),
            took.as_secs_f64() * 1000.0,
            route.unwrap_or("-"),
        );
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.extend_from_slice(line.as_bytes());
            pending.len() >= BATCH_BYTES
        };
        if full {
            self.hand_over();
        } else if !self.flusher.swap(true, Ordering::Relaxed) {
            self.start_flusher();
        }
    }

    /// Every [`BATCH`], hand what was gathered to the writer, while this log lives.
    fn start_flusher(&self) {
        let (pending, sink) = (Arc::downgrade(&self.pending), self.sink.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (not under the server): no batching, every line at once.
            self.hand_over();
            self.flusher.store(false, Ordering::Relaxed);
            return;
        };
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(BATCH).await;
                let Some(pending) = pending.upgrade() else {
                    return;
                };
                hand_over(&pending, &sink);
            }
        });
    }

    fn hand_over(&self) {
        hand_over(&self.pending, &self.sink);
    }

    /// Open the log's file again by its path before the next line (after logrotate moved
    /// it); nothing for stderr.
    pub fn reopen(&self) {
        self.hand_over();
        self.sink.reopen();
    }

    /// Wait until every line so far is written (or the sink has stalled).
    pub fn flush(&self) {
        self.hand_over();
        self.sink.flush();
    }
}

/// Hand the lines gathered in `pending` to `sink`'s writer, whole.
fn hand_over(pending: &Mutex<Vec<u8>>, sink: &AuditLog) {
    let lines = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
    if !lines.is_empty() {
        sink.write_beside(&lines);
    }
}

/// `s` with anything but printable ASCII escaped and its length bounded: a client's request
/// target cannot forge a line or a terminal escape.
fn printable(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if out.len() >= max {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() {
            out.push(c);
        } else if c == ' ' {
            // Fields are separated by spaces: one inside a field is escaped too.
            out.push_str("\\u{20}");
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_stays_on_one_printable_bounded_line() {
        assert_eq!(
            printable("/a b\r\n\u{1b}[31m", 100),
            "/a\\u{20}b\\r\\n\\u{1b}[31m"
        );
        assert!(printable(&"x".repeat(5000), 1024).len() <= 1030);
    }
}
