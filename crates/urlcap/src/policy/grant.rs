//! Grants: what one preopened authority allows. Data only; [`super::Authority`] judges.

use super::method::MethodSet;
use super::origin::{parse_port, HostPattern, OriginPattern, Scheme};
use super::path::PathPrefix;
use crate::secret::Secret;
use ipnet::IpNet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A request rate: at most `count` requests per `per`, with bursts of up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period, and the largest burst (a full bucket).
    pub count: u32,
    /// The period the bucket refills over.
    pub per: Duration,
}

impl Rate {
    /// Parse `N/UNIT` where UNIT is a duration (`s`, `min`, `100ms`, `2h`).
    pub fn parse(raw: &str) -> Result<Rate, String> {
        let (count, per) = raw
            .split_once('/')
            .ok_or_else(|| format!("rate {raw:?} is not of the form N/UNIT, e.g. \"10/s\""))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("rate count {count:?} is not a whole number"))?;
        let per = per.trim();
        let per_text = if per.starts_with(|c: char| c.is_ascii_digit()) {
            per.to_string()
        } else {
            format!("1{per}")
        };
        let per =
            humantime::parse_duration(&per_text).map_err(|e| format!("rate unit {per:?}: {e}"))?;
        if per > std::time::Duration::from_secs(365 * 24 * 60 * 60) {
            return Err(format!(
                "rate {raw:?} is out of range; its period is at most 365 days"
            ));
        }
        if count == 0 || per.is_zero() {
            return Err(format!(
                "rate {raw:?} allows nothing; remove the grant instead"
            ));
        }
        Ok(Rate { count, per })
    }

    /// Is this rate at most `other`, in both sustained rate and burst size?
    pub(crate) fn within(&self, other: &Rate) -> bool {
        let mine = u128::from(self.count) * other.per.as_nanos();
        let theirs = u128::from(other.count) * self.per.as_nanos();
        mine <= theirs && self.count <= other.count
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

/// The quantitative limits of a grant. `None` means "no limit of this kind".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Lifetime request budget, shared with every handle derived from this one.
    pub max_requests: Option<u64>,
    /// Requests per period (token bucket), counted along the chain like the budget.
    pub rate: Option<Rate>,
    /// Total time for one request, connect to last body byte.
    pub timeout: Option<Duration>,
    /// Largest request body, in bytes: a declared length past it is denied before anything is
    /// sent, and a streamed body is cut when it passes it.
    pub max_request_body: Option<u64>,
    /// Largest response body, in bytes: a declared length past it is refused before the body,
    /// and a streamed body is cut when it passes it.
    pub max_response_body: Option<u64>,
    /// Requests through this grant (and everything derived from it) in flight at once.
    pub max_concurrent_requests: Option<u32>,
}

impl Limits {
    /// Does this grant keep state per request (budget or rate)?
    pub(crate) fn is_stateful(&self) -> bool {
        self.max_requests.is_some() || self.rate.is_some()
    }

    /// The limits that are set, each as `key value` with the manifest's key, in manifest
    /// order (for the grant's `Display`).
    fn shown(&self) -> Vec<String> {
        let size = |n: u64| bytesize::ByteSize(n).display().iec().to_string();
        let mut out = Vec::new();
        if let Some(v) = self.max_requests {
            out.push(format!("max_requests {v}"));
        }
        if let Some(v) = self.rate {
            out.push(format!("rate {v}"));
        }
        if let Some(v) = self.timeout {
            out.push(format!("timeout {}", humantime::format_duration(v)));
        }
        if let Some(v) = self.max_request_body {
            out.push(format!("max_request_body {}", size(v)));
        }
        if let Some(v) = self.max_response_body {
            out.push(format!("max_response_body {}", size(v)));
        }
        if let Some(v) = self.max_concurrent_requests {
            out.push(format!("max_concurrent_requests {v}"));
        }
        out
    }
}

/// A header the host adds to every request through this grant. The guest never sees the value
/// and may not set the header itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedHeader {
    /// Lowercase header name.
    pub name: String,
    /// The value, which only egress reads (it prints as `[redacted]` everywhere else).
    pub value: Secret,
}

/// Extra TLS trust anchors for one grant (manifest `ca_file`), as DER certificates, for
/// private PKI and tests. The policy never looks inside; egress trusts them for this grant only.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// Where the certificates came from (shown in `check` and errors).
    pub source: String,
    /// The certificates, DER, shared by every handle derived from the grant.
    pub certs: Arc<Vec<Vec<u8>>>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaBundle({}, {} certificates)",
            self.source,
            self.certs.len()
        )
    }
}

/// Where a grant was written: hints name the place to change ([`super::Fix`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantSource {
    /// An `[[authority]]` table of a manifest, starting at this line.
    Manifest {
        /// The manifest's path as given.
        file: Arc<str>,
        /// The 1-based line of the table's `[[authority]]` header.
        line: usize,
    },
    /// An `--allow` flag with this SPEC.
    Flag(Arc<str>),
}

impl fmt::Display for GrantSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantSource::Manifest { file, line } => write!(f, "{file}:{line}"),
            GrantSource::Flag(spec) => write!(f, "--allow '{spec}'"),
        }
    }
}

/// Everything one preopened authority allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The preopen name the guest sees; unique in a policy.
    pub name: String,
    /// Scheme, host (or `*.suffix`) and port: what a request's origin must match exactly.
    pub origin: OriginPattern,
    /// Whole-segment path prefixes; never empty.
    pub paths: Vec<PathPrefix>,
    /// Methods, matched exactly (case-sensitive).
    pub methods: MethodSet,
    /// Budget, rate, timeouts, body sizes and concurrency.
    pub limits: Limits,
    /// Exceptions to the special-purpose IP deny set, for this grant only.
    pub allow_ips: Vec<IpNet>,
    /// Headers the host adds to every request; the guest may not set them itself.
    pub headers: Vec<InjectedHeader>,
    /// Trust anchors added to the default roots (webpki and system) for this grant.
    pub ca: Option<CaBundle>,
    /// Where it was written (`None`: made in code).
    pub source: Option<GrantSource>,
}

impl Grant {
    /// A grant for every path of `origin` with the default methods and no limits.
    pub fn new(name: impl Into<String>, origin: OriginPattern) -> Grant {
        Grant {
            name: name.into(),
            origin,
            paths: vec![PathPrefix::root()],
            methods: MethodSet::default_set(),
            limits: Limits::default(),
            allow_ips: Vec::new(),
            headers: Vec::new(),
            ca: None,
            source: None,
        }
    }

    /// About how many bytes a copy of this grant occupies (its fixed part and the text and
    /// lists it owns), for charging a derived handle to its holder's quota.
    pub(crate) fn heap_estimate(&self) -> usize {
        std::mem::size_of::<Grant>()
            + self.name.len()
            + self
                .paths
                .iter()
                .map(|p| std::mem::size_of::<PathPrefix>() + p.as_str().len())
                .sum::<usize>()
            + self
                .methods
                .iter()
                .map(|m| 24 + m.as_str().len())
                .sum::<usize>()
            + self.allow_ips.len() * std::mem::size_of::<IpNet>()
            + self
                .headers
                .iter()
                .map(|h| 48 + h.name.len() + h.value.expose().len())
                .sum::<usize>()
            + self.ca.as_ref().map_or(0, |c| c.source.len())
    }

    pub(crate) fn grants_path(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p.grants(path))
    }

    /// Is `name` (lowercase) a header this grant injects?
    pub(crate) fn injects(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.name == name)
    }
}

/// One rendering of a grant, for everyone who shows one: `urlcap check`, the guest-visible
/// `describe`, and `urlcap explain`. Written once so the three cannot drift apart.
///
/// - `{}`: one line of what a request may be — `ORIGIN paths P... methods M,...` and the
///   limits the grant sets (`max_requests 2 rate 10/s ...`). This is what a guest is told
///   (through [`super::Authority`]'s `Display`) and what `explain` shows.
/// - `{:#}`: the same, one field per line, plus what the host holds and a guest is never told:
///   its IP exceptions, its extra CA, and the headers it injects (values `[redacted]`); and it
///   says so when the grant sets no limits of its own. This is what `check` prints.
impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let block = f.alternate();
        let limits = self.limits.shown();
        if block {
            writeln!(f, "  origin   {}", self.origin)?;
            write!(f, "  paths   ")?;
        } else {
            write!(f, "{} paths", self.origin)?;
        }
        for p in &self.paths {
            write!(f, " {p}")?;
        }
        if !block {
            write!(f, " methods {}", self.methods)?;
            for limit in &limits {
                write!(f, " {limit}")?;
            }
            return Ok(());
        }
        writeln!(f)?;
        writeln!(f, "  methods  {}", self.methods)?;
        if limits.is_empty() {
            writeln!(
                f,
                "  limits   none of its own (the sandbox's and egress defaults apply)"
            )?;
        } else {
            writeln!(f, "  limits   {}", limits.join(", "))?;
        }
        if !self.allow_ips.is_empty() {
            write!(f, "  allow_ips")?;
            for net in &self.allow_ips {
                write!(f, " {net}")?;
            }
            writeln!(f)?;
        }
        if let Some(ca) = &self.ca {
            writeln!(
                f,
                "  ca_file  {} ({} certificates)",
                ca.source,
                ca.certs.len()
            )?;
        }
        for h in &self.headers {
            writeln!(
                f,
                "  header   {}: {} (injected by the host)",
                h.name, h.value
            )?;
        }
        Ok(())
    }
}

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
    let (host_text, port_text) = super::origin::split_authority(authority).map_err(|(_, d)| d)?;
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

/// Check a preopen name: 1-64 of `A-Z a-z 0-9 _ . -`, so it reads well in lineages (`gh/2/5`).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("name {name:?} must be 1 to 64 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c)))
    {
        return Err(format!(
            "name {name:?} contains {c:?}; use letters, digits, '_', '.' or '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            Rate::parse("10/s").unwrap(),
            Rate {
                count: 10,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(Rate::parse("5/min").unwrap().per, Duration::from_secs(60));
        assert_eq!(
            Rate::parse("1/100ms").unwrap().per,
            Duration::from_millis(100)
        );
        for bad in ["10", "x/s", "10/parsec", "0/s", "-1/s", "10/0s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_within_compares_rate_and_burst() {
        let r = |s| Rate::parse(s).unwrap();
        assert!(r("5/s").within(&r("10/s")));
        assert!(!r("60/min").within(&r("1/s")), "same rate, larger burst");
        assert!(r("1/s").within(&r("60/min")));
        assert!(!r("100/10s").within(&r("10/s")));
        assert!(!r("11/s").within(&r("10/s")));
    }

    /// The one rendering: a line for guests and `explain`, a block with the host-held parts
    /// for `check`; neither ever shows an injected value.
    #[test]
    fn a_grant_renders_as_a_line_and_as_a_block() {
        let (origin, paths) = grant_from_spec_url("https://api.example.com/v1/").unwrap();
        let mut g = Grant::new("api", origin);
        g.paths = paths;
        g.paths.push(PathPrefix::parse("/v2/").unwrap());
        g.methods =
            MethodSet::new(["GET", "HEAD"].map(|m| crate::policy::Method::parse(m).unwrap()));
        g.limits.max_requests = Some(2);
        g.limits.max_response_body = Some(1 << 20);
        g.allow_ips = vec!["10.0.0.0/8".parse().unwrap()];
        g.headers = vec![InjectedHeader {
            name: "authorization".into(),
            value: Secret::new("hunter2"),
        }];
        assert_eq!(
            g.to_string(),
            "https://api.example.com paths /v1/ /v2/ methods GET,HEAD max_requests 2 max_response_body 1.0 MiB"
        );
        assert_eq!(
            format!("{g:#}"),
            "  origin   https://api.example.com\n  paths    /v1/ /v2/\n  methods  GET,HEAD\n  limits   max_requests 2, max_response_body 1.0 MiB\n  allow_ips 10.0.0.0/8\n  header   authorization: [redacted] (injected by the host)\n"
        );
        g.limits = Limits::default();
        assert!(format!("{g:#}").contains("  limits   none of its own"));
        assert!(!g.to_string().contains("limits"));
    }

    #[test]
    fn names() {
        assert!(check_name("github").is_ok());
        assert!(check_name("a/b").is_err());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }
}
