//! Property: a derived handle never allows a request that any of its ancestors denies.
//! Random grants, random chains of attenuations (some of which widen and must be refused),
//! random requests and random clock movement; at least 10,000 cases per run.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use urlcap::policy::{
    grant_from_spec_url, Attenuation, Authority, Grant, Host, IpRules, ManualClock, Method,
    MethodSet, PathPrefix, Policy, Rate, Request,
};

const HOSTS: &[&str] = &[
    "a.example.com",
    "b.example.com",
    "example.com",
    "x.a.example.com",
    "127.0.0.1",
    "[::1]",
];
const PATTERNS: &[&str] = &[
    "a.example.com",
    "*.example.com",
    "127.0.0.1",
    "[::1]",
    "example.com",
];
const PATHS: &[&str] = &[
    "/", "/v1", "/v1/", "/v1/x", "/v1/x/", "/v10", "/v2/", "/v1/x/y",
];
const REQUEST_PATHS: &[&str] = &[
    "/", "/v1", "/v1/", "/v1/x", "/v1/x/y", "/v1/xy", "/v10", "/v10/a", "/v2/z", "/v1x", "/v2",
];
const METHODS: &[&str] = &["GET", "HEAD", "POST", "DELETE", "get"];

fn subset<T: Clone + std::fmt::Debug>(items: &'static [T]) -> impl Strategy<Value = Vec<T>> {
    proptest::sample::subsequence(items.to_vec(), 0..=items.len())
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    proptest::option::weighted(0.4, s)
}

fn rate() -> impl Strategy<Value = Rate> {
    (1u32..20, 1u64..5).prop_map(|(count, secs)| Rate {
        count,
        per: Duration::from_secs(secs),
    })
}

fn grant() -> impl Strategy<Value = Grant> {
    (
        prop_oneof![Just("http"), Just("https")],
        proptest::sample::select(PATTERNS),
        prop_oneof![Just(None), Just(Some(8080u16))],
        subset(PATHS).prop_filter("non-empty", |p| !p.is_empty()),
        subset(METHODS).prop_filter("non-empty", |m| !m.is_empty()),
        (
            opt(1u64..50),
            opt(rate()),
            opt(1u64..100),
            proptest::collection::vec(
                proptest::sample::select(&["127.0.0.0/8", "::1/128"][..]),
                0..2,
            ),
        ),
    )
        .prop_map(
            |(scheme, host, port, paths, methods, (max_requests, rate, body, allow_ips))| {
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                let (origin, _) = grant_from_spec_url(&format!("{scheme}://{host}{port}")).unwrap();
                let mut g = Grant::new("root", origin);
                g.paths = paths
                    .iter()
                    .map(|p| PathPrefix::parse(p).unwrap())
                    .collect();
                g.methods = MethodSet::new(methods.iter().map(|m| Method::parse(m).unwrap()));
                g.limits.max_requests = max_requests;
                g.limits.rate = rate;
                g.limits.max_request_body = body;
                g.allow_ips = allow_ips.iter().map(|n| n.parse().unwrap()).collect();
                g
            },
        )
}

fn attenuation() -> impl Strategy<Value = Attenuation> {
    (
        opt(proptest::sample::select(HOSTS)),
        opt(subset(PATHS)),
        opt(subset(METHODS)),
        opt(1u64..60),
        opt(rate()),
        opt(1u64..120),
        opt(1u64..20),
    )
        .prop_map(
            |(host, paths, methods, max_requests, rate, body, expires)| Attenuation {
                host: host.map(|h| Host::parse(h).unwrap()),
                paths: paths.map(|ps| ps.iter().map(|p| PathPrefix::parse(p).unwrap()).collect()),
                methods: methods
                    .map(|ms| MethodSet::new(ms.iter().map(|m| Method::parse(m).unwrap()))),
                max_requests,
                rate,
                max_request_body: body,
                expires_in: expires.map(Duration::from_secs),
                ..Attenuation::default()
            },
        )
}

/// Requests aimed at `grant`'s origin three times in four, anywhere otherwise.
fn request_near(grant: &Grant) -> impl Strategy<Value = Request> {
    let scheme = grant.origin.scheme.as_str();
    let port = format!(":{}", grant.origin.port);
    let hosts: Vec<String> = match &grant.origin.host {
        urlcap::policy::HostPattern::Exact(h) => vec![h.to_string()],
        urlcap::policy::HostPattern::Wildcard(s) => vec![format!("a.{s}"), format!("b.{s}")],
    };
    let near = (proptest::sample::select(hosts), Just((scheme, port)))
        .prop_map(|(h, (s, p))| format!("{s}://{h}{p}"));
    let anywhere = (
        prop_oneof![Just("http"), Just("https")],
        proptest::sample::select(HOSTS),
        prop_oneof![Just(""), Just(":8080"), Just(":443"), Just(":80")],
    )
        .prop_map(|(s, h, p)| format!("{s}://{h}{p}"));
    (
        prop_oneof![3 => near, 1 => anywhere],
        proptest::sample::select(REQUEST_PATHS),
        proptest::sample::select(METHODS),
        opt(0u64..150),
    )
        .prop_map(|(origin, path, method, body)| {
            let r = Request::new(method, &format!("{origin}{path}")).unwrap();
            match body {
                Some(n) => r.with_body_len(n),
                None => r,
            }
        })
}

#[test]
fn derived_children_never_allow_what_an_ancestor_denies() {
    let mut runner = TestRunner::new(Config {
        cases: 10_000,
        failure_persistence: None,
        ..Config::default()
    });
    let derived = AtomicUsize::new(0);
    let child_allowed = AtomicUsize::new(0);
    let strategy = grant().prop_flat_map(|g| {
        let requests = proptest::collection::vec(request_near(&g), 1..6);
        (
            Just(g),
            proptest::collection::vec(attenuation(), 1..4),
            requests,
            0u64..25,
            any::<bool>(),
        )
    });
    runner
        .run(
            &strategy,
            |(grant, attenuations, requests, elapsed, allow_private)| {
                let clock = Arc::new(ManualClock::default());
                let network = IpRules {
                    allow_private,
                    ..IpRules::default()
                };
                let policy = Policy::new(vec![grant], network, clock.clone()).unwrap();
                let mut chain: Vec<Authority> = vec![policy.get("root").unwrap().clone()];
                for att in &attenuations {
                    match chain.last().unwrap().derive(att) {
                        Ok(child) => {
                            derived.fetch_add(1, Ordering::Relaxed);
                            chain.push(child);
                        }
                        Err(_) => break,
                    }
                }
                clock.advance(Duration::from_secs(elapsed));
                let leaf = chain.last().unwrap();
                for req in &requests {
                    if leaf.check(req).is_allow() {
                        if chain.len() > 1 {
                            child_allowed.fetch_add(1, Ordering::Relaxed);
                        }
                        for ancestor in &chain {
                            if !ancestor.check(req).is_allow() {
                                return Err(TestCaseError::fail(format!(
                                    "{} allows {} {} but its ancestor {} denies it: {:?}",
                                    leaf.reference().lineage,
                                    req.method(),
                                    req.url(),
                                    ancestor.reference().lineage,
                                    ancestor.check(req)
                                )));
                            }
                        }
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    // The property must not hold vacuously: many derivations succeed and many children allow.
    let (derived, child_allowed) = (derived.into_inner(), child_allowed.into_inner());
    assert!(derived > 3_000, "only {derived} derivations succeeded");
    assert!(
        child_allowed > 500,
        "only {child_allowed} requests were allowed by derived children"
    );
}
