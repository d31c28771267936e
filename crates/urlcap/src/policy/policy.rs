//! The policy: the root authorities made from the grants, and the sandbox-wide IP rules.
//!
//! This is the only place handles are created from nothing. A [`Policy`] is the host's: it
//! answers `urlcap explain` and hands the top-level sandbox its handle table
//! ([`Policy::preopens`]); no guest API holds one.

use super::approved::Approved;
use super::authority::{Authority, Tree};
use super::clock::Clock;
use super::decision::{Decision, Denial};
use super::fix::Fix;
use super::grant::Grant;
use super::handles::HandleTable;
use super::ip::IpRules;
use super::learn::Learning;
use super::request::Request;
use std::sync::Arc;

/// The root authorities, as a handle table under their own names.
pub struct Policy {
    roots: HandleTable,
    network: Arc<IpRules>,
    tree: Arc<Tree>,
}

impl Policy {
    /// Make the root authorities. Names must be unique.
    pub fn new(
        grants: Vec<Grant>,
        network: IpRules,
        clock: Arc<dyn Clock>,
    ) -> Result<Policy, String> {
        let tree = Tree::new(clock);
        let network = Arc::new(network);
        let roots = HandleTable::new(grants.into_iter().map(|grant| {
            let name = grant.name.clone();
            (Authority::root(grant, network.clone(), tree.clone()), name)
        }))?
        .of_roots(network.clone());
        Ok(Policy {
            roots,
            network,
            tree,
        })
    }

    /// The root authorities, in manifest order.
    pub(crate) fn authorities(&self) -> impl ExactSizeIterator<Item = &Authority> {
        self.roots.iter().map(|(a, _)| a)
    }

    /// The root authority preopened as `name` (the handle itself: checking through it and
    /// authorizing through it spend the same budgets as the sandboxes that hold it).
    pub fn get(&self, name: &str) -> Option<&Authority> {
        self.roots.get(name)
    }

    /// The handle table of a top-level sandbox that is given every root under its own name
    /// (the same handles: spending and revocation are shared with this policy).
    pub fn preopens(&self) -> HandleTable {
        self.roots.clone()
    }

    /// Judge an absolute-URL request against the roots without spending (dry run).
    pub fn check(&self, req: &Request) -> Decision {
        self.roots.check(req)
    }

    /// The smallest change to the grants that would have allowed `req`, which
    /// [`Policy::check`] denied with `denial` (see `HandleTable::fix`).
    pub fn fix(&self, denial: &Denial, req: &Request) -> Option<Fix> {
        self.roots.fix(denial, req)
    }

    /// What admits requests in learn mode, which the host that runs a guest in learn mode
    /// hands to its top-level sandbox (see [`Learning`]).
    pub(crate) fn learning(&self) -> Learning {
        Learning::new(self.roots.clone(), self.network.clone(), self.tree.clone())
    }

    /// Admit an absolute-URL request through the first root that allows it (see
    /// `HandleTable::authorize`).
    pub fn authorize(&self, req: Request) -> Result<Approved, Denial> {
        self.roots.authorize(req)
    }
}
