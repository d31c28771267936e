//! Egress: the only code in urlcap that opens network connections.
//!
//! `Client::send` takes an [`Approved`] request — which only the policy can make — and:
//! 1. reuses an idle connection to the same canonical origin whose vetted address this
//!    authority's IP rules accept, or
//! 2. resolves the granted name once (through a [`Resolve`], never inside the connector),
//!    vets *every* address (one denied address denies the request: a name that resolves partly
//!    into internal space is treated as hostile), connects to exactly a vetted `SocketAddr`,
//!    re-checks the peer, and does TLS for the granted host name;
//! 3. sends the canonical method, path and query with `Host` = the granted host, the guest's
//!    headers in order (repeats kept), and the grant's injected headers last;
//! 4. returns the response as-is — redirects are never followed — with its body capped and
//!    timed as it streams.
//!
//! Proxy variables (`HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`...) are never read. Every failure is a
//! [`Denial`] with a reason code, never a panic.

mod body;
mod connect;
mod idle;
mod resolve;
mod tls;

pub(crate) use body::WireBody;
pub use body::{empty_body, full_body, RequestBody, ResponseBody};
pub use resolve::{lookup, vet_answer, Resolve, Resolving, StaticResolver, SystemResolver};

use crate::policy::{Approved, Authority, Cause, Denial, Reason, Request, Scheme, VettedAddr};
use body::BackToIdle;
use connect::Sender;
use http::header::{HeaderName, HeaderValue, HOST};
use idle::{IdleConnections, IdleKey};
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tls::TlsConfigs;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The response a guest gets: status and headers as the server sent them, and a limited body.
pub type Response = http::Response<ResponseBody>;

/// Timeouts and idle-connection bounds. A grant's `timeout` is the total for its requests.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// TCP connect plus TLS handshake, per address tried.
    pub connect_timeout: Duration,
    /// From sending the request to the response head.
    pub first_byte_timeout: Duration,
    /// Longest silence between response body bytes.
    pub between_bytes_timeout: Duration,
    /// Total per request when the grant sets no `timeout` (None: no total limit).
    pub total_timeout: Option<Duration>,
    /// Requests in flight at once for the whole sandbox (`[limits] max_concurrent_requests`).
    pub max_in_flight: usize,
    /// Idle keep-alive connections kept per canonical origin.
    pub max_idle_per_origin: usize,
    /// Idle keep-alive connections kept in all (a wildcard grant reaches many origins).
    pub max_idle_total: usize,
    /// An idle connection is closed after this long, by a timer.
    pub idle_connection_timeout: Duration,
}

/// Requests in flight at once for a whole sandbox tree when `[limits] max_concurrent_requests`
/// is not set.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

impl Default for EgressConfig {
    fn default() -> EgressConfig {
        EgressConfig {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
            total_timeout: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            // As many as may be in flight: a burst to one origin (a server's handlers all
            // calling one API) then reuses every connection it opened instead of closing all
            // but a few and reopening them on the next burst.
            max_idle_per_origin: DEFAULT_MAX_IN_FLIGHT,
            max_idle_total: 256,
            idle_connection_timeout: Duration::from_secs(90),
        }
    }
}

/// A caller's own timeouts for one request; each can only shorten the configured one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub connect: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub between_bytes: Option<Duration>,
}

impl Timeouts {
    fn applied_to(&self, config: &EgressConfig) -> EgressConfig {
        let tighter =
            |mine: Option<Duration>, theirs: Duration| mine.map_or(theirs, |m| m.min(theirs));
        EgressConfig {
            connect_timeout: tighter(self.connect, config.connect_timeout),
            first_byte_timeout: tighter(self.first_byte, config.first_byte_timeout),
            between_bytes_timeout: tighter(self.between_bytes, config.between_bytes_timeout),
            ..config.clone()
        }
    }
}

/// The egress client. Cheap to clone; clones share the idle connections and the limits.
#[derive(Clone)]
pub struct Client(Arc<Inner>);

struct Inner {
    config: EgressConfig,
    resolver: Arc<dyn Resolve>,
    /// Built on the first https connection: loading the system's roots takes milliseconds that
    /// plain-http and guest-only runs should not pay.
    tls: std::sync::OnceLock<TlsConfigs>,
    idle: Arc<IdleConnections>,
    in_flight: Arc<Semaphore>,
    per_authority: Mutex<FxHashMap<Arc<str>, Arc<Semaphore>>>,
}

impl Client {
    /// A client with these timeouts and bounds, resolving through `resolver` (injected so
    /// tests and embedders can answer, hostilely if they like; every answer is still vetted).
    /// Share one client per sandbox tree: its in-flight limit and idle connections are the
    /// tree's.
    pub fn new(config: EgressConfig, resolver: Arc<dyn Resolve>) -> Client {
        Client(Arc::new(Inner {
            idle: Arc::new(IdleConnections::new(
                config.max_idle_per_origin,
                config.max_idle_total,
                config.idle_connection_timeout,
            )),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            per_authority: Mutex::new(FxHashMap::default()),
            tls: std::sync::OnceLock::new(),
            resolver,
            config,
        }))
    }

    /// Keep-alive connections idle now (kept for reuse).
    pub fn idle_connections(&self) -> usize {
        self.0.idle.idle_count()
    }

    /// Send an approved request. `body` streams to the server; the response body streams back.
    /// `timeouts` are the caller's own (a `wasi:http` guest's `request-options`), which can only
    /// tighten the configured ones.
    pub(crate) async fn send(
        &self,
        approved: Approved,
        body: RequestBody,
        timeouts: Timeouts,
    ) -> Result<Response, Denial> {
        let (authority, request) = approved.into_parts();
        let inner = &self.0;
        let config = timeouts.applied_to(&inner.config);
        let reference = authority.reference().clone();
        let fail = |reason, detail: String| Denial::new(reason, detail).on(&reference);
        let permits = self.permits(&authority)?;
        let limits = &authority.grant().limits;
        let deadline = limits
            .timeout
            .or(inner.config.total_timeout)
            .map(|t| Instant::now() + t);
        let url = request.url();
        let key = IdleKey {
            scheme: url.scheme(),
            host: url.host().clone(),
            port: url.port(),
            trust: authority.grant().ca.as_ref().map(|c| c.source.clone()),
        };
        let (addr, sender) = match inner
            .idle
            .checkout(&key, |addr| authority.vet(addr.addr()).ok())
        {
            Some(found) => found,
            None => {
                Box::pin(self.connect(&authority, &request, &key, deadline, config.connect_timeout))
                    .await?
            }
        };
        let exchange = Arc::new(body::Exchange::default());
        let wire_body = body::WireBody::new(
            body,
            limits.max_request_body,
            request.body_len(),
            reference.clone(),
            exchange.clone(),
        );
        let h2 = matches!(sender, Sender::H2(_));
        let wire =
            wire_request(&authority, &request, wire_body, h2).map_err(|d| d.on(&reference))?;
        let first_byte = until(deadline, config.first_byte_timeout);
        let interim = Arc::new(Interim::default());
        let sent = match sender {
            Sender::H2(mut s) => tokio::time::timeout(first_byte, s.send_request(wire))
                .await
                .map(|r| (Some(r), None)),
            Sender::H1(mut s) => {
                let mut wire = wire;
                let counter = interim.clone();
                hyper::ext::on_informational(&mut wire, move |_| counter.seen());
                let head = async {
                    tokio::select! {
                        response = s.send_request(wire) => Some(response),
                        () = interim.flooded() => None,
                    }
                };
                let result = tokio::time::timeout(first_byte, head).await;
                result.map(|r| (r, Some(s)))
            }
        };
        let (response, h1_sender) = match sent {
            Err(_) => {
                let waited = humantime::format_duration(first_byte);
                return Err(fail(
                    Reason::Timeout,
                    format!("no response head from {addr} within {waited}"),
                )
                .because(Cause::ReadTimeout));
            }
            // The connection goes with the sender: it is not reused.
            Ok((None, _)) => {
                return Err(fail(
                    Reason::UpstreamError,
                    format!(
                        "{addr} sent more than {MAX_INTERIM_RESPONSES} informational (1xx) responses before its response"
                    ),
                ));
            }
            Ok((Some(Err(e)), _)) => {
                if let Some(denial) = exchange.take_pending() {
                    return Err(denial);
                }
                return Err(fail(
                    Reason::UpstreamError,
                    format!("{addr}: {}", connect::error_chain(&e)),
                ));
            }
            Ok((Some(Ok(response)), sender)) => (response, sender),
        };
        let (parts, incoming) = response.into_parts();
        if let (Some(max), Some(len)) = (limits.max_response_body, content_length(&parts.headers)) {
            if len > max {
                return Err(fail(
                    Reason::ResponseBodyTooLarge,
                    format!("response declares {len} bytes; max_response_body is {max}"),
                ));
            }
        }
        let back_to_idle = h1_sender.map(|sender| BackToIdle {
            idle: inner.idle.clone(),
            key,
            addr,
            sender,
        });
        let body = ResponseBody::new(
            incoming,
            limits.max_response_body,
            config.between_bytes_timeout,
            deadline,
            reference,
            back_to_idle,
            permits,
            exchange,
        );
        Ok(http::Response::from_parts(parts, body))
    }

    /// The sandbox-wide permit and, if the grant limits it, the authority's (counted at the
    /// root, so derived handles share their root's limit).
    fn permits(&self, authority: &Authority) -> Result<Vec<OwnedSemaphorePermit>, Denial> {
        let deny =
            |what: String| Denial::new(Reason::ConcurrencyLimit, what).on(authority.reference());
        let mut permits = Vec::with_capacity(2);
        let sandbox = self.0.in_flight.clone().try_acquire_owned();
        permits.push(sandbox.map_err(|_| {
            deny(format!(
                "{} requests already in flight in this sandbox",
                self.0.config.max_in_flight
            ))
        })?);
        if let Some(max) = authority.grant().limits.max_concurrent_requests {
            let semaphore = {
                let mut map = self
                    .0
                    .per_authority
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                map.entry(authority.reference().name.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(max as usize)))
                    .clone()
            };
            permits.push(semaphore.try_acquire_owned().map_err(|_| {
                deny(format!(
                    "{max} requests already in flight for authority {}",
                    authority.name()
                ))
            })?);
        }
        Ok(permits)
    }

    /// Resolve (once), vet every address, and connect to the first vetted one that answers.
    async fn connect(
        &self,
        authority: &Authority,
        request: &Request,
        key: &IdleKey,
        deadline: Option<Instant>,
        connect_timeout: Duration,
    ) -> Result<(VettedAddr, Sender), Denial> {
        let inner = &self.0;
        let url = request.url();
        let reference = authority.reference();
        let fail = |reason, detail: String| Denial::new(reason, detail).on(reference);
        let wait = until(deadline, connect_timeout);
        let ips = resolve::lookup(&*inner.resolver, url, wait)
            .await
            .map_err(|d| d.on(reference))?;
        let addrs = resolve::vet_answer(authority, url, &ips)?;
        let https = url.scheme() == Scheme::Https;
        let tls = if https {
            inner
                .tls
                .get_or_init(TlsConfigs::new)
                .for_ca(authority.grant().ca.as_ref())
                .map_err(|e| fail(Reason::TlsFailure, e).because(Cause::TlsProtocol))?
        } else {
            tls::unused_for_plain_http()
        };
        let mut last = None;
        for addr in addrs {
            let timeout = until(deadline, connect_timeout);
            match connect::open(authority, url.host(), https, addr, tls.clone(), timeout).await {
                Ok(sender) => {
                    if let Sender::H2(s) = &sender {
                        inner.idle.checkin(key.clone(), addr, Sender::H2(s.clone()));
                    }
                    return Ok((addr, sender));
                }
                Err(denial) if denial.reason == Reason::TlsFailure => return Err(denial),
                Err(denial) => last = Some(denial),
            }
        }
        Err(last.unwrap_or_else(|| fail(Reason::ConnectFailed, "no address to connect to".into())))
    }
}

/// The time left before `deadline`, at most `cap`.
fn until(deadline: Option<Instant>, cap: Duration) -> Duration {
    match deadline {
        Some(d) => d.saturating_duration_since(Instant::now()).min(cap),
        None => cap,
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Most informational (1xx) responses accepted before a request's response: a server that
/// sends them forever would otherwise keep a core busy until the first-byte timeout. (HTTP/1;
/// the HTTP/2 client does not report them.)
pub const MAX_INTERIM_RESPONSES: u32 = 32;

/// Counts one request's informational responses, and wakes the request past the cap.
#[derive(Default)]
struct Interim {
    seen: std::sync::atomic::AtomicU32,
    over: tokio::sync::Notify,
}

impl Interim {
    fn seen(&self) {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n > MAX_INTERIM_RESPONSES {
            self.over.notify_one();
        }
    }

    /// Resolves once more than the cap have arrived.
    async fn flooded(&self) {
        self.over.notified().await
    }
}

/// The request exactly as approved: canonical method, path and query, `Host` from the granted
/// URL, the guest's headers in order (its Content-Length dropped: framing comes from the body),
/// and the grant's injected headers last.
fn wire_request(
    authority: &Authority,
    request: &Request,
    body: WireBody,
    h2: bool,
) -> Result<http::Request<WireBody>, Denial> {
    let url = request.url().as_url();
    let invalid = |what: String| Denial::new(Reason::MalformedUrl, what);
    let target = if h2 {
        url.as_str()
    } else {
        &url[url::Position::BeforePath..url::Position::AfterQuery]
    };
    let uri: http::Uri = target
        .parse()
        .map_err(|e| invalid(format!("{} cannot be sent: {e}", request.url())))?;
    let method = http::Method::from_bytes(request.method().as_str().as_bytes())
        .map_err(|e| Denial::new(Reason::InvalidMethod, e.to_string()))?;
    let mut wire = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(body)
        .map_err(|e| invalid(e.to_string()))?;
    let headers = wire.headers_mut();
    if !h2 {
        let host = match url.port() {
            Some(port) => format!("{}:{port}", request.url().host_str()),
            None => request.url().host_str().to_string(),
        };
        headers.insert(
            HOST,
            HeaderValue::from_str(&host).map_err(|e| invalid(e.to_string()))?,
        );
    }
    for (name, value) in request.headers() {
        if name == "content-length" {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| Denial::new(Reason::InvalidHeader, e.to_string()))?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|e| Denial::new(Reason::InvalidHeader, e.to_string()))?;
        headers.append(name, value);
    }
    for injected in &authority.grant().headers {
        let name = HeaderName::from_bytes(injected.name.as_bytes())
            .map_err(|e| Denial::new(Reason::InvalidHeader, e.to_string()))?;
        let value = HeaderValue::from_bytes(injected.value.expose()).map_err(|_| {
            Denial::new(
                Reason::InvalidHeader,
                format!("injected header {} has an invalid value", injected.name),
            )
        })?;
        headers.append(name, value);
    }
    Ok(wire)
}
