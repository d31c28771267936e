//! Confinement: a sandbox reaches exactly what its own handles allow, through both guest APIs
//! (`urlcap:http` fetches on a handle, `wasi:http` requests matched by their URL), at the top
//! level, in a child and in a grandchild.
//!
//! The matrix is {urlcap:http, wasi:http} × {top, child, grandchild} × {no handle, other host,
//! other path, other method, budget spent, rate exceeded, revoked before spawn, revoked while
//! running, expired, injected secret}. Every cell asserts what reached a recording loopback
//! origin (method, path, the injected header), the one audit record of the denial (its event,
//! the sandbox id of the sandbox that asked, the reason, the lineage of the handle), and what
//! the guest printed. The probe guest imports both APIs, so the same component plays every
//! depth; its `http` step is a plain `wasi:http` request.
//!
//! At the top level a restriction lives in the root grant (the manifest); below it, the
//! immediate parent derives the restricted handle and passes it down while itself holding a
//! wide root with a secret, so a child that reached past its handle would show at the origin.
//! Roots never expire, and a top-level `wasi:http` request can only match a preopened root, so
//! the one cell with no meaning (wasi:http × top × expired) is named and skipped.

use crate::support;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use support::{Reply, Server, SharedBuf};
use tokio::sync::Semaphore;
use urlcap::audit::AuditLog;
use urlcap::egress::{Client, EgressConfig, StaticResolver};
use urlcap::host::{Outcome, SandboxSpec, SandboxState, Stdio, WasmHost};
use urlcap::manifest::{Config, ProcessSecrets};
use urlcap::outbound::Outbound;
use urlcap::policy::{ManualClock, Policy};
use wasmtime_wasi::p2::bindings::CommandPre;

const PROBE: &str = env!("URLCAP_GUEST_PROBE");
const WHTTP: &str = env!("URLCAP_GUEST_WHTTP");
/// The value the host injects as `authorization` on every request through `api`.
const SECRET: &str = "Bearer root-secret-7c1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    /// `urlcap:http`: `fetch` on a handle, a path relative to it.
    Native,
    /// `wasi:http/outgoing-handler`: an absolute URL, matched to one of the sandbox's handles.
    WasiHttp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    NoHandle,
    OtherHost,
    OtherPath,
    OtherMethod,
    BudgetSpent,
    RateExceeded,
    RevokedBeforeSpawn,
    RevokedWhileRunning,
    Expired,
    InjectedSecret,
}

impl Case {
    /// The restriction on the sandbox's `api` handle: manifest keys for a root, derive keys
    /// for a handle a parent narrows.
    fn restriction(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Case::OtherPath => ("paths = [\"/v1/\"]", &["paths=/v1/"]),
            Case::OtherMethod => ("methods = [\"GET\"]", &["methods=GET"]),
            Case::BudgetSpent => ("max_requests = 1", &["max=1"]),
            Case::RateExceeded => ("rate = \"1/min\"", &["rate=1/min"]),
            Case::Expired => ("", &["expires_ms=60000"]),
            _ => ("", &[]),
        }
    }

    /// Does the test act on the host (revoke, move the clock) while the guest waits on a
    /// gated request?
    fn gated(self) -> bool {
        matches!(self, Case::RevokedWhileRunning | Case::Expired)
    }
}

/// Everything one cell runs against.
struct World {
    api: Server,
    other: Server,
    gate: Arc<Semaphore>,
    clock: Arc<ManualClock>,
    policy: Arc<Policy>,
    audit: SharedBuf,
    out: Arc<Outbound>,
}

impl World {
    async fn new(manifest_for: impl Fn(u16, u16) -> String) -> World {
        let gate = Arc::new(Semaphore::new(0));
        let g = gate.clone();
        let api = Server::http(move |r| {
            if r.target == "/v1/gate" {
                Reply::Gated(g.clone())
            } else {
                Reply::With(200, vec![], format!("hi {}", r.target).into_bytes())
            }
        })
        .await;
        let other = Server::http(|_| Reply::Text("other")).await;
        let manifest = manifest_for(api.port(), other.port());
        let config = Config::parse(&manifest, Path::new("confinement.toml"), &ProcessSecrets)
            .unwrap_or_else(|e| panic!("{e}\n{manifest}"));
        let clock = Arc::new(ManualClock::default());
        let policy = Arc::new(config.policy(clock.clone()));
        let resolver = Arc::new(StaticResolver::new());
        for name in ["api.test", "other.test", "evil.test"] {
            resolver.set(name, &["127.0.0.1".parse().unwrap()]);
        }
        let audit = SharedBuf::default();
        let log = AuditLog::new(Box::new(audit.clone())).with_allowed(true);
        let out = Arc::new(Outbound::new(
            policy.preopens(),
            Client::new(EgressConfig::default(), resolver),
            Arc::new(log),
            "top",
        ));
        World {
            api,
            other,
            gate,
            clock,
            policy,
            audit,
            out,
        }
    }

    fn api_url(&self, path: &str) -> String {
        format!("http://api.test:{}{path}", self.api.port())
    }
}

/// The manifest: `api` with `restriction` (manifest keys), injecting SECRET, and `other` on
/// another host.
fn manifest(restriction: &str, api_port: u16, other_port: u16) -> String {
    format!(
        "version = 1\n\
         [[authority]]\nname = \"api\"\norigin = \"http://api.test:{api_port}\"\n\
         allow_ips = [\"127.0.0.1/32\"]\n{restriction}\n\
         [authority.headers]\nauthorization = {{ value = \"{SECRET}\" }}\n\
         [[authority]]\nname = \"other\"\norigin = \"http://other.test:{other_port}\"\n\
         allow_ips = [\"127.0.0.1/32\"]\n"
    )
}

/// A cell's manifest: the restriction in the root at the top level (below it the parent
/// derives it); `NoHandle` at the top level grants nothing at all.
fn cell_manifest(case: Case, depth: u32, api_port: u16, other_port: u16) -> String {
    match (case, depth) {
        (Case::NoHandle, 0) => "version = 1\n".into(),
        (_, 0) => manifest(case.restriction().0, api_port, other_port),
        _ => manifest("", api_port, other_port),
    }
}

fn host() -> &'static (WasmHost, CommandPre<SandboxState>) {
    static HOST: OnceLock<(WasmHost, CommandPre<SandboxState>)> = OnceLock::new();
    HOST.get_or_init(|| {
        let host = WasmHost::new().unwrap();
        let command = host.command_for(&std::fs::read(PROBE).unwrap()).unwrap();
        (host, command)
    })
}

/// One request step on the sandbox's `slot` handle, through `api`.
fn request(world: &World, api: Api, slot: &str, method: &str, path: &str) -> Vec<String> {
    match api {
        Api::Native => vec!["fetch".into(), slot.into(), method.into(), path.into()],
        Api::WasiHttp => vec!["http".into(), method.into(), world.api_url(path)],
    }
}

/// What the sandbox under test runs, and the lines it must print (each a prefix).
fn inner(world: &World, api: Api, case: Case, depth: u32) -> (Vec<String>, Vec<String>) {
    let denied = |reason: &str| match api {
        Api::Native => format!("err {reason} "),
        Api::WasiHttp => "err ErrorCode::HttpRequestDenied".to_string(),
    };
    let req = |slot: &str, method: &str, path: &str| request(world, api, slot, method, path);
    let mut steps = Vec::new();
    let mut lines = Vec::new();
    match case {
        Case::NoHandle => {
            steps.push("list".to_string());
            steps.extend(req("api", "DELETE", "/admin/everything"));
            lines.push(match api {
                Api::Native => "err no_slot".to_string(),
                Api::WasiHttp => denied("no_authority"),
            });
        }
        Case::OtherHost => match api {
            Api::Native => {
                let host = if depth == 0 {
                    "host=evil.test"
                } else {
                    "host=other.test"
                };
                steps.extend(["derive", "x", "api", host].map(String::from));
                lines.push("err attenuation_widens".into());
                if depth > 0 {
                    steps.extend(["fetch", "other", "GET", "/x"].map(String::from));
                    lines.push("err no_slot".into());
                }
            }
            Api::WasiHttp => {
                let host = if depth == 0 {
                    "evil.test"
                } else {
                    "other.test"
                };
                let url = format!("http://{host}:{}/x", world.other.port());
                steps.extend(["http".to_string(), "GET".into(), url]);
                lines.push(denied("no_authority"));
            }
        },
        Case::OtherPath => {
            steps.extend(req("api", "GET", "/admin/x"));
            lines.push(denied("path_not_allowed"));
        }
        Case::OtherMethod => {
            steps.extend(req("api", "DELETE", "/v1/x"));
            lines.push(denied("method_not_allowed"));
        }
        Case::BudgetSpent | Case::RateExceeded => {
            steps.extend(req("api", "GET", "/v1/a"));
            steps.extend(req("api", "GET", "/v1/b"));
            lines.push("ok 200 hi /v1/a".into());
            lines.push(denied(if case == Case::BudgetSpent {
                "budget_exhausted"
            } else {
                "rate_limited"
            }));
        }
        Case::RevokedBeforeSpawn => {
            // Below the top, the parent revokes before it spawns (see `wrap`); at the top the
            // guest revokes its own preopen, then asks (with wasi:http: both APIs, one handle).
            if depth == 0 {
                steps.extend(["revoke", "api"].map(String::from));
                lines.push("revoked api".into());
                steps.extend(req("api", "GET", "/v1/x"));
                lines.push(denied("revoked"));
            }
        }
        Case::RevokedWhileRunning | Case::Expired => {
            let slot = if depth == 0 && case == Case::Expired {
                steps.extend(["derive", "e", "api", "expires_ms=60000"].map(String::from));
                lines.push("derived e".into());
                "e"
            } else {
                "api"
            };
            steps.extend(req(slot, "GET", "/v1/gate"));
            lines.push("ok 200 released".into());
            steps.extend(req(slot, "GET", "/v1/after"));
            lines.push(denied(if case == Case::Expired {
                "expired"
            } else {
                "revoked"
            }));
        }
        Case::InjectedSecret => {
            steps.extend(match api {
                Api::Native => [
                    "header",
                    "api",
                    "/v1/forged",
                    "authorization",
                    "Bearer forged",
                ]
                .map(String::from)
                .to_vec(),
                Api::WasiHttp => vec![
                    "httph".into(),
                    "GET".into(),
                    world.api_url("/v1/forged"),
                    "authorization".into(),
                    "Bearer forged".into(),
                ],
            });
            // wasi:http refuses the header at `fields.append`, as wasmtime does (and audits
            // the attempt); urlcap:http denies the request.
            lines.push(match api {
                Api::Native => denied("forbidden_header"),
                Api::WasiHttp => "err header HeaderError::Forbidden".into(),
            });
            steps.extend(req("api", "GET", "/v1/ok"));
            lines.push("ok 200 hi /v1/ok".into());
        }
    }
    (steps, lines)
}

/// The top-level steps that put `steps` `depth` levels down: the immediate parent derives the
/// restricted handle `h` (or passes nothing, or revokes first) and spawns; every level above it
/// passes its `api` on. Below the top a child has no directories, so the component is carried
/// as `@/guests/probe.wasm` and expanded by the top level.
fn wrap(steps: Vec<String>, case: Case, depth: u32) -> Vec<String> {
    let mut steps = steps;
    for level in (0..depth).rev() {
        let wasm = if level == 0 {
            "/guests/probe.wasm"
        } else {
            "@/guests/probe.wasm"
        };
        let mut parent: Vec<String> = Vec::new();
        let pass = if level + 1 < depth {
            "api:api"
        } else {
            let keys = case.restriction().1;
            match case {
                Case::NoHandle => "-",
                Case::RevokedBeforeSpawn => {
                    parent.extend(["derive", "h", "api"].map(String::from));
                    parent.extend(["revoke", "h"].map(String::from));
                    "h:api"
                }
                _ if !keys.is_empty() => {
                    parent.extend(["derive", "h", "api"].map(String::from));
                    parent.extend(keys.iter().map(|k| k.to_string()));
                    "h:api"
                }
                _ => "api:api",
            }
        };
        parent.extend([
            "spawn".to_string(),
            wasm.to_string(),
            pass.to_string(),
            (steps.len() + 1).to_string(),
            "probe".to_string(),
        ]);
        parent.extend(steps);
        steps = parent;
    }
    steps
}

/// The audit record a cell must produce exactly once.
struct Expected {
    event: &'static str,
    /// The sandbox that asked.
    sandbox: String,
    reason: &'static str,
    /// Whether the record names a handle (`no_authority` has none to name).
    names_a_handle: bool,
}

fn expected_record(api: Api, case: Case, depth: u32) -> Option<Expected> {
    let under_test = sandbox_id(depth);
    let mut e = Expected {
        event: "request.denied",
        sandbox: under_test,
        reason: "",
        names_a_handle: true,
    };
    e.reason = match (case, api) {
        (Case::NoHandle, Api::Native) => return None,
        (Case::NoHandle, Api::WasiHttp) | (Case::OtherHost, Api::WasiHttp) => {
            e.names_a_handle = false;
            "no_authority"
        }
        (Case::OtherHost, Api::Native) => {
            e.event = "authority.derived";
            "attenuation_widens"
        }
        (Case::OtherPath, _) => "path_not_allowed",
        (Case::OtherMethod, _) => "method_not_allowed",
        (Case::BudgetSpent, _) => "budget_exhausted",
        (Case::RateExceeded, _) => "rate_limited",
        (Case::RevokedBeforeSpawn, _) if depth > 0 => {
            e.event = "sandbox.spawned";
            e.sandbox = sandbox_id(depth - 1);
            "revoked"
        }
        (Case::RevokedBeforeSpawn, _) | (Case::RevokedWhileRunning, _) => "revoked",
        (Case::Expired, _) => "expired",
        (Case::InjectedSecret, Api::Native) => "forbidden_header",
        (Case::InjectedSecret, Api::WasiHttp) => {
            e.names_a_handle = false; // refused at fields, before any request names a handle
            "forbidden_header"
        }
    };
    Some(e)
}

fn sandbox_id(depth: u32) -> String {
    let mut id = "top".to_string();
    for _ in 0..depth {
        id.push_str("/1");
    }
    id
}

/// What reaches the `api` origin in a cell, in order.
fn expected_at_origin(case: Case) -> Vec<(&'static str, &'static str)> {
    match case {
        Case::BudgetSpent | Case::RateExceeded => vec![("GET", "/v1/a")],
        Case::RevokedWhileRunning | Case::Expired => vec![("GET", "/v1/gate")],
        Case::InjectedSecret => vec![("GET", "/v1/ok")],
        _ => vec![],
    }
}

/// Start the probe as sandbox `top` of `world` with `steps` (the guests' directory granted as
/// /guests, a generous wall clock), on a task of its own; its captured output.
fn start_top(world: &World, steps: Vec<String>) -> (tokio::task::JoinHandle<Outcome>, Stdio) {
    let (host, command) = host();
    let dir = Path::new(PROBE).parent().unwrap().display().to_string();
    let stdio = Stdio::capture(1 << 20);
    let spec = SandboxSpec {
        args: std::iter::once("probe".to_string()).chain(steps).collect(),
        dirs: vec![(dir, "/guests".into())],
        timeout: Some(Duration::from_secs(120)),
        stdio: stdio.clone(),
        ..SandboxSpec::new(world.out.clone(), "top")
    };
    let run = tokio::spawn(async move { host.run(command, spec).await.unwrap() });
    (run, stdio)
}

/// The lines the sandbox `depth` levels down printed (its parents prefix them with `| `),
/// without its own children's lines or spawn reports.
fn printed_at(stdout: &str, depth: u32) -> Vec<&str> {
    let prefix = "| ".repeat(depth as usize);
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter(|l| !l.starts_with("| ") && !l.starts_with("spawned "))
        .collect()
}

/// Run one cell and check everything it promises.
async fn cell(api: Api, case: Case, depth: u32) {
    let label = format!("{api:?} × depth {depth} × {case:?}");
    let world = World::new(|a, o| cell_manifest(case, depth, a, o)).await;
    let (inner_steps, inner_lines) = inner(&world, api, case, depth);
    let steps = wrap(inner_steps, case, depth);
    let (run, stdio) = start_top(&world, steps);
    if case.gated() {
        // Act on the host only once the guest is known to wait on the gated request.
        let mut waited = Duration::ZERO;
        while !world.api.requests().iter().any(|r| r.target == "/v1/gate") {
            assert!(
                waited < Duration::from_secs(60),
                "{label}: never reached the gate"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += Duration::from_millis(10);
        }
        match case {
            Case::RevokedWhileRunning => world.policy.get("api").unwrap().revoke(),
            _ => world.clock.advance(Duration::from_secs(120)),
        }
        world.gate.add_permits(1);
    }
    let outcome = run.await.unwrap();
    let (stdout, stderr) = stdio.contents();
    assert_eq!(
        outcome.exit_code, 0,
        "{label}: {outcome:?}\n{stdout}\n{stderr}"
    );

    // What the guest under test printed.
    let printed = printed_at(&stdout, depth);
    if case == Case::RevokedBeforeSpawn && depth > 0 {
        let parent_prefix = "| ".repeat(depth as usize - 1);
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{parent_prefix}err revoked "))),
            "{label}: the spawn with a revoked handle is refused\n{stdout}"
        );
        assert!(printed.is_empty(), "{label}: the child never ran\n{stdout}");
    } else {
        assert_eq!(printed.len(), inner_lines.len(), "{label}\n{stdout}");
        for (line, want) in printed.iter().zip(&inner_lines) {
            assert!(
                line.starts_with(want.as_str()),
                "{label}: {line:?} is not {want:?}\n{stdout}"
            );
        }
    }
    assert!(
        !stdout.contains("root-secret"),
        "{label}: the guest saw the secret"
    );

    // What reached the origins.
    let reached: Vec<(String, String)> = world
        .api
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.target.clone()))
        .collect();
    let want: Vec<(String, String)> = expected_at_origin(case)
        .into_iter()
        .map(|(m, t)| (m.to_string(), t.to_string()))
        .collect();
    assert_eq!(reached, want, "{label}: what reached the origin");
    for r in world.api.requests() {
        assert_eq!(
            r.header("authorization"),
            [SECRET],
            "{label}: the host's secret, once"
        );
    }
    assert!(
        world.other.requests().is_empty(),
        "{label}: nothing reaches the other host"
    );

    // The audit: the denial exactly once, under the sandbox that asked, naming its handle.
    let text = world.audit.text();
    assert!(
        !text.contains("root-secret"),
        "{label}: no secret in the audit"
    );
    let records = world.audit.records();
    let denials: Vec<&serde_json::Value> =
        records.iter().filter(|r| !r["reason"].is_null()).collect();
    match expected_record(api, case, depth) {
        None => assert!(denials.is_empty(), "{label}: {denials:?}"),
        Some(e) => {
            assert_eq!(denials.len(), 1, "{label}: one denial record\n{text}");
            let r = denials[0];
            assert_eq!(r["event"], e.event, "{label}\n{text}");
            assert_eq!(r["sandbox"], e.sandbox.as_str(), "{label}\n{text}");
            assert_eq!(r["reason"], e.reason, "{label}\n{text}");
            if e.names_a_handle {
                let lineage = r["lineage"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{label}: {r}"));
                assert!(lineage.starts_with("api"), "{label}: {lineage}");
                // Below the top every handle is at least one derivation per level down.
                let derivations = lineage.matches('/').count() as u32;
                assert!(derivations >= depth, "{label}: {lineage}");
            } else {
                assert!(r["lineage"].is_null(), "{label}: {r}");
            }
        }
    }
    // Every allowed request is recorded under the sandbox that made it, on a handle of its own.
    for r in records.iter().filter(|r| r["event"] == "request.allowed") {
        assert_eq!(r["sandbox"], sandbox_id(depth).as_str(), "{label}: {r}");
        let lineage = r["lineage"].as_str().unwrap();
        assert!(lineage.matches('/').count() as u32 >= depth, "{label}: {r}");
    }
}

/// Every depth of one row, both APIs.
async fn row(case: Case) {
    for depth in 0..=2 {
        for api in [Api::Native, Api::WasiHttp] {
            if api == Api::WasiHttp && case == Case::Expired && depth == 0 {
                continue; // roots never expire; a top-level wasi:http guest uses only roots
            }
            cell(api, case, depth).await;
        }
    }
}

macro_rules! rows {
    ($($name:ident => $case:expr,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            row($case).await;
        }
    )*};
}

rows! {
    no_handle_reaches_nothing => Case::NoHandle,
    another_host_is_out_of_reach => Case::OtherHost,
    another_path_is_denied => Case::OtherPath,
    another_method_is_denied => Case::OtherMethod,
    a_spent_budget_denies => Case::BudgetSpent,
    an_exceeded_rate_denies => Case::RateExceeded,
    a_handle_revoked_before_spawn_reaches_nothing => Case::RevokedBeforeSpawn,
    revocation_while_running_takes_effect => Case::RevokedWhileRunning,
    an_expired_handle_denies => Case::Expired,
    the_injected_secret_cannot_be_forged_or_seen => Case::InjectedSecret,
}

/// Both APIs in one sandbox spend one handle: a budget of 2 spent once by each API denies the
/// third request through either, at every depth, and the origin sees exactly two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apis_in_one_sandbox_spend_the_same_handle() {
    for depth in 0..=2u32 {
        let world = World::new(|a, o| manifest("max_requests = 2", a, o)).await;
        let mut steps: Vec<String> = Vec::new();
        steps.extend(request(&world, Api::Native, "api", "GET", "/v1/native"));
        steps.extend(request(&world, Api::WasiHttp, "api", "GET", "/v1/wasi"));
        steps.extend(request(&world, Api::WasiHttp, "api", "GET", "/v1/third"));
        steps.extend(request(&world, Api::Native, "api", "GET", "/v1/fourth"));
        // Every level passes its `api` on unchanged (a fresh child of it).
        let steps = wrap(steps, Case::InjectedSecret, depth);
        let (run, stdio) = start_top(&world, steps);
        let outcome = run.await.unwrap();
        let stdout = stdio.contents().0;
        assert_eq!(outcome.exit_code, 0, "depth {depth}: {stdout}");
        let printed = printed_at(&stdout, depth);
        assert_eq!(printed.len(), 4, "depth {depth}: {stdout}");
        assert_eq!(printed[0], "ok 200 hi /v1/native");
        assert_eq!(printed[1], "ok 200 hi /v1/wasi");
        assert_eq!(printed[2], "err ErrorCode::HttpRequestDenied");
        assert!(printed[3].starts_with("err budget_exhausted"), "{stdout}");
        let targets: Vec<String> = world
            .api
            .requests()
            .iter()
            .map(|r| r.target.clone())
            .collect();
        assert_eq!(targets, ["/v1/native", "/v1/wasi"], "depth {depth}");
        let sandboxes: Vec<String> = world
            .audit
            .records()
            .iter()
            .filter(|r| r["event"] == "request.allowed" || r["event"] == "request.denied")
            .map(|r| r["sandbox"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(sandboxes, vec![sandbox_id(depth); 4], "depth {depth}");
    }
}

/// The escape the issue reported, end to end through `urlcap run`: an unmodified `wasi:http`
/// child given no handle (and one given a read-only view) cannot reach the root grant with
/// another method and path; the origin receives nothing from it, and the denial is audited
/// under the child's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmodified_wasi_http_child_cannot_reach_the_root_grant() {
    let origin =
        Server::http(|r| Reply::With(200, vec![], format!("hi {}", r.target).into_bytes())).await;
    let port = origin.port();
    let dir = tempfile::tempdir().unwrap();
    let guests = Path::new(WHTTP).parent().unwrap().display().to_string();
    let audit = dir.path().join("audit.jsonl");
    for pass in ["-", "ro:api"] {
        let _ = std::fs::remove_file(&audit);
        let target = format!("127.0.0.1:{port}");
        let args: Vec<String> = [
            "run",
            "--allow",
            &format!("api=GET,POST,DELETE http://127.0.0.1:{port}/"),
            "--allow-ip",
            "127.0.0.1",
            "--audit-allowed",
            "--audit",
            audit.to_str().unwrap(),
            "--dir",
            &format!("{guests}::/w"),
            PROBE,
            "--",
            "derive",
            "ro",
            "api",
            "paths=/public/",
            "methods=GET",
            "max=1",
            "spawn",
            "/w/whttp.wasm",
            pass,
            "5",
            "whttp",
            "DELETE",
            "http",
            &target,
            "/admin/everything",
        ]
        .map(String::from)
        .to_vec();
        let output = support::urlcap_bin(args).await;
        let stdout = support::text(&output.stdout);
        assert!(output.status.success(), "{pass}: {output:?}");
        assert!(
            stdout.contains("| err ErrorCode::HttpRequestDenied"),
            "{pass}: {stdout}"
        );
        assert!(
            origin.requests().is_empty(),
            "{pass}: the origin received {:?}",
            origin.requests()
        );
        let log = std::fs::read_to_string(&audit).unwrap();
        let denied: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["event"] == "request.denied")
            .collect();
        assert_eq!(denied.len(), 1, "{pass}: {log}");
        assert!(
            denied[0]["sandbox"].as_str().unwrap().ends_with("/1"),
            "{log}"
        );
        let (reason, lineage) = if pass == "-" {
            ("no_authority", None)
        } else {
            ("path_not_allowed", Some("api/"))
        };
        assert_eq!(denied[0]["reason"], reason, "{pass}: {log}");
        match lineage {
            None => assert!(denied[0]["lineage"].is_null()),
            Some(p) => assert!(denied[0]["lineage"].as_str().unwrap().starts_with(p)),
        }
        assert!(!log.contains("request.allowed"), "{pass}: {log}");
    }
}
