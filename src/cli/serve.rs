//! `urlcap serve`: the command-line glue around `urlcap::serve` — grants and routes from the
//! flags and manifest, the listener, the logs, start-up output, and shutdown on a signal.

use super::{GrantArgs, EXIT_USAGE};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use urlcap::audit::AuditLog;
use urlcap::host::compile_worker::CompileWorker;
use urlcap::host::Stdio;
use urlcap::manifest::Config;
use urlcap::serve::{AccessLog, Drained, RouteSpec, Server, ServerOptions};
use urlcap::Sandbox;

/// The wall clock a request's handler gets when `[limits] timeout` is not set: a server must
/// not let one request's handler run forever.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The memory a request's handler gets when `[limits] memory` is not set: a server runs many
/// handlers at once, so one must not take all the host has (a memory bomb took 3 GB).
pub const DEFAULT_REQUEST_MEMORY: u64 = 128 << 20;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    grants: GrantArgs,
    /// Address to listen on (HTTP/1.1 and h2c); port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Where audit records go: a file (appended), or - for stderr (the default). Every record
    /// of a request carries its request_id.
    #[arg(long, value_name = "FILE|-")]
    audit: Option<String>,
    /// Also record allowed requests (request.allowed).
    #[arg(long = "audit-allowed")]
    audit_allowed: bool,
    /// Where the one-line-per-request access log goes (appended); default stderr. A line is
    /// written when its response ends: `TS REQUEST_ID METHOD PATH STATUS DURATIONms
    /// route=PREFIX outcome=complete|cut|gone|refused` (`-` for what there is not).
    #[arg(long = "access-log", value_name = "FILE")]
    access_log: Option<PathBuf>,
    /// On SIGINT or SIGTERM, how long requests in flight may take to finish before exiting.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// The wasi:http/proxy component to serve on every path, preopened every authority; without
    /// it, the manifest's [[route]] tables say what serves what.
    component: Option<PathBuf>,
}

pub fn run(args: &ServeArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match run_inner(args, out, err) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            EXIT_USAGE
        }
    }
}

/// The routes to serve: the one component on `/` with every authority, or the manifest's.
fn route_specs(
    args: &ServeArgs,
    config: &Config,
) -> Result<Vec<RouteSpec>, Box<dyn std::error::Error + Send + Sync>> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    match (&args.component, config.routes.is_empty()) {
        (Some(_), false) => {
            Err("give either a COMPONENT or [[route]] tables in the manifest, not both".into())
        }
        (None, true) => Err(
            "nothing to serve: give a COMPONENT.wasm, or [[route]] tables in the manifest".into(),
        ),
        (Some(component), true) => Ok(vec![RouteSpec {
            prefix: urlcap::policy::PathPrefix::parse("/").map_err(|e| e.0)?,
            wasm: read(component)?,
            component: component.display().to_string(),
            authorities: config.grants.iter().map(|g| g.name.clone()).collect(),
        }]),
        (None, false) => config
            .routes
            .iter()
            .map(|r| {
                Ok(RouteSpec {
                    prefix: r.prefix.clone(),
                    wasm: read(&r.component)?,
                    component: r.component.display().to_string(),
                    authorities: r.authorities.clone(),
                })
            })
            .collect(),
    }
}

fn run_inner(
    args: &ServeArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
    let mut config = args.grants.load()?;
    for warning in config.warnings() {
        let _ = writeln!(err, "warning: {warning}");
    }
    let routes = route_specs(args, &config)?;
    if config.limits.timeout.is_none() {
        config.limits.timeout = Some(DEFAULT_REQUEST_TIMEOUT);
    }
    if config.limits.memory.is_none() {
        config.limits.memory = Some(DEFAULT_REQUEST_MEMORY);
    }
    let audit_on_stderr = matches!(args.audit.as_deref(), None | Some("-"));
    let audit = match args.audit.as_deref() {
        None | Some("-") => AuditLog::stderr().map_err(|e| format!("audit log: {e}"))?,
        Some(path) => AuditLog::to_file(std::path::Path::new(path))
            .map_err(|e| format!("--audit {path}: {e}"))?,
    };
    let audit = Arc::new(audit.with_allowed(args.audit_allowed));
    // Whatever log is on stderr (the audit log, or else the access log), handlers' stderr is
    // written beside it as framed `guest: ` lines, so a handler can neither forge nor split a
    // line of it.
    let stderr_log = if audit_on_stderr {
        None
    } else if args.access_log.is_none() {
        Some(Arc::new(
            AuditLog::stderr().map_err(|e| format!("access log: {e}"))?,
        ))
    } else {
        None
    };
    let access_log = match (&args.access_log, audit_on_stderr) {
        (Some(path), _) => {
            AccessLog::to_file(path).map_err(|e| format!("--access-log {}: {e}", path.display()))?
        }
        (None, true) => AccessLog::beside(audit.clone()),
        (None, false) => AccessLog::beside(stderr_log.clone().expect("made above")),
    };
    let stdio = match (audit_on_stderr, &stderr_log) {
        (true, _) => Stdio::InheritBesideAudit(audit.clone()),
        (false, Some(log)) => Stdio::InheritBesideAudit(log.clone()),
        (false, None) => Stdio::Inherit,
    };
    let description = super::describe_config(&config);
    // Components a handler hands to a nested sandbox compile in a worker process its
    // deadline kills, as under `urlcap run`.
    let worker = CompileWorker::this_program()
        .map_err(|e| format!("cannot find this program to compile nested components with: {e}"))?;
    let sandbox = Sandbox::builder(config)
        .id(&format!("sv-{}", std::process::id()))
        .audit(audit.clone())
        .compile_worker(Some(worker))
        .build()?;
    let server = Server::new(
        sandbox,
        routes,
        ServerOptions {
            stdio,
            access_log,
            drain: args.drain,
            queue_wait: Duration::from_secs(10),
            max_connections: urlcap::serve::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: urlcap::serve::DEFAULT_HEADER_READ_TIMEOUT,
            send_timeout: urlcap::serve::DEFAULT_SEND_TIMEOUT,
        },
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let drained = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .map_err(|e| format!("--addr {}: {e}", args.addr))?;
        let addr = listener.local_addr()?;
        // Before anyone is told where it listens: a signal that came first would otherwise
        // end the process with the default action.
        let signal = shutdown_signal()?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        // Start-up output: where, what, with which capabilities. The first line is what a
        // script waits for.
        let _ = writeln!(
            out,
            "urlcap serve: listening on http://{addr} (HTTP/1.1 and h2c)"
        );
        for (prefix, component, authorities) in server.routes() {
            let names = if authorities.is_empty() {
                "no authorities".to_string()
            } else {
                format!("authorities: {}", authorities.join(", "))
            };
            let _ = writeln!(out, "route {prefix} -> {component} ({names})");
        }
        let _ = writeln!(
            out,
            "each request: a fresh instance; at most {} at once",
            server.max_concurrent_requests()
        );
        let _ = write!(out, "{description}");
        let _ = out.flush();
        // SIGHUP: reopen the audit and access log files (logrotate), for as long as it serves.
        let reopen = async {
            while hangup.recv().await.is_some() {
                server.reopen_logs();
            }
            std::future::pending::<Drained>().await
        };
        let drained = tokio::select! {
            drained = server.serve(listener, signal) => drained,
            never = reopen => never,
        };
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(drained)
    })?;
    // The last access-log lines before the closing words.
    server.flush_access_log();
    match drained {
        Drained::All => {
            let _ = writeln!(
                err,
                "urlcap serve: stopped; every request in flight finished"
            );
        }
        Drained::Abandoned(n) => {
            let _ = writeln!(
                err,
                "urlcap serve: stopped; {n} connections were still busy after {} and were cut",
                humantime::format_duration(args.drain)
            );
        }
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    urlcap::host::host_output::flush();
    let _ = audit.finish(server.sandbox().id());
    Ok(0)
}

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
