//! One running guest: the state its store holds, what it may use and see ([`SandboxSpec`]),
//! and how a run starts (instantiate under its limits) and ends (returned, late, or stopped
//! because the audit log failed).

use super::artifacts::ArtifactCache;
use super::host_output::HostOutput;
use super::limits::{audit_outcome, outcome_of_error, resource_capacity, timeout_outcome};
use super::{capture, guest_stderr, wasi_http, Limiter, Outcome, Shared, UrlcapHttpHooks};
use crate::outbound::Outbound;
use crate::policy::Authority;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;

/// The most bytes one `get-random-bytes` call returns (as one output write carries).
const MAX_RANDOM_BYTES: u64 = 64 << 10;
use wasmtime::Store;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// An authority handle in a guest's resource table.
pub struct GuestAuthority {
    pub(super) authority: Authority,
}

/// Everything one running guest owns.
pub struct SandboxState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: Limiter,
    /// Policy, egress and audit for this sandbox; its handle table is the only place any of
    /// its guest APIs finds a handle.
    pub(super) outbound: Arc<Outbound>,
    pub(super) live_handles: usize,
    /// Derived handles alive in this sandbox's whole tree (shared with its parent and
    /// children), held by a guest or kept alive by their descendants.
    pub(super) quota: Arc<crate::policy::HandleQuota>,
    pub(super) response_cap: u64,
    /// The engine, linker and caches, for nested sandboxes.
    pub(super) shared: Arc<Shared>,
    /// 0 for a top-level guest.
    pub(super) depth: u32,
    /// When the wall-clock limit ends this sandbox.
    pub(super) deadline: Option<tokio::time::Instant>,
    pub(super) children: u32,
    pub(super) http: wasmtime_wasi_http::WasiHttpCtx,
    pub(super) http_hooks: UrlcapHttpHooks,
}

impl wasmtime_wasi_http::WasiHttpView for SandboxState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What a sandbox may use and see.
pub struct SandboxSpec {
    /// The sandbox's outbound path: its handle table is what the guest is preopened, under the
    /// names it sees, and the only thing either guest API can reach the network through.
    pub outbound: Arc<Outbound>,
    /// `argv`, program name first.
    pub args: Vec<String>,
    /// The guest's whole environment: it inherits none of the host's, which may hold secrets.
    pub env: Vec<(String, String)>,
    /// Host directory, guest path.
    pub dirs: Vec<(String, String)>,
    /// Linear memory cap in bytes (a grow past it traps); `None`: wasmtime's own bounds.
    pub memory: Option<u64>,
    /// Wall-clock limit for the whole run, computing or waiting on the host alike.
    pub timeout: Option<Duration>,
    /// Where the guest's stdout and stderr go.
    pub stdio: Stdio,
}

impl SandboxSpec {
    /// A sandbox that is preopened `outbound`'s handle table, with stdio inherited and no
    /// arguments, environment, directories or limits: set the rest with struct-update syntax.
    /// Its audit records carry `sandbox_id` (the outbound is rebound to that id if it was built
    /// for another; the outbound is the one place the id lives).
    pub fn new(outbound: Arc<Outbound>, sandbox_id: &str) -> SandboxSpec {
        let outbound = if outbound.sandbox() == sandbox_id {
            outbound
        } else {
            Arc::new(outbound.renamed(sandbox_id))
        };
        SandboxSpec {
            outbound,
            args: Vec::new(),
            env: Vec::new(),
            dirs: Vec::new(),
            memory: None,
            timeout: None,
            stdio: Stdio::Inherit,
        }
    }
}

impl Shared {
    /// Run `command` in a new sandbox `depth` levels below the top.
    pub(crate) async fn run(
        self: Arc<Shared>,
        command: &CommandPre<SandboxState>,
        spec: SandboxSpec,
        depth: u32,
        quota: Arc<crate::policy::HandleQuota>,
    ) -> wasmtime::Result<Outcome> {
        let mut store = self.store(command.engine(), &spec, depth, quota)?;
        let deadline = store.data().deadline;
        let run = async {
            let command = command.instantiate_async(&mut store).await?;
            command.wasi_cli_run().call_run(&mut store).await
        };
        let result = match before(deadline, spec.outbound.audit(), run).await {
            Ended::Ran(result) => result,
            Ended::Late => return Ok(timeout_outcome(spec.timeout.unwrap_or_default())),
            Ended::AuditFailed => return Ok(audit_outcome()),
        };
        if spec.outbound.audit().has_failed() {
            return Ok(audit_outcome());
        }
        Ok(match result {
            Ok(Ok(())) => Outcome {
                exit_code: 0,
                message: None,
            },
            Ok(Err(())) => Outcome {
                exit_code: 1,
                message: None,
            },
            // The host's instance pools are full (other sandboxes hold them): not this guest's
            // doing, so not its outcome; the caller says so (a nested spawn is refused).
            Err(e)
                if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some() =>
            {
                return Err(e)
            }
            Err(e) => {
                let memory_hit = spec.memory.filter(|_| store.data().limiter.limit_hit);
                outcome_of_error(e, spec.timeout, spec.memory, memory_hit)
            }
        })
    }

    /// A store for one sandbox `depth` levels below the top, under `spec`'s limits: what it
    /// sees (wasi:cli, wasi:http and urlcap:http through `spec.outbound`), its memory and
    /// resource caps, and its wall clock, whose deadline starts now. `engine` is the one its
    /// component was compiled with (the host's, or the nested engine for guest-supplied code). Every guest urlcap runs
    /// — a command, a nested sandbox, a served request — gets its store here, so they cannot
    /// disagree on what a guest may use.
    pub(crate) fn store(
        self: &Arc<Shared>,
        engine: &wasmtime::Engine,
        spec: &SandboxSpec,
        depth: u32,
        quota: Arc<crate::policy::HandleQuota>,
    ) -> wasmtime::Result<Store<SandboxState>> {
        let mut wasi = WasiCtx::builder();
        // wasmtime lets one random-bytes call ask for 64 MiB (seconds of CPU in one host call
        // the wall clock cannot end); a guest that wants more asks again.
        wasi.max_random_size(MAX_RANDOM_BYTES);
        wasi.args(&spec.args)
            .envs(&spec.env)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (host, guest) in &spec.dirs {
            // This run's cache, and the default one a later run may use.
            if ArtifactCache::any_reachable_through(self.artifacts.as_ref(), Path::new(host)) {
                wasmtime::bail!(
                    "the directory {host} holds urlcap's compilation cache, or lies in it: a \
                     guest that can write there could run native code as urlcap; grant a \
                     directory beside it"
                );
            }
            wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadWrite)?;
        }
        match &spec.stdio {
            Stdio::Inherit => {
                wasi.stdout(capture::GuestOutput::new(HostOutput::stdout()))
                    .stderr(capture::GuestOutput::new(HostOutput::stderr()));
            }
            Stdio::InheritBesideAudit(audit) => {
                wasi.stdout(capture::GuestOutput::new(HostOutput::stdout()))
                    .stderr(capture::GuestOutput::new(guest_stderr::BesideAudit::new(
                        audit.clone(),
                    )));
            }
            Stdio::Capture(out, err) => {
                wasi.stdout(capture::GuestOutput::new(out.clone()))
                    .stderr(capture::GuestOutput::new(err.clone()));
            }
        }
        let memory_limit = spec
            .memory
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
        let response_cap = spec.memory.map_or(64 << 20, |m| m.min(64 << 20));
        let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);

        let state = SandboxState {
            wasi: wasi.build(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(resource_capacity(memory_limit));
                table
            },
            limiter: Limiter {
                memory_limit,
                memory_used: 0,
                limit_hit: false,
            },
            outbound: spec.outbound.clone(),
            live_handles: 0,
            quota,

            response_cap,
            shared: self.clone(),
            depth,
            deadline,
            children: 0,
            http: {
                let mut http = wasmtime_wasi_http::WasiHttpCtx::new();
                http.set_field_size_limit(wasi_http::FIELD_SIZE_LIMIT);
                http
            },
            http_hooks: UrlcapHttpHooks::new(spec.outbound.clone()),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        // A guest that computes is looked at every epoch tick: past its wall clock, or once
        // the audit log has failed (it fails closed), it is interrupted; while the audit log's
        // sink lags behind what guests record, it waits (an await its wall clock ends), so the
        // records a guest makes the host hold are bounded.
        let (audit, stop_at) = (spec.outbound.audit().clone(), deadline);
        store.epoch_deadline_callback(move |_| {
            let late = stop_at.is_some_and(|d| tokio::time::Instant::now() >= d);
            Ok(if late || audit.has_failed() {
                wasmtime::UpdateDeadline::Interrupt
            } else if audit.backlogged() {
                let audit = audit.clone();
                wasmtime::UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(async move { audit.room().await }),
                )
            } else {
                // Hand the thread back to the runtime at every tick: a guest that only
                // computes must not hold a runtime thread that other sandboxes, a server's
                // listener and its shutdown need (two looping handlers froze a 2-core server).
                wasmtime::UpdateDeadline::Yield(1)
            })
        });
        store.set_epoch_deadline(1);
        Ok(store)
    }
}

/// Guest stdout and stderr: the host's, or captured.
#[derive(Clone)]
pub enum Stdio {
    /// The host's stdout and stderr, as `urlcap run` gives them when the audit log is not on
    /// stderr.
    Inherit,
    /// The host's stdout; stderr shared with this audit log (`--audit -`): the guest's stderr
    /// is written as whole lines prefixed `guest: `, under the audit log's lock, so it can
    /// neither forge nor corrupt a record.
    InheritBesideAudit(Arc<crate::audit::AuditLog>),
    /// Kept in memory up to a cap each (past it the rest is dropped and counted, and the
    /// contents end with a line saying so; the guest is not stopped).
    Capture(capture::CappedPipe, capture::CappedPipe),
}

impl Stdio {
    /// Capture up to `capacity` bytes of each stream.
    pub fn capture(capacity: usize) -> Stdio {
        Stdio::Capture(
            capture::CappedPipe::new(capacity),
            capture::CappedPipe::new(capacity),
        )
    }

    /// Captured stdout and stderr (empty when inherited).
    pub fn contents(&self) -> (String, String) {
        match self {
            Stdio::Inherit | Stdio::InheritBesideAudit(_) => (String::new(), String::new()),
            Stdio::Capture(out, err) => (
                String::from_utf8_lossy(&out.contents()).into_owned(),
                String::from_utf8_lossy(&err.contents()).into_owned(),
            ),
        }
    }
}

/// How a run ended: it returned, its deadline passed, or the audit log failed.
pub(crate) enum Ended<T> {
    Ran(T),
    Late,
    AuditFailed,
}

/// `run`'s output, unless `deadline` passes or `audit` fails first. Both are checked *before*
/// `run` is polled, so when a parent's and its child's deadlines have both passed (a child's is
/// never earlier: it is the parent's remaining time, computed a moment later), the parent's —
/// the enclosing one — always wins, and the child's end is written by its drop guard.
pub(crate) async fn before<T>(
    deadline: Option<tokio::time::Instant>,
    audit: &crate::audit::AuditLog,
    run: impl std::future::Future<Output = T>,
) -> Ended<T> {
    use std::future::Future;
    let mut sleep = std::pin::pin!(deadline.map(tokio::time::sleep_until));
    let mut failed = std::pin::pin!(audit.failure());
    let mut run = std::pin::pin!(run);
    std::future::poll_fn(|cx| {
        if let Some(sleep) = sleep.as_mut().as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                return std::task::Poll::Ready(Ended::Late);
            }
        }
        if failed.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Ended::AuditFailed);
        }
        run.as_mut().poll(cx).map(Ended::Ran)
    })
    .await
}
