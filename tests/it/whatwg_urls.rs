//! Differential test against the WHATWG URL test data (web-platform-tests
//! `url/resources/urltestdata.json`, vendored in `tests/data/wpt/` with its licence).
//!
//! urlcap parses with the WHATWG parser and then refuses, rather than repairs, anything the
//! parser would rewrite. So for every entry of the suite:
//! - an entry the standard says must fail is denied;
//! - an entry we accept has exactly the standard's host, port, path and query (and `href`);
//! - an entry we deny although the standard parses it is one the parser would *change* (its
//!   `href` differs from the input), or one that carries something we refuse by policy
//!   (userinfo, a fragment, `;` in the path, a non-http(s) scheme) — never an already
//!   canonical http(s) URL.

use serde_json::Value;
use urlcap::policy::{CanonicalUrl, Reason};

struct Entry {
    input: String,
    base: Option<String>,
    expected: Option<Value>,
}

fn entries() -> Vec<Entry> {
    let text = include_str!("../data/wpt/urltestdata.json");
    let all: Vec<Value> = serde_json::from_str(text).expect("urltestdata.json parses");
    all.into_iter()
        .filter(|e| e.is_object())
        .map(|e| Entry {
            input: e["input"].as_str().unwrap().to_string(),
            base: e["base"].as_str().map(String::from),
            expected: (e.get("failure") != Some(&Value::Bool(true))).then_some(e),
        })
        .collect()
}

fn field<'a>(e: &'a Value, key: &str) -> &'a str {
    e[key]
        .as_str()
        .unwrap_or_else(|| panic!("entry has no {key}: {e}"))
}

/// Why an input that the standard parses to itself (already canonical) may still be refused:
/// each is a deliberate policy, documented in SECURITY.md and README's reason table.
fn refused_by_policy(input: &str, reason: Reason) -> bool {
    let after_scheme = input.split_once("://").map_or("", |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = host.rsplit_once(':').unwrap_or((host, ""));
    match reason {
        Reason::Userinfo => authority.contains('@'),
        Reason::MalformedUrl => input.contains('#'),
        Reason::InvalidHost => {
            host.ends_with('.')
                || host
                    .chars()
                    .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        }
        Reason::InvalidPort => port == "0",
        Reason::NonCanonicalPath => has_suspect_escape(&after_scheme[authority.len()..]),
        _ => false,
    }
}

/// Does `path` hold a percent-escape that is malformed, encodes a control byte, or needlessly
/// encodes an unreserved character (which other parsers decode, changing the path)?
fn has_suspect_escape(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        if b != b'%' {
            return false;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            None => true,
            Some(c) => c < 0x20 || c == 0x7f || c.is_ascii_alphanumeric() || b"-._~".contains(&c),
        }
    })
}

#[test]
fn urlcap_agrees_with_the_whatwg_url_test_data() {
    let mut failures_denied = 0;
    let mut accepted = 0;
    let mut repaired_denied = 0;
    let mut canonical_refused = 0;
    let mut problems = Vec::new();
    for entry in entries() {
        let ours = CanonicalUrl::parse(&entry.input);
        let Some(expected) = &entry.expected else {
            match ours {
                Err(_) => failures_denied += 1,
                Ok(u) => problems.push(format!(
                    "{:?} must fail (standard) but was accepted as {}",
                    entry.input,
                    u.as_str()
                )),
            }
            continue;
        };
        let protocol = field(expected, "protocol");
        let http = protocol == "http:" || protocol == "https:";
        match ours {
            Ok(url) => {
                accepted += 1;
                // Whatever the base, an accepted input is `scheme://…` with a special scheme,
                // which the standard parses independently of the base.
                let default_port = if protocol == "https:" { 443 } else { 80 };
                let want_port = match field(expected, "port") {
                    "" => default_port,
                    p => p.parse().unwrap(),
                };
                let want_query = field(expected, "search").strip_prefix('?');
                let got = (
                    url.as_str(),
                    url.host_str(),
                    url.port(),
                    url.path(),
                    url.query().filter(|q| !q.is_empty()),
                );
                let want = (
                    field(expected, "href"),
                    field(expected, "hostname"),
                    want_port,
                    field(expected, "pathname"),
                    want_query.filter(|q| !q.is_empty()),
                );
                let carries_refused_parts = ["username", "password", "hash"]
                    .iter()
                    .any(|k| !field(expected, k).is_empty());
                if !http || got != want || carries_refused_parts {
                    problems.push(format!(
                        "{:?} (base {:?}): ours {got:?}, standard {want:?}",
                        entry.input, entry.base
                    ));
                }
            }
            Err(denial) => {
                let canonical = field(expected, "href") == entry.input;
                if !http || !canonical {
                    repaired_denied += 1;
                } else if refused_by_policy(&entry.input, denial.reason) {
                    canonical_refused += 1;
                } else {
                    problems.push(format!(
                        "canonical {:?} was denied: {} {}",
                        entry.input,
                        denial.reason.code(),
                        denial.detail
                    ));
                }
            }
        }
    }
    println!(
        "whatwg: {failures_denied} failures denied, {accepted} accepted and equal, \
         {repaired_denied} non-canonical or non-http(s) denied, {canonical_refused} canonical \
         refused by policy"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Non-vacuity: the suite really exercised each branch.
    assert!(failures_denied >= 250, "{failures_denied}");
    assert!(accepted >= 50, "{accepted}");
    assert!(repaired_denied >= 300, "{repaired_denied}");
    assert!(canonical_refused >= 15, "{canonical_refused}");
}

/// The policy refusals above are narrow: a plain canonical URL of each kind is accepted.
#[test]
fn refused_by_policy_is_not_a_blanket_excuse() {
    for ok in ["http://a.example/x", "https://a.example:8443/%E2%82%AC?q=1"] {
        assert!(CanonicalUrl::parse(ok).is_ok(), "{ok}");
        for reason in Reason::ALL {
            assert!(!refused_by_policy(ok, *reason), "{ok} {reason:?}");
        }
    }
}
