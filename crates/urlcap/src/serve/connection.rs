//! One client connection, from its first byte to its last request's end: served until it
//! ends; closed once no request has been in flight on it for the idle bound (hyper closes an
//! idle HTTP/1.1 connection itself, but never an HTTP/2 one), or once requests are in flight
//! but none has begun or ended for the stall bound (a client that stops reading its responses);
//! closed gracefully at shutdown and dropped when the drain bound passes.

use super::access_log::{Line, Outcome};
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// What the server asks of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Go on serving.
    No,
    /// Finish what is in flight and take nothing new (shutdown was asked for).
    Gracefully,
    /// End now (the drain bound passed).
    Now,
}

/// The requests in flight on one connection, each counted from when hyper hands it to the
/// server until its response has ended, however it ends. Counting costs a request two atomic
/// updates and no timer or wake-up: the idle check reads them when its own deadline comes.
#[derive(Clone)]
pub(crate) struct InFlight(Arc<Activity>);

struct Activity {
    /// The requests in flight (the low 32 bits) and, above them, how many have begun or ended
    /// (wrapping): unchanged while requests are in flight, nothing moves on the connection
    /// (its client stopped reading). One word, so a request's start and end stay one atomic
    /// update each.
    state: AtomicU64,
    /// When the last request ended (or the connection began).
    since: Mutex<Instant>,
    /// Told when the count falls to zero.
    none: Notify,
}

/// Added to [`Activity::state`] when a request begins: one more in flight, one more change.
const BEGUN: u64 = (1 << 32) + 1;

/// Added when a request ends: one more change (2^32) and one fewer in flight (-1); only a
/// begun request ends, so the low word is at least 1 and nothing borrows across the words.
const ENDED: u64 = (1 << 32) - 1;

/// The requests in flight that `state` counts.
fn in_flight(state: u64) -> u64 {
    state & 0xffff_ffff
}

/// One request counted in [`InFlight`] while it lives.
pub(crate) struct Counted(Arc<Activity>);

impl InFlight {
    pub(crate) fn new() -> InFlight {
        InFlight(Arc::new(Activity {
            state: AtomicU64::new(0),
            since: Mutex::new(Instant::now()),
            none: Notify::new(),
        }))
    }

    /// Count a request until the returned guard is dropped.
    pub(crate) fn count(&self) -> Counted {
        self.0.state.fetch_add(BEGUN, Ordering::AcqRel);
        Counted(self.0.clone())
    }

    /// Resolves once no request has been in flight for `idle`, or (with `stalled`) once
    /// requests are in flight but none has begun or ended for at least `stalled` (seen at
    /// checks `idle` apart, so within `stalled + idle`): its client stopped reading, and hyper
    /// waits on its socket or flow-control window for ever, polling no body that could end.
    async fn quiet_for(&self, idle: Duration, stalled: Option<Duration>) {
        let mut check = Instant::now() + idle;
        let (mut state, mut changed) = (self.0.state.load(Ordering::Acquire), Instant::now());
        loop {
            tokio::time::sleep_until(check.into()).await;
            let since = *self.0.since.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let seen = self.0.state.load(Ordering::Acquire);
            if seen != state {
                (state, changed) = (seen, now);
            }
            check = if in_flight(seen) > 0 {
                match stalled {
                    Some(stalled) if now >= changed + stalled => return,
                    Some(stalled) => (changed + stalled).min(now + idle),
                    None => now + idle,
                }
            } else if now >= since + idle {
                return;
            } else {
                since + idle
            };
        }
    }

    /// Resolves once no request is in flight.
    async fn none(&self) {
        loop {
            let told = self.0.none.notified();
            if in_flight(self.0.state.load(Ordering::Acquire)) == 0 {
                return;
            }
            told.await;
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if in_flight(self.0.state.fetch_add(ENDED, Ordering::AcqRel)) == 1 {
            *self.0.since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            self.0.none.notify_waiters();
        }
    }
}

/// Serve `connection` until it ends or `stop` says to end it now. It is closed (`close`: its
/// graceful shutdown; a GOAWAY on HTTP/2) once no request has been in flight on it for `idle`,
/// or once requests are in flight but none has begun or ended for `stalled` (when given: its
/// client stopped reading, so a response waits on the socket or an HTTP/2 window of zero for
/// ever; it is then dropped as below, its responses `gone`), or when `stop` asks; a client
/// that keeps a closing connection open — one that never
/// finishes the HTTP/2 preface or its SETTINGS, never finishes a request head, or never
/// answers the GOAWAY's ping — has it dropped `idle` later. Returns the connection's own end
/// (`None` when it was dropped) once every request on it has ended and written its access line
/// (HTTP/2 streams run as tasks of their own and end at once when their connection is
/// dropped; waited for at most `idle`).
pub(crate) async fn drive<C: Future>(
    connection: C,
    close: fn(Pin<&mut C>),
    in_flight: &InFlight,
    idle: Duration,
    stalled: Option<Duration>,
    mut stop: watch::Receiver<Stop>,
) -> Option<C::Output> {
    let mut connection = Box::pin(connection);
    // Set when it was closed for being idle: when it is dropped if still open.
    let mut drop_at: Option<tokio::time::Instant> = None;
    let mut stopping = *stop.borrow_and_update();
    let ended = loop {
        match stopping {
            Stop::Now => break None,
            Stop::Gracefully => close(connection.as_mut()),
            Stop::No => {}
        }
        let dropping = async move {
            match drop_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = connection.as_mut() => break Some(ended),
            () = in_flight.quiet_for(idle, stalled), if drop_at.is_none() => {
                close(connection.as_mut());
                drop_at = Some(tokio::time::Instant::now() + idle);
            }
            () = dropping => break None,
            changed = stop.changed() => {
                stopping = match changed {
                    Ok(()) => *stop.borrow_and_update(),
                    // The server is gone.
                    Err(_) => Stop::Now,
                };
            }
        }
    };
    drop(connection);
    let _ = tokio::time::timeout(idle, in_flight.none()).await;
    ended
}

/// A response body that counts its request in flight and writes its access line when it ends:
/// at its last frame, at an error from the handler's stream (the handler stopped mid-body:
/// the client sees the body cut), or when it is dropped unfinished (the client went away, or
/// the drain bound cut it).
pub(crate) struct Tracked<B: http_body::Body + Unpin> {
    body: B,
    line: Option<Line>,
    /// Dropped after the line is written (fields drop in order).
    _counted: Counted,
}

impl<B: http_body::Body + Unpin> Tracked<B> {
    pub(crate) fn new(body: B, line: Line, counted: Counted) -> Tracked<B> {
        Tracked {
            body,
            line: Some(line),
            _counted: counted,
        }
    }
}

impl<B> http_body::Body for Tracked<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        let outcome = match &frame {
            None => Outcome::Complete,
            Some(Err(_)) => Outcome::Cut,
            Some(Ok(_)) => return Poll::Ready(frame),
        };
        if let Some(line) = self.line.take() {
            line.end(outcome);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl<B: http_body::Body + Unpin> Drop for Tracked<B> {
    fn drop(&mut self) {
        // hyper drops a body it has sent whole without asking for more once the body says it
        // is at its end (a known length); the line's own drop judges the rest.
        if let Some(line) = self.line.take() {
            if self.body.is_end_stream() {
                line.end(Outcome::Complete);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_requests_and_every_begin_and_end() {
        let counted = InFlight::new();
        let state = || counted.0.state.load(Ordering::Acquire);
        let (first, second) = (counted.count(), counted.count());
        let both = state();
        assert_eq!(in_flight(both), 2);
        drop(first);
        assert_eq!(in_flight(state()), 1);
        assert_ne!(state(), both, "an end is a change");
        let one = state();
        let third = counted.count();
        drop(third);
        assert_eq!(in_flight(state()), 1);
        assert_ne!(state(), one, "a request that began and ended is a change");
        drop(second);
        assert_eq!(in_flight(state()), 0);
        assert_eq!(state() >> 32, 6, "three begun, three ended");
    }
}
