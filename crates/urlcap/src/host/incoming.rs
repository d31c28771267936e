//! Served requests (`urlcap serve`): a `wasi:http/proxy` component's `incoming-handler`, run
//! in a fresh store and instance for every request.
//!
//! The store comes from the same constructor as every other sandbox's (`Shared::store`), so a
//! handler sees what a command sees — wasi:cli without sockets, `wasi:http` and `urlcap:http`
//! through its own [`crate::outbound::Outbound`] — under the same memory and wall-clock limits,
//! applied per request. Nothing survives a request: the instance, its memory and its handles
//! go with the store. A handler that traps, runs out of memory or time, or never answers ends
//! as a [`Failure`] the server turns into a status; it can harm only its own request.

use super::limits::{audit_outcome, outcome_of_error, timeout_outcome};
use super::pulls::{Pulled, Pulls};
use super::sandbox::{before, Ended};
use super::{Outcome, SandboxSpec, SandboxState, WasmHost, EXIT_AUDIT, EXIT_TIMEOUT};
use crate::audit::{Event, Record};
use bytes::Bytes;
use std::time::Duration;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::{HostOutgoingBody, HyperOutgoingBody, StreamContext};
use wasmtime_wasi_http::WasiHttpView;

/// A compiled, linked `wasi:http/proxy` component, ready to be instantiated once per request.
pub type Handler = ProxyPre<SandboxState>;

/// The response a handler gave: its head now, its body as the handler writes it (the
/// handler's instance lives on, within its wall clock, until the body is done, or until its
/// client stops reading it for the send timeout).
pub type HandlerResponse = http::Response<Pulled<HyperOutgoingBody>>;

/// Why a served request got no response from its handler. Each maps to one status
/// ([`Failure::status`]); the text is for the access log and the audit, never a Rust type name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request could not be handed to a handler at all (no authority in the URI and no
    /// `Host` header, or one that is not text): 400.
    BadRequest(String),
    /// The handler trapped, ran out of memory, or returned without setting a response: 500.
    Handler(String),
    /// The handler set an error code instead of a response: 502, as a proxy whose upstream
    /// failed.
    ErrorCode(String),
    /// The wall-clock limit (`[limits] timeout`) ended the handler before it answered: 504.
    TimedOut,
    /// The audit log cannot be written, so nothing runs (it fails closed): 503.
    AuditUnavailable,
    /// The host could not start an instance (for example every pooled slot is in use): 503.
    Unavailable(String),
}

impl Failure {
    /// The status the client gets.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Failure::BadRequest(_) => S::BAD_REQUEST,
            Failure::Handler(_) => S::INTERNAL_SERVER_ERROR,
            Failure::ErrorCode(_) => S::BAD_GATEWAY,
            Failure::TimedOut => S::GATEWAY_TIMEOUT,
            Failure::AuditUnavailable | Failure::Unavailable(_) => S::SERVICE_UNAVAILABLE,
        }
    }

    /// One line for the client.
    pub fn message(&self) -> String {
        match self {
            Failure::BadRequest(why) => format!("bad request: {why}"),
            // What went wrong inside is the operator's to read (the audit's `sandbox.exited`),
            // not the client's.
            Failure::Handler(_) => "the handler failed".into(),
            Failure::ErrorCode(code) => format!("the handler answered with an error: {code}"),
            Failure::TimedOut => "the handler did not answer within its time limit".into(),
            Failure::AuditUnavailable => {
                "the audit log cannot be written; nothing more is served".into()
            }
            Failure::Unavailable(why) => format!("no instance could be started: {why}"),
        }
    }
}

/// The first line of an error's text: wasmtime's errors carry a backtrace of wasm frames on
/// later lines, which is for the operator's debugger, not for a client.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("unknown error").to_string()
}

impl WasmHost {
    /// Compile (with the disk cache) and link a `wasi:http/proxy` component: it must export
    /// `wasi:http/incoming-handler`, and may import anything a command may (including
    /// `urlcap:http`).
    pub fn handler_for(&self, wasm: &[u8]) -> wasmtime::Result<Handler> {
        let component = self.compile(wasm)?;
        ProxyPre::new(self.shared.linker.instantiate_pre(&component)?)
    }

    /// Serve one request with a fresh instance of `handler`, in a sandbox made from `spec`
    /// (its handles, limits and stdio). Returns once the handler has set its response (the
    /// body follows as the handler writes it) or failed. Whatever ends the instance abnormally
    /// — before or after the response head — is audited as `sandbox.exited` with the reason.
    /// `held` (a server's request slot) is kept exactly as long as the instance runs, however
    /// long the client takes to read the body — but a client that takes nothing of the body
    /// for `send_timeout` while the handler still writes it stops the handler (audited), so
    /// clients that stop reading cannot hold slots for whole wall clocks. Dropping the
    /// returned future before the response head stops the instance (the client went away).
    pub async fn handle<B>(
        &self,
        handler: &Handler,
        spec: SandboxSpec,
        request: http::Request<B>,
        held: Option<tokio::sync::OwnedSemaphorePermit>,
        send_timeout: Option<Duration>,
    ) -> Result<HandlerResponse, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let audit = spec.outbound.audit().clone();
        if audit.has_failed() {
            return Err(Failure::AuditUnavailable);
        }
        let quota = crate::policy::HandleQuota::new(
            super::guest_api::MAX_LIVE_HANDLES,
            super::guest_api::MAX_LIVE_HANDLE_BYTES,
        );
        let mut store = self
            .shared
            .store(handler.engine(), &spec, 0, quota)
            .map_err(|e| Failure::Unavailable(first_line(&e.to_string())))?;
        let deadline = store.data().deadline;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // The client's headers reach the handler as wasmtime serve gives them: without the
        // hop-by-hop ones and Host (which becomes the request's authority), and without any
        // header a grant of this sandbox injects (those names are the host's). Stripping them
        // is not the guest's doing, so it is not audited as a refusal.
        store.data_mut().http_hooks.set_auditing(false);
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request);
        store.data_mut().http_hooks.set_auditing(true);
        let incoming = incoming.map_err(|e| Failure::BadRequest(first_line(&e.to_string())))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| Failure::Unavailable(first_line(&e.to_string())))?;
        let (handler, sandbox) = (handler.clone(), spec.outbound.sandbox().to_string());
        let (timeout, memory) = (spec.timeout, spec.memory);
        let pulls = Pulls::new();
        let pulls_seen_by_task = pulls.clone();
        // Its own task, so the handler keeps running after it set the response head, writing
        // the body; its wall clock covers both.
        let task = tokio::spawn(async move {
            let _held_while_the_instance_runs = held;
            let run = async {
                let proxy = handler.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, out)
                    .await
            };
            // `None`: its client stopped taking the body for the send timeout.
            // Biased: a handler that ends as its client's stall is noticed has ended.
            let ended = tokio::select! {
                biased;
                ended = before(deadline, &audit, run) => Some(ended),
                () = pulls_seen_by_task.stalled(send_timeout) => None,
            };
            let outcome = match ended {
                None => stalled_outcome(send_timeout.unwrap_or_default()),
                Some(Ended::Ran(Ok(()))) => Outcome {
                    exit_code: 0,
                    message: None,
                },
                // The host's instance pools are full: the server's state, not the handler's.
                Some(Ended::Ran(Err(e)))
                    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                        .is_some() =>
                {
                    drop(store);
                    return None;
                }
                Some(Ended::Ran(Err(e))) => {
                    let memory_hit = memory.filter(|_| store.data().limiter.limit_hit);
                    outcome_of_error(e, timeout, memory, memory_hit)
                }
                Some(Ended::Late) => timeout_outcome(timeout.unwrap_or_default()),
                Some(Ended::AuditFailed) => audit_outcome(),
            };
            // The instance and everything it held go now, before anyone hears how it ended.
            abort_unfinished_bodies(store.data_mut());
            drop(store);
            if outcome.exit_code != 0 {
                audit.record(&Record::new(
                    Event::SandboxExited,
                    &sandbox,
                    format!("handler: {}", outcome.summary()),
                ));
            }
            Some(outcome)
        });
        let mut running = Running {
            task: Some(task),
            audit: spec.outbound.audit().clone(),
            sandbox: spec.outbound.sandbox().to_string(),
        };
        match receiver.await {
            Ok(Ok(response)) => {
                // The instance goes on writing the body, under its own wall clock, as long as
                // its client takes what it writes.
                running.task = None;
                Ok(response.map(|body| Pulled::new(body, pulls)))
            }
            Ok(Err(code)) => Err(Failure::ErrorCode(format!("{code:?}"))),
            Err(_) => {
                let task = running.task.take().expect("still running");
                let outcome = task
                    .await
                    .map_err(|_| Failure::Handler("the handler's task ended abnormally".into()))?;
                let Some(outcome) = outcome else {
                    return Err(Failure::Unavailable(
                        "the server has no room for another handler now; try again".into(),
                    ));
                };
                Err(match outcome.exit_code {
                    EXIT_TIMEOUT => Failure::TimedOut,
                    EXIT_AUDIT => Failure::AuditUnavailable,
                    0 => Failure::Handler("it returned without setting a response".into()),
                    _ => Failure::Handler(first_line(
                        outcome.message.as_deref().unwrap_or("it trapped"),
                    )),
                })
            }
        }
    }
}

/// How a handler ends whose client took nothing of its response body for `send_timeout`.
fn stalled_outcome(send_timeout: Duration) -> Outcome {
    Outcome {
        exit_code: EXIT_TIMEOUT,
        message: Some(format!(
            "stopped: its client took nothing of the response for {}",
            humantime::format_duration(send_timeout)
        )),
    }
}

/// Abort every outgoing body the instance has not finished (its response's, mid-body when it
/// trapped or ran out of time): dropped with the store, a body ends as if complete, and its
/// client could not tell it was cut; aborted, it ends in an error, so hyper closes the
/// HTTP/1.1 connection short of the body's end or resets the HTTP/2 stream.
fn abort_unfinished_bodies(state: &mut SandboxState) {
    for entry in state.table.iter_mut() {
        if let Some(body) = entry.downcast_mut::<HostOutgoingBody>() {
            // `abort` takes the body; an unused one takes its place until the store goes.
            let (unused, _) = HostOutgoingBody::new(StreamContext::Response, None, 1, 1);
            std::mem::replace(body, unused).abort();
        }
    }
}

/// A handler's instance until its response head is set: dropped earlier (the client went
/// away, and the server stopped waiting for the response), it stops the instance and says so
/// in the audit log, so an abandoned request holds no slot, pool entry or CPU.
struct Running {
    task: Option<tokio::task::JoinHandle<Option<Outcome>>>,
    audit: std::sync::Arc<crate::audit::AuditLog>,
    sandbox: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            if !task.is_finished() {
                task.abort();
                self.audit.record(&Record::new(
                    Event::SandboxExited,
                    &self.sandbox,
                    "handler: stopped, the client went away before the response".to_string(),
                ));
            }
        }
    }
}
