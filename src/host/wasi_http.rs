//! Unmodified `wasi:http` guests under the same policy.
//!
//! [`UrlcapHttpHooks`] is a [`WasiHttpHooks`] for wasmtime-wasi-http: every outgoing request a
//! guest makes with `wasi:http/outgoing-handler.handle` goes through [`Outbound::send`] —
//! canonicalize (the guest's scheme, authority and path strictly), match to a preopened
//! authority, vetted DNS, pinned connect, pooled keep-alive connection — and every denial is
//! audited once and reaches the guest as `ErrorCode::HttpRequestDenied` (or the error code of
//! the transport failure). The guest's `request-options` timeouts apply, but can only tighten
//! the host's. The stock `default_send_request`, which opens a new connection per
//! request and resolves names unvetted, is never used.
//!
//! Other wasmtime embedders can adopt urlcap's policy by returning these hooks from their
//! `WasiHttpView`:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn hooks(outbound: Arc<urlcap::outbound::Outbound>) {
//! let hooks = urlcap::host::UrlcapHttpHooks::new(outbound);
//! // impl WasiHttpView for MyState { fn http(&mut self) -> WasiHttpCtxView<'_> {
//! //     WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks } } }
//! # let _ = hooks; }
//! ```

use crate::audit::{Event, Record};
use crate::egress::{RequestBody, Timeouts};
use crate::outbound::{GuestRequest, Outbound};
use crate::policy::{Denial, Reason};
use http_body_util::BodyExt;
use std::sync::Arc;
use wasmtime_wasi_http::{Error as HttpError, ForbiddenHeaderFilter, WasiBody, WasiHttpHooks};

/// Routes `wasi:http` requests through urlcap's policy, egress and audit.
pub struct UrlcapHttpHooks {
    outbound: Arc<Outbound>,
}

impl UrlcapHttpHooks {
    pub fn new(outbound: Arc<Outbound>) -> UrlcapHttpHooks {
        UrlcapHttpHooks { outbound }
    }
}

/// The wasi:http error code a guest sees for a denial.
pub fn error_code(d: &Denial) -> HttpError {
    match d.reason {
        Reason::Timeout => HttpError::ConnectionTimeout,
        Reason::ConnectFailed => HttpError::ConnectionRefused,
        Reason::DnsFailure => HttpError::DestinationNotFound,
        Reason::TlsFailure => HttpError::TlsCertificateError,
        Reason::ResponseBodyTooLarge => HttpError::HttpResponseBodySize(None),
        Reason::RequestBodyTooLarge => HttpError::HttpRequestBodySize(None),
        Reason::UpstreamError => HttpError::HttpProtocolError,
        Reason::ConcurrencyLimit => HttpError::ConnectionLimitReached,
        _ => HttpError::HttpRequestDenied,
    }
}

type ResponseFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for UrlcapHttpHooks {
    /// Nothing is filtered at `fields.set`: the policy judges every header when the request is
    /// sent, so a forbidden one is denied *and audited* rather than silently dropped.
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(|_| false)
    }

    /// The Host header is written by egress from the approved URL, never from here.
    fn set_host_header(&mut self) -> bool {
        false
    }

    /// A request without a scheme is an error, not HTTPS-to-anywhere. wasmtime asks for a
    /// default only when the guest set no scheme, and refuses the request when there is none,
    /// before `send_request`; so the refusal is audited here (method and URL are not known yet).
    fn default_scheme(&mut self) -> Option<http::uri::Scheme> {
        let mut record = Record::new(
            Event::RequestDenied,
            self.outbound.sandbox(),
            "the request has no scheme; set http or https",
        );
        record.reason = Some(Reason::MalformedUrl);
        self.outbound.audit().record(&record);
        None
    }

    /// Every scheme reaches the policy, which denies all but http and https with
    /// `unsupported_scheme` *and audits it*; wasmtime's own check would refuse silently.
    fn is_supported_scheme(&mut self, _scheme: &http::uri::Scheme) -> bool {
        true
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> ResponseFuture {
        let outbound = self.outbound.clone();
        let timeouts = options.map_or_else(Timeouts::default, |o| Timeouts {
            connect: o.connect_timeout,
            first_byte: o.first_byte_timeout,
            between_bytes: o.between_bytes_timeout,
        });
        Box::new(async move {
            let (parts, body) = request.into_parts();
            let headers: Vec<(String, Vec<u8>)> = parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                .collect();
            let body_len = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let guest = GuestRequest {
                method: parts.method.to_string(),
                url: parts.uri.to_string(),
                headers,
                body_len,
            };
            let body: RequestBody = body
                .map_err(|e| Denial::new(Reason::UpstreamError, format!("guest request body: {e}")))
                .boxed_unsync();
            let response = outbound
                .send_with(&guest, body, timeouts)
                .await
                .map_err(|d| error_code(&d))?;
            let response = response.map(|b| b.map_err(|d| error_code(&d)).boxed_unsync());
            let done: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}
