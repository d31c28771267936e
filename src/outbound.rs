//! The one choke point for guest requests: canonicalize → policy → egress, with every denial,
//! at whatever step, written to the audit log exactly once.
//!
//! Both guest APIs go through here: `wasi:http` guests with absolute URLs ([`Outbound::send`],
//! matched to a preopened authority) and native guests through a handle
//! ([`Outbound::send_via`]). A denial that happens after the response head — a body over its
//! cap, a stall, a reset — is audited when the guest's read fails.

use crate::audit::{AuditLog, Event, Record};
use crate::egress::{Client, RequestBody, Response};
use crate::policy::{Approved, Authority, Denial, Policy, Request};
use std::sync::Arc;

/// A request as a guest asked for it, before anything was checked.
#[derive(Debug, Clone, Default)]
pub struct GuestRequest {
    pub method: String,
    /// Absolute URL.
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body length, when the guest declared it.
    pub body_len: Option<u64>,
}

impl GuestRequest {
    pub fn new(method: &str, url: &str) -> GuestRequest {
        GuestRequest {
            method: method.to_string(),
            url: url.to_string(),
            ..GuestRequest::default()
        }
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> GuestRequest {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// Canonicalize: method, URL and headers checked as the policy requires.
    fn canonical(&self) -> Result<Request, Denial> {
        let request = Request::new(&self.method, &self.url)?;
        let request = self
            .headers
            .iter()
            .try_fold(request, |r, (k, v)| r.header(k, v))?;
        Ok(match self.body_len {
            Some(n) => request.with_body_len(n),
            None => request,
        })
    }
}

/// Policy, egress and audit for one sandbox.
pub struct Outbound {
    policy: Arc<Policy>,
    client: Client,
    audit: Arc<AuditLog>,
    sandbox: Arc<str>,
}

impl Outbound {
    pub fn new(
        policy: Arc<Policy>,
        client: Client,
        audit: Arc<AuditLog>,
        sandbox: &str,
    ) -> Outbound {
        Outbound {
            policy,
            client,
            audit,
            sandbox: sandbox.into(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// An absolute-URL request, matched to the preopened authority that allows it.
    pub async fn send(&self, guest: &GuestRequest, body: RequestBody) -> Result<Response, Denial> {
        let canonical = guest.canonical();
        let url = canonical
            .as_ref()
            .map_or_else(|_| guest.url.clone(), |r| r.url.to_string());
        let approved = canonical.and_then(|r| self.policy.authorize(r));
        self.send_approved(approved, body, &guest.method, url).await
    }

    /// A request through one handle (and nothing else the sandbox holds).
    pub async fn send_via(
        &self,
        authority: &Authority,
        guest: &GuestRequest,
        body: RequestBody,
    ) -> Result<Response, Denial> {
        let canonical = guest.canonical();
        let url = canonical
            .as_ref()
            .map_or_else(|_| guest.url.clone(), |r| r.url.to_string());
        let approved = canonical
            .and_then(|r| authority.authorize(r))
            .map_err(|mut d| {
                d.authority
                    .get_or_insert_with(|| authority.reference().clone());
                d
            });
        self.send_approved(approved, body, &guest.method, url).await
    }

    async fn send_approved(
        &self,
        approved: Result<Approved, Denial>,
        body: RequestBody,
        method: &str,
        url: String,
    ) -> Result<Response, Denial> {
        let result = match approved {
            Ok(approved) => {
                let reference = approved.authority().reference().clone();
                self.client
                    .send(approved, body)
                    .await
                    .map(|r| (r, reference))
            }
            Err(denial) => Err(denial),
        };
        match result {
            Err(denial) => {
                self.audit
                    .record(&Record::denied(&self.sandbox, &denial, method, &url));
                Err(denial)
            }
            Ok((mut response, reference)) => {
                if self.audit.logs_allowed() {
                    let mut record = Record::new(
                        Event::RequestAllowed,
                        &self.sandbox,
                        format!("status {}", response.status().as_u16()),
                    )
                    .on(&reference);
                    record.method = Some(method.to_string());
                    record.url = Some(url.clone());
                    self.audit.record(&record);
                }
                let (audit, sandbox, method) =
                    (self.audit.clone(), self.sandbox.clone(), method.to_string());
                response.body_mut().on_error(Box::new(move |denial| {
                    audit.record(&Record::denied(&sandbox, denial, &method, &url))
                }));
                Ok(response)
            }
        }
    }
}
