//! The `urlcap` binary: explain and check exit codes, JSON shape, and messages.

use std::process::{Command, Output};

fn urlcap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_urlcap"))
        .args(args)
        .env_remove("GITHUB_TOKEN")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(o).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

const GH: &str = "gh=GET,HEAD https://api.github.com/repos/";

#[test]
fn explain_allow_exits_0() {
    let o = urlcap(&["explain", "--allow", GH, "https://api.github.com/repos/a/b"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("allow GET https://api.github.com/repos/a/b\n"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("authority gh"));
}

#[test]
fn explain_deny_exits_1_with_reason() {
    let o = urlcap(&[
        "explain",
        "--allow",
        GH,
        "--method",
        "DELETE",
        "https://api.github.com/repos/a/b",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("reason    method_not_allowed"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn explain_json_has_the_contract_fields() {
    let o = urlcap(&[
        "explain",
        "--allow",
        GH,
        "--json",
        "https://api.github.com/repos/a",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["authority"], "gh");
    assert_eq!(v["reason"], serde_json::Value::Null);
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .contains("https://api.github.com"));

    let o = urlcap(&[
        "explain",
        "--allow",
        GH,
        "--json",
        "https://api.github.com/orgs/a",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["authority"], "gh");
    assert_eq!(v["reason"], "path_not_allowed");
    assert_eq!(v["url"], "https://api.github.com/orgs/a");

    let o = urlcap(&["explain", "--allow", GH, "--json", "https://evil.example/"]);
    let v = json(&o);
    assert_eq!(
        (
            v["decision"].as_str(),
            v["authority"].as_str(),
            v["reason"].as_str()
        ),
        (Some("deny"), None, Some("no_authority"))
    );
}

#[test]
fn explain_redacts_userinfo_in_output() {
    let o = urlcap(&[
        "explain",
        "--allow",
        GH,
        "--json",
        "https://me:hunter2@api.github.com/repos/a",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["reason"], "userinfo");
    assert!(!stdout(&o).contains("hunter2"));
}

#[test]
fn explain_checks_ip_literals_always() {
    let o = urlcap(&[
        "explain",
        "--allow",
        "http://127.0.0.1:8080/",
        "--json",
        "http://2130706433:8080/",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["reason"], "ip_denied");
    assert!(
        stderr(&o).contains("warning: authority \"127.0.0.1-8080\": every request will be denied")
    );
    let o = urlcap(&[
        "explain",
        "--allow",
        "http://127.0.0.1:8080/",
        "--allow-ip",
        "127.0.0.1",
        "http://2130706433:8080/",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = urlcap(&[
        "explain",
        "--allow",
        "http://127.0.0.1:8080/",
        "--allow-private",
        "--deny-ip",
        "127.0.0.0/8",
        "http://127.0.0.1:8080/",
    ]);
    assert_eq!(o.status.code(), Some(1));
}

/// An IPv6 literal embedding an IPv4 address is judged in both forms, and a rule written in
/// the IPv4-mapped form means the IPv4 address.
#[test]
fn explain_judges_embedded_ipv4_in_both_forms() {
    let rows: &[(&[&str], &str, i32)] = &[
        (
            &["--allow-ip", "64:ff9b::/96"],
            "http://[64:ff9b::a00:5]/",
            1,
        ),
        (
            &["--allow-ip", "64:ff9b::/96"],
            "http://[64:ff9b::808:808]/",
            0,
        ),
        (
            &["--allow-private", "--deny-ip", "169.254.169.254"],
            "http://[64:ff9b::a9fe:a9fe]/",
            1,
        ),
        (
            &["--allow-private", "--deny-ip", "169.254.169.254"],
            "http://[2002:a9fe:a9fe::1]/",
            1,
        ),
        (&["--deny-ip", "::ffff:8.8.8.8"], "http://8.8.8.8/", 1),
    ];
    for (flags, url, code) in rows {
        let grant = url.to_string(); // the literal itself is granted; only IP rules judge
        let mut args = vec!["explain", "--allow", &grant];
        args.extend(*flags);
        args.extend(["--json", url]);
        let o = urlcap(&args);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", stdout(&o));
        if *code == 1 {
            assert_eq!(json(&o)["reason"], "ip_denied", "{args:?}");
        }
    }
}

#[test]
fn explain_resolve_applies_ip_rules_to_every_address() {
    // `localhost` resolves through the system resolver (hosts file) to loopback only.
    let o = urlcap(&[
        "explain",
        "--allow",
        "http://localhost:8080/",
        "--resolve",
        "--json",
        "http://localhost:8080/",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["reason"], "ip_denied");
    assert!(!v["addresses"].as_array().unwrap().is_empty());
    let o = urlcap(&[
        "explain",
        "--allow",
        "http://localhost:8080/",
        "--allow-ip",
        "127.0.0.0/8",
        "--allow-ip",
        "::1",
        "--resolve",
        "--json",
        "http://localhost:8080/",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // Without --resolve, a name is judged by the policy alone.
    let o = urlcap(&[
        "explain",
        "--allow",
        "http://localhost:8080/",
        "http://localhost:8080/",
    ]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn explain_headers_are_judged() {
    let o = urlcap(&[
        "explain",
        "--allow",
        GH,
        "--header",
        "Host: evil.com",
        "--json",
        "https://api.github.com/repos/a",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["reason"], "forbidden_header");
    let o = urlcap(&[
        "explain",
        "--allow",
        GH,
        "--header",
        "no colon here",
        "https://api.github.com/repos/a",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--header \"(its value is not shown)\": expected 'Name: value'"));
}

#[test]
fn bad_usage_and_bad_manifests_exit_2() {
    for args in [
        vec!["explain"],
        vec!["explain", "--bogus", "https://a.com"],
        vec!["frobnicate"],
        vec!["explain", "--allow", "not a spec", "https://a.com"],
        vec![
            "explain",
            "--manifest",
            "fixtures/does-not-exist.toml",
            "https://a.com",
        ],
        vec!["check", "--allow-ip", "300.1.1.1"],
    ] {
        let o = urlcap(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty());
    }
}

#[test]
fn check_prints_effective_grants() {
    let o = urlcap(&[
        "check",
        "--manifest",
        "fixtures/vectors.toml",
        "--allow",
        GH,
        "--deny-ip",
        "198.51.100.0/24",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for expected in [
        "authority api\n  origin   https://api.example.com\n  paths    /v1/\n  methods  GET,HEAD,POST\n",
        "  header   authorization: [redacted] (injected by the host)",
        "authority gh\n  origin   https://api.github.com\n  paths    /repos/\n  methods  GET,HEAD\n",
        "deny_ips 198.51.100.0/24",
        "origin   https://*.cdn.example.net",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(!out.contains("vector-test-secret"));
    assert!(stderr(&o).contains("authority \"metadata\": every request will be denied"));
}

#[test]
fn check_reports_missing_secrets_with_place() {
    let o = urlcap(&["check", "--manifest", "policy/example.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("policy/example.toml:26:17: environment variable GITHUB_TOKEN"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_shows_examples_and_version_exits_0() {
    let o = urlcap(&["explain", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Examples:"));
    assert!(
        !stdout(&o).contains('\u{1b}'),
        "help piped to a file carries no terminal escapes"
    );
    for flag in [
        "--manifest",
        "--allow",
        "--allow-ip",
        "--deny-ip",
        "--allow-private",
        "--method",
        "--header",
        "--resolve",
        "--json",
    ] {
        assert!(stdout(&o).contains(flag), "explain --help lacks {flag}");
    }
    let o = urlcap(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("urlcap "));
}

/// A wildcard over a public suffix grants every unrelated site below it: `check` and `explain`
/// refuse it as a bad grant (exit 2) and say what to write instead; a manifest too.
#[test]
fn wildcards_over_public_suffixes_are_refused_with_a_hint() {
    for args in [
        vec!["check", "--allow", "https://*.co.uk/"],
        vec![
            "explain",
            "--allow",
            "https://*.github.io/",
            "https://x.github.io/",
        ],
    ] {
        let o = urlcap(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("public suffix"), "{}", stderr(&o));
        assert!(stderr(&o).contains("such as *.example."), "{}", stderr(&o));
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[[authority]]\nname = \"uk\"\norigin = \"https://*.co.uk\"\n",
    )
    .unwrap();
    let o = urlcap(&["check", "--manifest", manifest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("m.toml:4:"), "{}", stderr(&o));
    assert!(stderr(&o).contains("public suffix co.uk"), "{}", stderr(&o));
}

/// Files a manifest names are read with bounds: only regular files, at most 1 MiB for a
/// `ca_file`, 64 KiB for a secret, 16 MiB for the manifest itself; `/dev/zero` is refused at
/// once instead of filling memory.
#[test]
fn files_named_by_a_manifest_are_read_with_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("big.pem"), vec![b'x'; (1 << 20) + 1]).unwrap();
    std::fs::write(path("big.token"), vec![b'x'; (64 << 10) + 1]).unwrap();
    std::fs::create_dir(path("adir")).unwrap();
    let auth = "version = 1\n[[authority]]\nname = \"a\"\norigin = \"https://a.example.com\"\n";
    let rows = [
        (
            format!("{auth}ca_file = \"/dev/zero\"\n"),
            "cannot read ca_file /dev/zero: not a regular file",
        ),
        (
            format!("{auth}ca_file = \"big.pem\"\n"),
            "larger than 1048576 bytes",
        ),
        (
            format!("{auth}[authority.headers]\nx-token = {{ file = \"big.token\" }}\n"),
            "larger than 65536 bytes",
        ),
        (
            format!("{auth}[authority.headers]\nx-token = {{ file = \"adir\" }}\n"),
            "not a regular file",
        ),
    ];
    for (text, want) in rows {
        std::fs::write(path("m.toml"), &text).unwrap();
        let o = urlcap(&["check", "--manifest", &path("m.toml")]);
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(stderr(&o).contains(want), "{want}: {}", stderr(&o));
    }
    let o = urlcap(&["check", "--manifest", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    // A FIFO with no writer is refused at once, not waited on (hostile review).
    let fifo = path("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for text in [
        format!("{auth}ca_file = \"fifo\"\n"),
        format!("{auth}[authority.headers]\nx-token = {{ file = \"fifo\" }}\n"),
    ] {
        std::fs::write(path("m.toml"), &text).unwrap();
        let o = urlcap(&["check", "--manifest", &path("m.toml")]);
        assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    }
    let o = urlcap(&["check", "--manifest", &fifo]);
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
}

/// `check` shows what is in force, defaults included and said to be defaults.
#[test]
fn check_shows_the_defaults_in_force() {
    let o = urlcap(&["check", "--allow", "https://api.example.com/"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(
        out.contains("max_concurrent_requests 64 (default)"),
        "{out}"
    );
    assert!(out.contains("max_nesting_depth 3 (default)"), "{out}");
    assert!(out.contains("memory unlimited, timeout unlimited"), "{out}");
    assert!(
        out.contains("connect timeout 10s, first-byte timeout 30s, between-bytes timeout 30s"),
        "{out}"
    );
    assert!(out.contains("limits   none of its own"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[limits]\nmax_concurrent_requests = 8\nmax_nesting_depth = 1\n",
    )
    .unwrap();
    let o = urlcap(&["check", "--manifest", manifest.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        out.contains("max_concurrent_requests 8, max_nesting_depth 1\n"),
        "{out}"
    );
}

/// `explain` judges override headers as the request line they stand for (exit 1 with the
/// reason the line would get).
#[test]
fn explain_judges_override_headers() {
    let rows = [
        ("X-HTTP-Method-Override: DELETE", "method_not_allowed"),
        ("X-Original-URL: /admin", "path_not_allowed"),
        ("X-Forwarded-Host: internal.example.com", "no_authority"),
    ];
    for (header, reason) in rows {
        let o = urlcap(&[
            "explain",
            "--allow",
            "GET https://api.example.com/public/",
            "--header",
            header,
            "--json",
            "https://api.example.com/public/a",
        ]);
        assert_eq!(o.status.code(), Some(1), "{header}");
        assert_eq!(json(&o)["reason"], reason, "{header}");
    }
}

/// A denial on an IPv4-embedding form denies the IPv4 address itself too; an exception on
/// such a form alone is warned about, since the embedded address still needs its own.
#[test]
fn rules_on_embedding_forms_cover_the_ipv4_form() {
    let o = urlcap(&[
        "explain",
        "--allow-private",
        "--deny-ip",
        "64:ff9b::a9fe:a9fe",
        "--allow",
        "http://169.254.169.254/",
        "--json",
        "http://169.254.169.254/",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(json(&o)["reason"], "ip_denied");
    let o = urlcap(&[
        "check",
        "--allow-ip",
        "64:ff9b::a00:5",
        "--allow",
        "https://a.example.com/",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("embed 10.0.0.5/32, which is still denied"),
        "{}",
        stderr(&o)
    );
}

/// Flags never echo a secret either: userinfo in an `--allow` URL, a `--header` value, and no
/// Rust type name in a manifest error.
#[test]
fn flag_and_manifest_errors_do_not_echo_secrets_or_type_names() {
    for spec in [
        "https://u:S3CRET@a.example.com/",
        "GET https:/u:S3CRET@a.example.com/",
        "GET https:\\u:S3CRET@a.example.com/",
        "GET https:u:S3CRET@a.example.com/",
        "GET https:///u:S3CRET@a.example.com/",
        "GET https://u:S3CRET@a.example.com?q",
        "GET https://u:S3CRET@a.example.com/ extra",
        "G@T https://u:S3CRET@a.example.com/",
    ] {
        let o = urlcap(&["check", "--allow", spec]);
        assert_eq!(o.status.code(), Some(2), "{spec}");
        assert!(!stderr(&o).contains("S3CRET"), "{spec}: {}", stderr(&o));
    }
    let o = urlcap(&[
        "explain",
        "--header",
        "Authorization Bearer S3CRET",
        "https://a.example.com/",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("S3CRET"), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(&manifest, "version = \"1\"\n").unwrap();
    let o = urlcap(&["check", "--manifest", manifest.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("expected a whole number"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("i64"), "{}", stderr(&o));
}

/// A denial the grants could have allowed ends with the smallest change that would allow it
/// (human and `--json`); one nothing may allow has none.
#[test]
fn explain_ends_each_denial_the_manifest_could_allow_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("app.toml");
    std::fs::write(
        &manifest,
        "version = 1\n\n# GitHub, read-only\n[[authority]]\nname = \"gh\"\norigin = \"https://api.github.com\"\npaths = [\"/repos/\"]\nmethods = [\"GET\"]\n\n[[authority]]\nname = \"inner\"\norigin = \"http://10.1.2.3:8080\"\n[authority.headers]\nx-token = { value = \"s3cret-value\" }\n",
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let shown = manifest.display();
    // (method, URL, extra flags, expected hint or None)
    let rows: &[(&str, &str, &[&str], Option<String>)] = &[
        (
            "POST",
            "https://api.github.com/repos/a",
            &[],
            Some(format!("add POST to methods of authority gh ({shown}:4)")),
        ),
        (
            "GET",
            "https://api.github.com/v2/x",
            &[],
            Some(format!("add path prefix /v2/x to authority gh ({shown}:4)")),
        ),
        (
            "PUT",
            "https://api.github.com/v2/x?page=2",
            &[],
            Some(format!(
                "add path prefix /v2/x and method PUT to authority gh ({shown}:4)"
            )),
        ),
        (
            "GET",
            "https://api.other.com/v1/items?q=1",
            &[],
            Some("--allow 'GET https://api.other.com/v1/items'".into()),
        ),
        (
            "GET",
            "http://10.1.2.3:8080/x",
            &[],
            Some(format!(
                "add allow_ips = [\"10.1.2.3/32\"] to authority inner ({shown}:10)"
            )),
        ),
        (
            "GET",
            "https://api.github.com/repos/a",
            &["--allow", "GET https://api.github.com/repos/"],
            None,
        ),
        // Never: CONNECT, userinfo, non-canonical paths, headers only the host may set, a
        // header the grant injects, and an address in deny_ips.
        ("CONNECT", "https://api.github.com/repos/a", &[], None),
        ("GET", "https://u:p@api.github.com/repos/a", &[], None),
        (
            "GET",
            "https://api.github.com/repos/a/../../admin",
            &[],
            None,
        ),
        (
            "GET",
            "https://api.github.com/v2/x",
            &["--header", "Host: x"],
            None,
        ),
        (
            "GET",
            "http://10.1.2.3:8080/x",
            &["--header", "X-Token: mine", "--allow-ip", "10.1.2.3"],
            None,
        ),
        (
            "GET",
            "http://10.1.2.3:8080/x",
            &["--deny-ip", "10.1.2.3"],
            None,
        ),
    ];
    for (method, url, flags, hint) in rows {
        let mut args = vec!["explain", "--manifest", m, "--method", method, "--json"];
        args.extend(flags.iter());
        args.push(url);
        let o = urlcap(&args);
        let v = json(&o);
        if v["decision"] == "allow" {
            assert!(hint.is_none(), "{method} {url} was allowed");
            assert_eq!(v["hint"], serde_json::Value::Null);
            continue;
        }
        assert_eq!(o.status.code(), Some(1), "{method} {url}: {}", stderr(&o));
        assert_eq!(
            v["hint"].as_str(),
            hint.as_deref(),
            "{method} {url} {flags:?}: {v}"
        );
        assert!(!stdout(&o).contains("s3cret"), "{}", stdout(&o));
        // The human form ends with the same hint, quotes as written, to copy.
        let human: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
        let text = stdout(&urlcap(&human));
        match hint {
            Some(h) => assert!(text.ends_with(&format!("  hint      {h}\n")), "{text}"),
            None => assert!(!text.contains("hint"), "{text}"),
        }
    }
}

#[test]
fn check_shows_resolved_grants_and_where_each_variable_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("app.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"https://${API_HOST}\"\npaths = [\"/orgs/${ORG}/\"]\n",
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let run = |env_org: Option<&str>, vars: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_urlcap"));
        cmd.args(["check", "--manifest", m])
            .env_remove("ORG")
            .env("API_HOST", "api.prod.example.com");
        if let Some(org) = env_org {
            cmd.env("ORG", org);
        }
        for v in vars {
            cmd.args(["--var", v]);
        }
        cmd.output().unwrap()
    };
    let o = run(Some("acme"), &["API_HOST=api.staging.example.com"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("  origin   https://api.staging.example.com\n"),
        "{out}"
    );
    assert!(out.contains("  paths    /orgs/acme/\n"), "{out}");
    assert!(
        out.contains(&format!("variable API_HOST: from --var; used at {m}:4:19")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "variable ORG: from the environment; used at {m}:5:17"
        )),
        "{out}"
    );
    let o = run(None, &["API_HOST=api.staging.example.com"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{m}:5:17: variable ORG is not set")),
        "{}",
        stderr(&o)
    );
    let o = run(Some("acme"), &["API_HOST=sneaky-value/admin"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("sneaky-value"), "{}", stderr(&o));
}
