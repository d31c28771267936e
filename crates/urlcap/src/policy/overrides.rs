//! Headers (and one query parameter) that servers read as another method, path, host, scheme
//! or port.
//!
//! Many frameworks honour a header that overrides the request line: `X-HTTP-Method-Override:
//! DELETE` turns a GET into a DELETE (Rails, Laravel, Symfony, Google APIs), `X-Original-URL:
//! /admin` and `X-Rewrite-URL` route by another path (IIS URL Rewrite, Symfony),
//! `X-Forwarded-Host` / `Forwarded: host=` steer host-based routing (virtual hosts, reverse
//! proxies), `X-Forwarded-Proto` / `-Port` change what a server believes the scheme and port
//! were (Symfony, Django, Spring, Rails), and `?_method=DELETE` overrides the method of a POST
//! (Laravel, Symfony). A grant on `GET /public/` would mean little if the guest could add one
//! of these. So each is judged as what the server would read it as, against the same grant: a
//! method override must be a method the grant allows, a path override a canonical path it
//! grants, a host override a host and port its origin matches, a scheme or port override the
//! request's own — and otherwise the request is denied with the reason it would get as a
//! request line.
//!
//! Names are compared as CGI-style servers read them: case-insensitively and with `_` as `-`
//! (`X_HTTP_Method_Override` reaches a WSGI or Rack application as the same variable).
//! `Forwarded` is parsed as RFC 7239 says (quoted strings, escapes), every `host=` and
//! `proto=` in every element is judged, and a value that does not parse is refused.

use super::grant::Grant;
use super::method::Method;
use super::origin::{parse_port, split_authority, Host};
use super::path::check_canonical_path;
use super::reason::Reason;
use super::request::CanonicalUrl;

/// Headers servers read as the request's method.
pub(crate) const METHOD_OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-forwarded-method",
];
/// Headers servers read as the request's path (and query), or as a prefix of it.
pub(crate) const PATH_OVERRIDE_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-prefix",
];
/// Headers servers read as the request's host.
pub(crate) const HOST_OVERRIDE_HEADERS: &[&str] = &[
    "x-forwarded-host",
    "x-host",
    "x-forwarded-server",
    "x-original-host",
    "forwarded",
];
/// Headers servers read as the request's scheme.
pub(crate) const SCHEME_OVERRIDE_HEADERS: &[&str] =
    &["x-forwarded-proto", "x-forwarded-scheme", "x-url-scheme"];
/// Headers servers read as "the request was https" when `on` (Rack, IIS).
pub(crate) const TLS_FLAG_HEADERS: &[&str] = &["x-forwarded-ssl", "front-end-https"];
/// Headers servers read as the request's port.
pub(crate) const PORT_OVERRIDE_HEADERS: &[&str] = &["x-forwarded-port"];
/// The query parameter servers read as the method of a POST.
pub(crate) const METHOD_OVERRIDE_PARAMETER: &str = "_method";

/// The first override in a request that `grant` would deny as a request line: what it was
/// (`header "x-..."` or the query parameter), the reason, and why.
pub(crate) fn refused_override(
    grant: &Grant,
    url: &CanonicalUrl,
    headers: &[(String, Vec<u8>)],
) -> Option<(String, Reason, String)> {
    let refused_header = headers.iter().find_map(|(name, value)| {
        // Checked on every request: no allocation for the headers that are none of these.
        let is = |set: &[&str]| set.iter().any(|s| same_as_cgi(name, s));
        let judged = if is(METHOD_OVERRIDE_HEADERS) {
            text(value).and_then(|v| judge_method(grant, v))
        } else if is(PATH_OVERRIDE_HEADERS) {
            text(value).and_then(|v| judge_path(grant, v))
        } else if same_as_cgi(name, "forwarded") {
            text(value).and_then(|v| judge_forwarded(grant, url, v))
        } else if is(HOST_OVERRIDE_HEADERS) {
            text(value).and_then(|v| v.split(',').try_for_each(|h| judge_host(grant, h.trim())))
        } else if is(SCHEME_OVERRIDE_HEADERS) {
            text(value).and_then(|v| v.split(',').try_for_each(|s| judge_scheme(url, s.trim())))
        } else if is(TLS_FLAG_HEADERS) {
            text(value).and_then(|v| {
                let claimed = if v.eq_ignore_ascii_case("on") {
                    "https"
                } else {
                    "http"
                };
                judge_scheme(url, claimed)
            })
        } else if is(PORT_OVERRIDE_HEADERS) {
            text(value).and_then(|v| v.split(',').try_for_each(|p| judge_port(url, p.trim())))
        } else {
            Ok(())
        };
        judged
            .err()
            .map(|(reason, why)| (format!("header {name:?}"), reason, why))
    });
    refused_header.or_else(|| {
        let query = url.query()?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // As servers decode the name: percent-decoded, and `.`, `+` and space read as `_`
            // (PHP), so `%5Fmethod`, `.method` and `+method` are `_method` too.
            let is_method = if key.contains(['%', '.', '+', ' ']) {
                let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
                let key: String = key
                    .chars()
                    .map(|c| if matches!(c, '.' | '+' | ' ') { '_' } else { c })
                    .collect();
                key.eq_ignore_ascii_case(METHOD_OVERRIDE_PARAMETER)
            } else {
                // The usual query: no allocation on every request.
                key.eq_ignore_ascii_case(METHOD_OVERRIDE_PARAMETER)
            };
            if !is_method {
                return None;
            }
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            judge_method(grant, &value).err().map(|(reason, why)| {
                (
                    format!("query parameter {METHOD_OVERRIDE_PARAMETER}"),
                    reason,
                    why,
                )
            })
        })
    })
}

/// Is the (lowercase) header `name` the header `known` as a CGI-style server reads it, where
/// `_` and `-` are the same?
fn same_as_cgi(name: &str, known: &str) -> bool {
    name.len() == known.len()
        && name
            .bytes()
            .zip(known.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

type Judged = Result<(), (Reason, String)>;

fn text(value: &[u8]) -> Result<&str, (Reason, String)> {
    std::str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| (Reason::InvalidHeader, "its value is not UTF-8".into()))
}

fn judge_method(grant: &Grant, value: &str) -> Judged {
    let method = Method::parse(value.trim()).map_err(|e| (Reason::InvalidMethod, e))?;
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

fn judge_path(grant: &Grant, target: &str) -> Judged {
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

fn judge_scheme(url: &CanonicalUrl, scheme: &str) -> Judged {
    if scheme.eq_ignore_ascii_case(url.scheme().as_str()) {
        Ok(())
    } else {
        Err((
            Reason::NoAuthority,
            format!(
                "it claims scheme {scheme:?}, but the request is {}",
                url.scheme().as_str()
            ),
        ))
    }
}

fn judge_port(url: &CanonicalUrl, port: &str) -> Judged {
    match parse_port(port) {
        Ok(p) if p == url.port() => Ok(()),
        Ok(p) => Err((
            Reason::NoAuthority,
            format!("it claims port {p}, but the request is on {}", url.port()),
        )),
        Err(e) => Err((Reason::InvalidPort, e)),
    }
}

/// RFC 7239: `forwarded-element *( "," forwarded-element )`, each `pair *( ";" pair )`, each
/// `token "=" ( token / quoted-string )`. Every `host` and `proto` is judged; anything that
/// does not parse is refused (a server may parse it another way).
fn judge_forwarded(grant: &Grant, url: &CanonicalUrl, value: &str) -> Judged {
    judge_forwarded_strictly(grant, url, value)?;
    judge_forwarded_loosely(grant, url, value)
}

/// Some servers do not parse `Forwarded` at all but search it (Spring, Vert.x:
/// `(?i:host)="?([^;,"]+)` anywhere): every `host=` and `proto=` anywhere in the value, inside
/// quotes or as the end of a longer key, is judged too.
fn judge_forwarded_loosely(grant: &Grant, url: &CanonicalUrl, value: &str) -> Judged {
    let lower = value.to_ascii_lowercase();
    for (key, judge) in [
        (
            "host=",
            (|g: &Grant, _: &CanonicalUrl, v: &str| judge_host(g, v))
                as fn(&Grant, &CanonicalUrl, &str) -> Judged,
        ),
        ("proto=", |_, u, v| judge_scheme(u, v)),
    ] {
        for (at, _) in lower.match_indices(key) {
            let rest = value[at + key.len()..].trim_start_matches('"');
            let end = rest.find([';', ',', '"']).unwrap_or(rest.len());
            judge(grant, url, rest[..end].trim())?;
        }
    }
    Ok(())
}

/// RFC 7239, parsed: see [`judge_forwarded`].
fn judge_forwarded_strictly(grant: &Grant, url: &CanonicalUrl, value: &str) -> Judged {
    let malformed = || {
        (
            Reason::InvalidHeader,
            "its value is not a well-formed Forwarded list (RFC 7239)".to_string(),
        )
    };
    let mut chars = value.chars().peekable();
    loop {
        while chars
            .next_if(|c| matches!(c, ' ' | '\t' | ',' | ';'))
            .is_some()
        {}
        if chars.peek().is_none() {
            return Ok(());
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ';' && *c != ',') {
            key.push(c);
        }
        if chars.next() != Some('=') {
            return Err(malformed());
        }
        let key = key.trim();
        if key.is_empty() || !super::method::is_token(key) {
            return Err(malformed());
        }
        let mut val = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => val.push(chars.next().ok_or_else(malformed)?),
                    Some(c) => val.push(c),
                    None => return Err(malformed()),
                }
            }
            if chars
                .peek()
                .is_some_and(|c| !matches!(c, ';' | ',' | ' ' | '\t'))
            {
                return Err(malformed());
            }
        } else {
            while let Some(c) = chars.next_if(|c| !matches!(c, ';' | ',')) {
                val.push(c);
            }
        }
        let val = val.trim();
        if key.eq_ignore_ascii_case("host") {
            judge_host(grant, val)?;
        } else if key.eq_ignore_ascii_case("proto") {
            judge_scheme(url, val)?;
        }
    }
}
