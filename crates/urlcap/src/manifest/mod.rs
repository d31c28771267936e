//! The capability manifest (TOML) and the grant flags, turned into grants and IP rules.
//!
//! Every mistake is an error naming the file, line and column (or the flag) and what is allowed
//! instead; unknown keys suggest the nearest valid one. Nothing is guessed or skipped: a typo
//! in a policy must never silently widen or narrow what a guest may do.

mod error;
mod spec;
mod units;
mod vars;

pub use error::ConfigError;
pub use spec::AllowSpec;
pub(crate) use spec::SPEC_HELP;
pub use vars::{FlagVars, VariableSource, VariableUse};

use crate::policy::{
    check_name, grant_from_spec_url, is_forbidden_header, is_token, CaBundle, Clock, Grant,
    GrantSource, InjectedHeader, IpRules, Method, MethodSet, PathPrefix, Policy, Rate,
};
use crate::secret::Secret;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::{Spanned, Value};

/// Limits on the whole sandbox (`[limits]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxLimits {
    /// `memory`: the guest's linear memory, in bytes (each nested sandbox gets its own).
    pub memory: Option<u64>,
    /// `timeout`: wall clock for the whole run.
    pub timeout: Option<Duration>,
    /// `max_concurrent_requests`: requests in flight at once across the whole sandbox tree
    /// (default [`crate::egress::DEFAULT_MAX_IN_FLIGHT`]), so a guest cannot open sockets
    /// without bound.
    pub max_concurrent_requests: Option<u32>,
    /// How many levels of nested sandboxes a guest may create below itself.
    pub max_nesting_depth: Option<u32>,
}

/// Everything the manifest and flags say: the effective policy input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `[limits]`: what the whole sandbox may use.
    pub limits: SandboxLimits,
    /// `[network]` and the IP flags: the rules every address is vetted against.
    pub network: IpRules,
    /// `[[authority]]` tables, then `--allow` flags, in that order: the root handles, and the
    /// order `wasi:http` requests are matched in.
    pub grants: Vec<Grant>,
    /// Every `${NAME}` the manifest used, where, and where its value came from.
    pub variables: Vec<VariableUse>,
    /// The `--var` values given (shown only as part of the grants they resolve).
    pub flag_vars: FlagVars,
    /// The manifest file and its text as read, if there was one (learn mode writes on it).
    pub manifest: Option<(PathBuf, String)>,
    /// `[[route]]` tables, for `urlcap serve`: which handler serves which path prefix, with
    /// which of the authorities. Other commands ignore them.
    pub routes: Vec<Route>,
}

/// One `[[route]]`: requests whose path falls under `prefix` (whole segments, as grants
/// match paths) are served by `component`, which is preopened only `authorities`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The path prefix it serves; no two routes' prefixes overlap.
    pub prefix: crate::policy::PathPrefix,
    /// The `wasi:http/proxy` component, resolved against the manifest's directory; it
    /// existed as a regular file when the manifest was read.
    pub component: PathBuf,
    /// Names of the manifest's authorities its handler is preopened (a subset; default none).
    pub authorities: Vec<String>,
    /// Where the route is written (`file:line`), for start-up output and messages.
    pub source: String,
}

/// Where grants come from: the shared GRANTS flags of `run`, `explain` and `check`.
#[derive(Debug, Clone, Default)]
pub struct GrantSources {
    /// `--manifest FILE`; files it names (secrets, `ca_file`) are relative to its directory.
    pub manifest: Option<PathBuf>,
    /// `--allow SPEC` values, added after the manifest's authorities.
    pub allow: Vec<String>,
    /// `--allow-ip CIDR` values: exceptions to the special-purpose deny set.
    pub allow_ip: Vec<String>,
    /// `--deny-ip CIDR` values: denials that beat every exception.
    pub deny_ip: Vec<String>,
    /// `--allow-private`: do not apply the special-purpose deny set at all.
    pub allow_private: bool,
    /// `NAME=VALUE` for `${NAME}` in the manifest (beats the environment).
    pub vars: Vec<String>,
}

/// Where secret header values are read from. The real one reads the process environment and
/// files; tests pass their own.
pub trait SecretStore {
    /// The environment variable `name`, if set (`env = "NAME"` under `[authority.headers]`).
    fn env(&self, name: &str) -> Option<String>;
    /// The whole file, if it is a regular file of at most `max` bytes.
    fn read_file(&self, path: &Path, max: u64) -> std::io::Result<Vec<u8>>;
}

/// The process environment and file system.
pub struct ProcessSecrets;

impl SecretStore for ProcessSecrets {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
        read_bounded(path, max)
    }
}

/// Largest secret file a manifest may name (`file = ...` under `[authority.headers]`).
pub(crate) const MAX_SECRET_FILE: u64 = 64 << 10;
/// Largest `ca_file`.
pub(crate) const MAX_CA_FILE: u64 = 1 << 20;
/// Largest manifest.
pub(crate) const MAX_MANIFEST: u64 = 16 << 20;

/// Read a file a manifest names, with bounds: only a regular file (not `/dev/zero`, a FIFO or a
/// directory), and at most `max` bytes — checked on the size it claims and on what is read.
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let not_regular = || Error::new(ErrorKind::InvalidInput, "not a regular file");
    // Looked at before it is opened: opening a FIFO blocks until a writer comes, opening a
    // device may act. Opened without blocking in case it was swapped since, and checked again.
    let before = std::fs::metadata(path)?;
    if !before.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.dev() != before.dev() || meta.ino() != before.ino() {
        return Err(not_regular());
    }
    let too_big = || Error::new(ErrorKind::InvalidData, format!("larger than {max} bytes"));
    if meta.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

impl Config {
    /// Read the manifest (if any) and apply the flags on top of it.
    pub fn load(sources: &GrantSources, secrets: &dyn SecretStore) -> Result<Config, ConfigError> {
        let vars = FlagVars::parse(&sources.vars)?;
        let mut config = match &sources.manifest {
            Some(path) => {
                let io = |message: String| ConfigError::Io {
                    file: path.display().to_string(),
                    message,
                };
                let bytes = read_bounded(path, MAX_MANIFEST)
                    .map_err(|e| io(format!("cannot read manifest: {e}")))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| io("cannot read manifest: it is not UTF-8 text".into()))?;
                let mut config = Config::parse_with(&text, path, secrets, &vars)?;
                config.manifest = Some((path.clone(), text));
                config
            }
            None => Config::default(),
        };
        config.flag_vars = vars;
        config.apply_flags(sources)?;
        Ok(config)
    }

    /// Parse manifest text; `path` names it in errors and anchors relative secret files.
    /// Variables come from the environment (`secrets`).
    pub fn parse(
        text: &str,
        path: &Path,
        secrets: &dyn SecretStore,
    ) -> Result<Config, ConfigError> {
        Config::parse_with(text, path, secrets, &FlagVars::default())
    }

    /// [`Config::parse`] with `--var` values, which win over the environment.
    pub fn parse_with(
        text: &str,
        path: &Path,
        secrets: &dyn SecretStore,
        vars: &FlagVars,
    ) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let raw: RawManifest = toml::from_str(text).map_err(|e| toml_error(&file, text, &e))?;
        let ctx = Ctx {
            file: &file,
            text,
            dir: path.parent().unwrap_or(Path::new(".")),
            secrets,
            vars,
            uses: Default::default(),
        };
        let mut config = ctx.build(raw)?;
        config.variables = ctx.uses.into_inner();
        config.flag_vars = vars.clone();
        config.deny_embedded_forms();
        Ok(config)
    }

    /// Add `--allow`, `--allow-ip`, `--deny-ip` and `--allow-private` to this config.
    pub fn apply_flags(&mut self, sources: &GrantSources) -> Result<(), ConfigError> {
        for spec in &sources.allow {
            let parsed = AllowSpec::parse(spec)
                .map_err(|m| ConfigError::flag("--allow", spec, m, Some(SPEC_HELP.into())))?;
            let name = match parsed.name {
                Some(name) => {
                    if self.grants.iter().any(|g| g.name == name) {
                        return Err(ConfigError::flag(
                            "--allow",
                            spec,
                            format!("an authority named {name:?} already exists"),
                            None,
                        ));
                    }
                    name
                }
                None => self.unused_name(&default_name(&parsed.origin)),
            };
            let mut grant = Grant::new(name, parsed.origin);
            grant.source = Some(GrantSource::Flag(spec.as_str().into()));
            grant.paths = parsed.paths;
            if let Some(methods) = parsed.methods {
                grant.methods = methods;
            }
            self.grants.push(grant);
        }
        for cidr in &sources.allow_ip {
            self.network
                .allow
                .push(parse_net(cidr).map_err(|m| ConfigError::flag("--allow-ip", cidr, m, None))?);
        }
        for cidr in &sources.deny_ip {
            self.network
                .deny
                .push(parse_net(cidr).map_err(|m| ConfigError::flag("--deny-ip", cidr, m, None))?);
        }
        self.network.allow_private |= sources.allow_private;
        self.deny_embedded_forms();
        Ok(())
    }

    /// A denial on an IPv4-embedding form covers the IPv4 address itself too.
    fn deny_embedded_forms(&mut self) {
        let embedded: Vec<IpNet> = (self.network.deny.iter())
            .filter_map(|n| crate::policy::ip::embedded_rule(*n))
            .filter(|n| !self.network.deny.contains(n))
            .collect();
        self.network.deny.extend(embedded);
    }

    fn unused_name(&self, base: &str) -> String {
        let taken = |n: &str| self.grants.iter().any(|g| g.name == n);
        if !taken(base) {
            return base.to_string();
        }
        (2..)
            .map(|i| format!("{base}-{i}"))
            .find(|n| !taken(n))
            .expect("some suffix is free")
    }

    /// The root authorities for this config.
    pub fn policy(&self, clock: Arc<dyn Clock>) -> Policy {
        Policy::new(self.grants.clone(), self.network.clone(), clock)
            .expect("Config never holds two grants with one name")
    }

    /// Things that are valid but probably not what the author meant.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.flag_vars.names() {
            if !self.variables.iter().any(|u| u.name == name) {
                out.push(format!(
                    "--var {name}: the manifest uses no ${{{name}}} (variables work in origin and paths)"
                ));
            }
        }
        let grant_allows = self.grants.iter().flat_map(|g| g.allow_ips.iter());
        for net in self.network.allow.iter().chain(grant_allows) {
            if let Some(v4) = crate::policy::ip::embedded_rule(*net) {
                if self.network.judge(v4.network(), &[]).is_err()
                    && !self.network.allow.contains(&v4)
                {
                    out.push(format!(
                        "allow_ips {net}: addresses there embed {v4}, which is still denied; an address embedding IPv4 passes only if both forms do, so also allow {v4} if that is meant"
                    ));
                }
            }
        }
        for grant in &self.grants {
            if let crate::policy::HostPattern::Exact(host) = &grant.origin.host {
                if let Some(ip) = host.ip() {
                    if let Err(d) = self.network.judge(ip, &grant.allow_ips) {
                        out.push(format!(
                            "authority {:?}: every request will be denied: {}",
                            grant.name, d.detail
                        ));
                    }
                }
            }
        }
        out
    }
}

/// A name for an unnamed `--allow`: its host (and port when not the default).
pub(crate) fn default_name(origin: &crate::policy::OriginPattern) -> String {
    let host = origin.host.to_string().replace('*', "any");
    let mut name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_string();
    if origin.port != origin.scheme.default_port() {
        name = format!("{name}-{}", origin.port);
    }
    name.truncate(64);
    if name.is_empty() {
        name = "authority".into();
    }
    name
}

/// A CIDR, or a bare address meaning just that address.
/// An IPv4-mapped or -compatible CIDR is read as the IPv4 CIDR it spells (addresses in those
/// forms are judged as IPv4, so as written it could never match).
pub(crate) fn parse_net(raw: &str) -> Result<IpNet, String> {
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(crate::policy::ip::normalize_rule)
        .map_err(|_| format!("{raw:?} is not an IP address or CIDR such as 10.0.0.0/8 or fd00::/8"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: Option<Spanned<i64>>,
    limits: Option<RawLimits>,
    network: Option<RawNetwork>,
    #[serde(default)]
    authority: Vec<Spanned<RawAuthority>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Spanned<String>,
    component: Spanned<String>,
    authorities: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<Spanned<Value>>,
    timeout: Option<Spanned<Value>>,
    max_concurrent_requests: Option<Spanned<i64>>,
    max_nesting_depth: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    allow_private: Option<bool>,
    #[serde(default)]
    allow_ips: Vec<Spanned<String>>,
    #[serde(default)]
    deny_ips: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthority {
    name: Spanned<String>,
    origin: Spanned<String>,
    paths: Option<Spanned<Vec<Spanned<String>>>>,
    methods: Option<Spanned<Vec<Spanned<String>>>>,
    max_requests: Option<Spanned<i64>>,
    rate: Option<Spanned<String>>,
    timeout: Option<Spanned<Value>>,
    max_request_body: Option<Spanned<Value>>,
    max_response_body: Option<Spanned<Value>>,
    max_concurrent_requests: Option<Spanned<i64>>,
    ca_file: Option<Spanned<String>>,
    #[serde(default)]
    allow_ips: Vec<Spanned<String>>,
    /// Read as plain TOML values, not by serde into a struct: serde's errors quote the value
    /// they reject, and here the value may be a secret. [`RawHeader::from_toml`] words every
    /// error itself, never with the value.
    #[serde(default)]
    headers: BTreeMap<String, Spanned<toml::Value>>,
}

/// Where an injected header's value comes from.
struct RawHeader {
    env: Option<String>,
    file: Option<String>,
    value: Option<String>,
    prefix: String,
}

/// The keys of a header source table.
const HEADER_KEYS: &[&str] = &["env", "file", "value", "prefix"];

impl RawHeader {
    /// A header source from its TOML value; errors say what was expected and never show what
    /// was written (it may be the secret itself).
    fn from_toml(name: &str, raw: &toml::Value) -> Result<RawHeader, (String, Option<String>)> {
        let example = "a table such as { env = \"TOKEN\", prefix = \"Bearer \" }, { file = \"token.txt\" } or { value = \"...\" }";
        let toml::Value::Table(table) = raw else {
            return Err((
                format!(
                    "header {name:?} must be {example}, not {} (its value is not shown)",
                    a_type(raw)
                ),
                Some(
                    "a secret written here directly would sit in the manifest: prefer env or file"
                        .into(),
                ),
            ));
        };
        let mut header = RawHeader {
            env: None,
            file: None,
            value: None,
            prefix: String::new(),
        };
        for (key, value) in table {
            let slot = match key.as_str() {
                "env" => &mut header.env,
                "file" => &mut header.file,
                "value" => &mut header.value,
                "prefix" => {
                    header.prefix = string_of(name, key, value)?;
                    continue;
                }
                other => {
                    let nearest = HEADER_KEYS
                        .iter()
                        .map(|k| (strsim::damerau_levenshtein(other, k), *k))
                        .filter(|(d, _)| *d <= 2)
                        .min()
                        .map_or(String::new(), |(_, k)| format!("did you mean `{k}`? "));
                    return Err((
                        format!("header {name:?}: unknown key `{other}`"),
                        Some(format!(
                            "{nearest}allowed keys here: {}",
                            HEADER_KEYS.join(", ")
                        )),
                    ));
                }
            };
            *slot = Some(string_of(name, key, value)?);
        }
        Ok(header)
    }
}

/// An environment variable's name as shells write them: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// "a string", "an integer"...: a TOML value's type, for messages that must not show it.
fn a_type(value: &toml::Value) -> String {
    let t = value.type_str();
    let article = if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {t}")
}

/// A header source's string field, or an error that does not show the value.
fn string_of(
    name: &str,
    key: &str,
    value: &toml::Value,
) -> Result<String, (String, Option<String>)> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        other => Err((
            format!(
                "header {name:?}: `{key}` must be a string, not {} (its value is not shown)",
                a_type(other)
            ),
            None,
        )),
    }
}

/// A TOML or schema error, with the nearest valid key when a key is unknown.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let offset = e.span().map_or(0, |s| s.start);
    let help = unknown_key_help(&message);
    let message = match message.strip_prefix("unknown field") {
        Some(rest) => format!(
            "unknown key{}",
            rest.split(", expected").next().unwrap_or(rest)
        ),
        None => manifest_words(&message),
    };
    ConfigError::at(file, text, offset, message, help)
}

/// serde's message in the manifest's language: "expected struct RawLimits" (a Rust type name)
/// becomes "expected a table".
fn manifest_words(message: &str) -> String {
    // "invalid type: string \"...\", expected ..." quotes what was written, which may be a
    // secret (a header table written as a string): say only its type.
    let message = &match message
        .strip_prefix("invalid type: ")
        .and_then(|rest| Some((rest.split(' ').next()?, rest.split_once(", expected")?.1)))
    {
        Some((kind, expected)) => {
            let kind = kind.trim_end_matches(',');
            format!("invalid type: {kind} (not shown), expected{expected}")
        }
        None => message.to_string(),
    };
    let mut out = String::with_capacity(message.len());
    let mut rest: &str = message;
    while let Some(at) = rest.find("struct Raw") {
        out.push_str(&rest[..at]);
        out.push_str("a table");
        rest = rest[at..]
            .trim_start_matches("struct Raw")
            .trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    out.push_str(rest);
    let out = out.replace(
        "expected a table",
        "expected a table (`[section]` or `{ key = ... }`)",
    );
    // Rust's integer type names read as what they are to a manifest's author.
    ["i64", "u64", "i32", "u32", "u16", "u8", "usize"]
        .iter()
        .fold(out, |text, ty| {
            text.replace(&format!("expected {ty}"), "expected a whole number")
        })
}

/// From serde's "unknown field `x`, expected one of `a`, `b`", say which valid key is nearest.
fn unknown_key_help(message: &str) -> Option<String> {
    if !message.starts_with("unknown field") {
        return None;
    }
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let (unknown, allowed) = quoted.split_first()?;
    let nearest = allowed
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), *k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .min();
    let list = allowed.join(", ");
    Some(match nearest {
        Some((_, k)) => format!("did you mean `{k}`? allowed keys here: {list}"),
        None => format!("allowed keys here: {list}"),
    })
}

/// What building grants from a parsed manifest needs: where errors point, and secrets.
struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    dir: &'a Path,
    secrets: &'a dyn SecretStore,
    vars: &'a FlagVars,
    /// The variables used so far.
    uses: std::cell::RefCell<Vec<VariableUse>>,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        help: Option<&str>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::at(
            self.file,
            self.text,
            span.start,
            message,
            help.map(str::to_string),
        ))
    }

    fn build(&self, raw: RawManifest) -> Result<Config, ConfigError> {
        match raw.version {
            None => {
                return self.err(
                    0..0,
                    "missing `version = 1` at the top of the manifest",
                    None,
                )
            }
            Some(v) if *v.get_ref() != 1 => {
                return self.err(
                    v.span(),
                    format!("unsupported manifest version {}", v.get_ref()),
                    Some("this urlcap reads version = 1"),
                )
            }
            Some(_) => {}
        }
        let mut config = Config::default();
        if let Some(limits) = raw.limits {
            config.limits = self.limits(limits)?;
        }
        if let Some(network) = raw.network {
            config.network.allow_private = network.allow_private.unwrap_or(false);
            config.network.allow = self.nets(&network.allow_ips)?;
            config.network.deny = self.nets(&network.deny_ips)?;
        }
        for authority in raw.authority {
            let span = authority.span();
            let mut grant = self.grant(authority.into_inner())?;
            grant.source = Some(GrantSource::Manifest {
                file: self.file.into(),
                line: self.text[..span.start.min(self.text.len())]
                    .matches('\n')
                    .count()
                    + 1,
            });
            if config.grants.iter().any(|g| g.name == grant.name) {
                return self.err(
                    span,
                    format!("duplicate authority name {:?}", grant.name),
                    Some("names must be unique"),
                );
            }
            config.grants.push(grant);
        }
        for route in raw.route {
            let span = route.span();
            let route = self.route(route.into_inner(), span.clone(), &config)?;
            if let Some(other) = config
                .routes
                .iter()
                .find(|r| r.prefix.covers(&route.prefix) || route.prefix.covers(&r.prefix))
            {
                return self.err(
                    span,
                    format!(
                        "route prefix {} overlaps the route prefix {} ({})",
                        route.prefix.as_str(),
                        other.prefix.as_str(),
                        other.source
                    ),
                    Some("each request must have exactly one route: make the prefixes disjoint (whole path segments)"),
                );
            }
            config.routes.push(route);
        }
        Ok(config)
    }

    /// A `[[route]]`: a canonical prefix, a component file that exists, and authorities the
    /// manifest declares.
    fn route(
        &self,
        raw: RawRoute,
        span: std::ops::Range<usize>,
        config: &Config,
    ) -> Result<Route, ConfigError> {
        let prefix = match crate::policy::PathPrefix::parse(raw.prefix.get_ref()) {
            Ok(p) => p,
            Err(e) => {
                return self.err(
                    raw.prefix.span(),
                    format!("route prefix: {}", e.0),
                    Some("a canonical path such as \"/api/\" (whole segments)"),
                )
            }
        };
        let component = self.dir.join(raw.component.get_ref());
        if !std::fs::metadata(&component).is_ok_and(|m| m.is_file()) {
            return self.err(
                raw.component.span(),
                format!(
                    "route component {:?} is not a file (looked for {})",
                    raw.component.get_ref(),
                    component.display()
                ),
                Some("paths are relative to the manifest's directory"),
            );
        }
        let mut authorities = Vec::new();
        for name in raw.authorities.map(|a| a.into_inner()).unwrap_or_default() {
            if !config.grants.iter().any(|g| g.name == *name.get_ref()) {
                let known: Vec<&str> = config.grants.iter().map(|g| g.name.as_str()).collect();
                let nearest = known
                    .iter()
                    .map(|k| (strsim::damerau_levenshtein(name.get_ref(), k), *k))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map_or(String::new(), |(_, k)| format!("did you mean `{k}`? "));
                let help = if known.is_empty() {
                    "the manifest declares no [[authority]]".to_string()
                } else {
                    format!("{nearest}authorities here: {}", known.join(", "))
                };
                return self.err(
                    name.span(),
                    format!("route names unknown authority {:?}", name.get_ref()),
                    Some(&help),
                );
            }
            if authorities.contains(name.get_ref()) {
                return self.err(
                    name.span(),
                    format!("route names authority {:?} twice", name.get_ref()),
                    None,
                );
            }
            authorities.push(name.into_inner());
        }
        Ok(Route {
            prefix,
            component,
            authorities,
            source: format!("{}:{}", self.file, self.line_of(span.start)),
        })
    }

    /// The 1-based line of byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn limits(&self, raw: RawLimits) -> Result<SandboxLimits, ConfigError> {
        let max_concurrent_requests = self.concurrency(raw.max_concurrent_requests.as_ref())?;
        let max_nesting_depth = match raw.max_nesting_depth {
            None => None,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if v <= 16 => Some(v),
                _ => {
                    return self.err(
                        n.span(),
                        "max_nesting_depth must be a whole number from 0 to 16",
                        Some("0 forbids nested sandboxes"),
                    )
                }
            },
        };
        Ok(SandboxLimits {
            max_nesting_depth,
            memory: self.opt(raw.memory.as_ref(), units::size)?,
            timeout: self.opt(raw.timeout.as_ref(), units::duration)?,
            max_concurrent_requests,
        })
    }

    fn concurrency(&self, n: Option<&Spanned<i64>>) -> Result<Option<u32>, ConfigError> {
        match n {
            None => Ok(None),
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if v > 0 => Ok(Some(v)),
                _ => self.err(
                    n.span(),
                    "max_concurrent_requests must be a whole number from 1",
                    None,
                ),
            },
        }
    }

    /// Read the PEM certificates of a `ca_file` (relative to the manifest).
    fn ca_bundle(&self, file: &Spanned<String>) -> Result<CaBundle, ConfigError> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let path = self.dir.join(file.get_ref());
        let shown = path.display().to_string();
        let bytes = self.secrets.read_file(&path, MAX_CA_FILE).or_else(|e| {
            self.err(
                file.span(),
                format!("cannot read ca_file {shown}: {e}"),
                None,
            )
        })?;
        let certs: Result<Vec<Vec<u8>>, _> = CertificateDer::pem_slice_iter(&bytes)
            .map(|c| c.map(|c| c.to_vec()))
            .collect();
        match certs {
            Ok(certs) if !certs.is_empty() => Ok(CaBundle {
                source: shown,
                certs: Arc::new(certs),
            }),
            Ok(_) => self.err(
                file.span(),
                format!("ca_file {shown} holds no PEM certificate"),
                Some("expected -----BEGIN CERTIFICATE----- blocks"),
            ),
            Err(e) => self.err(
                file.span(),
                format!("ca_file {shown} is not valid PEM: {e}"),
                None,
            ),
        }
    }

    fn opt<T>(
        &self,
        v: Option<&Spanned<Value>>,
        parse: fn(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match v {
            None => Ok(None),
            Some(v) => parse(v.get_ref())
                .map(Some)
                .or_else(|m| self.err(v.span(), m, None)),
        }
    }

    fn nets(&self, raw: &[Spanned<String>]) -> Result<Vec<IpNet>, ConfigError> {
        raw.iter()
            .map(|s| parse_net(s.get_ref()).or_else(|m| self.err(s.span(), m, None)))
            .collect()
    }

    /// A string value with its `${NAME}`s in place (recorded for `check`), or the error at
    /// the variable that failed.
    fn expand(
        &self,
        value: &Spanned<String>,
        context: vars::Context,
    ) -> Result<vars::Expanded, ConfigError> {
        let raw = value.get_ref();
        // Where the string's text starts in the file: after its opening quote, when it is
        // written without escapes (otherwise errors point at the string).
        let span = value.span();
        let start = match self.text.get(span.start + 1..) {
            Some(t) if t.starts_with(raw.as_str()) => Some(span.start + 1),
            _ => None,
        };
        let at = |offset: usize| start.map_or(span.start, |s| s + offset);
        let expanded = vars::expand(raw, context, self.vars, self.secrets)
            .or_else(|e| self.err(at(e.offset)..at(e.offset), e.message, e.help.as_deref()))?;
        for (name, _, source, offset) in &expanded.uses {
            let (line, column) = error::line_column(self.text, at(*offset));
            self.uses.borrow_mut().push(VariableUse {
                name: name.clone(),
                source: *source,
                at: format!("{}:{line}:{column}", self.file),
            });
        }
        Ok(expanded)
    }

    fn grant(&self, raw: RawAuthority) -> Result<Grant, ConfigError> {
        check_name(raw.name.get_ref()).or_else(|m| self.err(raw.name.span(), m, None))?;
        let origin_text = self.expand(&raw.origin, vars::Context::Origin)?;
        let (origin, paths) = grant_from_spec_url(&origin_text.text)
            .or_else(|m| self.err(raw.origin.span(), origin_text.hide_values(&m), None))?;
        if paths != [PathPrefix::root()] {
            return self.err(
                raw.origin.span(),
                "origin is scheme://host[:port] with no path",
                Some("put path prefixes in `paths = [\"/v1/\"]`"),
            );
        }
        let mut grant = Grant::new(raw.name.get_ref().clone(), origin);
        if let Some(paths) = &raw.paths {
            if paths.get_ref().is_empty() {
                return self.err(
                    paths.span(),
                    "an empty `paths` list would allow nothing",
                    Some("remove the key to allow every path"),
                );
            }
            grant.paths = paths
                .get_ref()
                .iter()
                .map(|p| {
                    let text = self.expand(p, vars::Context::Path)?;
                    PathPrefix::parse(&text.text).or_else(|e| {
                        self.err(
                            p.span(),
                            text.hide_values(&e.0),
                            Some("a path prefix is a canonical path such as \"/v1/\""),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(methods) = &raw.methods {
            if methods.get_ref().is_empty() {
                return self.err(
                    methods.span(),
                    "an empty `methods` list would allow nothing",
                    None,
                );
            }
            let parsed: Vec<Method> = methods
                .get_ref()
                .iter()
                .map(|m| Method::parse(m.get_ref()).or_else(|e| self.err(m.span(), e, None)))
                .collect::<Result<_, _>>()?;
            grant.methods = MethodSet::new(parsed);
        }
        if let Some(n) = &raw.max_requests {
            match u64::try_from(*n.get_ref()) {
                Ok(v) if v > 0 => grant.limits.max_requests = Some(v),
                _ => return self.err(n.span(), "max_requests must be a whole number from 1", None),
            }
        }
        if let Some(rate) = &raw.rate {
            grant.limits.rate =
                Some(Rate::parse(rate.get_ref()).or_else(|m| self.err(rate.span(), m, None))?);
        }
        grant.limits.timeout = self.opt(raw.timeout.as_ref(), units::duration)?;
        grant.limits.max_request_body = self.opt(raw.max_request_body.as_ref(), units::size)?;
        grant.limits.max_response_body = self.opt(raw.max_response_body.as_ref(), units::size)?;
        grant.limits.max_concurrent_requests =
            self.concurrency(raw.max_concurrent_requests.as_ref())?;
        if let Some(file) = &raw.ca_file {
            grant.ca = Some(self.ca_bundle(file)?);
        }
        grant.allow_ips = self.nets(&raw.allow_ips)?;
        for (name, header) in &raw.headers {
            let lower = name.to_ascii_lowercase();
            if !is_token(name) || is_forbidden_header(name) {
                return self.err(header.span(), format!("cannot inject header {name:?}"), Some("header names are HTTP tokens, and Host, hop-by-hop and Proxy-* headers are the host's own"));
            }
            if grant.injects(&lower) {
                return self.err(
                    header.span(),
                    format!("header {name:?} is given twice (names are case-insensitive)"),
                    None,
                );
            }
            let value = self.secret(name, header)?;
            grant.headers.push(InjectedHeader { name: lower, value });
        }
        Ok(grant)
    }

    /// Read an injected header's value from its source. Errors never include the value.
    fn secret(&self, name: &str, header: &Spanned<toml::Value>) -> Result<Secret, ConfigError> {
        let span = header.span();
        let raw = match RawHeader::from_toml(name, header.get_ref()) {
            Ok(raw) => raw,
            Err((message, help)) => return self.err(span, message, help.as_deref()),
        };
        let raw = &raw;
        let mut value = match (&raw.env, &raw.file, &raw.value) {
            (Some(var), None, None) if !is_env_name(var) => {
                return self.err(
                    span,
                    format!("header {name:?}: `env` must name an environment variable (letters, digits and _), not hold the value (not shown)"),
                    Some("e.g. authorization = { env = \"GITHUB_TOKEN\", prefix = \"Bearer \" }"),
                )
            }
            (Some(var), None, None) => match self.secrets.env(var) {
                Some(v) if !v.is_empty() => v.into_bytes(),
                Some(_) => {
                    return self.err(
                        span,
                        format!("environment variable {var} (for header {name:?}) is empty"),
                        None,
                    )
                }
                None => {
                    return self.err(
                        span,
                        format!("environment variable {var} (for header {name:?}) is not set"),
                        Some("export it before running urlcap, or use `file = \"...\"`"),
                    )
                }
            },
            (None, Some(file), None) => {
                let path = self.dir.join(file);
                let mut bytes = self
                    .secrets
                    .read_file(&path, MAX_SECRET_FILE)
                    .or_else(|e| {
                        self.err(
                            span.clone(),
                            format!(
                                "cannot read secret file {} (for header {name:?}): {e}",
                                path.display()
                            ),
                            None,
                        )
                    })?;
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                bytes
            }
            (None, None, Some(v)) => v.clone().into_bytes(),
            _ => {
                return self.err(
                    span,
                    format!("header {name:?} needs exactly one of env, file or value"),
                    Some("e.g. authorization = { env = \"TOKEN\", prefix = \"Bearer \" }"),
                )
            }
        };
        let mut full = raw.prefix.clone().into_bytes();
        full.append(&mut value);
        if full.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return self.err(
                span,
                format!(
                    "the value of header {name:?} contains a control character (CR, LF, NUL...)"
                ),
                None,
            );
        }
        Ok(Secret::new(full))
    }
}
