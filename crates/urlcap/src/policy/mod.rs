//! The policy engine: pure decisions about URL capabilities.
//!
//! Nothing here does I/O: no sockets, files, environment or system clock (time comes through an
//! injected [`Clock`]). That keeps the heart of urlcap easy to read, test, fuzz and prove.
//!
//! ```
//! use std::sync::Arc;
//! use urlcap::policy::{Decision, Grant, IpRules, Policy, Reason, Request, SystemClock};
//! use urlcap::policy::grant_from_spec_url;
//!
//! let (origin, paths) = grant_from_spec_url("https://api.example.com/v1/").unwrap();
//! let mut grant = Grant::new("api", origin);
//! grant.paths = paths;
//! let policy = Policy::new(vec![grant], IpRules::default(), Arc::new(SystemClock::new())).unwrap();
//!
//! let ok = Request::new("GET", "https://api.example.com/v1/users").unwrap();
//! assert!(policy.check(&ok).is_allow());
//! let other = Request::new("GET", "https://api.example.com/v10").unwrap();
//! assert_eq!(policy.check(&other).reason(), Some(Reason::PathNotAllowed));
//! ```

mod approved;
mod authority;
mod clock;
mod decision;
mod fix;
mod grant;
mod handles;
pub mod ip;
mod learn;
mod method;
mod origin;
pub mod overrides;
mod path;
mod reason;
mod request;
mod roots;

pub use approved::Approved;
pub use authority::{
    Attenuation, Authority, HandleQuota, MAX_ATTENUATION_METHODS, MAX_ATTENUATION_PATHS,
    MAX_DERIVATION_DEPTH, MAX_PATH_PREFIX_LEN,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use decision::{AuthorityRef, Cause, Decision, Denial};
pub use fix::{Fix, FixTarget};
pub use grant::{check_name, CaBundle, Grant, GrantSource, InjectedHeader, Limits, Rate};
pub use handles::HandleTable;
pub use ip::{IpRules, VettedAddr};
pub use learn::{learnable, Learning};
pub use method::{is_token, Method, MethodSet, DEFAULT_METHODS};
pub use origin::{parse_port, Host, HostPattern, OriginPattern, Scheme};
pub use path::{check_canonical_path, PathError, PathPrefix};
pub use reason::Reason;
pub use request::{is_forbidden_header, CanonicalUrl, Request, MAX_URL_LEN};
pub use roots::Policy;

/// Parse a grant URL (`scheme://host[:port][/path/prefix]`, host may be `*.suffix`) into its
/// origin pattern and path prefixes (`["/"]` when it has no path). No userinfo, query or
/// fragment. This is the grammar of an `--allow` SPEC's URL and of a manifest `origin`.
pub fn grant_from_spec_url(raw: &str) -> Result<(OriginPattern, Vec<PathPrefix>), String> {
    if let Some(c) = raw.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{raw:?} contains {c:?}"));
    }
    let (scheme_text, rest) = raw
        .split_once("://")
        .ok_or_else(|| format!("{raw:?} is not of the form scheme://host[:port][/path]"))?;
    let scheme = Scheme::parse(scheme_text)
        .ok_or_else(|| format!("scheme {scheme_text:?} is not http or https"))?;
    if rest.contains(['?', '#']) {
        return Err(format!("{raw:?}: a grant has no query or fragment"));
    }
    if rest.contains('\\') {
        return Err(format!("{raw:?}: backslashes are not allowed"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(format!("{raw:?} has no host"));
    }
    let (host_text, port_text) = origin::split_authority(authority).map_err(|(_, d)| d)?;
    let host = HostPattern::parse(host_text)?;
    let port = match port_text {
        Some(p) => parse_port(p)?,
        None => scheme.default_port(),
    };
    let paths = if path.is_empty() {
        vec![PathPrefix::root()]
    } else {
        vec![PathPrefix::parse(path).map_err(|e| e.0)?]
    };
    Ok((OriginPattern { scheme, host, port }, paths))
}
