//! One line per served request: when, which request, method, path, status, duration, route.
//!
//! Written through the audit log's writer machinery: beside the audit records when both go to
//! stderr (one ordered stream, so neither can land inside the other), else by a writer thread
//! of its own, so a reader that stops reading never holds a request.

use crate::audit::AuditLog;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where access-log lines go.
pub struct AccessLog {
    sink: Arc<AuditLog>,
}

/// Longest path kept on a line (request targets are client text).
const MAX_PATH: usize = 1024;

impl AccessLog {
    /// Lines written beside `audit`'s records, in its order (both on stderr).
    pub fn beside(audit: Arc<AuditLog>) -> AccessLog {
        AccessLog { sink: audit }
    }

    /// Lines appended to `path` by a thread of their own.
    pub fn to_file(path: &std::path::Path) -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            sink: Arc::new(AuditLog::to_file(path)?),
        })
    }

    /// Lines written in place to `sink`, which must never block (memory, a channel).
    pub fn to_writer(sink: Box<dyn std::io::Write + Send>) -> AccessLog {
        AccessLog {
            sink: Arc::new(AuditLog::new(sink)),
        }
    }

    /// Lines to stderr by a thread of their own.
    pub fn stderr() -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            sink: Arc::new(AuditLog::stderr()?),
        })
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
        self.sink.write_beside(line.as_bytes());
    }

    /// Wait until every line so far is written (or the sink has stalled).
    pub fn flush(&self) {
        self.sink.flush();
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
