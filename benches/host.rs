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
use std::path::PathBuf;
use std::process::{Command, Stdio as ProcStdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{outbound, Reply, Server};
use urlcap::egress::{EgressConfig, StaticResolver};
use urlcap::host::{SandboxSpec, Stdio, WasmHost};

const PROBE: &str = env!("URLCAP_GUEST_PROBE");
const HELLO: &str = env!("URLCAP_GUEST_HELLO");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn guest_vs_native() {
    const ROUNDS: usize = 11;
    const PER_ROUND: u32 = 300;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(Server::http(|_| Reply::Text("ok")));
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

/// Wall time and peak RSS (KiB) of one child process.
// The child is reaped by wait4 (which also reports its rusage), not by Child::wait.
#[allow(unsafe_code, clippy::zombie_processes)]
fn measured(cmd: &mut Command) -> (Duration, u64) {
    let start = Instant::now();
    let child = cmd
        .stdout(ProcStdio::null())
        .stderr(ProcStdio::null())
        .spawn()
        .expect("spawn");
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we just spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    (start.elapsed(), usage.ru_maxrss as u64)
}

fn startup(label: &str, mut make: impl FnMut() -> Command) {
    measured(&mut make()); // warm the compilation cache
    let runs: Vec<(Duration, u64)> = (0..21).map(|_| measured(&mut make())).collect();
    let wall = median(runs.iter().map(|r| r.0.as_secs_f64() * 1e3).collect());
    let rss = median(runs.iter().map(|r| r.1 as f64 / 1024.0).collect());
    println!("startup {label:<44} median wall {wall:6.2} ms, peak RSS {rss:5.1} MiB");
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
    startup("urlcap run hello.wasm", || {
        let mut c = Command::new(urlcap);
        c.args(["run", "--audit", "/dev/null", HELLO]);
        c
    });
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
    startup("urlcap run probe.wasm (one request)", || {
        let mut c = Command::new(urlcap);
        c.args([
            "run",
            "--allow",
            &grant,
            "--allow-ip",
            "127.0.0.1",
            "--audit",
            "/dev/null",
            PROBE,
            "--",
            "fetch",
            "api",
            "GET",
            "/",
        ]);
        c
    });
    match wasmtime_cli() {
        Some(wasmtime) => startup("wasmtime run hello.wasm (wasmtime-cli 48.0.8)", || {
            let mut c = Command::new(&wasmtime);
            c.args(["run", HELLO]);
            c
        }),
        None => println!(
            "startup wasmtime run: skipped (no wasmtime 48.0.8 CLI; bench/compare installs one)"
        ),
    }
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
}
