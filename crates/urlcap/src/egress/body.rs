//! Bodies in both directions, streamed, with limits enforced as bytes pass.
//!
//! [`WireBody`] carries the guest's request body to the server, refusing to send more than
//! `max_request_body` or a length other than the one declared. [`ResponseBody`] carries the
//! server's body to the guest, refusing more than `max_response_body`, and timing out between
//! bytes and at the total deadline. When a response ends it returns its HTTP/1.1 connection to
//! the idle connections and releases its in-flight permits.

use super::connect::Sender;
use super::idle::{IdleConnections, IdleKey};
use crate::policy::{AuthorityRef, Cause, Denial, Reason, VettedAddr};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// A guest's request body: any stream of bytes whose errors are denials. (Not `Sync`:
/// wasi:http guest bodies are not.)
pub type RequestBody = UnsyncBoxBody<Bytes, Denial>;

/// An empty request body.
pub fn empty_body() -> RequestBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body from bytes in memory.
pub fn full_body(bytes: impl Into<Bytes>) -> RequestBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The one early end of an exchange (request body refused, response body cut), reported
/// exactly once: to the sender while the response head is still awaited (it becomes the
/// sender's error), or to the audit hook once the caller installed one — even when the
/// request body is refused after the response head arrived, or after the response was read.
#[derive(Default)]
pub(crate) struct Exchange(Mutex<ExchangeState>);

#[derive(Default)]
struct ExchangeState {
    /// A failure no one has been told of yet.
    pending: Option<Denial>,
    hook: Option<OnBodyError>,
    reported: bool,
}

impl Exchange {
    fn state(&self) -> std::sync::MutexGuard<'_, ExchangeState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Report `denial`, unless one was reported (or is pending) already.
    fn report(&self, denial: &Denial) {
        let mut state = self.state();
        if state.reported || state.pending.is_some() {
            return;
        }
        match state.hook.take() {
            Some(hook) => {
                state.reported = true;
                drop(state);
                hook(denial);
            }
            None => state.pending = Some(denial.clone()),
        }
    }

    /// The failure that stopped the request before its response head, for the sender to
    /// return (and its caller to report).
    pub(crate) fn take_pending(&self) -> Option<Denial> {
        let mut state = self.state();
        let pending = state.pending.take();
        state.reported |= pending.is_some();
        pending
    }

    /// From now on failures go to `hook` (one already pending goes at once).
    fn set_hook(&self, hook: OnBodyError) {
        let mut state = self.state();
        if state.reported {
            return;
        }
        match state.pending.take() {
            Some(denial) => {
                state.reported = true;
                drop(state);
                hook(&denial);
            }
            None => state.hook = Some(hook),
        }
    }
}

/// The request body as it goes on the wire.
pub(crate) struct WireBody {
    inner: RequestBody,
    max: Option<u64>,
    declared: Option<u64>,
    sent: u64,
    reference: AuthorityRef,
    /// Where a refusal of this body is reported (hyper wraps the error it is given).
    exchange: Arc<Exchange>,
}

impl WireBody {
    pub(crate) fn new(
        inner: RequestBody,
        max: Option<u64>,
        declared: Option<u64>,
        reference: AuthorityRef,
        exchange: Arc<Exchange>,
    ) -> WireBody {
        WireBody {
            inner,
            max,
            declared,
            sent: 0,
            reference,
            exchange,
        }
    }

    fn fail(
        &mut self,
        reason: Reason,
        detail: String,
    ) -> Poll<Option<Result<Frame<Bytes>, Denial>>> {
        let denial = Denial::new(reason, detail).on(&self.reference);
        self.exchange.report(&denial);
        Poll::Ready(Some(Err(denial)))
    }
}

impl Body for WireBody {
    type Data = Bytes;
    type Error = Denial;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Denial>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                    if let Some(max) = this.max.filter(|&max| this.sent > max) {
                        return this.fail(
                            Reason::RequestBodyTooLarge,
                            format!("request body exceeds max_request_body {max}"),
                        );
                    }
                    if let Some(declared) = this.declared.filter(|&d| this.sent > d) {
                        return this.fail(
                            Reason::InvalidHeader,
                            format!("request body is longer than its declared {declared} bytes"),
                        );
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(denial)) => {
                this.exchange.report(&denial);
                Poll::Ready(Some(Err(denial)))
            }
            None => match this.declared {
                Some(declared) if declared != this.sent => {
                    let sent = this.sent;
                    this.fail(
                        Reason::InvalidHeader,
                        format!("request body has {sent} bytes, not its declared {declared}"),
                    )
                }
                _ => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.declared {
            Some(n) => SizeHint::with_exact(n),
            None => self.inner.size_hint(),
        }
    }
}

/// Where an HTTP/1.1 connection goes back when its response is complete.
pub(crate) struct BackToIdle {
    pub(crate) idle: Arc<IdleConnections>,
    pub(crate) key: IdleKey,
    pub(crate) addr: VettedAddr,
    pub(crate) sender: hyper::client::conn::http1::SendRequest<WireBody>,
}

/// Called once with the denial that ended an exchange early (for the audit log).
pub(crate) type OnBodyError = Box<dyn FnOnce(&Denial) + Send + Sync>;

/// The response body a guest reads.
pub struct ResponseBody {
    inner: Incoming,
    max: Option<u64>,
    received: u64,
    /// The between-bytes timeout, and its timer (reset by every frame).
    between_bytes: Duration,
    between_bytes_timer: Pin<Box<Sleep>>,
    deadline: Option<Pin<Box<Sleep>>>,
    reference: AuthorityRef,
    back_to_idle: Option<BackToIdle>,
    permits: Vec<OwnedSemaphorePermit>,
    exchange: Arc<Exchange>,
    finished: bool,
}

impl ResponseBody {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        inner: Incoming,
        max: Option<u64>,
        between_bytes: Duration,
        deadline: Option<Instant>,
        reference: AuthorityRef,
        back_to_idle: Option<BackToIdle>,
        permits: Vec<OwnedSemaphorePermit>,
        exchange: Arc<Exchange>,
    ) -> ResponseBody {
        ResponseBody {
            inner,
            max,
            received: 0,
            between_bytes,
            between_bytes_timer: Box::pin(tokio::time::sleep(between_bytes)),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            reference,
            back_to_idle,
            permits,
            exchange,
            finished: false,
        }
    }

    /// Be told (once) if this exchange ends with a denial: this body cut before its last
    /// byte, or the request body refused after the response head arrived.
    pub(crate) fn on_error(&mut self, hook: OnBodyError) {
        self.exchange.set_hook(hook);
    }

    fn fail(
        &mut self,
        reason: Reason,
        detail: String,
    ) -> Poll<Option<Result<Frame<Bytes>, Denial>>> {
        self.fail_with(Denial::new(reason, detail).on(&self.reference))
    }

    fn fail_because(
        &mut self,
        reason: Reason,
        detail: String,
        cause: Cause,
    ) -> Poll<Option<Result<Frame<Bytes>, Denial>>> {
        self.fail_with(
            Denial::new(reason, detail)
                .on(&self.reference)
                .because(cause),
        )
    }

    fn fail_with(&mut self, denial: Denial) -> Poll<Option<Result<Frame<Bytes>, Denial>>> {
        self.finish(false);
        self.exchange.report(&denial);
        Poll::Ready(Some(Err(denial)))
    }

    /// Release permits; keep the connection only if the body ended cleanly.
    fn finish(&mut self, clean: bool) {
        self.finished = true;
        self.permits.clear();
        if let (true, Some(ret)) = (clean, self.back_to_idle.take()) {
            ret.idle.checkin(ret.key, ret.addr, Sender::H1(ret.sender));
        }
        self.back_to_idle = None;
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("authority", &self.reference.lineage)
            .field("received", &self.received)
            .field("max", &self.max)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Denial;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Denial>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return this.fail_because(
                    Reason::Timeout,
                    "the response did not finish within the authority's timeout".into(),
                    Cause::ReadTimeout,
                );
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if let Some(max) = this.max.filter(|&max| this.received > max) {
                        return this.fail(
                            Reason::ResponseBodyTooLarge,
                            format!("response body exceeds max_response_body {max}"),
                        );
                    }
                }
                let next = Instant::now() + this.between_bytes;
                this.between_bytes_timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(
                Reason::UpstreamError,
                format!("response body: {}", super::connect::error_chain(&e)),
            ),
            Poll::Ready(None) => {
                // Deliver the end only once the connection can take another request (or is
                // gone), so a guest's next request finds it idle.
                if let Some(ret) = this.back_to_idle.as_mut() {
                    if ret.sender.poll_ready(cx).is_pending()
                        && this.between_bytes_timer.as_mut().poll(cx).is_pending()
                    {
                        return Poll::Pending;
                    }
                }
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.between_bytes_timer.as_mut().poll(cx).is_ready() {
                    let waited = humantime::format_duration(this.between_bytes);
                    return this.fail_because(
                        Reason::Timeout,
                        format!("no response bytes for {waited}"),
                        Cause::ReadTimeout,
                    );
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
