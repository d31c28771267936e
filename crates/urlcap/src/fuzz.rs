//! Fuzz entry points: every parser that reads guest or user text, fed arbitrary bytes.
//!
//! Each function must return normally for *any* input, and panics when a property that must hold
//! for every input breaks — so a fuzzer finds both crashes and wrong answers. The cargo-fuzz
//! targets in `fuzz/` call these, and `tests/robustness.rs` calls the same functions with
//! proptest inputs in the normal suite, so the fuzzed code and the tested code cannot drift.
//!
//! Run a target (see `fuzz/README.md`): `RUSTC_BOOTSTRAP=1 cargo fuzz run canonical_url`.

use crate::manifest::{AllowSpec, Config, SecretStore};
use crate::outbound::GuestRequest;
use crate::policy::{grant_from_spec_url, CanonicalUrl, ManualClock, Policy, Request, MAX_URL_LEN};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The value every secret resolves to while fuzzing manifests; it must never be printed.
pub(crate) const FUZZ_SECRET: &str = "FUZZ-SECRET-7f3a9c";

/// Secrets for fuzzed manifests: every environment variable and file holds [`FUZZ_SECRET`].
struct FuzzSecrets;

impl SecretStore for FuzzSecrets {
    fn env(&self, _name: &str) -> Option<String> {
        Some(FUZZ_SECRET.to_string())
    }

    fn read_file(&self, _path: &Path, _max: u64) -> std::io::Result<Vec<u8>> {
        Ok(FUZZ_SECRET.as_bytes().to_vec())
    }
}

/// A manifest: parses or fails with an error; neither the error nor the parsed configuration
/// prints a secret, and a parsed manifest builds a policy.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text, Path::new("fuzz.toml"), &FuzzSecrets) {
        Ok(config) => {
            assert!(
                !format!("{config:?}").contains(FUZZ_SECRET),
                "secret in Debug"
            );
            for warning in config.warnings() {
                assert!(!warning.contains(FUZZ_SECRET), "secret in a warning");
            }
            let _ = config.policy(Arc::new(ManualClock::default()));
        }
        Err(e) => assert!(!e.to_string().contains(FUZZ_SECRET), "secret in an error"),
    }
}

/// An `--allow` SPEC: when it parses, its origin printed back parses to the same origin.
pub fn allow_spec(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(spec) = AllowSpec::parse(&text) {
        let printed = spec.origin.to_string();
        let (again, _) = grant_from_spec_url(&printed)
            .unwrap_or_else(|e| panic!("{text:?} → origin {printed:?} does not re-parse: {e}"));
        assert_eq!(again, spec.origin, "{text:?}");
    }
    let _ = grant_from_spec_url(&text);
}

/// The canonicalizer: an accepted URL is http(s), bounded, has no userinfo or fragment, and is a
/// fixed point (canonicalizing its canonical text gives it back unchanged).
///
/// Returns whether the URL was accepted (so tests can see both branches are reached).
pub fn canonical_url(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Ok(url) = CanonicalUrl::parse(&text) else {
        return false;
    };
    let s = url.as_str();
    assert!(s.starts_with("http://") || s.starts_with("https://"), "{s}");
    assert!(s.len() <= MAX_URL_LEN, "{} bytes", s.len());
    assert!(!s.contains('#'), "fragment kept: {s}");
    let authority = &s[s.find("://").unwrap() + 3..];
    let authority = authority.split(['/', '?']).next().unwrap_or("");
    assert!(!authority.contains('@'), "userinfo kept: {s}");
    let again = CanonicalUrl::parse(s).unwrap_or_else(|d| panic!("{s} is denied: {d:?}"));
    assert_eq!(again.as_str(), s);
    true
}

/// Grants the guest-request target judges against.
fn fuzz_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let text = "version = 1\n\
            [[authority]]\nname = \"api\"\norigin = \"https://api.example.com\"\npaths = [\"/v1/\"]\nmethods = [\"GET\"]\n\
            [[authority]]\nname = \"svc\"\norigin = \"http://*.svc.example:8080\"\n";
        Config::parse(text, Path::new("fuzz.toml"), &FuzzSecrets)
            .expect("the fuzz policy parses")
            .policy(Arc::new(ManualClock::default()))
    })
}

/// A guest request, as both guest APIs deliver it: bytes split at `\n` into method, scheme,
/// authority, path-and-query and header `name:value` lines.
///
/// The `wasi:http` shape (scheme, authority and path assembled by the `http` crate, as wasmtime
/// does) is judged by the policy: whatever is approved names a granted host and port, and for
/// the `api` grant a `/v1/` path and `GET`. The native shape (a path relative to a handle) can
/// never leave the handle's origin.
///
/// Returns whether the `wasi:http` shape was approved.
pub fn guest_request(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let method = parts.next().unwrap_or("");
    let scheme = parts.next().unwrap_or("");
    let authority = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let headers: Vec<(&str, &str)> = parts.filter_map(|h| h.split_once(':')).collect();

    let mut approved_any = false;
    if let Ok(uri) = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
    {
        let mut guest = GuestRequest::new(method, &uri.to_string());
        for (name, value) in &headers {
            guest = guest.header(name, value);
        }
        if let Ok(approved) = guest
            .canonicalize()
            .and_then(|r| fuzz_policy().authorize(r))
        {
            approved_any = true;
            let (authority, req) = approved.into_parts();
            let host = req.url().host_str();
            match authority.name() {
                "api" => {
                    assert_eq!(
                        req.url().as_str().split('/').nth(2),
                        Some("api.example.com")
                    );
                    assert!(req.url().path().starts_with("/v1/"), "{}", req.url());
                    assert_eq!(req.method().as_str(), "GET");
                }
                "svc" => {
                    assert!(host.ends_with(".svc.example"), "{host}");
                    assert_eq!(req.url().port(), 8080);
                }
                other => panic!("unknown authority {other}"),
            }
        }
    }

    let origin = &fuzz_policy().get("api").expect("api grant").grant().origin;
    if let Ok(req) = Request::relative(method, origin, path) {
        let printed = origin.to_string();
        assert!(
            req.url().as_str().starts_with(&printed)
                && req.url().as_str()[printed.len()..].starts_with('/'),
            "{path:?} left {printed}: {}",
            req.url()
        );
    }
    approved_any
}
