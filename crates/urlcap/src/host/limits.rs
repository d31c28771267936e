//! What bounds a guest — linear memory, tables, the resources the host holds for it — and how
//! the exit status and message of a guest that stopped are chosen (from typed signals, never
//! from an error's text).

use std::time::Duration;

/// Exit status of a run that hit the wall-clock limit (as `timeout(1)` reports).
pub const EXIT_TIMEOUT: i32 = 124;

/// Exit status of a guest that trapped or exceeded its memory.
pub const EXIT_TRAP: i32 = 134;

/// Linear memory accounting for one sandbox: a grow past the limit traps, and a nested sandbox
/// gets at most what is left.
pub(crate) struct Limiter {
    pub(super) memory_limit: Option<usize>,
    pub(super) memory_used: usize,
    /// Set when a grow was refused: how a trap is known to be the memory limit (typed, never
    /// read from an error's text, which a guest's function names can fake).
    pub(super) limit_hit: bool,
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

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The guest's own exit status, or the one urlcap chose for how it was stopped
    /// ([`EXIT_TIMEOUT`], [`EXIT_TRAP`], [`EXIT_AUDIT`]), so a script can tell them apart.
    pub exit_code: i32,
    /// Why the host stopped the guest (trap, limit), if it did.
    pub message: Option<String>,
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
pub(crate) fn resource_capacity(memory_limit: Option<usize>) -> usize {
    const HELD_PER_RESOURCE: usize = 64 << 10;
    memory_limit.map_or(1_000_000, |m| (m / HELD_PER_RESOURCE).clamp(256, 1_000_000))
}

/// Exit status of a sandbox stopped because its audit log could not be written (sysexits'
/// EX_IOERR).
pub const EXIT_AUDIT: i32 = 74;

pub(super) fn audit_outcome() -> Outcome {
    Outcome {
        exit_code: EXIT_AUDIT,
        message: Some(
            "guest stopped: the audit log could not be written (it fails closed; --audit-fail-open keeps going)".into(),
        ),
    }
}

pub(super) fn timeout_outcome(limit: Duration) -> Outcome {
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
pub(super) fn outcome_of_error(
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
