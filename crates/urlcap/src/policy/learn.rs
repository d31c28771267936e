//! Learn mode's decisions, pure like the rest of the policy: which denied requests may be let
//! through ([`learnable`]), and the proof egress requires for one that is ([`Learning::admit`]).
//! Recording what was learned and writing the manifest happen outside the policy
//! (`urlcap::learn`).
//!
//! A request is learnable when the one thing between it and an allow is a grant that does not
//! cover its origin, path or method, and the manifest could have covered it: its
//! [`super::Fix`] only widens scope (a new origin, a path prefix, a method). Everything else
//! stays denied in learn mode exactly as it is enforced: requests that are not canonical,
//! CONNECT, userinfo, headers only the host may set (and headers a grant injects), override
//! headers the widened grant would still refuse, addresses the IP rules deny (checked by egress
//! after DNS, as always), and every limit (bodies, budgets, rates, revocation). Only the
//! policy's own table of roots can learn: a nested sandbox holds what its parent passed it, and
//! its parent, not the manifest, decides that.

use super::approved::Approved;
use super::authority::{Authority, Tree};
use super::decision::Denial;
use super::fix::{Fix, FixTarget};
use super::handles::HandleTable;
use super::ip::IpRules;
use super::reason::Reason;
use super::request::Request;
use std::sync::Arc;

/// May `req`, which the grants denied with `denial` (its fix filled in by
/// `HandleTable::fix` or `Authority::fix`), be let through in learn mode? The grant change
/// that would have allowed it, if so.
pub fn learnable<'a>(denial: &'a Denial, req: &Request) -> Option<&'a Fix> {
    let fix = denial.fix.as_deref()?;
    let scope = matches!(
        denial.reason,
        Reason::NoAuthority | Reason::PathNotAllowed | Reason::MethodNotAllowed
    );
    let covers = match &fix.target {
        FixTarget::New(origin) => {
            origin.matches(req.url().scheme(), req.url().host(), req.url().port())
                && fix
                    .path
                    .as_ref()
                    .is_some_and(|p| p.grants(req.url().path()))
                && fix.method.as_ref() == Some(req.method())
        }
        FixTarget::Authority { .. } => true,
    };
    (scope && covers && fix.only_widens_scope()).then_some(fix)
}

/// What admits learned requests: made only from a [`super::Policy`] by the host that runs a
/// guest in learn mode (`super::Policy::learning`), never reachable from a guest API.
pub struct Learning {
    roots: HandleTable,
    network: Arc<IpRules>,
    tree: Arc<Tree>,
}

impl Learning {
    pub(super) fn new(roots: HandleTable, network: Arc<IpRules>, tree: Arc<Tree>) -> Learning {
        Learning {
            roots,
            network,
            tree,
        }
    }

    /// Admit `req`, which the roots denied with `denial`, as if its fix had been applied: for
    /// a new origin through a fresh authority named `name` that grants just this request; for
    /// a root that lacked the path or method, through that root's grant widened by them,
    /// spending the root's own budget and rate (so the learned manifest's limits hold as they
    /// did). The denial stands if the request is not [`learnable`].
    ///
    /// Egress still vets the addresses the host resolves to against the IP rules.
    pub(crate) fn admit(
        &self,
        req: Request,
        denial: Denial,
        name: &str,
    ) -> Result<Approved, Denial> {
        let Some(fix) = learnable(&denial, &req) else {
            return Err(denial);
        };
        let authority = match &fix.target {
            FixTarget::New(_) => {
                let Some(grant) = fix.new_grant(name) else {
                    return Err(denial);
                };
                Authority::root(grant, self.network.clone(), self.tree.clone())
            }
            FixTarget::Authority { name, .. } => {
                let Some(root) = self.roots.get(name).filter(|a| a.parent().is_none()) else {
                    return Err(denial);
                };
                let mut grant = fix.widen(root.grant());
                // Spent on the root below, not twice.
                grant.limits.max_requests = None;
                grant.limits.rate = None;
                let widened = Authority::root(grant, self.network.clone(), self.tree.clone());
                if widened.evaluate(&req, false).is_err() {
                    return Err(denial);
                }
                if let Err(refusal) = root.spend() {
                    return Err(root.denial(refusal, &req));
                }
                return Ok(Approved::new(widened, req));
            }
        };
        match authority.evaluate(&req, false) {
            Ok(()) => Ok(Approved::new(authority, req)),
            Err(_) => Err(denial),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{grant_from_spec_url, Grant, Method, MethodSet, Policy, SystemClock};

    fn policy() -> Policy {
        let (origin, paths) = grant_from_spec_url("https://api.example.com/v1/").unwrap();
        let mut grant = Grant::new("api", origin);
        grant.paths = paths;
        grant.methods = MethodSet::new([Method::parse("GET").unwrap()]);
        grant.headers.push(crate::policy::InjectedHeader {
            name: "authorization".into(),
            value: crate::secret::Secret::new(b"Bearer s3cret".to_vec()),
        });
        grant.limits.max_requests = Some(2);
        Policy::new(
            vec![grant],
            IpRules::default(),
            Arc::new(SystemClock::new()),
        )
        .unwrap()
    }

    /// The policy's denial with its fix, as the host asks for it.
    fn denied(
        policy: &Policy,
        method: &str,
        url: &str,
        header: Option<(&str, &str)>,
    ) -> (Denial, Request) {
        let mut req = Request::new(method, url).unwrap();
        if let Some((k, v)) = header {
            req = req.header(k, v).unwrap();
        }
        let mut denial = policy.check(&req).into_result().unwrap_err();
        denial.fix = policy.fix(&denial, &req).map(Box::new);
        (denial, req)
    }

    /// (method, URL, extra header, learnable?) — what learn mode lets through, and what it
    /// refuses as enforcement does.
    #[test]
    fn only_scope_the_manifest_could_grant_is_learnable() {
        let policy = policy();
        type Row<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>, bool);
        let rows: &[Row] = &[
            ("GET", "https://other.example.com/x", None, true),
            ("GET", "https://api.example.com/v2/x", None, true),
            ("POST", "https://api.example.com/v1/x", None, true),
            ("POST", "https://api.example.com/v2/x", None, true),
            // The guest may not set a header the grant injects, in learn mode too.
            (
                "GET",
                "https://api.example.com/v2/x",
                Some(("authorization", "mine")),
                false,
            ),
            // An override the widened grant still refuses.
            (
                "POST",
                "https://api.example.com/v1/x",
                Some(("x-http-method-override", "DELETE")),
                false,
            ),
            // Addresses: a literal in a special-purpose range is not learned.
            ("GET", "http://127.0.0.1:8080/x", None, false),
            ("GET", "http://10.1.2.3/x", None, false),
        ];
        for &(method, url, header, expected) in rows {
            let (denial, req) = denied(&policy, method, url, header);
            assert_eq!(
                learnable(&denial, &req).is_some(),
                expected,
                "{method} {url} {header:?}: {denial}"
            );
        }
    }

    #[test]
    fn a_learned_widening_spends_the_roots_budget_and_keeps_its_headers() {
        let policy = policy();
        let learning = policy.learning();
        for _ in 0..2 {
            let (denial, req) = denied(&policy, "GET", "https://api.example.com/v2/x", None);
            let approved = learning.admit(req, denial, "unused").unwrap();
            let grant = approved.authority().grant();
            assert_eq!(approved.authority().name(), "api");
            assert!(grant.injects("authorization"));
            assert!(grant.grants_path("/v2/x") && grant.grants_path("/v1/"));
        }
        let (denial, req) = denied(&policy, "GET", "https://api.example.com/v2/x", None);
        // The budget is the manifest's own limit: past it, the request stays denied, and its
        // hint says what else it would take.
        let refused = learning.admit(req, denial, "unused").unwrap_err();
        let fix = refused.fix.expect("a hint");
        assert_eq!(fix.max_requests, Some(2));
        assert_eq!(
            fix.to_string(),
            "add path prefix /v2/x to authority api; raise its max_requests above 2"
        );
    }

    #[test]
    fn a_new_origin_is_admitted_for_exactly_what_was_asked() {
        let policy = policy();
        let (denial, req) = denied(&policy, "PUT", "https://other.example.com/a/b?q=1", None);
        let approved = policy.learning().admit(req, denial, "other").unwrap();
        let grant = approved.authority().grant();
        assert_eq!(approved.authority().name(), "other");
        assert_eq!(grant.origin.to_string(), "https://other.example.com");
        assert_eq!(grant.paths[0].as_str(), "/a/b");
        assert_eq!(grant.methods.to_string(), "PUT");
        assert!(grant.headers.is_empty());
    }

    #[test]
    fn a_denial_without_a_fix_is_never_learned() {
        let policy = policy();
        let req = Request::new("GET", "https://other.example.com/x").unwrap();
        let denial = policy.check(&req).into_result().unwrap_err();
        assert!(denial.fix.is_none());
        assert!(policy.learning().admit(req, denial, "x").is_err());
    }
}
