//! Nested sandboxes: a guest (the probe, acting as a plugin host) runs a child component with
//! attenuated handles. The child cannot reach the parent's other handles, widen what it got,
//! outlive revocation, exceed budgets, or take more memory or time than the parent has left.

mod support;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use support::{outbound, Reply, Server, SharedBuf};
use urlcap::egress::{EgressConfig, StaticResolver};
use urlcap::host::{Outcome, SandboxSpec, SandboxState, Stdio, WasmHost};
use urlcap::outbound::Outbound;
use wasmtime_wasi::p2::bindings::CommandPre;

const PROBE: &str = env!("URLCAP_GUEST_PROBE");

fn host(max_depth: u32) -> &'static (WasmHost, CommandPre<SandboxState>) {
    static DEEP: OnceLock<(WasmHost, CommandPre<SandboxState>)> = OnceLock::new();
    static SHALLOW: OnceLock<(WasmHost, CommandPre<SandboxState>)> = OnceLock::new();
    let cell = if max_depth == 1 { &SHALLOW } else { &DEEP };
    cell.get_or_init(|| {
        let host = WasmHost::with_max_depth(max_depth).unwrap();
        let command = host.command_for(&std::fs::read(PROBE).unwrap()).unwrap();
        (host, command)
    })
}

struct Ran {
    outcome: Outcome,
    lines: Vec<String>,
    audit: SharedBuf,
}

fn manifest(port: u16, extra: &str) -> String {
    format!(
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://127.0.0.1:{port}\"\npaths = [\"/v1/\"]\nmethods = [\"GET\", \"POST\"]\nallow_ips = [\"127.0.0.1/32\"]\n{extra}\n\
         [[authority]]\nname = \"other\"\norigin = \"http://127.0.0.1:{port}\"\npaths = [\"/other/\"]\nallow_ips = [\"127.0.0.1/32\"]\n"
    )
}

fn setup(manifest: &str) -> (Arc<Outbound>, SharedBuf) {
    let (out, audit) = outbound(
        manifest,
        Arc::new(StaticResolver::new()),
        EgressConfig::default(),
    );
    (Arc::new(out), audit)
}

/// Run the probe as the parent, with the guests' directory granted as /guests.
async fn run(
    out: Arc<Outbound>,
    audit: SharedBuf,
    steps: &[&str],
    memory: Option<u64>,
    timeout: Option<Duration>,
    max_depth: u32,
) -> Ran {
    let (host, command) = host(max_depth);
    let dir = Path::new(PROBE).parent().unwrap().display().to_string();
    let stdio = Stdio::capture(1 << 20);
    let spec = SandboxSpec {
        args: std::iter::once("probe")
            .chain(steps.iter().copied())
            .map(String::from)
            .collect(),
        dirs: vec![(dir, "/guests".into())],
        memory,
        timeout,
        stdio: stdio.clone(),
        ..SandboxSpec::new(out, "parent")
    };
    let outcome = host.run(command, spec).await.unwrap();
    Ran {
        outcome,
        lines: stdio.contents().0.lines().map(String::from).collect(),
        audit,
    }
}

async fn origin() -> Server {
    Server::http(|r| Reply::With(200, vec![], format!("hi {}", r.target).into_bytes())).await
}

fn child(args: &[&str]) -> Vec<String> {
    let mut v = vec![args.len().to_string(), "probe".to_string()];
    v[0] = (args.len() + 1).to_string();
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_gets_only_the_read_only_handle_it_was_given() {
    let server = origin().await;
    let (out, audit) = setup(&manifest(server.port(), ""));
    let kid = child(&[
        "list",
        "fetch",
        "api",
        "GET",
        "/v1/public/a",
        "fetch",
        "api",
        "POST",
        "/v1/public/a",
        "fetch",
        "api",
        "GET",
        "/v1/private",
        "derive",
        "w",
        "api",
        "paths=/v1/",
    ]);
    let mut steps = vec![
        "derive",
        "ro",
        "api",
        "paths=/v1/public/",
        "methods=GET",
        "spawn",
        "/guests/probe.wasm",
        "ro:api",
    ];
    steps.extend(kid.iter().map(String::as_str));
    steps.extend(["fetch", "api", "POST", "/v1/private"]);
    let ran = run(out, audit, &steps, None, None, 3).await;
    assert_eq!(
        ran.outcome.exit_code, 0,
        "{:?} {:?}",
        ran.outcome, ran.lines
    );
    let l = &ran.lines;
    assert!(l[0].starts_with("derived ro api/1"), "{l:?}");
    assert_eq!(l[1], "spawned 0 ");
    assert_eq!(
        l[2],
        format!("| api http://127.0.0.1:{}", server.port()),
        "the child sees one handle, not `other`"
    );
    assert_eq!(l[3], "| ok 200 hi /v1/public/a");
    assert!(l[4].starts_with("| err method_not_allowed"), "{l:?}");
    assert!(l[5].starts_with("| err path_not_allowed"), "{l:?}");
    assert!(l[6].starts_with("| err attenuation_widens"), "{l:?}");
    assert_eq!(
        l[7], "ok 200 hi /v1/private",
        "the parent keeps what it had"
    );
    let records = ran.audit.records();
    let spawned = records
        .iter()
        .find(|r| r["event"] == "sandbox.spawned")
        .unwrap();
    assert_eq!(spawned["sandbox"], "parent/1");
    assert!(
        spawned["detail"].as_str().unwrap().contains("api=api/1/2"),
        "{spawned}"
    );
    let denied: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["event"] == "request.denied")
        .map(|r| {
            (
                r["sandbox"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        denied,
        [
            ("parent/1", "method_not_allowed"),
            ("parent/1", "path_not_allowed")
        ],
        "each child denial audited once, as the child"
    );
    assert!(records
        .iter()
        .any(|r| r["event"] == "sandbox.exited" && r["detail"] == "exit status 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cannot_outlive_revocation() {
    let server = origin().await;
    let (out, audit) = setup(&manifest(server.port(), ""));
    let server = Arc::new(server);
    let revoker = {
        let (out, server) = (out.clone(), server.clone());
        // Revoke the root as soon as the child's first request has arrived (while it sleeps).
        tokio::spawn(async move {
            while server.requests().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            out.policy().get("api").unwrap().revoke();
        })
    };
    let kid = child(&[
        "fetch", "api", "GET", "/v1/a", "sleep", "1200", "fetch", "api", "GET", "/v1/b",
    ]);
    let mut steps = vec!["spawn", "/guests/probe.wasm", "api:api"];
    steps.extend(kid.iter().map(String::as_str));
    let ran = run(out, audit, &steps, None, None, 3).await;
    revoker.await.unwrap();
    assert!(ran.lines.len() >= 4, "{:?} {:?}", ran.outcome, ran.lines);
    assert_eq!(ran.lines[1], "| ok 200 hi /v1/a", "{:?}", ran.lines);
    assert!(ran.lines[3].starts_with("| err revoked"), "{:?}", ran.lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_childs_requests_count_against_the_parents_budget() {
    let server = origin().await;
    let (out, audit) = setup(&manifest(server.port(), "max_requests = 2"));
    let kid = child(&[
        "fetch", "api", "GET", "/v1/a", "fetch", "api", "GET", "/v1/b",
    ]);
    let mut steps = vec![
        "fetch",
        "api",
        "GET",
        "/v1/p",
        "spawn",
        "/guests/probe.wasm",
        "api:api",
    ];
    steps.extend(kid.iter().map(String::as_str));
    steps.extend(["fetch", "api", "GET", "/v1/q"]);
    let ran = run(out, audit, &steps, None, None, 3).await;
    assert_eq!(ran.lines[0], "ok 200 hi /v1/p");
    assert_eq!(ran.lines[2], "| ok 200 hi /v1/a");
    assert!(
        ran.lines[3].starts_with("| err budget_exhausted"),
        "{:?}",
        ran.lines
    );
    assert!(
        ran.lines[4].starts_with("err budget_exhausted"),
        "the child spent the parent's budget: {:?}",
        ran.lines
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cannot_exhaust_the_parents_memory_or_time() {
    let (out, audit) = setup(&manifest(9, ""));
    let kid = child(&["membomb"]);
    let mut steps = vec!["spawn", "/guests/probe.wasm", "-"];
    steps.extend(kid.iter().map(String::as_str));
    steps.extend(["list"]);
    let ran = run(out, audit.clone(), &steps, Some(48 << 20), None, 3).await;
    assert_eq!(
        ran.outcome.exit_code, 0,
        "the parent survives: {:?}",
        ran.lines
    );
    assert!(
        ran.lines[0].starts_with("spawned 134 guest stopped: memory limit of"),
        "{:?}",
        ran.lines
    );
    let limit: f64 = ran.lines[0]
        .split("memory limit of ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        limit < 48.0,
        "the child got only what the parent had left ({limit} MiB)"
    );

    let (out, audit) = setup(&manifest(9, ""));
    let kid = child(&["loop"]);
    let mut steps = vec!["spawn", "/guests/probe.wasm", "-"];
    steps.extend(kid.iter().map(String::as_str));
    let started = Instant::now();
    let ran = run(
        out,
        audit,
        &steps,
        None,
        Some(Duration::from_millis(800)),
        3,
    )
    .await;
    assert_eq!(ran.outcome.exit_code, 124, "{:?}", ran.outcome);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the child could not extend the parent's deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_depth_and_bad_components_are_refused() {
    let (out, audit) = setup(&manifest(9, ""));
    let grandchild = child(&["list"]);
    let mut kid_args = vec!["spawn", "/guests/probe.wasm", "-"];
    kid_args.extend(grandchild.iter().map(String::as_str));
    let kid = child(&kid_args);
    let mut steps = vec!["spawn", "/guests/probe.wasm", "-"];
    steps.extend(kid.iter().map(String::as_str));
    steps.extend(["spawn", "/guests/probe.d", "-", "1", "x"]);
    let ran = run(out, audit, &steps, None, None, 1).await;
    assert_eq!(ran.lines[0], "spawned 0 ");
    assert!(
        ran.lines[1].starts_with("| err nesting_limit"),
        "{:?}",
        ran.lines
    );
    assert!(
        ran.lines[2].starts_with("err invalid_component"),
        "{:?}",
        ran.lines
    );
}
