//! Schemes, hosts and origin patterns.
//!
//! A grant's origin is `scheme://host[:port]` where the host may be a single-label wildcard
//! `*.example.com` (matching `api.example.com`, never `example.com` or `a.b.example.com`).
//! A *request* host is always concrete: a pattern in a request URL is denied.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The only schemes urlcap speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http`: plain text, default port 80.
    Http,
    /// `https`: TLS for the granted name, default port 443.
    Https,
}

impl Scheme {
    pub(crate) fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }

    /// The scheme as written in a canonical URL (lowercase).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub(crate) fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A concrete, canonical host: lowercase ASCII domain (IDNA applied) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, resolved (and its answers vetted) by egress.
    Domain(String),
    /// An IPv4 literal, in any spelling the WHATWG parser accepts, normalised.
    Ipv4(Ipv4Addr),
    /// An IPv6 literal (written in brackets in a URL).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Parse a host as the WHATWG URL parser does for http(s) (IDNA, IPv4 in any notation),
    /// then insist on a plain DNS name: labels of `a-z 0-9 - _`, no empty label, no trailing dot.
    pub fn parse(raw: &str) -> Result<Host, String> {
        if raw.is_empty() {
            return Err("empty host".into());
        }
        if raw.contains('%') {
            return Err(format!("percent-encoded host {raw:?}"));
        }
        let host = url::Host::parse(raw).map_err(|e| format!("host {raw:?}: {e}"))?;
        match &host {
            url::Host::Domain(d) => Host::from_url_host(url::Host::Domain(d.as_str())),
            url::Host::Ipv4(ip) => Ok(Host::Ipv4(*ip)),
            url::Host::Ipv6(ip) => Ok(Host::Ipv6(*ip)),
        }
    }

    pub(crate) fn from_url_host(host: url::Host<&str>) -> Result<Host, String> {
        Ok(match host {
            url::Host::Ipv4(ip) => Host::Ipv4(ip),
            url::Host::Ipv6(ip) => Host::Ipv6(ip),
            url::Host::Domain(d) => {
                check_domain(d)?;
                Host::Domain(d.to_string())
            }
        })
    }

    /// The IP address, if this host is a literal.
    pub(crate) fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::Ipv4(ip) => Some((*ip).into()),
            Host::Ipv6(ip) => Some((*ip).into()),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

fn check_domain(d: &str) -> Result<(), String> {
    if d.len() > 253 {
        return Err(format!(
            "host name longer than 253 characters ({})",
            d.len()
        ));
    }
    if d.ends_with('.') {
        return Err(format!("host {d:?} has a trailing dot; write it without"));
    }
    for label in d.split('.') {
        if label.is_empty() {
            return Err(format!("host {d:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "host {d:?} contains {c:?}; only letters, digits, '-' and '_' are allowed"
            ));
        }
    }
    Ok(())
}

/// The host part of a grant: one exact host, or every host one label below a suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this host.
    Exact(Host),
    /// `*.suffix`: matches `label.suffix` for exactly one label.
    Wildcard(String),
}

/// Is `domain` itself a public suffix (`co.uk`, `github.io`) per the Public Suffix List
/// compiled into the `psl` crate (ICANN and private sections)? Names under an unlisted TLD
/// are only suffixes by the list's default rule, which is not enough to refuse them.
fn is_public_suffix(domain: &str) -> bool {
    psl::suffix(domain.as_bytes())
        .is_some_and(|s| s.is_known() && s.as_bytes().eq_ignore_ascii_case(domain.as_bytes()))
}

impl HostPattern {
    /// A host or a one-label wildcard (`*.example.com`). A wildcard over a public suffix
    /// (`*.co.uk`, `*.github.io`) or a top-level domain is refused: it would grant every
    /// unrelated site below it.
    pub fn parse(raw: &str) -> Result<HostPattern, String> {
        match raw.strip_prefix("*.") {
            Some(suffix) => match Host::parse(suffix)? {
                Host::Domain(d) if !d.contains('.') => Err(format!("wildcard *.{d} would match every host under a top-level domain; name at least two labels")),
                Host::Domain(d) if is_public_suffix(&d) => Err(format!(
                    "wildcard *.{d} would grant every site under the public suffix {d} (Public Suffix List); name a registrable domain, such as *.example.{d}"
                )),
                Host::Domain(d) if is_public_suffix(&format!("urlcap-probe.{d}")) => Err(format!(
                    "wildcard *.{d} would match hosts that are themselves public suffixes (every name under {d} is one, per the Public Suffix List), so each is another tenant; name one of them"
                )),
                Host::Domain(d) => Ok(HostPattern::Wildcard(d)),
                _ => Err(format!("wildcard {raw:?} must be over a domain, not an IP address")),
            },
            None if raw.contains('*') => Err(format!("host {raw:?}: '*' is only allowed as a whole first label (*.example.com)")),
            None => Host::parse(raw).map(HostPattern::Exact),
        }
    }

    pub(crate) fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (HostPattern::Exact(h), host) => h == host,
            (HostPattern::Wildcard(suffix), Host::Domain(d)) => {
                wildcard_parent(d) == Some(suffix.as_str())
            }
            (HostPattern::Wildcard(_), _) => false,
        }
    }
}

/// For `a.b.c`, the suffix a single-label wildcard would name: `b.c`.
pub(crate) fn wildcard_parent(domain: &str) -> Option<&str> {
    domain
        .split_once('.')
        .map(|(_, rest)| rest)
        .filter(|rest| !rest.is_empty())
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => h.fmt(f),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

/// Scheme, host pattern and port of a grant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginPattern {
    /// The scheme, exactly.
    pub scheme: Scheme,
    /// The host, exactly or one label below a wildcard suffix.
    pub host: HostPattern,
    /// The port, exactly (the scheme's default when the grant names none).
    pub port: u16,
}

impl OriginPattern {
    pub(crate) fn matches(&self, scheme: Scheme, host: &Host, port: u16) -> bool {
        self.scheme == scheme && self.port == port && self.host.matches(host)
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// Parse a port exactly as written: plain decimal, no sign, no leading zero, 1..=65535.
pub(crate) fn parse_port(raw: &str) -> Result<u16, String> {
    if raw.is_empty() {
        return Err("empty port after ':'".into());
    }
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {raw:?} is not plain decimal"));
    }
    if raw.starts_with('0') {
        return Err(format!("port {raw:?} has a leading zero or is zero"));
    }
    raw.parse::<u16>()
        .map_err(|_| format!("port {raw} is out of range (1-65535)"))
}

/// Split an authority (`host`, `host:port`, `[v6]`, `[v6]:port`) into its host and port text.
/// Fails on userinfo and on anything after the port.
pub(crate) fn split_authority(
    authority: &str,
) -> Result<(&str, Option<&str>), (crate::policy::Reason, String)> {
    use crate::policy::Reason;
    if authority.contains('@') {
        return Err((
            Reason::Userinfo,
            "userinfo (user@ or user:password@) is not allowed in a URL".into(),
        ));
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err((
                Reason::InvalidHost,
                format!("unclosed '[' in {authority:?}"),
            ));
        };
        let host = &authority[..end + 2];
        return match &rest[end + 1..] {
            "" => Ok((host, None)),
            tail => match tail.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err((
                    Reason::InvalidHost,
                    format!("unexpected {tail:?} after IPv6 address"),
                )),
            },
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_over_public_suffixes_are_refused() {
        for refused in [
            "*.co.uk",
            "*.github.io",
            "*.com.au",
            "*.s3.amazonaws.com",
            "*.CO.UK",
            "*.compute-1.amazonaws.com",
            "*.kawasaki.jp",
        ] {
            let e = HostPattern::parse(refused).unwrap_err();
            assert!(e.contains("public suffix"), "{refused}: {e}");
        }
        for allowed in [
            "*.example.co.uk",
            "*.me.github.io",
            "*.cdn.example.net",
            "*.foo.test",
        ] {
            assert!(
                matches!(HostPattern::parse(allowed), Ok(HostPattern::Wildcard(_))),
                "{allowed}"
            );
        }
    }

    #[test]
    fn wildcards_match_exactly_one_label() {
        let p = HostPattern::parse("*.example.com").unwrap();
        let d = |s: &str| Host::Domain(s.into());
        assert!(p.matches(&d("api.example.com")));
        assert!(!p.matches(&d("example.com")));
        assert!(!p.matches(&d("a.b.example.com")));
        assert!(!p.matches(&d("apiexample.com")));
        assert!(!p.matches(&d("api.example.com.evil.net")));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for raw in [
            "*.com",
            "*",
            "a.*.com",
            "*example.com",
            "**.example.com",
            "*.127.0.0.1",
            "",
            "exa mple.com",
            "example.com.",
            "a..b",
        ] {
            assert!(HostPattern::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn hosts_are_normalised_by_the_whatwg_parser() {
        assert_eq!(
            Host::parse("EXAMPLE.com").unwrap(),
            Host::Domain("example.com".into())
        );
        assert_eq!(
            Host::parse("2130706433").unwrap(),
            Host::Ipv4(Ipv4Addr::new(127, 0, 0, 1))
        );
        assert_eq!(
            Host::parse("0x7f.1").unwrap(),
            Host::Ipv4(Ipv4Addr::new(127, 0, 0, 1))
        );
        assert_eq!(
            Host::parse("bücher.de").unwrap(),
            Host::Domain("xn--bcher-kva.de".into())
        );
        assert!(Host::parse("%65xample.com").is_err());
    }

    #[test]
    fn ports_must_be_plain_decimal() {
        assert_eq!(parse_port("8080"), Ok(8080));
        for raw in ["", "0", "080", "+443", "65536", "443:80", " 80", "8o"] {
            assert!(parse_port(raw).is_err(), "{raw:?}");
        }
    }
}
