//! `urlcap serve`: untrusted `wasi:http/proxy` handlers behind one HTTP listener, each route
//! with its own capabilities.
//!
//! What it promises (SECURITY.md, the serve invariants):
//! - **A fresh instance per request.** Every request gets a new store and instance of its
//!   route's pre-linked component (`host::Handler`), under `[limits]` memory and wall clock;
//!   nothing a handler does outlives its request. `max_concurrent_requests` bounds the
//!   requests being handled across the server.
//! - **Per-route confinement.** A request's sandbox holds fresh children of exactly the
//!   authorities its route lists — never the roots, never another route's — so a handler can
//!   neither reach another route's authority nor revoke anything beyond its own request.
//! - **The incoming request never chooses an egress destination.** Its `Host` header,
//!   absolute-form target and `X-Forwarded-*` headers are data the handler may read; every
//!   outgoing request is matched against the request's own handles at the one choke point.
//! - **Every audit record of a request carries its `request_id`**, also sent back as the
//!   `x-request-id` response header and written on its access-log line.
//!
//! The files: `routes` (the route table and each request's handles), `server` (accepting,
//! limits, statuses, shutdown), `connection` (one connection: idle close, drain, requests in
//! flight), `access_log` (one line per request, written when its response ends).

mod access_log;
mod connection;
mod routes;
mod server;

pub use access_log::AccessLog;
pub use routes::RouteSpec;
pub use server::{
    Drained, Server, ServerOptions, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SEND_TIMEOUT,
};
