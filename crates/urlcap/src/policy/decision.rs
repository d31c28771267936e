//! What the policy says about a request: allow through a named authority, or deny with a reason.

use super::fix::Fix;
use super::reason::Reason;
use std::fmt;
use std::sync::Arc;

/// Which handle a decision was made on: its root name and its lineage (`github/2/5`).
/// Shared strings, so every allowed request can carry one without allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityRef {
    /// The preopen name of the root authority (children keep their root's name).
    pub name: Arc<str>,
    /// Slash-separated path from the root to this handle.
    pub lineage: Arc<str>,
}

/// A refusal: the stable reason code, human detail, and the handle involved when one was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The stable code: what the guest's error, the audit record and `explain` all carry.
    pub reason: Reason,
    /// For people: what was refused and why, quoting the request (never a secret).
    pub detail: String,
    /// The handle the request was judged on, if it got that far (a malformed URL matches none).
    pub authority: Option<AuthorityRef>,
    /// For a transport failure, which one more precisely (the reason code stays coarse and
    /// stable; this picks the `wasi:http` error code a guest sees).
    pub cause: Option<Cause>,
    /// The smallest change to the grants that would have allowed the request, where one
    /// would: for the host's eyes (audit records, `explain`), never shown to the guest.
    /// Filled in by whoever asks for it (`super::HandleTable::fix`), not by the decision.
    pub fix: Option<Box<Fix>>,
}

/// Which transport failure a `timeout` or `tls_failure` denial was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Connecting (TCP and TLS handshake) took too long.
    ConnectTimeout,
    /// The response head or the next body bytes took too long.
    ReadTimeout,
    /// The certificate is not valid for the granted host, or not trusted.
    TlsCertificate,
    /// The TLS exchange itself failed (for instance TLS spoken to a plain-HTTP server).
    TlsProtocol,
}

impl Denial {
    /// A denial naming no handle yet (see [`Denial::on`]) and no transport cause.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Denial {
        Denial {
            reason,
            detail: detail.into(),
            authority: None,
            cause: None,
            fix: None,
        }
    }

    /// The same denial, saying which transport failure it was.
    pub(crate) fn because(mut self, cause: Cause) -> Denial {
        self.cause = Some(cause);
        self
    }

    /// The same denial, on the handle it was judged on (so the audit record can name it).
    pub fn on(mut self, authority: &AuthorityRef) -> Denial {
        self.authority = Some(authority.clone());
        self
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for Denial {}

/// The outcome of checking one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed through this authority.
    Allow(AuthorityRef),
    /// Denied; the denial says why.
    Deny(Denial),
}

impl Decision {
    /// The decision as a `Result`, for `?` and `unwrap_err` where only one side matters.
    pub fn into_result(self) -> Result<AuthorityRef, Denial> {
        match self {
            Decision::Allow(a) => Ok(a),
            Decision::Deny(d) => Err(d),
        }
    }

    /// Was the request allowed?
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// The denial reason, if denied.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Allow(_) => None,
            Decision::Deny(d) => Some(d.reason),
        }
    }
}
