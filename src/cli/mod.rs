//! The `urlcap` command line. Thin: parse flags, call the library, print, choose an exit code.

mod check;
mod demo;
mod demo_serve;
mod explain;
mod run;
mod serve;

pub use check::describe as describe_config;

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use urlcap::host::compile_worker::WORKER_ARG;
use urlcap::manifest::{Config, ConfigError, GrantSources, ProcessSecrets};

/// Exit codes: 0 allow / success, 1 deny, 2 bad usage or bad manifest.
pub const EXIT_OK: u8 = 0;
pub const EXIT_DENY: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "urlcap",
    version,
    about = "Run untrusted WebAssembly whose only way to the network is HTTP through URL capabilities.",
    after_help = "Examples:\n  urlcap explain --allow 'gh=GET,HEAD https://api.github.com/repos/' https://api.github.com/repos/x/y\n  urlcap explain --manifest policy/example.toml --method POST --json https://api.github.com/user\n  urlcap check --manifest policy/example.toml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Dry-run one request through the real policy: exit 0 allow, 1 deny, 2 bad usage.
    #[command(
        after_help = "Examples:\n  urlcap explain --allow https://api.example.com/v1/ https://api.example.com/v1/users\n  urlcap explain --allow 'GET https://api.example.com' --method DELETE https://api.example.com/x\n  urlcap explain --allow http://127.0.0.1:8080/ --allow-ip 127.0.0.1 --json http://127.0.0.1:8080/\n  urlcap explain --manifest policy/example.toml --resolve https://api.github.com/repos/"
    )]
    Explain(explain::ExplainArgs),
    /// Run a wasi:cli command component with only the preopened authorities; exits with its status.
    #[command(
        after_help = "Exit status: the guest's own; 124 if it hit the wall-clock limit, 134 if it trapped or ran out of memory, 74 if the audit log (or --learn's manifest) could not be written, 2 for bad usage.\n\nExamples:\n  urlcap run --allow 'api=GET https://api.example.com/v1/' guest.wasm -- --verbose\n  urlcap run --manifest policy/example.toml --audit audit.jsonl --env LOG=debug guest.wasm\n  urlcap run --learn learned.toml --audit audit.jsonl guest.wasm   # then: urlcap check --manifest learned.toml"
    )]
    Run(run::RunArgs),
    /// Serve a wasi:http/proxy component (or the manifest's [[route]] tables): a fresh instance per request, reaching only its route's authorities.
    #[command(
        after_help = "Each request runs in a fresh instance under [limits] memory and timeout (default 128MiB and 30s per request); a trapping handler gives 500, one out of time 504, and the server keeps serving. SIGINT/SIGTERM: stop accepting, let requests in flight finish (--drain), exit 0. SIGHUP: reopen the --audit and --access-log files (logrotate).\n\nExamples:\n  urlcap serve --allow 'api=GET https://api.example.com/v1/' handler.wasm\n  urlcap serve --manifest serve.toml --addr 127.0.0.1:8080 --audit audit.jsonl --access-log access.log"
    )]
    Serve(serve::ServeArgs),
    /// Start an offline demo: a loopback origin, a bundled guest, its allowed and denied requests and the audit log.
    Demo(DemoArgs),
    /// Validate the manifest and flags, and print the effective grants: exit 0, or 2 on error.
    #[command(
        after_help = "Examples:\n  urlcap check --manifest policy/example.toml\n  urlcap check --allow 'gh=GET https://api.github.com/repos/' --deny-ip 203.0.113.0/24"
    )]
    Check(check::CheckArgs),
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Show `urlcap serve` instead: a handler on two routes with different authorities, a
    /// scripted client, the access and audit logs (offline; finishes on its own).
    #[arg(long)]
    serve: bool,
}

/// GRANTS: where capabilities come from, shared by `run`, `explain` and `check`.
// The field docs are `--help` text, where a URL is meant to be read and copied, not linked.
#[allow(rustdoc::bare_urls)]
#[derive(Args, Debug, Clone, Default)]
pub struct GrantArgs {
    /// Capability manifest (TOML; see README "Manifest reference").
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Preopen an authority: [NAME=][METHODS ]URL, e.g. 'gh=GET,HEAD https://api.github.com/repos/'.
    #[arg(long, value_name = "SPEC")]
    allow: Vec<String>,
    /// Exception to the special-purpose IP deny set (CIDR or address), e.g. 127.0.0.1.
    #[arg(long = "allow-ip", value_name = "CIDR")]
    allow_ip: Vec<String>,
    /// Extra denied addresses (CIDR or address); these beat every exception.
    #[arg(long = "deny-ip", value_name = "CIDR")]
    deny_ip: Vec<String>,
    /// Do not apply the default special-purpose deny set (loopback, private, link-local...).
    #[arg(long = "allow-private")]
    allow_private: bool,
    /// A value for ${NAME} in the manifest's origin and paths (repeatable; beats the
    /// environment). Never shown in errors; check shows it only inside the grants it resolves.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    var: Vec<String>,
}

impl GrantArgs {
    fn sources(&self) -> GrantSources {
        GrantSources {
            manifest: self.manifest.clone(),
            allow: self.allow.clone(),
            allow_ip: self.allow_ip.clone(),
            deny_ip: self.deny_ip.clone(),
            allow_private: self.allow_private,
            vars: self.var.clone(),
        }
    }

    fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.sources(), &ProcessSecrets)
    }
}

/// Run the command line `args` (program name first), writing to `out` and `err`.
/// Returns the exit code.
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                write!(err, "{text}")
            } else {
                write!(out, "{text}")
            };
            return code;
        }
    };
    let result = match cli.command {
        Command::Explain(args) => explain::run(&args, out, err),
        Command::Check(args) => check::run(&args, out, err),
        Command::Run(args) => return run::run(&args, err),
        Command::Serve(args) => return serve::run(&args, out, err),
        Command::Demo(args) => return run::demo(args.serve, err),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            EXIT_USAGE
        }
    }
}

/// The binary's entry point. Started with [`WORKER_ARG`] it is a compile process for a guest's
/// nested component (see [`urlcap::host::compile_worker`]), not the command line.
pub fn main() -> std::process::ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == WORKER_ARG) {
        return urlcap::host::compile_worker::serve(&args[2..]);
    }
    let code = run(args, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::ExitCode::from(code)
}
