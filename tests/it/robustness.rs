//! Hostile input never panics: every entry point that reads guest or user text returns a
//! decision or an error for arbitrary strings, including near-misses of valid input.

use proptest::prelude::*;
use std::path::Path;
use urlcap::manifest::{AllowSpec, Config, ProcessSecrets};
use urlcap::policy::{grant_from_spec_url, Host, HostPattern, Method, PathPrefix, Rate, Request};

/// Strings built from URL-ish pieces, so mutations land near the interesting boundaries.
fn urlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("http://".to_string()),
        Just("https://".to_string()),
        Just("@".to_string()),
        Just(":".to_string()),
        Just("/".to_string()),
        Just("\\".to_string()),
        Just("%".to_string()),
        Just("%2e".to_string()),
        Just("%2f".to_string()),
        Just("%25".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("::ffff:".to_string()),
        Just("?".to_string()),
        Just("#".to_string()),
        Just("..".to_string()),
        Just("*.".to_string()),
        Just("xn--".to_string()),
        Just("0x7f.1".to_string()),
        Just("127.0.0.1".to_string()),
        Just("example.com".to_string()),
        Just("65536".to_string()),
        "[a-z0-9]{1,8}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn requests_never_panic(url in urlish(), raw in ".*", method in ".{0,12}", name in ".{0,12}", value in ".{0,24}") {
        let _ = Request::new(&method, &url);
        let _ = Request::new("GET", &raw);
        if let Ok(r) = Request::new("GET", "https://example.com/") {
            let _ = r.header(&name, value.as_bytes());
        }
    }

    #[test]
    fn grant_grammar_never_panics(spec in urlish(), raw in ".*") {
        let _ = AllowSpec::parse(&spec);
        let _ = AllowSpec::parse(&raw);
        let _ = AllowSpec::parse(&format!("n=GET,{raw} {spec}"));
        let _ = grant_from_spec_url(&spec);
        let _ = Host::parse(&raw);
        let _ = HostPattern::parse(&spec);
        let _ = PathPrefix::parse(&raw);
        let _ = Rate::parse(&raw);
        let _ = Method::parse(&raw);
    }

    /// The cargo-fuzz entry points (`urlcap::fuzz`), with the same inputs the fuzzers start
    /// from: arbitrary bytes and near-valid text. Each checks its own properties.
    #[test]
    fn fuzz_entry_points_hold_their_properties(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        url in urlish(),
        method in prop_oneof![Just("GET".to_string()), Just("POST".to_string()), ".{0,8}"],
        scheme in prop_oneof![Just("http".to_string()), Just("https".to_string()), "[a-z+]{0,6}"],
        authority in prop_oneof![
            Just("api.example.com".to_string()),
            Just("api.example.com:443".to_string()),
            Just("a.svc.example:8080".to_string()),
            urlish(),
        ],
        path in prop_oneof![Just("/v1/x?y=1".to_string()), urlish()],
        header in ".{0,20}",
    ) {
        for data in [bytes.as_slice(), url.as_bytes()] {
            let _ = urlcap::fuzz::canonical_url(data);
            urlcap::fuzz::allow_spec(data);
            urlcap::fuzz::manifest(data);
            let _ = urlcap::fuzz::guest_request(data);
        }
        let spec = format!("n=GET {url}");
        urlcap::fuzz::allow_spec(spec.as_bytes());
        let guest = format!("{method}\n{scheme}\n{authority}\n{path}\n{header}");
        let _ = urlcap::fuzz::guest_request(guest.as_bytes());
    }

    #[test]
    fn manifests_never_panic(key in "[a-z_]{1,20}", value in ".{0,40}", origin in urlish()) {
        let text = format!(
            "version = 1\n[[authority]]\nname = \"a\"\norigin = {origin:?}\n{key} = {value:?}\n[authority.headers]\n{key} = {{ value = {value:?} }}\n"
        );
        let _ = Config::parse(&text, Path::new("fuzz.toml"), &ProcessSecrets);
        let _ = Config::parse(&value, Path::new("fuzz.toml"), &ProcessSecrets);
    }
}

/// The fuzz entry points reach their "accepted" branches, where their properties are checked,
/// and refuse what they must.
#[test]
fn fuzz_entry_points_reach_both_branches() {
    assert!(urlcap::fuzz::canonical_url(b"https://a.example/x?y"));
    assert!(!urlcap::fuzz::canonical_url(b"https://u@a.example/x"));
    assert!(urlcap::fuzz::guest_request(
        b"GET\nhttps\napi.example.com\n/v1/x\nx-a:1"
    ));
    assert!(urlcap::fuzz::guest_request(
        b"POST\nhttp\nb.svc.example:8080\n/"
    ));
    assert!(!urlcap::fuzz::guest_request(
        b"GET\nhttps\napi.example.com\n/v2/x"
    ));
    assert!(!urlcap::fuzz::guest_request(
        b"GET\nhttps\nevil.example\n/v1/x"
    ));
    assert!(!urlcap::fuzz::guest_request(
        b"GET\nhttps\napi.example.com\n/v1/x\nhost:evil"
    ));
}
