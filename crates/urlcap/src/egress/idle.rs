//! Idle connections kept for reuse (a keep-alive cache, not cap-std's `Pool` of addresses one
//! may connect to: here every address was already vetted), keyed by canonical origin and trust
//! configuration: a connection is never shared across origins, nor between grants that trust
//! different CAs. Each connection
//! remembers the vetted address it went to, and is handed out only to a request whose
//! authority's IP rules accept that address (grants differ in `allow_ips`).
//!
//! Bounded: at most so many idle connections per origin and in all (the oldest goes first),
//! and a timer closes those idle longer than the idle timeout, whether or not their origin is
//! asked for again — so a wildcard grant and servers that keep connections open cannot pile up
//! sockets.

use super::connect::Sender;
use crate::policy::{Host, Scheme, VettedAddr};
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct IdleKey {
    pub(crate) scheme: Scheme,
    pub(crate) host: Host,
    pub(crate) port: u16,
    /// The grant's `ca_file`, if any: connections verified under other roots are not reused.
    pub(crate) trust: Option<String>,
}

struct Idle {
    addr: VettedAddr,
    sender: Sender,
    since: Instant,
}

/// The idle connections of one egress client, with their bounds and expiry timer.
pub(crate) struct IdleConnections {
    idle: Mutex<FxHashMap<IdleKey, Vec<Idle>>>,
    max_idle_per_key: usize,
    max_idle_total: usize,
    idle_connection_timeout: Duration,
    /// Whether the expiry timer runs (started by the first check-in on a tokio runtime).
    sweeping: std::sync::atomic::AtomicBool,
}

impl IdleConnections {
    pub(crate) fn new(
        max_idle_per_key: usize,
        max_idle_total: usize,
        idle_connection_timeout: Duration,
    ) -> IdleConnections {
        IdleConnections {
            idle: Mutex::new(FxHashMap::default()),
            max_idle_per_key,
            max_idle_total,
            idle_connection_timeout,
            sweeping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Idle connections kept now.
    pub(crate) fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.values().map(Vec::len).sum()
    }

    /// Close every connection idle too long, or closed by its server.
    fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let timeout = self.idle_connection_timeout;
        idle.retain(|_, list| {
            list.retain(|c| !c.sender.is_closed() && c.since.elapsed() < timeout);
            !list.is_empty()
        });
    }

    /// Start the expiry timer once, if there is a runtime to run it on. It holds the cache
    /// weakly and ends with it.
    fn start_sweeper(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let cache = Arc::downgrade(self);
        let every = (self.idle_connection_timeout / 2).max(Duration::from_millis(10));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match cache.upgrade() {
                    Some(cache) => cache.sweep(),
                    None => return,
                }
            }
        });
    }

    /// A live connection for `key` whose address `vet` accepts again, with the address as
    /// `vet` vetted it (the requesting authority's rules, not those of the one that opened it).
    /// HTTP/2 connections stay in the pool (they multiplex); an HTTP/1.1 connection leaves it
    /// until its response ends.
    pub(crate) fn checkout(
        &self,
        key: &IdleKey,
        vet: impl Fn(&VettedAddr) -> Option<VettedAddr>,
    ) -> Option<(VettedAddr, Sender)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        let timeout = self.idle_connection_timeout;
        // One clock read for the whole list (HTTP/2 connections stay in it while in use, so a
        // burst that opened one each keeps them all here).
        let now = Instant::now();
        list.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < timeout);
        let ready = |c: &Idle| match &c.sender {
            Sender::H1(s) => s.is_ready(),
            Sender::H2(s) => s.is_ready(),
        };
        let (i, addr) = list
            .iter()
            .enumerate()
            .filter(|(_, c)| ready(c))
            .find_map(|(i, c)| vet(&c.addr).map(|addr| (i, addr)))?;
        match &list[i].sender {
            Sender::H2(s) => Some((addr, Sender::H2(s.clone()))),
            Sender::H1(_) => {
                let c = list.swap_remove(i);
                Some((addr, c.sender))
            }
        }
    }

    /// Keep a connection for reuse (dropped if closed or if its origin already holds enough);
    /// past the total, the oldest idle connection anywhere is closed to make room.
    pub(crate) fn checkin(self: &Arc<Self>, key: IdleKey, addr: VettedAddr, sender: Sender) {
        if sender.is_closed() || self.max_idle_total == 0 {
            return;
        }
        self.start_sweeper();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle
            .get(&key)
            .is_some_and(|list| list.len() >= self.max_idle_per_key)
        {
            return;
        }
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= self.max_idle_total {
            let oldest = idle
                .iter()
                .flat_map(|(k, list)| list.iter().enumerate().map(move |(i, c)| (c.since, k, i)))
                .min_by_key(|(since, _, _)| *since)
                .map(|(_, k, i)| (k.clone(), i));
            if let Some((k, i)) = oldest {
                if let Some(list) = idle.get_mut(&k) {
                    list.swap_remove(i);
                    if list.is_empty() {
                        idle.remove(&k);
                    }
                }
            }
        }
        idle.entry(key).or_default().push(Idle {
            addr,
            sender,
            since: Instant::now(),
        });
    }
}
