//! Compiling a guest-supplied component in a process of its own, which the host can kill.
//!
//! wasmtime cannot cancel a compile once started, and what a compile costs depends on the
//! code, not only on its size: the admission caps (`host/admission.rs`) refuse the shapes
//! known to be costly, but each review found another. So the host (the `urlcap` command, or
//! an embedder that opts in with [`crate::sandbox::Builder::compile_worker`]) compiles a
//! guest's component in a short-lived process of its own:
//!
//! - its address space may grow by no more than the memory the spawning sandbox has left
//!   (`RLIMIT_AS`), so the compile is charged to that sandbox's memory limit;
//! - its CPU time is capped by the time the sandbox has left (`RLIMIT_CPU`), and the host kills
//!   it (`SIGKILL`) the moment the sandbox's wall clock ends or the spawn is abandoned;
//! - it dies with the host (`PR_SET_PDEATHSIG`), so a host killed mid-compile leaves none
//!   behind;
//! - it writes no file (`RLIMIT_FSIZE` 0, no core dump), gets no environment, and talks to the
//!   host only through its stdin (the component) and stdout (the compiled artifact).
//!
//! The artifact is what wasmtime's `Engine::precompile_component` makes, under the same
//! compile settings as the host's engine for guest-supplied code; the host loads it with
//! `Component::deserialize`, which checks that it was made by this wasmtime with compatible
//! settings. The host trusts it as it would trust the compiler in-process: the process is the
//! host's own program, started fresh for this one compile.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The argument after which a program's `main` hands over to [`serve`] (`urlcap` checks for
/// it before parsing its command line; it is not part of the documented interface).
pub const WORKER_ARG: &str = "__compile-guest-component";

/// Most CPU time one compile may take when its sandbox has no wall-clock limit.
pub const MAX_COMPILE_CPU: Duration = Duration::from_secs(60);

/// Most memory one compile may use when its sandbox has no memory limit.
pub const MAX_COMPILE_MEMORY: u64 = 2 << 30;

/// What a guest is told when the compiler failed on its component instead of refusing it.
pub(crate) const COMPILER_FAILED: &str =
    "the component could not be compiled (the compiler failed on it)";

/// Exit status of a compile process whose component did not compile (the message is the first
/// line of its stderr).
const EXIT_INVALID: u8 = 2;
/// Exit status of a compile process whose compiler panicked on the component.
const EXIT_PANIC: i32 = 101;
/// Exit status of a compile process that could not set its own limits or was misused.
const EXIT_UNUSABLE: u8 = 3;

/// How a compile process that succeeded tells the host, on its stderr, how much memory the
/// compiled component takes once loaded: `loaded-bytes BYTES`.
const MEMORY_LINE: &str = "loaded-bytes ";

/// Most bytes of a compile process's stderr the host reads.
const MAX_MESSAGE: u64 = 4096;

/// How to start a compile process: a program and the arguments that make its `main` call
/// [`serve`].
#[derive(Clone, Debug)]
pub struct CompileWorker {
    program: PathBuf,
    args: Vec<OsString>,
}

impl CompileWorker {
    /// `program ARGS... HOST_PID MEMORY CPU_SECONDS` must run [`serve`] with the last three
    /// arguments.
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> CompileWorker {
        CompileWorker {
            program: program.into(),
            args,
        }
    }

    /// This very program, started as `PROGRAM` [`WORKER_ARG`] `HOST_PID MEMORY CPU_SECONDS`: its
    /// `main` must call [`serve`] when its first argument is [`WORKER_ARG`]. On Linux the
    /// program is `/proc/self/exe`, the very file this process runs even if its path was
    /// since replaced (an upgrade mid-run) or removed.
    pub fn this_program() -> std::io::Result<CompileWorker> {
        let program = Path::new("/proc/self/exe");
        let program = if program.exists() {
            program.to_path_buf()
        } else {
            std::env::current_exe()?
        };
        Ok(CompileWorker::new(program, vec![WORKER_ARG.into()]))
    }
}

/// What a compile made: wasmtime's artifact, and the memory it takes once loaded — its code
/// and the tables loading builds, which can be many times the code (a few KB of re-exports
/// made megabytes of them). The compile process loads it once to measure that, so the host
/// can charge it before loading it.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) artifact: Vec<u8>,
    pub(crate) loaded_bytes: u64,
}

/// What one compile may spend: what its sandbox has left.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Allowance {
    /// Bytes of memory (None: the sandbox has no memory limit; [`MAX_COMPILE_MEMORY`] then).
    pub(crate) memory: Option<u64>,
    /// Wall-clock time (None: no limit; [`MAX_COMPILE_CPU`] of CPU time then).
    pub(crate) time: Option<Duration>,
}

impl Allowance {
    fn memory_bytes(self) -> u64 {
        self.memory
            .map_or(MAX_COMPILE_MEMORY, |m| m.min(MAX_COMPILE_MEMORY))
    }

    /// Whole seconds of CPU time, rounded up (the kill at the deadline is the finer bound).
    fn cpu_seconds(self) -> u64 {
        let time = self
            .time
            .map_or(MAX_COMPILE_CPU, |t| t.min(MAX_COMPILE_CPU));
        time.as_secs() + u64::from(time.subsec_nanos() > 0)
    }
}

/// Why a compile gave no artifact.
#[derive(Debug)]
pub(crate) enum CompileError {
    /// The bytes are not a component this host can run (the compiler's one-line reason).
    Invalid(String),
    /// The compile needed more memory or CPU time than its sandbox had left.
    OverLimit(String),
    /// The host could not compile (the compile process did not start, or failed on its own).
    Host(String),
}

impl CompileWorker {
    /// Compile `wasm` in a new process under `allowance`, returning wasmtime's artifact.
    /// Dropping the future kills the process.
    pub(crate) async fn precompile(
        &self,
        wasm: &[u8],
        allowance: Allowance,
    ) -> Result<Compiled, CompileError> {
        let memory = allowance.memory_bytes();
        let mut child = tokio::process::Command::new(&self.program)
            .arg0("urlcap-compile")
            .args(&self.args)
            .arg(std::process::id().to_string())
            .arg(memory.to_string())
            .arg(allowance.cpu_seconds().to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CompileError::Host(format!("the host's compiler did not start: {e}")))?;
        // However the process fails (a compiler that sleeps uses no CPU time), the host waits no
        // longer than twice its CPU time, even for a sandbox without a wall clock.
        let patience = Duration::from_secs(allowance.cpu_seconds().saturating_mul(2) + 5);
        let (mut stdin, mut stdout, mut stderr) = (
            child.stdin.take().expect("piped"),
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        let feed = async {
            // A compile process that stopped reading (it failed) shows in its exit status.
            let _ = stdin.write_all(wasm).await;
            drop(stdin);
        };
        // The artifact cannot be larger than the memory the process had to make it in.
        let (mut artifact, mut message) = (Vec::new(), Vec::new());
        let (mut stdout, mut stderr) =
            ((&mut stdout).take(memory), (&mut stderr).take(MAX_MESSAGE));
        let exchange = async {
            let ((), read, _) = tokio::join!(
                feed,
                stdout.read_to_end(&mut artifact),
                stderr.read_to_end(&mut message)
            );
            (read, child.wait().await)
        };
        let Ok((read, status)) = tokio::time::timeout(patience, exchange).await else {
            return Err(CompileError::OverLimit(format!(
                "compiling the component took longer than {} s",
                patience.as_secs()
            )));
        };
        let status =
            status.map_err(|e| CompileError::Host(format!("the host's compiler was lost: {e}")))?;
        read.map_err(|e| CompileError::Host(format!("the compiled code could not be read: {e}")))?;
        interpret(status, artifact, &message, allowance)
    }
}

/// What a compile process's exit status says (typed: a signal or an exit code, never text a
/// guest could shape, except the compiler's one-line reason for refusing the component).
fn interpret(
    status: std::process::ExitStatus,
    artifact: Vec<u8>,
    message: &[u8],
    allowance: Allowance,
) -> Result<Compiled, CompileError> {
    use std::os::unix::process::ExitStatusExt;
    if status.success() {
        let text = String::from_utf8_lossy(message);
        let loaded_bytes = text
            .lines()
            .find_map(|l| l.strip_prefix(MEMORY_LINE))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        return Ok(Compiled {
            artifact,
            loaded_bytes,
        });
    }
    let memory = bytesize::ByteSize(allowance.memory_bytes()).display().iec();
    match (status.code(), status.signal()) {
        (Some(code), _) if code == i32::from(EXIT_INVALID) => {
            let line = first_line(message);
            Err(CompileError::Invalid(if line.is_empty() {
                "the component did not compile".into()
            } else {
                line
            }))
        }
        // Rust aborts when an allocation fails, and allocations fail at the address-space limit
        // (so does a stack overflow, which the stack's guard makes an abort too).
        (_, Some(libc::SIGABRT)) => Err(CompileError::OverLimit(format!(
            "compiling the component needed more than the {memory} of memory this sandbox has left (or more stack than a compile has)"
        ))),
        // The compiler itself failed on these bytes (a panic: an assertion in the parser or
        // compiler). Its text is never passed on: it names the host's code, not the guest's.
        (Some(EXIT_PANIC), _) => Err(CompileError::Invalid(COMPILER_FAILED.into())),
        (_, Some(libc::SIGXCPU)) => Err(CompileError::OverLimit(format!(
            "compiling the component took more than the {} s of CPU time this sandbox has left",
            allowance.cpu_seconds()
        ))),
        // The hard CPU limit, or the system's out-of-memory killer.
        (_, Some(libc::SIGKILL)) => Err(CompileError::OverLimit(format!(
            "the compile was killed: it took more than the {} s of CPU time this sandbox has left, or the host ran short of memory",
            allowance.cpu_seconds()
        ))),
        // The compile process's own message (it could not set its limits): host text only.
        (Some(code), _) if code == i32::from(EXIT_UNUSABLE) => {
            Err(CompileError::Host(first_line(message)))
        }
        (code, signal) => Err(CompileError::Host(format!(
            "the host's compiler failed ({})",
            match (code, signal) {
                (Some(code), _) => format!("exit status {code}"),
                (_, Some(signal)) => format!("signal {signal}"),
                _ => "no status".into(),
            }
        ))),
    }
}

/// The first line of what a compile process wrote on its stderr, trimmed, at most 300
/// characters.
fn first_line(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    text.lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(300)
        .collect()
}

/// The compile process: read a component from stdin, compile it under the limits given as the
/// last three arguments (`HOST_PID`, the process it dies with; `MEMORY` bytes the address
/// space may grow by; `CPU_SECONDS`), and write the artifact to stdout (exit 0), or the reason
/// it does not compile to stderr (exit 2).
pub fn serve(args: &[OsString]) -> ExitCode {
    let number = |arg: &OsString| arg.to_str().and_then(|a| a.parse::<u64>().ok());
    let limits = match args {
        [.., host, memory, cpu] => match (number(host), number(memory), number(cpu)) {
            (Some(host), Some(memory), Some(cpu)) => Some((host, memory, cpu)),
            _ => None,
        },
        _ => None,
    };
    let Some((host, memory, cpu)) = limits else {
        eprintln!("usage: {WORKER_ARG} HOST_PID MEMORY CPU_SECONDS < component.wasm > artifact");
        return ExitCode::from(EXIT_UNUSABLE);
    };
    if let Err(e) = die_with(host) {
        eprintln!("the compile process cannot run: {e}");
        return ExitCode::from(EXIT_UNUSABLE);
    }
    // A panic (the compiler failing on the guest's bytes) ends the process at once: the default
    // hook formats a message and maybe a backtrace, which can run out of the little memory
    // left and then wait forever on a lock the hook holds.
    std::panic::set_hook(Box::new(|_| std::process::exit(EXIT_PANIC)));
    match compile_stdin(memory, cpu) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(reason)) => {
            eprintln!("{reason}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(e) => {
            eprintln!("the compile process cannot run: {e}");
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

/// `Ok(Err(..))`: the component does not compile; `Err(..)`: this process cannot do its job.
fn compile_stdin(memory: u64, cpu: u64) -> std::io::Result<Result<(), String>> {
    use std::io::{Read, Write};
    let engine = super::engine::nested_compile_engine().map_err(std::io::Error::other)?;
    let mut wasm = Vec::new();
    std::io::stdin()
        .take(super::admission::MAX_CHILD_COMPONENT_BYTES as u64 + 1)
        .read_to_end(&mut wasm)?;
    // From here on the bytes are the guest's: bound everything before touching them.
    lower_limit(libc::RLIMIT_CORE, 0, 0)?;
    lower_limit(libc::RLIMIT_FSIZE, 0, 0)?;
    lower_limit(libc::RLIMIT_CPU, cpu, cpu.saturating_add(1))?;
    let address_space = proc_status_bytes("VmSize:")?.saturating_add(memory);
    lower_limit(libc::RLIMIT_AS, address_space, address_space)?;
    if let Err(why) = super::admission::check_size(wasm.len()) {
        return Ok(Err(why));
    }
    let artifact = match engine.precompile_component(&wasm) {
        Ok(artifact) => artifact,
        Err(e) => {
            let text = e.to_string();
            return Ok(Err(text.lines().next().unwrap_or("").to_string()));
        }
    };
    drop(wasm);
    let loaded_bytes = loaded_size(&engine, &artifact)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&artifact)?;
    out.flush()?;
    eprintln!("{MEMORY_LINE}{loaded_bytes}");
    Ok(Ok(()))
}

// The crate denies unsafe code; these are the compile process's only system calls without a
// safe wrapper in std.

/// Set a limit to at most `soft` and `hard`, never above the hard limit the process already has
/// (which an unprivileged process cannot raise: `ulimit -t 30` around the host stays in force).
#[allow(unsafe_code)]
fn lower_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(resource, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let hard = hard.min(now.rlim_max);
    let limit = libc::rlimit {
        rlim_cur: soft.min(hard),
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct it is given and changes only this process's limits.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Be killed when the host process ends (however it ends), and end now if it already has: a
/// compile the host can no longer use must not run on.
#[allow(unsafe_code)]
fn die_with(host: u64) -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) sets a flag of this process and reads no memory.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The host may have ended before the flag was set; then this process has a new parent.
    if u64::from(std::os::unix::process::parent_id()) != host {
        return Err(std::io::Error::other("the host has ended"));
    }
    Ok(())
}

/// What `artifact` takes once loaded, as the host will load it: the heap its tables take
/// (measured by the allocator, so memory the compile freed and the allocator reuses is not
/// mistaken for none) and its code's image.
#[allow(unsafe_code)]
fn loaded_size(engine: &wasmtime::Engine, artifact: &[u8]) -> std::io::Result<u64> {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let in_use = || {
        let info = unsafe { libc::mallinfo2() };
        (info.uordblks + info.hblkhd) as u64
    };
    let before = in_use();
    // SAFETY: the artifact was made just now, in this process, by this engine.
    let component = unsafe { wasmtime::component::Component::deserialize(engine, artifact) }
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let heap = in_use().saturating_sub(before);
    Ok(heap + super::engine::code_bytes(&component) as u64)
}

/// A size of this process from `/proc/self/status` (`VmSize:` its address space), in bytes.
fn proc_status_bytes(field: &str) -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|kb| kb.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| std::io::Error::other(format!("no {field} in /proc/self/status")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_is_capped_and_rounded_up() {
        let a = Allowance {
            memory: Some(64 << 20),
            time: Some(Duration::from_millis(2_100)),
        };
        assert_eq!((a.memory_bytes(), a.cpu_seconds()), (64 << 20, 3));
        let unlimited = Allowance {
            memory: None,
            time: None,
        };
        assert_eq!(unlimited.memory_bytes(), MAX_COMPILE_MEMORY);
        assert_eq!(unlimited.cpu_seconds(), MAX_COMPILE_CPU.as_secs());
    }

    #[test]
    fn exit_statuses_are_read_by_type() {
        use std::os::unix::process::ExitStatusExt;
        let a = Allowance {
            memory: Some(1 << 20),
            time: Some(Duration::from_secs(1)),
        };
        let status = |raw| std::process::ExitStatus::from_raw(raw);
        assert!(matches!(
            interpret(status(0), vec![1], b"loaded-bytes 4096\n", a),
            Ok(Compiled { artifact, loaded_bytes: 4096 }) if artifact == [1]
        ));
        assert!(matches!(
            interpret(status(101 << 8), vec![], b"assertion failed: depth <= Self::MAX_DEPTH", a),
            Err(CompileError::Invalid(m)) if m == COMPILER_FAILED
        ));
        assert!(matches!(
            interpret(status(2 << 8), vec![], b"bad magic\nmore", a),
            Err(CompileError::Invalid(m)) if m == "bad magic"
        ));
        assert!(matches!(
            interpret(status(libc::SIGABRT), vec![], b"memory allocation failed", a),
            Err(CompileError::OverLimit(m)) if m.contains("memory")
        ));
        assert!(matches!(
            interpret(status(libc::SIGKILL), vec![], b"", a),
            Err(CompileError::OverLimit(m)) if m.contains("CPU")
        ));
        assert!(matches!(
            interpret(status(3 << 8), vec![], b"the compile process cannot run: EPERM\n", a),
            Err(CompileError::Host(m)) if m == "the compile process cannot run: EPERM"
        ));
    }
}
