//! The policy engine's behaviour, read as tables where it can be: derivation narrows and never
//! widens, revocation cascades, spending counts against ancestors, time comes from the clock.

use std::sync::Arc;
use std::time::Duration;
use urlcap::policy::{
    grant_from_spec_url, Attenuation, Authority, Decision, Grant, Host, IpRules, Limits,
    ManualClock, Method, MethodSet, PathPrefix, Policy, Rate, Reason, Request,
};

fn grant(name: &str, url: &str, methods: &[&str]) -> Grant {
    let (origin, paths) = grant_from_spec_url(url).unwrap();
    let mut g = Grant::new(name, origin);
    g.paths = paths;
    if !methods.is_empty() {
        g.methods = methods_of(methods);
    }
    g
}

fn methods_of(methods: &[&str]) -> MethodSet {
    MethodSet::new(methods.iter().map(|m| Method::parse(m).unwrap()))
}

fn paths_of(paths: &[&str]) -> Vec<PathPrefix> {
    paths
        .iter()
        .map(|p| PathPrefix::parse(p).unwrap())
        .collect()
}

fn policy_with(grants: Vec<Grant>) -> (Policy, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    (
        Policy::new(grants, IpRules::default(), clock.clone()).unwrap(),
        clock,
    )
}

fn req(method: &str, url: &str) -> Request {
    Request::new(method, url).unwrap()
}

fn reason(d: Decision) -> Option<Reason> {
    d.reason()
}

/// Admit `r` on `a` as egress would ask (spending budget and rate), as a decision.
fn admit(a: &Authority, r: &Request) -> Decision {
    match a.authorize(r.clone()) {
        Ok(approved) => Decision::Allow(approved.authority().reference().clone()),
        Err(denial) => Decision::Deny(denial),
    }
}

#[test]
fn policy_table() {
    let (policy, _) = policy_with(vec![
        grant("gh", "https://api.github.com/repos/", &["GET", "HEAD"]),
        grant("gh-users", "https://api.github.com/users/", &["GET"]),
        grant("cdn", "https://*.cdn.example.net/", &["GET"]),
        grant(
            "exact-over-wild",
            "https://special.cdn.example.net/admin/",
            &["POST"],
        ),
    ]);
    let table: &[(&str, &str, Option<Reason>, Option<&str>)] = &[
        ("GET", "https://api.github.com/repos/a/b", None, Some("gh")),
        ("HEAD", "https://api.github.com/repos/", None, Some("gh")),
        (
            "GET",
            "https://api.github.com/users/x",
            None,
            Some("gh-users"),
        ),
        (
            "HEAD",
            "https://api.github.com/users/x",
            Some(Reason::MethodNotAllowed),
            Some("gh-users"),
        ),
        (
            "GET",
            "https://api.github.com/orgs/x",
            Some(Reason::PathNotAllowed),
            None,
        ),
        (
            "POST",
            "https://api.github.com/repos/a",
            Some(Reason::MethodNotAllowed),
            Some("gh"),
        ),
        (
            "GET",
            "https://api.github.com:444/repos/a",
            Some(Reason::NoAuthority),
            None,
        ),
        (
            "GET",
            "http://api.github.com/repos/a",
            Some(Reason::NoAuthority),
            None,
        ),
        ("GET", "https://x.cdn.example.net/a", None, Some("cdn")),
        (
            "POST",
            "https://special.cdn.example.net/admin/x",
            None,
            Some("exact-over-wild"),
        ),
        (
            "GET",
            "https://special.cdn.example.net/admin/x",
            None,
            Some("cdn"),
        ),
        (
            "DELETE",
            "https://special.cdn.example.net/admin/x",
            Some(Reason::MethodNotAllowed),
            None,
        ),
        (
            "GET",
            "https://cdn.example.net/a",
            Some(Reason::NoAuthority),
            None,
        ),
    ];
    for (method, url, expected, authority) in table {
        let decision = policy.check(&req(method, url));
        assert_eq!(decision.reason(), *expected, "{method} {url}");
        match (&decision, authority) {
            (Decision::Allow(r), Some(name)) => assert_eq!(&*r.name, *name, "{method} {url}"),
            (Decision::Deny(d), Some(name)) => assert_eq!(
                d.authority.as_ref().map(|a| &*a.name),
                Some(*name),
                "{method} {url}"
            ),
            _ => {}
        }
    }
}

#[test]
fn derive_narrows_every_dimension() {
    let (policy, _) = policy_with(vec![grant(
        "api",
        "https://*.example.com/v1/",
        &["GET", "POST"],
    )]);
    let root = policy.get("api").unwrap();
    let child = root
        .derive(&Attenuation {
            host: Some(Host::Domain("a.example.com".into())),
            paths: Some(paths_of(&["/v1/read/"])),
            methods: Some(methods_of(&["GET"])),
            max_requests: Some(5),
            ..Attenuation::default()
        })
        .unwrap();
    assert_eq!(child.reference().lineage.split('/').count(), 2);
    assert!(child.reference().lineage.starts_with("api/"));
    assert!(child
        .check(&req("GET", "https://a.example.com/v1/read/x"))
        .is_allow());
    assert_eq!(
        reason(child.check(&req("GET", "https://b.example.com/v1/read/x"))),
        Some(Reason::NoAuthority)
    );
    assert_eq!(
        reason(child.check(&req("GET", "https://a.example.com/v1/write"))),
        Some(Reason::PathNotAllowed)
    );
    assert_eq!(
        reason(child.check(&req("POST", "https://a.example.com/v1/read/x"))),
        Some(Reason::MethodNotAllowed)
    );
    // The parent still allows what it allowed.
    assert!(root
        .check(&req("POST", "https://b.example.com/v1/write"))
        .is_allow());
}

#[test]
fn derive_refuses_to_widen() {
    let mut g = grant("api", "https://api.example.com/v1/", &["GET"]);
    g.limits = Limits {
        max_requests: Some(10),
        rate: Some(Rate::parse("5/s").unwrap()),
        timeout: Some(Duration::from_secs(5)),
        max_request_body: Some(100),
        max_response_body: Some(1000),
        max_concurrent_requests: None,
    };
    let (policy, _) = policy_with(vec![g, grant("wild", "https://*.example.com/", &[])]);
    let root = policy.get("api").unwrap();
    let wild = policy.get("wild").unwrap();
    let cases: Vec<(&Authority, Attenuation, Reason)> = vec![
        (
            root,
            Attenuation {
                paths: Some(paths_of(&["/v2/"])),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            root,
            Attenuation {
                paths: Some(paths_of(&["/v1"])),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            root,
            Attenuation {
                paths: Some(paths_of(&["/"])),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            root,
            Attenuation {
                paths: Some(vec![]),
                ..Default::default()
            },
            Reason::InvalidAttenuation,
        ),
        (
            root,
            Attenuation {
                methods: Some(methods_of(&["GET", "POST"])),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            root,
            Attenuation {
                methods: Some(MethodSet::new([])),
                ..Default::default()
            },
            Reason::InvalidAttenuation,
        ),
        (
            root,
            Attenuation {
                host: Some(Host::Domain("other.example.com".into())),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            root,
            Attenuation {
                max_requests: Some(11),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            root,
            Attenuation {
                rate: Some(Rate::parse("6/s").unwrap()),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            root,
            Attenuation {
                timeout: Some(Duration::from_secs(6)),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            root,
            Attenuation {
                max_request_body: Some(101),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            root,
            Attenuation {
                max_response_body: Some(1001),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            wild,
            Attenuation {
                host: Some(Host::Domain("a.b.example.com".into())),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
        (
            wild,
            Attenuation {
                host: Some(Host::Domain("example.com".into())),
                ..Default::default()
            },
            Reason::AttenuationWidens,
        ),
    ];
    for (parent, att, expected) in cases {
        let err = parent.derive(&att).unwrap_err();
        assert_eq!(err.reason, expected, "{att:?}");
    }
    // Equal limits are fine: a subset need not be strict.
    assert!(root
        .derive(&Attenuation {
            max_requests: Some(10),
            paths: Some(paths_of(&["/v1/"])),
            ..Default::default()
        })
        .is_ok());
}

#[test]
fn children_expire_no_later_than_parents() {
    let (policy, clock) = policy_with(vec![grant("api", "https://api.example.com/", &[])]);
    let root = policy.get("api").unwrap();
    let parent = root
        .derive(&Attenuation {
            expires_in: Some(Duration::from_secs(10)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        parent
            .derive(&Attenuation {
                expires_in: Some(Duration::from_secs(11)),
                ..Default::default()
            })
            .unwrap_err()
            .reason,
        Reason::AttenuationWidens
    );
    let child = parent.derive(&Attenuation::default()).unwrap();
    let r = req("GET", "https://api.example.com/x");
    assert!(child.check(&r).is_allow());
    clock.advance(Duration::from_secs(10));
    assert_eq!(reason(child.check(&r)), Some(Reason::Expired));
    assert_eq!(reason(parent.check(&r)), Some(Reason::Expired));
    assert!(root.check(&r).is_allow());
    assert_eq!(
        parent.derive(&Attenuation::default()).unwrap_err().reason,
        Reason::Expired
    );
}

#[test]
fn revocation_cascades_to_descendants_made_before_and_after() {
    let (policy, _) = policy_with(vec![grant("api", "https://api.example.com/", &[])]);
    let root = policy.get("api").unwrap();
    let a = root.derive(&Attenuation::default()).unwrap();
    let b = a.derive(&Attenuation::default()).unwrap();
    let sibling = root.derive(&Attenuation::default()).unwrap();
    let r = req("GET", "https://api.example.com/x");
    a.revoke();
    assert_eq!(reason(a.check(&r)), Some(Reason::Revoked));
    assert_eq!(reason(b.check(&r)), Some(Reason::Revoked));
    assert!(b.is_revoked());
    assert!(sibling.check(&r).is_allow());
    assert!(root.check(&r).is_allow());
    assert_eq!(
        a.derive(&Attenuation::default()).unwrap_err().reason,
        Reason::Revoked
    );
    assert_eq!(
        b.derive(&Attenuation::default()).unwrap_err().reason,
        Reason::Revoked
    );
}

#[test]
fn spending_counts_against_every_ancestor() {
    let mut g = grant("api", "https://api.example.com/", &[]);
    g.limits.max_requests = Some(3);
    let (policy, _) = policy_with(vec![g]);
    let root = policy.get("api").unwrap();
    let child = root.derive(&Attenuation::default()).unwrap();
    let grandchild = child
        .derive(&Attenuation {
            max_requests: Some(2),
            ..Default::default()
        })
        .unwrap();
    let r = req("GET", "https://api.example.com/x");
    assert!(admit(&grandchild, &r).is_allow());
    assert!(admit(&grandchild, &r).is_allow());
    assert_eq!(
        reason(admit(&grandchild, &r)),
        Some(Reason::BudgetExhausted)
    );
    assert_eq!(root.spent(), 2);
    assert_eq!(grandchild.spent(), 2);
    // check() never spends.
    assert!(child.check(&r).is_allow());
    assert!(child.check(&r).is_allow());
    assert!(admit(&child, &r).is_allow());
    assert_eq!(reason(admit(&child, &r)), Some(Reason::BudgetExhausted));
    assert_eq!(reason(admit(root, &r)), Some(Reason::BudgetExhausted));
    assert_eq!(root.spent(), 3);
}

#[test]
fn a_denial_spends_nothing_anywhere() {
    let mut g = grant("api", "https://api.example.com/", &[]);
    g.limits.max_requests = Some(10);
    let (policy, _) = policy_with(vec![g]);
    let root = policy.get("api").unwrap();
    let child = root
        .derive(&Attenuation {
            max_requests: Some(1),
            ..Default::default()
        })
        .unwrap();
    let r = req("GET", "https://api.example.com/x");
    assert!(admit(&child, &r).is_allow());
    for _ in 0..5 {
        assert_eq!(reason(admit(&child, &r)), Some(Reason::BudgetExhausted));
    }
    assert_eq!(root.spent(), 1);
}

#[test]
fn rates_refill_with_the_injected_clock() {
    let mut g = grant("api", "https://api.example.com/", &[]);
    g.limits.rate = Some(Rate::parse("2/s").unwrap());
    let (policy, clock) = policy_with(vec![g]);
    let root = policy.get("api").unwrap();
    let child = root.derive(&Attenuation::default()).unwrap();
    let r = req("GET", "https://api.example.com/x");
    assert!(admit(&child, &r).is_allow());
    assert!(admit(root, &r).is_allow());
    assert_eq!(reason(admit(&child, &r)), Some(Reason::RateLimited));
    clock.advance(Duration::from_millis(500));
    assert!(admit(&child, &r).is_allow());
    assert_eq!(reason(admit(root, &r)), Some(Reason::RateLimited));
    clock.advance(Duration::from_secs(60));
    assert!(admit(root, &r).is_allow());
    assert!(admit(root, &r).is_allow());
    assert_eq!(
        reason(admit(root, &r)),
        Some(Reason::RateLimited),
        "the bucket holds at most the rate's count"
    );
}

#[test]
fn policy_authorize_spends_on_the_allowing_authority() {
    let mut g = grant("api", "https://api.example.com/", &[]);
    g.limits.max_requests = Some(1);
    let (policy, _) = policy_with(vec![g]);
    let r = req("GET", "https://api.example.com/");
    let approved = policy.authorize(r.clone()).unwrap();
    assert_eq!(approved.authority().name(), "api");
    let denial = policy.authorize(r).unwrap_err();
    assert_eq!(denial.reason, Reason::BudgetExhausted);
}

#[test]
fn concurrent_spending_never_exceeds_the_budget() {
    let mut g = grant("api", "https://api.example.com/", &[]);
    g.limits.max_requests = Some(1000);
    let (policy, _) = policy_with(vec![g]);
    let root = policy.get("api").unwrap().clone();
    let children: Vec<Authority> = (0..4)
        .map(|_| {
            root.derive(&Attenuation {
                max_requests: Some(400),
                ..Default::default()
            })
            .unwrap()
        })
        .collect();
    let allowed = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for child in &children {
            for _ in 0..2 {
                s.spawn(|| {
                    let r = req("GET", "https://api.example.com/x");
                    for _ in 0..300 {
                        if admit(child, &r).is_allow() {
                            allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        }
    });
    assert_eq!(allowed.into_inner(), 1000);
    assert_eq!(root.spent(), 1000);
    assert!(children.iter().all(|c| c.spent() <= 400));
}

#[test]
fn ip_literal_grants_still_obey_ip_rules() {
    let (policy, _) = policy_with(vec![grant("local", "http://127.0.0.1:8080/", &[])]);
    assert_eq!(
        policy.check(&req("GET", "http://127.0.0.1:8080/")).reason(),
        Some(Reason::IpDenied)
    );
    let mut g = grant("local", "http://127.0.0.1:8080/", &[]);
    g.allow_ips = vec!["127.0.0.1/32".parse().unwrap()];
    let (policy, _) = policy_with(vec![g]);
    assert!(policy
        .check(&req("GET", "http://127.0.0.1:8080/"))
        .is_allow());
    // A yes is the vetted address itself, the only thing egress connects to.
    let local = policy.get("local").unwrap();
    let vetted = local.vet("127.0.0.1:8080".parse().unwrap()).unwrap();
    assert_eq!(vetted.addr(), "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        local
            .vet("10.0.0.1:8080".parse().unwrap())
            .unwrap_err()
            .reason,
        Reason::IpDenied
    );
}

#[test]
fn duplicate_names_are_refused() {
    let clock = Arc::new(ManualClock::default());
    let err = Policy::new(
        vec![
            grant("a", "https://a.com/", &[]),
            grant("a", "https://b.com/", &[]),
        ],
        IpRules::default(),
        clock,
    );
    assert!(err.is_err());
}

/// Headers servers read as another method, path or host are judged as that method, path or
/// host, against the same grant (`policy::overrides` lists them and says why). Grants: `ro`
/// allows GET on `/public/` of api.example.com; `cdn` allows any label of cdn.example.net.
#[test]
fn override_headers_are_judged_as_the_request_line_they_stand_for() {
    let (policy, _) = policy_with(vec![
        grant("ro", "https://api.example.com/public/", &["GET"]),
        grant("cdn", "https://*.cdn.example.net/", &["GET"]),
    ]);
    let api = "https://api.example.com/public/a";
    let cdn = "https://a.cdn.example.net/x";
    let table: &[(&str, &str, &str, Option<Reason>)] = &[
        // Method overrides (Rails, Laravel, Symfony, Google APIs).
        (
            api,
            "X-HTTP-Method-Override",
            "DELETE",
            Some(Reason::MethodNotAllowed),
        ),
        (api, "x-http-method", "PUT", Some(Reason::MethodNotAllowed)),
        (
            api,
            "X-Method-Override",
            "CONNECT",
            Some(Reason::InvalidMethod),
        ),
        (api, "X-HTTP-Method-Override", "GET", None),
        (
            api,
            "X-HTTP-Method-Override",
            "get",
            Some(Reason::MethodNotAllowed),
        ),
        // Path overrides (IIS URL Rewrite, Symfony; nginx auth_request).
        (
            api,
            "X-Original-URL",
            "/admin",
            Some(Reason::PathNotAllowed),
        ),
        (
            api,
            "X-Rewrite-URL",
            "/public/../admin",
            Some(Reason::NonCanonicalPath),
        ),
        (
            api,
            "X-Original-URI",
            "/public%2f..%2fadmin",
            Some(Reason::NonCanonicalPath),
        ),
        (
            api,
            "X-Original-URL",
            "admin",
            Some(Reason::NonCanonicalPath),
        ),
        (api, "X-Original-URL", "/public/b?q=1", None),
        // Host overrides (virtual hosts, reverse proxies).
        (
            api,
            "X-Forwarded-Host",
            "internal.example.com",
            Some(Reason::NoAuthority),
        ),
        (
            api,
            "X-Forwarded-Host",
            "api.example.com, admin.example.com",
            Some(Reason::NoAuthority),
        ),
        (
            api,
            "X-Forwarded-Host",
            "api.example.com:8443",
            Some(Reason::NoAuthority),
        ),
        (api, "X-Forwarded-Host", "api.example.com", None),
        (api, "X-Host", "localhost", Some(Reason::NoAuthority)),
        (
            api,
            "Forwarded",
            "for=1.2.3.4;host=\"evil.example\";proto=https",
            Some(Reason::NoAuthority),
        ),
        (api, "Forwarded", "for=1.2.3.4", None),
        (cdn, "X-Forwarded-Host", "b.cdn.example.net", None),
        (
            cdn,
            "X-Forwarded-Host",
            "cdn.example.net",
            Some(Reason::NoAuthority),
        ),
        // CGI-style servers (WSGI, Rack, PHP) read `_` as `-` (hostile review).
        (
            api,
            "X_HTTP_Method_Override",
            "DELETE",
            Some(Reason::MethodNotAllowed),
        ),
        (
            api,
            "X_Original_URL",
            "/admin",
            Some(Reason::PathNotAllowed),
        ),
        (
            api,
            "X_Forwarded_Host",
            "evil.com",
            Some(Reason::NoAuthority),
        ),
        // Forwarded parsed as RFC 7239: quoting, every element, every host (hostile review).
        (
            api,
            "Forwarded",
            "for=\"x;host=api.example.com\";host=evil.com",
            Some(Reason::NoAuthority),
        ),
        (
            api,
            "Forwarded",
            "host=api.example.com;host=evil.com",
            Some(Reason::NoAuthority),
        ),
        (
            api,
            "Forwarded",
            "for=\"a,host=api.example.com\";host=evil.com",
            Some(Reason::NoAuthority),
        ),
        (
            api,
            "Forwarded",
            "for=a, host=evil.com",
            Some(Reason::NoAuthority),
        ),
        (
            api,
            "Forwarded",
            "host=\"api.example.com\";proto=https;for=\"[2001:db8::1]\"",
            None,
        ),
        (
            api,
            "Forwarded",
            "host=\"unterminated",
            Some(Reason::InvalidHeader),
        ),
        (api, "Forwarded", "proto=http", Some(Reason::NoAuthority)),
        // Spring and Vert.x search the value instead of parsing it (second review).
        (
            api,
            "Forwarded",
            "xhost=evil.example",
            Some(Reason::NoAuthority),
        ),
        (
            api,
            "Forwarded",
            "for=\"x;host=evil.example\"",
            Some(Reason::NoAuthority),
        ),
        (
            api,
            "Forwarded",
            "for=xhost=evil.example",
            Some(Reason::NoAuthority),
        ),
        (api, "X-Forwarded-Ssl", "off", Some(Reason::NoAuthority)),
        (api, "X-Forwarded-Ssl", "on", None),
        // More of the same family: method, path, host, scheme, port.
        (
            api,
            "X-Original-Method",
            "DELETE",
            Some(Reason::MethodNotAllowed),
        ),
        (
            api,
            "X-Forwarded-Method",
            "POST",
            Some(Reason::MethodNotAllowed),
        ),
        (
            api,
            "X-Forwarded-Uri",
            "/admin",
            Some(Reason::PathNotAllowed),
        ),
        (
            api,
            "X-Forwarded-Prefix",
            "/admin",
            Some(Reason::PathNotAllowed),
        ),
        (
            api,
            "X-Original-Host",
            "evil.com",
            Some(Reason::NoAuthority),
        ),
        (api, "X-Forwarded-Proto", "http", Some(Reason::NoAuthority)),
        (api, "X-Forwarded-Proto", "https", None),
        (api, "X-Forwarded-Port", "8443", Some(Reason::NoAuthority)),
        (api, "X-Forwarded-Port", "443", None),
        // Ordinary headers are not judged.
        (api, "X-Request-Id", "/admin DELETE evil.example", None),
    ];
    for (url, name, value, want) in table {
        let request = req("GET", url).header(name, value.as_bytes()).unwrap();
        let decision = policy.check(&request);
        assert_eq!(
            reason(decision.clone()),
            *want,
            "{name}: {value} on {url}: {decision:?}"
        );
        if let Decision::Deny(d) = decision {
            assert!(
                d.detail.contains("is read by servers as the request line"),
                "{}",
                d.detail
            );
        }
    }
    // `?_method=DELETE` overrides a POST's method in Laravel and Symfony.
    let (policy, _) = policy_with(vec![grant(
        "rw",
        "https://api.example.com/",
        &["GET", "POST"],
    )]);
    let denied = req("POST", "https://api.example.com/x?a=1&_method=DELETE");
    assert_eq!(
        reason(policy.check(&denied)),
        Some(Reason::MethodNotAllowed)
    );
    let fine = req("POST", "https://api.example.com/x?_method=POST");
    assert_eq!(reason(policy.check(&fine)), None);
    // Servers decode the name, and PHP reads `.`, `+` and space as `_` (second review).
    for spelled in ["%5Fmethod", ".method", "+method", "_METHOD"] {
        let denied = req(
            "POST",
            &format!("https://api.example.com/x?{spelled}=DELETE"),
        );
        assert_eq!(
            reason(policy.check(&denied)),
            Some(Reason::MethodNotAllowed),
            "{spelled}"
        );
    }
}
