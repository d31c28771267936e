//! The audit log under load: 100,000 denials from eight guests running at once, written to one
//! file. Every denial leaves exactly one well-formed line (none lost, none torn or interleaved),
//! and the secret the host injects into allowed requests appears in no output at all.

use crate::support;

use std::path::Path;
use std::sync::Arc;
use support::{run_probe, Reply, Server};
use urlcap::audit::AuditLog;
use urlcap::egress::{Client, EgressConfig, StaticResolver};
use urlcap::manifest::{Config, ProcessSecrets};
use urlcap::outbound::Outbound;
use urlcap::policy::SystemClock;

const GUESTS: usize = 8;
const DENIALS_PER_GUEST: usize = 12_500;
const SECRET: &str = "Bearer LOAD-TEST-SECRET-91c2e7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_concurrent_denials_leave_a_hundred_thousand_clean_lines() {
    let server = Server::http(|_| Reply::Text("fine")).await;
    let port = server.port();
    let manifest = format!(
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://api.test:{port}\"\npaths = [\"/v1/\"]\nallow_ips = [\"127.0.0.1/32\"]\n\
         [authority.headers]\nauthorization = {{ value = {SECRET:?} }}\n"
    );
    let config = Config::parse(&manifest, Path::new("load.toml"), &ProcessSecrets).unwrap();
    let policy = Arc::new(config.policy(Arc::new(SystemClock::new())));
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let audit = Arc::new(AuditLog::to_file(&audit_path).unwrap());
    let resolver = Arc::new(StaticResolver::new());
    resolver.set("api.test", &["127.0.0.1".parse().unwrap()]);
    let client = Client::new(EgressConfig::default(), resolver);

    let count = DENIALS_PER_GUEST.to_string();
    let guests: Vec<_> = (0..GUESTS)
        .map(|g| {
            let out = Arc::new(Outbound::new(
                policy.preopens(),
                client.clone(),
                audit.clone(),
                "unused",
            ));
            let count = count.clone();
            tokio::spawn(async move {
                let id = format!("guest-{g}");
                let steps = [
                    "fetch",
                    "api",
                    "GET",
                    "/v1/allowed",
                    "deny",
                    &count,
                    "api",
                    "/admin",
                    "fetch",
                    "api",
                    "GET",
                    "/v1/allowed",
                ];
                let (outcome, lines, stderr) = run_probe(out, &id, &steps, None, None).await;
                (outcome, lines, stderr)
            })
        })
        .collect();
    let mut guest_output = String::new();
    for guest in guests {
        let (outcome, lines, stderr) = guest.await.unwrap();
        assert_eq!(outcome.exit_code, 0, "{outcome:?} {stderr}");
        assert_eq!(
            lines,
            [
                "ok 200 fine".to_string(),
                format!("denied {DENIALS_PER_GUEST} path_not_allowed"),
                "ok 200 fine".to_string()
            ]
        );
        guest_output.push_str(&lines.join("\n"));
        guest_output.push_str(&stderr);
    }
    drop(audit);

    let raw = std::fs::read_to_string(&audit_path).unwrap();
    let mut per_guest = [0usize; GUESTS];
    for line in raw.lines() {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("torn line {line:?}: {e}"));
        assert_eq!(record["event"], "request.denied", "{line}");
        assert_eq!(record["reason"], "path_not_allowed", "{line}");
        let guest: usize = record["sandbox"].as_str().unwrap()["guest-".len()..]
            .parse()
            .unwrap();
        per_guest[guest] += 1;
    }
    assert_eq!(raw.lines().count(), GUESTS * DENIALS_PER_GUEST);
    assert_eq!(per_guest, [DENIALS_PER_GUEST; GUESTS]);

    // The secret went on the wire for each allowed request, and nowhere else.
    let seen = server.requests();
    assert_eq!(seen.len(), 2 * GUESTS);
    assert!(seen.iter().all(|r| r.header("authorization") == [SECRET]));
    assert!(
        !raw.contains("LOAD-TEST-SECRET"),
        "the audit log holds the secret"
    );
    assert!(
        !guest_output.contains("LOAD-TEST-SECRET"),
        "a guest saw the secret"
    );
}
