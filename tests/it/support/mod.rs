//! Loopback test servers that record what arrives, and helpers to build urlcap's outbound path
//! from manifest text. Servers listen on 127.0.0.1 only.
#![allow(dead_code)]

pub mod sdk;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use urlcap::audit::AuditLog;
use urlcap::egress::{Client, EgressConfig, Resolve};
use urlcap::host::{Outcome, SandboxSpec, SandboxState, Stdio, WasmHost};
use urlcap::manifest::{Config, ProcessSecrets};
use urlcap::outbound::Outbound;
use urlcap::policy::SystemClock;
use wasmtime_wasi::p2::bindings::CommandPre;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub version: http::Version,
    pub headers: Vec<(String, String)>,
    pub conn: usize,
    pub sni: Option<String>,
    /// The TLS handshake of this request's connection resumed an earlier session.
    pub resumed: bool,
    pub body_len: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What the server does with a request.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this body.
    Text(&'static str),
    /// A status, headers and body.
    With(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Wait, then 200.
    SlowHead(Duration),
    /// Hold the response until the test adds a permit to this semaphore, then 200 `released`
    /// (a test acts while a guest is known to be waiting on this request).
    Gated(Arc<tokio::sync::Semaphore>),
    /// 200 with these headers, and a body played step by step.
    Script(Vec<(&'static str, String)>, Vec<Step>),
}

#[derive(Clone)]
pub enum Step {
    Data(usize),
    Wait(Duration),
    /// Abort the body (the connection is cut).
    Fail,
    /// Never send anything more.
    Hang,
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// What a server keeps of the requests it answers.
#[derive(Default)]
struct Log {
    requests: Mutex<Vec<Recorded>>,
    /// Cleared by [`Server::stop_recording`] (a benchmark's origin answering without end).
    off: std::sync::atomic::AtomicBool,
}

pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Log>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn http(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Server {
        Server::start(None, Arc::new(handler)).await
    }

    pub async fn https(
        pki: &Pki,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Server::start(Some(pki.server_config()), Arc::new(handler)).await
    }

    /// An https server that offers only these ALPN protocols (`["http/1.1"]`: an HTTP/1.1-only
    /// origin; `["h2"]`: HTTP/2 only).
    pub async fn https_alpn(
        pki: &Pki,
        alpn: &[&str],
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let mut cfg = (*pki.server_config()).clone();
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Server::start(Some(Arc::new(cfg)), Arc::new(handler)).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Log> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (reqs, conns) = (requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                // As servers usually are: no Nagle delay behind a small write.
                let _ = stream.set_nodelay(true);
                let conn = conns.fetch_add(1, Ordering::SeqCst) + 1;
                let (reqs, handler, tls) = (reqs.clone(), handler.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(cfg) => {
                            let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await
                            else {
                                return;
                            };
                            let tls = stream.get_ref().1;
                            let sni = tls.server_name().map(str::to_string);
                            let resumed =
                                tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                            serve(TokioIo::new(stream), conn, sni, resumed, reqs, handler).await;
                        }
                        None => serve(TokioIo::new(stream), conn, None, false, reqs, handler).await,
                    }
                });
            }
        });
        Server {
            addr,
            requests,
            connections,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.requests.lock().unwrap().clone()
    }

    /// Keep no more requests (an origin a benchmark sends hundreds of thousands to; what it
    /// records costs the machine the benchmark measures on).
    pub fn stop_recording(&self) {
        self.requests.off.store(true, Ordering::Relaxed);
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve<I>(
    io: I,
    conn: usize,
    sni: Option<String>,
    resumed: bool,
    reqs: Arc<Log>,
    handler: Handler,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (reqs, handler, sni) = (reqs.clone(), handler.clone(), sni.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body_len = body
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            let recorded = Recorded {
                method: parts.method.to_string(),
                target: parts.uri.to_string(),
                version: parts.version,
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                conn,
                sni,
                resumed,
                body_len,
            };
            if !reqs.off.load(Ordering::Relaxed) {
                reqs.requests.lock().unwrap().push(recorded.clone());
            }
            Ok::<_, std::convert::Infallible>(respond(handler(&recorded)).await)
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

async fn respond(reply: Reply) -> http::Response<ScriptBody> {
    let (status, headers, steps) = match reply {
        Reply::Text(t) => (
            200,
            vec![("content-length", t.len().to_string())],
            vec![StepBytes::Data(Bytes::from_static(t.as_bytes()))],
        ),
        Reply::With(status, mut headers, body) => {
            headers.push(("content-length", body.len().to_string()));
            (status, headers, vec![StepBytes::Data(body.into())])
        }
        Reply::SlowHead(d) => {
            tokio::time::sleep(d).await;
            (
                200,
                vec![],
                vec![StepBytes::Data(Bytes::from_static(b"late"))],
            )
        }
        Reply::Gated(gate) => {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            (
                200,
                vec![],
                vec![StepBytes::Data(Bytes::from_static(b"released"))],
            )
        }
        Reply::Script(headers, steps) => (
            200,
            headers,
            steps
                .into_iter()
                .map(|s| match s {
                    Step::Data(n) => StepBytes::Data(Bytes::from(vec![b'x'; n])),
                    Step::Wait(d) => StepBytes::Wait(d),
                    Step::Fail => StepBytes::Fail,
                    Step::Hang => StepBytes::Hang,
                })
                .collect(),
        ),
    };
    let mut builder = http::Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    builder
        .body(ScriptBody {
            steps: steps.into(),
            sleep: None,
        })
        .unwrap()
}

enum StepBytes {
    Data(Bytes),
    Wait(Duration),
    Fail,
    Hang,
}

/// A response body played step by step.
pub struct ScriptBody {
    steps: VecDeque<StepBytes>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for ScriptBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            match self.steps.pop_front() {
                None => return Poll::Ready(None),
                Some(StepBytes::Data(b)) => return Poll::Ready(Some(Ok(Frame::data(b)))),
                Some(StepBytes::Wait(d)) => self.sleep = Some(Box::pin(tokio::time::sleep(d))),
                Some(StepBytes::Fail) => {
                    return Poll::Ready(Some(Err(std::io::Error::other("scripted failure"))))
                }
                Some(StepBytes::Hang) => {
                    self.steps.push_front(StepBytes::Hang);
                    return Poll::Pending;
                }
            }
        }
    }
}

/// A private CA and a server certificate it signed.
pub struct Pki {
    pub ca_pem: String,
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: Vec<u8>,
}

impl Pki {
    pub fn new(names: &[&str]) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let leaf = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            cert: leaf.der().clone(),
            key: leaf_key.serialize_der(),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.key.clone().into());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// Write the CA certificate where a manifest's `ca_file` can name it.
    pub fn write_ca(&self, dir: &Path) -> String {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path.display().to_string()
    }
}

/// A writer tests can read back (an in-memory audit log).
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    pub fn records(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The outbound path for a manifest, with an in-memory audit log.
pub fn outbound(
    manifest: &str,
    resolver: Arc<dyn Resolve>,
    config: EgressConfig,
) -> (Outbound, SharedBuf) {
    let config_ = Config::parse(manifest, Path::new("test.toml"), &ProcessSecrets).unwrap();
    let policy = Arc::new(config_.policy(Arc::new(SystemClock::new())));
    let audit_buf = SharedBuf::default();
    let audit = Arc::new(AuditLog::new(Box::new(audit_buf.clone())));
    (
        Outbound::new(
            policy.preopens(),
            Client::new(config, resolver),
            audit,
            "test",
        ),
        audit_buf,
    )
}

/// Read a whole response body, or the denial that stopped it.
pub async fn read_body(
    response: urlcap::egress::Response,
) -> Result<Vec<u8>, urlcap::policy::Denial> {
    let collected = response.into_body().collect().await?;
    Ok(collected.to_bytes().to_vec())
}

/// A request body of `count` chunks of `size` bytes, with no declared length (so it streams).
pub fn chunks(count: usize, size: usize) -> urlcap::egress::RequestBody {
    struct Chunks(usize, usize);
    impl Body for Chunks {
        type Data = Bytes;
        type Error = urlcap::policy::Denial;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 == 0 {
                return Poll::Ready(None);
            }
            self.0 -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'y'; self.1])))))
        }
    }
    Chunks(count, size).boxed_unsync()
}

/// Run the `urlcap` binary with `args` (off the async runtime) and wait for it.
pub async fn urlcap_bin(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_urlcap"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Bytes as (lossy) text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `urlcap run` arguments: preopen `grant` with loopback allowed, audit to `audit`, run `guest`
/// with `guest_args` after `--`.
pub fn run_args(grant: &str, audit: &Path, guest: &str, guest_args: &[&str]) -> Vec<String> {
    let audit = audit.to_str().expect("a UTF-8 path");
    let mut args: Vec<String> = [
        "run",
        "--allow",
        grant,
        "--allow-ip",
        "127.0.0.1",
        "--audit",
        audit,
        guest,
        "--",
    ]
    .map(String::from)
    .to_vec();
    args.extend(guest_args.iter().map(|a| a.to_string()));
    args
}

/// One engine and one compiled probe guest (fixtures/guests/probe) per test binary.
pub fn probe() -> &'static (WasmHost, CommandPre<SandboxState>) {
    static PROBE: OnceLock<(WasmHost, CommandPre<SandboxState>)> = OnceLock::new();
    PROBE.get_or_init(|| {
        let host = WasmHost::new().unwrap();
        let wasm = std::fs::read(env!("URLCAP_GUEST_PROBE")).unwrap();
        let command = host.prepare(&host.compile(&wasm).unwrap()).unwrap();
        (host, command)
    })
}

/// Run the probe as sandbox `id` with these steps; its outcome, stdout lines and stderr.
pub async fn run_probe(
    out: Arc<Outbound>,
    id: &str,
    steps: &[&str],
    memory: Option<u64>,
    timeout: Option<Duration>,
) -> (Outcome, Vec<String>, String) {
    let stdio = Stdio::capture(1 << 20);
    let (host, command) = probe();
    let spec = SandboxSpec {
        args: std::iter::once("probe")
            .chain(steps.iter().copied())
            .map(String::from)
            .collect(),
        memory,
        timeout,
        stdio: stdio.clone(),
        ..SandboxSpec::new(out, id)
    };
    let outcome = host.run(command, spec).await.unwrap();
    let (stdout, stderr) = stdio.contents();
    (outcome, stdout.lines().map(String::from).collect(), stderr)
}

/// Request groups for the `whttp` guest, joined by `--next` into its arguments.
pub fn whttp_groups<'a>(groups: impl IntoIterator<Item = &'a [&'a str]>) -> Vec<String> {
    let mut args = Vec::new();
    for (i, group) in groups.into_iter().enumerate() {
        if i > 0 {
            args.push("--next".to_string());
        }
        args.extend(group.iter().map(|s| s.to_string()));
    }
    args
}

/// `urlcap run` arguments for the `whttp` guest with `api` (GET, POST) granted on `/v1/` of a
/// loopback port, audit to `audit`, and these request groups.
pub fn whttp_run_args(port: u16, audit: &Path, groups: &[&[&str]]) -> Vec<String> {
    let grant = format!("api=GET,POST http://127.0.0.1:{port}/v1/");
    let mut args = run_args(&grant, audit, env!("URLCAP_GUEST_WHTTP"), &[]);
    args.extend(whttp_groups(groups.iter().copied()));
    args
}

/// A finished `urlcap` process and what it cost the host.
pub struct Measured {
    pub output: std::process::Output,
    /// Peak resident set of the process, in KiB: its own `VmHWM`, sampled every few
    /// milliseconds while it runs (the high-water mark only grows, so the last sample is its
    /// peak). Not wait4's `ru_maxrss`: a child spawned with vfork semantics inherits the
    /// spawning process's high-water mark at exec, and the one test binary is far larger
    /// than what it measures.
    pub max_rss_kib: u64,
    /// User + system CPU time of the process.
    pub cpu: Duration,
    /// Wall-clock time from spawn to exit.
    pub wall: Duration,
}

/// Run the `urlcap` binary with `args` and measure its peak memory and CPU time (wait4).
pub async fn urlcap_measured(args: Vec<String>) -> Measured {
    urlcap_measured_env(args, Vec::new()).await
}

/// [`urlcap_measured`] with these environment variables added.
pub async fn urlcap_measured_env(args: Vec<String>, envs: Vec<(String, String)>) -> Measured {
    measured(args, envs, None).await
}

/// [`urlcap_measured`] with a stderr nobody reads while the process runs (a reader that
/// stopped reading): what the pipe holds is read once the process has exited. A process
/// that has not exited after 180 s is killed (its `wall` then says so).
pub async fn urlcap_measured_stderr_unread(args: Vec<String>) -> Measured {
    measured(args, Vec::new(), Some(Unread::Stderr)).await
}

/// [`urlcap_measured_stderr_unread`] for stdout.
pub async fn urlcap_measured_stdout_unread(args: Vec<String>) -> Measured {
    measured(args, Vec::new(), Some(Unread::Stdout)).await
}

/// Which of a measured process's output pipes nobody reads while it runs.
#[derive(Clone, Copy, PartialEq)]
enum Unread {
    Stdout,
    Stderr,
}

#[allow(clippy::zombie_processes)] // reaped by wait4, not Child::wait
async fn measured(
    args: Vec<String>,
    envs: Vec<(String, String)>,
    unread: Option<Unread>,
) -> Measured {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        use std::os::unix::process::ExitStatusExt;
        let started = std::time::Instant::now();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_urlcap"))
            .args(args)
            .envs(envs)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let read_all = |mut from: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                from.read_to_end(&mut v).unwrap();
                v
            })
        };
        let (out_now, mut out_later) = if unread == Some(Unread::Stdout) {
            (None, Some(out))
        } else {
            (Some(read_all(Box::new(out))), None)
        };
        let (err_now, err_later) = if unread == Some(Unread::Stderr) {
            (None, Some(err))
        } else {
            (Some(read_all(Box::new(err))), None)
        };
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = {
            let peak = peak.clone();
            std::thread::spawn(move || {
                let path = format!("/proc/{pid}/status");
                // Until the process has exited (a zombie's status has no VmHWM line).
                while let Ok(status) = std::fs::read_to_string(&path) {
                    let Some(kib) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    else {
                        break;
                    };
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let (exited, watch) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if watch.recv_timeout(Duration::from_secs(180)).is_err() {
                // SAFETY: kill sends a signal to our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        let mut status = 0;
        // Reaped here by wait4, for its rusage; `Child::wait` would only repeat it.
        // SAFETY: wait4 reaps our own child and fills the zeroed rusage it is given.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::wait4(pid, &mut status, 0, &mut usage), pid);
            usage
        };
        let wall = started.elapsed();
        let _ = exited.send(());
        watchdog.join().unwrap();
        sampler.join().unwrap();
        let stderr = match (err_now, err_later) {
            (Some(reader), _) => reader.join().unwrap(),
            (None, Some(mut err)) => {
                let mut v = Vec::new();
                err.read_to_end(&mut v).unwrap();
                v
            }
            (None, None) => unreachable!(),
        };
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        let stdout = match (out_now, out_later.as_mut()) {
            (Some(reader), _) => reader.join().unwrap(),
            (None, Some(out)) => {
                let mut v = Vec::new();
                out.read_to_end(&mut v).unwrap();
                v
            }
            (None, None) => unreachable!(),
        };
        Measured {
            output: std::process::Output {
                status: std::process::ExitStatus::from_raw(status),
                stdout,
                stderr,
            },
            max_rss_kib: peak.load(std::sync::atomic::Ordering::Relaxed),
            cpu: time(usage.ru_utime) + time(usage.ru_stime),
            wall,
        }
    })
    .await
    .unwrap()
}

/// The compile processes (`urlcap`'s nested-component compiles) whose parent is `parent`, now
/// running: their pids.
pub fn compile_processes(parent: u32) -> Vec<u32> {
    let parent = parent.to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let (_, state, ppid) = process_state(pid)?;
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let compiling = String::from_utf8_lossy(&cmdline)
                .contains(urlcap::host::compile_worker::WORKER_ARG);
            (ppid == parent && state != "Z" && compiling).then_some(pid)
        })
        .collect()
}

/// A process's (pid, state, parent pid) from `/proc/PID/stat`, if it exists.
pub fn process_state(pid: u32) -> Option<(u32, String, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: the comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split(' ');
    let state = fields.next()?.to_string();
    let ppid = fields.next()?.to_string();
    Some((pid, state, ppid))
}

/// The probe with one more core module appended: `functions` functions of `ops` arithmetic
/// instructions over 4 locals each. Admission passes it (few locals, no blocks), yet it takes
/// long to compile: what only a compile process the deadline kills can stop.
pub fn probe_with_heavy_module(functions: u32, ops: u32, tag: u8) -> Vec<u8> {
    use wasm_encoder::Instruction as I;
    probe_with_module(functions, ops, |f, i, body| {
        body.instruction(&I::LocalGet(i % 5));
        body.instruction(&I::I64Const(i64::from(i ^ f ^ u32::from(tag))));
        body.instruction(&I::I64Mul);
        body.instruction(&I::LocalSet((i + 1) % 5));
    })
}

/// The probe with one more core module appended: `functions` functions of type (i64) -> i64
/// with 4 more i64 locals, whose bodies are `ops` times what `op(function, i, body)` adds.
pub fn probe_with_module(
    functions: u32,
    ops: u32,
    op: impl Fn(u32, u32, &mut wasm_encoder::Function),
) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Function, FunctionSection, Instruction as I, Module, TypeSection, ValType,
    };
    let mut types = TypeSection::new();
    types.ty().function([ValType::I64], [ValType::I64]);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for f in 0..functions {
        funcs.function(0);
        let mut body = Function::new([(4, ValType::I64)]);
        for i in 0..ops {
            op(f, i, &mut body);
        }
        body.instruction(&I::LocalGet(0));
        body.instruction(&I::End);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    probe_with_core_module(&module)
}

/// 1 KB that makes wasmparser 0.254 fail an assertion while validating it (instance types
/// nested 150 deep; an upstream bug), passing admission: it names a `wasi:cli/run` export.
pub fn compiler_crashing_component() -> Vec<u8> {
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb128(body.len(), out);
        out.extend_from_slice(body);
    }
    // An instance type holding an instance type … 150 deep, each exporting the next as "zz".
    let mut ty = vec![0x42, 0x00];
    for _ in 0..150 {
        let mut outer = vec![0x42, 0x02, 0x01];
        outer.extend_from_slice(&ty);
        outer.extend_from_slice(&[0x04, 0x00, 2, b'z', b'z', 0x05, 0x00]);
        ty = outer;
    }
    let mut types = vec![1];
    types.extend_from_slice(&ty);
    let name = b"wasi:cli/run@0.2.0";
    let mut exports = vec![1, 0x00];
    leb128(name.len(), &mut exports);
    exports.extend_from_slice(name);
    exports.extend_from_slice(&[0x05, 0x00, 0x00]);
    let mut component = vec![0, b'a', b's', b'm', 0x0d, 0, 1, 0];
    section(7, &types, &mut component);
    section(11, &exports, &mut component);
    component
}

/// The probe with one more core module appended: one function exported under `exports`
/// names. Its code is tiny, but loading it builds a table of every export.
pub fn probe_with_exports(exports: u32) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, Module,
        TypeSection,
    };
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut names = ExportSection::new();
    for i in 0..exports {
        names.export(&format!("export-{i:x}"), ExportKind::Func, 0);
    }
    let mut code = CodeSection::new();
    let mut body = Function::new([]);
    body.instruction(&Instruction::End);
    code.function(&body);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&funcs)
        .section(&names)
        .section(&code);
    probe_with_core_module(&module)
}

/// The probe with one more core module (one table and one memory, both empty) instantiated
/// `instances` more times: a child that holds many of the host's pooled tables and memories
/// while costing its sandbox almost no memory.
pub fn probe_holding_pool_slots(instances: usize) -> Vec<u8> {
    fn read_leb(bytes: &[u8], mut at: usize) -> (usize, usize) {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = bytes[at];
            at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                return (value, at);
            }
        }
    }
    let mut bytes = std::fs::read(env!("URLCAP_GUEST_PROBE")).unwrap();
    // The probe's top-level core modules: the new one's index is their count.
    let (mut at, mut modules) = (8, 0);
    while at < bytes.len() {
        let (len, body) = read_leb(&bytes, at + 1);
        modules += usize::from(bytes[at] == 1);
        at = body + len;
    }
    // (module (table 0 funcref) (memory 0))
    let module: &[u8] = &[
        0, b'a', b's', b'm', 1, 0, 0, 0, 4, 4, 1, 0x70, 0, 0, 5, 3, 1, 0, 0,
    ];
    bytes.push(1);
    leb128(module.len(), &mut bytes);
    bytes.extend_from_slice(module);
    // `instances` core instances of it, each `(instantiate MODULE)` with no arguments.
    let mut section = Vec::new();
    leb128(instances, &mut section);
    for _ in 0..instances {
        section.push(0);
        leb128(modules, &mut section);
        leb128(0, &mut section);
    }
    bytes.push(2);
    leb128(section.len(), &mut bytes);
    bytes.extend_from_slice(&section);
    bytes
}

/// `n` as unsigned LEB128 (how wasm encodes sizes and counts), appended to `out`.
pub fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { byte } else { byte | 0x80 });
        if n == 0 {
            return;
        }
    }
}

/// The probe's bytes with `module` appended as one more (uninstantiated) core module: the host
/// still compiles and loads it.
fn probe_with_core_module(module: &wasm_encoder::Module) -> Vec<u8> {
    let mut extra = wasm_encoder::Component::new();
    extra.section(&wasm_encoder::ModuleSection(module));
    let extra = extra.finish();
    let mut bytes = std::fs::read(env!("URLCAP_GUEST_PROBE")).unwrap();
    // The section follows the probe's own, without the appended component's 8-byte header.
    bytes.extend_from_slice(&extra[8..]);
    bytes
}
