//! Guest SDK for [urlcap](https://example.invalid/urlcap): send HTTP requests through the
//! authorities the host preopened for you, derive narrower ones, and revoke them.
//!
//! Build your component for `wasm32-wasip2`; run it with `urlcap run --allow ... guest.wasm`.
//!
//! ```no_run
//! use urlcap_guest::{authority, Attenuation, Reason};
//!
//! let api = authority("api").expect("the host preopened `api`");
//! let response = api.get("/v1/items?page=2")?;
//! println!("{} {}", response.status, response.text());
//!
//! // Hand a plugin less than you have: read-only, one path, five requests.
//! let narrow = api.derive(&Attenuation::new().paths(["/v1/public/"]).methods(["GET"]).max_requests(5))?;
//! match narrow.get("/v1/admin") {
//!     Err(e) if e.reason == Reason::PathNotAllowed => println!("denied as expected: {e}"),
//!     other => panic!("{other:?}"),
//! }
//! narrow.revoke();
//! # Ok::<(), urlcap_guest::Error>(())
//! ```
#![deny(unsafe_code)]

#[allow(unsafe_code, clippy::all)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "urlcap:http/imports" });
}

use bindings::urlcap::http::{preopens, sandbox, types};
use std::fmt;

/// Why the host refused: one of its stable reason codes (the WIT `reason` enum). It displays
/// as the snake_case code the host's audit log records for the same event.
pub use types::Reason;

impl Reason {
    /// The stable snake_case code, as in the host's audit log (`path_not_allowed`).
    pub fn code(&self) -> String {
        // The case's Rust name (`Reason::PathNotAllowed`), snake_cased.
        let debug = format!("{self:?}");
        let name = debug.rsplit("::").next().unwrap_or(&debug);
        let mut code = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                code.push('_');
            }
            code.push(c.to_ascii_lowercase());
        }
        code
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

/// A refusal from the host, with the same reason the host's audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub reason: Reason,
    /// A human-readable explanation (not a contract: match on `reason`).
    pub detail: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for Error {}

impl From<types::Error> for Error {
    fn from(e: types::Error) -> Error {
        Error { reason: e.reason, detail: e.detail }
    }
}

/// A request relative to an authority's origin.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, path_and_query: &str) -> Request {
        Request { method: method.into(), path_and_query: path_and_query.into(), ..Request::default() }
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }
}

/// A response as the server sent it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Every value of a header, in order (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Vec<&[u8]> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice()).collect()
    }
}

/// What to narrow a derived authority to; unset fields keep the parent's value.
#[derive(Debug, Clone, Default)]
pub struct Attenuation(types::Attenuation);

impl Default for types::Attenuation {
    fn default() -> Self {
        types::Attenuation {
            host: None,
            paths: None,
            methods: None,
            max_requests: None,
            rate: None,
            timeout_ms: None,
            max_request_body: None,
            max_response_body: None,
            expires_in_ms: None,
        }
    }
}

impl Attenuation {
    pub fn new() -> Attenuation {
        Attenuation::default()
    }
    pub fn host(mut self, host: &str) -> Self {
        self.0.host = Some(host.into());
        self
    }
    pub fn paths<'a>(mut self, paths: impl IntoIterator<Item = &'a str>) -> Self {
        self.0.paths = Some(paths.into_iter().map(String::from).collect());
        self
    }
    pub fn methods<'a>(mut self, methods: impl IntoIterator<Item = &'a str>) -> Self {
        self.0.methods = Some(methods.into_iter().map(String::from).collect());
        self
    }
    pub fn max_requests(mut self, n: u64) -> Self {
        self.0.max_requests = Some(n);
        self
    }
    /// "N/UNIT", e.g. "10/s".
    pub fn rate(mut self, rate: &str) -> Self {
        self.0.rate = Some(rate.into());
        self
    }
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.0.timeout_ms = Some(ms);
        self
    }
    pub fn max_request_body(mut self, bytes: u64) -> Self {
        self.0.max_request_body = Some(bytes);
        self
    }
    pub fn max_response_body(mut self, bytes: u64) -> Self {
        self.0.max_response_body = Some(bytes);
        self
    }
    pub fn expires_in_ms(mut self, ms: u64) -> Self {
        self.0.expires_in_ms = Some(ms);
        self
    }
}

/// A capability to send some HTTP requests.
#[derive(Debug)]
pub struct Authority {
    inner: types::Authority,
    name: String,
}

/// Every authority the host preopened, with its name.
pub fn authorities() -> Vec<Authority> {
    preopens::get_authorities().into_iter().map(|(inner, name)| Authority { inner, name }).collect()
}

/// The preopened authority called `name`, if there is one.
pub fn authority(name: &str) -> Option<Authority> {
    authorities().into_iter().find(|a| a.name == name)
}

impl Authority {
    /// The preopen name (derived authorities keep their parent's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        self.inner.origin()
    }

    /// Lineage, origin, paths, methods and limits, on one line.
    pub fn describe(&self) -> String {
        self.inner.describe()
    }

    pub fn fetch(&self, req: Request) -> Result<Response, Error> {
        let r = self.inner.fetch(&types::Request {
            method: req.method,
            path_and_query: req.path_and_query,
            headers: req.headers,
            body: req.body,
        })?;
        Ok(Response { status: r.status, headers: r.headers, body: r.body })
    }

    pub fn get(&self, path_and_query: &str) -> Result<Response, Error> {
        self.fetch(Request::new("GET", path_and_query))
    }

    pub fn post(&self, path_and_query: &str, body: impl Into<Vec<u8>>) -> Result<Response, Error> {
        self.fetch(Request::new("POST", path_and_query).body(body))
    }

    /// A new authority allowing a subset of this one.
    pub fn derive(&self, att: &Attenuation) -> Result<Authority, Error> {
        let inner = self.inner.derive(&att.0)?;
        Ok(Authority { inner, name: self.name.clone() })
    }

    /// Revoke this authority and everything derived from it.
    pub fn revoke(&self) {
        self.inner.revoke()
    }
}

/// How a nested sandbox ended.
#[derive(Debug, Clone)]
pub struct ExitStatus {
    /// 0 success, 1 failure, 124 time limit, 134 trap or memory limit.
    pub code: i32,
    /// Why the host stopped the child, if it did.
    pub message: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Run `component` (a wasi:cli command component, program name first in `args`) in a nested
/// sandbox that sees only `preopens`: each becomes a fresh child of the authority you pass, so
/// revoking yours revokes the child's, and its requests count against your budgets. Its memory
/// and time are at most what you have left.
pub fn run_sandbox(component: &[u8], preopens: &[(&Authority, &str)], args: &[&str]) -> Result<ExitStatus, Error> {
    let handles: Vec<(&types::Authority, String)> = preopens.iter().map(|(a, n)| (&a.inner, n.to_string())).collect();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let status = sandbox::run(component, &handles, &args)?;
    Ok(ExitStatus { code: status.code, message: status.message, stdout: status.stdout, stderr: status.stderr })
}
