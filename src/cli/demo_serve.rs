//! `urlcap demo --serve`: `urlcap serve` in one process, offline — a loopback origin, the
//! bundled handler on two routes with different authorities, a scripted client, and the audit
//! and access logs. It finishes on its own.

use super::demo::{BoxError, Captured};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use urlcap::audit::AuditLog;
use urlcap::egress::StaticResolver;
use urlcap::host::compile_worker::CompileWorker;
use urlcap::host::Stdio;
use urlcap::manifest::{Config, ProcessSecrets};
use urlcap::policy::PathPrefix;
use urlcap::serve::{AccessLog, RouteSpec, Server, ServerOptions};
use urlcap::Sandbox;

/// The handler, built from fixtures/guests/handler and shipped inside the binary.
static DEMO_HANDLER: &[u8] = include_bytes!(env!("URLCAP_GUEST_HANDLER"));

/// The demo's manifest (policy/demo-serve.toml); `{PORT}` becomes the demo origin's port.
const DEMO_SERVE_MANIFEST: &str = include_str!("../../policy/demo-serve.toml");

/// One GET on a new connection: (status, x-request-id, body).
async fn get(
    addr: std::net::SocketAddr,
    target: &str,
    host: &str,
) -> Result<(u16, String, String), BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = http::Request::get(target)
        .header("host", host)
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, id, String::from_utf8_lossy(&body).into_owned()))
}

/// Run the demo, writing a readable account to `out`.
pub async fn run(out: &mut (dyn Write + Send)) -> Result<i32, BoxError> {
    let (port, origin_task) = super::demo::start_origin().await?;
    let manifest = DEMO_SERVE_MANIFEST.replace("{PORT}", &port.to_string());
    let config = Config::parse(
        &manifest,
        Path::new("policy/demo-serve.toml"),
        &ProcessSecrets,
    )?;
    let resolver = Arc::new(StaticResolver::new());
    for name in ["api.demo.test", "admin.demo.test"] {
        resolver.set(name, &["127.0.0.1".parse().expect("a literal address")]);
    }
    let audit_text = Captured::default();
    let access_text = Captured::default();
    let audit = Arc::new(AuditLog::new(Box::new(audit_text.clone())));
    let sandbox = Sandbox::builder(config.clone())
        .audit(audit.clone())
        .resolver(resolver)
        .id("demo-serve")
        .compile_worker(Some(CompileWorker::this_program()?))
        .build()?;
    let route = |prefix: &str, authority: &str| -> Result<RouteSpec, BoxError> {
        Ok(RouteSpec {
            prefix: PathPrefix::parse(prefix).map_err(|e| e.0)?,
            wasm: DEMO_HANDLER.to_vec(),
            component: "handler.wasm (built in)".into(),
            authorities: vec![authority.to_string()],
        })
    };
    let server = Server::new(
        sandbox,
        vec![route("/app/", "api")?, route("/ops/", "admin")?],
        ServerOptions {
            stdio: Stdio::capture(1 << 20),
            access_log: AccessLog::to_writer(Box::new(access_text.clone())),
            drain: Duration::from_secs(5),
            queue_wait: Duration::from_secs(5),
            max_connections: 16,
            header_read_timeout: urlcap::serve::DEFAULT_HEADER_READ_TIMEOUT,
            send_timeout: urlcap::serve::DEFAULT_SEND_TIMEOUT,
        },
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    writeln!(out, "urlcap demo --serve: an origin on 127.0.0.1:{port} (api.demo.test and admin.demo.test resolve to it),")?;
    writeln!(
        out,
        "and urlcap serve on http://{addr}, under policy/demo-serve.toml:\n"
    )?;
    for line in super::describe_config(&config).lines() {
        writeln!(out, "  | {line}")?;
    }
    for (prefix, component, authorities) in server.routes() {
        writeln!(
            out,
            "  | route {prefix} -> {component} (authorities: {})",
            authorities.join(", ")
        )?;
    }
    writeln!(out)?;
    out.flush()?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = async {
        server
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
    };
    let own = addr.to_string();
    let origin_host = format!("admin.demo.test:{port}");
    let steps: Vec<(&str, String, String)> = vec![
        (
            "the /app/ handler reads the API through its `api` handle",
            "/app/native?name=api&path=/v1/hello".into(),
            own.clone(),
        ),
        (
            "the same with plain wasi:http (an absolute URL, matched to its handles)",
            format!("/app/fetch?url=http://api.demo.test:{port}/v1/hello"),
            own.clone(),
        ),
        (
            "it has no `admin` handle: that authority belongs to the /ops/ route",
            "/app/native?name=admin&path=/admin".into(),
            own.clone(),
        ),
        (
            "nor can it reach admin by URL, although the manifest grants it",
            format!("/app/fetch?url=http://admin.demo.test:{port}/admin"),
            own.clone(),
        ),
        (
            "a client's Host header is data: a handler sending to it is still judged by its grants",
            "/app/fetch-host?path=/admin".into(),
            origin_host,
        ),
        (
            "the /ops/ handler reads admin",
            "/ops/native?name=admin&path=/admin".into(),
            own.clone(),
        ),
        (
            "each request gets a fresh instance (its counter starts over)",
            "/app/count".into(),
            own.clone(),
        ),
        (
            "a handler that loops is stopped at the 2s per-request limit: 504",
            "/app/loop".into(),
            own.clone(),
        ),
        (
            "and the server goes on serving",
            "/app/hello".into(),
            own.clone(),
        ),
    ];
    let client = async {
        let mut said = Vec::new();
        for (why, target, host) in &steps {
            let answer = get(addr, target, host).await;
            said.push((why.to_string(), target.clone(), answer));
        }
        let _ = stop.send(());
        said
    };
    let (drained, said) = tokio::join!(serving, client);
    origin_task.abort();
    for (why, target, answer) in said {
        writeln!(out, "{why}:")?;
        match answer {
            Ok((status, id, body)) => {
                writeln!(out, "  GET {target} -> {status} {body:?} (request {id})")?
            }
            Err(e) => writeln!(out, "  GET {target} -> failed: {e}")?,
        }
    }
    writeln!(out, "\nshutdown: {drained:?}")?;
    server.flush_access_log();
    audit.finish("demo-serve")?;
    let text = |c: &Captured| {
        String::from_utf8_lossy(&c.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    };
    let access = text(&access_text);
    writeln!(out, "\nThe access log (one line per request):")?;
    for line in access.lines() {
        writeln!(out, "  {line}")?;
    }
    let records = text(&audit_text);
    writeln!(
        out,
        "\nThe audit log ({} records; each carries the request_id of its request):",
        records.lines().count()
    )?;
    for line in records.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(0)
}
