//! The engines, linker and caches every sandbox of one host shares, and compiling components
//! (the host's own with urlcap's disk cache, [`super::artifacts`]; guest-supplied ones without
//! it, vetted first, at most [`MAX_CONCURRENT_COMPILES`] at once).

use super::artifacts::ArtifactCache;
use super::compile_worker::{Allowance, CompileError, CompileWorker};
use super::guest_api::MAX_LIVE_HANDLES;
use super::{
    admission, compiled, guest_api, Outcome, SandboxSpec, SandboxState, DEFAULT_MAX_DEPTH,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};
use wasmtime_wasi::p2::bindings::CommandPre;

/// How often the epoch advances; wall-clock limits are measured in these ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What every sandbox of one host shares: the engines, their linkers, linked components.
///
/// Two engines: the host's own components (`urlcap run`'s guest, an embedder's) compile through
/// urlcap's on-disk cache ([`ArtifactCache`]), so the next run starts fast; components a guest
/// hands to `sandbox.run` compile with a second engine and never that cache, so nothing a guest
/// supplies is ever written to the host's disk, and they are kept only in a bounded in-memory
/// cache.
pub(crate) struct Shared {
    pub(super) engine: Engine,
    pub(super) linker: Linker<SandboxState>,
    /// Where the host's own components are kept compiled across runs, if anywhere.
    pub(super) artifacts: Option<ArtifactCache>,
    pub(super) commands: compiled::CompiledCache<CommandPre<SandboxState>>,
    /// The engine and linker for guest-supplied components, made on the first spawn.
    pub(super) nested: std::sync::OnceLock<Result<(Engine, Linker<SandboxState>), String>>,
    pub(super) nested_commands: compiled::CompiledCache<NestedCommand>,
    /// The nested engine, for the epoch ticker once it exists.
    pub(super) nested_weak: Arc<std::sync::OnceLock<wasmtime::EngineWeak>>,
    pub(super) max_depth: u32,
    pub(super) ticker_stop: Arc<AtomicBool>,
    /// Guest-supplied components compiling at once, host-wide: see [`MAX_CONCURRENT_COMPILES`].
    pub(super) compile_slots: Arc<tokio::sync::Semaphore>,
    /// Guest-supplied components compiling now (whether or not anyone still waits for them).
    pub(super) compiling: Arc<AtomicUsize>,
    /// Where guest-supplied components compile: a process of their own that the deadline kills
    /// (`Some`), or a thread of this one that runs to the end of the compile (`None`).
    pub(super) worker: Option<CompileWorker>,
}

/// Most guest-supplied components compiling at once in one host. A compile in a process of its
/// own ([`CompileWorker`]) ends when its sandbox's wall clock does; one in a thread cannot be
/// cancelled, so it runs on to its end — bounded by the admission caps — and keeps its slot
/// until then: a guest that keeps spawning and abandoning compiles makes the host compile at
/// most this many at a time, and its next spawn waits for a slot within its own wall clock.
pub const MAX_CONCURRENT_COMPILES: usize = 2;

/// Bytes of each pooled linear memory kept resident (reset with `memset`) between instances.
pub(super) const KEEP_RESIDENT_MEMORY: usize = 1 << 20;

/// Bytes of each pooled table kept resident between instances.
pub(super) const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Most host-supplied components kept linked, and their total bytes.
const HOST_CACHE: (usize, usize) = (64, 512 << 20);

/// Most guest-supplied components kept linked, and their total bytes (component and compiled
/// code).
pub const NESTED_CACHE: (usize, usize) = (16, 64 << 20);

/// A guest-supplied component, linked, and the bytes the host keeps for it: what its sandbox
/// is charged while the child runs, and what the cache counts.
#[derive(Clone)]
pub(crate) struct NestedCommand {
    pub(crate) command: CommandPre<SandboxState>,
    /// Its compiled code, and the tables loading it built when the compile process measured
    /// them (they can be many times the code).
    pub(crate) kept_bytes: u64,
}

/// Bytes of compiled code (the loaded image) of a component.
pub(super) fn code_bytes(component: &Component) -> usize {
    let image = component.image_range();
    (image.end as usize).saturating_sub(image.start as usize)
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The engine and linker, shared by every sandbox; compiles components. Cloning is cheap and
/// shares them (so sandboxes can run on several tasks at once).
#[derive(Clone)]
pub struct WasmHost {
    pub(super) shared: Arc<Shared>,
}

/// The compile settings of urlcap's engines (epoch interruption; for guest-supplied code, a
/// compile whose time grows no faster than the code and that uses one core), without the
/// instance allocator.
pub(super) fn compile_config(guest_supplied: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.concurrency_support(false);
    if guest_supplied {
        // Guest-supplied code: compile time must not grow faster than the code does, so the
        // register allocator is Cranelift's single-pass one (the default backtracking one is
        // superlinear on large functions with many live locals: a 191 KB function of if/else
        // over 4,096 locals took it minutes), and one compile uses one core, so a compile a
        // deadline abandoned holds one core of the host, not all of them.
        config.cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass);
        config.parallel_compilation(false);
    }
    config
}

/// An engine that only compiles guest-supplied components, with the settings of the engine
/// that runs them: what a compile process ([`super::compile_worker`]) uses. No instance
/// allocator is reserved, as it runs nothing.
pub(super) fn nested_compile_engine() -> wasmtime::Result<Engine> {
    Engine::new(&compile_config(true))
}

/// Whether pooled slots keep their pages between instances: not while the host swaps.
/// wasmtime 48 resets a kept slot with `PAGEMAP_SCAN`, writing back only the dirtied pages
/// that are *present*: a page the last instance wrote that the kernel has since swapped out
/// (swap, zram) is neither reset nor given back, and the next instance in the slot — another
/// request, another route's or tenant's component — reads what it held, or, in a table, its
/// stale function references (upstream bytecodealliance/wasmtime#14357, open). Without
/// `PAGEMAP_SCAN` the reset writes the first kept MiB whatever was touched (about 18 µs) and
/// still gives back the rest, which costs more than it saves, so a swapping host keeps
/// nothing, as before pages were kept. Judged once, when the engine is built.
fn keeps_pages(swap_in_use: bool) -> bool {
    !swap_in_use
}

/// Whether the host has a swap area on (a line past the header of `/proc/swaps`), or cannot
/// tell.
fn swap_in_use() -> bool {
    match std::fs::read_to_string("/proc/swaps") {
        Ok(swaps) => swaps_listed(&swaps),
        Err(_) => cfg!(target_os = "linux"),
    }
}

/// Whether `/proc/swaps` text lists a swap area.
fn swaps_listed(swaps: &str) -> bool {
    swaps.lines().skip(1).any(|line| !line.trim().is_empty())
}

/// An engine for urlcap's sandboxes (epoch interruption, pooling), for the host's own
/// components or (`guest_supplied`) for those a guest hands to `sandbox.run`, and its linker:
/// wasi:cli, wasi:http and urlcap:http. Neither has wasmtime's on-disk cache: the host's own
/// components go through urlcap's ([`ArtifactCache`]).
fn engine(guest_supplied: bool) -> wasmtime::Result<(Engine, Linker<SandboxState>)> {
    engine_keeping(guest_supplied, keeps_pages(swap_in_use()))
}

/// [`engine`], its pooled slots keeping their pages between instances or not (`keep`).
fn engine_keeping(
    guest_supplied: bool,
    keep: bool,
) -> wasmtime::Result<(Engine, Linker<SandboxState>)> {
    let mut config = compile_config(guest_supplied);
    // Sized for a few dozen concurrent sandboxes (nesting included). The async stack pool
    // matters for start-up: wasmtime's default of 1000 stacks is measurably slower to set up
    // (BENCHMARKS.md, "What moved the numbers").
    let mut pooling = wasmtime::PoolingAllocationConfig::default();
    pooling
        .total_component_instances(128)
        .total_memories(128)
        .total_tables(128)
        .total_core_instances(512)
        .total_stacks(128);
    // A slot's memory and tables are reset for the next instance with `memset` (only the
    // pages the last one dirtied: the kernel says which) instead of being handed back with
    // `madvise` and faulted in again page by page. Every instance still starts from the
    // component's own initial memory; what stays is the pages. Under `urlcap serve` (a fresh
    // instance per request) the `madvise`, its TLB flush on the other cores and the faults
    // that followed were about a third of a request's CPU (BENCHMARKS.md, "What moved the
    // numbers"). Bounded: at most `KEEP_RESIDENT_MEMORY` and `KEEP_RESIDENT_TABLE` stay
    // resident per slot that has been used, so 128 MiB and 8 MiB across each engine's pool.
    // Only on a host without swap: see [`keeps_pages`].
    pooling
        .linear_memory_keep_resident(if keep { KEEP_RESIDENT_MEMORY } else { 0 })
        .table_keep_resident(if keep { KEEP_RESIDENT_TABLE } else { 0 })
        .pagemap_scan(if keep {
            wasmtime::Enabled::Auto
        } else {
            wasmtime::Enabled::No
        });
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
    let engine = Engine::new(&config)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    guest_api::Imports::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
    Ok((engine, linker))
}

impl WasmHost {
    /// A host whose guests may nest sandboxes [`DEFAULT_MAX_DEPTH`] levels deep.
    pub fn new() -> wasmtime::Result<WasmHost> {
        WasmHost::with_max_depth(DEFAULT_MAX_DEPTH)
    }

    /// A host whose guests may nest sandboxes `max_depth` levels deep (0: no nesting), and
    /// compile the components they hand to `sandbox.run` in this process.
    pub fn with_max_depth(max_depth: u32) -> wasmtime::Result<WasmHost> {
        WasmHost::with_compile_worker(max_depth, None)
    }

    /// A host whose guests may nest sandboxes `max_depth` levels deep, and whose guests'
    /// components compile with `worker` (in a process the deadline kills, charged to the
    /// spawning sandbox's memory and time), or in this process when `None`.
    pub fn with_compile_worker(
        max_depth: u32,
        worker: Option<CompileWorker>,
    ) -> wasmtime::Result<WasmHost> {
        let (engine, linker) = engine(false)?;
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
            artifacts: ArtifactCache::from_env(),
            commands: compiled::CompiledCache::new(HOST_CACHE.0, HOST_CACHE.1),
            nested: std::sync::OnceLock::new(),
            nested_commands: compiled::CompiledCache::new(NESTED_CACHE.0, NESTED_CACHE.1),
            compile_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_COMPILES)),
            compiling: Arc::default(),
            worker,
            nested_weak,
            max_depth,
            ticker_stop,
        };
        Ok(WasmHost {
            shared: Arc::new(shared),
        })
    }

    /// Compile a component, or load it from urlcap's on-disk cache
    /// (`$XDG_CACHE_HOME/urlcap/components`, else `$HOME/.cache/urlcap/components`), where it is
    /// kept for the next run.
    pub fn compile(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        match &self.shared.artifacts {
            Some(cache) => cache.load_or_compile(&self.shared.engine, wasm),
            None => Component::new(&self.shared.engine, wasm),
        }
    }

    /// Link a component once; the result instantiates quickly, many times.
    pub fn prepare(&self, component: &Component) -> wasmtime::Result<CommandPre<SandboxState>> {
        CommandPre::new(self.shared.linker.instantiate_pre(component)?)
    }

    /// Compile and link `wasm`, or reuse the result for the same bytes (kept as a copy).
    pub fn command_for(&self, wasm: &[u8]) -> wasmtime::Result<CommandPre<SandboxState>> {
        self.linked(wasm, || Arc::from(wasm))
    }

    /// [`WasmHost::command_for`] for bytes already shared: the cache keeps this buffer, not a
    /// copy of it (a 13 MB component would otherwise be copied once more at start-up).
    pub fn command_for_shared(
        &self,
        wasm: Arc<[u8]>,
    ) -> wasmtime::Result<CommandPre<SandboxState>> {
        self.linked(&wasm, || wasm.clone())
    }

    fn linked(
        &self,
        wasm: &[u8],
        keep: impl FnOnce() -> Arc<[u8]>,
    ) -> wasmtime::Result<CommandPre<SandboxState>> {
        if let Some(command) = self.shared.commands.get(wasm) {
            return Ok(command);
        }
        let component = self.compile(wasm)?;
        let command = self.prepare(&component)?;
        self.shared
            .commands
            .insert(keep(), command.clone(), code_bytes(&component));
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
    /// component within `allowance`, or reuse the result for the same bytes. Waits for a
    /// compile slot first. Dropping the future abandons the compile: a compile process is
    /// killed; a compile in a thread runs on and keeps its slot until it ends.
    pub(crate) async fn compile_nested(
        self: &Arc<Self>,
        wasm: Arc<[u8]>,
        allowance: Allowance,
    ) -> Result<NestedCommand, CompileError> {
        if let Some(command) = self.nested_commands.get(&wasm) {
            return Ok(command);
        }
        let slot = self.compile_slot().await;
        // Another spawn of the same bytes may have compiled them while this one waited.
        if let Some(command) = self.nested_commands.get(&wasm) {
            return Ok(command);
        }
        let vetted = wasm.clone();
        tokio::task::spawn_blocking(move || admission::vet_child_component(&vetted))
            .await
            .map_err(|_| CompileError::Invalid(super::compile_worker::COMPILER_FAILED.into()))?
            .map_err(CompileError::Invalid)?;
        let shared = self.clone();
        let Some(worker) = &self.worker else {
            return tokio::task::spawn_blocking(move || {
                let _held_until_compiled = slot;
                shared.compile_nested_here(wasm)
            })
            .await
            // A panic of the compiler on these bytes; its text names the host's code.
            .map_err(|_| CompileError::Invalid(super::compile_worker::COMPILER_FAILED.into()))?;
        };
        let _running = Compiling::start(&self.compiling);
        let compiled = worker.precompile(&wasm, allowance).await?;
        let command = tokio::task::spawn_blocking(move || {
            let (engine, linker) = shared.nested_engine().map_err(CompileError::Host)?;
            // The crate's one unsafe load of compiled code.
            // SAFETY: the artifact was made by this program's own compile process for these
            // bytes, by this wasmtime under the nested engine's compile settings (which
            // `deserialize` checks, with the version); it is trusted as the compiler is.
            #[allow(unsafe_code)]
            let component = unsafe { Component::deserialize(engine, &compiled.artifact) }
                .map_err(|e| CompileError::Host(first_line(e)))?;
            drop(compiled.artifact);
            let command = shared.keep(wasm, linker, &component, compiled.loaded_bytes)?;
            Ok::<_, CompileError>(command)
        })
        .await
        .map_err(|_| CompileError::Host("loading the compiled code failed".into()))??;
        Ok(command)
    }

    /// The in-process compile of [`Shared::compile_nested`], of vetted bytes. Blocking.
    fn compile_nested_here(&self, wasm: Arc<[u8]>) -> Result<NestedCommand, CompileError> {
        let _running = Compiling::start(&self.compiling);
        let (engine, linker) = self.nested_engine().map_err(CompileError::Host)?;
        let component =
            Component::new(engine, &wasm).map_err(|e| CompileError::Invalid(first_line(e)))?;
        self.keep(wasm, linker, &component, 0)
    }

    /// Link a compiled guest-supplied component and keep it in the bounded cache.
    /// `loaded_bytes`: what the compile process measured it takes loaded, when known.
    fn keep(
        &self,
        wasm: Arc<[u8]>,
        linker: &Linker<SandboxState>,
        component: &Component,
        loaded_bytes: u64,
    ) -> Result<NestedCommand, CompileError> {
        let kept = (code_bytes(component) as u64).max(loaded_bytes);
        let command = NestedCommand {
            command: link(linker, component)?,
            kept_bytes: kept,
        };
        self.nested_commands.insert(
            wasm,
            command.clone(),
            usize::try_from(kept).unwrap_or(usize::MAX),
        );
        Ok(command)
    }

    /// The engine and linker for guest-supplied components, made on first use.
    fn nested_engine(&self) -> Result<&(Engine, Linker<SandboxState>), String> {
        self.nested
            .get_or_init(|| {
                let made = engine(true).map_err(|e| e.to_string())?;
                let _ = self.nested_weak.set(made.0.weak());
                Ok(made)
            })
            .as_ref()
            .map_err(|e| format!("the host cannot run nested sandboxes: {e}"))
    }

    /// A slot to compile a guest-supplied component in, held until that compile ends.
    async fn compile_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.compile_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the compile slots are never closed")
    }

    pub(crate) fn max_depth(&self) -> u32 {
        self.max_depth
    }
}

/// Link a guest-supplied component against the host's imports; a component importing what the
/// host does not give is the guest's error.
fn link(
    linker: &Linker<SandboxState>,
    component: &Component,
) -> Result<CommandPre<SandboxState>, CompileError> {
    linker
        .instantiate_pre(component)
        .and_then(CommandPre::new)
        .map_err(|e| CompileError::Invalid(first_line(e)))
}

/// An error's first line (wasmtime's later lines carry backtraces and context).
fn first_line(e: wasmtime::Error) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or("not a component").to_string()
}

/// Counts one compile as running while it lives ([`WasmHost::compiles_running`]).
struct Compiling(Arc<AtomicUsize>);

impl Compiling {
    fn start(running: &Arc<AtomicUsize>) -> Compiling {
        running.fetch_add(1, Ordering::SeqCst);
        Compiling(running.clone())
    }
}

impl Drop for Compiling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with one exported memory `m` of 32 pages (2 MiB, past the kept 1 MiB).
    const TWO_MIB_MEMORY: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x05, 0x03, 0x01, 0x00, 0x20, // memory section: one memory, min 32 pages
        0x07, 0x05, 0x01, 0x01, b'm', 0x02, 0x00, // export section: "m", memory 0
    ];

    /// Bytes the pool of an engine keeping pages (or not) holds resident in unused slots
    /// after one instance that wrote one byte of its memory.
    async fn kept_after_one_write(keep: bool) -> usize {
        let (engine, _) = engine_keeping(true, keep).unwrap();
        let module = wasmtime::Module::new(&engine, TWO_MIB_MEMORY).unwrap();
        let metrics = engine.pooling_allocator_metrics().unwrap();
        assert_eq!(metrics.unused_memory_bytes_resident(), 0);
        {
            let mut store = wasmtime::Store::new(&engine, ());
            let instance = wasmtime::Instance::new_async(&mut store, &module, &[])
                .await
                .unwrap();
            let memory = instance.get_memory(&mut store, "m").unwrap();
            memory.data_mut(&mut store)[0] = 1;
        }
        assert_eq!(metrics.unused_warm_memories(), 1);
        metrics.unused_memory_bytes_resident()
    }

    /// A host that swaps gets slots that keep nothing between instances: wasmtime's reset of
    /// kept pages (`PAGEMAP_SCAN`) skips a dirtied page that was swapped out, and the next
    /// instance would read what it held. Without swap, the page written stays (reset).
    #[tokio::test]
    async fn slots_keep_no_pages_between_instances_on_a_host_that_swaps() {
        assert_eq!(kept_after_one_write(keeps_pages(true)).await, 0);
        let kept = kept_after_one_write(keeps_pages(false)).await;
        assert!(kept > 0 && kept <= KEEP_RESIDENT_MEMORY, "{kept}");
    }

    /// One exported memory `m` of 32 pages and one exported funcref table `t` of 16.
    const MEMORY_AND_TABLE: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x04, 0x04, 0x01, 0x70, 0x00, 0x10, // table section: funcref, min 16
        0x05, 0x03, 0x01, 0x00, 0x20, // memory section: min 32 pages
        0x07, 0x09, 0x02, 0x01, b'm', 0x02, 0x00, 0x01, b't', 0x01, 0x00, // exports
    ];

    /// With pages kept, the next instance in a slot finds nothing the last one left: every
    /// byte of its memory (the kept MiB and past it) and of pages it grew was written, every
    /// table entry set to a function; the next instance, in the same warm slots, has its
    /// initial size, all zeros and only null entries.
    #[tokio::test]
    async fn the_next_instance_in_a_kept_slot_finds_no_memory_or_function_the_last_left() {
        let (engine, _) = engine_keeping(true, keeps_pages(false)).unwrap();
        let module = wasmtime::Module::new(&engine, MEMORY_AND_TABLE).unwrap();
        let metrics = engine.pooling_allocator_metrics().unwrap();
        {
            let mut store = wasmtime::Store::new(&engine, ());
            let instance = wasmtime::Instance::new_async(&mut store, &module, &[])
                .await
                .unwrap();
            let memory = instance.get_memory(&mut store, "m").unwrap();
            memory.grow(&mut store, 16).unwrap();
            memory.data_mut(&mut store).fill(0xaa);
            let table = instance.get_table(&mut store, "t").unwrap();
            let func = wasmtime::Func::wrap(&mut store, || 7i32);
            for i in 0..table.size(&store) {
                table.set(&mut store, i, func.into()).unwrap();
            }
        }
        assert_eq!(metrics.unused_warm_memories(), 1);
        assert_eq!(metrics.unused_warm_tables(), 1);
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new_async(&mut store, &module, &[])
            .await
            .unwrap();
        assert_eq!(metrics.unused_warm_memories(), 0, "not the same slot");
        assert_eq!(metrics.unused_warm_tables(), 0, "not the same slot");
        let memory = instance.get_memory(&mut store, "m").unwrap();
        assert_eq!(memory.size(&store), 32);
        let left = memory.data(&store).iter().filter(|b| **b != 0).count();
        assert_eq!(left, 0, "bytes the last instance wrote");
        // The pages it grew are out of bounds again, and zeros when grown anew.
        memory.grow(&mut store, 16).unwrap();
        assert!(memory.data(&store).iter().all(|b| *b == 0));
        let table = instance.get_table(&mut store, "t").unwrap();
        for i in 0..table.size(&store) {
            let entry = table.get(&mut store, i).unwrap();
            assert!(
                entry.unwrap_func().is_none(),
                "a function left in entry {i}"
            );
        }
    }

    #[test]
    fn swap_is_in_use_when_proc_swaps_lists_an_area() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(!swaps_listed(header));
        assert!(!swaps_listed(""));
        let zram = format!("{header}/dev/zram0 partition\t8388604\t0\t100\n");
        assert!(swaps_listed(&zram));
    }
}
