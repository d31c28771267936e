//! `urlcap run` and `urlcap demo`.

use super::{GrantArgs, EXIT_USAGE};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use urlcap::audit::AuditLog;
use urlcap::host::compile_worker::CompileWorker;
use urlcap::host::Stdio;
use urlcap::{Guest, Sandbox};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    grants: GrantArgs,
    /// Where audit records go: a file (appended), or - for stderr (the default).
    #[arg(long, value_name = "FILE|-")]
    audit: Option<String>,
    /// Also record allowed requests (request.allowed).
    #[arg(long = "audit-allowed")]
    audit_allowed: bool,
    /// Keep running when an audit record cannot be written (counted, and said on stderr). By
    /// default the audit fails closed: every request is denied from then on, the guest is
    /// stopped, and urlcap exits with status 74.
    #[arg(long = "audit-fail-open")]
    audit_fail_open: bool,
    /// An environment variable for the guest, K=V (repeatable); the guest sees no other.
    #[arg(long, value_name = "K=V")]
    env: Vec<String>,
    /// A host directory for the guest, HOST::GUEST (repeatable); the guest sees no other.
    #[arg(long, value_name = "HOST::GUEST")]
    dir: Vec<String>,
    /// Learn mode, for a guest you trust: a request no grant allows is let through (IP rules
    /// and everything that is never allowed still apply) and audited as request.learned; on
    /// exit OUT.toml gets the given grants plus the least that covers what was let through.
    #[arg(long, value_name = "OUT.toml")]
    learn: Option<PathBuf>,
    /// The command component (wasm32-wasip2) to run.
    guest: PathBuf,
    /// Arguments for the guest (after --).
    #[arg(last = true)]
    args: Vec<String>,
}

fn exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(if code < 0 { 255 } else { (code & 0xff) as u8 })
}

/// One guest at a time needs one thread: a current-thread runtime starts faster (blocking
/// work such as stdio still goes to tokio's blocking pool).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

pub fn run(args: &RunArgs, err: &mut dyn Write) -> u8 {
    match run_inner(args, err) {
        Ok(code) => exit_code(code),
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            EXIT_USAGE
        }
    }
}

fn pair<'a>(flag: &str, value: &'a str, sep: &str) -> Result<(&'a str, &'a str), String> {
    value
        .split_once(sep)
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| {
            format!(
                "{flag} {value:?}: expected {}",
                if sep == "=" { "K=V" } else { "HOST::GUEST" }
            )
        })
}

/// The guest's bytes, read straight into the shared buffer that the host's cache of linked
/// components keeps (so a 13 MB component is not copied once more before it runs).
fn read_guest(path: &std::path::Path) -> std::io::Result<Arc<[u8]>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
    let mut wasm: Arc<[u8]> = std::iter::repeat_n(0u8, len).collect();
    let buf = Arc::get_mut(&mut wasm).expect("not shared yet");
    file.read_exact(buf)?;
    let mut more = [0u8; 1];
    if file.read(&mut more)? == 0 {
        return Ok(wasm);
    }
    // Longer than its size said (it grew, or it is a pipe): the rest from the same handle, so
    // a stream is not read twice.
    let mut whole = wasm.to_vec();
    whole.push(more[0]);
    file.read_to_end(&mut whole)?;
    Ok(whole.into())
}

fn run_inner(
    args: &RunArgs,
    err: &mut dyn Write,
) -> Result<i32, Box<dyn std::error::Error + Send + Sync>> {
    let config = args.grants.load()?;
    for warning in config.warnings() {
        let _ = writeln!(err, "warning: {warning}");
    }
    let env = args
        .env
        .iter()
        .map(|e| pair("--env", e, "=").map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let dirs = args
        .dir
        .iter()
        .map(|d| pair("--dir", d, "::").map(|(h, g)| (h.to_string(), g.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let wasm = read_guest(&args.guest).map_err(|e| format!("{}: {e}", args.guest.display()))?;
    let audit = match args.audit.as_deref() {
        None | Some("-") => AuditLog::stderr().map_err(|e| format!("audit log: {e}"))?,
        Some(path) => AuditLog::to_file(std::path::Path::new(path))
            .map_err(|e| format!("--audit {path}: {e}"))?,
    };
    let audit = audit.with_allowed(args.audit_allowed);
    let audit = Arc::new(if args.audit_fail_open {
        audit.fail_open()
    } else {
        audit
    });
    let audit_on_stderr = matches!(args.audit.as_deref(), None | Some("-"));
    let learn = urlcap::learn::Session::open(args.learn.as_deref(), &config)?;
    let worker = CompileWorker::this_program()
        .map_err(|e| format!("cannot find this program to compile nested components with: {e}"))?;
    let sandbox = Sandbox::builder(config)
        .audit(audit.clone())
        .learn(learn.learner())
        .compile_worker(Some(worker))
        .build()?;
    let command = sandbox
        .compile_shared(wasm)
        .map_err(|e| format!("{}: not a runnable component: {e}", args.guest.display()))?;
    let name = args
        .guest
        .file_name()
        .map_or("guest".into(), |n| n.to_string_lossy().into_owned());
    let guest = Guest {
        args: std::iter::once(name)
            .chain(args.args.iter().cloned())
            .collect(),
        env,
        dirs,
        stdio: if audit_on_stderr {
            Stdio::InheritBesideAudit(audit.clone())
        } else {
            Stdio::Inherit
        },
    };
    let rt = runtime()?;
    let outcome = rt.block_on(sandbox.run(&command, guest))?;
    let sandbox = sandbox.id().to_string();
    // A nested component still compiling when the sandbox ended cannot be stopped inside
    // wasmtime; do not wait for it (its size and shape were capped before it started).
    rt.shutdown_background();
    // What the guest wrote and the host's stdout or stderr has not taken yet (bounded: a
    // reader that stopped reading is waited for at most the stall limit).
    urlcap::host::host_output::flush();
    let finished = audit.finish(&sandbox);
    // When the audit log is on stderr and stopped taking records, stderr is that stalled
    // sink: what is left to say is said only if it can be said without waiting.
    let mut say = |line: String| {
        if audit_on_stderr && finished.is_err() {
            urlcap::audit::warn(&line);
        } else {
            let _ = writeln!(err, "{line}");
        }
    };
    if let Some(message) = &outcome.message {
        say(format!("urlcap: {message}"));
    }
    let lost = urlcap::host::host_output::dropped();
    if lost > 0 {
        urlcap::audit::warn(&format!(
            "urlcap: warning: {lost} bytes of the guest's output were dropped: stdout or stderr stopped taking them"
        ));
    }
    let learned = learn.finish(&mut say);
    if audit.has_failed() || (finished.is_err() && !args.audit_fail_open) {
        say(format!(
            "urlcap: error: the audit log could not be written ({} records lost); the run was stopped",
            audit.dropped()
        ));
        return Ok(urlcap::host::EXIT_AUDIT);
    }
    Ok(learned.unwrap_or(outcome.exit_code))
}

pub fn demo(serve: bool, err: &mut dyn Write) -> u8 {
    let result = if serve {
        // The server and its client share the process: two workers, as `urlcap serve` has.
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.into())
            .and_then(|rt| rt.block_on(super::demo_serve::run(&mut std::io::stdout())))
    } else {
        runtime()
            .map_err(|e| e.into())
            .and_then(|rt| rt.block_on(super::demo::run(&mut std::io::stdout())))
    };
    match result {
        Ok(code) => exit_code(code),
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            EXIT_USAGE
        }
    }
}
