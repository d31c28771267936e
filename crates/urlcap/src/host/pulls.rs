//! Whether a served response's client is still taking its body (the send timeout of
//! `urlcap serve`).
//!
//! A handler writing its body blocks once the body's buffer is full, and the buffer drains
//! only as fast as the server can send, i.e. as the client reads. A client that stops reading
//! (an HTTP/2 window of 0, a full TCP receive buffer) would so hold the handler, its instance
//! and its request slot for the whole wall clock, and a few such clients every slot of the
//! server. The body handed to the server is wrapped in [`Pulled`], which notes when the server
//! last took a frame from it and whether it is now waiting for the handler; [`Pulls::stalled`]
//! resolves once the server has neither taken a frame nor waited for one for the send timeout,
//! which is exactly "the client is not reading": a handler that computes slowly between writes
//! leaves the server waiting on it, and is never taken for a stalled client.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Not yet handed to the server (no head yet: the client-went-away path covers that time).
const NOT_HANDED_OVER: u64 = u64::MAX;

/// How one response's body is being taken, shared by its [`Pulled`] body and its handler's
/// task.
#[derive(Debug)]
pub(crate) struct Pulls {
    since: Instant,
    /// Milliseconds after `since` when the server last took a frame (or got the body).
    last_taken_ms: AtomicU64,
    /// The server asked for a frame and the handler has not written one yet.
    waiting_for_handler: AtomicBool,
    /// The server took the body's end: there is nothing more for the client to take, however
    /// long the handler's instance runs on (under its wall clock).
    ended: AtomicBool,
}

impl Pulls {
    pub(crate) fn new() -> Arc<Pulls> {
        Arc::new(Pulls {
            since: Instant::now(),
            last_taken_ms: AtomicU64::new(NOT_HANDED_OVER),
            waiting_for_handler: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        self.since.elapsed().as_millis() as u64
    }

    fn taken(&self) {
        self.last_taken_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long the client has not been taking the body, if it is not: zero while the body
    /// has not been handed over, the server waits on the handler, or the body has ended.
    fn not_taken_for(&self) -> Duration {
        let last = self.last_taken_ms.load(Ordering::Relaxed);
        if last == NOT_HANDED_OVER
            || self.waiting_for_handler.load(Ordering::Relaxed)
            || self.ended.load(Ordering::Relaxed)
        {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }

    /// Resolves once the client has not taken the body for `timeout` (checked a few times
    /// per timeout, never more often than every 10 ms); never without a timeout.
    pub(crate) async fn stalled(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        let every = (timeout / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            if self.not_taken_for() >= timeout {
                return;
            }
        }
    }
}

/// A response body that tells its [`Pulls`] when the server takes from it.
pub struct Pulled<B> {
    body: B,
    pulls: Arc<Pulls>,
}

impl<B> Pulled<B> {
    /// `body`, handed to the server now.
    pub(crate) fn new(body: B, pulls: Arc<Pulls>) -> Pulled<B> {
        pulls.taken();
        Pulled { body, pulls }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Pulled<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let waiting = polled.is_pending();
        if !waiting {
            self.pulls.taken();
        }
        if matches!(polled, Poll::Ready(None)) {
            self.pulls.ended.store(true, Ordering::Relaxed);
        }
        self.pulls
            .waiting_for_handler
            .store(waiting, Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        // The server asks this instead of polling once more for a body it can tell has ended.
        let ended = self.body.is_end_stream();
        if ended {
            self.pulls.ended.store(true, Ordering::Relaxed);
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// One frame, then nothing for ever: a handler that wrote once and stopped writing.
    struct OneThenPending(Option<Bytes>);

    impl Body for OneThenPending {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.0.take() {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None => Poll::Pending,
            }
        }
    }

    /// Real time, short: the send timeout is 50 ms, and "not stalled" means not within ten of
    /// them, "stalled" within a hundred.
    #[tokio::test]
    async fn a_body_not_taken_is_stalled_and_one_waiting_on_its_handler_is_not() {
        let timeout = Some(Duration::from_millis(50));
        let (never, soon) = (Duration::from_millis(500), Duration::from_secs(5));
        // Not handed over yet: never stalled.
        let pulls = Pulls::new();
        let stalled = tokio::time::timeout(never, pulls.stalled(timeout));
        assert!(stalled.await.is_err());
        // Handed over, one frame taken, then not asked again: the client stopped reading.
        let first = OneThenPending(Some(Bytes::from_static(b"x")));
        let mut body = Pulled::new(first, pulls.clone());
        assert!(body.frame().await.is_some());
        let stalled = tokio::time::timeout(soon, pulls.stalled(timeout));
        assert!(stalled.await.is_ok());
        // The server asks and waits on the handler: not stalled however long it waits.
        let waiting = tokio::time::timeout(Duration::from_millis(10), body.frame()).await;
        assert!(waiting.is_err(), "the handler wrote nothing more");
        let stalled = tokio::time::timeout(never, pulls.stalled(timeout));
        assert!(stalled.await.is_err());
        // No timeout: never.
        let untimed = Pulls::new();
        let none = tokio::time::timeout(never, untimed.stalled(None));
        assert!(none.await.is_err());
    }

    /// A body the server has taken to its end is not stalled, however long its handler's
    /// instance runs on afterwards (work after the response, under its wall clock): its
    /// client took everything, and neither stopping the handler at the send timeout nor an
    /// audit saying its client took nothing would be right.
    #[tokio::test]
    async fn a_body_taken_to_its_end_is_never_stalled() {
        let timeout = Some(Duration::from_millis(50));
        let never = Duration::from_millis(500);
        // The end polled for.
        let pulls = Pulls::new();
        let body = http_body_util::Full::new(Bytes::from_static(b"all of it"));
        let taken = Pulled::new(body, pulls.clone()).collect().await.unwrap();
        assert_eq!(taken.to_bytes(), "all of it");
        let stalled = tokio::time::timeout(never, pulls.stalled(timeout));
        assert!(stalled.await.is_err(), "the client took the whole body");
        // The end seen without a poll (what hyper asks of a body before polling it).
        let pulls = Pulls::new();
        let body = Pulled::new(http_body_util::Empty::<Bytes>::new(), pulls.clone());
        assert!(body.is_end_stream());
        let stalled = tokio::time::timeout(never, pulls.stalled(timeout));
        assert!(stalled.await.is_err(), "the body had nothing to take");
    }
}
