//! The listener: accept connections (HTTP/1.1 and h2c on one port), pick each request's route,
//! run its handler in a fresh sandbox within the server's limits, answer, log, and on shutdown
//! stop accepting and let what is in flight finish within a bound.

use super::access_log::AccessLog;
use super::connection::{self, Counted, InFlight, Stop, Tracked};
use super::routes::{Route, RouteSpec, Routes};
use crate::host::{SandboxSpec, Stdio};
use crate::sandbox::{Error, Sandbox};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// A response body: the handler's stream, or the server's own short text.
type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// Requests handled at once when `[limits] max_concurrent_requests` is not set.
pub const DEFAULT_MAX_CONCURRENT: usize = 64;

/// [`ServerOptions::header_read_timeout`] as `urlcap serve` sets it.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of request head the server reads (HTTP/1 buffer, HTTP/2 header list).
const MAX_REQUEST_HEAD: usize = 64 << 10;

/// How a server runs besides its sandbox and routes.
pub struct ServerOptions {
    /// Where handlers' stdout and stderr go.
    pub stdio: Stdio,
    /// Where access-log lines go.
    pub access_log: AccessLog,
    /// After shutdown is asked for, how long requests in flight may take to finish.
    pub drain: Duration,
    /// How long a request waits for one of the `max_concurrent_requests` slots before it is
    /// answered 503.
    pub queue_wait: Duration,
    /// Client connections open at once; past it the server stops accepting (new clients
    /// wait in the kernel's backlog) until one closes, so idle or slow clients cannot use up
    /// the process's file descriptors.
    pub max_connections: usize,
    /// How long a client may take to send a request head, how long a new connection may stay
    /// silent, and how long a connection (HTTP/1.1 or HTTP/2) may go with no request in flight
    /// before it is closed, so idle or slow clients cannot hold connection slots.
    pub header_read_timeout: Duration,
    /// How long a handler still writing its response body may wait on a client that takes
    /// none of it (an HTTP/2 window of 0, a full TCP receive buffer) before it is stopped and
    /// its response cut, so clients that stop reading cannot hold the request slots for whole
    /// wall clocks.
    pub send_timeout: Duration,
}

/// [`ServerOptions::send_timeout`] as `urlcap serve` sets it.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// [`ServerOptions::max_connections`] as `urlcap serve` sets it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// How shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the drain bound.
    All,
    /// This many connections were still open when the bound passed (their requests are cut).
    Abandoned(usize),
}

/// Serves routes of `wasi:http/proxy` handlers under one sandbox's grants, limits and audit.
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    sandbox: Sandbox,
    routes: Routes,
    options: ServerOptions,
    slots: Arc<tokio::sync::Semaphore>,
    max_concurrent: usize,
    next: AtomicU64,
    /// Makes request ids unique across restarts of the server (its start time, in hex).
    id_prefix: String,
}

impl Server {
    /// Link every route's handler against `sandbox`'s host and check its authorities.
    pub fn new(
        sandbox: Sandbox,
        routes: Vec<RouteSpec>,
        options: ServerOptions,
    ) -> Result<Server, Error> {
        let roots = sandbox.outbound().handles().clone();
        let routes = routes
            .into_iter()
            .map(|spec| Route::load(spec, sandbox.host(), &roots))
            .collect::<Result<Vec<_>, _>>()?;
        let routes = Routes::new(routes)?;
        let max_concurrent = sandbox
            .limits()
            .max_concurrent_requests
            .map_or(DEFAULT_MAX_CONCURRENT, |n| n as usize);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Server {
            inner: Arc::new(Inner {
                sandbox,
                routes,
                options,
                slots: Arc::new(tokio::sync::Semaphore::new(max_concurrent)),
                max_concurrent,
                next: AtomicU64::new(0),
                id_prefix: format!("{:x}", started.as_millis() & 0xffff_ffff),
            }),
        })
    }

    /// Each route: prefix, component, and the authorities its handler is preopened.
    pub fn routes(&self) -> Vec<(String, String, Vec<String>)> {
        self.inner
            .routes
            .iter()
            .map(|r| {
                (
                    r.prefix.as_str().to_string(),
                    r.component.clone(),
                    r.authority_names().map(str::to_string).collect(),
                )
            })
            .collect()
    }

    /// Requests handled at once across the server.
    pub fn max_concurrent_requests(&self) -> usize {
        self.inner.max_concurrent
    }

    /// The sandbox whose grants, limits and audit log the handlers run under.
    pub fn sandbox(&self) -> &Sandbox {
        &self.inner.sandbox
    }

    /// Serve `listener` until `shutdown` resolves; then stop accepting, give requests in
    /// flight [`ServerOptions::drain`] to finish, and say how that went.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Drained {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.inner.options.header_read_timeout)
            .max_buf_size(MAX_REQUEST_HEAD);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_REQUEST_HEAD as u32)
            // One connection may not take every request slot.
            .max_concurrent_streams((self.inner.max_concurrent / 4).max(1) as u32);
        let max_connections = self.inner.options.max_connections.max(1);
        let connections = Arc::new(tokio::sync::Semaphore::new(max_connections));
        let (stop, stopping) = tokio::sync::watch::channel(Stop::No);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // A free connection slot first, then a client.
            let slot = tokio::select! {
                slot = connections.clone().acquire_owned() => slot,
                () = &mut shutdown => break,
            };
            let Ok(slot) = slot else { break };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let in_flight = InFlight::new();
                        let service = {
                            let (inner, in_flight) = (self.inner.clone(), in_flight.clone());
                            hyper::service::service_fn(move |request| {
                                let (inner, counted) = (inner.clone(), in_flight.count());
                                async move {
                                    Ok::<_, Infallible>(inner.respond(request, counted).await)
                                }
                            })
                        };
                        let (builder, mut stopping) = (builder.clone(), stopping.clone());
                        let inner = self.inner.clone();
                        let idle = self.inner.options.header_read_timeout;
                        // A connection whose requests are in flight but none has begun or
                        // ended for a handler's wall clock and the idle bound (seen within one
                        // more) is one whose client stopped reading: every handler that was
                        // writing to it was stopped an idle bound before, and what it wrote
                        // waits on a window that does not open. Closed, then dropped an idle
                        // bound later (a client still reading has that long to finish), it
                        // holds no connection slot for ever. (The wall clock alone would close
                        // a connection whose one request its handler answers at its wall clock,
                        // a 504, as it answers.)
                        let stalled = self.inner.sandbox.limits().timeout.map(|t| t + idle);
                        tokio::spawn(async move {
                            // hyper's header read timeout starts with a request's first byte;
                            // a client that connects and says nothing is dropped here.
                            let mut first = [0u8; 1];
                            tokio::select! {
                                peeked = tokio::time::timeout(idle, stream.peek(&mut first)) => {
                                    match peeked {
                                        Ok(Ok(n)) if n > 0 => {}
                                        _ => return,
                                    }
                                }
                                _ = stopping.wait_for(|s| *s != Stop::No) => return,
                            }
                            let connection = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .into_owned();
                            let ended = connection::drive(
                                connection,
                                auto::Connection::graceful_shutdown,
                                &in_flight,
                                idle,
                                stalled,
                                stopping,
                            )
                            .await;
                            if let Some(Err(e)) = ended {
                                inner.refused(&*e);
                            }
                            drop(slot);
                        });
                    }
                    // Out of file descriptors and the like: back off a moment, keep serving.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        // Every connection's slot back is every connection done, its requests' lines written.
        let all = max_connections as u32;
        stop.send_replace(Stop::Gracefully);
        let drained = tokio::time::timeout(self.inner.options.drain, connections.acquire_many(all));
        if drained.await.is_ok() {
            return Drained::All;
        }
        let open = max_connections - connections.available_permits();
        self.inner.options.access_log.cut_from_now();
        stop.send_replace(Stop::Now);
        // Dropped, their requests end at once; a second is generous.
        let _ = tokio::time::timeout(Duration::from_secs(1), connections.acquire_many(all)).await;
        Drained::Abandoned(open.max(1))
    }

    /// Open the audit and access log files again by their paths (SIGHUP, after logrotate
    /// moved them); records and lines go on to the new files, none split or lost.
    pub fn reopen_logs(&self) {
        self.inner.sandbox.audit().reopen();
        self.inner.options.access_log.reopen();
    }

    /// Wait until every access-log line so far is written.
    pub fn flush_access_log(&self) {
        self.inner.options.access_log.flush();
    }
}

impl Inner {
    /// Answer one request, whatever happens to its handler, with its `x-request-id`; its
    /// access line is written when the response ends, however it ends.
    async fn respond(
        &self,
        request: http::Request<hyper::body::Incoming>,
        counted: Counted,
    ) -> http::Response<Tracked<Body>> {
        let started = Instant::now();
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let request_id = format!("{}-{n}", self.id_prefix);
        let head = request.method() == http::Method::HEAD;
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let route = self.routes.find(&path);
        let mut line = self.options.access_log.line(
            request_id,
            method,
            path,
            route.map(|r| r.prefix.as_str()),
            started,
        );
        let mut response = match route {
            None => plain(http::StatusCode::NOT_FOUND, "no route serves this path"),
            Some(route) => self.dispatch(route, line.request_id(), n, request).await,
        };
        if let Ok(value) = http::HeaderValue::from_str(line.request_id()) {
            response.headers_mut().insert("x-request-id", value);
        }
        let status = response.status();
        let bodiless = head
            || status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED;
        line.answered(status, bodiless);
        response.map(|body| Tracked::new(body, line, counted))
    }

    /// Write the access line of a request head hyper answered itself, if `error` (how a
    /// connection ended) says it did: a head it could not parse gets 400, one past the
    /// 64 KiB or 100 headers it reads gets 431 (hyper's 414 for a target past 64 KiB cannot
    /// happen: such a head is past 64 KiB first). Other ends (the client went away, a header
    /// read timeout) answered nothing.
    fn refused(&self, error: &(dyn std::error::Error + 'static)) {
        let Some(error) = error.downcast_ref::<hyper::Error>() else {
            return;
        };
        let status = if error.is_parse_too_large() {
            431
        } else if error.is_parse() && !error.is_parse_version_h2() {
            400
        } else {
            return;
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.options
            .access_log
            .refused(format!("{}-{n}", self.id_prefix), status);
    }

    /// Run `route`'s handler for `request` in a sandbox of its own: fresh children of the
    /// route's authorities, the request's view of the audit log, the server's per-request
    /// limits; within a slot of `max_concurrent_requests`, held while its instance runs.
    async fn dispatch(
        &self,
        route: &Route,
        request_id: &str,
        n: u64,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Body> {
        let slot = self.slots.clone().acquire_owned();
        let slot = match tokio::time::timeout(self.options.queue_wait, slot).await {
            Ok(Ok(slot)) => slot,
            _ => {
                let mut busy = plain(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "the server is handling as many requests as it may; try again",
                );
                busy.headers_mut()
                    .insert("retry-after", http::HeaderValue::from_static("1"));
                return busy;
            }
        };
        let sandbox_id = format!("{}/{n}", self.sandbox.id());
        let audit = Arc::new(self.sandbox.audit().for_request(request_id));
        let outbound =
            self.sandbox
                .outbound()
                .for_request(&sandbox_id, route.request_handles(), audit);
        let limits = self.sandbox.limits();
        let spec = SandboxSpec {
            memory: limits.memory,
            timeout: limits.timeout,
            stdio: self.options.stdio.clone(),
            ..SandboxSpec::new(Arc::new(outbound), &sandbox_id)
        };
        // The slot is held as long as the handler's instance runs (its wall clock bounds
        // that, and the send timeout a client that stops reading), not as long as the client
        // takes to read what the handler wrote.
        let send_timeout = Some(self.options.send_timeout);
        match self
            .sandbox
            .host()
            .handle(&route.handler, spec, request, Some(slot), send_timeout)
            .await
        {
            Ok(response) => response.map(|body| body.boxed_unsync()),
            Err(failure) => plain(failure.status(), &failure.message()),
        }
    }
}

/// A short text response of the server's own.
fn plain(status: http::StatusCode, text: &str) -> http::Response<Body> {
    let body = Full::new(Bytes::from(format!("{text}\n")))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
