//! Headers that servers read as another method, path or host.
//!
//! Many frameworks honour a header that overrides the request line: `X-HTTP-Method-Override:
//! DELETE` turns a GET into a DELETE (Rails, Laravel, Symfony, Google APIs), `X-Original-URL:
//! /admin` and `X-Rewrite-URL` route by another path (IIS URL Rewrite, Symfony), and
//! `X-Forwarded-Host` / `Forwarded: host=` steer host-based routing (virtual hosts, reverse
//! proxies). A grant on `GET /public/` would mean little if the guest could add one of these. So
//! each is judged as what the server would read it as, against the same grant: a method
//! override must be a method the grant allows, a path override a canonical path it grants, a
//! host override a host (and port) its origin matches — and a request is denied with the reason
//! it would get as a request line otherwise.

use super::grant::Grant;
use super::method::Method;
use super::origin::{parse_port, split_authority, Host};
use super::path::check_canonical_path;
use super::reason::Reason;

/// Headers servers read as the request's method.
pub const METHOD_OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
/// Headers servers read as the request's path (and query).
pub const PATH_OVERRIDE_HEADERS: &[&str] = &["x-original-url", "x-rewrite-url", "x-original-uri"];
/// Headers servers read as the request's host.
pub const HOST_OVERRIDE_HEADERS: &[&str] = &[
    "x-forwarded-host",
    "x-host",
    "x-forwarded-server",
    "forwarded",
];

/// The first override header in `headers` (lowercase names) that `grant` would deny as a
/// request line: its index, the reason, and why.
pub(crate) fn refused_override(
    grant: &Grant,
    headers: &[(String, Vec<u8>)],
) -> Option<(usize, Reason, String)> {
    headers.iter().enumerate().find_map(|(i, (name, value))| {
        let name = name.as_str();
        let judged = if METHOD_OVERRIDE_HEADERS.contains(&name) {
            judge_method(grant, value)
        } else if PATH_OVERRIDE_HEADERS.contains(&name) {
            judge_path(grant, value)
        } else if HOST_OVERRIDE_HEADERS.contains(&name) {
            judge_hosts(grant, name, value)
        } else {
            Ok(())
        };
        judged.err().map(|(reason, why)| (i, reason, why))
    })
}

type Judged = Result<(), (Reason, String)>;

fn text(value: &[u8]) -> Result<&str, (Reason, String)> {
    std::str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| (Reason::InvalidHeader, "its value is not UTF-8".into()))
}

fn judge_method(grant: &Grant, value: &[u8]) -> Judged {
    let method = Method::parse(text(value)?).map_err(|e| (Reason::InvalidMethod, e))?;
    if grant.methods.contains(&method) {
        Ok(())
    } else {
        Err((
            Reason::MethodNotAllowed,
            format!(
                "it asks for method {method}, which is not one of {}",
                grant.methods
            ),
        ))
    }
}

fn judge_path(grant: &Grant, value: &[u8]) -> Judged {
    let target = text(value)?;
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if !path.starts_with('/') {
        return Err((
            Reason::NonCanonicalPath,
            format!("it asks for {target:?}, which is not an absolute path"),
        ));
    }
    check_canonical_path(path).map_err(|e| (Reason::NonCanonicalPath, e.0))?;
    if grant.grants_path(path) {
        Ok(())
    } else {
        Err((
            Reason::PathNotAllowed,
            format!("it asks for path {path}, which this authority does not grant"),
        ))
    }
}

/// Every host a host-override header names: a comma-separated list, or for `Forwarded` the
/// `host=` parameter of each element (quoted or not).
fn judge_hosts(grant: &Grant, name: &str, value: &[u8]) -> Judged {
    let value = text(value)?;
    for element in value.split(',') {
        let host = if name == "forwarded" {
            let host = element.split(';').find_map(|pair| {
                let (key, val) = pair.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("host")
                    .then(|| val.trim().trim_matches('"'))
            });
            match host {
                Some(host) => host,
                None => continue,
            }
        } else {
            element.trim()
        };
        judge_host(grant, host)?;
    }
    Ok(())
}

fn judge_host(grant: &Grant, authority: &str) -> Judged {
    let (host_text, port_text) = split_authority(authority)?;
    let host = Host::parse(host_text).map_err(|e| (Reason::InvalidHost, e))?;
    let port = match port_text {
        Some(p) => parse_port(p).map_err(|e| (Reason::InvalidPort, e))?,
        None => grant.origin.port,
    };
    if grant.origin.host.matches(&host) && port == grant.origin.port {
        Ok(())
    } else {
        Err((
            Reason::NoAuthority,
            format!(
                "it names {authority}, which this authority ({}) does not grant",
                grant.origin
            ),
        ))
    }
}
