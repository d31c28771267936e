//! A guest's stdout or stderr kept in memory up to a cap. Past the cap the guest keeps
//! running: the rest is counted and dropped, and what is read back ends with a line saying
//! how much was dropped (wasmtime's own memory pipe traps the guest instead).

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Output kept up to `capacity` bytes; clones share it.
#[derive(Clone)]
pub struct CappedPipe {
    kept: Arc<Mutex<Kept>>,
    capacity: usize,
}

#[derive(Default)]
struct Kept {
    bytes: Vec<u8>,
    dropped: u64,
}

impl CappedPipe {
    pub(crate) fn new(capacity: usize) -> CappedPipe {
        CappedPipe {
            kept: Arc::default(),
            capacity,
        }
    }

    fn take_in(&self, bytes: &[u8]) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let room = self.capacity.saturating_sub(kept.bytes.len());
        let (keep, drop) = bytes.split_at(room.min(bytes.len()));
        kept.bytes.extend_from_slice(keep);
        kept.dropped += drop.len() as u64;
    }

    /// What was kept, followed by a marker line if anything was dropped.
    pub(crate) fn contents(&self) -> Vec<u8> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = kept.bytes.clone();
        if kept.dropped > 0 {
            if !out.ends_with(b"\n") && !out.is_empty() {
                out.push(b'\n');
            }
            out.extend_from_slice(
                format!(
                    "[urlcap: output cut at {} bytes; {} more bytes dropped]\n",
                    self.capacity, kept.dropped
                )
                .as_bytes(),
            );
        }
        out
    }
}

impl Accept for CappedPipe {
    fn accept(&self, bytes: &[u8]) {
        self.take_in(bytes);
    }
}

/// The most one write of a guest's output may carry (its `check-write` permit at most): what
/// one host call does with it is bounded whatever the guest asks.
pub(crate) const MAX_WRITE: usize = 64 << 10;

/// Where a guest's output goes, byte for byte: the one thing an output stream of the host's
/// must say. [`GuestOutput`] makes it a wasi stdout/stderr stream.
pub(crate) trait Accept: Clone + Send + Sync + Unpin + 'static {
    /// Take `bytes` (at most [`MAX_WRITE`]); never blocks.
    fn accept(&self, bytes: &[u8]);
    /// Whether it can take a write now; when not, the guest's stream waits in
    /// [`Accept::wait_for_room`] (an `await` the guest's wall clock can end).
    fn has_room(&self) -> bool {
        true
    }
    /// Resolves once [`Accept::has_room`] may say yes.
    fn wait_for_room(&self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// A guest output stream that hands every write to an [`Accept`]: ready when it has room,
/// never a terminal, nothing to flush. A write past what the last `check-write` permitted
/// traps (as the wasi streams contract says), so no single host call handles more than
/// [`MAX_WRITE`] bytes, and a guest that skips `check-write` cannot skip the wait for room.
#[derive(Clone)]
pub(crate) struct GuestOutput<T> {
    to: T,
    /// Bytes the last `check-write` permitted and no write has used yet.
    permit: usize,
}

impl<T> GuestOutput<T> {
    /// Output into `to`.
    pub(crate) fn new(to: T) -> GuestOutput<T> {
        GuestOutput { to, permit: 0 }
    }
}

impl<T: Accept> IsTerminal for GuestOutput<T> {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl<T: Accept> StdoutStream for GuestOutput<T> {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl<T: Accept> OutputStream for GuestOutput<T> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.len() > self.permit {
            return Err(wasmtime_wasi::p2::StreamError::Trap(wasmtime::format_err!(
                "a write of {} bytes exceeds the stream's permit of {} (check-write first)",
                bytes.len(),
                self.permit
            )));
        }
        self.permit -= bytes.len();
        self.to.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.permit = if self.to.has_room() { MAX_WRITE } else { 0 };
        Ok(self.permit)
    }
}

#[wasmtime_wasi::async_trait]
impl<T: Accept> Pollable for GuestOutput<T> {
    async fn ready(&mut self) {
        if !self.to.has_room() {
            self.to.wait_for_room().await;
        }
    }
}

impl<T: Accept> tokio::io::AsyncWrite for GuestOutput<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // wasip3 streams (not built: component-model-async is off) would come here.
        let n = buf.len().min(MAX_WRITE);
        self.to.accept(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
