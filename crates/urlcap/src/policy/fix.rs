//! Fix-it hints: the smallest change to the grants that would have allowed a denied request.
//!
//! A hint is computed from the denial, the request and the handles that judged it — only when
//! someone asks for one (`explain`, the audit record of a denial, learn mode), never on the
//! decision's own path, whose cost stays what it was. It is a pure function like the rest of
//! the policy: [`HandleTable::fix`] and [`Authority::fix`].
//!
//! There is a hint only where the manifest could have allowed the request:
//! - no grant covers the origin (at the top level): a new grant for exactly this method, origin
//!   and path;
//! - a root grant covers the origin but not the path or method: add them to it;
//! - an address the special-purpose ranges deny: an `allow_ips` exception for exactly it;
//! - a declared body over `max_request_body`, or a root's `max_requests` or `rate` spent: raise
//!   it.
//!
//! Never where the answer is "never": a request that is not canonical, CONNECT, userinfo,
//! headers only the host may set (and so also a header the grant injects), an override header
//! the widened grant would still refuse, an address in `deny_ips`, a revoked handle, or
//! anything a guest narrowed for itself (a derived handle's paths, methods and limits, or the
//! handles a nested sandbox was passed: its parent decides those, not the manifest). A hint
//! never proposes a wildcard, so never one over a public suffix.

use super::authority::{Authority, Refusal};
use super::decision::Denial;
use super::grant::{Grant, GrantSource, Rate};
use super::handles::HandleTable;
use super::method::{Method, MethodSet};
use super::origin::{HostPattern, OriginPattern};
use super::path::PathPrefix;
use super::reason::Reason;
use super::request::Request;
use ipnet::IpNet;
use std::fmt;
use std::sync::Arc;

/// Which grant a [`Fix`] changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixTarget {
    /// A new grant for exactly this origin (no grant covers it).
    New(OriginPattern),
    /// The root authority of this name, written at `source`.
    Authority {
        /// The root's preopen name.
        name: Arc<str>,
        /// Where it was written (manifest line or `--allow` flag), so the hint says where to
        /// edit; `None` for a grant made in code.
        source: Option<GrantSource>,
    },
}

/// The smallest change to one grant that would have allowed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    /// The grant to change, or the new one to add.
    pub target: FixTarget,
    /// Add this path prefix: the request's own path, the narrowest whole-segment prefix
    /// that grants it.
    pub path: Option<PathPrefix>,
    /// Add this method.
    pub method: Option<Method>,
    /// Add these exceptions to the special-purpose deny set (one address each).
    pub allow_ips: Vec<IpNet>,
    /// Raise `max_request_body` to at least this many bytes.
    pub max_request_body: Option<u64>,
    /// Raise `max_requests` above this.
    pub max_requests: Option<u64>,
    /// Raise `rate` above this.
    pub rate: Option<Rate>,
}

impl Fix {
    fn new(target: FixTarget) -> Fix {
        Fix {
            target,
            path: None,
            method: None,
            allow_ips: Vec::new(),
            max_request_body: None,
            max_requests: None,
            rate: None,
        }
    }

    /// Does it change nothing?
    fn is_empty(&self) -> bool {
        self.path.is_none()
            && self.method.is_none()
            && self.allow_ips.is_empty()
            && self.max_request_body.is_none()
            && self.max_requests.is_none()
            && self.rate.is_none()
    }

    /// Does it only grant more origins, paths or methods (what learn mode may learn), and
    /// nothing about addresses or limits?
    pub(crate) fn only_widens_scope(&self) -> bool {
        self.allow_ips.is_empty()
            && self.max_request_body.is_none()
            && self.max_requests.is_none()
            && self.rate.is_none()
            && (self.path.is_some() || self.method.is_some())
    }

    /// The new grant this fix makes, named `name` (for a fix on an existing authority,
    /// `None`).
    pub(crate) fn new_grant(&self, name: &str) -> Option<Grant> {
        let FixTarget::New(origin) = &self.target else {
            return None;
        };
        let mut g = Grant::new(name, origin.clone());
        g.paths = self.path.iter().cloned().collect();
        g.methods = MethodSet::new(self.method.iter().cloned());
        g.allow_ips = self.allow_ips.clone();
        Some(g)
    }

    /// `grant` with this fix applied (paths, methods and address exceptions added, limits
    /// raised past what was refused).
    pub(crate) fn widen(&self, grant: &Grant) -> Grant {
        let mut g = grant.clone();
        if let Some(p) = &self.path {
            g.paths.push(p.clone());
        }
        if let Some(m) = &self.method {
            g.methods = MethodSet::new(g.methods.iter().cloned().chain([m.clone()]));
        }
        g.allow_ips.extend(self.allow_ips.iter().copied());
        if let Some(n) = self.max_request_body {
            g.limits.max_request_body = Some(n);
        }
        if self.max_requests.is_some() {
            g.limits.max_requests = None;
        }
        if self.rate.is_some() {
            g.limits.rate = None;
        }
        g
    }
}

impl fmt::Display for Fix {
    /// One line saying what to change and where: `add POST to methods of authority gh
    /// (policy/app.toml:12)`, `--allow 'GET https://api.other.com/v2/x'`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ips = |f: &mut fmt::Formatter<'_>| {
            self.allow_ips
                .iter()
                .try_for_each(|n| write!(f, " --allow-ip {}", n.addr()))
        };
        let (name, source) = match &self.target {
            FixTarget::New(origin) => {
                let method = self.method.as_ref().map_or("GET", Method::as_str);
                let path = self.path.as_ref().map_or("/", PathPrefix::as_str);
                write!(f, "--allow '{method} {origin}{path}'")?;
                return ips(f);
            }
            FixTarget::Authority { name, source } => (name, source),
        };
        let manifest = matches!(source, Some(GrantSource::Manifest { .. }));
        let mut adds = Vec::new();
        if let Some(p) = &self.path {
            adds.push(format!("path prefix {p}"));
        }
        if let Some(m) = &self.method {
            let only = self.path.is_none() && (!manifest || self.allow_ips.is_empty());
            adds.push(if only {
                format!("{m} to methods")
            } else {
                format!("method {m}")
            });
        }
        if manifest && !self.allow_ips.is_empty() {
            let list: Vec<String> = self.allow_ips.iter().map(|n| format!("\"{n}\"")).collect();
            adds.push(format!("allow_ips = [{}]", list.join(", ")));
        }
        let mut raises = Vec::new();
        if let Some(n) = self.max_request_body {
            raises.push(format!("max_request_body to {n} bytes"));
        }
        if let Some(n) = self.max_requests {
            raises.push(format!("max_requests above {n}"));
        }
        if let Some(r) = self.rate {
            raises.push(format!("rate above {r}"));
        }
        let whose = match source {
            Some(s) => format!("authority {name} ({s})"),
            None => format!("authority {name}"),
        };
        let mut said = false;
        if !adds.is_empty() {
            let list = join_and(&adds);
            if adds.len() == 1 && adds[0].ends_with(" to methods") {
                write!(f, "add {list} of {whose}")?;
            } else {
                write!(f, "add {list} to {whose}")?;
            }
            said = true;
        }
        if !raises.is_empty() {
            if said {
                write!(f, "; raise its {}", join_and(&raises))?;
            } else {
                write!(f, "raise {} of {whose}", join_and(&raises))?;
                said = true;
            }
        }
        if !manifest && !self.allow_ips.is_empty() {
            if said {
                f.write_str("; ")?;
            }
            let flags: Vec<String> = (self.allow_ips.iter())
                .map(|n| format!("--allow-ip {}", n.addr()))
                .collect();
            f.write_str(&flags.join(" "))?;
        }
        Ok(())
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl HandleTable {
    /// The smallest change to the grants that would have allowed `req`, which this table
    /// denied with `denial`; `None` where nothing may (see the module docs). Only a table of
    /// root grants (the policy's) has grants a manifest could change: in a nested sandbox's
    /// table only the address rules can be hinted at.
    pub(crate) fn fix(&self, denial: &Denial, req: &Request) -> Option<Fix> {
        match &denial.authority {
            None if denial.reason == Reason::NoAuthority => {
                let network = self.network()?;
                let url = req.url();
                let origin = OriginPattern {
                    scheme: url.scheme(),
                    host: HostPattern::Exact(url.host().clone()),
                    port: url.port(),
                };
                let mut fix = Fix::new(FixTarget::New(origin));
                fix.path = Some(PathPrefix::parse(url.path()).ok()?);
                fix.method = Some(req.method().clone());
                if let Some(ip) = url.host().ip() {
                    fix.allow_ips = network.exceptions_needed(ip, &[])?;
                }
                if !req.headers().is_empty() || url.query().is_some() {
                    let grant = fix.new_grant("new")?;
                    if super::overrides::refused_override(&grant, url, req.headers()).is_some() {
                        return None;
                    }
                }
                Some(fix)
            }
            None => None,
            Some(reference) => {
                let same = |a: &&Authority| a.reference().lineage == reference.lineage;
                let handle = match self.get(&reference.name).filter(same) {
                    Some(a) => a,
                    None => self.iter().map(|(a, _)| a).find(same)?,
                };
                handle.fix(denial, req)
            }
        }
    }
}

impl Authority {
    /// The smallest change to this handle's root grant that would have allowed `req`, which
    /// this handle denied with `denial`; `None` where nothing may (see the module docs).
    pub(crate) fn fix(&self, denial: &Denial, req: &Request) -> Option<Fix> {
        let root = self.parent().is_none();
        if !root && denial.reason != Reason::IpDenied {
            return None;
        }
        let grant = self.grant();
        let url = req.url();
        if !grant.origin.matches(url.scheme(), url.host(), url.port()) {
            return None;
        }
        let mut fix = Fix::new(FixTarget::Authority {
            name: self.reference().name.clone(),
            source: grant.source.clone(),
        });
        if let Some(ip) = url.host().ip() {
            fix.allow_ips = self.network().exceptions_needed(ip, &grant.allow_ips)?;
        }
        if !grant.grants_path(url.path()) {
            fix.path = Some(PathPrefix::parse(url.path()).ok()?);
        }
        if !grant.methods.contains(req.method()) {
            fix.method = Some(req.method().clone());
        }
        if !root && (fix.path.is_some() || fix.method.is_some()) {
            return None;
        }
        if req.headers().iter().any(|(name, _)| grant.injects(name)) {
            return None;
        }
        // Overrides are judged against the grant as the fix would leave it (copied only when
        // there is something to judge and the fix changes what they are judged against).
        if !req.headers().is_empty() || url.query().is_some() {
            let refused = if fix.path.is_some() || fix.method.is_some() {
                super::overrides::refused_override(&fix.widen(grant), url, req.headers())
            } else {
                super::overrides::refused_override(grant, url, req.headers())
            };
            if refused.is_some() {
                return None;
            }
        }
        if let (Some(len), Some(max)) = (req.body_len(), grant.limits.max_request_body) {
            if len > max {
                if !root {
                    return None;
                }
                fix.max_request_body = Some(len);
            }
        }
        match self.check_state() {
            Ok(()) => {}
            Err(Refusal::Budget(a, max)) if a.parent().is_none() => fix.max_requests = Some(max),
            Err(Refusal::Rate(a, rate)) if a.parent().is_none() => fix.rate = Some(rate),
            Err(_) => return None,
        }
        (!fix.is_empty()).then_some(fix)
    }
}

impl Authority {
    /// The exceptions that would let this handle reach `ip` (denied by the IP rules), as a
    /// fix on its root grant; `None` if none may (`deny_ips`).
    pub(super) fn ip_fix(&self, ip: std::net::IpAddr) -> Option<Fix> {
        let grant = self.grant();
        let nets = self.network().exceptions_needed(ip, &grant.allow_ips)?;
        let mut fix = Fix::new(FixTarget::Authority {
            name: self.reference().name.clone(),
            source: grant.source.clone(),
        });
        fix.allow_ips = nets;
        (!fix.is_empty()).then_some(fix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(name: &str, source: Option<GrantSource>) -> FixTarget {
        FixTarget::Authority {
            name: name.into(),
            source,
        }
    }

    /// (what was done to the handle, request, expected hint): only what the manifest could
    /// change gets one; what a guest narrowed for itself, or revoked, never does.
    #[test]
    fn only_the_roots_grant_is_hinted_at() {
        use crate::policy::{Attenuation, IpRules, Policy, SystemClock};
        let (origin, paths) =
            super::super::grant_from_spec_url("http://10.0.0.1:8080/v1/").unwrap();
        let mut grant = Grant::new("api", origin);
        grant.paths = paths;
        grant.limits.max_requests = Some(1);
        let policy = Policy::new(
            vec![grant],
            IpRules::default(),
            Arc::new(SystemClock::new()),
        )
        .unwrap();
        let root = policy.get("api").unwrap().clone();
        let child = root
            .derive(&Attenuation {
                paths: Some(vec![PathPrefix::parse("/v1/public/").unwrap()]),
                ..Attenuation::default()
            })
            .unwrap();
        let hint = |a: &Authority, url: &str| {
            let req = Request::new("GET", url).unwrap();
            let denial = a.check(&req).into_result().unwrap_err();
            a.fix(&denial, &req).map(|f| f.to_string())
        };
        let url = "http://10.0.0.1:8080/v1/private";
        assert_eq!(hint(&root, url).as_deref(), Some("--allow-ip 10.0.0.1"));
        // The child's path is its own narrowing; its address is the root's to allow.
        assert_eq!(hint(&child, url).as_deref(), None);
        assert_eq!(
            hint(&child, "http://10.0.0.1:8080/v1/public/x").as_deref(),
            Some("--allow-ip 10.0.0.1")
        );
        root.revoke();
        assert_eq!(hint(&root, "http://10.0.0.1:8080/v2/").as_deref(), None);
    }

    #[test]
    fn fixes_read_as_one_line_saying_what_and_where() {
        let manifest = Some(GrantSource::Manifest {
            file: "policy/app.toml".into(),
            line: 12,
        });
        let mut fix = Fix::new(authority("gh", manifest.clone()));
        fix.method = Some(Method::parse("POST").unwrap());
        assert_eq!(
            fix.to_string(),
            "add POST to methods of authority gh (policy/app.toml:12)"
        );
        fix.path = Some(PathPrefix::parse("/v2/x").unwrap());
        assert_eq!(
            fix.to_string(),
            "add path prefix /v2/x and method POST to authority gh (policy/app.toml:12)"
        );
        let mut fix = Fix::new(authority("api", manifest));
        fix.allow_ips = vec!["10.1.2.3/32".parse().unwrap()];
        assert_eq!(
            fix.to_string(),
            "add allow_ips = [\"10.1.2.3/32\"] to authority api (policy/app.toml:12)"
        );
        let mut fix = Fix::new(authority("api", None));
        fix.allow_ips = vec!["10.1.2.3/32".parse().unwrap()];
        assert_eq!(fix.to_string(), "--allow-ip 10.1.2.3");
        fix.method = Some(Method::parse("PUT").unwrap());
        assert_eq!(
            fix.to_string(),
            "add PUT to methods of authority api; --allow-ip 10.1.2.3"
        );
        let flag = Some(GrantSource::Flag("api=GET https://a.example/v1/".into()));
        let mut fix = Fix::new(authority("api", flag));
        fix.path = Some(PathPrefix::parse("/v2/").unwrap());
        fix.max_requests = Some(100);
        assert_eq!(
            fix.to_string(),
            "add path prefix /v2/ to authority api (--allow 'api=GET https://a.example/v1/'); raise its max_requests above 100"
        );
        let (origin, _) = super::super::grant_from_spec_url("https://api.other.com").unwrap();
        let mut fix = Fix::new(FixTarget::New(origin));
        fix.method = Some(Method::parse("GET").unwrap());
        fix.path = Some(PathPrefix::parse("/v2/x").unwrap());
        assert_eq!(fix.to_string(), "--allow 'GET https://api.other.com/v2/x'");
    }
}
