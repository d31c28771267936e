//! The wasm host: runs a `wasi:cli` command component whose only way to the network is the
//! authorities preopened for it.
//!
//! Guests get wasi:cli (args, stdio, clocks, random; environment variables only as granted;
//! directories only as granted), no sockets (TCP, UDP and name lookup are disabled and every
//! socket address is refused), and `urlcap:http`. Every `fetch` goes through the sandbox's
//! [`Outbound`]: policy → egress → audit. Limits: linear memory (a grow past it traps), wall
//! clock (epoch interruption while the guest computes, and a timer around the whole run while
//! it waits on the host), and in-flight requests (egress). A trap or limit ends the guest with
//! a clear message and exit status; the host is unharmed.

mod admission;
mod capture;
mod compiled;
mod guest_api;
mod guest_stderr;
mod wasi_http;

pub use admission::{MAX_CHILD_COMPONENT_BYTES, MAX_FUNCTION_BODY_BYTES, MAX_FUNCTION_LOCALS};
pub use capture::CappedPipe;
pub use guest_api::{describe, MAX_LIVE_HANDLES};
pub use wasi_http::{error_code, UrlcapHttpHooks};

use crate::outbound::Outbound;
use crate::policy::Authority;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances; wall-clock limits are measured in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Exit status of a run that hit the wall-clock limit (as `timeout(1)` reports).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit status of a guest that trapped or exceeded its memory.
pub const EXIT_TRAP: i32 = 134;

/// An authority handle in a guest's resource table.
pub struct GuestAuthority {
    authority: Authority,
}

/// Everything one running guest owns.
pub struct SandboxState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    /// Policy, egress and audit for this sandbox; its handle table is the only place any of
    /// its guest APIs finds a handle.
    outbound: Arc<Outbound>,
    live_handles: usize,
    /// Derived handles alive in this sandbox's whole tree (shared with its parent and
    /// children), held by a guest or kept alive by their descendants.
    quota: Arc<crate::policy::HandleQuota>,
    response_cap: u64,
    /// The engine, linker and caches, for nested sandboxes.
    shared: Arc<Shared>,
    /// 0 for a top-level guest.
    depth: u32,
    /// When the wall-clock limit ends this sandbox.
    deadline: Option<tokio::time::Instant>,
    children: u32,
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: UrlcapHttpHooks,
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

/// Linear memory accounting for one sandbox: a grow past the limit traps, and a nested sandbox
/// gets at most what is left.
pub(crate) struct Limiter {
    memory_limit: Option<usize>,
    memory_used: usize,
    /// Set when a grow was refused: how a trap is known to be the memory limit (typed, never
    /// read from an error's text, which a guest's function names can fake).
    limit_hit: bool,
}

impl Limiter {
    /// Bytes this sandbox may still grow by (None: unlimited).
    pub(crate) fn remaining(&self) -> Option<u64> {
        self.memory_limit
            .map(|l| l.saturating_sub(self.memory_used) as u64)
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if let Some(limit) = self.memory_limit {
            if self.memory_used.saturating_add(growth) > limit {
                self.limit_hit = true;
                wasmtime::bail!(
                    "memory limit of {} exceeded",
                    bytesize::ByteSize(limit as u64).display().iec()
                );
            }
        }
        self.memory_used = self.memory_used.saturating_add(growth);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        64
    }
}

/// Most elements one table may grow to.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Default nesting depth: a top-level guest, and three levels of sandboxes below it.
pub const DEFAULT_MAX_DEPTH: u32 = 3;

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
    pub env: Vec<(String, String)>,
    /// Host directory, guest path.
    pub dirs: Vec<(String, String)>,
    pub memory: Option<u64>,
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

/// Guest stdout and stderr: the host's, or captured.
#[derive(Clone)]
pub enum Stdio {
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

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
    /// Why the host stopped the guest (trap, limit), if it did.
    pub message: Option<String>,
}

/// What every sandbox of one host shares: the engines, their linkers, linked components.
///
/// Two engines: the host's own components (`urlcap run`'s guest, an embedder's) compile with
/// wasmtime's on-disk cache, so the next run starts fast; components a guest hands to
/// `sandbox.run` compile with a second engine that has no disk cache, so nothing a guest
/// supplies is ever written to the host's disk, and they are kept only in a bounded in-memory
/// cache.
pub(crate) struct Shared {
    engine: Engine,
    linker: Linker<SandboxState>,
    commands: compiled::CompiledCache<CommandPre<SandboxState>>,
    /// The engine and linker for guest-supplied components, made on the first spawn.
    nested: std::sync::OnceLock<Result<(Engine, Linker<SandboxState>), String>>,
    nested_commands: compiled::CompiledCache<CommandPre<SandboxState>>,
    /// The nested engine, for the epoch ticker once it exists.
    nested_weak: Arc<std::sync::OnceLock<wasmtime::EngineWeak>>,
    max_depth: u32,
    ticker_stop: Arc<AtomicBool>,
    /// Guest-supplied components compiling at once, host-wide: see [`MAX_CONCURRENT_COMPILES`].
    compile_slots: Arc<tokio::sync::Semaphore>,
    /// Guest-supplied components compiling now (whether or not anyone still waits for them).
    compiling: AtomicUsize,
}

/// Most guest-supplied components compiling at once in one host. wasmtime cannot cancel a
/// compile, so one that outlives the sandbox that asked for it (its wall clock ended the
/// spawn) runs on to its end — bounded by the admission caps — and keeps its slot until then:
/// a guest that keeps spawning and abandoning compiles makes the host compile at most this
/// many at a time, and its next spawn waits for a slot within its own wall clock.
pub const MAX_CONCURRENT_COMPILES: usize = 2;

/// Most host-supplied components kept linked, and their total bytes.
const HOST_CACHE: (usize, usize) = (64, 512 << 20);
/// Most guest-supplied components kept linked, and their total bytes.
pub const NESTED_CACHE: (usize, usize) = (16, 64 << 20);

impl Drop for Shared {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The engine and linker, shared by every sandbox; compiles components. Cloning is cheap and
/// shares them (so sandboxes can run on several tasks at once).
#[derive(Clone)]
pub struct WasmHost {
    shared: Arc<Shared>,
}

/// An engine for urlcap's sandboxes (epoch interruption, pooling), with or without wasmtime's
/// on-disk compilation cache, and its linker: wasi:cli, wasi:http and urlcap:http.
fn engine(disk_cache: bool) -> wasmtime::Result<(Engine, Linker<SandboxState>)> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.concurrency_support(false);
    // Sized for a few dozen concurrent sandboxes (nesting included). The async stack pool
    // matters for start-up: wasmtime's default of 1000 stacks costs ~2 ms to set up.
    let mut pooling = wasmtime::PoolingAllocationConfig::default();
    pooling
        .total_component_instances(128)
        .total_memories(128)
        .total_tables(128)
        .total_core_instances(512)
        .total_stacks(128);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
    if disk_cache {
        if let Ok(cache) = wasmtime::Cache::from_file(None) {
            config.cache(Some(cache));
        }
    }
    let engine = Engine::new(&config)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    guest_api::Imports::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
    Ok((engine, linker))
}

impl WasmHost {
    pub fn new() -> wasmtime::Result<WasmHost> {
        WasmHost::with_max_depth(DEFAULT_MAX_DEPTH)
    }

    /// A host whose guests may nest sandboxes `max_depth` levels deep (0: no nesting).
    pub fn with_max_depth(max_depth: u32) -> wasmtime::Result<WasmHost> {
        let (engine, linker) = engine(true)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let nested_weak: Arc<std::sync::OnceLock<wasmtime::EngineWeak>> = Arc::default();
        let (weak_engine, stop, nested) = (engine.weak(), ticker_stop.clone(), nested_weak.clone());
        std::thread::Builder::new()
            .name("urlcap-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                    if let Some(engine) = nested.get().and_then(|w| w.upgrade()) {
                        engine.increment_epoch();
                    }
                }
            })?;
        let shared = Shared {
            engine,
            linker,
            commands: compiled::CompiledCache::new(HOST_CACHE.0, HOST_CACHE.1),
            nested: std::sync::OnceLock::new(),
            nested_commands: compiled::CompiledCache::new(NESTED_CACHE.0, NESTED_CACHE.1),
            compile_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_COMPILES)),
            compiling: AtomicUsize::new(0),
            nested_weak,
            max_depth,
            ticker_stop,
        };
        Ok(WasmHost {
            shared: Arc::new(shared),
        })
    }

    /// Compile (or load from the cache) a component.
    pub fn compile(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        Component::new(&self.shared.engine, wasm)
    }

    /// Link a component once; the result instantiates quickly, many times.
    pub fn prepare(&self, component: &Component) -> wasmtime::Result<CommandPre<SandboxState>> {
        CommandPre::new(self.shared.linker.instantiate_pre(component)?)
    }

    /// Compile and link `wasm`, or reuse the result for the same bytes.
    pub fn command_for(&self, wasm: &[u8]) -> wasmtime::Result<CommandPre<SandboxState>> {
        if let Some(command) = self.shared.commands.get(wasm) {
            return Ok(command);
        }
        let command = self.prepare(&self.compile(wasm)?)?;
        self.shared
            .commands
            .insert(Arc::from(wasm), command.clone());
        Ok(command)
    }

    /// Guest-supplied components kept compiled now: entries and bytes.
    pub fn nested_cache_size(&self) -> (usize, usize) {
        self.shared.nested_commands.size()
    }

    /// Guest-supplied components compiling now, including those whose sandbox stopped waiting
    /// (never more than [`MAX_CONCURRENT_COMPILES`]).
    pub fn compiles_running(&self) -> usize {
        self.shared.compiling.load(Ordering::SeqCst)
    }

    /// Run a prepared command component in a new top-level sandbox.
    pub async fn run(
        &self,
        command: &CommandPre<SandboxState>,
        spec: SandboxSpec,
    ) -> wasmtime::Result<Outcome> {
        let quota =
            crate::policy::HandleQuota::new(MAX_LIVE_HANDLES, guest_api::MAX_LIVE_HANDLE_BYTES);
        self.shared.clone().run(command, spec, 0, quota).await
    }
}

impl Shared {
    /// Vet, compile (with the nested engine: never the disk cache) and link a guest-supplied
    /// component, or reuse the result for the same bytes. Blocking: run it off the async
    /// threads.
    pub(crate) fn nested_command_for(
        &self,
        wasm: Arc<[u8]>,
    ) -> Result<CommandPre<SandboxState>, String> {
        if let Some(command) = self.nested_commands.get(&wasm) {
            return Ok(command);
        }
        admission::vet_child_component(&wasm)?;
        self.compiling.fetch_add(1, Ordering::SeqCst);
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&self.compiling);
        let (engine, linker) = self
            .nested
            .get_or_init(|| {
                let made = engine(false).map_err(|e| e.to_string())?;
                let _ = self.nested_weak.set(made.0.weak());
                Ok(made)
            })
            .as_ref()
            .map_err(|e| format!("the host cannot run nested sandboxes: {e}"))?;
        let first_line = |e: wasmtime::Error| {
            let text = e.to_string();
            text.lines().next().unwrap_or("not a component").to_string()
        };
        let component = Component::new(engine, &wasm).map_err(first_line)?;
        let command = linker
            .instantiate_pre(&component)
            .and_then(CommandPre::new)
            .map_err(first_line)?;
        self.nested_commands.insert(wasm, command.clone());
        Ok(command)
    }

    /// The linked command for a guest-supplied component, if it is in the bounded cache.
    pub(crate) fn nested_cached(&self, wasm: &[u8]) -> Option<CommandPre<SandboxState>> {
        self.nested_commands.get(wasm)
    }

    /// A slot to compile a guest-supplied component in, held until that compile ends.
    pub(crate) async fn compile_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.compile_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the compile slots are never closed")
    }

    pub(crate) fn max_depth(&self) -> u32 {
        self.max_depth
    }

    /// Run `command` in a new sandbox `depth` levels below the top.
    pub(crate) async fn run(
        self: Arc<Shared>,
        command: &CommandPre<SandboxState>,
        spec: SandboxSpec,
        depth: u32,
        quota: Arc<crate::policy::HandleQuota>,
    ) -> wasmtime::Result<Outcome> {
        let mut wasi = WasiCtx::builder();
        wasi.args(&spec.args)
            .envs(&spec.env)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (host, guest) in &spec.dirs {
            wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadWrite)?;
        }
        match &spec.stdio {
            Stdio::Inherit => {
                wasi.inherit_stdout().inherit_stderr();
            }
            Stdio::InheritBesideAudit(audit) => {
                wasi.inherit_stdout()
                    .stderr(capture::GuestOutput(guest_stderr::BesideAudit::new(
                        audit.clone(),
                    )));
            }
            Stdio::Capture(out, err) => {
                wasi.stdout(capture::GuestOutput(out.clone()))
                    .stderr(capture::GuestOutput(err.clone()));
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
        let mut store = Store::new(command.engine(), state);
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
                wasmtime::UpdateDeadline::Continue(1)
            })
        });
        store.set_epoch_deadline(1);
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
            Err(e) => {
                let memory_hit = spec.memory.filter(|_| store.data().limiter.limit_hit);
                outcome_of_error(e, spec.timeout, spec.memory, memory_hit)
            }
        })
    }
}

impl Outcome {
    /// `exit status N` and, if the host stopped the guest, why (the `sandbox.exited` detail).
    pub fn summary(&self) -> String {
        match &self.message {
            Some(m) => format!("exit status {}: {m}", self.exit_code),
            None => format!("exit status {}", self.exit_code),
        }
    }
}

/// How many resources (wasi streams, pollables, `fields`, requests, bodies…) a sandbox may
/// hold at once. The host keeps each one's state for the guest, outside the guest's memory:
/// at most 64 KiB each (a `fields` map is capped at [`wasi_http::FIELD_SIZE_LIMIT`], an unsent
/// body at two writes of [`wasi_http::OUTGOING_BODY_CHUNK`]), so a guest can make the host hold
/// at most its own memory limit again. At least 256 (a wasi:http guest uses a few dozen at
/// once); without a memory limit, wasmtime's default of a million.
pub fn resource_capacity(memory_limit: Option<usize>) -> usize {
    const HELD_PER_RESOURCE: usize = 64 << 10;
    memory_limit.map_or(1_000_000, |m| (m / HELD_PER_RESOURCE).clamp(256, 1_000_000))
}

/// How a run ended: it returned, its deadline passed, or the audit log failed.
enum Ended<T> {
    Ran(T),
    Late,
    AuditFailed,
}

/// `run`'s output, unless `deadline` passes or `audit` fails first. Both are checked *before*
/// `run` is polled, so when a parent's and its child's deadlines have both passed (a child's is
/// never earlier: it is the parent's remaining time, computed a moment later), the parent's —
/// the enclosing one — always wins, and the child's end is written by its drop guard.
async fn before<T>(
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

/// Exit status of a sandbox stopped because its audit log could not be written (sysexits'
/// EX_IOERR).
pub const EXIT_AUDIT: i32 = 74;

fn audit_outcome() -> Outcome {
    Outcome {
        exit_code: EXIT_AUDIT,
        message: Some(
            "guest stopped: the audit log could not be written (it fails closed; --audit-fail-open keeps going)".into(),
        ),
    }
}

fn timeout_outcome(limit: Duration) -> Outcome {
    Outcome {
        exit_code: EXIT_TIMEOUT,
        message: Some(format!(
            "guest stopped: wall-clock limit of {} reached",
            humantime::format_duration(limit)
        )),
    }
}

/// Exit statuses for how a guest stopped: its own `exit(n)`, a time limit, the memory limit
/// (`memory_hit`: the limiter refused a grow), or any other trap (with wasmtime's message).
fn outcome_of_error(
    e: wasmtime::Error,
    timeout: Option<Duration>,
    memory_limit: Option<u64>,
    memory_hit: Option<u64>,
) -> Outcome {
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Outcome {
            exit_code: exit.0,
            message: None,
        };
    }
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return timeout_outcome(timeout.unwrap_or_default());
    }
    if e.chain().any(|c| {
        matches!(
            c.downcast_ref(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    }) {
        return Outcome {
            exit_code: EXIT_TRAP,
            message: Some(format!(
                "guest stopped: it held more resources at once (streams, requests, header maps) than the host keeps for its memory limit ({})",
                resource_capacity(memory_limit.map(|m| usize::try_from(m).unwrap_or(usize::MAX)))
            )),
        };
    }
    if let Some(limit) = memory_hit {
        return Outcome {
            exit_code: EXIT_TRAP,
            message: Some(format!(
                "guest stopped: memory limit of {} exceeded",
                bytesize::ByteSize(limit).display().iec()
            )),
        };
    }
    // The root cause says what happened ("wasm trap: unreachable", a host error); the outer
    // layers only say where.
    let cause = e.root_cause().to_string();
    let cause = cause.lines().next().unwrap_or("trap");
    Outcome {
        exit_code: EXIT_TRAP,
        message: Some(format!("guest trapped: {cause}")),
    }
}
