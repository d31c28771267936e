//! The scenarios the Python and JavaScript SDK tests (it/sdk_python.rs, it/sdk_js.rs) run: one
//! scriptable guest per SDK (fixtures/pysdk, fixtures/jssdk: the same steps, the same output),
//! built by ./scripts/test and run under `urlcap run` against a recording loopback origin.
//! Each scenario checks what the guest printed, what reached the origin and what the audit
//! log recorded, so an SDK that swallowed a denial or sent something else fails it.

use super::{text, urlcap_bin, Recorded, Reply, Server};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// The guest built with one SDK.
#[derive(Clone, Copy, Debug)]
pub enum Sdk {
    Python,
    JavaScript,
}

impl Sdk {
    /// The built guest; panics (the test fails, never skips) when ./scripts/test did not build it.
    pub fn guest(self) -> String {
        let (var, how) = match self {
            Sdk::Python => (
                "URLCAP_PYSDK_GUEST",
                "fixtures/pysdk with componentize-py (pip)",
            ),
            Sdk::JavaScript => (
                "URLCAP_JSSDK_GUEST",
                "fixtures/jssdk with componentize-js (npm)",
            ),
        };
        built(var, how)
    }
}

/// The path a guest-building step of ./scripts/test exported in `var`; panics if it is unset
/// or names no file.
pub fn built(var: &str, how: &str) -> String {
    let path = std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run ./scripts/test, which builds {how}"));
    assert!(Path::new(&path).is_file(), "{path} ({var}) was not built");
    path
}

/// The folder a step of ./scripts/test exported in `var`; panics if it is unset or missing.
pub fn built_dir(var: &str, how: &str) -> String {
    let path = std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run ./scripts/test, which installs {how}"));
    assert!(Path::new(&path).is_dir(), "{path} ({var}) is not installed");
    path
}

/// What one run left behind.
pub struct Ran {
    pub code: Option<i32>,
    pub lines: Vec<String>,
    pub stderr: String,
    pub audit: Vec<Value>,
    pub origin: Vec<Recorded>,
}

impl Ran {
    /// The audit records of this event, in order.
    pub fn events(&self, event: &str) -> Vec<&Value> {
        self.audit.iter().filter(|r| r["event"] == event).collect()
    }

    /// `(reason, url, detail)` of every `request.denied`, in order, the detail as the guest
    /// sees it: without the fix-it hint the audit record adds (guests never get hints).
    pub fn denials(&self) -> Vec<(String, String, String)> {
        self.events("request.denied")
            .into_iter()
            .map(|r| {
                let detail = s(&r["detail"]);
                let shown = detail
                    .split("; hint: ")
                    .next()
                    .unwrap_or(&detail)
                    .to_string();
                (s(&r["reason"]), s(&r["url"]), shown)
            })
            .collect()
    }

    /// `METHOD TARGET` of every request the origin received, in order.
    pub fn reached(&self) -> Vec<String> {
        self.origin
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The origin every scenario talks to: `/v1/echo` answers with the request's `x-trace` as
/// `x-echo`, `/v1/data.json` with JSON, `/v1/plugins/probe.wasm` with the probe guest (a
/// plugin the SDK guest downloads through its authority and runs nested), anything else with
/// `hi TARGET`.
pub async fn origin() -> Server {
    let probe = std::fs::read(env!("URLCAP_GUEST_PROBE")).unwrap();
    Server::http(move |r| match r.target.as_str() {
        "/v1/echo" => Reply::With(
            200,
            vec![("x-echo", r.header("x-trace").join(","))],
            b"echoed".to_vec(),
        ),
        "/v1/data.json" => Reply::With(
            200,
            vec![("content-type", "application/json".into())],
            br#"{"n": 7, "s": "x"}"#.to_vec(),
        ),
        "/v1/plugins/probe.wasm" => Reply::With(200, vec![], probe.clone()),
        _ => Reply::With(200, vec![], format!("hi {}", r.target).into_bytes()),
    })
    .await
}

/// Per guest, whether it already ran in this test process. Its first run compiles the component
/// (12-19 MB, most of it the language's interpreter) into wasmtime's disk cache and later runs
/// load it; the scenarios run in parallel, so the first holds the guest's lock and the others
/// wait for it rather than each compiling the same component at once.
type Gates = Mutex<HashMap<String, Arc<tokio::sync::Mutex<bool>>>>;
static COMPILED: OnceLock<Gates> = OnceLock::new();

/// Run `guest` under `urlcap run` with these `--allow` grants (loopback allowed), the steps as
/// its arguments, and the audit log in a file; then read back everything it left.
pub async fn run(guest: &str, server: &Server, grants: &[String], steps: &[&str]) -> Ran {
    let gate = COMPILED
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(guest.to_string())
        .or_default()
        .clone();
    let compiled = gate.lock_owned().await;
    let first = if *compiled {
        drop(compiled);
        None
    } else {
        Some(compiled)
    };
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut args: Vec<String> = vec!["run".into()];
    for g in grants {
        args.extend(["--allow".to_string(), g.clone()]);
    }
    args.extend(
        [
            "--allow-ip",
            "127.0.0.1",
            "--audit",
            audit.to_str().unwrap(),
            guest,
            "--",
        ]
        .map(String::from),
    );
    args.extend(steps.iter().map(|s| s.to_string()));
    let o = urlcap_bin(args).await;
    if let Some(mut compiled) = first {
        *compiled = true;
    }
    let audit = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Ran {
        code: o.status.code(),
        lines: text(&o.stdout).lines().map(String::from).collect(),
        stderr: text(&o.stderr),
        audit,
        origin: server.requests(),
    }
}

/// `api` (four methods on /v1/) and `other` (GET on /other/) on the origin's port.
pub fn grants(port: u16) -> Vec<String> {
    vec![
        format!("api=GET,POST,PUT,DELETE http://127.0.0.1:{port}/v1/"),
        format!("other=GET http://127.0.0.1:{port}/other/"),
    ]
}

fn assert_ran(ran: &Ran, expected: &[String]) {
    assert_eq!(ran.code, Some(0), "stderr: {}", ran.stderr);
    assert_eq!(ran.lines, expected, "stderr: {}", ran.stderr);
}

/// List the preopens, send every method with headers and a body, read JSON, and have a path
/// and a method refused: the guest sees `Denied` with the audit record's reason and detail, and
/// nothing refused reaches the origin.
pub async fn lists_fetches_and_is_denied(sdk: Sdk) {
    let server = origin().await;
    let port = server.port();
    #[rustfmt::skip]
    let steps = [
        "list",
        "get", "api", "/v1/items?page=2",
        "post", "api", "/v1/items", "body",
        "put", "api", "/v1/items/1", "new",
        "delete", "api", "/v1/items/1",
        "header", "api", "/v1/echo", "x-trace", "abc",
        "json", "api", "/v1/data.json", "n",
        "get", "api", "/admin",
        "post", "other", "/other/x", "body",
        "get", "other", "/other/x",
        "missing", "nope",
        "missing", "other",
    ];
    let ran = run(&sdk.guest(), &server, &grants(port), &steps).await;
    let denials = ran.denials();
    assert_eq!(denials.len(), 2, "{:?}", ran.audit);
    let origin = format!("http://127.0.0.1:{port}");
    assert_eq!(denials[0].0, "path_not_allowed");
    assert_eq!(denials[0].1, format!("{origin}/admin"));
    assert_eq!(denials[1].0, "method_not_allowed");
    assert_eq!(denials[1].1, format!("{origin}/other/x"));
    assert_ran(
        &ran,
        &[
            format!("api {origin}"),
            format!("other {origin}"),
            "ok 200 hi /v1/items?page=2".into(),
            "ok 200 hi /v1/items".into(),
            "ok 200 hi /v1/items/1".into(),
            "ok 200 hi /v1/items/1".into(),
            "ok 200 echoed".into(),
            "x-echo abc".into(),
            "json application/json 7".into(),
            format!("denied path_not_allowed {}", denials[0].2),
            format!("denied method_not_allowed {}", denials[1].2),
            "ok 200 hi /other/x".into(),
            "missing nope".into(),
            "found other".into(),
        ],
    );
    assert_eq!(
        ran.reached(),
        [
            "GET /v1/items?page=2",
            "POST /v1/items",
            "PUT /v1/items/1",
            "DELETE /v1/items/1",
            "GET /v1/echo",
            "GET /v1/data.json",
            "GET /other/x",
        ]
    );
    let bodies: Vec<usize> = ran.origin.iter().map(|r| r.body_len).collect();
    assert_eq!(bodies, [0, 4, 3, 0, 0, 0, 0]);
    assert_eq!(ran.origin[4].header("x-trace"), ["abc"]);
}

/// Derive a narrower handle (it works within its paths, methods and budget, and is refused
/// outside them), ask for wider ones (refused with `attenuation_widens`, audited), and revoke
/// one (its next request is refused with `revoked`; its parent still works).
pub async fn derives_and_revokes(sdk: Sdk) {
    let server = origin().await;
    let port = server.port();
    #[rustfmt::skip]
    let steps = [
        "derive", "ro", "api", "paths=/v1/items", "methods=GET", "max_requests=2",
        "get", "ro", "/v1/items/7",
        "post", "ro", "/v1/items", "x",
        "get", "ro", "/v1/orders",
        "derive", "wide", "api", "methods=GET,PATCH",
        "derive", "wider", "ro", "paths=/v1/",
        "get", "ro", "/v1/items",
        "get", "ro", "/v1/items",
        "derive", "r", "api", "paths=/v1/",
        "get", "r", "/v1/a",
        "revoke", "r",
        "get", "r", "/v1/b",
        "get", "api", "/v1/c",
    ];
    let ran = run(&sdk.guest(), &server, &grants(port), &steps).await;
    let origin = format!("http://127.0.0.1:{port}");
    let d = ran.denials();
    let reasons: Vec<&str> = d.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "method_not_allowed",
            "path_not_allowed",
            "budget_exhausted",
            "revoked"
        ],
        "{:?}",
        ran.audit
    );
    let refused: Vec<&Value> = ran
        .events("authority.derived")
        .into_iter()
        .filter(|r| r["reason"] == "attenuation_widens")
        .collect();
    assert_eq!(refused.len(), 2, "{:?}", ran.audit);
    let widen = |r: &Value| s(&r["detail"]).trim_start_matches("refused: ").to_string();
    assert_ran(
        &ran,
        &[
            format!("derived ro api/1 {origin} paths /v1/items methods GET max_requests 2"),
            "ok 200 hi /v1/items/7".into(),
            format!("denied method_not_allowed {}", d[0].2),
            format!("denied path_not_allowed {}", d[1].2),
            format!("denied attenuation_widens {}", widen(refused[0])),
            format!("denied attenuation_widens {}", widen(refused[1])),
            "ok 200 hi /v1/items".into(),
            format!("denied budget_exhausted {}", d[2].2),
            format!("derived r api/2 {origin} paths /v1/ methods DELETE,GET,POST,PUT"),
            "ok 200 hi /v1/a".into(),
            "revoked r".into(),
            format!("denied revoked {}", d[3].2),
            "ok 200 hi /v1/c".into(),
        ],
    );
    assert_eq!(
        ran.reached(),
        ["GET /v1/items/7", "GET /v1/items", "GET /v1/a", "GET /v1/c"]
    );
    assert_eq!(ran.events("authority.revoked").len(), 1);
}

/// Download a plugin (the probe guest) through an authority and run it in a nested sandbox with
/// a read-only handle on one path: the plugin sees only that, is refused outside it, cannot
/// widen it, and once the SDK guest revokes the handle the host refuses to start the plugin
/// with it (`run_sandbox` raises `Denied` with `revoked`).
pub async fn runs_a_plugin_with_an_attenuated_handle(sdk: Sdk) {
    let server = origin().await;
    let port = server.port();
    #[rustfmt::skip]
    let steps = [
        "derive", "view", "api", "paths=/v1/public/", "methods=GET",
        "spawn", "api", "/v1/plugins/probe.wasm", "view:api", "14",
            "probe", "list",
            "fetch", "api", "GET", "/v1/public/a",
            "fetch", "api", "GET", "/v1/items",
            "derive", "w", "api", "paths=/v1/",
        "revoke", "view",
        "spawn", "api", "/v1/plugins/probe.wasm", "view:api", "5",
            "probe", "fetch", "api", "GET", "/v1/public/b",
    ];
    let ran = run(&sdk.guest(), &server, &grants(port), &steps).await;
    let origin = format!("http://127.0.0.1:{port}");
    let spawned = ran.events("sandbox.spawned");
    assert_eq!(spawned.len(), 3, "{:?}", ran.audit);
    let top = s(&spawned[0]["sandbox"]);
    let child = format!("{top}/1");
    assert_eq!(s(&spawned[1]["sandbox"]), child);
    assert!(spawned[1]["reason"].is_null());
    assert!(
        s(&spawned[1]["lineage"]).starts_with("api/1/"),
        "{:?}",
        spawned[1]
    );
    assert_eq!(spawned[2]["reason"], "revoked");
    let refused_spawn = s(&spawned[2]["detail"])
        .trim_start_matches("refused: ")
        .to_string();
    let widened: Vec<&Value> = ran
        .events("authority.derived")
        .into_iter()
        .filter(|r| r["reason"] == "attenuation_widens")
        .collect();
    assert_eq!(widened.len(), 1);
    assert_eq!(s(&widened[0]["sandbox"]), child);
    // The plugin's refusal is audited under its own sandbox id.
    let d = ran.denials();
    let denied: Vec<&Value> = ran.events("request.denied");
    assert_eq!(denied.len(), 1, "{:?}", ran.audit);
    assert_eq!(s(&denied[0]["sandbox"]), child);
    assert_ran(
        &ran,
        &[
            format!("derived view api/1 {origin} paths /v1/public/ methods GET"),
            "spawned 0 ".into(),
            format!("| api {origin}"),
            "| ok 200 hi /v1/public/a".into(),
            format!("| err path_not_allowed {}", d[0].2),
            format!(
                "| err attenuation_widens {}",
                s(&widened[0]["detail"]).trim_start_matches("refused: ")
            ),
            "revoked view".into(),
            format!("denied revoked {refused_spawn}"),
        ],
    );
    assert_eq!(
        ran.reached(),
        [
            "GET /v1/plugins/probe.wasm",
            "GET /v1/public/a",
            "GET /v1/plugins/probe.wasm",
        ]
    );
}
