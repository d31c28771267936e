//! Learn mode end to end (`urlcap run --learn`): a run of the probe guest through both guest
//! APIs writes a manifest; the same guest under that manifest sees no denial, and a request
//! outside what was seen is denied. What is never allowed stays refused while learning, IP
//! rules still apply, and no secret reaches the learned manifest. Servers are on 127.0.0.1.

use crate::support;

use std::path::Path;
use support::{text, Reply, Server};

/// Run the `urlcap` binary with `args` and these environment variables.
async fn urlcap(args: Vec<String>, env: Vec<(&'static str, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_urlcap"))
            .args(args)
            .env_remove("TOKEN")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn read_records(audit: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events<'a>(records: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["event"] == event).collect()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The given manifest: `api` on the first server (a variable for its address), `/v1/items`,
/// GET only, with a token the host injects.
const GIVEN: &str = "version = 1\n\n# The API, read-only.\n[[authority]]\nname = \"api\"\norigin = \"http://${API_HOST}\"\npaths = [\"/v1/items\"]\nmethods = [\"GET\"]\n[authority.headers]\nauthorization = { env = \"TOKEN\", prefix = \"Bearer \" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_manifest_replays_without_denials_and_denies_what_was_not_seen() {
    let api = Server::http(|_| Reply::Text("api")).await;
    let other = Server::http(|_| Reply::Text("other")).await;
    let dir = tempfile::tempdir().unwrap();
    let given = dir.path().join("given.toml");
    std::fs::write(&given, GIVEN).unwrap();
    let out = dir.path().join("learned.toml");
    let probe = env!("URLCAP_GUEST_PROBE");
    let o = format!("http://127.0.0.1:{}", other.port());
    let host_var = format!("API_HOST=127.0.0.1:{}", api.port());
    // What the guest needs: native fetches past api's paths and methods, and wasi:http
    // requests to another origin (four siblings under /data/a/, one PUT).
    let needed: Vec<String> = [
        vec!["fetch", "api", "GET", "/v1/items"],
        vec!["fetch", "api", "GET", "/v1/users/7?page=2"],
        vec!["fetch", "api", "POST", "/v1/items"],
        vec!["http", "GET", &format!("{o}/data/a/1")],
        vec!["http", "GET", &format!("{o}/data/a/2")],
        vec!["http", "GET", &format!("{o}/data/a/3")],
        vec!["http", "GET", &format!("{o}/data/a/4?token=query-s3cret")],
        vec!["http", "PUT", &format!("{o}/upload")],
    ]
    .concat()
    .into_iter()
    .map(String::from)
    .collect();
    // What stays refused while learning: the guest setting the header the host injects (with
    // its own secret), CONNECT, a path that is not canonical, an address the IP rules deny.
    let never = args(&[
        "header",
        "api",
        "/v2/x",
        "authorization",
        "guest-s3cret",
        "http",
        "CONNECT",
        &format!("{o}/tunnel"),
        "http",
        "GET",
        &format!("{o}/a/../admin"),
        "http",
        "GET",
        &format!("http://127.0.0.2:{}/x", other.port()),
    ]);
    let audit = dir.path().join("learn.jsonl");
    let mut run = args(&[
        "run",
        "--learn",
        out.to_str().unwrap(),
        "--manifest",
        given.to_str().unwrap(),
        "--var",
        &host_var,
        "--allow-ip",
        "127.0.0.1",
        "--audit",
        audit.to_str().unwrap(),
        probe,
        "--",
    ]);
    run.extend(needed.iter().cloned());
    run.extend(never.iter().cloned());
    let token = || vec![("TOKEN", "tok-s3cret".to_string())];
    let learned = urlcap(run, token()).await;
    let stdout = text(&learned.stdout);
    let stderr = text(&learned.stderr);
    assert_eq!(learned.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("WARNING") && l.contains("unrestricted egress"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        !stderr.contains("urlcap: warning"),
        "the written manifest allows all it learned: {stderr}"
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        lines[..8].iter().all(|l| l.starts_with("ok 200")),
        "{stdout}"
    );
    // Its path could have been learned, but not the header: it stays denied as it would be.
    assert!(lines[8].starts_with("err path_not_allowed"), "{stdout}");
    assert!(lines[9..].iter().all(|l| l.starts_with("err ")), "{stdout}");
    let records = read_records(&audit);
    let learned_records = events(&records, "request.learned");
    assert_eq!(learned_records.len(), 7, "{records:#?}");
    assert_eq!(learned_records[0]["reason"], "path_not_allowed");
    assert_eq!(learned_records[1]["reason"], "method_not_allowed");
    assert_eq!(learned_records[2]["reason"], "no_authority");
    let denied: Vec<&str> = events(&records, "request.denied")
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        denied,
        [
            "path_not_allowed",
            "invalid_method",
            "non_canonical_path",
            "no_authority"
        ],
        "{records:#?}"
    );
    let at_other: Vec<String> = other.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        at_other.len(),
        5,
        "nothing refused reached the origin: {at_other:?}"
    );
    assert!(api
        .requests()
        .iter()
        .all(|r| r.header("authorization") == ["Bearer tok-s3cret"]));

    // The learned manifest: the given one as written, widened, plus the new origin.
    let manifest = std::fs::read_to_string(&out).unwrap();
    for secret in [
        "tok-s3cret",
        "guest-s3cret",
        "query-s3cret",
        "127.0.0.2",
        "CONNECT",
        "tunnel",
        "admin",
    ] {
        assert!(!manifest.contains(secret), "{secret} in\n{manifest}");
    }
    for kept in [
        "# The API, read-only.",
        "origin = \"http://${API_HOST}\"",
        "authorization = { env = \"TOKEN\", prefix = \"Bearer \" }",
        "paths = [\"/v1/items\", \"/v1/users/7\"]",
        "methods = [\"GET\", \"POST\"]",
        "# urlcap run --learn: covers 3 requests of the run (2 of them learned: widened below)",
        &format!("origin = \"http://127.0.0.1:{}\"", other.port()),
        "paths = [\"/data/a/\", \"/upload\"]",
        "methods = [\"GET\", \"PUT\"]",
        "# urlcap run --learn: learned from 5 requests no grant allowed",
        "allow_ips = [\"127.0.0.1/32\"]",
    ] {
        assert!(manifest.contains(kept), "{kept:?} not in\n{manifest}");
    }

    // The same guest under the learned manifest alone: no denial, and all of it arrives.
    let (api_before, other_before) = (api.requests().len(), other.requests().len());
    let audit2 = dir.path().join("replay.jsonl");
    let mut replay = args(&[
        "run",
        "--manifest",
        out.to_str().unwrap(),
        "--var",
        &host_var,
        "--audit",
        audit2.to_str().unwrap(),
        probe,
        "--",
    ]);
    replay.extend(needed.iter().cloned());
    let replayed = urlcap(replay, token()).await;
    assert_eq!(
        replayed.status.code(),
        Some(0),
        "{}",
        text(&replayed.stderr)
    );
    let records2 = read_records(&audit2);
    assert!(
        events(&records2, "request.denied").is_empty()
            && events(&records2, "request.learned").is_empty(),
        "{records2:#?}"
    );
    assert!(text(&replayed.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .all(|l| l.starts_with("ok 200")));
    assert_eq!(api.requests().len() - api_before, 3);
    assert_eq!(other.requests().len() - other_before, 5);

    // Outside what was seen: another method, a sibling directory, another path of api.
    let audit3 = dir.path().join("outside.jsonl");
    let outside = args(&[
        "run",
        "--manifest",
        out.to_str().unwrap(),
        "--var",
        &host_var,
        "--audit",
        audit3.to_str().unwrap(),
        probe,
        "--",
        "http",
        "DELETE",
        &format!("{o}/upload"),
        "http",
        "GET",
        &format!("{o}/data/b/1"),
        "fetch",
        "api",
        "GET",
        "/v1/users/8",
    ]);
    let denied = urlcap(outside, token()).await;
    assert_eq!(denied.status.code(), Some(0), "{}", text(&denied.stderr));
    let reasons: Vec<String> = events(&read_records(&audit3), "request.denied")
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        ["method_not_allowed", "path_not_allowed", "path_not_allowed"]
    );
    assert_eq!(api.requests().len() - api_before, 3, "nothing new arrived");
    assert_eq!(
        other.requests().len() - other_before,
        5,
        "nothing new arrived"
    );
}

/// A name that resolves into a denied range is refused while learning (egress vets it after
/// DNS, as always), sends nothing, and is not learned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learn_mode_still_applies_the_ip_rules() {
    let server = Server::http(|_| Reply::Text("reached")).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("learned.toml");
    let audit = dir.path().join("audit.jsonl");
    let ran = urlcap(
        args(&[
            "run",
            "--learn",
            out.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
            env!("URLCAP_GUEST_PROBE"),
            "--",
            "http",
            "GET",
            &format!("http://localhost:{}/x", server.port()),
        ]),
        vec![],
    )
    .await;
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    assert!(
        text(&ran.stdout).starts_with("err "),
        "{}",
        text(&ran.stdout)
    );
    let records = read_records(&audit);
    let denied = events(&records, "request.denied");
    assert_eq!(denied.len(), 1, "{records:#?}");
    assert_eq!(denied[0]["reason"], "ip_denied");
    assert!(events(&records, "request.learned").is_empty());
    assert!(server.requests().is_empty());
    let manifest = std::fs::read_to_string(&out).unwrap();
    assert!(
        !manifest.contains("localhost") && !manifest.contains("[[authority]]"),
        "{manifest}"
    );
}

/// Learn mode refuses to overwrite the manifest it was given, before running anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learn_mode_never_writes_over_the_given_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let given = dir.path().join("given.toml");
    std::fs::write(&given, "version = 1\n").unwrap();
    let g = given.to_str().unwrap();
    let ran = urlcap(
        args(&[
            "run",
            "--learn",
            g,
            "--manifest",
            g,
            env!("URLCAP_GUEST_PROBE"),
        ]),
        vec![],
    )
    .await;
    assert_eq!(ran.status.code(), Some(2));
    assert!(
        text(&ran.stderr).contains("that is the manifest given"),
        "{}",
        text(&ran.stderr)
    );
    assert_eq!(std::fs::read_to_string(&given).unwrap(), "version = 1\n");
}
