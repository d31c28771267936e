//! The one way to run guests under a [`Config`]: `urlcap run`, `urlcap demo`, the benches and
//! embedders all build a [`Sandbox`] here, so the wiring — policy, egress client, choke point,
//! engine, limits, audit — is written once and cannot disagree between them.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use urlcap::manifest::{Config, ProcessSecrets};
//! let config = Config::parse(
//!     "version = 1\n[[authority]]\nname = \"api\"\norigin = \"https://api.example.com\"\n",
//!     std::path::Path::new("inline.toml"),
//!     &ProcessSecrets,
//! )?;
//! let sandbox = urlcap::Sandbox::builder(config).build()?;
//! let guest = sandbox.compile(&std::fs::read("guest.wasm")?)?;
//! let outcome = sandbox.run(&guest, urlcap::Guest::named("guest")).await?;
//! sandbox.audit().finish(sandbox.id())?;
//! urlcap::host::host_output::flush(); // what the guest wrote to the inherited stdout/stderr
//! std::process::exit(outcome.exit_code);
//! # }
//! ```

use crate::audit::{AuditLog, Event, Record};
use crate::egress::{Client, EgressConfig, Resolve, SystemResolver};
use crate::host::compile_worker::CompileWorker;
use crate::host::{Outcome, SandboxSpec, SandboxState, Stdio, WasmHost, DEFAULT_MAX_DEPTH};
use crate::learn::Learner;
use crate::manifest::{Config, SandboxLimits};
use crate::outbound::Outbound;
use crate::policy::SystemClock;
use std::sync::Arc;
use wasmtime_wasi::p2::bindings::CommandPre;

/// Any error of the plumbing (not of the guest: that is its [`Outcome`]).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A compiled, linked guest, ready to run any number of times.
pub type Command = CommandPre<SandboxState>;

/// How a [`Sandbox`] is put together; every part not set has the default `urlcap run` uses.
pub struct Builder {
    config: Config,
    audit: Option<Arc<AuditLog>>,
    resolver: Arc<dyn Resolve>,
    id: String,
    learner: Option<Arc<Learner>>,
    compile_worker: Option<CompileWorker>,
}

impl Builder {
    /// Where components a guest hands to `sandbox.run` compile: `Some` — in a process of their
    /// own, started as the worker says, limited to the spawning sandbox's remaining memory and
    /// killed when its wall clock ends (what `urlcap run` does); `None` (the default) — in a
    /// thread of this process, bounded only by the admission caps (a denylist of what is known
    /// to be costly to compile) and run to its end. Set one whenever guests are untrusted:
    /// [`CompileWorker::this_program`] with a `main` that calls
    /// [`serve`](crate::host::compile_worker::serve) first.
    pub fn compile_worker(mut self, worker: Option<CompileWorker>) -> Builder {
        self.compile_worker = worker;
        self
    }

    /// Learn mode ([`crate::learn`]) when `Some`: a request the grants deny but a manifest
    /// could grant is let through and recorded in the learner, which writes the manifest
    /// afterwards. `None` (the default): the grants are enforced.
    pub fn learn(mut self, learner: Option<Arc<Learner>>) -> Builder {
        self.learner = learner;
        self
    }

    /// Where audit records go (default: stderr, written by the log's own thread).
    pub fn audit(mut self, audit: Arc<AuditLog>) -> Builder {
        self.audit = Some(audit);
        self
    }

    /// How host names resolve (default: the system resolver). Every address is still vetted.
    pub fn resolver(mut self, resolver: Arc<dyn Resolve>) -> Builder {
        self.resolver = resolver;
        self
    }

    /// The sandbox id audit records carry (default: `sb-PID`).
    pub fn id(mut self, id: &str) -> Builder {
        self.id = id.to_string();
        self
    }

    /// Build the policy, egress client, choke point and engine.
    pub fn build(self) -> Result<Sandbox, Error> {
        let limits = self.config.limits.clone();
        let audit = match self.audit {
            Some(audit) => audit,
            None => Arc::new(AuditLog::stderr()?),
        };
        let policy = self.config.policy(Arc::new(SystemClock::new()));
        let egress = EgressConfig {
            max_in_flight: limits
                .max_concurrent_requests
                .map_or(crate::egress::DEFAULT_MAX_IN_FLIGHT, |n| n as usize),
            ..EgressConfig::default()
        };
        let mut outbound = Outbound::new(
            policy.preopens(),
            Client::new(egress, self.resolver),
            audit.clone(),
            &self.id,
        );
        if let Some(learner) = self.learner {
            learner.bind(&policy);
            outbound = outbound.learning(learner);
        }
        let outbound = Arc::new(outbound);
        let host = WasmHost::with_compile_worker(
            limits.max_nesting_depth.unwrap_or(DEFAULT_MAX_DEPTH),
            self.compile_worker,
        )?;
        Ok(Sandbox {
            host,
            outbound,
            audit,
            limits,
            id: self.id,
        })
    }
}

/// What one run of a guest gets besides its grants and limits.
#[derive(Clone)]
pub struct Guest {
    /// `argv`, program name first.
    pub args: Vec<String>,
    /// The guest's environment; it sees no other.
    pub env: Vec<(String, String)>,
    /// Host directory, guest path; it sees no other.
    pub dirs: Vec<(String, String)>,
    /// Where its stdout and stderr go.
    pub stdio: Stdio,
}

impl Guest {
    /// A guest called `name` (its `argv[0]`, and how `sandbox.spawned` names it), with no
    /// other arguments, environment or directories, and the host's stdout and stderr.
    pub fn named(name: &str) -> Guest {
        Guest {
            args: vec![name.to_string()],
            env: Vec::new(),
            dirs: Vec::new(),
            stdio: Stdio::Inherit,
        }
    }
}

/// Guests run under one config: its grants (the top-level handle table), limits and audit log.
pub struct Sandbox {
    host: WasmHost,
    outbound: Arc<Outbound>,
    audit: Arc<AuditLog>,
    limits: SandboxLimits,
    id: String,
}

impl Sandbox {
    /// Start building a sandbox for `config`.
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            audit: None,
            resolver: Arc::new(SystemResolver),
            id: format!("sb-{}", std::process::id()),
            learner: None,
            compile_worker: None,
        }
    }

    /// Compile and link a command component (kept compiled in urlcap's on-disk cache for the
    /// next run, when there is one).
    pub fn compile(&self, wasm: &[u8]) -> Result<Command, Error> {
        Ok(self.host.command_for(wasm)?)
    }

    /// [`Sandbox::compile`] for bytes already in a shared buffer, which the in-memory cache of
    /// linked components then keeps instead of a copy (what `urlcap run` uses: it reads the
    /// guest straight into one).
    pub fn compile_shared(&self, wasm: Arc<[u8]>) -> Result<Command, Error> {
        Ok(self.host.command_for_shared(wasm)?)
    }

    /// Run `command` once as this sandbox, under the config's memory and wall-clock limits,
    /// with `sandbox.spawned` and `sandbox.exited` audited around it.
    pub async fn run(&self, command: &Command, guest: Guest) -> Result<Outcome, Error> {
        let name = guest
            .args
            .first()
            .cloned()
            .unwrap_or_else(|| "guest".into());
        self.audit.record(&Record::new(
            Event::SandboxSpawned,
            &self.id,
            format!("run {name}"),
        ));
        let spec = SandboxSpec {
            args: guest.args,
            env: guest.env,
            dirs: guest.dirs,
            memory: self.limits.memory,
            timeout: self.limits.timeout,
            stdio: guest.stdio,
            ..SandboxSpec::new(self.outbound.clone(), &self.id)
        };
        // As a task rather than in the caller's future: wake-ups from the guest's host calls
        // then stay on the scheduler's local queue instead of writing the driver's eventfd.
        let (host, command) = (self.host.clone(), command.clone());
        let outcome = tokio::spawn(async move { host.run(&command, spec).await })
            .await
            .map_err(|e| format!("the guest's task failed: {e}"))??;
        self.audit.record(&Record::new(
            Event::SandboxExited,
            &self.id,
            outcome.summary(),
        ));
        Ok(outcome)
    }

    /// The audit log (call [`AuditLog::finish`] when done with the sandbox).
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// The id audit records carry.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The engine and linker (`urlcap serve` links its handlers with them).
    pub(crate) fn host(&self) -> &WasmHost {
        &self.host
    }

    /// The top-level outbound path: the roots, the egress client and the audit log.
    pub(crate) fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    /// The config's `[limits]`.
    pub(crate) fn limits(&self) -> &SandboxLimits {
        &self.limits
    }
}
