//! Nested sandboxes: a guest (the probe, acting as a plugin host) runs a child component with
//! attenuated handles. The child cannot reach the parent's other handles, widen what it got,
//! outlive revocation, exceed budgets, or take more memory or time than the parent has left.

use crate::support;

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
    // Room for a child's whole 1 MiB of output, prefixed.
    let stdio = Stdio::capture(4 << 20);
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

/// The operands of a `spawn` step for a probe child running `args`: the count, then argv.
fn child(args: &[&str]) -> Vec<String> {
    let mut v = vec![(args.len() + 1).to_string(), "probe".to_string()];
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
            out.handles().get("api").unwrap().revoke();
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
    // The child's limit is the parent's remaining time, so both deadlines fall together:
    // either the parent is stopped too, or it sees its child stopped at the limit.
    let child_stopped = ran
        .lines
        .first()
        .is_some_and(|l| l.starts_with("spawned 124"));
    assert!(
        ran.outcome.exit_code == 124 || child_stopped,
        "{:?} {:?}",
        ran.outcome,
        ran.lines
    );
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
    let refusals: Vec<(String, String)> = ran
        .audit
        .records()
        .iter()
        .filter(|r| r["event"] == "sandbox.spawned" && !r["reason"].is_null())
        .map(|r| {
            (
                r["sandbox"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        refusals,
        [
            ("parent/1".to_string(), "nesting_limit".to_string()),
            ("parent".to_string(), "invalid_component".to_string())
        ],
        "each refused spawn is audited once, by the sandbox that asked"
    );
}

fn subset_of(rng: &mut Rng, items: &[&'static str]) -> Vec<&'static str> {
    let v: Vec<&'static str> = items
        .iter()
        .copied()
        .filter(|_| rng.next() % 3 != 0)
        .collect();
    if v.is_empty() {
        vec![items[(rng.next() % items.len() as u64) as usize]]
    } else {
        v
    }
}

/// A tiny deterministic generator (the scripts must be reproducible from the seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn subset<'a>(&mut self, items: &[&'a str]) -> Vec<&'a str> {
        let v: Vec<&str> = items
            .iter()
            .copied()
            .filter(|_| self.next() % 2 == 0)
            .collect();
        if v.is_empty() {
            vec![self.pick(items)]
        } else {
            v
        }
    }
}

/// What a slot allows in the model: its own attenuation and its chain of ancestors (ids into
/// `Model::revoked`).
#[derive(Clone)]
struct Slot {
    paths: Vec<&'static str>,
    methods: Vec<&'static str>,
    chain: Vec<usize>,
}

struct Model {
    revoked: Vec<bool>,
}

impl Model {
    fn alive(&self, s: &Slot) -> bool {
        s.chain.iter().all(|&id| !self.revoked[id])
    }
    fn allows(&self, s: &Slot, method: &str, path: &str) -> bool {
        self.alive(s) && s.methods.contains(&method) && s.paths.iter().any(|p| path.starts_with(p))
    }
    fn new_slot(
        &mut self,
        paths: Vec<&'static str>,
        methods: Vec<&'static str>,
        parent: Option<&Slot>,
    ) -> Slot {
        self.revoked.push(false);
        let mut chain = parent.map(|p| p.chain.clone()).unwrap_or_default();
        chain.push(self.revoked.len() - 1);
        Slot {
            paths,
            methods,
            chain,
        }
    }
}

const PREFIXES: &[&str] = &["/a/", "/a/x/", "/b/", "/c/", "/"];
const FETCH_PATHS: &[&str] = &["/a/1", "/a/x/1", "/b/2", "/c/3", "/x"];
const METHODS: &[&str] = &["GET", "POST", "DELETE"];

/// Append steps for one script level: derives, fetches, revokes (and, at the top, spawns),
/// with the lines the probe must print for each.
fn script(
    rng: &mut Rng,
    model: &mut Model,
    slots: &mut Vec<(String, Slot)>,
    steps: &mut Vec<String>,
    expect: &mut Vec<String>,
    denials: &mut usize,
    top: bool,
) {
    let n = 4 + rng.next() % 7;
    for k in 0..n {
        let (name, slot) = slots[(rng.next() % slots.len() as u64) as usize].clone();
        match rng.next() % if top { 6 } else { 5 } {
            0 | 3 => {
                // Mostly ask for part of what the slot has (these succeed and grow the tree);
                // sometimes for anything (these must fail unless covered).
                let (paths, methods) = if rng.next() % 4 != 0 {
                    let own_paths: Vec<&'static str> = slot.paths.clone();
                    let own_methods: Vec<&'static str> = slot.methods.clone();
                    (subset_of(rng, &own_paths), subset_of(rng, &own_methods))
                } else {
                    (rng.subset(PREFIXES), rng.subset(METHODS))
                };
                let new = format!("{name}{k}");
                steps.extend([
                    "derive".into(),
                    new.clone(),
                    name.clone(),
                    format!("paths={}", paths.join(",")),
                    format!("methods={}", methods.join(",")),
                ]);
                let covered = paths
                    .iter()
                    .all(|p| slot.paths.iter().any(|q| p.starts_with(q)));
                let narrower = methods.iter().all(|m| slot.methods.contains(m));
                if model.alive(&slot) && covered && narrower {
                    expect.push("derived".into());
                    let child = model.new_slot(paths, methods, Some(&slot));
                    slots.push((new, child));
                } else {
                    expect.push("err".into());
                }
            }
            1 => {
                steps.extend(["revoke".into(), name.clone()]);
                let id = *slot.chain.last().unwrap();
                model.revoked[id] = true;
                expect.push(format!("revoked {name}"));
            }
            4 if top => {
                // Spawn a child with this handle as its `api`, running a script of its own.
                let passed = model.new_slot(slot.paths.clone(), slot.methods.clone(), Some(&slot));
                if !model.alive(&slot) {
                    steps.extend(
                        [
                            "spawn",
                            "/guests/probe.wasm",
                            &format!("{name}:api"),
                            "1",
                            "probe",
                        ]
                        .map(String::from),
                    );
                    expect.push("err".into());
                    continue;
                }
                let mut child_slots = vec![("api".to_string(), passed)];
                let (mut child_steps, mut child_expect) = (Vec::new(), Vec::new());
                script(
                    rng,
                    model,
                    &mut child_slots,
                    &mut child_steps,
                    &mut child_expect,
                    denials,
                    false,
                );
                steps.extend([
                    "spawn".into(),
                    "/guests/probe.wasm".into(),
                    format!("{name}:api"),
                    (child_steps.len() + 1).to_string(),
                    "probe".into(),
                ]);
                steps.extend(child_steps);
                expect.push("spawned 0".into());
                expect.extend(child_expect.into_iter().map(|l| format!("| {l}")));
            }
            _ => {
                // Mostly something the slot itself grants (so only state can deny it).
                let (method, path) = if rng.next() % 5 < 3 {
                    let prefix = slot.paths[(rng.next() % slot.paths.len() as u64) as usize];
                    let method = slot.methods[(rng.next() % slot.methods.len() as u64) as usize];
                    (method, format!("{prefix}p"))
                } else {
                    (rng.pick(METHODS), rng.pick(FETCH_PATHS).to_string())
                };
                let path = path.as_str();
                steps.extend(["fetch".into(), name.clone(), method.into(), path.into()]);
                if model.allows(&slot, method, path) {
                    expect.push("ok 200".into());
                } else {
                    *denials += 1;
                    let own_alive = !model.revoked[*slot.chain.last().unwrap()];
                    let only_ancestor_revoked = own_alive && !model.alive(&slot) && {
                        let alive_slot = Slot {
                            chain: vec![],
                            ..slot.clone()
                        };
                        model.allows(&alive_slot, method, path)
                    };
                    expect.push(if only_ancestor_revoked {
                        "err revoked".into()
                    } else {
                        "err".into()
                    });
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_trees_never_allow_what_an_ancestor_denies_and_audit_each_denial_once() {
    let server = Server::http(|_| Reply::Text("ok")).await;
    let port = server.port();
    let grant = format!(
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://127.0.0.1:{port}\"\npaths = [\"/a/\", \"/b/\"]\nmethods = [\"GET\", \"POST\"]\nallow_ips = [\"127.0.0.1/32\"]\n"
    );
    let (mut allowed_in_children, mut total_denials, mut ancestor_revoked) = (0, 0, 0);
    for seed in 1..=100u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut model = Model {
            revoked: Vec::new(),
        };
        let root = model.new_slot(vec!["/a/", "/b/"], vec!["GET", "POST"], None);
        let mut slots = vec![("api".to_string(), root)];
        let (mut steps, mut expect, mut denials) = (Vec::new(), Vec::new(), 0);
        script(
            &mut rng,
            &mut model,
            &mut slots,
            &mut steps,
            &mut expect,
            &mut denials,
            true,
        );
        let (out, audit) = setup(&grant);
        let refs: Vec<&str> = steps.iter().map(String::as_str).collect();
        let ran = run(out, audit, &refs, None, Some(Duration::from_secs(20)), 3).await;
        assert_eq!(
            ran.outcome.exit_code, 0,
            "seed {seed}: {:?}\n{steps:?}\n{:?}",
            ran.outcome, ran.lines
        );
        assert_eq!(
            ran.lines.len(),
            expect.len(),
            "seed {seed}: {steps:?}\n{:?}\nexpected {expect:?}",
            ran.lines
        );
        for (got, want) in ran.lines.iter().zip(&expect) {
            assert!(
                got.starts_with(want.as_str()),
                "seed {seed}: got {got:?}, model says {want:?}\nsteps {steps:?}\nlines {:?}",
                ran.lines
            );
            if got.starts_with("| ok") {
                allowed_in_children += 1;
            }
            if want.ends_with("err revoked") {
                ancestor_revoked += 1;
            }
        }
        let audited = ran
            .audit
            .records()
            .iter()
            .filter(|r| r["event"] == "request.denied")
            .count();
        assert_eq!(
            audited, denials,
            "seed {seed}: every denied fetch is audited exactly once"
        );
        total_denials += denials;
    }
    assert!(
        allowed_in_children > 10 && total_denials > 30 && ancestor_revoked >= 5,
        "non-vacuous: {allowed_in_children} child allows, {total_denials} denials, {ancestor_revoked} denied only through a revoked ancestor"
    );
}

/// `urlcap run` the probe with `api` granted on the server's port and `limits` (manifest
/// lines), spawning one child: `child` is its program name (a guest in the probe's directory)
/// and arguments, given `api`; `PORT` in them stands for the server's port. Returns the output
/// and the audit records.
async fn run_spawning(
    server: &Server,
    limits: &str,
    child: &[&str],
) -> (std::process::Output, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(
        &manifest,
        format!(
            "version = 1\n[limits]\n{limits}\n[[authority]]\nname = \"api\"\n\
             origin = \"http://127.0.0.1:{}\"\nallow_ips = [\"127.0.0.1/32\"]\n",
            server.port()
        ),
    )
    .unwrap();
    let audit = dir.path().join("audit.jsonl");
    let guests = Path::new(PROBE).parent().unwrap().display().to_string();
    let mut args: Vec<String> = [
        "run",
        "--manifest",
        manifest.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
        "--dir",
        &format!("{guests}::/guests"),
        PROBE,
        "--",
        "spawn",
        &format!("/guests/{}.wasm", child[0]),
        "api:api",
    ]
    .map(String::from)
    .to_vec();
    args.push(child.len().to_string());
    let port = server.port().to_string();
    args.extend(child.iter().map(|s| s.replace("PORT", &port)));
    let output = support::urlcap_bin(args).await;
    let records = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (output, records)
}

/// Run the probe under a 15 s wall clock with a small child (`child` and its arguments,
/// given `api`; `PORT` stands for the origin's port) whose request never gets an answer; the
/// audit records as (event, sandbox) pairs, the records, and the origin's port. (Small
/// children, so compiling them takes a small part of the limit even in a loaded debug build.)
async fn killed_mid_request(
    child: &[&str],
) -> (Vec<(String, String)>, Vec<serde_json::Value>, u16) {
    let server = Server::http(|_| Reply::SlowHead(Duration::from_secs(60))).await;
    let (output, records) = run_spawning(&server, "timeout = \"15s\"", child).await;
    assert_eq!(output.status.code(), Some(124), "{output:?}");
    assert_eq!(
        server.requests().len(),
        1,
        "the child's request was in flight"
    );
    let events = records
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_string(),
                r["sandbox"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (events, records, server.port())
}

/// When the parent's wall-clock limit fires while its child waits on a request, the child's
/// end and the outcome of its in-flight request are still audited (from drop guards, not
/// timing luck): for a native `fetch`, `request.aborted`, then the child's `sandbox.exited`,
/// then the parent's; for a `wasi:http` request its `request.aborted` is written too, when
/// wasmtime's task for it is cancelled (so its place is not fixed). (The limit leaves room
/// for compiling the child with a debug build's compiler.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_killed_on_its_wall_clock_still_audits_its_childs_end() {
    let (native, wasi) = tokio::join!(
        killed_mid_request(&["fetch1", "api", "/slow"]),
        killed_mid_request(&["whttp", "GET", "http", "127.0.0.1:PORT", "/slow"]),
    );
    let (events, records, port) = native;
    let top = events[0].1.clone();
    let kid = format!("{top}/1");
    assert_eq!(
        events,
        [
            ("sandbox.spawned".to_string(), top.clone()),
            ("sandbox.spawned".to_string(), kid.clone()),
            ("request.aborted".to_string(), kid.clone()),
            ("sandbox.exited".to_string(), kid.clone()),
            ("sandbox.exited".to_string(), top.clone()),
        ],
        "{records:?}"
    );
    assert_eq!(records[2]["url"], format!("http://127.0.0.1:{port}/slow"));
    assert!(records[2]["lineage"].as_str().unwrap().starts_with("api/"));
    assert!(records[3]["detail"]
        .as_str()
        .unwrap()
        .starts_with("exit status 124"));

    let (events, records, port) = wasi;
    let top = events[0].1.clone();
    let kid = format!("{top}/1");
    let mut sorted = events.clone();
    sorted.sort();
    let mut want = vec![
        ("sandbox.spawned".to_string(), top.clone()),
        ("sandbox.spawned".to_string(), kid.clone()),
        ("request.aborted".to_string(), kid.clone()),
        ("sandbox.exited".to_string(), kid.clone()),
        ("sandbox.exited".to_string(), top.clone()),
    ];
    want.sort();
    assert_eq!(sorted, want, "{records:?}");
    let aborted = records
        .iter()
        .find(|r| r["event"] == "request.aborted")
        .unwrap();
    assert_eq!(aborted["url"], format!("http://127.0.0.1:{port}/slow"));
    let kid_exit = events
        .iter()
        .position(|e| *e == ("sandbox.exited".to_string(), kid.clone()));
    let top_exit = events
        .iter()
        .position(|e| *e == ("sandbox.exited".to_string(), top.clone()));
    assert!(kid_exit < top_exit, "{events:?}");
}

/// A child's in-flight requests count against the top-level `max_concurrent_requests`: a
/// child bursting ten `wasi:http` requests under a limit of four gets at most four through,
/// the rest refused (`concurrency_limit`) and audited under its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_childs_concurrent_requests_count_against_the_top_level_limit() {
    let server = Server::http(|_| Reply::SlowHead(Duration::from_secs(2))).await;
    let (output, records) = run_spawning(
        &server,
        "max_concurrent_requests = 4",
        &["whttp", "burst", "10", "http", "127.0.0.1:PORT", "/x"],
    )
    .await;
    let stdout = support::text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let counts: Vec<usize> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("| burst "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    let (ok, limited, other) = (counts[0], counts[1], counts[2]);
    assert!((1..=4).contains(&ok), "{stdout}");
    assert_eq!((ok + limited, other), (10, 0), "{stdout}");
    assert_eq!(
        server.requests().len(),
        ok,
        "only admitted requests reach the origin"
    );
    let refused = records
        .iter()
        .filter(|r| r["reason"] == "concurrency_limit")
        .inspect(|r| assert!(r["sandbox"].as_str().unwrap().ends_with("/1"), "{r}"))
        .count();
    assert_eq!(refused, limited, "{records:?}");
}

/// Every distinct component a guest spawns is compiled, but only a bounded number stay
/// compiled: twenty distinct components (one guest, its bytes varied by a custom section)
/// leave at most `NESTED_CACHE` entries behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compiled_components_a_guest_spawns_are_bounded() {
    let host = WasmHost::new().unwrap();
    let command = host.command_for(&std::fs::read(PROBE).unwrap()).unwrap();
    let hello = std::fs::read(env!("URLCAP_GUEST_HELLO")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut steps: Vec<String> = Vec::new();
    for i in 0..20u8 {
        // A custom section (id 0, size, name "v", one byte) makes each copy distinct.
        let mut bytes = hello.clone();
        bytes.extend([0, 3, 1, b'v', i]);
        std::fs::write(dir.path().join(format!("h{i}.wasm")), bytes).unwrap();
        steps.extend(["spawn", &format!("/g/h{i}.wasm"), "-", "1", "hello"].map(String::from));
    }
    let (out, _audit) = setup("version = 1\n");
    let stdio = Stdio::capture(1 << 20);
    let spec = SandboxSpec {
        args: std::iter::once("probe".to_string()).chain(steps).collect(),
        dirs: vec![(dir.path().display().to_string(), "/g".into())],
        stdio: stdio.clone(),
        ..SandboxSpec::new(out, "parent")
    };
    let outcome = host.run(&command, spec).await.unwrap();
    let stdout = stdio.contents().0;
    assert_eq!(outcome.exit_code, 0, "{stdout}");
    assert_eq!(stdout.matches("spawned 0").count(), 20, "{stdout}");
    let (entries, bytes) = host.nested_cache_size();
    assert!(
        entries <= urlcap::host::NESTED_CACHE.0,
        "{entries} entries kept"
    );
    assert!(bytes <= urlcap::host::NESTED_CACHE.1, "{bytes} bytes kept");
    assert!(entries >= 1);
}

/// A child writing past its 1 MiB output cap keeps running: the parent gets the first MiB and
/// a line saying how much was dropped (it used to be trapped, exit 134).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_childs_output_past_its_cap_is_cut_with_a_marker() {
    let (out, audit) = setup("version = 1\n");
    let kid = child(&["spew", "3000000", "list"]);
    let mut steps = vec!["spawn", "/guests/probe.wasm", "-"];
    steps.extend(kid.iter().map(String::as_str));
    steps.push("list");
    let ran = run(out, audit, &steps, None, None, 3).await;
    assert_eq!(ran.outcome.exit_code, 0, "{:?}", ran.outcome);
    assert_eq!(ran.lines[0], "spawned 0 ", "the child was not stopped");
    let marker = ran
        .lines
        .iter()
        .find(|l| l.starts_with("| [urlcap: output cut"))
        .expect("a marker line");
    assert_eq!(
        marker,
        &format!(
            "| [urlcap: output cut at 1048576 bytes; {} more bytes dropped]",
            3_000_000 - 1_048_576
        )
    );
    let kept: usize = ran
        .lines
        .iter()
        .filter(|l| l.starts_with("| x"))
        .map(|l| l.len() - 2 + 1)
        .sum();
    assert_eq!(kept, 1 << 20, "exactly the first MiB is kept");
}

/// wasmtime cannot cancel a compile, so one whose sandbox's wall clock ended the spawn runs
/// on — but it keeps its compile slot until it ends: six sandboxes spawning six distinct
/// components at once, each cut off by its 300 ms limit, never make the host compile more than
/// `MAX_CONCURRENT_COMPILES` at a time, and every compile ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_compiles_keep_their_slot_until_they_end() {
    let host = WasmHost::new().unwrap();
    let command = host.command_for(&std::fs::read(PROBE).unwrap()).unwrap();
    let probe = std::fs::read(PROBE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for i in 0..6u8 {
        let mut bytes = probe.clone();
        bytes.extend([0, 3, 1, b'v', i]);
        std::fs::write(dir.path().join(format!("p{i}.wasm")), bytes).unwrap();
        let (out, _audit) = setup("version = 1\n");
        let stdio = Stdio::capture(1 << 20);
        let spec = SandboxSpec {
            args: ["probe", "spawn", &format!("/g/p{i}.wasm"), "-", "1", "list"]
                .map(String::from)
                .to_vec(),
            dirs: vec![(dir.path().display().to_string(), "/g".into())],
            stdio: stdio.clone(),
            timeout: Some(Duration::from_millis(300)),
            ..SandboxSpec::new(out, &format!("p{i}"))
        };
        let (host, command) = (host.clone(), command.clone());
        runs.push(tokio::spawn(async move {
            let outcome = host.run(&command, spec).await.unwrap();
            (outcome, stdio.contents().0)
        }));
    }
    let mut most = 0;
    let watched = std::time::Instant::now();
    while !runs.iter().all(|r| r.is_finished()) || host.compiles_running() > 0 {
        most = most.max(host.compiles_running());
        assert!(
            watched.elapsed() < Duration::from_secs(300),
            "compiles still running"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        most <= urlcap::host::MAX_CONCURRENT_COMPILES,
        "{most} compiles at once"
    );
    assert!(most >= 1, "something compiled");
    for run in runs {
        let (outcome, stdout) = run.await.unwrap();
        // Each parent ran out of time waiting for its child's compile (a refusal the guest
        // printed), or was itself stopped at 300 ms.
        assert!(
            stdout.starts_with("err nesting_limit") || outcome.exit_code == 124,
            "{outcome:?} {stdout}"
        );
    }
}

/// With a compile process (what `urlcap run` uses), a guest's compile ends with its sandbox's
/// wall clock: a component that passes admission but takes seconds to compile (16 MB of
/// straight-line arithmetic), spawned under a 3 s limit, is compiled in a process of its
/// own that is killed when the spawn is abandoned. When the run returns, nothing compiles on
/// (a compile thread would run for seconds more, holding its slot), and the process is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_process_is_killed_with_its_sandboxs_wall_clock() {
    let worker = urlcap::host::compile_worker::CompileWorker::new(
        env!("CARGO_BIN_EXE_urlcap"),
        vec![urlcap::host::compile_worker::WORKER_ARG.into()],
    );
    let host = WasmHost::with_compile_worker(3, Some(worker)).unwrap();
    let command = host.command_for(&std::fs::read(PROBE).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let heavy = support::probe_with_heavy_module(2_000, 1_000, 1);
    assert!(heavy.len() < 16 << 20, "within the size cap");
    std::fs::write(dir.path().join("heavy.wasm"), heavy).unwrap();
    let (out, _audit) = setup("version = 1\n");
    let stdio = Stdio::capture(1 << 20);
    let spec = SandboxSpec {
        args: ["probe", "spawn", "/g/heavy.wasm", "-", "1", "list"]
            .map(String::from)
            .to_vec(),
        dirs: vec![(dir.path().display().to_string(), "/g".into())],
        stdio: stdio.clone(),
        timeout: Some(Duration::from_secs(3)),
        ..SandboxSpec::new(out, "heavy")
    };
    let run = {
        let (host, command) = (host.clone(), command.clone());
        tokio::spawn(async move { host.run(&command, spec).await.unwrap() })
    };
    // Compile processes of this test binary seen while the run ran (other tests in it may
    // start their own; none of theirs outlives its run either).
    let mut seen = std::collections::BTreeSet::new();
    while !run.is_finished() {
        seen.extend(support::compile_processes(std::process::id()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(host.compiles_running(), 0, "the compile ended with the run");
    let outcome = run.await.unwrap();
    let stdout = stdio.contents().0;
    assert!(
        stdout.starts_with("err nesting_limit the component did not compile within")
            || outcome.exit_code == 124,
        "{outcome:?} {stdout}"
    );
    assert!(!seen.is_empty(), "the compile ran in a process of its own");
    let watched = Instant::now();
    while seen
        .iter()
        .any(|&pid| support::process_state(pid).is_some_and(|(_, state, _)| state != "Z"))
    {
        assert!(
            watched.elapsed() < Duration::from_secs(30),
            "the compile process outlived its sandbox"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a child's compiled code takes is charged to its parent, not an estimate from the
/// component's size: 2 bytes of wasm (`i64.trunc_f64_u` of `f64.convert_i64_u`) compile to
/// about 75 bytes of machine code, so a 1 MB component makes about 70 MB of code, which a
/// parent with 32 MiB left cannot have (refused, naming the size), though the 4× estimate of
/// the component's size fits. The host compiles it in this process here (no compile process,
/// which could not even make that much under 32 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_childs_compiled_code_is_charged_at_its_real_size() {
    use wasm_encoder::Instruction as I;
    let ops = 10_000;
    let expanding = support::probe_with_module(24, ops, |_, i, body| {
        if i == 0 {
            body.instruction(&I::LocalGet(0));
        }
        body.instruction(&I::F64ConvertI64U);
        body.instruction(&I::I64TruncF64U);
        if i == ops - 1 {
            body.instruction(&I::LocalSet(1));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.wasm"), &expanding).unwrap();
    let host = WasmHost::with_max_depth(3).unwrap();
    let command = host.command_for(&std::fs::read(PROBE).unwrap()).unwrap();
    let (out, audit) = setup("version = 1\n");
    let stdio = Stdio::capture(1 << 20);
    let spec = SandboxSpec {
        args: ["probe", "spawn", "/g/x.wasm", "-", "1", "list"]
            .map(String::from)
            .to_vec(),
        dirs: vec![(dir.path().display().to_string(), "/g".into())],
        stdio: stdio.clone(),
        memory: Some(32 << 20),
        timeout: Some(Duration::from_secs(120)),
        ..SandboxSpec::new(out, "expanding")
    };
    let outcome = host.run(&command, spec).await.unwrap();
    let stdout = stdio.contents().0;
    assert_eq!(outcome.exit_code, 0, "{outcome:?} {stdout}");
    assert!(
        stdout.starts_with("err nesting_limit the component's compiled code and tables take"),
        "{stdout}"
    );
    let code: u64 = stdout
        .split_whitespace()
        .nth(9)
        .and_then(|n| n.parse().ok())
        .expect("the size in the refusal");
    assert!(
        code > 32 << 20 && (expanding.len() as u64) * 4 < 32 << 20,
        "{code} bytes of code for {} bytes of wasm",
        expanding.len()
    );
    assert!(
        audit.text().contains("compiled code and tables take"),
        "audited"
    );
}

/// A component the compiler fails on (a 1 KB shape that trips an assertion in wasmparser) is
/// refused as `invalid_component` with a fixed message, whether it compiles in a compile
/// process or in a thread of the host: the failure's own text, which names the host's code,
/// never reaches the guest or the audit log, and the host serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_the_compiler_fails_on_is_refused_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("crash.wasm"),
        support::compiler_crashing_component(),
    )
    .unwrap();
    let worker = urlcap::host::compile_worker::CompileWorker::new(
        env!("CARGO_BIN_EXE_urlcap"),
        vec![urlcap::host::compile_worker::WORKER_ARG.into()],
    );
    for worker in [Some(worker), None] {
        let in_process = worker.is_none();
        let host = WasmHost::with_compile_worker(3, worker).unwrap();
        let command = host.command_for(&std::fs::read(PROBE).unwrap()).unwrap();
        let (out, audit) = setup("version = 1\n");
        let stdio = Stdio::capture(1 << 20);
        let spec = SandboxSpec {
            args: ["probe", "spawn", "/g/crash.wasm", "-", "1", "x", "list"]
                .map(String::from)
                .to_vec(),
            dirs: vec![(dir.path().display().to_string(), "/g".into())],
            stdio: stdio.clone(),
            timeout: Some(Duration::from_secs(60)),
            ..SandboxSpec::new(out, "crash")
        };
        let outcome = host.run(&command, spec).await.unwrap();
        let stdout = stdio.contents().0;
        assert_eq!(outcome.exit_code, 0, "in process {in_process}: {outcome:?}");
        assert!(
            stdout.starts_with(
                "err invalid_component the component could not be compiled (the compiler failed on it)"
            ),
            "in process {in_process}: {stdout}"
        );
        let log = audit.text();
        for leak in ["panicked", "assert", "MAX_DEPTH", "task", ".rs"] {
            assert!(!log.contains(leak), "in process {in_process}: {log}");
            assert!(!stdout.contains(leak), "in process {in_process}: {stdout}");
        }
    }
}

/// The host's pools of tables and memories for nested sandboxes are shared by all of them; a
/// guest whose children hold many slots (58 empty tables and memories each, three deep) can
/// fill them, but the spawn that finds them full is refused (`nesting_limit`, saying why),
/// not run into a trap that would look like the child's fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_that_finds_the_pools_full_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pm.wasm"),
        support::probe_holding_pool_slots(58),
    )
    .unwrap();
    let host = WasmHost::with_max_depth(3).unwrap();
    let command = host.command_for(&std::fs::read(PROBE).unwrap()).unwrap();
    let (out, audit) = setup("version = 1\n");
    let stdio = Stdio::capture(1 << 20);
    let steps =
        "probe spawn /g/pm.wasm - 11 probe spawn @/g/pm.wasm - 6 probe spawn @/g/pm.wasm - 1 probe";
    let spec = SandboxSpec {
        args: steps.split(' ').map(String::from).collect(),
        dirs: vec![(dir.path().display().to_string(), "/g".into())],
        stdio: stdio.clone(),
        memory: Some(256 << 20),
        timeout: Some(Duration::from_secs(60)),
        ..SandboxSpec::new(out, "pools")
    };
    let outcome = host.run(&command, spec).await.unwrap();
    let stdout = stdio.contents().0;
    assert_eq!(outcome.exit_code, 0, "{outcome:?} {stdout}");
    assert!(
        stdout.contains("err nesting_limit the host has no room for another nested sandbox now"),
        "{stdout}"
    );
    assert!(!stdout.contains("spawned 134"), "{stdout}");
    assert!(audit.text().contains("the host had no room to run it"));
}
