//! Guest-driven host work is bounded by, and charged to, the guest's limits: a hostile guest
//! inside its limits cannot make the host spend unbounded memory, CPU time or audit volume.
//! Each test drives the real `urlcap run` binary and asserts the host process's own peak
//! memory and CPU time (wait4) and the audit log's size, against the bounds SECURITY.md states.

mod support;

use std::path::Path;
use support::{urlcap_measured, Measured};

const PROBE: &str = env!("URLCAP_GUEST_PROBE");

/// `urlcap run` of the probe with `api` granted on a closed loopback port, audit to a file.
async fn run_probe(dir: &Path, extra: &[&str], steps: &[String]) -> (Measured, String) {
    let audit = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let mut args: Vec<String> = [
        "run",
        "--allow",
        "api=http://127.0.0.1:9/",
        "--allow-ip",
        "127.0.0.1",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--audit".into(),
        audit.display().to_string(),
        PROBE.into(),
        "--".into(),
    ]);
    args.extend(steps.iter().cloned());
    let m = urlcap_measured(args).await;
    let log = std::fs::read_to_string(&audit).unwrap_or_default();
    (m, log)
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The host's own bounds in these tests: far above what the runs measure (about 50 MiB and
/// well under a second of CPU in a debug build), far below what the unbounded host spent
/// (3.5 GB and 23 s for one chain).
const MAX_HOST_RSS_KIB: u64 = 200 * 1024;
const MAX_HOST_CPU: std::time::Duration = std::time::Duration::from_secs(20);
/// Every audit line stays short whatever the guest sent: its url and detail are cut at 2 KiB
/// each, its lineage is at most 32 levels deep.
const MAX_AUDIT_LINE: usize = 6 * 1024;

fn within_bounds(what: &str, m: &Measured, log: &str, max_log: usize) {
    assert!(
        m.max_rss_kib < MAX_HOST_RSS_KIB,
        "{what}: host peak RSS {} KiB",
        m.max_rss_kib
    );
    assert!(m.cpu < MAX_HOST_CPU, "{what}: host CPU {:?}", m.cpu);
    assert!(
        log.len() <= max_log,
        "{what}: audit log of {} bytes",
        log.len()
    );
    if let Some(line) = log.lines().find(|l| l.len() > MAX_AUDIT_LINE) {
        panic!(
            "{what}: an audit line of {} bytes: {}",
            line.len(),
            &line[..200]
        );
    }
}

/// Chains stop at 32 levels (kept or with their intermediates dropped), a flat flood stops at
/// the 10,000 live derived handles a sandbox tree may keep, and handles a guest dropped but
/// that a descendant keeps alive still count: 400 chains of 32 with only their ends held stop
/// at exactly 10,000 nodes alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derivation_chains_and_floods_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (m, log) = run_probe(
        dir.path(),
        &[],
        &words("chain 100000 api chain 100000 api drop many 20000 api"),
    )
    .await;
    let stdout = support::text(&m.output.stdout);
    assert!(m.output.status.success(), "{m:?}", m = m.output);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "chain 32 handle_limit",
            "chain 32 handle_limit",
            "many 9936 handle_limit"
        ],
        "32 levels deep at most; 10,000 live derived handles in all (64 held by the chains)"
    );
    within_bounds("chains", &m, &log, 16 << 20);
    let derived = log
        .lines()
        .filter(|l| l.contains("\"authority.derived\""))
        .count();
    assert_eq!(
        derived,
        10_000 + 3,
        "one record per handle the guest got, plus three refusals"
    );

    let mut steps = Vec::new();
    for _ in 0..400 {
        steps.extend(words("chain 32 api drop"));
    }
    let (m, log) = run_probe(dir.path(), &[], &steps).await;
    let stdout = support::text(&m.output.stdout);
    let alive: usize = stdout
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(
        alive, 10_000,
        "every node kept alive counts, held or not\n{stdout}"
    );
    assert!(stdout.ends_with("chain 0 handle_limit\n"), "{stdout}");
    within_bounds("kept-alive chains", &m, &log, 16 << 20);
}

/// A derivation naming 20,000 prefixes, or prefixes of 100 KiB, is refused before it is
/// parsed; one at the caps derives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_derivations_are_refused_fast() {
    let dir = tempfile::tempdir().unwrap();
    let (m, log) = run_probe(
        dir.path(),
        &[],
        &words("wide 20000 16 api wide 2 100000 api wide 32 512 api"),
    )
    .await;
    let stdout = support::text(&m.output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("err invalid_attenuation 20000 path prefixes"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("err invalid_attenuation a path prefix is longer"),
        "{stdout}"
    );
    assert_eq!(lines[2], "wide ok");
    within_bounds("wide derivations", &m, &log, 64 << 10);
}

/// A denied 7 KiB path is audited with its URL and detail cut to 2 KiB each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_are_bounded_whatever_the_guest_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("/v2/{}", "p".repeat(7000));
    let steps = vec![
        "derive".into(),
        "v1".into(),
        "api".into(),
        "paths=/v1/".into(),
        "fetch".into(),
        "v1".into(),
        "GET".into(),
        path,
    ];
    let (m, log) = run_probe(dir.path(), &[], &steps).await;
    let stdout = support::text(&m.output.stdout);
    assert!(stdout.contains("err path_not_allowed"), "{stdout}");
    let denied: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "request.denied")
        .collect();
    assert_eq!(denied.len(), 1, "{log}");
    for field in ["url", "detail"] {
        let text = denied[0][field].as_str().unwrap();
        assert!(text.len() < 2100, "{field} is {} bytes", text.len());
        assert!(
            text.ends_with("more bytes]"),
            "{field} says it was cut: {text}"
        );
    }
    within_bounds("long path", &m, &log, 64 << 10);
}

/// The memory-limit outcome comes from the limiter, not from the trap's text: a guest that
/// traps in a function named `memory_grow_limit_exceeded` under a memory limit is reported as
/// trapped, and a real memory bomb as the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_outcome_is_typed_not_read_from_trap_text() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(&manifest, "version = 1\n[limits]\nmemory = \"64MiB\"\n").unwrap();
    let manifest = manifest.display().to_string();
    let (m, _) = run_probe(dir.path(), &["--manifest", &manifest], &words("fakemem")).await;
    let stderr = support::text(&m.output.stderr);
    assert_eq!(m.output.status.code(), Some(134), "{stderr}");
    assert!(stderr.contains("guest trapped"), "{stderr}");
    assert!(!stderr.contains("memory limit"), "{stderr}");
    let (m, _) = run_probe(dir.path(), &["--manifest", &manifest], &words("membomb")).await;
    let stderr = support::text(&m.output.stderr);
    assert_eq!(m.output.status.code(), Some(134), "{stderr}");
    assert!(
        stderr.contains("guest stopped: memory limit of 64"),
        "{stderr}"
    );
}
