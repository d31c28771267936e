//! Guests end to end: a wasm guest (fixtures/guests/probe) → host → outbound → loopback origin.
//! Each test runs the probe with a script of steps and reads what it printed and what the
//! audit log recorded.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{outbound, run_probe, Reply, Server, SharedBuf};
use urlcap::egress::{EgressConfig, StaticResolver};
use urlcap::host::{Outcome, EXIT_TIMEOUT, EXIT_TRAP};

struct Ran {
    outcome: Outcome,
    lines: Vec<String>,
    audit: SharedBuf,
}

impl Ran {
    fn reasons(&self) -> Vec<String> {
        self.audit
            .records()
            .iter()
            .filter(|r| r["event"] == "request.denied")
            .map(|r| r["reason"].as_str().unwrap().to_string())
            .collect()
    }
}

/// The demo-like grants: `api` (paths /v1/, GET and POST, loopback allowed) and `internal`
/// (same server, no loopback exception).
fn manifest(port: u16, extra: &str) -> String {
    format!(
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://api.test:{port}\"\npaths = [\"/v1/\"]\nmethods = [\"GET\", \"POST\"]\nallow_ips = [\"127.0.0.1/32\"]\n{extra}\n\
         [[authority]]\nname = \"internal\"\norigin = \"http://internal.test:{port}\"\n"
    )
}

async fn run(
    manifest: &str,
    steps: &[&str],
    memory: Option<u64>,
    timeout: Option<Duration>,
) -> Ran {
    let resolver = Arc::new(StaticResolver::new());
    resolver.set("api.test", &["127.0.0.1".parse().unwrap()]);
    resolver.set("internal.test", &["127.0.0.1".parse().unwrap()]);
    let (out, audit) = outbound(manifest, resolver, EgressConfig::default());
    let (outcome, lines, _) = run_probe(Arc::new(out), "t", steps, memory, timeout).await;
    Ran {
        outcome,
        lines,
        audit,
    }
}

async fn origin() -> Server {
    Server::http(|r| match r.target.as_str() {
        "/v1/big" => Reply::With(200, vec![], vec![b'z'; 4096]),
        t => Reply::With(200, vec![], format!("hello {t}").into_bytes()),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preopens_are_listed_by_name_and_fetch_reaches_the_origin() {
    let server = origin().await;
    let port = server.port();
    let ran = run(
        &manifest(port, ""),
        &["list", "fetch", "api", "GET", "/v1/hello?x=1"],
        None,
        None,
    )
    .await;
    assert_eq!(
        ran.outcome,
        Outcome {
            exit_code: 0,
            message: None
        }
    );
    assert_eq!(ran.lines[0], format!("api http://api.test:{port}"));
    assert_eq!(
        ran.lines[1],
        format!("internal http://internal.test:{port}")
    );
    assert_eq!(ran.lines[2], "ok 200 hello /v1/hello?x=1");
    assert_eq!(
        server.requests()[0].header("host"),
        [format!("api.test:{port}").as_str()]
    );
    assert!(ran.audit.records().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_denial_reaches_the_guest_with_its_reason_and_one_audit_record() {
    let server = origin().await;
    let port = server.port();
    let big = "x".repeat(2000);
    let steps = [
        "fetch",
        "api",
        "GET",
        "/admin",
        "fetch",
        "api",
        "DELETE",
        "/v1/a",
        "fetch",
        "api",
        "GET",
        "/v1/../admin",
        "fetch",
        "api",
        "GET",
        "//evil.example/v1/",
        "fetch",
        "api",
        "GET",
        "/v1/a#frag",
        "header",
        "api",
        "/v1/a",
        "Host",
        "evil.example",
        "header",
        "api",
        "/v1/a",
        "X-Key",
        "guess",
        "fetch",
        "internal",
        "GET",
        "/",
        "fetchb",
        "api",
        "POST",
        "/v1/upload",
        &big,
        "fetch",
        "api",
        "GET",
        "/v1/big",
    ];
    let extra = "max_request_body = \"1KiB\"\nmax_response_body = \"1KiB\"\n[authority.headers]\nx-key = { value = \"SECRET-KEY-42\" }";
    let ran = run(&manifest(port, extra), &steps, None, None).await;
    let expected = [
        "path_not_allowed",
        "method_not_allowed",
        "non_canonical_path",
        "non_canonical_path",
        "malformed_url",
        "forbidden_header",
        "forbidden_header",
        "ip_denied",
        "request_body_too_large",
        "response_body_too_large",
    ];
    let guest: Vec<&str> = ran
        .lines
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(guest, expected, "{:?}", ran.lines);
    assert!(ran.lines.iter().all(|l| l.starts_with("err ")));
    assert_eq!(
        ran.reasons(),
        expected,
        "exactly one audit record per denial, in order"
    );
    assert!(!ran.audit.text().contains("SECRET-KEY-42"));
    assert!(
        !ran.lines.join("\n").contains("SECRET-KEY-42"),
        "the guest never sees the injected value"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "only the oversize response reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derive_narrows_and_cannot_widen() {
    let server = origin().await;
    let ran = run(
        &manifest(server.port(), ""),
        &[
            "derive",
            "ro",
            "api",
            "paths=/v1/public/",
            "methods=GET",
            "fetch",
            "ro",
            "GET",
            "/v1/public/x",
            "fetch",
            "ro",
            "GET",
            "/v1/private",
            "fetch",
            "ro",
            "POST",
            "/v1/public/x",
            "derive",
            "wide",
            "ro",
            "paths=/v1/",
            "derive",
            "wider",
            "ro",
            "methods=GET,POST",
            "derive",
            "bad",
            "ro",
            "paths=/v1/../",
            "fetch",
            "api",
            "POST",
            "/v1/private",
        ],
        None,
        None,
    )
    .await;
    assert!(
        ran.lines[0].starts_with("derived ro api/"),
        "{}",
        ran.lines[0]
    );
    assert!(ran.lines[0].contains("paths /v1/public/ methods GET"));
    // `describe` is the grant's one-line Display: never the host-held IP exceptions.
    assert!(!ran.lines[0].contains("allow_ips"), "{}", ran.lines[0]);
    assert_eq!(ran.lines[1], "ok 200 hello /v1/public/x");
    assert!(ran.lines[2].starts_with("err path_not_allowed"));
    assert!(ran.lines[3].starts_with("err method_not_allowed"));
    assert!(ran.lines[4].starts_with("err attenuation_widens"));
    assert!(ran.lines[5].starts_with("err attenuation_widens"));
    assert!(ran.lines[6].starts_with("err invalid_attenuation"));
    assert_eq!(
        ran.lines[7], "ok 200 hello /v1/private",
        "the parent keeps what it had"
    );
    let events: Vec<String> = ran
        .audit
        .records()
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        events.iter().filter(|e| *e == "authority.derived").count(),
        4,
        "one grant and three refusals (two widening, one malformed), each audited: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_cascades_and_budgets_are_shared() {
    let server = origin().await;
    let ran = run(
        &manifest(server.port(), "max_requests = 3"),
        &[
            "derive",
            "a",
            "api",
            "paths=/v1/",
            "derive",
            "b",
            "a",
            "paths=/v1/b/",
            "fetch",
            "b",
            "GET",
            "/v1/b/1",
            "revoke",
            "a",
            "fetch",
            "b",
            "GET",
            "/v1/b/2",
            "fetch",
            "a",
            "GET",
            "/v1/a",
            "fetch",
            "api",
            "GET",
            "/v1/root",
            "fetch",
            "api",
            "GET",
            "/v1/root",
            "fetch",
            "api",
            "GET",
            "/v1/root",
        ],
        None,
        None,
    )
    .await;
    assert_eq!(ran.lines[2], "ok 200 hello /v1/b/1");
    assert_eq!(ran.lines[3], "revoked a");
    assert!(ran.lines[4].starts_with("err revoked"), "{}", ran.lines[4]);
    assert!(ran.lines[5].starts_with("err revoked"));
    assert_eq!(ran.lines[6], "ok 200 hello /v1/root");
    assert_eq!(ran.lines[7], "ok 200 hello /v1/root");
    assert!(
        ran.lines[8].starts_with("err budget_exhausted"),
        "the grandchild's request counted against the root: {}",
        ran.lines[8]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_have_no_sockets() {
    let server = origin().await;
    let addr = format!("127.0.0.1:{}", server.port());
    let ran = run(&manifest(server.port(), ""), &["tcp", &addr], None, None).await;
    assert!(ran.lines[0].starts_with("err tcp"), "{:?}", ran.lines);
    assert_eq!(server.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_by_the_time_limit() {
    let started = Instant::now();
    let ran = run(
        &manifest(9, ""),
        &["loop"],
        None,
        Some(Duration::from_millis(500)),
    )
    .await;
    assert_eq!(ran.outcome.exit_code, EXIT_TIMEOUT);
    assert!(
        ran.outcome
            .message
            .as_deref()
            .unwrap()
            .contains("wall-clock limit of 500ms"),
        "{:?}",
        ran.outcome
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_and_a_trap_is_isolated() {
    let ran = run(&manifest(9, ""), &["membomb"], Some(32 << 20), None).await;
    assert_eq!(ran.outcome.exit_code, EXIT_TRAP);
    assert!(
        ran.outcome
            .message
            .as_deref()
            .unwrap()
            .contains("memory limit of 32.0 MiB exceeded"),
        "{:?}",
        ran.outcome
    );
    let ran = run(&manifest(9, ""), &["trap"], None, None).await;
    assert_eq!(ran.outcome.exit_code, EXIT_TRAP);
    assert!(
        ran.outcome.message.as_deref().unwrap().contains("trapped"),
        "{:?}",
        ran.outcome
    );
    // The host is unharmed: the same engine runs the next guests normally. wasi:cli 0.2's
    // exit carries only success or failure, so exit(7) arrives as 1.
    let ran = run(&manifest(9, ""), &["exit", "7"], None, None).await;
    assert_eq!(
        ran.outcome,
        Outcome {
            exit_code: 1,
            message: None
        }
    );
    let ran = run(&manifest(9, ""), &["exit", "0"], None, None).await;
    assert_eq!(
        ran.outcome,
        Outcome {
            exit_code: 0,
            message: None
        }
    );
}

/// A writer that takes `records` lines and then fails every write (a disk that filled up).
struct FillsUp {
    records: usize,
    buf: SharedBuf,
    /// How long each write takes (a slow disk).
    slow: std::time::Duration,
}

impl std::io::Write for FillsUp {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(self.slow);
        if self.records == 0 {
            return Err(std::io::Error::other("no space left on device"));
        }
        self.records = self
            .records
            .saturating_sub(b.iter().filter(|&&c| c == b'\n').count());
        self.buf.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// When the audit log stops taking records mid-run, the sandbox is stopped with the audit
/// status and nothing after the failed record is sent: written in place, and written by the
/// log's own thread (which a logged allowed request waits for before the guest goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_stops_when_its_audit_log_fails() {
    for threaded in [false, true] {
        a_sandbox_stops_when_its_audit_log_fails_(threaded).await;
    }
}

async fn a_sandbox_stops_when_its_audit_log_fails_(threaded: bool) {
    use urlcap::audit::AuditLog;
    use urlcap::egress::Client;
    use urlcap::manifest::{Config, ProcessSecrets};
    use urlcap::outbound::Outbound;
    let server = Server::http(|_| Reply::Text("fine")).await;
    let manifest = format!(
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://127.0.0.1:{}\"\nallow_ips = [\"127.0.0.1/32\"]\n",
        server.port()
    );
    let config = Config::parse(&manifest, std::path::Path::new("t.toml"), &ProcessSecrets).unwrap();
    let policy = config.policy(Arc::new(urlcap::policy::SystemClock::new()));
    let buf = SharedBuf::default();
    let sink = Box::new(FillsUp {
        records: 1,
        buf: buf.clone(),
        slow: std::time::Duration::from_millis(if threaded { 200 } else { 0 }),
    });
    let log = if threaded {
        AuditLog::threaded(sink).unwrap()
    } else {
        AuditLog::new(sink)
    }
    .with_allowed(true);
    let out = Arc::new(Outbound::new(
        policy.preopens(),
        Client::new(EgressConfig::default(), Arc::new(StaticResolver::new())),
        Arc::new(log),
        "t",
    ));
    let (outcome, lines, _) = run_probe(
        out.clone(),
        "t",
        &[
            "fetch", "api", "GET", "/a", "fetch", "api", "GET", "/b", "fetch", "api", "GET", "/c",
            "loop",
        ],
        None,
        None,
    )
    .await;
    assert_eq!(
        outcome.exit_code,
        urlcap::host::EXIT_AUDIT,
        "{outcome:?} {lines:?}"
    );
    let targets: Vec<String> = server.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets,
        ["/a", "/b"],
        "the request whose record failed was the last sent (threaded: {threaded})"
    );
    assert!(out.audit().has_failed());
    assert_eq!(buf.records().len(), 1, "the one record that fit");
}

/// What the host buffers of a response for a native fetch is bounded by what the guest's
/// memory has left, not by its whole limit: a guest holding half of 32 MiB cannot make the host
/// buffer a 20 MiB body for it (denied `response_body_too_large`, the guest goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_fetch_buffers_at_most_what_the_guest_has_left() {
    let server = Server::http(|_| Reply::Script(vec![], vec![support::Step::Data(20 << 20)])).await;
    let manifest = format!(
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://127.0.0.1:{}\"\nallow_ips = [\"127.0.0.1/32\"]\n",
        server.port()
    );
    let (out, audit) = outbound(
        &manifest,
        Arc::new(StaticResolver::new()),
        EgressConfig::default(),
    );
    let (outcome, lines, _) = run_probe(
        Arc::new(out),
        "t",
        &["hold", "16", "fetch", "api", "GET", "/big", "list"],
        Some(32 << 20),
        None,
    )
    .await;
    assert_eq!(outcome.exit_code, 0, "{outcome:?} {lines:?}");
    assert_eq!(lines[0], "holding 16 MiB");
    assert!(
        lines[1].starts_with("err response_body_too_large"),
        "{lines:?}"
    );
    let records = audit.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["reason"], "response_body_too_large");
}

/// The audit record of a denial the manifest could have allowed ends with the smallest change
/// that would allow it, naming the manifest line; the guest's error never carries it, and a
/// denial nothing may allow (or that the guest's own derivation caused) has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_the_manifest_could_allow_are_audited_with_a_hint_the_guest_never_sees() {
    let server = origin().await;
    let port = server.port();
    let steps = [
        "fetch",
        "api",
        "GET",
        "/v2/items", // path
        "fetch",
        "api",
        "DELETE",
        "/v1/a", // method
        "fetch",
        "internal",
        "GET",
        "/x", // address, after DNS
        "http",
        "GET",
        "http://elsewhere.test/a/b?q=1", // no grant (wasi:http)
        "fetch",
        "api",
        "GET",
        "/v1/../admin", // never: not canonical
        "header",
        "api",
        "/v1/a",
        "Host",
        "evil.example", // never: the host's header
        "derive",
        "ro",
        "api",
        "paths=/v1/public/", // the guest narrows itself
        "fetch",
        "ro",
        "GET",
        "/v1/private",
    ];
    let ran = run(&manifest(port, ""), &steps, None, None).await;
    let records = ran.audit.records();
    let denied: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["event"] == "request.denied")
        .map(|r| (r["reason"].as_str().unwrap(), r["detail"].as_str().unwrap()))
        .collect();
    let hint = |d: &str| d.split_once("; hint: ").map(|(_, h)| h.to_string());
    let expected = [
        (
            "path_not_allowed",
            Some("add path prefix /v2/items to authority api (test.toml:2)".to_string()),
        ),
        (
            "method_not_allowed",
            Some("add DELETE to methods of authority api (test.toml:2)".into()),
        ),
        (
            "ip_denied",
            Some("add allow_ips = [\"127.0.0.1/32\"] to authority internal (test.toml:9)".into()),
        ),
        (
            "no_authority",
            Some("--allow 'GET http://elsewhere.test/a/b'".into()),
        ),
        ("non_canonical_path", None),
        ("forbidden_header", None),
        ("path_not_allowed", None),
    ];
    let got: Vec<(&str, Option<String>)> = denied.iter().map(|(r, d)| (*r, hint(d))).collect();
    let want: Vec<(&str, Option<String>)> = expected.iter().map(|(r, h)| (*r, h.clone())).collect();
    assert_eq!(got, want, "{records:#?}");
    assert!(
        ran.lines
            .iter()
            .all(|l| !l.contains("hint") && !l.contains("test.toml")),
        "{:?}",
        ran.lines
    );
    assert!(server.requests().is_empty(), "nothing denied was sent");
}
