//! Authority handles: the capabilities a guest holds.
//!
//! An [`Authority`] is an `Arc`'d node in a tree. Roots come only from [`super::Policy::new`]
//! (the manifest loader's output); every other handle is [`Authority::derive`]d from one, and is
//! a subset of its parent in every dimension. Static rules (origin, path, method, headers, body)
//! are checked on the handle's own grant, which derivation proved to be a subset of its
//! parent's. Dynamic state (revocation, expiry, budget, rate) is checked along the whole chain to
//! the root, so a child's spending counts against its ancestors and revoking a parent revokes
//! every descendant, including those derived later.

use super::approved::Approved;
use super::clock::Clock;
use super::decision::{AuthorityRef, Decision, Denial};
use super::grant::{Grant, Rate};
use super::ip::{IpRules, VettedAddr};
use super::method::MethodSet;
use super::origin::{Host, HostPattern};
use super::path::PathPrefix;
use super::reason::Reason;
use super::request::{CanonicalUrl, Request};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Most levels a handle may be derived below its root (each nested sandbox's fresh child counts
/// as one). Every check that walks a handle's chain (revocation, expiry, budget, rate) and its
/// lineage text are bounded by this, whatever a guest does.
pub(crate) const MAX_DERIVATION_DEPTH: u32 = 32;
/// Most path prefixes one derivation may name.
pub(crate) const MAX_ATTENUATION_PATHS: usize = 32;
/// Longest path prefix a derivation may name, in bytes.
pub(crate) const MAX_PATH_PREFIX_LEN: usize = 512;
/// Most methods one derivation may name.
pub(crate) const MAX_ATTENUATION_METHODS: usize = 16;

/// Counts the derived handles one holder (a sandbox) has made that are still alive — held by
/// the guest, or kept alive only as an ancestor of another handle — and the bytes their grants
/// occupy, and refuses a derivation past either limit. A handle gives its share back when the
/// last reference to it goes.
#[derive(Debug)]
pub(crate) struct HandleQuota {
    live: Mutex<(usize, usize)>,
    max_handles: usize,
    max_bytes: usize,
}

impl HandleQuota {
    pub(crate) fn new(max_handles: usize, max_bytes: usize) -> Arc<HandleQuota> {
        Arc::new(HandleQuota {
            live: Mutex::new((0, 0)),
            max_handles,
            max_bytes,
        })
    }

    fn reserve(&self, bytes: usize) -> Result<(), String> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.0 >= self.max_handles {
            return Err(format!(
                "{} derived handles are alive (held, or kept alive by their descendants); drop some first",
                self.max_handles
            ));
        }
        if live.1.saturating_add(bytes) > self.max_bytes {
            return Err(format!(
                "the grants of the live derived handles would exceed {} bytes",
                self.max_bytes
            ));
        }
        live.0 += 1;
        live.1 += bytes;
        Ok(())
    }

    fn release(&self, bytes: usize) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.0 = live.0.saturating_sub(1);
        live.1 = live.1.saturating_sub(bytes);
    }
}

/// State shared by every handle of one policy: the clock and the lineage id counter.
pub(crate) struct Tree {
    pub(crate) clock: Arc<dyn Clock>,
    next_id: AtomicU64,
}

impl Tree {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Arc<Tree> {
        Arc::new(Tree {
            clock,
            next_id: AtomicU64::new(1),
        })
    }
}

/// Requests spent and rate tokens left, for handles with a budget or a rate.
#[derive(Debug)]
struct Usage {
    spent: u64,
    tokens: f64,
    refilled_at: Duration,
}

impl Usage {
    fn refill(&mut self, rate: &Rate, now: Duration) {
        let elapsed = now.saturating_sub(self.refilled_at).as_secs_f64();
        let per_sec = f64::from(rate.count) / rate.per.as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(rate.count));
        self.refilled_at = now;
    }
}

struct Node {
    grant: Grant,
    network: Arc<IpRules>,
    /// Clock time after which this handle is dead.
    expires_at: Option<Duration>,
    parent: Option<Authority>,
    reference: AuthorityRef,
    revoked: AtomicBool,
    usage: Mutex<Usage>,
    /// Does this handle or any ancestor keep budget or rate state?
    stateful_chain: bool,
    /// Does this handle or any ancestor expire?
    expiring_chain: bool,
    tree: Arc<Tree>,
    /// Levels below the root (a root is 0).
    depth: u32,
    /// Who is charged for this handle, and how many bytes, while it lives.
    charge: Option<(Arc<HandleQuota>, usize)>,
    /// The origin's URL at the root path, made on the first request relative to this handle
    /// (`None`: the origin names no single host) and reused by every later one.
    base: std::sync::OnceLock<Option<url::Url>>,
}

/// Bytes a handle's memoized base URL ([`Node::base`]) may take beyond its grant: the `Url`
/// and its text (scheme, a host of at most 253 bytes, a port), charged with the handle.
const BASE_URL_BYTES: usize = std::mem::size_of::<url::Url>() + 300;

impl Drop for Node {
    fn drop(&mut self) {
        if let Some((quota, bytes)) = &self.charge {
            quota.release(*bytes);
        }
    }
}

/// A capability to send some HTTP requests. Cheap to clone; clones are the same handle.
#[derive(Clone)]
pub struct Authority(Arc<Node>);

/// What a derived handle should be narrowed to. `None` keeps the parent's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attenuation {
    /// Narrow a wildcard grant to one concrete host.
    pub host: Option<Host>,
    /// Path prefixes, each under one of the parent's (whole segments).
    pub paths: Option<Vec<PathPrefix>>,
    /// Methods, all among the parent's.
    pub methods: Option<MethodSet>,
    /// A budget of the child's own; spending still counts against every ancestor's too.
    pub max_requests: Option<u64>,
    /// A rate of the child's own, within the parent's in both rate and burst.
    pub rate: Option<Rate>,
    /// Total time per request, at most the parent's.
    pub timeout: Option<Duration>,
    /// Largest request body, at most the parent's.
    pub max_request_body: Option<u64>,
    /// Largest response body, at most the parent's.
    pub max_response_body: Option<u64>,
    /// The child dies this long after it is derived.
    pub expires_in: Option<Duration>,
}

/// Why a check stopped, before it is worded as a [`Denial`]. Variants are in evaluation
/// order: when several authorities could apply, the one that got furthest is reported.
#[derive(Debug)]
pub(crate) enum Refusal<'a> {
    Origin,
    Ip(Denial),
    Path,
    Method,
    /// Index of the offending header in the request.
    Header(usize),
    /// A header (or the `_method` query parameter) a server reads as another method, path,
    /// host, scheme or port, that the grant would deny as a request line: what it was, that
    /// reason, and why.
    Override(String, Reason, String),
    Body {
        len: u64,
        max: u64,
    },
    Revoked(&'a Authority),
    Expired(&'a Authority),
    Budget(&'a Authority, u64),
    Rate(&'a Authority, Rate),
}

impl Refusal<'_> {
    /// How far evaluation got before refusing.
    pub(crate) fn stage(&self) -> u8 {
        match self {
            Refusal::Origin => 0,
            Refusal::Ip(_) => 1,
            Refusal::Path => 2,
            Refusal::Method => 3,
            Refusal::Header(_) | Refusal::Override(..) => 4,
            Refusal::Body { .. } => 5,
            Refusal::Revoked(_) | Refusal::Expired(_) => 6,
            Refusal::Budget(..) | Refusal::Rate(..) => 7,
        }
    }
}

impl Authority {
    pub(crate) fn root(grant: Grant, network: Arc<IpRules>, tree: Arc<Tree>) -> Authority {
        let name: Arc<str> = grant.name.as_str().into();
        let reference = AuthorityRef {
            name: name.clone(),
            lineage: name,
        };
        let stateful_chain = grant.limits.is_stateful();
        Authority(Arc::new(Node {
            usage: Mutex::new(Usage {
                spent: 0,
                tokens: grant.limits.rate.map_or(0.0, |r| f64::from(r.count)),
                refilled_at: tree.clock.now(),
            }),
            grant,
            network,
            expires_at: None,
            parent: None,
            reference,
            revoked: AtomicBool::new(false),
            stateful_chain,
            expiring_chain: false,
            tree,
            depth: 0,
            charge: None,
            base: std::sync::OnceLock::new(),
        }))
    }

    /// The preopen name (a derived handle keeps its root's name).
    pub fn name(&self) -> &str {
        &self.0.reference.name
    }

    /// Root name and lineage, e.g. `github` and `github/2/5`.
    pub fn reference(&self) -> &AuthorityRef {
        &self.0.reference
    }

    /// A request for `path_and_query` relative to this handle's origin (the native guest API),
    /// canonicalized by [`Request::relative_to`] on the origin's URL this handle made once.
    pub(crate) fn relative_request(
        &self,
        method: &str,
        path_and_query: &str,
    ) -> Result<Request, Denial> {
        let origin = &self.0.grant.origin;
        let base = self.0.base.get_or_init(|| CanonicalUrl::base(origin));
        Request::relative_to(method, origin, base.as_ref(), path_and_query)
    }

    /// What this handle allows.
    pub fn grant(&self) -> &Grant {
        &self.0.grant
    }

    /// The sandbox-wide IP rules this handle is judged under (for working out a fix-it hint).
    pub(crate) fn network(&self) -> &IpRules {
        &self.0.network
    }

    /// The handle this one was derived from; `None` for a root.
    pub(crate) fn parent(&self) -> Option<&Authority> {
        self.0.parent.as_ref()
    }

    /// This handle and its ancestors, nearest first.
    fn chain(&self) -> impl Iterator<Item = &Authority> {
        std::iter::successors(Some(self), |a| a.0.parent.as_ref())
    }

    /// Revoke this handle and, through the chain check, everything derived from it.
    pub fn revoke(&self) {
        self.0.revoked.store(true, Ordering::SeqCst);
    }

    /// Is this handle, or any ancestor, revoked? (Revoking a parent is enough: the chain is
    /// checked, so handles derived after the revocation are dead too.)
    pub fn is_revoked(&self) -> bool {
        self.chain().any(|a| a.0.revoked.load(Ordering::SeqCst))
    }

    /// Judge a request without spending anything (dry run, `urlcap explain`).
    pub fn check(&self, req: &Request) -> Decision {
        match self.evaluate(req, false) {
            Ok(()) => Decision::Allow(self.0.reference.clone()),
            Err(refusal) => Decision::Deny(self.denial(refusal, req)),
        }
    }

    /// Judge `req` and, if it is allowed, spend one request of budget and rate on this handle
    /// and on every ancestor, atomically, and return the proof egress requires; or the denial
    /// (which spends nothing anywhere).
    pub fn authorize(&self, req: Request) -> Result<Approved, Denial> {
        self.authorize_or_return(req).map_err(|(denial, _)| denial)
    }

    /// [`Authority::authorize`], giving a denied request back with its denial (to work out a
    /// hint with [`Authority::fix`], or for learn mode) without copying it beforehand.
    // The request comes back by value, on the denial path only: boxing it would allocate on
    // every denial to save a copy.
    #[allow(clippy::result_large_err)]
    pub(crate) fn authorize_or_return(&self, req: Request) -> Result<Approved, (Denial, Request)> {
        match self.evaluate(&req, true) {
            Ok(()) => Ok(Approved::new(self.clone(), req)),
            Err(refusal) => {
                let denial = self.denial(refusal, &req);
                Err((denial, req))
            }
        }
    }

    /// Check an address the granted name resolved to (or an IP literal) against the
    /// sandbox's IP rules and this grant's exceptions; a yes is the [`VettedAddr`] egress
    /// needs to connect there on this handle's behalf. A denial carries its fix-it hint (the
    /// exception that would let it through): address denials mostly come from egress, after
    /// DNS, where no request is left to work one out.
    pub fn vet(&self, addr: SocketAddr) -> Result<VettedAddr, Denial> {
        self.0
            .network
            .vet(addr, &self.0.grant.allow_ips)
            .map_err(|mut d| {
                d.fix = self.ip_fix(addr.ip()).map(Box::new);
                d.on(&self.0.reference)
            })
    }

    /// Judge `req` on this handle. Cheap on both outcomes: a refusal is a small value, and
    /// only the one that gets reported is turned into a [`Denial`] with its detail text.
    pub(crate) fn evaluate(&self, req: &Request, spend: bool) -> Result<(), Refusal<'_>> {
        let grant = &self.0.grant;
        let url = req.url();
        if !grant.origin.matches(url.scheme(), url.host(), url.port()) {
            return Err(Refusal::Origin);
        }
        if let Some(ip) = url.host().ip() {
            self.vet(SocketAddr::new(ip, url.port()))
                .map_err(Refusal::Ip)?;
        }
        if !grant.grants_path(url.path()) {
            return Err(Refusal::Path);
        }
        if !grant.methods.contains(req.method()) {
            return Err(Refusal::Method);
        }
        if let Some(i) = req
            .headers()
            .iter()
            .position(|(name, _)| grant.injects(name))
        {
            return Err(Refusal::Header(i));
        }
        if let Some((what, reason, why)) =
            super::overrides::refused_override(grant, req.url(), req.headers())
        {
            return Err(Refusal::Override(what, reason, why));
        }
        if let (Some(len), Some(max)) = (req.body_len(), grant.limits.max_request_body) {
            if len > max {
                return Err(Refusal::Body { len, max });
            }
        }
        self.check_alive()?;
        self.spend_along_chain(spend)
    }

    /// The denial, with its detail text, for a refusal of `req` on this handle.
    pub(crate) fn denial(&self, refusal: Refusal<'_>, req: &Request) -> Denial {
        let grant = &self.0.grant;
        let url = req.url();
        let (reason, detail) = match refusal {
            Refusal::Origin => (
                Reason::NoAuthority,
                format!(
                    "authority {} grants {}, not {}://{}:{}",
                    self.name(),
                    grant.origin,
                    url.scheme().as_str(),
                    url.host(),
                    url.port()
                ),
            ),
            Refusal::Ip(denial) => return denial,
            Refusal::Path => {
                // Built by pushes, not `format!`: denials are frequent enough (every probe of a
                // hostile guest) that the formatting machinery showed in the decision's cost.
                let mut detail = String::with_capacity(64);
                detail.push_str("path ");
                detail.push_str(url.path());
                detail.push_str(" is not under");
                for p in &grant.paths {
                    detail.push(' ');
                    detail.push_str(p.as_str());
                }
                (Reason::PathNotAllowed, detail)
            }
            Refusal::Method => (
                Reason::MethodNotAllowed,
                format!("method {} is not one of {}", req.method(), grant.methods),
            ),
            Refusal::Header(i) => (
                Reason::ForbiddenHeader,
                format!("header {:?} is injected by the host", req.headers()[i].0),
            ),
            Refusal::Override(what, reason, why) => (
                reason,
                format!("{what} is read by servers as the request line: {why}"),
            ),
            Refusal::Body { len, max } => (
                Reason::RequestBodyTooLarge,
                format!("body of {len} bytes exceeds max_request_body {max}"),
            ),
            state => return self.state_denial(state),
        };
        Denial::new(reason, detail).on(&self.0.reference)
    }

    /// The denial for a refusal that depends on the handles' state, not on the request.
    fn state_denial(&self, refusal: Refusal<'_>) -> Denial {
        let (reason, detail) = match refusal {
            Refusal::Revoked(a) => (
                Reason::Revoked,
                format!("authority {} was revoked", a.0.reference.lineage),
            ),
            Refusal::Expired(a) => (
                Reason::Expired,
                format!("authority {} has expired", a.0.reference.lineage),
            ),
            Refusal::Budget(a, max) => (
                Reason::BudgetExhausted,
                format!(
                    "authority {} has spent all {max} requests",
                    a.0.reference.lineage
                ),
            ),
            Refusal::Rate(a, rate) => (
                Reason::RateLimited,
                format!(
                    "authority {} is over its rate of {rate}",
                    a.0.reference.lineage
                ),
            ),
            other => unreachable!("{other:?} depends on the request"),
        };
        Denial::new(reason, detail).on(&self.0.reference)
    }

    /// Revocation, expiry, budget and rate, without spending: what the request itself does
    /// not decide.
    pub(super) fn check_state(&self) -> Result<(), Refusal<'_>> {
        self.check_alive()?;
        self.spend_along_chain(false)
    }

    /// Revocation and expiry, then spend budget and rate: what admitting a request costs
    /// once the request itself was judged (learn mode judges it on a widened grant).
    pub(super) fn spend(&self) -> Result<(), Refusal<'_>> {
        self.check_alive()?;
        self.spend_along_chain(true)
    }

    /// Neither this handle nor an ancestor is revoked or expired.
    fn check_alive(&self) -> Result<(), Refusal<'_>> {
        if let Some(a) = self.chain().find(|a| a.0.revoked.load(Ordering::SeqCst)) {
            return Err(Refusal::Revoked(a));
        }
        if self.0.expiring_chain {
            let now = self.0.tree.clock.now();
            if let Some(a) = self
                .chain()
                .find(|a| a.0.expires_at.is_some_and(|t| now >= t))
            {
                return Err(Refusal::Expired(a));
            }
        }
        Ok(())
    }

    /// Check, and if `spend`, consume, budget and rate on every stateful handle of the chain.
    /// Locks are taken root first, the same order for every caller, so this cannot deadlock,
    /// and all checks happen before any spending, so a denial spends nothing anywhere.
    fn spend_along_chain(&self, spend: bool) -> Result<(), Refusal<'_>> {
        if !self.0.stateful_chain {
            return Ok(());
        }
        let mut stateful: Vec<&Authority> = self
            .chain()
            .filter(|a| a.0.grant.limits.is_stateful())
            .collect();
        stateful.reverse();
        let now = self.0.tree.clock.now();
        let mut guards: Vec<MutexGuard<'_, Usage>> = stateful
            .iter()
            .map(|a| {
                a.0.usage
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            })
            .collect();
        for (a, usage) in stateful.iter().zip(guards.iter_mut()) {
            let limits = &a.0.grant.limits;
            if let Some(max) = limits.max_requests {
                if usage.spent >= max {
                    return Err(Refusal::Budget(a, max));
                }
            }
            if let Some(rate) = &limits.rate {
                usage.refill(rate, now);
                if usage.tokens < 1.0 {
                    return Err(Refusal::Rate(a, *rate));
                }
            }
        }
        if spend {
            for (a, usage) in stateful.iter().zip(guards.iter_mut()) {
                usage.spent += 1;
                if a.0.grant.limits.rate.is_some() {
                    usage.tokens -= 1.0;
                }
            }
        }
        Ok(())
    }

    /// Requests spent through this handle and its descendants.
    pub fn spent(&self) -> u64 {
        self.0.usage.lock().unwrap_or_else(|p| p.into_inner()).spent
    }

    /// Derive a child handle that allows a subset of what this one allows.
    ///
    /// Fails with `attenuation_widens` if any dimension would grow, `invalid_attenuation` if it
    /// would allow nothing or names more than 32 paths (`MAX_ATTENUATION_PATHS`; each at most
    /// 512 bytes, `MAX_PATH_PREFIX_LEN`) or 16 methods (`MAX_ATTENUATION_METHODS`),
    /// `handle_limit` if the child would be more than 32 levels below its root
    /// (`MAX_DERIVATION_DEPTH`), and `revoked` / `expired` if this handle is dead. The bounds
    /// keep what a guest can make the host do small, whatever it sends. Its cost does not depend on how deep this
    /// handle is or how many paths its parent grants.
    pub fn derive(&self, att: &Attenuation) -> Result<Authority, Denial> {
        self.derive_charged(att, None)
    }

    /// [`Authority::derive`], charging the child to `quota` while it lives (refused with
    /// `handle_limit` when the quota is full).
    pub(crate) fn derive_within(
        &self,
        att: &Attenuation,
        quota: &Arc<HandleQuota>,
    ) -> Result<Authority, Denial> {
        self.derive_charged(att, Some(quota))
    }

    fn derive_charged(
        &self,
        att: &Attenuation,
        quota: Option<&Arc<HandleQuota>>,
    ) -> Result<Authority, Denial> {
        self.check_alive()
            .map_err(|refusal| self.state_denial(refusal))?;
        let parent = &self.0.grant;
        let reference = &self.0.reference;
        let widens = |what: String| Denial::new(Reason::AttenuationWidens, what).on(reference);
        let invalid = |what: String| Denial::new(Reason::InvalidAttenuation, what).on(reference);
        let limit = |what: String| Denial::new(Reason::HandleLimit, what).on(reference);
        if self.0.depth >= MAX_DERIVATION_DEPTH {
            return Err(limit(format!(
                "handles derive at most {MAX_DERIVATION_DEPTH} levels below their root"
            )));
        }
        check_size(att).map_err(invalid)?;

        let mut grant = parent.clone();
        if let Some(host) = &att.host {
            if !parent.origin.host.matches(host) {
                return Err(widens(format!(
                    "host {host} is not covered by {}",
                    parent.origin.host
                )));
            }
            grant.origin.host = HostPattern::Exact(host.clone());
        }
        if let Some(paths) = &att.paths {
            if paths.is_empty() {
                return Err(invalid("an empty path list would allow nothing".into()));
            }
            let granted: rustc_hash::FxHashSet<&str> =
                parent.paths.iter().map(PathPrefix::as_str).collect();
            if let Some(p) = paths.iter().find(|p| !p.covered_by_any(&granted)) {
                return Err(widens(format!(
                    "path prefix {p} is not under the parent's paths"
                )));
            }
            grant.paths = paths.clone();
        }
        if let Some(methods) = &att.methods {
            if methods.is_empty() {
                return Err(invalid("an empty method list would allow nothing".into()));
            }
            if !methods.is_subset_of(&parent.methods) {
                return Err(widens(format!(
                    "methods {methods} are not all in {}",
                    parent.methods
                )));
            }
            grant.methods = methods.clone();
        }
        let pl = &parent.limits;
        let l = &mut grant.limits;
        l.max_requests = narrow("max_requests", pl.max_requests, att.max_requests, |c, p| {
            c <= p
        })
        .map_err(widens)?;
        l.rate = narrow("rate", pl.rate, att.rate, |c, p| c.within(&p)).map_err(widens)?;
        l.timeout = narrow("timeout", pl.timeout, att.timeout, |c, p| c <= p).map_err(widens)?;
        l.max_request_body = narrow(
            "max_request_body",
            pl.max_request_body,
            att.max_request_body,
            |c, p| c <= p,
        )
        .map_err(widens)?;
        l.max_response_body = narrow(
            "max_response_body",
            pl.max_response_body,
            att.max_response_body,
            |c, p| c <= p,
        )
        .map_err(widens)?;
        // A child with no budget or rate of its own spends nothing locally: its ancestors count.
        if att.max_requests.is_none() {
            l.max_requests = None;
        }
        if att.rate.is_none() {
            l.rate = None;
        }
        let now = self.0.tree.clock.now();
        let expires_at = match att.expires_in {
            None => self.0.expires_at,
            Some(d) => {
                let at = now.saturating_add(d);
                if self.0.expires_at.is_some_and(|p| at > p) {
                    return Err(widens("expires_in outlives the parent".into()));
                }
                Some(at)
            }
        };
        let charge = match quota {
            None => None,
            Some(quota) => {
                let bytes = grant.heap_estimate() + BASE_URL_BYTES;
                quota.reserve(bytes).map_err(limit)?;
                Some((quota.clone(), bytes))
            }
        };
        let id = self.0.tree.next_id.fetch_add(1, Ordering::Relaxed);
        let child_ref = AuthorityRef {
            name: reference.name.clone(),
            lineage: format!("{}/{id}", reference.lineage).into(),
        };
        Ok(Authority(Arc::new(Node {
            depth: self.0.depth + 1,
            charge,
            usage: Mutex::new(Usage {
                spent: 0,
                tokens: grant.limits.rate.map_or(0.0, |r| f64::from(r.count)),
                refilled_at: now,
            }),
            stateful_chain: self.0.stateful_chain || grant.limits.is_stateful(),
            expiring_chain: self.0.expiring_chain || expires_at.is_some(),
            grant,
            network: self.0.network.clone(),
            expires_at,
            parent: Some(self.clone()),
            reference: child_ref,
            revoked: AtomicBool::new(false),
            tree: self.0.tree.clone(),
            base: std::sync::OnceLock::new(),
        })))
    }
}

/// A derivation names at most so many paths and methods, each of bounded length, so judging
/// it is cheap whatever a guest sends.
fn check_size(att: &Attenuation) -> Result<(), String> {
    if let Some(paths) = &att.paths {
        if paths.len() > MAX_ATTENUATION_PATHS {
            return Err(format!(
                "{} path prefixes; a derivation names at most {MAX_ATTENUATION_PATHS}",
                paths.len()
            ));
        }
        if let Some(p) = paths
            .iter()
            .find(|p| p.as_str().len() > MAX_PATH_PREFIX_LEN)
        {
            return Err(format!(
                "a path prefix of {} bytes; at most {MAX_PATH_PREFIX_LEN}",
                p.as_str().len()
            ));
        }
    }
    match &att.methods {
        Some(m) if m.len() > MAX_ATTENUATION_METHODS => Err(format!(
            "{} methods; a derivation names at most {MAX_ATTENUATION_METHODS}",
            m.len()
        )),
        _ => Ok(()),
    }
}

/// The child's limit: the parent's when the child names none; the child's when it is within
/// the parent's; an error naming the dimension when it would widen.
fn narrow<T: Copy + fmt::Debug>(
    what: &str,
    parent: Option<T>,
    child: Option<T>,
    within: impl Fn(T, T) -> bool,
) -> Result<Option<T>, String> {
    match (parent, child) {
        (p, None) => Ok(p),
        (None, Some(c)) => Ok(Some(c)),
        (Some(p), Some(c)) if within(c, p) => Ok(Some(c)),
        (Some(p), Some(c)) => Err(format!("{what} {c:?} exceeds the parent's {p:?}")),
    }
}

/// What a guest's `describe` returns: the lineage, the grant's one-line form (never its
/// host-held parts: see [`Grant`]'s `Display`), and `expiring` if the handle has an expiry.
impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.reference.lineage, self.0.grant)?;
        if self.0.expires_at.is_some() {
            f.write_str(" expiring")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("lineage", &self.0.reference.lineage)
            .field("origin", &self.0.grant.origin.to_string())
            .field("revoked", &self.0.revoked.load(Ordering::Relaxed))
            .finish()
    }
}
