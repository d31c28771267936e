//! Proof that the policy said yes.
//!
//! Egress accepts only an [`Approved`] request, and only [`super::Authority::authorize`] and
//! [`super::Policy::authorize`] can make one (its fields are private to the policy). So no code
//! path can open a connection for a request the policy did not admit: the choke point is
//! enforced by the type system, not by convention.

use super::authority::Authority;
use super::request::Request;

/// A request the policy admitted (budget and rate already spent), with the authority that
/// admitted it.
#[derive(Debug)]
pub struct Approved {
    authority: Authority,
    request: Request,
}

impl Approved {
    pub(crate) fn new(authority: Authority, request: Request) -> Approved {
        Approved { authority, request }
    }

    /// The handle whose grant admitted the request: its limits, IP exceptions and injected
    /// headers apply.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub(crate) fn into_parts(self) -> (Authority, Request) {
        (self.authority, self.request)
    }
}
