//! A wasi:http guest from another toolchain — JavaScript calling fetch(), componentized by
//! componentize-js (fixtures/jsguest, built by ./scripts/test) — runs unchanged under the same
//! policy. StarlingMonkey turns every wasi:http error into one generic TypeError, so the guest
//! cannot tell why it was refused; the audit log can. Without the toolchain this test fails;
//! it never skips.

use crate::support;

use support::{text, urlcap_bin, Reply, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_fetch_guest_runs_under_the_same_policy() {
    let guest = support::sdk::built(
        "URLCAP_JSGUEST",
        "fixtures/jsguest with componentize-js (npm)",
    );
    let server =
        Server::http(|r| Reply::With(200, vec![], format!("hi {}", r.target).into_bytes())).await;
    let origin = format!("http://127.0.0.1:{}", server.port());
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let grant = format!("api=GET {origin}/v1/");
    let urls = [
        format!("{origin}/v1/items"),
        format!("{origin}/admin"),
        "http://evil.example/".to_string(),
    ];
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let args = support::run_args(&grant, &audit, &guest, &urls);
    let o = urlcap_bin(args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let lines: Vec<String> = text(&o.stdout).lines().map(String::from).collect();
    let refused = "err TypeError NetworkError when attempting to fetch resource";
    assert_eq!(lines, ["ok 200 hi /v1/items", refused, refused]);
    let denied: Vec<(String, String)> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "request.denied")
        .map(|r| {
            (
                r["reason"].as_str().unwrap().to_string(),
                r["url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        denied,
        [
            ("path_not_allowed".to_string(), format!("{origin}/admin")),
            (
                "no_authority".to_string(),
                "http://evil.example/".to_string()
            ),
        ]
    );
    let reached: Vec<String> = server.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(reached, ["/v1/items"]);
}
