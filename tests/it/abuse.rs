//! A guest abusing the host on purpose: floods of headers, bursts of concurrent requests, huge
//! URLs, and strings built to corrupt the audit log or a terminal. Each is bounded, refused with
//! its reason, audited once and escaped, and the host goes on. (Infinite loops and memory bombs:
//! `tests/host.rs`.)

use crate::support;

use std::sync::Arc;
use support::{outbound, run_probe, text, Reply, Server, SharedBuf};
use urlcap::egress::{EgressConfig, StaticResolver};

fn manifest(port: u16) -> String {
    format!(
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://api.test:{port}\"\npaths = [\"/v1/\"]\nallow_ips = [\"127.0.0.1/32\"]\n"
    )
}

fn native(port: u16) -> (Arc<urlcap::outbound::Outbound>, SharedBuf) {
    let resolver = Arc::new(StaticResolver::new());
    resolver.set("api.test", &["127.0.0.1".parse().unwrap()]);
    let (out, audit) = outbound(&manifest(port), resolver, EgressConfig::default());
    (Arc::new(out), audit)
}

/// Every audit line is one JSON object, with no raw control byte or escape sequence in it.
fn assert_clean_audit(raw: &str) -> Vec<serde_json::Value> {
    raw.lines()
        .map(|line| {
            assert!(
                !line.bytes().any(|b| b < 0x20 || b == 0x7f),
                "raw control byte in audit line {line:?}"
            );
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
        })
        .collect()
}

fn reasons(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| r["reason"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_guests_cannot_flood_headers_or_urls_or_forge_audit_lines() {
    let server =
        Server::http(|r| Reply::With(200, vec![], format!("ok {}", r.target).into_bytes())).await;
    let (out, audit) = native(server.port());
    let huge_path = format!("/v1/{}", "a".repeat(1 << 20));
    let steps = [
        "headers",
        "50000",
        "api",
        "/v1/x",
        "headers",
        "90",
        "api",
        "/v1/within-bound",
        "fetch",
        "api",
        "GET",
        &huge_path,
        "fetch",
        "api",
        "GET",
        "/v1/\u{1b}[31mred\r\nX-Injected: 1",
        "header",
        "api",
        "/v1/x",
        "X-\r\nForged",
        "v",
        "header",
        "api",
        "/v1/x",
        "X-Ok",
        "\u{1b}]0;owned\u{7}",
        "fetch",
        "api",
        "GE\u{1b}[2JT",
        "/v1/x",
        "derive",
        "d",
        "api",
        "paths=/v1/\u{1b}[0m\n{\"event\":\"forged\"}",
        "fetch",
        "api",
        "GET",
        "/v1/still-alive",
    ];
    let (outcome, lines, _) = run_probe(out, "abuser", &steps, None, None).await;
    assert_eq!(outcome.exit_code, 0, "{outcome:?} {lines:?}");
    let got: Vec<&str> = lines
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        got,
        [
            "headers_too_large",
            "200",
            "malformed_url",
            "control_character",
            "invalid_header",
            "invalid_header",
            "invalid_method",
            "invalid_attenuation",
            "200"
        ],
        "{lines:?}"
    );
    let with_90 = server.requests();
    assert_eq!(with_90[0].target, "/v1/within-bound");
    assert_eq!(
        with_90[0]
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-h-"))
            .count(),
        90
    );

    let raw = audit.text();
    let records = assert_clean_audit(&raw);
    assert_eq!(
        reasons(&records),
        [
            "headers_too_large",
            "malformed_url",
            "control_character",
            "invalid_header",
            "invalid_header",
            "invalid_method",
            "invalid_attenuation"
        ]
    );
    assert!(records.iter().all(|r| r["event"] != "forged"));
    // The 1 MiB URL is cut in the record; every record stays small.
    assert!(
        raw.lines().all(|l| l.len() < 4096),
        "an audit line over 4 KiB"
    );
    let huge = &records[1];
    assert!(
        huge["url"].as_str().unwrap().len() <= 2100,
        "{}",
        huge["url"]
    );
    // The escape sequences are still visible to whoever reads the log, as escapes.
    assert!(raw.contains("\\u001b[31mred\\r\\n"), "{raw}");
}

/// Run the wasi:http guest under `urlcap run` with `api` granted on `/v1/`: its exit status,
/// stdout lines, stderr and denial records.
async fn urlcap_whttp(
    port: u16,
    audit: &std::path::Path,
    groups: &[&[&str]],
) -> (Option<i32>, Vec<String>, String, Vec<serde_json::Value>) {
    let o = support::urlcap_bin(support::whttp_run_args(port, audit, groups)).await;
    let raw = std::fs::read_to_string(audit).unwrap_or_default();
    let records = assert_clean_audit(&raw)
        .into_iter()
        .filter(|r| r["event"] == "request.denied")
        .collect();
    let lines = text(&o.stdout).lines().map(String::from).collect();
    (o.status.code(), lines, text(&o.stderr), records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_guests_cannot_flood_headers_or_urls() {
    let server = Server::http(|_| Reply::Text("fine")).await;
    let port = server.port();
    let authority = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let long_path = format!("/v1/{}", "a".repeat(60 * 1024));
    // The field size limit (64 KiB in all, set by urlcap on wasmtime's) stops a guest adding
    // 50,000 headers: wasmtime traps the guest, long before a request exists.
    let flood: &[&[&str]] = &[&["GET", "http", &authority, "/v1/x", "headers=50000"]];
    let (status, lines, stderr, records) =
        urlcap_whttp(port, &dir.path().join("flood.jsonl"), flood).await;
    assert_eq!(status, Some(134), "{lines:?} {stderr}");
    assert!(
        stderr.contains("total size of fields exceeds limit"),
        "{stderr}"
    );
    assert!(records.is_empty());

    let groups: &[&[&str]] = &[
        // Under wasmtime's limit, over urlcap's 100.
        &["GET", "http", &authority, "/v1/x", "headers=150"],
        &["GET", "http", &authority, &long_path],
        &["GET", "http", &authority, "/v1/still-alive"],
    ];
    let (status, lines, stderr, records) =
        urlcap_whttp(port, &dir.path().join("a.jsonl"), groups).await;
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(lines[0], "err ErrorCode::HttpRequestDenied");
    assert_eq!(lines[1], "err ErrorCode::HttpRequestDenied");
    assert_eq!(lines[2], "ok 200 fine");
    assert_eq!(reasons(&records), ["headers_too_large", "malformed_url"]);
    assert!(records[1]["url"].as_str().unwrap().len() <= 2100);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_requests_are_bounded_and_each_denial_audited() {
    let server = Server::http(|_| Reply::Text("fine")).await;
    let port = server.port();
    let authority = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let groups: &[&[&str]] = &[
        &["burst", "10000", "http", &authority, "/v1/x"],
        &["GET", "http", &authority, "/v1/after"],
    ];
    let (status, lines, stderr, records) =
        urlcap_whttp(port, &dir.path().join("a.jsonl"), groups).await;
    assert_eq!(status, Some(0), "{stderr}");
    let counts: Vec<usize> = lines[0]
        .strip_prefix("burst ")
        .unwrap_or_else(|| panic!("{lines:?}"))
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    let (ok, denied, other) = (counts[0], counts[1], counts[2]);
    // The host's in-flight limit (64 per sandbox) holds: the rest are refused at once.
    assert_eq!(ok + denied, 10_000, "{lines:?}");
    assert_eq!(other, 0);
    assert!(ok >= 1 && denied >= 1, "{lines:?}");
    assert_eq!(lines[1], "ok 200 fine");
    // Every refusal is the in-flight limit, audited once; every success reached the server.
    assert_eq!(records.len(), denied);
    assert!(reasons(&records).iter().all(|r| r == "concurrency_limit"));
    assert_eq!(server.requests().len(), ok + 1);
}
