//! `urlcap demo`: a loopback origin, the bundled guest, and its audit log, all in one process
//! and offline.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use urlcap::audit::AuditLog;
use urlcap::egress::StaticResolver;
use urlcap::host::compile_worker::CompileWorker;
use urlcap::host::Stdio;
use urlcap::manifest::{Config, ProcessSecrets};
use urlcap::{Guest, Sandbox};

/// The demo guest, built from fixtures/guests/demo and shipped inside the binary.
static DEMO_GUEST: &[u8] = include_bytes!(env!("URLCAP_GUEST_DEMO"));

/// The demo's manifest (policy/demo.toml); `{PORT}` becomes the demo origin's port.
const DEMO_MANIFEST: &str = include_str!("../../policy/demo.toml");

/// The demo origin's answers.
pub(super) async fn origin(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text: Bytes = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/echo") => body,
        (_, "/v1/hello") => "hello from the demo origin".into(),
        (_, "/v1/public/info") => "public info".into(),
        (_, "/admin") => "the admin page (no guest should ever see this)".into(),
        _ => "ok".into(),
    };
    Ok(http::Response::new(Full::new(text)))
}

/// Start the demo origin ([`origin`]) on a free loopback port: the port, and the task serving
/// it (abort it when done).
pub(super) async fn start_origin() -> std::io::Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, hyper::service::service_fn(origin))
                    .await;
            });
        }
    });
    Ok((port, server))
}

/// A writer the demo can read back (its audit log).
#[derive(Clone, Default)]
pub(super) struct Captured(pub(super) Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run the demo, writing a readable account to `out`. Returns the guest's exit status.
pub async fn run(out: &mut (dyn Write + Send)) -> Result<i32, BoxError> {
    let (port, server) = start_origin().await?;
    let manifest = DEMO_MANIFEST.replace("{PORT}", &port.to_string());
    let config = Config::parse(&manifest, Path::new("policy/demo.toml"), &ProcessSecrets)?;
    writeln!(out, "urlcap demo: an origin on 127.0.0.1:{port}; api.demo.test and internal.demo.test resolve to 127.0.0.1.")?;
    writeln!(out, "The guest runs under policy/demo.toml:\n")?;
    for line in super::describe_config(&config).lines() {
        writeln!(out, "  | {line}")?;
    }
    writeln!(out)?;
    out.flush()?;

    let resolver = Arc::new(StaticResolver::new());
    for name in ["api.demo.test", "internal.demo.test"] {
        resolver.set(name, &["127.0.0.1".parse().expect("a literal address")]);
    }
    let audit_text = Captured::default();
    let sandbox = Sandbox::builder(config)
        .audit(Arc::new(AuditLog::new(Box::new(audit_text.clone()))))
        .resolver(resolver)
        .id("demo")
        .compile_worker(Some(CompileWorker::this_program()?))
        .build()?;
    let command = sandbox.compile(DEMO_GUEST)?;
    let stdio = Stdio::capture(1 << 20);
    let outcome = sandbox
        .run(
            &command,
            Guest {
                stdio: stdio.clone(),
                ..Guest::named("demo")
            },
        )
        .await?;
    server.abort();
    let (guest_out, guest_err) = stdio.contents();
    write!(out, "{guest_out}")?;
    if !guest_err.is_empty() {
        writeln!(out, "guest stderr:\n{guest_err}")?;
    }
    if let Some(message) = &outcome.message {
        writeln!(out, "urlcap: {message}")?;
    }
    sandbox.audit().finish("demo")?;
    let lines = String::from_utf8_lossy(&audit_text.0.lock().unwrap_or_else(|p| p.into_inner()))
        .into_owned();
    writeln!(
        out,
        "\nThe audit log ({} records; every denial exactly once, no secret in any):",
        lines.lines().count()
    )?;
    for line in lines.lines() {
        writeln!(out, "  {line}")?;
    }
    writeln!(out, "\nguest exit status: {}", outcome.exit_code)?;
    Ok(outcome.exit_code)
}

/// Any error of the demo's plumbing (not of the guest: that is its exit status).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
