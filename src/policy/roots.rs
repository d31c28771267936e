//! The policy: the root authorities of a sandbox and an index to find the one an absolute URL
//! falls under (for `wasi:http` guests and `urlcap explain`), in constant time whatever the
//! number of grants.

use super::approved::Approved;
use super::authority::{Authority, Refusal, Tree};
use super::clock::Clock;
use super::decision::{Decision, Denial};
use super::grant::Grant;
use super::ip::IpRules;
use super::origin::{wildcard_parent, Host, HostPattern};
use super::reason::Reason;
use super::request::Request;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// The root authorities, indexed by host.
pub struct Policy {
    roots: Vec<Authority>,
    by_name: FxHashMap<String, usize>,
    /// Exact hosts -> indexes of roots.
    by_host: FxHashMap<Host, Vec<usize>>,
    /// `*.suffix` -> indexes of roots, keyed by `suffix`.
    by_wildcard: FxHashMap<String, Vec<usize>>,
    network: Arc<IpRules>,
}

impl Policy {
    /// Make the root authorities. This is the only place handles are created from nothing.
    pub fn new(
        grants: Vec<Grant>,
        network: IpRules,
        clock: Arc<dyn Clock>,
    ) -> Result<Policy, String> {
        let tree = Tree::new(clock);
        let network = Arc::new(network);
        let mut policy = Policy {
            roots: Vec::with_capacity(grants.len()),
            by_name: FxHashMap::default(),
            by_host: FxHashMap::default(),
            by_wildcard: FxHashMap::default(),
            network: network.clone(),
        };
        for grant in grants {
            let index = policy.roots.len();
            if policy.by_name.insert(grant.name.clone(), index).is_some() {
                return Err(format!("two authorities are named {:?}", grant.name));
            }
            match &grant.origin.host {
                HostPattern::Exact(host) => {
                    policy.by_host.entry(host.clone()).or_default().push(index)
                }
                HostPattern::Wildcard(suffix) => policy
                    .by_wildcard
                    .entry(suffix.clone())
                    .or_default()
                    .push(index),
            }
            policy
                .roots
                .push(Authority::root(grant, network.clone(), tree.clone()));
        }
        Ok(policy)
    }

    /// The preopened authorities, in manifest order.
    pub fn authorities(&self) -> &[Authority] {
        &self.roots
    }

    pub fn get(&self, name: &str) -> Option<&Authority> {
        self.by_name.get(name).map(|&i| &self.roots[i])
    }

    pub fn network(&self) -> &IpRules {
        &self.network
    }

    /// Judge an absolute-URL request without spending (dry run).
    pub fn check(&self, req: &Request) -> Decision {
        self.decide(req, false).0
    }

    /// Admit an absolute-URL request through the first authority that allows it, spending its
    /// budget and rate, and return the proof egress requires, or the denial.
    pub fn authorize(&self, req: Request) -> Result<Approved, Denial> {
        match self.decide(&req, true) {
            (_, Some(authority)) => Ok(Approved::new(authority.clone(), req)),
            (Decision::Deny(denial), None) => Err(denial),
            (Decision::Allow(_), None) => unreachable!("an allow always names its authority"),
        }
    }

    /// Judge an absolute-URL request and spend on the authority that allows it.
    /// Returns the authority so the caller can apply its limits and injected headers.
    pub fn admit(&self, req: &Request) -> (Decision, Option<&Authority>) {
        self.decide(req, true)
    }

    /// The first authority that allows the request wins: exact hosts first, then the
    /// single-label wildcard over the host's parent domain (looked up only if needed). If none
    /// allows, the denial reported is the one from the authority that got furthest (path
    /// beats origin, method beats path...).
    fn decide(&self, req: &Request, spend: bool) -> (Decision, Option<&Authority>) {
        let mut best: Option<(&Authority, Refusal<'_>)> = None;
        let host = req.url.host();
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
                let url = &req.url;
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

    /// The first of `indexes` whose authority allows `req`; otherwise keeps the furthest
    /// refusal in `best`.
    fn first_allowing<'a>(
        &'a self,
        indexes: &[usize],
        req: &Request,
        spend: bool,
        best: &mut Option<(&'a Authority, Refusal<'a>)>,
    ) -> Option<&'a Authority> {
        for &i in indexes {
            let authority = &self.roots[i];
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
