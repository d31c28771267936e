//! The wasm host: runs a `wasi:cli` command component whose only way to the network is the
//! authorities preopened for it.
//!
//! Guests get wasi:cli (args, stdio, clocks, random; environment variables only as granted;
//! directories only as granted), no sockets (TCP, UDP and name lookup are disabled and every
//! socket address is refused), and `urlcap:http`. Every `fetch` goes through the sandbox's
//! [`Outbound`](crate::outbound::Outbound): policy → egress → audit. Limits: linear memory (a grow past it traps), wall
//! clock (epoch interruption while the guest computes, and a timer around the whole run while
//! it waits on the host), and in-flight requests (egress). A trap or limit ends the guest with
//! a clear message and exit status; the host is unharmed.
//!
//! The files: `engine` (the engines, linker and caches every sandbox of a host shares, and
//! compiling), `sandbox` (one running guest: its state, what it may use, how a run starts and
//! ends), `limits` (memory, table and resource limits, and how a stopped guest's exit status
//! and message are chosen), `guest_api` (the `urlcap:http` host functions), `wasi_http` (the
//! `wasi:http` hooks into the same choke point), `incoming` (a served request: a fresh
//! instance of a `wasi:http/proxy` handler per request, for `urlcap serve`), `admission`
//! (vetting guest-supplied components), `compile_worker` (compiling them in a process the
//! deadline kills), `compiled` (the bounded cache of linked components), `capture` and
//! `guest_stderr` (where guest output goes).

mod admission;
mod artifacts;
mod capture;
pub mod compile_worker;
mod compiled;
mod guest_api;
mod guest_stderr;
pub mod host_output;
mod incoming;
mod pulls;
mod wasi_http;

pub use incoming::{Failure, Handler, HandlerResponse};
pub use wasi_http::UrlcapHttpHooks;

mod engine;
mod limits;
mod sandbox;

pub(crate) use engine::Shared;
pub use engine::{WasmHost, MAX_CONCURRENT_COMPILES, NESTED_CACHE};
pub(crate) use limits::Limiter;
pub use limits::{Outcome, DEFAULT_MAX_DEPTH, EXIT_AUDIT, EXIT_TIMEOUT, EXIT_TRAP};
pub(crate) use sandbox::GuestAuthority;
pub use sandbox::{SandboxSpec, SandboxState, Stdio};
