//! A wasi:http guest from another toolchain — Python, componentized by componentize-py
//! (fixtures/pyguest, built by ./scripts/test) — runs unchanged under the same policy.
//! Without the toolchain this test fails; it never skips.

use crate::support;

use support::{text, urlcap_bin, Reply, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_wasi_http_guest_runs_under_the_same_policy() {
    let guest = std::env::var("URLCAP_PYGUEST").unwrap_or_else(|_| {
        panic!("URLCAP_PYGUEST is not set: run ./scripts/test, which builds fixtures/pyguest with componentize-py (pip)")
    });
    assert!(
        std::path::Path::new(&guest).exists(),
        "{guest} was not built"
    );
    let server =
        Server::http(|r| Reply::With(200, vec![], format!("hi {}", r.target).into_bytes())).await;
    let authority = format!("127.0.0.1:{}", server.port());
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let grant = format!("api=GET http://{authority}/v1/");
    let guest_args = [
        "http",
        &authority,
        "/v1/items",
        "http",
        &authority,
        "/admin",
        "http",
        "evil.example",
        "/",
    ];
    let args = support::run_args(&grant, &audit, &guest, &guest_args);
    let o = urlcap_bin(args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let lines: Vec<String> = text(&o.stdout).lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "ok 200 hi /v1/items",
            "err ErrorCode_HttpRequestDenied",
            "err ErrorCode_HttpRequestDenied"
        ]
    );
    let reasons: Vec<String> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "request.denied")
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, ["path_not_allowed", "no_authority"]);
    assert_eq!(server.requests().len(), 1);
}
