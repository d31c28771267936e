//! Name resolution behind a trait, so tests and embedders can inject answers (including
//! hostile ones: rebinding, mixed sets) and the connector itself never resolves anything.
//!
//! [`lookup`] and [`vet_answer`] are the resolver rules, written once: egress follows them
//! before every new connection, and `urlcap explain --resolve` follows the same two functions,
//! so a dry run cannot judge an answer differently from a real request.

use crate::policy::{Authority, CanonicalUrl, Denial, Reason, VettedAddr};
use rustc_hash::FxHashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

/// The addresses `url`'s host stands for: an IP literal is its own answer (nothing is looked
/// up); a name is resolved once through `resolver`, waiting at most `wait`. An error, a timeout
/// or an empty answer is `dns_failure`. Nothing is vetted yet: see [`vet_answer`].
pub async fn lookup(
    resolver: &dyn Resolve,
    url: &CanonicalUrl,
    wait: Duration,
) -> Result<Vec<IpAddr>, Denial> {
    if let Some(ip) = url.host().ip() {
        return Ok(vec![ip]);
    }
    let host = url.host_str();
    let fail = |detail: String| Err(Denial::new(Reason::DnsFailure, detail));
    match tokio::time::timeout(wait, resolver.resolve(host, url.port())).await {
        Err(_) => fail(format!(
            "{host} did not resolve within {}",
            humantime::format_duration(wait)
        )),
        Ok(Err(e)) => fail(format!("{host}: {e}")),
        Ok(Ok(ips)) if ips.is_empty() => fail(format!("{host} resolved to no addresses")),
        Ok(Ok(ips)) => Ok(ips),
    }
}

/// Vet every address of one answer for `authority`, in order. One denied address denies the
/// whole answer: a name that resolves partly into internal space is treated as hostile (the
/// next connection could be steered to the internal address), and the denial says it was one
/// of several.
pub fn vet_answer(
    authority: &Authority,
    url: &CanonicalUrl,
    ips: &[IpAddr],
) -> Result<Vec<VettedAddr>, Denial> {
    ips.iter()
        .map(|ip| {
            authority
                .vet(SocketAddr::new(*ip, url.port()))
                .map_err(|mut d| {
                    if ips.len() > 1 {
                        d.detail = format!(
                            "{} (one of {} addresses for {}; a mixed answer is denied whole)",
                            d.detail,
                            ips.len(),
                            url.host_str()
                        );
                    }
                    d
                })
        })
        .collect()
}

/// The future a [`Resolve`] returns.
pub type Resolving<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Resolves a granted host name to addresses. Called once per new connection; every answer is
/// vetted before any socket is opened.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses `host` (a granted name, never an IP literal) has now. `port` is only a
    /// hint for resolvers that take one; the answer is judged per address.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolving<'a>;
}

/// The operating system's resolver (getaddrinfo on tokio's blocking pool).
///
/// Names with a dot are looked up as absolute names (a trailing dot is added), so the
/// resolv.conf search list can never turn `api.example.com` into `api.example.com.corp`.
/// Single-label names (`localhost`) are looked up as written: they are local names by intent,
/// found through the hosts file.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolving<'a> {
        Box::pin(async move {
            let name = query_name(host);
            let addrs = tokio::net::lookup_host((name.as_str(), port)).await?;
            let mut ips: Vec<IpAddr> = Vec::new();
            for addr in addrs {
                if !ips.contains(&addr.ip()) {
                    ips.push(addr.ip());
                }
            }
            Ok(ips)
        })
    }
}

/// The name the system resolver is asked for: absolute (trailing dot) when it has a dot, so
/// no resolv.conf `search` or `ndots` setting can append a domain to it; single-label names
/// as written.
fn query_name(host: &str) -> String {
    if host.contains('.') && !host.ends_with('.') {
        format!("{host}.")
    } else {
        host.to_string()
    }
}

/// Fixed answers, changeable at any time: for tests (rebinding, mixed answer sets) and for
/// embedders that pin names to addresses.
#[derive(Debug, Default)]
pub struct StaticResolver {
    answers: Mutex<FxHashMap<String, Vec<IpAddr>>>,
    lookups: Mutex<Vec<String>>,
}

impl StaticResolver {
    /// A resolver that knows no names yet (every lookup fails until [`StaticResolver::set`]).
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Answer `host` with `ips` from now on (replacing earlier answers).
    pub fn set(&self, host: &str, ips: &[IpAddr]) {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_string(), ips.to_vec());
    }

    /// Every name looked up so far, in order.
    pub fn lookups(&self) -> Vec<String> {
        self.lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Resolve for StaticResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> Resolving<'a> {
        self.lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(host.to_string());
        let answer = self
            .answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .cloned();
        Box::pin(async move {
            answer.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no answer for {host}"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::query_name;

    #[test]
    fn dotted_names_are_queried_as_absolute_names() {
        assert_eq!(query_name("api.example.com"), "api.example.com.");
        assert_eq!(query_name("api.example.com."), "api.example.com.");
        assert_eq!(query_name("localhost"), "localhost");
    }
}
