//! The one choke point for guest requests: canonicalize → policy → egress, with every denial,
//! at whatever step, written to the audit log exactly once.
//!
//! Both guest APIs go through here: `wasi:http` guests with absolute URLs ([`Outbound::send`],
//! matched to a preopened authority) and native guests through a handle
//! (`Outbound::fetch_buffered`). A denial that happens after the response head — a body over its
//! cap, a stall, a reset — is audited when the guest's read fails.

use crate::audit::{AuditLog, Event, Record};
use crate::egress::{Client, RequestBody, Response, Timeouts};
use crate::learn::{Learner, Lesson};
use crate::policy::{Approved, Authority, Denial, HandleTable, Request};
use std::sync::Arc;

/// A request as a guest asked for it, before anything was checked. Its fields are open on
/// purpose: it is raw guest input, and [`Outbound::send`] canonicalizes it into a
/// [`Request`] (whose fields are closed) before the policy sees it.
#[derive(Debug, Clone, Default)]
pub struct GuestRequest {
    /// The method as the guest wrote it (checked to be an HTTP token, never CONNECT).
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Header names and values as the guest gave them, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body length, when the guest declared it.
    pub body_len: Option<u64>,
}

impl GuestRequest {
    /// A request with no headers and no declared body length.
    pub fn new(method: &str, url: &str) -> GuestRequest {
        GuestRequest {
            method: method.to_string(),
            url: url.to_string(),
            ..GuestRequest::default()
        }
    }

    /// Add a header, unchecked (checking is the policy's, at [`Outbound::send`]).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> GuestRequest {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// Canonicalize: method, URL and headers checked as the policy requires.
    pub(crate) fn canonicalize(&self) -> Result<Request, Denial> {
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

/// A response read whole (the native guest API buffers bodies).
#[derive(Debug, Clone)]
pub(crate) struct Buffered {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Policy, egress and audit for one sandbox: its handle table (what it may reach), the egress
/// client (shared with its parent and children, so their in-flight requests count together)
/// and the audit log, recording under the sandbox's id.
///
/// An `Outbound` holds no [`crate::policy::Policy`]: a request is matched only against the
/// handles preopened for this sandbox, never against the root grants unless the host preopened
/// them for it. A nested sandbox gets its own `Outbound` with its own table
/// (`Outbound::for_child`).
pub struct Outbound {
    handles: HandleTable,
    client: Client,
    audit: Arc<AuditLog>,
    sandbox: Arc<str>,
    /// Learn mode (`urlcap run --learn`): requests the grants deny but could have allowed are
    /// let through and recorded. Only ever set on a top-level sandbox's path.
    learner: Option<Arc<Learner>>,
}

impl Outbound {
    /// The outbound path of sandbox `sandbox`, which may reach what `handles` allow.
    pub fn new(
        handles: HandleTable,
        client: Client,
        audit: Arc<AuditLog>,
        sandbox: &str,
    ) -> Outbound {
        Outbound {
            handles,
            client,
            audit,
            sandbox: sandbox.into(),
            learner: None,
        }
    }

    /// This path in learn mode: a request its handles deny is let through where the manifest
    /// could have allowed it (see [`crate::learn`]) and recorded in `learner`. Only for the
    /// policy's own table of roots (a top-level sandbox); a nested sandbox made from this one
    /// ([`Outbound::for_child`]) does not learn.
    pub(crate) fn learning(mut self, learner: Arc<Learner>) -> Outbound {
        if self.handles.holds_roots() {
            self.learner = Some(learner);
        }
        self
    }

    /// The outbound path of a nested sandbox `sandbox` that holds exactly `handles`: the same
    /// egress client (its requests count against the same in-flight limits) and audit log.
    pub(crate) fn for_child(&self, sandbox: &str, handles: HandleTable) -> Outbound {
        Outbound::new(handles, self.client.clone(), self.audit.clone(), sandbox)
    }

    /// The outbound path of one served request (`urlcap serve`): `handles` (fresh children of
    /// its route's authorities), the same egress client (in-flight requests count across the
    /// server), and `audit`, the request's view of the log, which stamps its `request_id`.
    pub(crate) fn for_request(
        &self,
        sandbox: &str,
        handles: HandleTable,
        audit: Arc<AuditLog>,
    ) -> Outbound {
        Outbound::new(handles, self.client.clone(), audit, sandbox)
    }

    /// The same handles, recording under another id (a top-level sandbox named by its host).
    pub(crate) fn renamed(&self, sandbox: &str) -> Outbound {
        let mut renamed = self.for_child(sandbox, self.handles.clone());
        renamed.learner = self.learner.clone();
        renamed
    }

    /// The sandbox id its audit records carry.
    pub(crate) fn sandbox(&self) -> &str {
        &self.sandbox
    }

    /// The handles preopened for this sandbox, under the names it sees.
    pub fn handles(&self) -> &HandleTable {
        &self.handles
    }

    /// Where this sandbox's records go (shared with its nested sandboxes).
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// An absolute-URL request, matched to the handle of this sandbox that allows it.
    pub async fn send(&self, guest: &GuestRequest, body: RequestBody) -> Result<Response, Denial> {
        self.send_with(guest, body, Timeouts::default()).await
    }

    /// [`Outbound::send`] with the guest's own timeouts (they can only tighten egress's).
    pub(crate) async fn send_with(
        &self,
        guest: &GuestRequest,
        body: RequestBody,
        timeouts: Timeouts,
    ) -> Result<Response, Denial> {
        let canonical = guest.canonicalize();
        let url = canonical
            .as_ref()
            .map_or_else(|_| guest.url.clone(), |r| r.url().to_string());
        let (approved, lesson) = match canonical {
            Err(denial) => (Err(denial), None),
            Ok(r) => match self.handles.authorize_or_return(r) {
                Ok(approved) => (Ok(approved), None),
                Err((denial, req)) => {
                    let fix = self.handles.fix(&denial, &req);
                    self.refused(denial, fix, req)
                }
            },
        };
        self.send_approved(approved, lesson, body, &guest.method, url, timeouts)
            .await
    }

    /// A request the policy denied: its hint attached; in learn mode, let through if it may
    /// be learned.
    fn refused(
        &self,
        mut denial: Denial,
        fix: Option<crate::policy::Fix>,
        req: Request,
    ) -> (Result<Approved, Denial>, Option<Lesson>) {
        denial.fix = fix.map(Box::new);
        match &self.learner {
            None => (Err(denial), None),
            Some(learner) => match learner.admit(denial, req) {
                Ok((approved, lesson)) => (Ok(approved), Some(lesson)),
                Err(denial) => (Err(denial), None),
            },
        }
    }

    /// A request relative to one handle's origin (the native guest API), with the response
    /// body read whole, up to `cap` bytes (the host's bound on what it buffers for a guest, on
    /// top of the authority's own `max_response_body`).
    pub(crate) async fn fetch_buffered(
        &self,
        authority: &Authority,
        method: &str,
        path_and_query: &str,
        headers: &[(String, Vec<u8>)],
        body: Vec<u8>,
        cap: u64,
    ) -> Result<Buffered, Denial> {
        let canonical = authority
            .relative_request(method, path_and_query)
            .and_then(|r| headers.iter().try_fold(r, |r, (k, v)| r.header(k, v)))
            .map(|r| r.with_body_len(body.len() as u64));
        // What the audit shows: the canonical URL, or as the guest wrote it when it is not one
        // (worded only then).
        let url = canonical.as_ref().map_or_else(
            |_| format!("{}{path_and_query}", authority.grant().origin),
            |r| r.url().to_string(),
        );
        let (approved, lesson) = match canonical {
            Err(denial) => (Err(denial), None),
            Ok(r) => match authority.authorize_or_return(r) {
                Ok(approved) => (Ok(approved), None),
                Err((denial, req)) => {
                    let fix = authority.fix(&denial, &req);
                    self.refused(denial, fix, req)
                }
            },
        };
        let approved = approved.map_err(|mut d| {
            d.authority
                .get_or_insert_with(|| authority.reference().clone());
            d
        });
        let response = self
            .send_approved(
                approved,
                lesson,
                crate::egress::full_body(body),
                method,
                url.clone(),
                Timeouts::default(),
            )
            .await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        let limited = http_body_util::Limited::new(
            response.into_body(),
            usize::try_from(cap).unwrap_or(usize::MAX),
        );
        match http_body_util::BodyExt::collect(limited).await {
            Ok(collected) => Ok(Buffered {
                status,
                headers,
                body: collected.to_bytes().into(),
            }),
            // The body's own denials were audited by its hook; only the host's cap is new here.
            Err(e) => {
                match e.downcast::<Denial>() {
                    Ok(denial) => Err(*denial),
                    Err(_) => {
                        let denial = Denial::new(
                        crate::policy::Reason::ResponseBodyTooLarge,
                        format!("response body exceeds the {cap} bytes the host buffers for a guest"),
                    )
                    .on(authority.reference());
                        self.audit
                            .record(&Record::denied(&self.sandbox, &denial, method, &url));
                        Err(denial)
                    }
                }
            }
        }
    }

    async fn send_approved(
        &self,
        approved: Result<Approved, Denial>,
        lesson: Option<Lesson>,
        body: RequestBody,
        method: &str,
        url: String,
        timeouts: Timeouts,
    ) -> Result<Response, Denial> {
        // A log that can no longer be written allows nothing more (it fails closed): an
        // allowed request first waits for every earlier record to be written (at once when
        // none is pending), so a failure on any of them is known before anything is sent.
        if approved.is_ok() {
            self.audit.all_written().await;
        }
        let approved = approved.and_then(|a| {
            if self.audit.has_failed() {
                Err(Denial::new(
                    crate::policy::Reason::AuditUnavailable,
                    "the audit log cannot be written; nothing more is allowed",
                ))
            } else {
                Ok(a)
            }
        });
        let result = match approved {
            Ok(approved) => {
                let reference = approved.authority().reference().clone();
                let in_flight = InFlight {
                    outbound: self,
                    reference: &reference,
                    method,
                    url: &url,
                    done: false,
                };
                let sent = self.client.send(approved, body, timeouts).await;
                in_flight.done();
                sent.map(|r| (r, reference))
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
                let status = response.status().as_u16();
                match (&self.learner, &lesson) {
                    (Some(learner), Some(lesson)) => {
                        learner.learned(lesson);
                        let mut record = Record::new(
                            Event::RequestLearned,
                            &self.sandbox,
                            lesson.detail(status),
                        )
                        .on(&reference);
                        record.method = Some(crate::audit::bounded_method(method));
                        record.url = Some(crate::audit::redact_url(&url));
                        record.reason = Some(lesson.reason());
                        // Like a logged allowed request: written before the guest sees the
                        // response, so nothing let through goes unrecorded.
                        self.audit.record_written(&record).await;
                    }
                    (Some(learner), None) => learner.used(&reference.name),
                    (None, _) => {}
                }
                if lesson.is_none() && self.audit.logs_allowed() {
                    let mut record = Record::new(
                        Event::RequestAllowed,
                        &self.sandbox,
                        format!("status {}", response.status().as_u16()),
                    )
                    .on(&reference);
                    record.method = Some(method.to_string());
                    record.url = Some(crate::audit::redact_url(&url));
                    // Logged allowed requests are written before the guest sees the response,
                    // so a log that fails allows nothing after the request it could not record.
                    self.audit.record_written(&record).await;
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

/// An admitted request on its way: if its future is dropped before egress answers (the guest
/// dropped it, or its sandbox's wall-clock limit ended the run), the audit log still gets its
/// outcome, a `request.aborted` record, from `Drop`.
struct InFlight<'a> {
    outbound: &'a Outbound,
    reference: &'a crate::policy::AuthorityRef,
    method: &'a str,
    url: &'a str,
    done: bool,
}

impl InFlight<'_> {
    fn done(mut self) {
        self.done = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut record = Record::new(
            Event::RequestAborted,
            &self.outbound.sandbox,
            "abandoned before the response arrived: the guest stopped waiting or its sandbox ended",
        )
        .on(self.reference);
        record.method = Some(self.method.to_string());
        record.url = Some(crate::audit::redact_url(self.url));
        self.outbound.audit.record(&record);
    }
}
