//! Idle connections, keyed by canonical origin and trust configuration: a connection is never
//! shared across origins, nor between grants that trust different CAs. Each connection
//! remembers the vetted address it went to, and is handed out only to a request whose
//! authority's IP rules accept that address (grants differ in `allow_ips`).

use super::connect::Sender;
use crate::policy::{Host, Scheme};
use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) scheme: Scheme,
    pub(crate) host: Host,
    pub(crate) port: u16,
    /// The grant's `ca_file`, if any: connections verified under other roots are not reused.
    pub(crate) trust: Option<String>,
}

struct Idle {
    addr: SocketAddr,
    sender: Sender,
    since: Instant,
}

pub(crate) struct Pool {
    idle: Mutex<FxHashMap<PoolKey, Vec<Idle>>>,
    max_idle_per_key: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(max_idle_per_key: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(FxHashMap::default()),
            max_idle_per_key,
            idle_timeout,
        }
    }

    /// A live connection for `key` whose address `usable` accepts. HTTP/2 connections stay in
    /// the pool (they multiplex); an HTTP/1.1 connection leaves it until its response ends.
    pub(crate) fn checkout(
        &self,
        key: &PoolKey,
        usable: impl Fn(SocketAddr) -> bool,
    ) -> Option<(SocketAddr, Sender)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        let timeout = self.idle_timeout;
        list.retain(|c| !c.sender.is_closed() && c.since.elapsed() < timeout);
        let i = list.iter().position(|c| {
            usable(c.addr)
                && match &c.sender {
                    Sender::H1(s) => s.is_ready(),
                    Sender::H2(s) => s.is_ready(),
                }
        })?;
        match &list[i].sender {
            Sender::H2(s) => Some((list[i].addr, Sender::H2(s.clone()))),
            Sender::H1(_) => {
                let c = list.swap_remove(i);
                Some((c.addr, c.sender))
            }
        }
    }

    /// Keep a connection for reuse (dropped if closed or if the key already holds enough).
    pub(crate) fn checkin(&self, key: PoolKey, addr: SocketAddr, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(key).or_default();
        if list.len() < self.max_idle_per_key {
            list.push(Idle {
                addr,
                sender,
                since: Instant::now(),
            });
        }
    }
}
