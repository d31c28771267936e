//! `urlcap serve` against `wasmtime serve` (the wasmtime 48.0.8 CLI) on the very same component
//! (fixtures/guests/whandler, which imports only WASI), on loopback, with a load generator of
//! its own (hyper HTTP/1.1 keep-alive clients, one connection per concurrent client):
//!
//! - `hello`: the handler answers at once; requests/s and p50/p99 latency at concurrency 1, 16
//!   and 64;
//! - `proxy`: each incoming request makes one outgoing GET to a loopback origin in this
//!   process (urlcap: through its policy and pooled, vetted egress; wasmtime: its default
//!   client, a new connection per request);
//! - idle RSS of each server after start-up, and its RSS growth while 64 requests are in
//!   flight, per request.
//!
//! Run it with `cargo bench --bench serve` (needs the wasmtime CLI at
//! `~/.cache/urlcap-bench/wasmtime-48.0.8/bin/wasmtime`, or `URLCAP_WASMTIME_CLI`; `bench/compare`
//! and `./scripts/test` install it). `URLCAP_SERVE_BENCH_SECS` sets the seconds measured per
//! cell (default 3); `URLCAP_SERVE_BENCH_ONLY=hello` or `proxy` runs one workload. The two servers are measured alternately, cell by cell and twice over, so
//! drift on a busy machine hits both alike: the ratios within a run are what count.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WHANDLER: &str = env!("URLCAP_GUEST_WHANDLER");

/// A server under test, killed when dropped.
struct Served {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn urlcap(origin: SocketAddr) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_urlcap"))
            .args(["serve", "--addr", "127.0.0.1:0", "--audit", "/dev/null"])
            .args(["--access-log", "/dev/null"])
            .args(["--allow", &format!("origin=GET http://{origin}/")])
            .args(["--allow-ip", "127.0.0.1", WHANDLER])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("urlcap runs");
        let first = BufReader::new(child.stdout.take().expect("piped"))
            .lines()
            .next()
            .and_then(Result::ok)
            .expect("urlcap serve says where it listens");
        let addr = first
            .strip_prefix("urlcap serve: listening on http://")
            .and_then(|r| r.split(' ').next())
            .and_then(|a| a.parse().ok())
            .expect("an address");
        Served {
            name: "urlcap serve",
            child,
            addr,
        }
    }

    fn wasmtime(cli: &str) -> Served {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let child = Command::new(cli)
            .args(["serve", "-S", "cli", "--addr", &addr.to_string(), WHANDLER])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the wasmtime CLI runs");
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "wasmtime serve did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Served {
            name: "wasmtime serve",
            child,
            addr,
        }
    }

    /// CPU time the server has used so far (user + system), from /proc.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name (which may hold spaces) start after its ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15 of stat(5); here 11 and 12 after the ')'.
        let clock_ticks = 100; // sysconf(_SC_CLK_TCK) on Linux
        Duration::from_millis((ticks(11) + ticks(12)) * 1000 / clock_ticks)
    }

    /// (VmRSS, VmHWM) in KiB.
    fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// What one cell measured.
struct Measured {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    /// Sorted latencies, in microseconds.
    latencies: Vec<u32>,
    /// Highest RSS of the server seen while it ran, KiB.
    peak_rss: u64,
    /// The server's CPU time during the measured part, per request.
    cpu_per_request: Duration,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies[i]) / 1000.0
    }
}

/// `concurrency` clients, each on its own keep-alive connection, sending `target` one request
/// after another for `warmup` (not counted) and then `measure`.
async fn load(
    served: &Served,
    target: &str,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
) -> Measured {
    let start = Instant::now() + warmup;
    let end = start + measure;
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (addr, target) = (served.addr, target.to_string());
        clients.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            'connect: while Instant::now() < end {
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    errors += 1;
                    continue;
                };
                tokio::spawn(conn);
                while Instant::now() < end {
                    let request = http::Request::get(&target)
                        .header("host", addr.to_string())
                        .body(Empty::<Bytes>::new())
                        .expect("a request");
                    let sent = Instant::now();
                    let ok = match sender.send_request(request).await {
                        Ok(response) => {
                            let ok = response.status() == 200;
                            response.into_body().collect().await.is_ok() && ok
                        }
                        Err(_) => false,
                    };
                    if sent >= start {
                        if ok {
                            latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        } else {
                            errors += 1;
                        }
                    }
                    if !ok {
                        continue 'connect;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut peak_rss = 0;
    tokio::time::sleep_until(start.into()).await;
    let cpu_before = served.cpu();
    while Instant::now() < end {
        peak_rss = peak_rss.max(served.rss().0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for client in clients {
        let (l, e) = client.await.expect("a client task");
        latencies.extend(l);
        errors += e;
    }
    let cpu = served.cpu().saturating_sub(cpu_before);
    latencies.sort_unstable();
    Measured {
        cpu_per_request: cpu / (latencies.len().max(1) as u32),
        requests: latencies.len(),
        errors,
        elapsed: measure,
        latencies,
        peak_rss,
    }
}

/// The loopback origin of the proxy workload: 200 `ok`, keep-alive.
async fn origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn main() {
    let cli = std::env::var("URLCAP_WASMTIME_CLI").unwrap_or_else(|_| {
        format!(
            "{}/.cache/urlcap-bench/wasmtime-48.0.8/bin/wasmtime",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    assert!(
        std::path::Path::new(&cli).is_file(),
        "no wasmtime CLI at {cli}: run bench/compare or ./scripts/test once, or set URLCAP_WASMTIME_CLI"
    );
    let secs: u64 = std::env::var("URLCAP_SERVE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let measure = Duration::from_secs(secs);
    let warmup = Duration::from_millis(500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let origin = origin().await;
        let servers = [Served::urlcap(origin), Served::wasmtime(&cli)];
        // Idle: after start-up and one request each (so both have compiled and instantiated).
        let mut idle = Vec::new();
        for s in &servers {
            let _ = load(s, "/hello", 1, Duration::ZERO, Duration::from_millis(200)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            idle.push(s.rss().0);
        }
        let proxy = format!("/proxy?url=http://{origin}/");
        let cells = [
            ("hello", "/hello".to_string(), 1),
            ("hello", "/hello".to_string(), 16),
            ("hello", "/hello".to_string(), 64),
            ("proxy", proxy.clone(), 1),
            ("proxy", proxy.clone(), 16),
            ("proxy", proxy.clone(), 64),
        ];
        println!("| workload | concurrency | server | requests/s | p50 ms | p99 ms | server CPU µs/request | errors | urlcap / wasmtime (req/s) |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        let mut per_request_kib = [0f64; 2];
        // URLCAP_SERVE_BENCH_ONLY=proxy (or hello): only that workload's cells.
        let only = std::env::var("URLCAP_SERVE_BENCH_ONLY").ok();
        for (workload, target, concurrency) in &cells {
            if only.as_deref().is_some_and(|o| o != *workload) {
                continue;
            }
            // Two rounds, alternating, each server's best round kept: a burst of other work
            // on the shared machine then costs neither side a cell.
            let mut best: Vec<Option<Measured>> = vec![None, None];
            for _round in 0..2 {
                for (i, s) in servers.iter().enumerate() {
                    let m = load(s, target, *concurrency, warmup, measure).await;
                    if best[i].as_ref().is_none_or(|b| m.per_second() > b.per_second()) {
                        best[i] = Some(m);
                    }
                }
            }
            let ratio = best[0].as_ref().expect("measured").per_second()
                / best[1].as_ref().expect("measured").per_second();
            for (i, s) in servers.iter().enumerate() {
                let m = best[i].as_ref().expect("measured");
                if *workload == "hello" && *concurrency == 64 {
                    per_request_kib[i] = m.peak_rss.saturating_sub(idle[i]) as f64 / 64.0;
                }
                println!(
                    "| {workload} | {concurrency} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
                    s.name,
                    m.per_second(),
                    m.percentile(0.5),
                    m.percentile(0.99),
                    m.cpu_per_request.as_micros(),
                    m.errors,
                    if i == 0 { format!("{ratio:.2}×") } else { String::new() },
                );
            }
        }
        println!();
        for (i, s) in servers.iter().enumerate() {
            let (_, hwm) = s.rss();
            println!(
                "{}: idle RSS {:.1} MiB; RSS growth with 64 hello requests in flight {:.0} KiB per request; peak RSS {:.1} MiB",
                s.name,
                idle[i] as f64 / 1024.0,
                per_request_kib[i],
                hwm as f64 / 1024.0
            );
        }
    });
}
