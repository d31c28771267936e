//! The `rtt` part: requests to a TLS origin at real round-trip times, where what a request
//! costs is how many round trips it takes (pooling, TLS, HTTP/2), not its CPU.
//!
//! Loopback has no latency and this machine's kernel has no netem, so every client reaches the
//! origin through [`Relay`], an in-process TCP relay that holds each chunk for RTT/2 in each
//! direction and each new connection for one RTT (the TCP handshake). The origin is a loopback
//! hyper server with a certificate for `127.0.0.1` from a test CA, which the clients trust
//! through the grant's `ca_file` (urlcap) or their own root store (native): no system trust
//! store is touched. `wasmtime run -S http` trusts only the webpki roots, so it is compared
//! over plain HTTP through the same relay.

use super::support::{self, Pki, Reply, Server};
use super::{judged, median, row, wasmtime_cli, Row, PROBE, WHTTP};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ProcStdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use urlcap::audit::AuditLog;
use urlcap::egress::StaticResolver;
use urlcap::host::Stdio;
use urlcap::manifest::{Config, ProcessSecrets};
use urlcap::{Guest, Sandbox};

/// Concurrent clients in the concurrency rows.
const CONCURRENT: usize = 16;

/// Measured rounds per round-trip time (after one warm-up round); every client runs once per
/// round, in the same order, so drift hits all alike.
const ROUNDS: usize = 5;

/// A loopback TCP relay to `upstream` that behaves like a link with this round-trip time.
struct Relay {
    port: u16,
    /// Connections accepted so far (how many a client opened).
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    fn start(upstream: SocketAddr, rtt: Duration) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = connections.clone();
        relay_thread(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                relay_thread(move || {
                    // The TCP handshake: nothing the client sends moves for one round trip.
                    precise_sleep(rtt);
                    let Ok(server) = TcpStream::connect(upstream) else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    delayed_pipe(client, server, rtt / 2);
                    delayed_pipe(s2, c2, rtt / 2);
                });
            }
        });
        Relay { port, connections }
    }
}

/// Copy `from` to `to`, each chunk written `delay` after it was read; order is kept and reading
/// never waits for writing (the link is not a stop-and-wait one). End of stream is passed on.
fn delayed_pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>();
    relay_thread(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let chunk = match from.read(&mut buf) {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            };
            let end = chunk.is_none();
            if tx.send((Instant::now() + delay, chunk)).is_err() || end {
                return;
            }
        }
    });
    relay_thread(move || {
        while let Ok((due, chunk)) = rx.recv() {
            precise_sleep(due.saturating_duration_since(Instant::now()));
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).is_err() {
                        let _ = to.shutdown(Shutdown::Both);
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
            }
        }
    });
}

/// A thread of the relay, named so that [`profile`] can tell its CPU time from the clients'.
fn relay_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name("rtt-relay".into())
        .spawn(f)
        .unwrap();
}

/// Sleep this long with the thread's timer slack at 1 ns (Linux's default 50 µs would be a
/// tenth of a 1 ms link's one-way delay).
fn precise_sleep(d: Duration) {
    if d.is_zero() {
        return;
    }
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    std::thread::sleep(d);
}

/// The origins, on a thread and runtime of their own for the rest of the process: TLS offering
/// only HTTP/1.1, TLS offering only HTTP/2, and plain HTTP. `/v1/close` answers with
/// `Connection: close` (a new connection for every request); anything else `ok`.
fn origins(pki: Arc<Pki>) -> [SocketAddr; 3] {
    let (tx, rx) = mpsc::channel();
    let origin = std::thread::Builder::new().name("rtt-origin".into());
    let spawned = origin.spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let handler = |r: &support::Recorded| match r.target.as_str() {
                "/v1/close" => {
                    Reply::With(200, vec![("connection", "close".into())], b"ok".to_vec())
                }
                _ => Reply::Text("ok"),
            };
            let servers = [
                Server::https_alpn(&pki, &["http/1.1"], handler).await,
                Server::https_alpn(&pki, &["h2"], handler).await,
                Server::http(handler).await,
            ];
            for server in &servers {
                server.stop_recording();
            }
            tx.send(servers.each_ref().map(|s| s.addr)).unwrap();
            std::future::pending::<()>().await
        });
    });
    spawned.unwrap();
    rx.recv().unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    H1,
    H2,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
        }
    }
}

type NativeClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// hyper-util's pooled client over hyper-rustls, trusting only the test CA, offering HTTP/2 and
/// HTTP/1.1 (the origin's ALPN decides), as a native program would use it.
fn native_client(pki: &Pki) -> NativeClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    // As reqwest and urlcap's egress do: no Nagle delay behind a small write.
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new()).build(https)
}

async fn native_gets(client: &NativeClient, uri: &http::Uri, n: usize) {
    for _ in 0..n {
        let r = client.get(uri.clone()).await.unwrap();
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
    }
}

/// `tasks` concurrent clients of one pool, each doing `n` sequential GETs.
async fn native_concurrent(client: &NativeClient, uri: &http::Uri, tasks: usize, n: usize) {
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (client, uri) = (client.clone(), uri.clone());
            tokio::spawn(async move { native_gets(&client, &uri, n).await })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
}

/// A manifest granting `api` (GET on `/v1/`) at this TLS relay, trusting the test CA.
fn tls_manifest(dir: &Path, port: u16, ca: &str) -> PathBuf {
    let text = format!(
        "version = 1\n[[authority]]\nname = \"api\"\norigin = \"https://127.0.0.1:{port}\"\npaths = [\"/v1/\"]\nmethods = [\"GET\"]\nca_file = \"{ca}\"\nallow_ips = [\"127.0.0.1/32\"]\n"
    );
    let path = dir.join(format!("rtt-{port}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn sandbox_for(manifest: &Path) -> Sandbox {
    let text = std::fs::read_to_string(manifest).unwrap();
    let config = Config::parse(&text, manifest, &ProcessSecrets).unwrap();
    Sandbox::builder(config)
        .audit(Arc::new(AuditLog::new(Box::new(std::io::sink()))))
        .resolver(Arc::new(StaticResolver::new()))
        .id("bench-rtt")
        .build()
        .unwrap()
}

/// The probe guest doing `n` sequential `urlcap:http` GETs, in `sandbox` (instantiation
/// included).
async fn probe_gets(sandbox: Arc<Sandbox>, command: Arc<urlcap::sandbox::Command>, n: usize) {
    let stdio = Stdio::capture(1 << 16);
    let guest = Guest {
        args: ["probe", "repeat", &n.to_string(), "api", "/v1/x"]
            .map(String::from)
            .to_vec(),
        stdio: stdio.clone(),
        ..Guest::named("probe")
    };
    let outcome = sandbox.run(&command, guest).await.unwrap();
    assert_eq!(outcome.exit_code, 0, "{outcome:?} {:?}", stdio.contents());
}

async fn probe_concurrent(
    sandbox: &Arc<Sandbox>,
    command: &Arc<urlcap::sandbox::Command>,
    guests: usize,
    n: usize,
) {
    let handles: Vec<_> = (0..guests)
        .map(|_| tokio::spawn(probe_gets(sandbox.clone(), command.clone(), n)))
        .collect();
    for h in handles {
        h.await.unwrap();
    }
}

/// A `whttp` process whose requests the guest times itself: `command` up to the guest's
/// arguments, a warm-up group that opens the connections the measured ones will use, then
/// `clock`, the measured groups (`requests` requests in all) and `clock` again. What a process
/// costs outside its requests (start-up, the first connection, exit) falls outside the two
/// readings (a slope between a short and a long run would let a few milliseconds of start-up
/// jitter in one of them read as an impossible request faster than its round trip).
struct Timed {
    command: Command,
    warm_up: Vec<String>,
    measured: Vec<Vec<String>>,
    requests: usize,
    /// What each non-`clock` group must print, in order (every request answered).
    answers: Vec<String>,
}

impl Timed {
    /// `n` sequential GETs, each a group of its own, each answered `ok 200 ok`.
    fn gets(command: Command, get: &[&str], n: usize) -> Timed {
        let get: Vec<String> = get.iter().map(|a| a.to_string()).collect();
        Timed {
            command,
            warm_up: get.clone(),
            measured: vec![get; n],
            requests: n,
            answers: vec!["ok 200 ok".into(); n + 1],
        }
    }

    /// One `clients CONCURRENT n ...` group: `n` GETs with `CONCURRENT` in flight, after a
    /// warm-up round that opens their connections.
    fn clients(command: Command, target: &[&str], n: usize) -> Timed {
        let group = |total: usize| {
            let mut g = vec![
                "clients".to_string(),
                CONCURRENT.to_string(),
                total.to_string(),
            ];
            g.extend(target.iter().map(|a| a.to_string()));
            g
        };
        Timed {
            command,
            warm_up: group(CONCURRENT),
            measured: vec![group(n)],
            requests: n,
            answers: vec![format!("clients {CONCURRENT} 0"), format!("clients {n} 0")],
        }
    }

    /// Seconds per measured request, by the guest's monotonic clock.
    fn per_request(mut self) -> f64 {
        let clock = vec!["clock".to_string()];
        let groups: Vec<Vec<&str>> = std::iter::once(&self.warm_up)
            .chain(std::iter::once(&clock))
            .chain(&self.measured)
            .chain(std::iter::once(&clock))
            .map(|g| g.iter().map(String::as_str).collect())
            .collect();
        let args = support::whttp_groups(groups.iter().map(Vec::as_slice));
        let out = self
            .command
            .args(args)
            .stderr(ProcStdio::piped())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let fail = || {
            format!(
                "{:?}: {text}{}",
                self.command,
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let (clocks, answers): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|l| l.starts_with("clock "));
        assert_eq!(answers, self.answers, "{}", fail());
        let ns: Vec<u64> = clocks
            .iter()
            .map(|l| l["clock ".len()..].parse().unwrap())
            .collect();
        assert_eq!(ns.len(), 2, "{}", fail());
        (ns[1] - ns[0]) as f64 / 1e9 / self.requests as f64
    }
}

/// How much work one round does at a round-trip time: (sequential requests per in-process
/// run, requests per concurrent client, measured requests per process run, measured requests
/// in all per process run of 16 clients).
fn sizes(rtt_ms: u64) -> (usize, usize, usize, usize) {
    match rtt_ms {
        0 => (300, 60, 300, 960),
        1 => (100, 40, 100, 640),
        _ => (20, 10, 20, 160),
    }
}

/// One client's results in one round: seconds per request, sequential and with 16 at once
/// (the latter as wall time over all requests).
#[derive(Default)]
struct Series {
    seq: Vec<f64>,
    conc: Vec<f64>,
}

fn ms(s: f64) -> String {
    format!("{:.2} ms", s * 1e3)
}

fn rate(s: f64) -> String {
    format!("{:.1}k req/s", 1.0 / s / 1e3)
}

/// Median of per-round ratios `base[i] / other[i]` (throughput of `other` relative to `base`).
fn ratio(base: &[f64], other: &[f64]) -> f64 {
    median(base.iter().zip(other).map(|(b, o)| b / o).collect())
}

/// The in-process clients' runtime: two workers, named for [`profile`].
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rtt-client")
        .enable_all()
        .build()
        .unwrap()
}

pub(super) fn rtt(rows: &mut Vec<Row>) {
    let urlcap = env!("CARGO_BIN_EXE_urlcap");
    let wasmtime = wasmtime_cli();
    let pki = Arc::new(Pki::new(&["127.0.0.1"]));
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let [h1_origin, h2_origin, plain_origin] = origins(pki.clone());
    let rt = client_runtime();
    let probe_wasm = std::fs::read(PROBE).unwrap();

    for rtt_ms in [0u64, 1, 10] {
        eprintln!("bench/compare: rtt {rtt_ms} ms...");
        let rtt = Duration::from_millis(rtt_ms);
        let (seq_n, conc_n, proc_n, proc_conc_n) = sizes(rtt_ms);
        let relay = |to| Relay::start(to, rtt).port;
        let ports = [(Proto::H1, relay(h1_origin)), (Proto::H2, relay(h2_origin))];
        let plain_port = relay(plain_origin);
        let natives: Vec<NativeClient> = ports.iter().map(|_| native_client(&pki)).collect();
        let manifests: Vec<PathBuf> = ports
            .iter()
            .map(|(_, port)| tls_manifest(dir.path(), *port, &ca))
            .collect();
        let sandboxes: Vec<Arc<Sandbox>> =
            manifests.iter().map(|m| Arc::new(sandbox_for(m))).collect();
        let commands: Vec<Arc<urlcap::sandbox::Command>> = sandboxes
            .iter()
            .map(|s| Arc::new(s.compile(&probe_wasm).unwrap()))
            .collect();
        let uris: Vec<http::Uri> = ports
            .iter()
            .map(|(_, p)| format!("https://127.0.0.1:{p}/v1/x").parse().unwrap())
            .collect();
        let whttp_tls = |manifest: &Path, port: u16, path: &'static str| {
            let manifest = manifest.to_path_buf();
            move |n: usize, concurrent: bool| {
                let authority = format!("127.0.0.1:{port}");
                let mut c = Command::new(urlcap);
                c.args(["run", "--audit", "/dev/null", "--manifest"])
                    .arg(&manifest)
                    .args([WHTTP, "--"]);
                if concurrent {
                    Timed::clients(c, &["https", &authority, path], n)
                } else {
                    Timed::gets(c, &["GET", "https", &authority, path], n)
                }
            }
        };
        let whttps: Vec<_> = ports
            .iter()
            .zip(&manifests)
            .map(|((_, port), m)| whttp_tls(m, *port, "/v1/x"))
            .collect();
        let whttp_close = whttp_tls(&manifests[0], ports[0].1, "/v1/close");
        let plain_authority = format!("127.0.0.1:{plain_port}");
        let plain_get = ["GET", "http", plain_authority.as_str(), "/v1/x"];
        let whttp_plain = |n: usize| {
            let mut c = Command::new(urlcap);
            let grant = format!("api=GET http://{plain_authority}/v1/");
            c.args(support::run_args(
                &grant,
                Path::new("/dev/null"),
                WHTTP,
                &[],
            ));
            Timed::gets(c, &plain_get, n)
        };
        let wasmtime_plain = |n: usize| {
            let mut c = Command::new(wasmtime.as_ref().unwrap());
            c.args(["run", "-S", "http", "-S", "inherit-network", WHTTP]);
            Timed::gets(c, &plain_get, n)
        };

        // [proto] -> series, per client kind.
        let mut native: [Series; 2] = Default::default();
        let mut probe: [Series; 2] = Default::default();
        let mut whttp: [Series; 2] = Default::default();
        let (mut close, mut plain_ours, mut plain_theirs) = (vec![], vec![], vec![]);
        for round in 0..=ROUNDS {
            let keep = round > 0;
            for p in 0..2 {
                let (client, uri) = (&natives[p], &uris[p]);
                let (sandbox, command) = (&sandboxes[p], &commands[p]);
                let t = Instant::now();
                rt.block_on(native_gets(client, uri, seq_n));
                let native_seq = t.elapsed().as_secs_f64() / seq_n as f64;
                let t = Instant::now();
                rt.block_on(probe_gets(sandbox.clone(), command.clone(), seq_n));
                let probe_seq = t.elapsed().as_secs_f64() / seq_n as f64;
                let t = Instant::now();
                rt.block_on(native_concurrent(client, uri, CONCURRENT, conc_n));
                let native_conc = t.elapsed().as_secs_f64() / (CONCURRENT * conc_n) as f64;
                let t = Instant::now();
                rt.block_on(probe_concurrent(sandbox, command, CONCURRENT, conc_n));
                let probe_conc = t.elapsed().as_secs_f64() / (CONCURRENT * conc_n) as f64;
                let w = &whttps[p];
                let whttp_seq = w(proc_n, false).per_request();
                let whttp_conc = w(proc_conc_n, true).per_request();
                if keep {
                    native[p].seq.push(native_seq);
                    native[p].conc.push(native_conc);
                    probe[p].seq.push(probe_seq);
                    probe[p].conc.push(probe_conc);
                    whttp[p].seq.push(whttp_seq);
                    whttp[p].conc.push(whttp_conc);
                }
            }
            let closing = whttp_close(proc_n, false).per_request();
            let ours = whttp_plain(proc_n).per_request();
            let theirs = wasmtime
                .is_some()
                .then(|| wasmtime_plain(proc_n).per_request());
            if keep {
                close.push(closing);
                plain_ours.push(ours);
                plain_theirs.extend(theirs);
            }
        }

        let at = format!("RTT {rtt_ms} ms");
        // One row per client: HTTP/1.1 and HTTP/2, sequential and 16 at once, each against
        // native as the median of per-round ratios (`None`: this is the native row).
        let mut cells = |name: &str, series: Option<&[Series; 2]>, judge: Option<(&str, f64)>| {
            let mut parts = Vec::new();
            let mut worst = f64::INFINITY;
            for (p, (proto, _)) in ports.iter().enumerate() {
                let s = series.map_or(&native[p], |s| &s[p]);
                let (seq, conc) = (median(s.seq.clone()), median(s.conc.clone()));
                let (seq, conc) = (ms(seq), rate(conc));
                let proto = proto.label();
                if series.is_none() {
                    parts.push(format!("{proto}: {seq} sequential, {conc} with 16"));
                    continue;
                }
                let (rs, rc) = (
                    ratio(&native[p].seq, &s.seq),
                    ratio(&native[p].conc, &s.conc),
                );
                worst = worst.min(rs).min(rc);
                parts.push(format!("{proto}: {seq} = {rs:.2}×, {conc} = {rc:.2}×"));
            }
            let measure = format!("{at}, TLS: {name}");
            let result = parts.join("; ");
            rows.push(match judge {
                Some((target, bound)) => judged(measure, result, target, worst >= bound),
                None => row(measure, result),
            });
        };
        cells(
            "native hyper-util keep-alive (in-process; sequential, and 16 clients at once)",
            None,
            None,
        );
        let native_bound = match rtt_ms {
            1 => Some(("≥ 0.95× native", 0.95)),
            10 => Some(("≥ 0.90× native", 0.90)),
            _ => None,
        };
        cells(
            "native-API guest (probe, in-process; 16 at once: 16 guests in one sandbox)",
            Some(&probe),
            native_bound,
        );
        cells(
            "wasi:http guest (whttp under `urlcap run`; 16 at once: `clients 16`, one guest keeping 16 requests in flight)",
            Some(&whttp),
            (rtt_ms == 10).then_some(("≥ 0.90× native", 0.90)),
        );
        let pooled_vs_close = ratio(&close, &whttp[0].seq);
        let result = format!(
            "{} per request = pooled ({}) is {pooled_vs_close:.2}× faster",
            ms(median(close.clone())),
            ms(median(whttp[0].seq.clone()))
        );
        let measure = format!("{at}, TLS HTTP/1.1: whttp under `urlcap run`, a new connection per request (origin answers `Connection: close`)");
        rows.push(if rtt_ms == 1 {
            judged(measure, result, "pooled ≥ 2.5×", pooled_vs_close >= 2.5)
        } else {
            row(measure, result)
        });
        let measure = format!("{at}, plain HTTP/1.1: whttp under `urlcap run` vs `wasmtime run -S http` (a connection per request)");
        if plain_theirs.is_empty() {
            rows.push(row(measure, "skipped: no wasmtime 48.0.8 CLI"));
        } else {
            let r = ratio(&plain_theirs, &plain_ours);
            let result = format!(
                "{} vs {} per request = {r:.2}×",
                ms(median(plain_ours.clone())),
                ms(median(plain_theirs.clone()))
            );
            rows.push(if rtt_ms == 1 {
                judged(measure, result, "≥ 1.8×", r >= 1.8)
            } else {
                row(measure, result)
            });
        }
    }
}

/// Set to `CLIENT PROTO CLIENTS N [RTT_MS]` (CLIENT `native` or `probe`, PROTO `h1` or `h2`;
/// RTT 0 when not given) to run one in-process case of the `rtt` part alone: `CLIENTS` clients
/// at once (each a hyper-util task, or a probe guest in the one sandbox) making `N` requests in
/// all, after a warm-up. It prints the wall time and the CPU time per request, in all and by
/// thread (the origin, the relay, the clients' runtime), which says which side of the rig
/// bounds it, and the connections the client opened; run it under `perf record` to see where
/// the clients' share goes.
pub(super) const PROFILE: &str = "URLCAP_BENCH_RTT_PROFILE";

/// CPU nanoseconds so far of this process's live threads, summed by thread name.
fn cpu_by_thread() -> std::collections::BTreeMap<String, u64> {
    let mut by = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
        let ns: u64 = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        *by.entry(read("comm").trim().to_string()).or_insert(0) += ns;
    }
    by
}

/// User + system CPU seconds of the whole process (threads that ended included).
fn process_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

pub(super) fn profile(spec: &str) {
    let words: Vec<&str> = spec.split_whitespace().collect();
    let (client, proto, clients, n, rtt_ms) = match words[..] {
        [client, proto, clients, n] => (client, proto, clients, n, "0"),
        [client, proto, clients, n, rtt] => (client, proto, clients, n, rtt),
        _ => panic!("{PROFILE}: expected `CLIENT PROTO CLIENTS N [RTT_MS]`, got {spec:?}"),
    };
    let (clients, n): (usize, usize) = (clients.parse().unwrap(), n.parse().unwrap());
    let rtt = Duration::from_millis(rtt_ms.parse().unwrap());
    let per_client = n / clients;
    let pki = Arc::new(Pki::new(&["127.0.0.1"]));
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let [h1_origin, h2_origin, _] = origins(pki.clone());
    let origin = if proto == "h2" { h2_origin } else { h1_origin };
    let relay = Relay::start(origin, rtt);
    let port = relay.port;
    let rt = client_runtime();
    let run: Box<dyn Fn(usize)> = match client {
        "native" => {
            let native = native_client(&pki);
            let uri: http::Uri = format!("https://127.0.0.1:{port}/v1/x").parse().unwrap();
            Box::new(move |per| rt.block_on(native_concurrent(&native, &uri, clients, per)))
        }
        "probe" => {
            let sandbox = Arc::new(sandbox_for(&tls_manifest(dir.path(), port, &ca)));
            let command = Arc::new(sandbox.compile(&std::fs::read(PROBE).unwrap()).unwrap());
            Box::new(move |per| rt.block_on(probe_concurrent(&sandbox, &command, clients, per)))
        }
        other => panic!("{PROFILE}: no client {other:?} (native, probe)"),
    };
    run(per_client.min(100));
    let (threads, cpu, start) = (cpu_by_thread(), process_cpu(), Instant::now());
    run(per_client);
    let wall = start.elapsed().as_secs_f64();
    let (cpu, after) = (process_cpu() - cpu, cpu_by_thread());
    let requests = (per_client * clients) as f64;
    let us = |s: f64| s * 1e6 / requests;
    let connections = relay.connections.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{client} {proto} {clients} at once, RTT {rtt_ms} ms, {requests} requests: wall {:.1} µs/request ({:.1}k requests/s), CPU {:.1} µs/request; {connections} connections",
        us(wall),
        requests / wall / 1e3,
        us(cpu)
    );
    for (name, ns) in after {
        let spent = ns.saturating_sub(threads.get(&name).copied().unwrap_or(0));
        if spent > 0 {
            println!("  {name}: {:.1} µs/request", us(spent as f64 / 1e9));
        }
    }
}
