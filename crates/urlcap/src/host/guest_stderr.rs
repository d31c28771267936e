//! A guest's stderr when it shares the host's stderr with the audit log (`--audit -`, the
//! default): the guest must not be able to forge an audit record, split one, or swallow one
//! into a line it left unterminated. So its bytes are gathered into lines, and each whole line
//! is written prefixed `guest: ` (so it can never be read as a JSON record) under the audit
//! log's own lock (so it never lands inside a record). A line longer than 64 KiB is cut; an
//! unterminated last line is written, terminated, when the sandbox ends.

use crate::audit::AuditLog;
use std::sync::{Arc, Mutex};

/// Longest guest line written as one; longer ones are cut into pieces of this size.
const MAX_LINE: usize = 64 << 10;
/// What every guest line starts with on the shared stream.
const PREFIX: &[u8] = b"guest: ";

/// The guest's stderr, framed into prefixed lines beside the audit log.
#[derive(Clone)]
pub(crate) struct BesideAudit {
    lines: Arc<Lines>,
}

struct Lines {
    audit: Arc<AuditLog>,
    partial: Mutex<Vec<u8>>,
}

impl BesideAudit {
    pub(crate) fn new(audit: Arc<AuditLog>) -> BesideAudit {
        BesideAudit {
            lines: Arc::new(Lines {
                audit,
                partial: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl Lines {
    /// Gather `bytes` into lines; the whole lines of one write go out in one write.
    fn write(&self, mut bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let room = MAX_LINE - partial.len();
            // Only the current line's window is searched: a write costs its own length.
            let window = &bytes[..bytes.len().min(room)];
            let (line, rest, ended) = match window.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => (&bytes[..i], &bytes[i + 1..], true),
                _ if bytes.len() >= room => (&bytes[..room], &bytes[room..], true),
                _ => (bytes, &b""[..], false),
            };
            partial.extend_from_slice(line);
            if ended {
                frame(&mut out, &mut partial);
            }
            bytes = rest;
        }
        if !out.is_empty() {
            self.audit.write_beside(&out);
        }
    }
}

/// Append `partial` to `out` as one prefixed line, and empty it.
fn frame(out: &mut Vec<u8>, partial: &mut Vec<u8>) {
    out.extend_from_slice(PREFIX);
    out.append(partial);
    out.push(b'\n');
}

impl Drop for Lines {
    fn drop(&mut self) {
        let mut partial = std::mem::take(self.partial.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !partial.is_empty() {
            let mut out = Vec::new();
            frame(&mut out, &mut partial);
            self.audit.write_beside(&out);
        }
    }
}

impl super::capture::Accept for BesideAudit {
    fn accept(&self, bytes: &[u8]) {
        self.lines.write(bytes);
    }

    fn has_room(&self) -> bool {
        !self.lines.audit.backlogged()
    }

    fn wait_for_room(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.lines.audit.room())
    }
}
