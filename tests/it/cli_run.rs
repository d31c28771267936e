//! `urlcap run` and `urlcap demo` as a user runs them: the real binary, a real guest, a
//! loopback origin.

use crate::support;

use std::process::Output;
use support::{Reply, Server};

const PROBE: &str = env!("URLCAP_GUEST_PROBE");

async fn urlcap(args: Vec<String>) -> Output {
    support::urlcap_bin(args).await
}

use support::text;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sends_granted_requests_denies_the_rest_and_audits_to_a_file() {
    let server =
        Server::http(|r| Reply::With(200, vec![], format!("hi {}", r.target).into_bytes())).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let grant = format!("api=GET http://127.0.0.1:{}/v1/", server.port());
    let o = urlcap(args(&[
        "run",
        "--allow",
        &grant,
        "--allow-ip",
        "127.0.0.1",
        "--audit",
        audit.to_str().unwrap(),
        "--env",
        "MODE=test",
        PROBE,
        "--",
        "list",
        "fetch",
        "api",
        "GET",
        "/v1/x",
        "fetch",
        "api",
        "GET",
        "/admin",
        "env",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("api http://127.0.0.1:{}", server.port()));
    assert_eq!(lines[1], "ok 200 hi /v1/x");
    assert!(lines[2].starts_with("err path_not_allowed"), "{out}");
    assert_eq!(
        lines[3], "env MODE=test",
        "the guest sees only the environment it was granted"
    );
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["sandbox.spawned", "request.denied", "sandbox.exited"]
    );
    assert_eq!(records[1]["reason"], "path_not_allowed");
    assert_eq!(records[2]["detail"], "exit status 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_gives_the_guest_only_the_directories_it_was_granted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("note.txt"), "granted file\n").unwrap();
    let grant = format!("{}::/data", dir.path().display());
    let o = urlcap(args(&[
        "run",
        "--audit",
        "/dev/null",
        "--dir",
        &grant,
        PROBE,
        "--",
        "cat",
        "/data/note.txt",
        "cat",
        "/etc/hostname",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ok cat granted file");
    assert!(
        lines[1].starts_with("err cat"),
        "no other file is visible: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_traps_and_time_limits_with_their_exit_status() {
    let o = urlcap(args(&["run", "--audit", "-", PROBE, "--", "trap"])).await;
    assert_eq!(o.status.code(), Some(134));
    assert!(
        text(&o.stderr).contains("urlcap: guest trapped"),
        "{}",
        text(&o.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(&manifest, "version = 1\n[limits]\ntimeout = \"300ms\"\n").unwrap();
    let o = urlcap(args(&[
        "run",
        "--manifest",
        manifest.to_str().unwrap(),
        PROBE,
        "--",
        "loop",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(124));
    assert!(
        text(&o.stderr).contains("wall-clock limit of 300ms"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("\"event\":\"sandbox.exited\""),
        "audit goes to stderr by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rejects_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("x.wasm");
    std::fs::write(&not_wasm, "not wasm").unwrap();
    for (list, message) in [
        (
            vec!["run", "/no/such/guest.wasm"],
            "/no/such/guest.wasm: No such file",
        ),
        (
            vec!["run", not_wasm.to_str().unwrap()],
            "not a runnable component",
        ),
        (
            vec!["run", "--env", "NOEQUALS", PROBE],
            "--env \"NOEQUALS\": expected K=V",
        ),
        (
            vec!["run", "--dir", "/tmp", PROBE],
            "--dir \"/tmp\": expected HOST::GUEST",
        ),
        (vec!["run", "--allow", "bad", PROBE], "--allow \"bad\""),
    ] {
        let o = urlcap(args(&list)).await;
        assert_eq!(o.status.code(), Some(2), "{list:?}");
        assert!(
            text(&o.stderr).contains(message),
            "{list:?}: {}",
            text(&o.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_allowed_and_denied_requests_and_their_audit_lines() {
    let o = urlcap(args(&["demo"])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for expected in [
        "allowed  GET api /v1/hello",
        "-> path_not_allowed",
        "-> method_not_allowed",
        "-> non_canonical_path",
        "-> forbidden_header",
        "-> ip_denied",
        "-> attenuation_widens",
        "-> budget_exhausted",
        "-> revoked",
        "The audit log (13 records",
        "\"event\":\"sandbox.spawned\"",
        "\"event\":\"sandbox.exited\"",
        "\"event\":\"authority.revoked\"",
        "guest exit status: 0",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(
        !out.contains("demo-secret-never-shown"),
        "the injected secret appears nowhere"
    );
    let denials_shown = out
        .lines()
        .filter(|l| l.trim_start().starts_with("denied "))
        .count();
    let denials_audited = out
        .lines()
        .filter(|l| l.contains("\"reason\":") && !l.contains("\"reason\":null"))
        .count();
    assert_eq!(
        denials_shown, denials_audited,
        "every denial the guest saw is audited once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_honours_max_nesting_depth() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(&manifest, "version = 1\n[limits]\nmax_nesting_depth = 0\n").unwrap();
    let guests = std::path::Path::new(PROBE)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let grant = format!("{guests}::/guests");
    let spawn = ["spawn", "/guests/hello.wasm", "-", "1", "hello"];
    let mut list = vec![
        "run",
        "--audit",
        "/dev/null",
        "--dir",
        &grant,
        "--manifest",
        manifest.to_str().unwrap(),
        PROBE,
        "--",
    ];
    list.extend(spawn);
    let o = urlcap(args(&list)).await;
    assert!(
        text(&o.stdout).starts_with("err nesting_limit"),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let mut list = vec!["run", "--audit", "/dev/null", "--dir", &grant, PROBE, "--"];
    list.extend(spawn);
    let o = urlcap(args(&list)).await;
    assert!(
        text(&o.stdout).starts_with("spawned 0"),
        "the default allows nesting: {}",
        text(&o.stdout)
    );
}

/// With the audit log on stderr (the default), the guest's own stderr cannot forge a record,
/// split one or swallow one: its lines arrive whole and prefixed `guest: `, and every line that
/// is not prefixed is a genuine record. (Found by the hostile review.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_forge_or_corrupt_audit_records_on_a_shared_stderr() {
    let server = Server::http(|_| Reply::Text("fine")).await;
    let grant = format!("api=GET http://127.0.0.1:{}/pub/", server.port());
    let forged = r#"{"ts":"2026-01-01T00:00:00.000Z","event":"sandbox.exited","sandbox":"sb-1","authority":null,"lineage":null,"method":null,"url":null,"reason":null,"detail":"exit status 0"}\n"#;
    let o = urlcap(args(&[
        "run",
        "--allow",
        &grant,
        "--allow-ip",
        "127.0.0.1",
        PROBE,
        "--",
        "stderr",
        forged,
        "stderr",
        r#"{"x":"#,
        "fetch",
        "api",
        "GET",
        "/secret",
        "stderr",
        "two\nlines\n",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let stderr = text(&o.stderr);
    let mut records = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("guest: ") {
            continue;
        }
        let record: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!("a line that is not the guest's is a record: {line:?} {e}\n{stderr}")
        });
        records.push(record);
    }
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["sandbox.spawned", "request.denied", "sandbox.exited"],
        "{stderr}"
    );
    assert_eq!(records[1]["reason"], "path_not_allowed");
    assert!(
        records.iter().all(|r| r["sandbox"] != "sb-1"),
        "the forged record is not one"
    );
    assert!(stderr.contains("guest: {\"ts\":\"2026-01-01"), "{stderr}");
    assert!(
        stderr.contains("guest: {\"x\":two\nguest: lines\n"),
        "{stderr}"
    );
}

/// The audit log fails closed: with `--audit /dev/full` nothing is allowed, the guest is
/// stopped (even one that only computes) and urlcap exits 74; `--audit-fail-open` keeps going
/// and says so on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_fails_closed_unless_told_otherwise() {
    let server = Server::http(|_| Reply::Text("fine")).await;
    let grant = format!("api=GET http://127.0.0.1:{}/", server.port());
    let base = [
        "run",
        "--allow",
        &grant,
        "--allow-ip",
        "127.0.0.1",
        "--audit",
        "/dev/full",
    ];
    let mut closed = args(&base);
    closed.extend(args(&[PROBE, "--", "fetch", "api", "GET", "/x", "loop"]));
    let o = urlcap(closed).await;
    assert_eq!(o.status.code(), Some(74), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("the audit log could not be written"),
        "{}",
        text(&o.stderr)
    );
    assert!(server.requests().is_empty(), "nothing is sent unaudited");

    let mut open = args(&base);
    open.extend(args(&[
        "--audit-fail-open",
        PROBE,
        "--",
        "fetch",
        "api",
        "GET",
        "/x",
    ]));
    let o = urlcap(open).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "ok 200 fine\n");
    assert!(
        text(&o.stderr).contains("continuing (audit fails open)"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(server.requests().len(), 1);
}

/// `urlcap run` with the compilation cache under `cache` (`XDG_CACHE_HOME`).
async fn run_cached(cache: &std::path::Path, list: &[&str]) -> Output {
    let envs = vec![("XDG_CACHE_HOME".to_string(), cache.display().to_string())];
    support::urlcap_measured_env(args(list), envs).await.output
}

/// The entries of urlcap's compilation cache under `cache`, sorted.
fn cache_entries(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
    let dir = cache.join("urlcap/components");
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    all.sort();
    all
}

/// A second `urlcap run` of a component loads it from urlcap's compilation cache (made 0700)
/// instead of compiling it: with another component's compiled code put in its entry, it runs
/// that code. A torn entry is compiled again and replaced; a cache directory that cannot be
/// made leaves the run as without a cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_loads_the_host_component_from_its_cache_and_survives_a_broken_one() {
    use std::os::unix::fs::PermissionsExt;
    const HELLO: &str = env!("URLCAP_GUEST_HELLO");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let o = run_cached(&cache, &["run", HELLO]).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "hello\n");
    let hello_entry = match &cache_entries(&cache)[..] {
        [one] => one.clone(),
        other => panic!("one entry expected: {other:?}"),
    };
    let mode = std::fs::metadata(cache.join("urlcap/components"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let hello_code = std::fs::read(&hello_entry).unwrap();

    // The probe's compiled code under the hello component's key: a run of hello that loads
    // from the cache runs the probe (which traps when told to); one that compiled would not.
    let o = run_cached(&cache, &["run", "--audit", "-", PROBE, "--", "trap"]).await;
    assert_eq!(o.status.code(), Some(134), "{}", text(&o.stderr));
    let probe_entry = cache_entries(&cache)
        .into_iter()
        .find(|e| *e != hello_entry)
        .expect("the probe's entry");
    std::fs::copy(&probe_entry, &hello_entry).unwrap();
    let o = run_cached(&cache, &["run", "--audit", "-", HELLO, "--", "trap"]).await;
    assert_eq!(o.status.code(), Some(134), "{}", text(&o.stderr));

    // A torn entry: compiled again, run, and replaced by a whole one.
    std::fs::write(&hello_entry, &hello_code[..hello_code.len() / 2]).unwrap();
    let o = run_cached(&cache, &["run", HELLO]).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "hello\n");
    assert_eq!(std::fs::read(&hello_entry).unwrap(), hello_code);
    assert_eq!(cache_entries(&cache).len(), 2, "no temporary file left");

    // A guest given a directory that holds the cache (or lies in it) could write compiled
    // code urlcap runs later: refused, and the entry is untouched.
    for granted in [cache.clone(), cache.join("urlcap/components")] {
        let granted = format!("{}::/c", granted.display());
        let o = run_cached(&cache, &["run", "--dir", &granted, HELLO]).await;
        assert!(!o.status.success(), "{}", text(&o.stdout));
        assert!(
            text(&o.stderr).contains("holds urlcap's compilation cache"),
            "{}",
            text(&o.stderr)
        );
    }
    assert_eq!(std::fs::read(&hello_entry).unwrap(), hello_code);

    // A cache directory that cannot be made (its parent is a file): the run goes on.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let o = run_cached(&file, &["run", HELLO]).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "hello\n");
}
