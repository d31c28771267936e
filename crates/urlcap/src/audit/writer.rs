//! The audit log's writer thread, for sinks that can block (stderr, a file, a pipe).
//!
//! A sink whose reader stops reading (`urlcap run 2>&1 | slow-consumer`, a paused terminal, a
//! FIFO nobody opens) blocks `write` forever. If records were written from the guest's host
//! calls, such a sink would hold the guest — and every other guest sharing the log — in a host
//! call past its wall-clock limit, where no deadline can stop it. So records are queued here and
//! written, in order and in batches, by one thread of their own:
//!
//! - Appending never blocks. A guest that outruns the sink is slowed instead: while more than
//!   `HIGH_WATER` bytes wait, its next epoch tick yields until the backlog drains (see
//!   `host`), and that wait is an `await` its wall clock can end.
//! - A sink that takes nothing for `STALL_LIMIT` while records wait has stalled: the log has
//!   failed (it fails closed, so every guest stops), or with `--audit-fail-open` guests stop
//!   waiting for it and what does not fit in `MAX_PENDING` is counted as dropped.
//! - Finishing waits for the queue to drain, but never longer than a stall: a process whose
//!   audit reader is gone still exits, saying how many records were lost.

use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes of queued records past which guests wait for the sink (one tick's worth of records
/// can still be appended by each running guest before it yields).
pub(crate) const HIGH_WATER: usize = 1 << 20;
/// Bytes the queue holds at most; what would not fit is counted as dropped (for the audit log,
/// a lost record: it fails closed). Guests wait at [`HIGH_WATER`], so only a stalled sink
/// with `--audit-fail-open`, or a burst from outside any guest, gets here.
pub(crate) const MAX_PENDING: usize = 16 << 20;
/// The most written in one `write` call; progress is noted after each.
const WRITE_PIECE: usize = 64 << 10;
/// How long a sink may take nothing while records wait before it counts as stalled.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(10);

/// Records waiting for the writer, and what it has done.
pub(crate) struct Queue {
    state: Mutex<State>,
    /// The writer waits here for records.
    work: Condvar,
    /// Whoever waits for the writer (finish, flush) waits here.
    progress: Condvar,
    /// Async waiters: guests waiting for room, requests waiting for their record.
    pub(crate) moved: tokio::sync::Notify,
}

struct State {
    pending: Vec<u8>,
    /// Records in `pending`.
    pending_records: u64,
    /// Sequence number of the last record queued; records are numbered from 1.
    queued: u64,
    /// Every record up to this number has been written or counted as dropped.
    settled: u64,
    /// The batch being written, if any: (its last record's number, its record count).
    writing: Option<(u64, u64)>,
    /// Bytes of the batch being written.
    writing_bytes: u64,
    /// When the writer last finished a write (or the queue was last empty).
    last_progress: Instant,
    closed: bool,
    /// The writer waits for records (only then does a push wake it: a wake is a syscall).
    idle: bool,
}

/// What the writer reports back after each batch.
pub(crate) trait Outcome: Send + Sync {
    fn written(&self, records: u64);
    fn failed(&self, records: u64);
}

impl Queue {
    pub(crate) fn new() -> Queue {
        Queue {
            state: Mutex::new(State {
                pending: Vec::new(),
                pending_records: 0,
                queued: 0,
                settled: 0,
                writing: None,
                writing_bytes: 0,
                last_progress: Instant::now(),
                closed: false,
                idle: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            moved: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `bytes` (one record when `record`, else framed guest output). Returns the record's
    /// number, or `None` if it did not fit and was not queued.
    pub(crate) fn push(&self, bytes: &[u8], record: bool) -> Option<u64> {
        let mut state = self.lock();
        // Never waits: a push can come from a guest's host call, which nothing may hold.
        // Guests wait for room (asynchronously) long before this.
        if state.closed || state.pending.len() + bytes.len() > MAX_PENDING {
            return None;
        }
        if state.pending.is_empty() && state.writing.is_none() {
            state.last_progress = Instant::now();
        }
        state.pending.extend_from_slice(bytes);
        if record {
            state.pending_records += 1;
            state.queued += 1;
        }
        let number = state.queued;
        let wake = state.idle;
        drop(state);
        if wake {
            self.work.notify_one();
        }
        Some(number)
    }

    /// Are more bytes waiting than guests may run ahead of?
    pub(crate) fn backlogged(&self) -> bool {
        self.lock().pending.len() >= HIGH_WATER
    }

    /// Has record `number` been written (or counted as dropped)?
    pub(super) fn queued(&self) -> u64 {
        self.lock().queued
    }

    pub(super) fn settled(&self, number: u64) -> bool {
        self.lock().settled >= number
    }

    /// Has the sink taken nothing for [`STALL_LIMIT`] while something waits?
    pub(crate) fn stalled(&self) -> bool {
        let state = self.lock();
        (!state.pending.is_empty() || state.writing.is_some())
            && state.last_progress.elapsed() >= STALL_LIMIT
    }

    /// The writer thread's loop: take everything queued, write it, report, until closed and
    /// empty.
    pub(crate) fn run(&self, sink: &mut dyn Write, outcome: &dyn Outcome) {
        let mut batch = Vec::new();
        loop {
            let mut state = self.lock();
            while state.pending.is_empty() && !state.closed {
                state.idle = true;
                state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
                state.idle = false;
            }
            if state.pending.is_empty() {
                return;
            }
            std::mem::swap(&mut batch, &mut state.pending);
            let records = std::mem::take(&mut state.pending_records);
            let last = state.queued;
            state.writing = Some((last, records));
            state.writing_bytes = batch.len() as u64;
            drop(state);
            // Room was made: guests waiting for it may go on while this batch is written.
            self.moved.notify_waiters();

            // Every write that moves any bytes is progress: a slow reader is not a stalled one.
            let result = self.write_noting_progress(sink, &batch);
            let result = result.and_then(|()| sink.flush());
            batch.clear();
            if batch.capacity() > HIGH_WATER {
                batch = Vec::new();
            }
            match result {
                Ok(()) => outcome.written(records),
                Err(_) => outcome.failed(records),
            }
            let mut state = self.lock();
            state.writing = None;
            state.writing_bytes = 0;
            state.settled = last;
            state.last_progress = Instant::now();
            drop(state);
            self.progress.notify_all();
            self.moved.notify_waiters();
        }
    }

    /// Resolves once `done()` holds, looking again each time the writer moves and at least
    /// once a second (so a caller can notice a stall, which no wake-up announces). Only an
    /// `await`: a guest's wall clock can end it.
    pub(crate) async fn wait_until(&self, mut done: impl FnMut() -> bool) {
        loop {
            let moved = self.moved.notified();
            let mut moved = std::pin::pin!(moved);
            moved.as_mut().enable();
            if done() {
                return;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), moved).await;
        }
    }

    /// `write_all`, noting progress after each write that took any bytes.
    fn write_noting_progress(&self, sink: &mut dyn Write, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            match sink.write(&bytes[..bytes.len().min(WRITE_PIECE)]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    bytes = &bytes[n..];
                    self.lock().last_progress = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Wait (blocking) at most `grace` for everything queued to be written; the bytes still
    /// queued or being written then.
    pub(crate) fn drain_within(&self, grace: std::time::Duration) -> u64 {
        let state = self.wait_settled(self.lock(), Patience::Until(Instant::now() + grace));
        state.pending.len() as u64 + state.writing_bytes
    }

    /// Close the queue and wait until the writer has written everything, or until it has made
    /// no progress for [`STALL_LIMIT`]. Returns how many records were left unwritten.
    pub(crate) fn close_and_drain(&self) -> u64 {
        let mut state = self.lock();
        state.closed = true;
        if state.idle {
            self.work.notify_one();
        }
        let state = self.wait_settled(state, Patience::WhileProgressing);
        state.pending_records + state.writing.map_or(0, |(_, n)| n)
    }

    /// Wait (blocking) until everything queued so far is settled, or the sink stalls.
    pub(crate) fn drain(&self) {
        drop(self.wait_settled(self.lock(), Patience::WhileProgressing));
    }

    /// The one blocking wait: until nothing is queued or being written, or `patience` ends.
    fn wait_settled<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        patience: Patience,
    ) -> MutexGuard<'a, State> {
        loop {
            if state.pending.is_empty() && state.writing.is_none() {
                return state;
            }
            let until = match patience {
                Patience::Until(until) => until,
                Patience::WhileProgressing => state.last_progress + STALL_LIMIT,
            };
            let now = Instant::now();
            if now >= until {
                return state;
            }
            state = self
                .progress
                .wait_timeout(state, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// How long a blocking drain waits for the writer.
#[derive(Clone, Copy)]
enum Patience {
    /// Until this instant, however the writer is doing.
    Until(Instant),
    /// As long as the writer made progress within [`STALL_LIMIT`].
    WhileProgressing,
}
