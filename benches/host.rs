//! The host's overheads (issue: wasm host). Run with `cargo bench --bench host`.
//!
//! 1. A guest doing N sequential fetches through `urlcap:http` against N sequential GETs from
//!    native hyper-util, alternating rounds in one run; target >= 0.90x native throughput.
//! 2. `urlcap run` as a whole process (release build, warm compilation cache): wall time and
//!    peak RSS for a hello-world guest and a one-request guest, next to `wasmtime run` of the
//!    same hello-world guest when a wasmtime 48.0.8 CLI is available (`bench/compare` installs
//!    one); targets <= 8 ms and <= 24 MiB.

#[path = "../tests/support/mod.rs"]
mod support;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ProcStdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{outbound, Reply, Server};
use urlcap::egress::{EgressConfig, StaticResolver};
use urlcap::host::{SandboxSpec, Stdio, WasmHost};

const PROBE: &str = env!("URLCAP_GUEST_PROBE");
const HELLO: &str = env!("URLCAP_GUEST_HELLO");
const FETCH1: &str = env!("URLCAP_GUEST_FETCH1");
const WHTTP: &str = env!("URLCAP_GUEST_WHTTP");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A runtime with `workers` threads, and a loopback origin answering "ok" on it.
fn loopback_origin(workers: usize) -> (tokio::runtime::Runtime, Server) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(Server::http(|_| Reply::Text("ok")));
    (rt, server)
}

fn guest_vs_native() {
    const ROUNDS: usize = 11;
    const PER_ROUND: u32 = 300;
    let (rt, server) = loopback_origin(2);
    let port = server.port();
    let manifest = format!("version = 1\n[[authority]]\nname = \"api\"\norigin = \"http://127.0.0.1:{port}\"\nallow_ips = [\"127.0.0.1/32\"]\n");
    let (out, _audit) = outbound(
        &manifest,
        Arc::new(StaticResolver::new()),
        EgressConfig::default(),
    );
    let out = Arc::new(out);
    let host = WasmHost::new().unwrap();
    let command = host
        .prepare(&host.compile(&std::fs::read(PROBE).unwrap()).unwrap())
        .unwrap();
    let bare: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://127.0.0.1:{port}/v1/x").parse().unwrap();
    let mut ratios = Vec::new();
    let mut per_request = Vec::new();
    rt.block_on(async {
        for round in 0..=ROUNDS {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                let r = bare.get(uri.clone()).await.unwrap();
                r.into_body().collect().await.unwrap();
            }
            let native = start.elapsed();
            let stdio = Stdio::capture(1 << 16);
            let spec = SandboxSpec {
                args: ["probe", "repeat", &PER_ROUND.to_string(), "api", "/v1/x"]
                    .map(String::from)
                    .to_vec(),
                stdio: stdio.clone(),
                ..SandboxSpec::new(out.clone(), "bench")
            };
            let start = Instant::now();
            let outcome = host.run(&command, spec).await.unwrap();
            let guest = start.elapsed();
            assert_eq!(outcome.exit_code, 0, "{:?} {:?}", outcome, stdio.contents());
            if round > 0 {
                ratios.push(native.as_secs_f64() / guest.as_secs_f64());
                per_request.push(guest.as_secs_f64() * 1e6 / f64::from(PER_ROUND));
            }
        }
    });
    println!(
        "guest fetch loop: {:.1} us per request (instantiation included); guest/native throughput ratio median {:.3} over {ROUNDS} rounds of {PER_ROUND}; target >= 0.90",
        median(per_request),
        median(ratios)
    );
}

/// Wall time of one child process, and its peak RSS in KiB when GNU time is installed.
///
/// The RSS is read by GNU time, not from our own wait4: a child forked from this (much
/// larger) bench process starts out sharing its pages, and Linux counts them in the child's
/// peak, so only a small spawner reports the child's own peak.
fn measured(cmd: &mut Command) -> (Duration, Option<u64>) {
    let gnu_time = std::path::Path::new("/usr/bin/time");
    let start = Instant::now();
    if !gnu_time.exists() {
        let status = cmd
            .stdout(ProcStdio::null())
            .stderr(ProcStdio::null())
            .status()
            .expect("spawn");
        assert!(status.success() || status.code().is_some());
        return (start.elapsed(), None);
    }
    let mut timed = Command::new(gnu_time);
    timed
        .arg("-f")
        .arg("URLCAP_PEAK_KIB=%M")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    let out = timed
        .stdout(ProcStdio::null())
        .stderr(ProcStdio::piped())
        .output()
        .expect("spawn");
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&out.stderr);
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("URLCAP_PEAK_KIB="))
        .and_then(|v| v.trim().parse().ok());
    (elapsed, kib)
}

/// Makes the command for one measured run.
type Launch = Box<dyn Fn() -> Command>;

/// Run the commands round-robin (so machine drift hits all alike) and print each one's median
/// wall time and peak RSS.
fn startup(commands: Vec<(&str, Launch)>) {
    for (_, make) in &commands {
        measured(&mut make()); // warm the compilation cache
    }
    let mut runs: Vec<Vec<(Duration, Option<u64>)>> = vec![Vec::new(); commands.len()];
    for _ in 0..21 {
        for (i, (_, make)) in commands.iter().enumerate() {
            runs[i].push(measured(&mut make()));
        }
    }
    for ((label, _), runs) in commands.iter().zip(runs) {
        let wall = median(runs.iter().map(|r| r.0.as_secs_f64() * 1e3).collect());
        let rss: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.1)
            .map(|k| k as f64 / 1024.0)
            .collect();
        let rss = if rss.is_empty() {
            "n/a (install GNU time)".to_string()
        } else {
            format!("{:5.1} MiB", median(rss))
        };
        println!("startup {label:<50} median wall {wall:6.2} ms, peak RSS {rss}");
    }
}

fn wasmtime_cli() -> Option<PathBuf> {
    let home = std::env::var("HOME").ok()?;
    let cached = PathBuf::from(home).join(".cache/urlcap-bench/wasmtime-48.0.8/bin/wasmtime");
    if cached.exists() {
        return Some(cached);
    }
    let out = Command::new("wasmtime").arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .contains("48.0.8")
        .then(|| PathBuf::from("wasmtime"))
}

fn process_startup() {
    let urlcap = env!("CARGO_BIN_EXE_urlcap");
    // The origin runs on its own thread and runtime for the rest of the process.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = Server::http(|_| Reply::Text("ok")).await;
            tx.send(server.port()).unwrap();
            std::future::pending::<()>().await;
        })
    });
    let grant = format!("api=GET http://127.0.0.1:{}/", rx.recv().unwrap());
    let mut commands: Vec<(&str, Launch)> = vec![
        (
            "urlcap run hello.wasm",
            Box::new(move || {
                let mut c = Command::new(urlcap);
                c.args(["run", "--audit", "/dev/null", HELLO]);
                c
            }),
        ),
        (
            "urlcap run fetch1.wasm (one request)",
            Box::new(move || {
                let mut c = Command::new(urlcap);
                c.args(support::run_args(
                    &grant,
                    Path::new("/dev/null"),
                    FETCH1,
                    &["api", "/"],
                ));
                c
            }),
        ),
    ];
    match wasmtime_cli() {
        Some(wasmtime) => commands.push((
            "wasmtime run hello.wasm (wasmtime-cli 48.0.8)",
            Box::new(move || {
                let mut c = Command::new(&wasmtime);
                c.args(["run", HELLO]);
                c
            }),
        )),
        None => println!(
            "startup wasmtime run: skipped (no wasmtime 48.0.8 CLI; bench/compare installs one)"
        ),
    }
    startup(commands);
}

/// Nested spawn + first call of a small child (the hello guest), from inside a parent guest:
/// the parent runs it N times; the per-spawn cost is the parent's run time over N.
fn nested_spawn() {
    const N: u32 = 500;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (out, _audit) = outbound(
        "version = 1\n",
        Arc::new(StaticResolver::new()),
        EgressConfig::default(),
    );
    let out = Arc::new(out);
    let host = WasmHost::new().unwrap();
    let command = host.command_for(&std::fs::read(PROBE).unwrap()).unwrap();
    let dir = std::path::Path::new(HELLO)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let mut per_spawn = Vec::new();
    rt.block_on(async {
        for round in 0..=5 {
            let spec = SandboxSpec {
                args: [
                    "probe".to_string(),
                    "spawnloop".into(),
                    N.to_string(),
                    "/guests/hello.wasm".into(),
                ]
                .to_vec(),
                dirs: vec![(dir.clone(), "/guests".into())],
                stdio: Stdio::capture(1 << 16),
                ..SandboxSpec::new(out.clone(), "bench")
            };
            let start = Instant::now();
            let outcome = host.run(&command, spec).await.unwrap();
            assert_eq!(outcome.exit_code, 0, "{outcome:?}");
            if round > 0 {
                per_spawn.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(N));
            }
        }
    });
    let size = std::fs::metadata(HELLO).unwrap().len();
    println!(
        "nested spawn + first call of a {} KiB child: median {:.1} us per spawn (target <= 50 us)",
        size / 1024,
        median(per_spawn)
    );
}

/// One unmodified wasi:http guest doing N sequential GETs, whole process: `urlcap run` (pooled,
/// vetted egress) vs `wasmtime run -S http` (a new connection per request), next to N native
/// keep-alive GETs; rounds interleaved. Targets: >= 2.5x wasmtime CLI, >= 0.75x native.
fn wasi_http_guest() {
    const N: usize = 200;
    const ROUNDS: usize = 7;
    let Some(wasmtime) = wasmtime_cli() else {
        println!("wasi:http guest: skipped (no wasmtime 48.0.8 CLI; bench/compare installs one)");
        return;
    };
    let (rt, server) = loopback_origin(1);
    let port = server.port();
    let authority = format!("127.0.0.1:{port}");
    let mut guest_args: Vec<String> = Vec::new();
    for i in 0..N {
        if i > 0 {
            guest_args.push("--next".into());
        }
        guest_args.extend(["GET", "http", &authority, "/v1/x"].map(String::from));
    }
    let grant = format!("api=GET http://{authority}/v1/");
    let urlcap = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_urlcap"));
        c.args(support::run_args(
            &grant,
            Path::new("/dev/null"),
            WHTTP,
            &[],
        ))
        .args(&guest_args);
        c
    };
    let wasmtime_run = || {
        let mut c = Command::new(&wasmtime);
        c.args(["run", "-S", "http", "-S", "inherit-network", WHTTP])
            .args(&guest_args);
        c
    };
    let bare: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{authority}/v1/x").parse().unwrap();
    for make in [&urlcap as &dyn Fn() -> Command, &wasmtime_run] {
        let out = make().output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.lines().filter(|l| l.starts_with("ok 200")).count(),
            N,
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (mut ours, mut theirs, mut native) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        assert!(urlcap()
            .stdout(ProcStdio::null())
            .status()
            .unwrap()
            .success());
        ours.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        assert!(wasmtime_run()
            .stdout(ProcStdio::null())
            .status()
            .unwrap()
            .success());
        theirs.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        rt.block_on(async {
            for _ in 0..N {
                let r = bare.get(uri.clone()).await.unwrap();
                r.into_body().collect().await.unwrap();
            }
        });
        native.push(start.elapsed().as_secs_f64());
    }
    let (ours, theirs, native) = (median(ours), median(theirs), median(native));
    let per = |t: f64| t * 1e6 / N as f64;
    println!(
        "wasi:http guest, {N} GETs per process: urlcap run {:.0} us/request, wasmtime run -S http {:.0} us/request, native keep-alive {:.0} us/request",
        per(ours),
        per(theirs),
        per(native)
    );
    println!(
        "wasi:http guest throughput: {:.2}x wasmtime CLI (target >= 2.5), {:.2}x native (target >= 0.75; whole process incl. start-up)",
        theirs / ours,
        native / ours
    );
}

fn main() {
    // `cargo bench --bench host -- spawn` (or `fetch`, `startup`) runs one part.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    if wanted("spawn") {
        nested_spawn();
    }
    if wanted("fetch") {
        guest_vs_native();
    }
    if wanted("startup") {
        process_startup();
    }
    if wanted("whttp") {
        wasi_http_guest();
    }
}
