//! Unmodified wasi:http guests (fixtures/guests/whttp uses only the `wasip2` crate) under the
//! same policy: each request is matched to a preopened authority, sent through urlcap's egress
//! on a pooled connection, or denied with HttpRequestDenied and one audit record.

use crate::support;

use std::process::Output;
use support::{Reply, Server};

async fn urlcap(args: Vec<String>) -> Output {
    support::urlcap_bin(args).await
}

use support::text;

/// Run the guest with `api` granted on `/v1/` of the server, and the request groups given.
async fn run(
    port: u16,
    audit: &std::path::Path,
    groups: &[&[&str]],
) -> (Vec<String>, Vec<serde_json::Value>) {
    let o = urlcap(support::whttp_run_args(port, audit, groups)).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let records = std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (text(&o.stdout).lines().map(String::from).collect(), records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_requests_go_through_pooled_egress() {
    let server =
        Server::http(|r| Reply::With(200, vec![], format!("hi {}", r.target).into_bytes())).await;
    let port = server.port();
    let authority = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let get: &[&str] = &["GET", "http", &authority, "/v1/items?x=1"];
    let (lines, records) = run(
        port,
        &dir.path().join("a.jsonl"),
        &[get, get, get, get, get],
    )
    .await;
    assert_eq!(lines, vec!["ok 200 hi /v1/items?x=1"; 5]);
    assert_eq!(
        server.connections(),
        1,
        "five requests on one pooled keep-alive connection"
    );
    assert_eq!(server.requests()[0].header("host"), [authority.as_str()]);
    let denied = records
        .iter()
        .filter(|r| r["event"] == "request.denied")
        .count();
    assert_eq!(denied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_else_is_denied_with_one_audit_record() {
    let server = Server::http(|_| Reply::Text("should not be reached")).await;
    let port = server.port();
    let authority = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let groups: &[&[&str]] = &[
        &["GET", "http", &authority, "/admin"],
        &["DELETE", "http", &authority, "/v1/x"],
        &["GET", "http", "evil.example", "/v1/x"],
        &["GET", "http", "169.254.169.254", "/latest/meta-data/"],
        &["GET", "http", &authority, "/v1/../admin"],
        &["GET", "-", &authority, "/v1/x"],
        &["GET", "ftp", &authority, "/v1/x"],
    ];
    let (lines, records) = run(port, &dir.path().join("a.jsonl"), groups).await;
    assert_eq!(lines.len(), groups.len(), "{lines:?}");
    assert!(
        lines[..5]
            .iter()
            .all(|l| l == "err ErrorCode::HttpRequestDenied"),
        "{lines:?}"
    );
    assert!(
        lines[5].starts_with("err"),
        "a request without a scheme is refused: {lines:?}"
    );
    assert_eq!(lines[6], "err ErrorCode::HttpRequestDenied");
    let reasons: Vec<&str> = records
        .iter()
        .filter(|r| r["event"] == "request.denied")
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "path_not_allowed",
            "method_not_allowed",
            "no_authority",
            "no_authority",
            "non_canonical_path",
            "malformed_url",
            "unsupported_scheme"
        ]
    );
    let schemeless = records
        .iter()
        .find(|r| r["reason"] == "malformed_url")
        .unwrap();
    assert!(schemeless["detail"].as_str().unwrap().contains("no scheme"));
    assert_eq!(server.requests().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guests_request_options_tighten_the_timeouts() {
    let server = Server::http(|_| Reply::SlowHead(std::time::Duration::from_secs(3))).await;
    let port = server.port();
    let authority = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (lines, records) = run(
        port,
        &dir.path().join("a.jsonl"),
        &[&["GET", "http", &authority, "/v1/slow", "first-byte-ms=300"]],
    )
    .await;
    assert_eq!(
        lines,
        ["err ErrorCode::ConnectionReadTimeout"],
        "as wasmtime reports it"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the guest's 300 ms applied, not egress's 30 s"
    );
    let reasons: Vec<&str> = records
        .iter()
        .filter(|r| r["event"] == "request.denied")
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["timeout"]);
}

/// Refused inside wasmtime before any hook runs (SECURITY.md invariant 21 names it as not
/// audited): a request whose authority was never set. It must still be refused with a typed
/// error and reach no server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_an_authority_is_refused_and_sends_nothing() {
    let server = Server::http(|_| Reply::With(200, vec![], b"no".to_vec())).await;
    let dir = tempfile::tempdir().unwrap();
    let (lines, _) = run(
        server.port(),
        &dir.path().join("a.jsonl"),
        &[&["GET", "http", "-", "/v1/x"]],
    )
    .await;
    assert_eq!(lines, ["err ErrorCode::HttpRequestUriInvalid"]);
    assert_eq!(server.connections(), 0);
}

/// What a guest can read of a failure (`to-debug-string` of a body error) is a short line,
/// whatever the host's environment: with RUST_BACKTRACE=1 and RUST_LIB_BACKTRACE=1 set for
/// urlcap, no host backtrace, source path or Rust frame reaches the guest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_visible_errors_carry_no_host_internals() {
    use support::Step;
    let server = Server::http(|_| {
        Reply::Script(
            vec![],
            vec![
                Step::Data(100),
                Step::Wait(std::time::Duration::from_millis(300)),
                Step::Fail,
            ],
        )
    })
    .await;
    let port = server.port();
    let authority = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let args = support::whttp_run_args(
        port,
        &dir.path().join("a.jsonl"),
        &[&["GET", "http", &authority, "/v1/reset"]],
    );
    let envs = vec![
        ("RUST_BACKTRACE".to_string(), "1".to_string()),
        ("RUST_LIB_BACKTRACE".to_string(), "1".to_string()),
    ];
    let m = support::urlcap_measured_env(args, envs).await;
    let stdout = text(&m.output.stdout);
    assert!(m.output.status.success(), "{}", text(&m.output.stderr));
    let line = stdout.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("err body "),
        "the body read fails: {stdout}"
    );
    assert!(
        line.len() < 400,
        "a short line, not a backtrace: {} bytes",
        line.len()
    );
    for internal in [
        ".rs:",
        "backtrace",
        "stack backtrace",
        "src/",
        "::{{closure}}",
    ] {
        assert!(
            !stdout.contains(internal),
            "{internal:?} reached the guest: {stdout}"
        );
    }
}

/// As under `wasmtime run -S http`: `fields.append` refuses a forbidden header with
/// `header-error.forbidden`, a guest that tolerates the refusal goes on and gets its response
/// (sent without the header), and urlcap also audits each attempt (`forbidden_header`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_headers_are_refused_at_fields_and_audited() {
    let server = Server::http(|_| Reply::Text("fine")).await;
    let port = server.port();
    let authority = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "connection",
        "keep-alive",
        "Host",
        "proxy-authorization",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
        "te",
        "trailer",
        "proxy-anything",
    ];
    let headers: Vec<String> = names.iter().map(|n| format!("{n}:x")).collect();
    let groups: Vec<Vec<&str>> = headers
        .iter()
        .map(|h| vec!["GET", "http", authority.as_str(), "/v1/x", h.as_str()])
        .collect();
    let groups: Vec<&[&str]> = groups.iter().map(Vec::as_slice).collect();
    let (lines, records) = run(port, &dir.path().join("a.jsonl"), &groups).await;
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            lines[2 * i],
            format!("refused {name} HeaderError::Forbidden"),
            "{lines:?}"
        );
        assert_eq!(lines[2 * i + 1], "ok 200 fine", "{lines:?}");
    }
    assert_eq!(server.requests().len(), names.len());
    for r in server.requests() {
        assert!(
            r.header("upgrade").is_empty() && r.header("te").is_empty(),
            "{r:?}"
        );
        assert_eq!(
            r.header("host"),
            [authority.as_str()],
            "the granted host only"
        );
    }
    let refused: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["reason"] == "forbidden_header")
        .collect();
    assert_eq!(
        refused.len(),
        names.len(),
        "each attempt audited once: {records:?}"
    );
}

/// As under wasmtime, hop-by-hop response headers (`connection`, `transfer-encoding`) never
/// reach the guest, so a guest copying response headers into its next request is not denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_do_not_reach_the_guest() {
    use support::Step;
    let server = Server::http(|_| {
        Reply::Script(
            vec![("x-kept", "yes".into()), ("connection", "close".into())],
            vec![Step::Data(10)],
        )
    })
    .await;
    let port = server.port();
    let authority = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let (lines, _) = run(
        port,
        &dir.path().join("a.jsonl"),
        &[&["GET", "http", &authority, "/v1/x", "show-headers"]],
    )
    .await;
    let names = lines[0]
        .strip_prefix("headers ")
        .unwrap_or_else(|| panic!("{lines:?}"));
    let names: Vec<&str> = names.split(',').collect();
    assert!(names.contains(&"x-kept"), "{names:?}");
    for hop in ["connection", "transfer-encoding", "keep-alive"] {
        assert!(!names.contains(&hop), "{hop} reached the guest: {names:?}");
    }
    assert_eq!(lines[1], "ok 200 xxxxxxxxxx");
}

/// Refusals at `fields` cost the guest nothing, so they cannot cost the audit log without
/// bound: the first 64 are recorded one by one, the rest counted in one record when the sandbox
/// ends — none lost (second hostile review).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_at_fields_are_recorded_then_counted() {
    let server = Server::http(|_| Reply::Text("fine")).await;
    let port = server.port();
    let authority = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let one: Vec<&str> = vec!["GET", "http", &authority, "/v1/x", "connection:x"];
    let groups: Vec<&[&str]> = (0..100).map(|_| one.as_slice()).collect();
    let (lines, records) = run(port, &dir.path().join("a.jsonl"), &groups).await;
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("refused connection"))
            .count(),
        100
    );
    let refused: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["reason"] == "forbidden_header")
        .collect();
    assert_eq!(refused.len(), 65, "64 one by one, then one count");
    assert!(
        refused[64]["detail"]
            .as_str()
            .unwrap()
            .starts_with("36 more attempts"),
        "{}",
        refused[64]
    );
}
