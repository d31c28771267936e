//! Embedding urlcap: run a guest component under an inline manifest, audit to stderr.
//!
//! ```sh
//! cargo run --example embed -- path/to/guest.wasm [ARGS...]
//! ```

use urlcap::manifest::{Config, ProcessSecrets};
use urlcap::{Guest, Sandbox};

const MANIFEST: &str = r#"
version = 1
[limits]
memory = "64MiB"
timeout = "10s"

[[authority]]
name = "api"
origin = "https://api.example.com"
paths = ["/v1/"]
methods = ["GET"]
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), urlcap::sandbox::Error> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: embed GUEST.wasm [ARGS...]")?;
    let config = Config::parse(MANIFEST, "inline.toml".as_ref(), &ProcessSecrets)?;
    let sandbox = Sandbox::builder(config).build()?;
    let guest = sandbox.compile(&std::fs::read(&path)?)?;
    let mut run = Guest::named("guest");
    run.args.extend(args);
    let outcome = sandbox.run(&guest, run).await?;
    sandbox.audit().finish(sandbox.id())?;
    urlcap::host::host_output::flush(); // what the guest wrote, before the process exits
    eprintln!("guest {}", outcome.summary());
    std::process::exit(outcome.exit_code);
}
