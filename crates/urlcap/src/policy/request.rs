//! Canonical requests: a guest's method, URL and headers, checked and normalised once so that
//! the decision is made on exactly what will go on the wire.
//!
//! The URL is parsed with the WHATWG parser (the `url` crate), the same parser egress uses to
//! build the wire request, so the policy and the socket can never read a URL differently. Before
//! that, the raw text is held to a canonical form: anything the parser would silently repair
//! (backslashes, dot segments, stray whitespace, `http:/x`), and anything other parsers read
//! differently (userinfo, odd ports, encoded slashes), is denied instead of repaired.

use super::decision::Denial;
use super::method::{is_token, Method};
use super::origin::{parse_port, split_authority, Host, HostPattern, OriginPattern, Scheme};
use super::path::check_canonical_path;
use super::reason::Reason;
use std::fmt;
use url::Url;

/// Longest URL we accept, in bytes. Real APIs stay far below; the bound keeps audit lines sane.
pub const MAX_URL_LEN: usize = 8 * 1024;

/// Most headers a guest may send with one request. Servers refuse far fewer than this would
/// allow in bytes (hyper parses 100 by default); the bound keeps a hostile guest from making the
/// host copy, check and frame an unbounded header block.
pub(crate) const MAX_HEADERS: usize = 100;

/// Most bytes of header names and values a guest may send with one request.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Headers only the host may set: they choose the destination or the framing of the connection.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "http2-settings",
];

/// Is `name` (any case) a header the guest may never set, whatever the grant?
pub(crate) fn is_forbidden_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-")
}

/// Characters that have no business in a URL: controls (C0, DEL, C1), any whitespace, and the
/// invisible formatting characters that make a URL read differently to a person.
fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// An absolute http(s) URL in canonical form, with its origin parts broken out.
#[derive(Clone, PartialEq, Eq)]
pub struct CanonicalUrl {
    url: Url,
    scheme: Scheme,
    host: Host,
    port: u16,
}

impl CanonicalUrl {
    /// Canonicalize a URL as a guest wrote it, or say why it is denied.
    pub fn parse(raw: &str) -> Result<CanonicalUrl, Denial> {
        let deny = |reason, detail: String| Err(Denial::new(reason, detail));
        if raw.len() > MAX_URL_LEN {
            return deny(
                Reason::MalformedUrl,
                format!("URL is {} bytes; the limit is {MAX_URL_LEN}", raw.len()),
            );
        }
        if let Some(c) = raw.chars().find(|&c| is_hidden_char(c)) {
            return deny(
                Reason::ControlCharacter,
                format!("URL contains {c:?}; percent-encode it"),
            );
        }
        let Some((scheme_text, rest)) = raw.split_once("://") else {
            return deny(Reason::MalformedUrl, "expected scheme://host/path".into());
        };
        let Some(scheme) = Scheme::parse(scheme_text) else {
            let valid_syntax = scheme_text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme_text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            return if valid_syntax {
                deny(
                    Reason::UnsupportedScheme,
                    format!("scheme {scheme_text:?} is not http or https"),
                )
            } else {
                deny(Reason::MalformedUrl, "expected scheme://host/path".into())
            };
        };
        let authority_end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
        let (authority, after) = rest.split_at(authority_end);
        if after.starts_with('\\') {
            return deny(
                Reason::MalformedUrl,
                "backslash after the host; use '/'".into(),
            );
        }
        if authority.is_empty() {
            return deny(Reason::InvalidHost, "empty host".into());
        }
        let (host_text, port_text) =
            split_authority(authority).map_err(|(r, d)| Denial::new(r, d))?;
        let port = match port_text {
            Some(p) => parse_port(p).map_err(|d| Denial::new(Reason::InvalidPort, d))?,
            None => scheme.default_port(),
        };
        let host = Host::parse(host_text).map_err(|d| Denial::new(Reason::InvalidHost, d))?;
        if after.contains('#') {
            return deny(
                Reason::MalformedUrl,
                "fragments (#...) are never sent; remove it".into(),
            );
        }
        let raw_path = &after[..after.find('?').unwrap_or(after.len())];
        if !raw_path.is_empty() {
            check_canonical_path(raw_path)
                .map_err(|e| Denial::new(Reason::NonCanonicalPath, e.0))?;
        }
        let url = Url::parse(raw)
            .map_err(|e| Denial::new(Reason::MalformedUrl, format!("URL does not parse: {e}")))?;
        // The checks above read the raw text; the parser must agree with them, or we refuse.
        let parsed_host = url
            .host()
            .ok_or_else(|| Denial::new(Reason::InvalidHost, "empty host"))?;
        let parsed_host =
            Host::from_url_host(parsed_host).map_err(|d| Denial::new(Reason::InvalidHost, d))?;
        if parsed_host != host
            || url.port_or_known_default() != Some(port)
            || !url.username().is_empty()
        {
            return deny(
                Reason::MalformedUrl,
                "the URL parser and urlcap's checks disagree about this URL".into(),
            );
        }
        Ok(CanonicalUrl {
            url,
            scheme,
            host,
            port,
        })
    }

    /// [`CanonicalUrl::relative_to`] on a base made for this one call (the tests' shorthand;
    /// the host keeps one base per handle).
    #[cfg(test)]
    pub(crate) fn relative(
        origin: &OriginPattern,
        path_and_query: &str,
    ) -> Result<CanonicalUrl, Denial> {
        CanonicalUrl::relative_to(origin, CanonicalUrl::base(origin).as_ref(), path_and_query)
    }

    /// The URL of `origin` at the root path, its host and port set with the parser's setters:
    /// what [`CanonicalUrl::relative_to`] builds a guest's path on. `None` when the origin names
    /// no single host (or the parser would not take its parts).
    pub(crate) fn base(origin: &OriginPattern) -> Option<Url> {
        let HostPattern::Exact(host) = &origin.host else {
            return None;
        };
        let base = match origin.scheme {
            Scheme::Http => "http://origin.invalid/",
            Scheme::Https => "https://origin.invalid/",
        };
        let mut url = Url::parse(base).expect("the base URLs parse");
        let port = (origin.port != origin.scheme.default_port()).then_some(origin.port);
        let parts_set = url.set_host(Some(&host.to_string())).is_ok() && url.set_port(port).is_ok();
        parts_set.then_some(url)
    }

    /// A guest's path and query (`/v1/items?page=2`) relative to a grant's origin, which must
    /// name one host, built on `base`, the origin's [`CanonicalUrl::base`] made once for many
    /// requests (a handle keeps it). The path passes the same canonical checks as absolute
    /// URLs and is set with the WHATWG parser's setters (never by joining strings); the result
    /// must still have `origin`'s scheme, host and port, so nothing the guest writes, and no
    /// base made for another origin, can send it elsewhere.
    pub(crate) fn relative_to(
        origin: &OriginPattern,
        base: Option<&Url>,
        path_and_query: &str,
    ) -> Result<CanonicalUrl, Denial> {
        let deny = |reason, detail: String| Err(Denial::new(reason, detail));
        let HostPattern::Exact(host) = &origin.host else {
            return deny(
                Reason::InvalidHost,
                format!("{origin} names no single host; derive one with `host` first"),
            );
        };
        if path_and_query.len() > MAX_URL_LEN {
            return deny(
                Reason::MalformedUrl,
                format!(
                    "path is {} bytes; the limit is {MAX_URL_LEN}",
                    path_and_query.len()
                ),
            );
        }
        if let Some(c) = path_and_query.chars().find(|&c| is_hidden_char(c)) {
            return deny(
                Reason::ControlCharacter,
                format!("path contains {c:?}; percent-encode it"),
            );
        }
        if path_and_query.contains('#') {
            return deny(
                Reason::MalformedUrl,
                "fragments (#...) are never sent; remove it".into(),
            );
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        check_canonical_path(path).map_err(|e| Denial::new(Reason::NonCanonicalPath, e.0))?;
        let outside = || {
            deny(
                Reason::MalformedUrl,
                format!("{path_and_query:?} does not stay within {origin}"),
            )
        };
        let Some(base) = base else {
            return outside();
        };
        let mut url = base.clone();
        url.set_path(path);
        url.set_query(query);
        let agrees = url.scheme() == origin.scheme.as_str()
            && url
                .host()
                .and_then(|h| Host::from_url_host(h).ok())
                .as_ref()
                == Some(host)
            && url.port_or_known_default() == Some(origin.port);
        if !agrees {
            return outside();
        }
        Ok(CanonicalUrl {
            url,
            scheme: origin.scheme,
            host: host.clone(),
            port: origin.port,
        })
    }

    pub(crate) fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub(crate) fn host(&self) -> &Host {
        &self.host
    }

    /// The host as it appears in the URL (`example.com`, `127.0.0.1`, `[::1]`).
    pub fn host_str(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The canonical path, always starting with '/'.
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// The canonical query, without the `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.url.query()
    }

    /// The full canonical URL.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    pub(crate) fn as_url(&self) -> &Url {
        &self.url
    }
}

impl fmt::Display for CanonicalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

impl fmt::Debug for CanonicalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanonicalUrl({})", self.url)
    }
}

/// A request the policy can judge: method, canonical URL, guest headers, and the body length
/// when it is known in advance.
///
/// The fields are private and only the constructors and [`Request::header`] fill them, so a
/// `Request` that reaches [`super::Policy::authorize`] has passed every check on its way in
/// (canonical URL, valid method, no forbidden or malformed header, header count and size
/// bounded); an embedder cannot push a `Host` or `Transfer-Encoding` header past them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: Method,
    url: CanonicalUrl,
    /// Guest-supplied headers; names are lowercase. Repeated names keep their order.
    headers: Vec<(String, Vec<u8>)>,
    body_len: Option<u64>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: &str, url: &str) -> Result<Request, Denial> {
        let method = Method::parse(method).map_err(|d| Denial::new(Reason::InvalidMethod, d))?;
        let url = CanonicalUrl::parse(url)?;
        Ok(Request {
            method,
            url,
            headers: Vec::new(),
            body_len: None,
        })
    }

    /// A request relative to a grant's origin (the native guest API), its base URL made for
    /// this one request; the host builds on a handle's own instead
    /// ([`Request::relative_to`]).
    #[cfg(feature = "fuzz")]
    pub(crate) fn relative(
        method: &str,
        origin: &OriginPattern,
        path_and_query: &str,
    ) -> Result<Request, Denial> {
        Request::relative_to(
            method,
            origin,
            CanonicalUrl::base(origin).as_ref(),
            path_and_query,
        )
    }

    /// A request relative to a grant's origin (the native guest API), built on `base`, the
    /// origin's URL made once ([`CanonicalUrl::base`]) and checked against `origin` all the same.
    pub(crate) fn relative_to(
        method: &str,
        origin: &OriginPattern,
        base: Option<&Url>,
        path_and_query: &str,
    ) -> Result<Request, Denial> {
        let method = Method::parse(method).map_err(|d| Denial::new(Reason::InvalidMethod, d))?;
        let url = CanonicalUrl::relative_to(origin, base, path_and_query)?;
        Ok(Request {
            method,
            url,
            headers: Vec::new(),
            body_len: None,
        })
    }

    /// Add a guest header, denying invalid syntax and headers only the host may set.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Result<Request, Denial> {
        let value = value.as_ref();
        if self.headers.len() >= MAX_HEADERS {
            return Err(Denial::new(
                Reason::HeadersTooLarge,
                format!("more than {MAX_HEADERS} headers"),
            ));
        }
        let bytes: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes + name.len() + value.len() > MAX_HEADER_BYTES {
            return Err(Denial::new(
                Reason::HeadersTooLarge,
                format!("more than {MAX_HEADER_BYTES} bytes of header names and values"),
            ));
        }
        if !is_token(name) {
            return Err(Denial::new(
                Reason::InvalidHeader,
                format!("header name {name:?} is not an HTTP token"),
            ));
        }
        if let Some(b) = value
            .iter()
            .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(Denial::new(
                Reason::InvalidHeader,
                format!("value of header {name:?} contains control byte 0x{b:02x}"),
            ));
        }
        if is_forbidden_header(name) {
            return Err(Denial::new(
                Reason::ForbiddenHeader,
                format!("only the host may set {name:?}"),
            ));
        }
        self.headers
            .push((name.to_ascii_lowercase(), value.to_vec()));
        Ok(self)
    }

    /// Declare the body length (from Content-Length or a buffered body).
    pub fn with_body_len(mut self, len: u64) -> Request {
        self.body_len = Some(len);
        self
    }

    /// The method, exactly as it will be sent.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The canonical URL the decision is made on and egress sends.
    pub fn url(&self) -> &CanonicalUrl {
        &self.url
    }

    /// The guest's headers, names lowercase, in the order given (repeats kept).
    pub(crate) fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The body length declared in advance, if any (checked against `max_request_body`
    /// before anything is sent).
    pub(crate) fn body_len(&self) -> Option<u64> {
        self.body_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> Option<Reason> {
        CanonicalUrl::parse(url).err().map(|d| d.reason)
    }

    #[test]
    fn canonical_urls_parse() {
        let u = CanonicalUrl::parse("HTTPS://API.Example.COM:443/v1/x?q=1").unwrap();
        assert_eq!(u.as_str(), "https://api.example.com/v1/x?q=1");
        assert_eq!(u.port(), 443);
        assert_eq!(u.path(), "/v1/x");
        let u = CanonicalUrl::parse("http://example.com").unwrap();
        assert_eq!(u.path(), "/");
        let u = CanonicalUrl::parse("http://[::1]:8080/").unwrap();
        assert_eq!(u.host_str(), "[::1]");
        assert_eq!(u.port(), 8080);
    }

    #[test]
    fn odd_ip_encodings_are_normalised() {
        for raw in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
        ] {
            assert_eq!(
                CanonicalUrl::parse(raw).unwrap().host_str(),
                "127.0.0.1",
                "{raw}"
            );
        }
        let u = CanonicalUrl::parse("http://[::ffff:127.0.0.1]/").unwrap();
        assert_eq!(u.host_str(), "[::ffff:7f00:1]");
    }

    #[test]
    fn denials_carry_the_right_reason() {
        let cases = [
            ("http://a.com/\n", Reason::ControlCharacter),
            (" http://a.com/", Reason::ControlCharacter),
            ("http://a.com/\u{200b}", Reason::ControlCharacter),
            ("http://user:pw@a.com/", Reason::Userinfo),
            ("http://@a.com/", Reason::Userinfo),
            ("ftp://a.com/", Reason::UnsupportedScheme),
            ("file:///etc/passwd", Reason::UnsupportedScheme),
            ("gopher//a.com/", Reason::MalformedUrl),
            ("http:/a.com/", Reason::MalformedUrl),
            ("http:\\\\a.com/", Reason::MalformedUrl),
            ("http://a.com\\@b.com/", Reason::MalformedUrl),
            ("http://a.com/#x", Reason::MalformedUrl),
            ("http://a.com:+443/", Reason::InvalidPort),
            ("http://a.com:65536/", Reason::InvalidPort),
            ("http://a.com:443:80/", Reason::InvalidPort),
            ("http://a.com:/", Reason::InvalidPort),
            ("http://a.com:0/", Reason::InvalidPort),
            ("http:///a", Reason::InvalidHost),
            ("http://*.a.com/", Reason::InvalidHost),
            ("http://a.com./", Reason::InvalidHost),
            ("http://%61.com/", Reason::InvalidHost),
            ("http://[fe80::1%25eth0]/", Reason::InvalidHost),
            ("http://a.com/x/../y", Reason::NonCanonicalPath),
            ("http://a.com/x/%2e%2e/y", Reason::NonCanonicalPath),
            ("http://a.com/x%2fy", Reason::NonCanonicalPath),
            ("http://a.com/x\\y", Reason::NonCanonicalPath),
        ];
        for (url, expected) in cases {
            assert_eq!(reason(url), Some(expected), "{url:?}");
        }
    }

    #[test]
    fn relative_paths_stay_on_the_origin() {
        let origin = |s: &str| crate::policy::grant_from_spec_url(s).unwrap().0;
        let o = origin("https://api.example.com:8443");
        let u = CanonicalUrl::relative(&o, "/v1/items?page=2&q=a%20b").unwrap();
        assert_eq!(
            u.as_str(),
            "https://api.example.com:8443/v1/items?page=2&q=a%20b"
        );
        assert_eq!(
            CanonicalUrl::relative(&origin("http://[::1]:9000"), "/")
                .unwrap()
                .as_str(),
            "http://[::1]:9000/"
        );
        for (bad, reason) in [
            ("//evil.example/x", Reason::NonCanonicalPath),
            ("evil.example/x", Reason::NonCanonicalPath),
            ("", Reason::NonCanonicalPath),
            ("/a/../b", Reason::NonCanonicalPath),
            ("/a\\b", Reason::NonCanonicalPath),
            ("/a#frag", Reason::MalformedUrl),
            ("/a\r\nHost: x", Reason::ControlCharacter),
            ("@evil.example/", Reason::NonCanonicalPath),
        ] {
            assert_eq!(
                CanonicalUrl::relative(&o, bad).unwrap_err().reason,
                reason,
                "{bad:?}"
            );
        }
        let wild = origin("https://*.example.com");
        assert_eq!(
            CanonicalUrl::relative(&wild, "/").unwrap_err().reason,
            Reason::InvalidHost
        );
    }

    /// A handle builds every relative request on a base URL it made once: a base that does
    /// not name the handle's own scheme, host and port (a caller's mistake) must not move a
    /// request elsewhere, and a base-less origin is refused as before.
    #[test]
    fn a_relative_request_never_leaves_its_origin_whatever_base_it_is_given() {
        let origin = |s: &str| crate::policy::grant_from_spec_url(s).unwrap().0;
        let o = origin("https://api.example.com:8443");
        let own = CanonicalUrl::base(&o);
        let u = CanonicalUrl::relative_to(&o, own.as_ref(), "/v1/x?a=1").unwrap();
        assert_eq!(u.as_str(), "https://api.example.com:8443/v1/x?a=1");
        for other in [
            "https://evil.example:8443",
            "http://api.example.com:8443",
            "https://api.example.com:9443",
            "https://api.example.com",
        ] {
            let base = CanonicalUrl::base(&origin(other));
            let err = CanonicalUrl::relative_to(&o, base.as_ref(), "/v1/x").unwrap_err();
            assert_eq!(err.reason, Reason::MalformedUrl, "{other}");
        }
        let err = CanonicalUrl::relative_to(&o, None, "/v1/x").unwrap_err();
        assert_eq!(err.reason, Reason::MalformedUrl);
    }

    #[test]
    fn header_count_and_size_are_bounded() {
        let mut req = Request::new("GET", "http://a.com/").unwrap();
        for i in 0..MAX_HEADERS {
            req = req.header(&format!("x-{i}"), "v").unwrap();
        }
        let err = req.header("x-one-more", "v").unwrap_err();
        assert_eq!(err.reason, Reason::HeadersTooLarge);
        let req = Request::new("GET", "http://a.com/").unwrap();
        let half = vec![b'a'; MAX_HEADER_BYTES / 2];
        let req = req.header("x-a", &half).unwrap();
        let err = req.clone().header("x-b", &half).unwrap_err();
        assert_eq!(err.reason, Reason::HeadersTooLarge);
        assert!(req.header("x-b", &half[..half.len() - 6]).is_ok());
    }

    #[test]
    fn headers_are_checked() {
        let req = Request::new("GET", "http://a.com/").unwrap();
        assert!(req.clone().header("X-Ok", "v").is_ok());
        for name in [
            "Host",
            "connection",
            "Transfer-Encoding",
            "Upgrade",
            "Proxy-Authorization",
            "TE",
            "HTTP2-Settings",
            "Keep-Alive",
        ] {
            assert_eq!(
                req.clone().header(name, "v").unwrap_err().reason,
                Reason::ForbiddenHeader,
                "{name}"
            );
        }
        assert_eq!(
            req.clone()
                .header("X-A", "a\r\nHost: evil")
                .unwrap_err()
                .reason,
            Reason::InvalidHeader
        );
        assert_eq!(
            req.clone().header("X A", "v").unwrap_err().reason,
            Reason::InvalidHeader
        );
        assert_eq!(
            req.header("X-A", "a\0b").unwrap_err().reason,
            Reason::InvalidHeader
        );
    }
}
