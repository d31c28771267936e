//! Audit records: one JSON object per line, one line per event.
//!
//! Every denial anywhere in urlcap becomes exactly one `request.denied` record. Records hold the
//! canonical URL (or, when the URL never became canonical, the raw text with any userinfo cut
//! out and its length bounded), never an injected header value. serde_json escapes every
//! control character, so guest strings cannot forge lines or terminal escapes. A record that
//! cannot be written is counted, and the count is written as a final `audit.dropped` record
//! (and to stderr) when the log is finished: nothing is lost silently.

use crate::policy::{AuthorityRef, Denial, Reason};
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub(crate) mod writer;

/// Longest raw URL text kept in a record.
const MAX_RAW_URL: usize = 2048;
/// Longest `detail` kept in a record: details quote guest text (a denied path, a refused
/// attenuation), so a record's size is bounded whatever the guest sent.
pub(crate) const MAX_DETAIL: usize = 2048;

/// What happened. The dotted names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Event {
    /// A request refused at any step (policy, IP vetting, transport, limits): every denial
    /// gets exactly one, so the log alone says what a guest was kept from.
    #[serde(rename = "request.denied")]
    RequestDenied,
    /// A request that got its response head; written only with `--audit-allowed`, because a
    /// busy guest's allowed traffic would drown the denials the log is for.
    #[serde(rename = "request.allowed")]
    RequestAllowed,
    /// An admitted request whose response head never arrived because the guest, or its
    /// sandbox (its wall-clock limit), stopped waiting for it. It may have reached the origin.
    #[serde(rename = "request.aborted")]
    RequestAborted,
    /// A guest derived a narrower handle: the lineage in later records points back here.
    #[serde(rename = "authority.derived")]
    AuthorityDerived,
    /// A guest revoked a handle (and so everything derived from it).
    #[serde(rename = "authority.revoked")]
    AuthorityRevoked,
    /// A sandbox started (top level or nested), so every other record has a start to belong to.
    #[serde(rename = "sandbox.spawned")]
    SandboxSpawned,
    /// A sandbox ended, with its exit status or the limit that stopped it.
    #[serde(rename = "sandbox.exited")]
    SandboxExited,
    /// Learn mode only: a request no grant allowed, let through so that the manifest being
    /// learned can grant it (its `reason` is the denial it would otherwise have had).
    #[serde(rename = "request.learned")]
    RequestLearned,
    /// Written last when earlier records could not be written.
    #[serde(rename = "audit.dropped")]
    AuditDropped,
}

/// One audit line. Every key is always present (null when it does not apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// What happened (`request.denied`...).
    pub event: Event,
    /// The id of the sandbox the event belongs to, so the records of nested sandboxes sharing
    /// one log can be told apart.
    pub sandbox: String,
    /// The incoming request the event belongs to under `urlcap serve` (the id its access-log
    /// line and `x-request-id` response header carry), so one request's records can be found
    /// among many; null outside `serve`. Stamped by the request's view of the log
    /// ([`AuditLog::for_request`]), never chosen by a guest.
    pub request_id: Option<String>,
    /// The preopen name of the root authority involved (a derived handle keeps its root's
    /// name), or null when no handle was: a request that matched none.
    pub authority: Option<String>,
    /// The exact handle, as its path from the root (`github/2/5`): which derivation was used.
    pub lineage: Option<String>,
    /// The request method, escaped (it may be guest text that was refused as a method).
    pub method: Option<String>,
    /// The request URL, canonical when it parsed, with userinfo and injected secrets removed
    /// and its length bounded.
    pub url: Option<String>,
    /// The stable reason code of a denial; never free text, so tools can match on it.
    pub reason: Option<Reason>,
    /// Human-readable detail, bounded in length (it quotes guest text).
    pub detail: String,
}

impl Record {
    pub(crate) fn new(event: Event, sandbox: &str, detail: impl Into<String>) -> Record {
        Record {
            ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event,
            sandbox: sandbox.to_string(),
            request_id: None,
            authority: None,
            lineage: None,
            method: None,
            url: None,
            reason: None,
            detail: bounded_owned(detail.into(), MAX_DETAIL),
        }
    }

    /// The record for a denial of `method url`, where `url` is canonical or raw guest text.
    /// Its detail ends with the denial's fix-it hint, if it has one (`; hint: add POST to
    /// methods of authority gh (policy/app.toml:12)`), within the same `MAX_DETAIL`.
    pub fn denied(sandbox: &str, denial: &Denial, method: &str, url: &str) -> Record {
        let detail = match &denial.fix {
            None => denial.detail.clone(),
            Some(fix) => with_hint(&denial.detail, &fix.to_string()),
        };
        let mut r = Record::new(Event::RequestDenied, sandbox, detail);
        r.reason = Some(denial.reason);
        r.method = Some(bounded_method(method));
        r.url = Some(redact_url(url));
        if let Some(a) = &denial.authority {
            r = r.on(a);
        }
        r
    }

    /// Attach the authority a record is about.
    pub(crate) fn on(mut self, authority: &AuthorityRef) -> Record {
        self.authority = Some(authority.name.to_string());
        self.lineage = Some(authority.lineage.to_string());
        self
    }

    /// The record as one JSON line, newline included.
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("records always serialize");
        line.push(b'\n');
        line
    }
}

/// What separates a denial's detail from its hint.
pub(crate) const HINT_SEPARATOR: &str = "; hint: ";
/// Longest hint kept in a record (it quotes the request's path).
const MAX_HINT: usize = 1024;
/// Room [`bounded`]'s note of what it cut may take.
const CUT_NOTE: usize = 32;

/// `detail; hint: hint`, at most [`MAX_DETAIL`] once JSON-escaped: the hint is kept whole up to
/// [`MAX_HINT`] and the detail cut first, so a long detail never hides the hint.
pub(crate) fn with_hint(detail: &str, hint: &str) -> String {
    with_tail(detail, HINT_SEPARATOR, hint)
}

/// `detail` + `separator` + `tail`, bounded like [`with_hint`].
pub(crate) fn with_tail(detail: &str, separator: &str, tail: &str) -> String {
    let tail = bounded(tail, MAX_HINT);
    let room = MAX_DETAIL - escaped_width(&tail) - separator.len() - CUT_NOTE;
    format!("{}{separator}{tail}", bounded(detail, room))
}

/// Bytes a character takes once JSON-escaped.
fn escaped_char_width(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_width(s: &str) -> usize {
    s.chars().map(escaped_char_width).sum()
}

/// A method as records keep it: at most 64 bytes (a guest's method is any token).
pub(crate) fn bounded_method(method: &str) -> String {
    bounded(method, 64)
}

/// `s` itself when it fits (no copy), else cut like [`bounded`].
fn bounded_owned(s: String, max: usize) -> String {
    if s.len() <= max {
        s
    } else {
        bounded(&s, max)
    }
}

/// `s` cut so that it takes at most `max` bytes *once JSON-escaped* (a control character
/// escapes to six bytes, `"` and `\\` to two), with a note of how much was cut: a record's size
/// is bounded by what it writes, not by what the guest sent.
fn bounded(s: &str, max: usize) -> String {
    let width = escaped_char_width;
    let mut escaped = 0;
    let mut end = s.len();
    for (i, c) in s.char_indices() {
        escaped += width(c);
        if escaped > max {
            end = i;
            break;
        }
    }
    if end == s.len() {
        return s.to_string();
    }
    format!("{}...[{} more bytes]", &s[..end], s.len() - end)
}

/// A URL fit for the log: userinfo replaced by `[redacted]`, length bounded.
/// Canonical URLs never carry userinfo; raw guest text might.
pub fn redact_url(url: &str) -> String {
    // The authority starts after `scheme:` and any run of slashes or backslashes (the WHATWG
    // parser reads `https:/u:p@host`, `https:\\u:p@host` and `https:u:p@host` as userinfo too).
    let redacted = match url.split_once(':') {
        Some((scheme, rest)) if !scheme.is_empty() && !scheme.contains(['/', '@']) => {
            let slashes = rest.len() - rest.trim_start_matches(['/', '\\']).len();
            let (lead, authority) = rest.split_at(slashes);
            let end = authority
                .find(['/', '?', '#', '\\'])
                .unwrap_or(authority.len());
            match authority[..end].rfind('@') {
                Some(at) => format!("{scheme}:{lead}[redacted]{}", &authority[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    };
    bounded(&redacted, MAX_RAW_URL)
}

/// Where records go: a file, stderr, or any writer. Records are written whole and in order, so
/// concurrent guests never interleave them. A sink that can block (stderr, a file, a pipe) is
/// written by a thread of its own (the `writer` module), so that a reader who stops reading can never
/// hold a guest past its wall clock; an in-memory sink is written in place.
pub struct AuditLog {
    health: Arc<Health>,
    /// Set to have a file sink reopened by its path before its next write (SIGHUP under
    /// `urlcap serve`, for logrotate); `None` for sinks that are not files.
    reopen: Option<Arc<AtomicBool>>,
    /// Shared by every view of the log ([`AuditLog::for_request`]): one sink, one order.
    sink: Arc<Sink>,
    log_allowed: bool,
    /// Stamped on every record written through this view (`urlcap serve`: the request's id).
    request_id: Option<Arc<str>>,
}

enum Sink {
    /// Written under a lock by whoever records: for sinks that never block.
    InPlace(Mutex<Box<dyn Write + Send>>),
    /// Queued for the writer thread, which hands the sink back when it ends.
    Queued {
        queue: Arc<writer::Queue>,
        thread: Mutex<Option<std::thread::JoinHandle<Box<dyn Write + Send>>>>,
    },
}

/// What the log knows of its own state, shared with its writer thread.
struct Health {
    dropped: AtomicU64,
    written: AtomicU64,
    /// Fail closed (the default): once a record cannot be written, [`AuditLog::has_failed`]
    /// says so, and the host denies every request and stops its sandboxes.
    fail_closed: AtomicBool,
    failed: AtomicBool,
    on_failure: tokio::sync::Notify,
}

impl Health {
    fn lost(&self, records: u64) {
        let first = self.dropped.fetch_add(records, Ordering::Relaxed) == 0;
        if self.fail_closed.load(Ordering::Relaxed) {
            self.failed.store(true, Ordering::SeqCst);
            self.on_failure.notify_waiters();
        } else if first {
            warn("urlcap: warning: an audit record could not be written; continuing (audit fails open)");
        }
    }
}

fn append_to(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// A file appended to, opened again by its path when asked — only where a line ends, so a
/// record the writer hands over in pieces is never split across the old file and the new.
struct ReopenableFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    reopen: Arc<AtomicBool>,
    /// Did the last write end a line (or was nothing written yet)?
    at_line_start: bool,
}

impl Write for ReopenableFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.at_line_start && self.reopen.swap(false, Ordering::SeqCst) {
            match append_to(&self.path) {
                Ok(file) => self.file = file,
                Err(e) => warn(&format!(
                    "urlcap: warning: cannot reopen {}: {e}; still writing to the file it was",
                    self.path.display()
                )),
            }
        }
        let written = self.file.write(bytes)?;
        if written > 0 {
            self.at_line_start = bytes[written - 1] == b'\n';
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Say `line` on stderr, but wait for it at most a moment: stderr may be the audit sink that
/// stopped taking records (its writer thread then holds it), and a warning must never hang
/// the process.
pub fn warn(line: &str) {
    let line = format!("{line}\n");
    let (said, heard) = std::sync::mpsc::channel();
    let spoke = std::thread::Builder::new()
        .name("urlcap-warn".into())
        .spawn(move || {
            let _ = io::stderr().write_all(line.as_bytes());
            let _ = said.send(());
        });
    if spoke.is_ok() {
        let _ = heard.recv_timeout(Duration::from_millis(500));
    }
}

impl writer::Outcome for Health {
    fn written(&self, records: u64) {
        self.written.fetch_add(records, Ordering::Relaxed);
    }
    fn failed(&self, records: u64) {
        if records > 0 {
            self.lost(records);
        }
    }
}

impl AuditLog {
    /// A log written in place, by whoever records: for a sink that never blocks (memory, a
    /// channel). A sink that can block belongs in [`AuditLog::threaded`].
    pub fn new(sink: Box<dyn Write + Send>) -> AuditLog {
        AuditLog::with_sink(Sink::InPlace(Mutex::new(sink)))
    }

    /// A log written by a thread of its own, for a sink that can block.
    pub fn threaded(mut sink: Box<dyn Write + Send>) -> io::Result<AuditLog> {
        let queue = Arc::new(writer::Queue::new());
        let log = AuditLog::with_sink(Sink::Queued {
            queue: queue.clone(),
            thread: Mutex::new(None),
        });
        let health = log.health.clone();
        let thread = std::thread::Builder::new()
            .name("urlcap-audit".into())
            .spawn(move || {
                queue.run(&mut *sink, &*health);
                sink
            })?;
        if let Sink::Queued { thread: slot, .. } = &*log.sink {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        }
        Ok(log)
    }

    fn with_sink(sink: Sink) -> AuditLog {
        AuditLog {
            health: Arc::new(Health {
                dropped: AtomicU64::new(0),
                written: AtomicU64::new(0),
                fail_closed: AtomicBool::new(true),
                failed: AtomicBool::new(false),
                on_failure: tokio::sync::Notify::new(),
            }),
            reopen: None,
            sink: Arc::new(sink),
            log_allowed: false,
            request_id: None,
        }
    }

    /// A view of this log for one incoming request (`urlcap serve`): the same sink, health
    /// and settings, and every record written through it carries `request_id`. Whatever holds
    /// the view (the request's sandbox, its nested sandboxes, bodies still streaming) records
    /// under that id without knowing it.
    pub fn for_request(&self, request_id: &str) -> AuditLog {
        AuditLog {
            health: self.health.clone(),
            reopen: self.reopen.clone(),
            sink: self.sink.clone(),
            log_allowed: self.log_allowed,
            request_id: Some(request_id.into()),
        }
    }

    /// The request id this view stamps on its records, if it is a request's view.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Keep running when a record cannot be written (counted, and said on stderr) instead of
    /// stopping: for users who would rather lose records than stop the guest.
    pub fn fail_open(self) -> AuditLog {
        self.health.fail_closed.store(false, Ordering::Relaxed);
        self
    }

    /// Has a record failed to be written while the log fails closed? From then on nothing
    /// more may be allowed.
    pub fn has_failed(&self) -> bool {
        self.health.failed.load(Ordering::SeqCst)
    }

    /// Resolves once the log has failed (at once if it already has).
    pub(crate) async fn failure(&self) {
        let notified = self.health.on_failure.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if self.has_failed() {
            return;
        }
        notified.await
    }

    /// Append to `path`, creating it if needed. [`AuditLog::reopen`] makes the log open `path`
    /// again before its next write (after logrotate moved the file away).
    pub fn to_file(path: &Path) -> io::Result<AuditLog> {
        let reopen = Arc::new(AtomicBool::new(false));
        let file = ReopenableFile {
            file: append_to(path)?,
            path: path.to_path_buf(),
            reopen: reopen.clone(),
            at_line_start: true,
        };
        let mut log = AuditLog::threaded(Box::new(file))?;
        log.reopen = Some(reopen);
        Ok(log)
    }

    /// Open the file again by its path before the next write, if this log writes to a file
    /// (`urlcap serve` on SIGHUP): records go on to the file now at that path. If it cannot be
    /// opened, the log keeps writing where it was (and says so on stderr).
    pub fn reopen(&self) {
        if let Some(reopen) = &self.reopen {
            reopen.store(true, Ordering::SeqCst);
        }
    }

    /// Records to standard error (`--audit -`, the default), written by the log's own thread
    /// so a terminal or pipe that stops reading never holds a guest.
    pub fn stderr() -> io::Result<AuditLog> {
        AuditLog::threaded(Box::new(io::stderr()))
    }

    /// Also record allowed requests (`request.allowed`).
    pub fn with_allowed(mut self, on: bool) -> AuditLog {
        self.log_allowed = on;
        self
    }

    pub(crate) fn logs_allowed(&self) -> bool {
        self.log_allowed
    }

    /// Write one record (or queue it for the writer). A failing sink is counted, never ignored.
    pub fn record(&self, record: &Record) {
        self.append(record);
    }

    /// Return once every record appended so far is written (or counted as lost): what an
    /// allowed request waits for before it is sent, so that a log that failed on any earlier
    /// record allows nothing after it. At once when nothing is pending (the usual case).
    pub(crate) async fn all_written(&self) {
        if let Sink::Queued { queue, .. } = &*self.sink {
            let through = queue.queued();
            self.wait_for(|queue| queue.settled(through)).await;
        }
    }

    /// Write one record and return once it is written (or counted as lost): what a request
    /// that is allowed only while the log works waits for before it goes on.
    pub(crate) async fn record_written(&self, record: &Record) {
        if let Some(number) = self.append(record) {
            self.wait_for(|queue| queue.settled(number)).await;
        }
    }

    /// Append `record`; its number in the queue if it was queued.
    fn append(&self, record: &Record) -> Option<u64> {
        if record.event == Event::RequestAllowed && !self.log_allowed {
            return None;
        }
        let line = match &self.request_id {
            Some(id) if record.request_id.is_none() => {
                let mut stamped = record.clone();
                stamped.request_id = Some(id.to_string());
                stamped.to_line()
            }
            _ => record.to_line(),
        };
        match &*self.sink {
            Sink::InPlace(sink) => {
                let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
                match sink.write_all(&line).and_then(|()| sink.flush()) {
                    Ok(()) => {
                        self.health.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        drop(sink);
                        self.health.lost(1);
                    }
                }
                None
            }
            Sink::Queued { queue, .. } => {
                let number = queue.push(&line, true);
                if number.is_none() {
                    self.health.lost(1);
                }
                number
            }
        }
    }

    /// Write bytes that are not a record (a guest's framed stderr line) to the sink, whole,
    /// in the same order as records, so neither can land inside the other.
    pub(crate) fn write_beside(&self, bytes: &[u8]) {
        match &*self.sink {
            Sink::InPlace(sink) => {
                let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
                let _ = sink.write_all(bytes).and_then(|()| sink.flush());
            }
            Sink::Queued { queue, .. } => {
                let _ = queue.push(bytes, false);
            }
        }
    }

    /// Are guests running ahead of the sink? Then each waits for [`AuditLog::room`] at its
    /// next epoch tick, so what a guest makes the log hold is bounded.
    pub(crate) fn backlogged(&self) -> bool {
        match &*self.sink {
            Sink::InPlace(_) => false,
            Sink::Queued { queue, .. } => {
                queue.backlogged() && (self.fails_closed() || !queue.stalled())
            }
        }
    }

    fn fails_closed(&self) -> bool {
        self.health.fail_closed.load(Ordering::Relaxed)
    }

    /// Resolves once the backlog has drained below the mark (or the log has failed, or with
    /// `--audit-fail-open` the sink has stalled). Only an `await`: a guest's wall clock ends it.
    pub(crate) async fn room(&self) {
        self.wait_for(|queue| !queue.backlogged()).await
    }

    /// Wait until `done(queue)` holds, the log fails, or the sink stalls (which fails the log
    /// when it fails closed). In-place logs are never waited for.
    async fn wait_for(&self, done: impl Fn(&writer::Queue) -> bool) {
        let Sink::Queued { queue, .. } = &*self.sink else {
            return;
        };
        queue
            .wait_until(|| {
                if done(queue) || self.has_failed() {
                    return true;
                }
                let stalled = queue.stalled();
                if stalled && self.fails_closed() {
                    self.health.failed.store(true, Ordering::SeqCst);
                    self.health.on_failure.notify_waiters();
                }
                stalled
            })
            .await
    }

    /// Records written so far (the tests' view of the writer's progress).
    #[cfg(test)]
    fn written(&self) -> u64 {
        self.health.written.load(Ordering::Relaxed)
    }

    /// Records that could not be written so far.
    pub fn dropped(&self) -> u64 {
        self.health.dropped.load(Ordering::Relaxed)
    }

    /// Wait until everything recorded so far is written (or the sink has stalled).
    pub fn flush(&self) {
        if let Sink::Queued { queue, .. } = &*self.sink {
            queue.drain();
        }
    }

    /// Write everything still queued, and if anything was lost, say so in a last record and
    /// on stderr. A sink that has stalled is waited for at most `writer::STALL_LIMIT`.
    pub fn finish(&self, sandbox: &str) -> io::Result<()> {
        let mut sink_back = None;
        if let Sink::Queued { queue, thread } = &*self.sink {
            let stuck = queue.close_and_drain();
            if stuck > 0 {
                self.health.lost(stuck);
            }
            let thread = thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            // A writer still stuck in `write` is left behind; the process is ending.
            if stuck == 0 {
                sink_back = thread.and_then(|t| t.join().ok());
            }
        }
        let dropped = self.dropped();
        if dropped > 0 {
            warn(&format!(
                "urlcap: warning: {dropped} audit records could not be written"
            ));
        }
        let write_last = |sink: &mut dyn Write| -> io::Result<()> {
            if dropped > 0 {
                let record = Record::new(
                    Event::AuditDropped,
                    sandbox,
                    format!("{dropped} audit records could not be written"),
                );
                sink.write_all(&record.to_line())?;
            }
            sink.flush()
        };
        match (&*self.sink, sink_back) {
            (Sink::InPlace(sink), _) => {
                write_last(&mut **sink.lock().unwrap_or_else(|p| p.into_inner()))
            }
            (Sink::Queued { .. }, Some(mut sink)) => write_last(&mut *sink),
            (Sink::Queued { .. }, None) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the audit sink stopped taking records",
            )),
        }
    }
}

impl Drop for Sink {
    /// A log dropped without [`AuditLog::finish`] still writes what it queued (bounded by a
    /// stall), so an embedder that forgets loses nothing it could have kept.
    fn drop(&mut self) {
        if let Sink::Queued { queue, thread } = self {
            if queue.close_and_drain() == 0 {
                if let Some(t) = thread.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = t.join();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that always fails.
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn fields_are_bounded_by_their_escaped_size_and_userinfo_is_redacted_in_any_spelling() {
        for raw in [
            "\u{1}".repeat(5000),
            "\\".repeat(5000),
            "\"".repeat(5000),
            "é".repeat(5000),
        ] {
            let cut = bounded(&raw, 2048);
            let escaped = serde_json::to_string(&cut).unwrap();
            assert!(
                escaped.len() <= 2048 + 40,
                "{} bytes escaped",
                escaped.len()
            );
        }
        for url in [
            "https://u:SECRET@a.com/x",
            "https:/u:SECRET@a.com/x",
            "https:\\\\u:SECRET@a.com/x",
            "https:u:SECRET@a.com/x",
            "http://a:b@c:SECRET@a.com/",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("SECRET"), "{url} -> {shown}");
            assert!(shown.contains("[redacted]@a.com"), "{url} -> {shown}");
        }
        assert_eq!(
            redact_url("https://a.com:8443/x@y"),
            "https://a.com:8443/x@y"
        );
    }

    #[test]
    fn a_hint_ends_the_detail_and_both_stay_within_the_bound() {
        let short = with_hint(
            "path /v2 is not under /v1/",
            "add path prefix /v2 to authority a",
        );
        assert_eq!(
            short,
            "path /v2 is not under /v1/; hint: add path prefix /v2 to authority a"
        );
        for (detail, hint) in [
            ("d".repeat(5000), "h".repeat(10)),
            ("\u{1}".repeat(3000), "h".repeat(5000)),
            ("d".repeat(10), "\"".repeat(5000)),
        ] {
            let both = with_hint(&detail, &hint);
            assert!(
                escaped_width(&both) <= MAX_DETAIL,
                "{}",
                escaped_width(&both)
            );
            let (_, kept) = both.split_once(HINT_SEPARATOR).expect("the hint is kept");
            assert!(kept.starts_with(&hint[..hint.len().min(100)]));
            let mut denial = Denial::new(Reason::PathNotAllowed, detail);
            denial.fix = None;
            let record = Record::denied("s", &denial, "GET", "https://a.example/");
            assert!(escaped_width(&record.detail) <= MAX_DETAIL + CUT_NOTE);
        }
    }

    /// logrotate moves the file away and sends SIGHUP: records before go to the moved file,
    /// records after to a new file at the path, none split or lost.
    #[test]
    fn reopen_switches_to_a_new_file_at_the_path_between_records() {
        let dir = std::env::temp_dir().join(format!("urlcap-reopen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, moved) = (dir.join("audit.jsonl"), dir.join("audit.jsonl.1"));
        let log = AuditLog::to_file(&path).unwrap();
        log.record(&Record::new(Event::SandboxSpawned, "before", "a"));
        log.flush();
        std::fs::rename(&path, &moved).unwrap();
        log.reopen();
        log.record(&Record::new(Event::SandboxSpawned, "after", "b"));
        log.finish("s").unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&moved).lines().count(), 1);
        assert!(read(&moved).contains("\"before\""));
        assert_eq!(read(&path).lines().count(), 1);
        assert!(read(&path).contains("\"after\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn denial_record_has_every_contract_field() {
        let denial = Denial::new(Reason::PathNotAllowed, "path /x is not under /v1/");
        let denial = Denial {
            cause: None,
            authority: Some(AuthorityRef {
                name: "gh".into(),
                lineage: "gh/2".into(),
            }),
            ..denial
        };
        let r = Record::denied("s1", &denial, "GET", "https://api.example.com/x");
        let v: serde_json::Value = serde_json::from_slice(&r.to_line()).unwrap();
        for key in [
            "ts",
            "event",
            "sandbox",
            "request_id",
            "authority",
            "lineage",
            "method",
            "url",
            "reason",
            "detail",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["event"], "request.denied");
        assert_eq!(v["reason"], "path_not_allowed");
        assert_eq!(v["lineage"], "gh/2");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn hostile_strings_stay_on_one_escaped_line() {
        let denial = Denial::new(Reason::ControlCharacter, "x");
        let r = Record::denied(
            "s",
            &denial,
            "GET\r\n{\"fake\":1}",
            "http://a.com/\n\u{1b}[31mred\r\n",
        );
        let line = r.to_line();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(!line.contains(&0x1b));
        assert!(!line.contains(&b'\r'));
    }

    #[test]
    fn userinfo_is_redacted_and_length_bounded() {
        assert_eq!(
            redact_url("http://user:hunter2@a.com/x"),
            "http://[redacted]@a.com/x"
        );
        assert_eq!(redact_url("http://a.com/x@y"), "http://a.com/x@y");
        let long = format!("http://a.com/{}", "a".repeat(10_000));
        assert!(redact_url(&long).len() < 2200);
    }

    #[test]
    fn a_threaded_log_writes_in_order_and_counts_what_its_sink_refused() {
        let buf = Shared::default();
        let log = AuditLog::threaded(Box::new(buf.clone())).unwrap();
        for i in 0..1000 {
            log.record(&Record::new(Event::SandboxSpawned, &format!("s{i}"), "a"));
            log.write_beside(b"guest: x\n");
        }
        log.finish("s").unwrap();
        assert_eq!(log.written(), 1000);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let records: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
        assert_eq!(records.len(), 1000);
        assert!(records[999].contains("\"s999\""), "in order");
        assert_eq!(text.lines().count(), 2000);

        let broken = AuditLog::threaded(Box::new(Broken)).unwrap();
        broken.record(&Record::new(Event::SandboxSpawned, "s", "a"));
        broken.flush();
        assert_eq!(broken.dropped(), 1);
        assert!(broken.has_failed(), "it fails closed");
        assert!(broken.finish("s").is_err());
    }

    #[test]
    fn records_are_written_whole_and_drops_are_counted() {
        let buf = Shared::default();
        let log = AuditLog::new(Box::new(buf.clone()));
        log.record(&Record::new(Event::SandboxSpawned, "s", "a"));
        log.record(&Record::new(
            Event::RequestAllowed,
            "s",
            "not logged by default",
        ));
        assert_eq!(log.written(), 1);
        assert_eq!(
            String::from_utf8(buf.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .count(),
            1
        );

        let broken = AuditLog::new(Box::new(Broken));
        broken.record(&Record::new(Event::SandboxSpawned, "s", "a"));
        assert_eq!(broken.dropped(), 1);
        assert!(
            broken.finish("s").is_err(),
            "a sink that cannot take the drop record reports it"
        );
    }
}
