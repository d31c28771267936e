//! One line per served request, written when its response ends: when, which request, method,
//! path, status, duration, route, and how the response ended.
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
use std::time::{Duration, Instant, SystemTime};

/// How long a line may wait to be handed to the writer.
pub const BATCH: Duration = Duration::from_millis(50);

/// Lines gathered past this many bytes are handed over at once.
const BATCH_BYTES: usize = 64 << 10;

/// Where access-log lines go (clones write to the same place).
#[derive(Clone)]
pub struct AccessLog {
    sink: Arc<AuditLog>,
    /// Lines not yet handed to the writer.
    pending: Arc<Mutex<Vec<u8>>>,
    /// Whether the task that hands them over every [`BATCH`] runs yet (it starts with the
    /// first line, inside the server's runtime).
    flusher: Arc<AtomicBool>,
    /// Set when the drain bound has passed: a response that ends unfinished from then on was
    /// cut by the server, not left by its client.
    cutting: Arc<AtomicBool>,
}

/// How a response ended, the last field of its line (`outcome=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `complete`: its whole body was handed to the connection.
    Complete,
    /// `cut`: the server ended it unfinished — its handler stopped mid-body (a trap, its wall
    /// clock, a body it never finished), or the drain bound passed — and the client can tell:
    /// the connection closes short of the body's end (HTTP/1.1) or the stream is reset
    /// (HTTP/2).
    Cut,
    /// `gone`: the client went away (closed the connection, reset the stream) first, or
    /// stopped reading until its connection was dropped for it.
    Gone,
    /// `refused`: hyper answered a request head it could not parse (400) or that was too
    /// large (431) itself; no handler ran, and there is no method or path to show.
    Refused,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Cut => "cut",
            Outcome::Gone => "gone",
            Outcome::Refused => "refused",
        }
    }
}

/// The access line of one request, written once, when its response ends however it ends:
/// [`Line::end`] when its end is seen, else when it is dropped (the client went away, or the
/// drain bound cut it).
pub(crate) struct Line {
    log: AccessLog,
    request_id: String,
    method: String,
    path: String,
    route: Option<String>,
    /// When it came in (none known for a request head hyper refused).
    started: Option<Instant>,
    /// The status of the response head, once there is one.
    status: Option<u16>,
    /// The response has no body to send whatever its head says (HEAD, 204, 304): dropped
    /// unread, it is complete.
    bodiless: bool,
    written: bool,
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
            flusher: Arc::default(),
            cutting: Arc::default(),
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

    /// The line of a request that has just come in (`method`, `path`), served by `route`.
    pub(crate) fn line(
        &self,
        request_id: String,
        method: String,
        path: String,
        route: Option<&str>,
        started: Instant,
    ) -> Line {
        Line {
            log: self.clone(),
            request_id,
            method,
            path,
            route: route.map(str::to_string),
            started: Some(started),
            status: None,
            bodiless: false,
            written: false,
        }
    }

    /// Write the line of a request head hyper refused and answered with `status` itself.
    pub(crate) fn refused(&self, request_id: String, status: u16) {
        Line {
            log: self.clone(),
            request_id,
            method: "-".into(),
            path: "-".into(),
            route: None,
            started: None,
            status: Some(status),
            bodiless: false,
            written: false,
        }
        .end(Outcome::Refused);
    }

    /// From now on, a response that ends unfinished was cut by the server (the drain bound
    /// passed).
    pub(crate) fn cut_from_now(&self) {
        self.cutting.store(true, Ordering::Relaxed);
    }

    /// Gather `line` (whole, ending in a newline) for the writer.
    fn push(&self, line: &str) {
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

impl Line {
    /// The request's id.
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The response head went out with `status`; `bodiless` when it can carry no body.
    pub(crate) fn answered(&mut self, status: http::StatusCode, bodiless: bool) {
        self.status = Some(status.as_u16());
        self.bodiless = bodiless;
    }

    /// Write the line: the response ended so.
    pub(crate) fn end(mut self, outcome: Outcome) {
        self.write(outcome);
    }

    /// `TS REQUEST_ID METHOD PATH STATUS DURATION route=PREFIX outcome=OUTCOME`, `-` for what
    /// there is not: a route none matched, a status when no response head was sent, a method,
    /// path and duration of a request head hyper refused.
    fn write(&mut self, outcome: Outcome) {
        self.written = true;
        let status = self
            .status
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        let took = self.started.map_or_else(
            || "-".to_string(),
            |t| format!("{:.1}ms", t.elapsed().as_secs_f64() * 1000.0),
        );
        let line = format!(
            "{} {} {} {} {status} {took} route={} outcome={}\n",
            humantime::format_rfc3339_millis(SystemTime::now()),
            self.request_id,
            field(&self.method, 64),
            field(&self.path, MAX_PATH),
            self.route.as_deref().unwrap_or("-"),
            outcome.word(),
        );
        self.log.push(&line);
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.written {
            return;
        }
        let outcome = if self.status.is_some() && self.bodiless {
            Outcome::Complete
        } else if self.log.cutting.load(Ordering::Relaxed) {
            Outcome::Cut
        } else {
            Outcome::Gone
        };
        self.write(outcome);
    }
}

/// Hand the lines gathered in `pending` to `sink`'s writer, whole.
fn hand_over(pending: &Mutex<Vec<u8>>, sink: &AuditLog) {
    let lines = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
    if !lines.is_empty() {
        sink.write_beside(&lines);
    }
}

/// `s` as one field of a line: [`printable`], and `-` when empty (a CONNECT request's target
/// has no path; an empty field would leave two spaces, and a reader splitting on whitespace
/// would take the status for the path).
fn field(s: &str, max: usize) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        printable(s, max)
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

    #[test]
    fn an_empty_path_is_a_dash_so_every_line_has_its_eight_fields() {
        let memory = Memory::default();
        let log = AccessLog::to_writer(Box::new(memory.clone()));
        let mut line = log.line(
            "r-1".into(),
            "CONNECT".into(),
            String::new(),
            None,
            Instant::now(),
        );
        line.answered(http::StatusCode::NOT_FOUND, false);
        line.end(Outcome::Complete);
        log.flush();
        let text = String::from_utf8(memory.0.lock().unwrap().clone()).unwrap();
        let fields: Vec<&str> = text.trim_end().split(' ').collect();
        assert_eq!(fields.len(), 8, "{text}");
        assert_eq!(fields[2..5], ["CONNECT", "-", "404"], "{text}");
    }

    /// Lines written to memory.
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Memory {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_says_how_its_response_ended_however_it_ends() {
        let memory = Memory::default();
        let log = AccessLog::to_writer(Box::new(memory.clone()));
        let line = |id: &str, status: Option<(u16, bool)>| {
            let mut line = log.line(
                id.into(),
                "GET".into(),
                "/x".into(),
                Some("/"),
                Instant::now(),
            );
            if let Some((status, bodiless)) = status {
                line.answered(http::StatusCode::from_u16(status).unwrap(), bodiless);
            }
            line
        };
        line("r-1", Some((200, false))).end(Outcome::Complete);
        line("r-2", Some((200, false))).end(Outcome::Cut);
        drop(line("r-3", Some((200, false))));
        drop(line("r-4", None));
        drop(line("r-5", Some((204, true))));
        log.cut_from_now();
        drop(line("r-6", Some((200, false))));
        drop(line("r-7", None));
        log.refused("r-8".into(), 431);
        log.flush();
        let text = String::from_utf8(memory.0.lock().unwrap().clone()).unwrap();
        let ends: Vec<String> = text
            .lines()
            .map(|l| {
                let fields: Vec<&str> = l.split(' ').collect();
                assert_eq!(fields.len(), 8, "{l}");
                format!("{} {} {}", fields[1], fields[4], fields[7])
            })
            .collect();
        assert_eq!(
            ends,
            [
                "r-1 200 outcome=complete",
                "r-2 200 outcome=cut",
                "r-3 200 outcome=gone",
                "r-4 - outcome=gone",
                "r-5 204 outcome=complete",
                "r-6 200 outcome=cut",
                "r-7 - outcome=cut",
                "r-8 431 outcome=refused",
            ]
        );
        assert!(text.contains(" r-8 - - 431 - route=- "), "{text}");
    }
}
