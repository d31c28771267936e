//! A sandbox's handle table: the authorities preopened for *one* sandbox, under the names it
//! sees, with an index to find the one an absolute URL falls under in constant time whatever
//! their number.
//!
//! Every guest API resolves a request only through the table of the sandbox that made it: a
//! native `fetch` on a handle that came from this table (or was derived from one of its
//! handles), and a `wasi:http` request by matching its URL against this table. The top-level
//! sandbox's table holds the roots; a nested sandbox's holds exactly the fresh children of the
//! handles its parent passed. Nothing guest-facing holds a [`super::Policy`], so no guest
//! request can be matched against the root grants unless the host preopened them for it.

use super::approved::Approved;
use super::authority::{Authority, Refusal};
use super::decision::{Decision, Denial};
use super::origin::{wildcard_parent, Host, HostPattern};
use super::reason::Reason;
use super::request::Request;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// The handles one sandbox was given, by name, indexed by host. Cheap to clone (the handles
/// are shared, so clones spend the same budgets and see the same revocations).
#[derive(Clone, Default)]
pub struct HandleTable {
    entries: Vec<(Authority, Arc<str>)>,
    by_name: FxHashMap<Arc<str>, usize>,
    /// Exact hosts -> indexes of entries.
    by_host: FxHashMap<Host, Vec<usize>>,
    /// `*.suffix` -> indexes of entries, keyed by `suffix`.
    by_wildcard: FxHashMap<String, Vec<usize>>,
    /// For the policy's own table of roots, the sandbox-wide IP rules: a request no handle
    /// here grants could have been granted by the manifest (hints, learn mode). `None` for a
    /// nested sandbox's table, whose parent chose what it holds.
    roots_network: Option<Arc<super::ip::IpRules>>,
}

impl HandleTable {
    /// A table of `entries` (handle, the name the guest sees it under), in that order. Names
    /// must be unique.
    pub(crate) fn new(
        entries: impl IntoIterator<Item = (Authority, String)>,
    ) -> Result<HandleTable, String> {
        let mut table = HandleTable::default();
        for (authority, name) in entries {
            let index = table.entries.len();
            let name: Arc<str> = name.into();
            if table.by_name.insert(name.clone(), index).is_some() {
                return Err(format!("two authorities are named {name:?}"));
            }
            match &authority.grant().origin.host {
                HostPattern::Exact(host) => {
                    table.by_host.entry(host.clone()).or_default().push(index)
                }
                HostPattern::Wildcard(suffix) => table
                    .by_wildcard
                    .entry(suffix.clone())
                    .or_default()
                    .push(index),
            }
            table.entries.push((authority, name));
        }
        Ok(table)
    }

    /// This table as the policy's table of roots, under these IP rules.
    pub(super) fn of_roots(mut self, network: Arc<super::ip::IpRules>) -> HandleTable {
        self.roots_network = Some(network);
        self
    }

    /// The sandbox-wide IP rules, if this is the policy's table of roots.
    pub(super) fn network(&self) -> Option<&super::ip::IpRules> {
        self.roots_network.as_deref()
    }

    /// Is this the policy's table of roots (the manifest's grants, under their own names)?
    pub(crate) fn holds_roots(&self) -> bool {
        self.roots_network.is_some()
    }

    /// The handles and their names, in the order given.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&Authority, &str)> {
        self.entries.iter().map(|(a, n)| (a, &**n))
    }

    /// The handle preopened under `name`.
    pub fn get(&self, name: &str) -> Option<&Authority> {
        self.by_name.get(name).map(|&i| &self.entries[i].0)
    }

    /// Judge an absolute-URL request against this table without spending (dry run).
    pub(crate) fn check(&self, req: &Request) -> Decision {
        self.decide(req, false).0
    }

    /// Admit an absolute-URL request through the first handle of this table that allows it,
    /// spending its budget and rate (and its ancestors'), and return the proof egress
    /// requires, or the denial.
    pub(crate) fn authorize(&self, req: Request) -> Result<Approved, Denial> {
        self.authorize_or_return(req).map_err(|(denial, _)| denial)
    }

    /// [`HandleTable::authorize`], giving a denied request back with its denial (to work out
    /// a hint with [`HandleTable::fix`], or for learn mode) without copying it beforehand.
    // The request comes back by value, on the denial path only: boxing it would allocate on
    // every denial to save a copy.
    #[allow(clippy::result_large_err)]
    pub(crate) fn authorize_or_return(&self, req: Request) -> Result<Approved, (Denial, Request)> {
        match self.decide(&req, true) {
            (_, Some(authority)) => Ok(Approved::new(authority.clone(), req)),
            (Decision::Deny(denial), None) => Err((denial, req)),
            (Decision::Allow(_), None) => unreachable!("an allow always names its authority"),
        }
    }

    /// How an absolute URL is matched to a handle:
    /// 1. handles granting exactly the request's host, in table order;
    /// 2. then handles granting the single-label wildcard over the host's parent domain
    ///    (looked up only if step 1 allowed nothing);
    /// 3. the first handle that allows the request wins, and spends;
    /// 4. if none allows, the denial reported is the one from the handle that got furthest
    ///    (path beats origin, method beats path...), or `no_authority` when no handle grants
    ///    the request's scheme, host and port.
    fn decide(&self, req: &Request, spend: bool) -> (Decision, Option<&Authority>) {
        let mut best: Option<(&Authority, Refusal<'_>)> = None;
        let host = req.url().host();
        let exact = self
            .by_host
            .get(host)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(a) = self.first_allowing(exact, req, spend, &mut best) {
            return (Decision::Allow(a.reference().clone()), Some(a));
        }
        if let Host::Domain(domain) = host {
            let wildcard = wildcard_parent(domain).and_then(|s| self.by_wildcard.get(s));
            if let Some(a) =
                self.first_allowing(wildcard.map_or(&[], Vec::as_slice), req, spend, &mut best)
            {
                return (Decision::Allow(a.reference().clone()), Some(a));
            }
        }
        let denial = match best {
            Some((authority, refusal)) if !matches!(refusal, Refusal::Origin) => {
                authority.denial(refusal, req)
            }
            _ => {
                let url = req.url();
                Denial::new(
                    Reason::NoAuthority,
                    format!(
                        "no preopened authority grants {}://{}:{}",
                        url.scheme().as_str(),
                        url.host(),
                        url.port()
                    ),
                )
            }
        };
        (Decision::Deny(denial), None)
    }

    /// The first of `indexes` whose handle allows `req`; otherwise keeps the furthest refusal
    /// in `best`.
    fn first_allowing<'a>(
        &'a self,
        indexes: &[usize],
        req: &Request,
        spend: bool,
        best: &mut Option<(&'a Authority, Refusal<'a>)>,
    ) -> Option<&'a Authority> {
        for &i in indexes {
            let authority = &self.entries[i].0;
            match authority.evaluate(req, spend) {
                Ok(()) => return Some(authority),
                Err(refusal) => {
                    if best
                        .as_ref()
                        .is_none_or(|(_, b)| refusal.stage() > b.stage())
                    {
                        *best = Some((authority, refusal));
                    }
                }
            }
        }
        None
    }
}

impl std::fmt::Debug for HandleTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(a, n)| (n, a)))
            .finish()
    }
}
