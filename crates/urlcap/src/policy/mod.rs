//! The policy engine: pure decisions about URL capabilities.
//!
//! Nothing here does I/O: no sockets, files, environment or system clock (time comes through an
//! injected [`Clock`]). That keeps the heart of urlcap easy to read, test, fuzz and prove.
//!
//! The files: `policy` (the [`Policy`]: the root handles and the IP rules), `authority`
//! (handles, derive, revoke, budgets), `handles` (a sandbox's handle table), `request` (the
//! canonical form), `grant` (what a handle allows, and the grant URL grammar), `origin`,
//! `path`, `method`, `ip` (the IP rules and the [`VettedAddr`] they make), `overrides`
//! (headers servers read as the request line), `decision`, `reason`, `approved` (the proof
//! egress requires), `fix` (fix-it hints), `learn` (which denials learn mode may let through),
//! `clock`.
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
// The file is named for the type it holds; the module is private, so no path ever reads
// `policy::policy`.
#[allow(clippy::module_inception)]
mod policy;
mod reason;
mod request;

pub use approved::Approved;
pub use authority::{Attenuation, Authority};
pub(crate) use authority::{
    HandleQuota, MAX_ATTENUATION_METHODS, MAX_ATTENUATION_PATHS, MAX_PATH_PREFIX_LEN,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use decision::{AuthorityRef, Cause, Decision, Denial};
pub use fix::{Fix, FixTarget};
pub(crate) use grant::check_name;
pub use grant::{grant_from_spec_url, CaBundle, Grant, GrantSource, InjectedHeader, Limits, Rate};
pub use handles::HandleTable;
pub use ip::{IpRules, VettedAddr};
pub use learn::{learnable, Learning};
pub(crate) use method::{is_token, DEFAULT_METHODS};
pub use method::{Method, MethodSet};
pub use origin::{Host, HostPattern, OriginPattern, Scheme};
pub use path::{PathError, PathPrefix};
pub use policy::Policy;
pub use reason::Reason;
pub(crate) use request::is_forbidden_header;
pub use request::{CanonicalUrl, Request, MAX_URL_LEN};
