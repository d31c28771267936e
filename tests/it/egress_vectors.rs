//! Egress vectors: URLs, methods and headers that SSRF filters and sandbox allow-lists have
//! been bypassed with, each judged by the real policy under `fixtures/vectors.toml`.
//! Every row names where the technique comes from.

use std::path::Path;
use std::sync::Arc;
use urlcap::manifest::{Config, ProcessSecrets};
use urlcap::policy::{Decision, Request, SystemClock};

const PATT: &str = "PayloadsAllTheThings, Server Side Request Forgery/README.md (swisskyrepo)";
const ORANGE17: &str = "Orange Tsai, A New Era of SSRF: Exploiting URL Parser in Trending Programming Languages, Black Hat USA 2017";
const ORANGE18: &str = "Orange Tsai, Breaking Parser Logic: Take Your Path Normalization Off and Pop 0days Out, Black Hat USA 2018";
const WHATWG: &str = "WHATWG URL Standard; web-platform-tests url/resources/urltestdata.json";
const DENO: &str = "Deno GHSA-v8fw-85r8-5m23: numeric hostname aliases bypass --deny-net";
const SPIN: &str =
    "Spin GHSA-f3h7-gpjj-wcvh (CVE-2024-32980): the Host header chose the outbound destination";
const RFC9110: &str =
    "RFC 9110 (methods are case-sensitive; CONNECT tunnels) and RFC 9112 (hop-by-hop, smuggling)";
const IANA: &str = "IANA IPv4/IPv6 Special-Purpose Address Registries (RFC 6890)";
const SONAR: &str = "SonarSource RSPEC S5144, the trap of startsWith(\"https://example.com\")";
const OWASP: &str = "OWASP SSRF Prevention Cheat Sheet (userinfo, schemes, redirects)";

struct Vector {
    method: &'static str,
    url: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Option<u64>,
    expected: &'static str,
    source: &'static str,
}

const fn get(url: &'static str, expected: &'static str, source: &'static str) -> Vector {
    Vector {
        method: "GET",
        url,
        headers: &[],
        body: None,
        expected,
        source,
    }
}

const fn with_method(
    method: &'static str,
    url: &'static str,
    expected: &'static str,
    source: &'static str,
) -> Vector {
    Vector {
        method,
        url,
        headers: &[],
        body: None,
        expected,
        source,
    }
}

const fn with_header(
    h: &'static [(&'static str, &'static str)],
    expected: &'static str,
    source: &'static str,
) -> Vector {
    Vector {
        method: "GET",
        url: "https://api.example.com/v1/users",
        headers: h,
        body: None,
        expected,
        source,
    }
}

const VECTORS: &[Vector] = &[
    // Baselines and WHATWG normalisation that keeps the decision equal to the wire.
    get("https://api.example.com/v1/users", "allow", WHATWG),
    get("HTTPS://API.EXAMPLE.COM/v1/users", "allow", WHATWG),
    get("https://api.example.com:443/v1/users", "allow", WHATWG),
    get("https://a.cdn.example.net/img.png", "allow", WHATWG),
    get(
        "https://\u{ff41}\u{ff50}\u{ff49}.example.com/v1/users",
        "allow",
        WHATWG,
    ),
    get("https://api.example.com/v1/caf%C3%A9", "allow", WHATWG),
    get(
        "https://api.example.com/v1/users?next=http://169.254.169.254/",
        "allow",
        OWASP,
    ),
    get("http://127.0.0.1:8080/", "allow", PATT),
    get("http://2130706433:8080/", "allow", DENO),
    get("http://0x7f000001:8080/", "allow", DENO),
    get("http://0x7f.1:8080/", "allow", PATT),
    get("http://127.1:8080/", "allow", PATT),
    get("http://0177.0.0.1:8080/", "allow", PATT),
    // Authority confusion between parsers.
    get("https://api.example.com@evil.com/v1/", "userinfo", ORANGE17),
    get(
        "https://api.example.com:443@evil.com/v1/",
        "userinfo",
        ORANGE17,
    ),
    get(
        "https://api.example.com:@evil.com/v1/",
        "userinfo",
        ORANGE17,
    ),
    get(
        "https://api.example.com%2f@evil.com/v1/",
        "userinfo",
        ORANGE17,
    ),
    get(
        "https://api.example.com%252f@evil.com/",
        "userinfo",
        ORANGE17,
    ),
    get("https://user:pass@api.example.com/v1/", "userinfo", OWASP),
    get(
        "https://evil.com#@api.example.com/v1/",
        "malformed_url",
        ORANGE17,
    ),
    get(
        "https://api.example.com#@evil.com/v1/",
        "malformed_url",
        PATT,
    ),
    get(
        "http://1.1.1.1 &@2.2.2.2# @3.3.3.3/",
        "control_character",
        ORANGE17,
    ),
    get(
        "https://evil.com\\@api.example.com/v1/",
        "malformed_url",
        ORANGE17,
    ),
    get(
        "https://api.example.com\\.evil.com/v1/",
        "malformed_url",
        ORANGE17,
    ),
    get(
        "https://evil.com?@api.example.com/v1/",
        "no_authority",
        ORANGE17,
    ),
    get(
        "https://api.example.com.evil.com/v1/",
        "no_authority",
        SONAR,
    ),
    get(
        "https://api.example.commit.evil.io/v1/",
        "no_authority",
        SONAR,
    ),
    get("https://evil-api.example.com/v1/", "no_authority", SONAR),
    get(
        "https://api.example.com\u{3002}evil.com/v1/",
        "no_authority",
        ORANGE17,
    ),
    get(
        "https://api.example.com%00.evil.com/v1/",
        "invalid_host",
        ORANGE17,
    ),
    get("https://api.example.com./v1/users", "invalid_host", WHATWG),
    get("https://*.cdn.example.net/", "invalid_host", SONAR),
    get("https://cdn.example.net/", "no_authority", SONAR),
    get("https://a.b.cdn.example.net/", "no_authority", SONAR),
    get("https://a.cdn.example.net.evil.com/", "no_authority", SONAR),
    get("https://acdn.example.net/", "no_authority", SONAR),
    get("http://api.example.com/v1/users", "no_authority", OWASP),
    get(
        "https://api.example.com:8443/v1/users",
        "no_authority",
        OWASP,
    ),
    // Schemes and URL shapes the WHATWG parser repairs silently.
    get("file:///etc/passwd", "unsupported_scheme", PATT),
    get("gopher://127.0.0.1:6379/_INFO", "unsupported_scheme", PATT),
    get("dict://127.0.0.1:6379/INFO", "unsupported_scheme", PATT),
    get("ftp://api.example.com/", "unsupported_scheme", PATT),
    get("ws://api.example.com/v1/", "unsupported_scheme", OWASP),
    get("jar:http://api.example.com!/", "malformed_url", ORANGE17),
    get("https:/api.example.com/v1/users", "malformed_url", WHATWG),
    get("https:api.example.com/v1/users", "malformed_url", WHATWG),
    get(
        "https:\\\\api.example.com/v1/users",
        "malformed_url",
        WHATWG,
    ),
    get("https:///api.example.com/v1/users", "invalid_host", WHATWG),
    get("//api.example.com/v1/users", "malformed_url", WHATWG),
    // Ports.
    get("https://api.example.com:+443/v1/", "invalid_port", WHATWG),
    get("https://api.example.com:0443/v1/", "invalid_port", WHATWG),
    get("https://api.example.com:65979/v1/", "invalid_port", WHATWG),
    get("http://127.0.0.1:8080:80/", "invalid_port", ORANGE17),
    get("https://api.example.com:/v1/", "invalid_port", WHATWG),
    get("https://api.example.com:0x1bb/v1/", "invalid_port", PATT),
    get(
        "https://api.example.com: 443/v1/",
        "control_character",
        WHATWG,
    ),
    // Paths: normalisation differences between us and the granted server.
    get(
        "https://api.example.com/v1/../admin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/v1/%2e%2e/admin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/v1/%2E%2E/admin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/v1/.%2e/admin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/v1/..%2fadmin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/v1/..%5cadmin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/v1/..\\admin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/v1//admin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/v1/..;/admin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/v1;/admin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/v1/%c0%ae%c0%ae/admin",
        "non_canonical_path",
        PATT,
    ),
    get(
        "https://api.example.com/v1/%252e%252e/admin",
        "non_canonical_path",
        PATT,
    ),
    get(
        "https://api.example.com/v1%2f../admin",
        "non_canonical_path",
        ORANGE18,
    ),
    get(
        "https://api.example.com/%76%31/users",
        "non_canonical_path",
        PATT,
    ),
    get("https://api.example.com/v1/%00", "non_canonical_path", PATT),
    get(
        "https://api.example.com/v1/./users",
        "non_canonical_path",
        WHATWG,
    ),
    get("https://api.example.com/v10/", "path_not_allowed", SONAR),
    get("https://api.example.com/v1", "path_not_allowed", SONAR),
    get(
        "https://api.example.com/V1/users",
        "path_not_allowed",
        RFC9110,
    ),
    get("https://api.example.com/", "path_not_allowed", SONAR),
    get("https://api.example.com/v1/x#frag", "malformed_url", WHATWG),
    // Addresses: every spelling of a denied address is denied after normalisation.
    get(
        "http://169.254.169.254/latest/meta-data/",
        "ip_denied",
        PATT,
    ),
    get("http://0xA9FEA9FE/latest/meta-data/", "ip_denied", PATT),
    get("http://2852039166/latest/meta-data/", "ip_denied", DENO),
    get("http://0251.0376.0251.0376/", "ip_denied", PATT),
    get("http://169.254.43518/", "ip_denied", PATT),
    get("http://[::ffff:169.254.169.254]/", "no_authority", PATT),
    get("http://127.0.0.2:8080/", "no_authority", IANA),
    get("http://localhost:8080/", "no_authority", PATT),
    get("http://0:8080/", "no_authority", PATT),
    get("http://127.0.0.1.nip.io:8080/", "no_authority", PATT),
    get("http://[::1]:9000/", "ip_denied", IANA),
    get("http://[0:0:0:0:0:0:0:1]:9000/", "ip_denied", PATT),
    get("http://[::ffff:127.0.0.1]:8080/", "no_authority", PATT),
    get("http://[fe80::1%25eth0]:9000/", "invalid_host", WHATWG),
    // Methods.
    with_method(
        "DELETE",
        "https://api.example.com/v1/users",
        "method_not_allowed",
        RFC9110,
    ),
    with_method(
        "get",
        "https://api.example.com/v1/users",
        "method_not_allowed",
        RFC9110,
    ),
    with_method(
        "TRACE",
        "https://api.example.com/v1/users",
        "method_not_allowed",
        RFC9110,
    ),
    with_method(
        "CONNECT",
        "https://api.example.com/v1/users",
        "invalid_method",
        RFC9110,
    ),
    with_method(
        "GET /admin HTTP/1.1\r\n",
        "https://api.example.com/v1/users",
        "invalid_method",
        RFC9110,
    ),
    // Headers: the guest never chooses the destination or the framing.
    with_header(&[("Host", "evil.com")], "forbidden_header", SPIN),
    with_header(&[("host", "evil.com:80")], "forbidden_header", SPIN),
    with_header(
        &[("Transfer-Encoding", "chunked")],
        "forbidden_header",
        RFC9110,
    ),
    with_header(&[("Connection", "close")], "forbidden_header", RFC9110),
    with_header(&[("Upgrade", "websocket")], "forbidden_header", RFC9110),
    with_header(
        &[("Proxy-Authorization", "Basic eDp5")],
        "forbidden_header",
        RFC9110,
    ),
    with_header(
        &[("Authorization", "Bearer guest-chosen")],
        "forbidden_header",
        OWASP,
    ),
    with_header(
        &[("X-Note", "a\r\nHost: evil.com")],
        "invalid_header",
        RFC9110,
    ),
    with_header(&[("X Note", "v")], "invalid_header", RFC9110),
    // Egress never routes by it, but the granted server may (virtual hosts, reverse proxies):
    // a host-override header is judged as the host it names (policy::overrides).
    with_header(&[("X-Forwarded-Host", "evil.com")], "no_authority", SPIN),
    with_header(&[("X-Forwarded-Host", "api.example.com")], "allow", SPIN),
    // Bodies and control characters.
    Vector {
        method: "POST",
        url: "https://api.example.com/v1/upload",
        headers: &[],
        body: Some(2048),
        expected: "request_body_too_large",
        source: OWASP,
    },
    Vector {
        method: "POST",
        url: "https://api.example.com/v1/upload",
        headers: &[],
        body: Some(1024),
        expected: "allow",
        source: OWASP,
    },
    get(
        "https://api.example.com/v1/\r\nHost: evil.com",
        "control_character",
        RFC9110,
    ),
    get("https://api.example.com/v1/x\0", "control_character", PATT),
    get(
        " https://api.example.com/v1/users",
        "control_character",
        WHATWG,
    ),
    get(
        "https://api.exa\tmple.com/v1/users",
        "control_character",
        WHATWG,
    ),
    get(
        "https://api.example.com/v1/us\u{200b}ers",
        "control_character",
        WHATWG,
    ),
];

#[test]
fn every_vector_gets_its_expected_decision() {
    let config = Config::parse(
        &std::fs::read_to_string("fixtures/vectors.toml").unwrap(),
        Path::new("fixtures/vectors.toml"),
        &ProcessSecrets,
    )
    .unwrap();
    let policy = config.policy(Arc::new(SystemClock::new()));
    let mut failures = Vec::new();
    for v in VECTORS {
        let request = Request::new(v.method, v.url)
            .and_then(|r| v.headers.iter().try_fold(r, |r, (k, val)| r.header(k, val)))
            .map(|r| match v.body {
                Some(n) => r.with_body_len(n),
                None => r,
            });
        let got = match request {
            Err(denial) => denial.reason.code().to_string(),
            Ok(req) => match policy.check(&req) {
                Decision::Allow(_) => "allow".to_string(),
                Decision::Deny(d) => d.reason.code().to_string(),
            },
        };
        if got != v.expected {
            failures.push(format!(
                "{} {:?}: expected {}, got {} (source: {})",
                v.method, v.url, v.expected, got, v.source
            ));
        }
    }
    assert!(
        VECTORS.len() >= 80,
        "the table must keep at least 80 vectors, has {}",
        VECTORS.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        VECTORS.len(),
        failures.join("\n")
    );
}
