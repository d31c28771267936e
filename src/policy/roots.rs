//! The policy: the root authorities of a sandbox and an index to find the one an absolute URL
//! falls under (for `wasi:http` guests and `urlcap explain`), in constant time whatever the
//! number of grants.

use super::authority::{Authority, Stage, Tree};
use super::clock::Clock;
use super::decision::{Decision, Denial};
use super::grant::Grant;
use super::ip::IpRules;
use super::origin::{wildcard_parent, Host, HostPattern};
use super::reason::Reason;
use super::request::Request;
use std::collections::HashMap;
use std::sync::Arc;

/// The root authorities, indexed by host.
pub struct Policy {
    roots: Vec<Authority>,
    by_name: HashMap<String, usize>,
    /// Exact hosts -> indexes of roots.
    by_host: HashMap<Host, Vec<usize>>,
    /// `*.suffix` -> indexes of roots, keyed by `suffix`.
    by_wildcard: HashMap<String, Vec<usize>>,
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
            by_name: HashMap::new(),
            by_host: HashMap::new(),
            by_wildcard: HashMap::new(),
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

    /// Judge an absolute-URL request and spend on the authority that allows it.
    /// Returns the authority so the caller can apply its limits and injected headers.
    pub fn admit(&self, req: &Request) -> (Decision, Option<&Authority>) {
        self.decide(req, true)
    }

    fn candidates<'a>(&'a self, host: &Host) -> impl Iterator<Item = &'a Authority> + 'a {
        let exact = self
            .by_host
            .get(host)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let wildcard = match host {
            Host::Domain(d) => wildcard_parent(d)
                .and_then(|s| self.by_wildcard.get(s))
                .map(Vec::as_slice)
                .unwrap_or_default(),
            _ => &[],
        };
        exact.iter().chain(wildcard).map(|&i| &self.roots[i])
    }

    /// The first authority that allows the request wins. If none does, the denial reported is
    /// the one from the authority that got furthest (path beats origin, method beats path...).
    fn decide(&self, req: &Request, spend: bool) -> (Decision, Option<&Authority>) {
        let mut best: Option<(Stage, Denial)> = None;
        for authority in self.candidates(req.url.host()) {
            match authority.evaluate(req, spend) {
                Ok(()) => {
                    return (
                        Decision::Allow(authority.reference().clone()),
                        Some(authority),
                    )
                }
                Err((stage, denial)) => {
                    if best.as_ref().is_none_or(|(s, _)| stage > *s) {
                        best = Some((stage, denial));
                    }
                }
            }
        }
        let denial = match best {
            Some((Stage::Origin, _)) | None => {
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
            Some((_, denial)) => denial,
        };
        (Decision::Deny(denial), None)
    }
}
