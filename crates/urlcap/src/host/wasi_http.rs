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
use crate::policy::{is_forbidden_header, Cause, Denial, Reason};
use http_body_util::BodyExt;
use std::sync::Arc;
use wasmtime_wasi_http::{Error as HttpError, ForbiddenHeaderFilter, WasiBody, WasiHttpHooks};

/// Routes `wasi:http` requests through urlcap's policy, egress and audit.
pub struct UrlcapHttpHooks {
    outbound: Arc<Outbound>,
    /// Headers the guest may never set and never sees: hop-by-hop and `Host` (as wasmtime
    /// forbids), the rest urlcap forbids (`TE`, `Trailer`, `Proxy-*`), and every header a
    /// grant of this sandbox injects.
    forbidden: ForbiddenHeaderFilter,
    /// Refusals at `fields` so far: the first `MAX_FIELD_REFUSALS_AUDITED` are recorded one
    /// by one, the rest counted into one record when the sandbox ends (they cost the guest
    /// nothing, no request and no grant, so they must not cost the log without bound).
    refused_at_fields: u64,
    /// Off while the host itself builds a header map for the guest (a served request's
    /// headers): what it strips there is the client's doing, not an attempt by the guest.
    auditing: bool,
}

/// Refusals at `fields` recorded one by one per sandbox.
pub(crate) const MAX_FIELD_REFUSALS_AUDITED: u64 = 64;

impl UrlcapHttpHooks {
    /// Hooks that send through `outbound`, which fixes the sandbox: its handle table is all
    /// the guest's `wasi:http` requests can be matched against, and the headers its grants
    /// inject are forbidden to the guest from the first `fields` call on.
    pub fn new(outbound: Arc<Outbound>) -> UrlcapHttpHooks {
        let injected: rustc_hash::FxHashSet<String> = outbound
            .handles()
            .iter()
            .flat_map(|(a, _)| a.grant().headers.iter().map(|h| h.name.clone()))
            .collect();
        let forbidden: ForbiddenHeaderFilter = Arc::new(move |name: &http::HeaderName| {
            is_forbidden_header(name.as_str()) || injected.contains(name.as_str())
        });
        UrlcapHttpHooks {
            outbound,
            forbidden,
            refused_at_fields: 0,
            auditing: true,
        }
    }

    /// Whether `is_forbidden_header` audits what it refuses (on unless the host is building
    /// a header map itself).
    pub(crate) fn set_auditing(&mut self, on: bool) {
        self.auditing = on;
    }
}

impl Drop for UrlcapHttpHooks {
    /// The refusals past the first `MAX_FIELD_REFUSALS_AUDITED`, in one record: none is lost.
    fn drop(&mut self) {
        let more = self
            .refused_at_fields
            .saturating_sub(MAX_FIELD_REFUSALS_AUDITED);
        if more > 0 {
            let mut record = Record::new(
                Event::RequestDenied,
                self.outbound.sandbox(),
                format!("{more} more attempts to set or remove headers only the host may set were refused at fields (only the first {MAX_FIELD_REFUSALS_AUDITED} are recorded one by one)"),
            );
            record.reason = Some(Reason::ForbiddenHeader);
            self.outbound.audit().record(&record);
        }
    }
}

/// Remove every header `forbidden` names (a response's hop-by-hop headers never reach the
/// guest, as under wasmtime).
fn strip(headers: &mut http::HeaderMap, forbidden: &ForbiddenHeaderFilter) {
    let names: Vec<http::HeaderName> = headers.keys().filter(|n| forbidden(n)).cloned().collect();
    for name in names {
        headers.remove(&name);
    }
}

/// The wasi:http error code a guest sees for a denial: the one the WASI HTTP spec means for
/// that failure (and the one `wasmtime run -S http` gives for it); `HTTP-request-denied` only
/// for policy denials.
pub(crate) fn error_code(d: &Denial) -> HttpError {
    match d.reason {
        Reason::Timeout if d.cause == Some(Cause::ConnectTimeout) => HttpError::ConnectionTimeout,
        Reason::Timeout => HttpError::ConnectionReadTimeout,
        Reason::ConnectFailed => HttpError::ConnectionRefused,
        Reason::DnsFailure => HttpError::DnsError {
            rcode: Some("address not available".into()),
            info_code: None,
        },
        Reason::TlsFailure if d.cause == Some(Cause::TlsCertificate) => {
            HttpError::TlsCertificateError
        }
        Reason::TlsFailure => HttpError::TlsProtocolError,
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

/// The most one `write` to a request body may carry. wasmtime holds up to two writes of an
/// unsent body (1 MiB each by default, so 2 MiB a body), so this bounds what one body the
/// guest never sends makes the host hold to 64 KiB, the size of a `fields` map
/// ([`FIELD_SIZE_LIMIT`]): see `host::resource_capacity`.
pub(crate) const OUTGOING_BODY_CHUNK: usize = 32 << 10;

/// The most one `fields` map may hold: no larger than the policy lets a request carry, instead
/// of wasmtime's 128 KiB.
pub(crate) const FIELD_SIZE_LIMIT: usize = 64 << 10;

impl WasiHttpHooks for UrlcapHttpHooks {
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK
    }

    /// A guest's `fields.set` / `append` / `from-list` of a forbidden header is refused with
    /// `header-error.forbidden`, as wasmtime does, and audited (`forbidden_header`; method and
    /// URL are not known yet). Responses reach this only after `send_request` stripped every
    /// forbidden header from them, so only guest attempts are audited here.
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        let forbidden = (self.forbidden)(name);
        if forbidden && self.auditing {
            self.refused_at_fields += 1;
            if self.refused_at_fields <= MAX_FIELD_REFUSALS_AUDITED {
                let mut record = Record::new(
                    Event::RequestDenied,
                    self.outbound.sandbox(),
                    format!("the guest tried to set or remove header {name:?}, which only the host may; refused at fields"),
                );
                record.reason = Some(Reason::ForbiddenHeader);
                self.outbound.audit().record(&record);
            }
        }
        forbidden
    }

    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        self.forbidden.clone()
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
        let (outbound, forbidden) = (self.outbound.clone(), self.forbidden.clone());
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
            let mut response = outbound
                .send_with(&guest, body, timeouts)
                .await
                .map_err(|d| error_code(&d))?;
            strip(response.headers_mut(), &forbidden);
            let response = response.map(|b| {
                b.map_frame(move |frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        strip(&mut trailers, &forbidden);
                        http_body::Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                })
                .map_err(|d| error_code(&d))
                .boxed_unsync()
            });
            let done: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}
