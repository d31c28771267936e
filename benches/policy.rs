//! Policy decision and derivation cost.
//!
//! The targets (issue: foundation) and the results are in BENCHMARKS.md, "Policy
//! (foundation)": decisions flat in the number of grants, and derivation cheap. Run with
//! `cargo bench --bench policy`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use urlcap::policy::{
    grant_from_spec_url, Attenuation, Grant, IpRules, Method, MethodSet, PathPrefix, Policy,
    Request, SystemClock,
};

fn policy(n: usize, wildcard: bool) -> Policy {
    let grants = (0..n)
        .map(|i| {
            let url = if wildcard {
                format!("https://*.svc{i}.example.com/api/")
            } else {
                format!("https://svc{i}.example.com/api/")
            };
            let (origin, paths) = grant_from_spec_url(&url).unwrap();
            let mut g = Grant::new(format!("g{i}"), origin);
            g.paths = paths;
            g.methods = MethodSet::new(["GET", "POST"].map(|m| Method::parse(m).unwrap()));
            g
        })
        .collect();
    Policy::new(grants, IpRules::default(), Arc::new(SystemClock::new())).unwrap()
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision");
    for &n in &[10usize, 1_000, 10_000] {
        for wildcard in [false, true] {
            let p = policy(n, wildcard);
            let target = n / 2;
            let host = if wildcard {
                format!("node.svc{target}.example.com")
            } else {
                format!("svc{target}.example.com")
            };
            let allowed =
                Request::new("GET", &format!("https://{host}/api/v1/items?page=2")).unwrap();
            let denied = Request::new("GET", &format!("https://{host}/admin")).unwrap();
            assert!(p.check(&allowed).is_allow());
            assert!(!p.check(&denied).is_allow());
            let kind = if wildcard { "wildcard" } else { "exact" };
            group.bench_with_input(
                BenchmarkId::new(format!("{kind}/allow"), n),
                &allowed,
                |b, r| b.iter(|| p.check(black_box(r))),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("{kind}/deny"), n),
                &denied,
                |b, r| b.iter(|| p.check(black_box(r))),
            );
        }
    }
    group.finish();
}

fn canonicalize(c: &mut Criterion) {
    c.bench_function("canonicalize/request", |b| {
        b.iter(|| {
            Request::new(
                black_box("GET"),
                black_box("https://svc5.example.com/api/v1/items?page=2"),
            )
            .unwrap()
        })
    });
}

fn derive(c: &mut Criterion) {
    let p = policy(10, false);
    let root = p.get("g5").unwrap();
    let att = Attenuation {
        paths: Some(vec![PathPrefix::parse("/api/v1/").unwrap()]),
        methods: Some(MethodSet::new([Method::parse("GET").unwrap()])),
        max_requests: Some(100),
        ..Attenuation::default()
    };
    c.bench_function("derive", |b| {
        b.iter(|| root.derive(black_box(&att)).unwrap())
    });
}

/// The fix-it hint of a denial, worked out only when asked (explain, an audit record, learn
/// mode): never on the decision's own path.
fn hint(c: &mut Criterion) {
    let p = policy(10_000, false);
    let denied = Request::new("GET", "https://svc5000.example.com/admin").unwrap();
    let denial = p.check(&denied).into_result().unwrap_err();
    assert!(p.fix(&denial, &denied).is_some());
    c.bench_function("hint/path, 10000 grants", |b| {
        b.iter(|| p.fix(black_box(&denial), black_box(&denied)))
    });
    let elsewhere = Request::new("GET", "https://other.example.net/x?q=1").unwrap();
    let denial = p.check(&elsewhere).into_result().unwrap_err();
    c.bench_function("hint/new origin, 10000 grants", |b| {
        b.iter(|| p.fix(black_box(&denial), black_box(&elsewhere)))
    });
}

criterion_group!(benches, decisions, canonicalize, derive, hint);
criterion_main!(benches);
