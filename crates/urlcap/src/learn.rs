//! Learn mode: `urlcap run --learn OUT.toml [GRANTS] GUEST.wasm`.
//!
//! For a guest the user trusts for one run. A request no grant allows is let through — unless
//! enforcement would refuse it anyway (see [`crate::policy::learnable`]: not canonical,
//! CONNECT, userinfo, headers only the host may set, limits; and egress still applies the IP
//! rules after DNS) — and audited as `request.learned`. When the guest exits, OUT.toml is
//! written: the given grants as written, plus what the guest was seen to need:
//!
//! - per new origin, an authority granting exactly that origin, the narrowest whole-segment
//!   path prefixes covering the paths seen, and exactly the methods seen;
//! - a root authority the guest used past its paths or methods (a `wasi:http` request that
//!   matched its origin, or a native `fetch` on its handle) gets those paths and methods
//!   added: a native guest reaches only the authorities it is given, by name, so learning
//!   widens them rather than inventing new ones;
//! - each authority gets a comment saying how many requests of the run it covers.
//!
//! Path prefixes: each path seen is its own narrowest prefix (`/v1/users/42`); where more than
//! `MAX_SIBLINGS` prefixes sit side by side in one directory they become that directory
//! (`/v1/users/`), repeatedly, deepest first — up to `/`. Query strings, headers and bodies
//! are never learned, so neither is anything secret the guest sent (an `Authorization` value);
//! injected headers stay as written in the given manifest (`env = "TOKEN"`), never their
//! values. A nested sandbox learns nothing: its parent chose its handles.
//!
//! The policy stays pure: which requests may be learned, and as what, is decided there;
//! this module records and writes.

use crate::audit::with_tail;
use crate::manifest::{default_name, parse_net, Config, ProcessSecrets};
use crate::policy::{
    learnable, Approved, Denial, FixTarget, GrantSource, Learning, Method, OriginPattern,
    PathPrefix, Policy, Reason, Request, SystemClock, DEFAULT_METHODS,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// More sibling path prefixes than this in one directory collapse into the directory.
pub(crate) const MAX_SIBLINGS: usize = 3;
/// Distinct paths kept per learned authority before they are collapsed early (memory stays
/// bounded whatever the guest asks for).
const MAX_PATHS: usize = 4096;
/// Exit status when OUT.toml cannot be written.
pub(crate) const EXIT_CANNOT_WRITE: i32 = 74;

/// One learned request: what it adds, to which authority.
#[derive(Debug, Clone)]
pub struct Lesson {
    /// The authority it is learned into (a new origin's name, or the root widened).
    name: Arc<str>,
    /// For a new origin, the origin.
    new_origin: Option<OriginPattern>,
    /// The request's own origin (a wildcard root's request names one host).
    origin: String,
    path: String,
    method: Method,
    /// The denial enforcement would have given.
    reason: Reason,
    /// Its detail, and the change learned, for the audit record.
    why: String,
    change: String,
}

impl Lesson {
    /// The `request.learned` record's detail.
    pub(crate) fn detail(&self, status: u16) -> String {
        with_tail(
            &format!(
                "learn mode let it through (status {status}) where it would have been denied: {}",
                self.why
            ),
            "; learned: ",
            &self.change,
        )
    }

    pub(crate) fn reason(&self) -> Reason {
        self.reason
    }
}

/// What one authority learned.
#[derive(Default)]
struct Learned {
    new_origin: Option<OriginPattern>,
    paths: BTreeSet<String>,
    methods: BTreeSet<Method>,
    requests: u64,
    /// (origin, path, method) seen, to check the written manifest allows them (bounded).
    samples: BTreeSet<(String, String, Method)>,
}

#[derive(Default)]
struct State {
    /// By authority name, in the order first learned.
    learned: Vec<(Arc<str>, Learned)>,
    /// New origins' names.
    names: BTreeMap<String, Arc<str>>,
    /// Requests allowed by the given grants, by root name.
    used: BTreeMap<String, u64>,
}

/// Records what a learn-mode run lets through. Made by the host for the top-level sandbox
/// only (`crate::outbound::Outbound::learning`).
pub struct Learner {
    /// Set once, by [`Learner::bind`], when the sandbox's policy is made.
    learning: OnceLock<(Learning, BTreeSet<String>)>,
    state: Mutex<State>,
}

impl Default for Learner {
    fn default() -> Learner {
        Learner::new()
    }
}

impl Learner {
    /// A learner for a sandbox not built yet ([`crate::sandbox::Builder::learn`] binds it
    /// to the sandbox's policy).
    pub fn new() -> Learner {
        Learner {
            learning: OnceLock::new(),
            state: Mutex::default(),
        }
    }

    /// Learn against `policy`'s roots (once; a second policy is ignored: a learner records
    /// one run).
    pub(crate) fn bind(&self, policy: &Policy) {
        let given = policy.authorities().map(|a| a.name().to_string()).collect();
        let _ = self.learning.set((policy.learning(), given));
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The name a new origin's authority gets: like an unnamed `--allow`'s, unique.
    fn name_for(&self, origin: &OriginPattern) -> Arc<str> {
        let mut state = self.state();
        let key = origin.to_string();
        if let Some(name) = state.names.get(&key) {
            return name.clone();
        }
        let base = default_name(origin);
        let given = self.learning.get().map(|(_, given)| given);
        let taken = |n: &str, s: &State| {
            given.is_some_and(|g| g.contains(n)) || s.names.values().any(|v| &**v == n)
        };
        let name: Arc<str> = std::iter::once(base.clone())
            .chain((2..).map(|i| format!("{base}-{i}")))
            .find(|n| !taken(n, &state))
            .expect("some suffix is free")
            .into();
        state.names.insert(key, name.clone());
        name
    }

    /// A request the grants denied (its fix filled in): let it through if it may be learned,
    /// with the lesson to record once its response arrives; otherwise the denial stands.
    pub(crate) fn admit(&self, denial: Denial, req: Request) -> Result<(Approved, Lesson), Denial> {
        let Some((learning, _)) = self.learning.get() else {
            return Err(denial);
        };
        let Some(fix) = learnable(&denial, &req) else {
            return Err(denial);
        };
        let (name, new_origin) = match &fix.target {
            FixTarget::New(origin) => (self.name_for(origin), Some(origin.clone())),
            FixTarget::Authority { name, .. } => (name.clone(), None),
        };
        let url = req.url();
        let origin = OriginPattern {
            scheme: url.scheme(),
            host: crate::policy::HostPattern::Exact(url.host().clone()),
            port: url.port(),
        };
        let lesson = Lesson {
            new_origin,
            origin: origin.to_string(),
            path: url.path().to_string(),
            method: req.method().clone(),
            reason: denial.reason,
            why: denial.detail.clone(),
            change: fix.to_string(),
            name: name.clone(),
        };
        let approved = learning.admit(req, denial, &name)?;
        Ok((approved, lesson))
    }

    /// A learned request got its response: it goes into the manifest.
    pub(crate) fn learned(&self, lesson: &Lesson) {
        let mut state = self.state();
        let index = match state.learned.iter().position(|(n, _)| *n == lesson.name) {
            Some(i) => i,
            None => {
                state
                    .learned
                    .push((lesson.name.clone(), Learned::default()));
                state.learned.len() - 1
            }
        };
        let learned = &mut state.learned[index].1;
        learned.new_origin = lesson.new_origin.clone();
        learned.requests += 1;
        learned.methods.insert(lesson.method.clone());
        if learned.paths.insert(lesson.path.clone()) && learned.paths.len() > MAX_PATHS {
            learned.paths = narrowest_prefixes(&learned.paths).into_iter().collect();
        }
        if learned.samples.len() < MAX_PATHS {
            learned.samples.insert((
                lesson.origin.clone(),
                lesson.path.clone(),
                lesson.method.clone(),
            ));
        }
    }

    /// A request a given grant allowed (counted for the comments).
    pub(crate) fn used(&self, name: &str) {
        *self.state().used.entry(name.to_string()).or_default() += 1;
    }

    /// Requests learned so far, and how many new origins they reached.
    pub(crate) fn counts(&self) -> (u64, usize) {
        let state = self.state();
        let requests = state.learned.iter().map(|(_, l)| l.requests).sum();
        let origins = state
            .learned
            .iter()
            .filter(|(_, l)| l.new_origin.is_some())
            .count();
        (requests, origins)
    }

    /// The manifest to write: the given manifest's text (or a new one) with the flags' grants
    /// and IP rules, the widened authorities and the new ones.
    pub fn manifest(&self, config: &Config) -> Result<String, String> {
        let state = self.state();
        let mut doc: toml_edit::DocumentMut = match &config.manifest {
            Some((_, text)) => text
                .parse()
                .map_err(|e| format!("cannot edit the manifest: {e}"))?,
            None => toml_edit::DocumentMut::new(),
        };
        if config.manifest.is_none() {
            doc.insert("version", toml_edit::value(1));
        }
        merge_network(&mut doc, config)?;
        // Flag grants become authorities; every given authority gets its comment.
        for grant in &config.grants {
            if let Some(GrantSource::Flag(spec)) = &grant.source {
                let mut table = toml_edit::Table::new();
                table.insert("name", toml_edit::value(grant.name.as_str()));
                table.insert("origin", toml_edit::value(grant.origin.to_string()));
                table.insert(
                    "paths",
                    toml_edit::value(string_array(grant.paths.iter().map(|p| p.as_str()))),
                );
                table.insert(
                    "methods",
                    toml_edit::value(string_array(grant.methods.iter().map(|m| m.as_str()))),
                );
                table
                    .decor_mut()
                    .set_prefix(format!("\n# from --allow '{spec}'\n"));
                authorities(&mut doc)?.push(table);
            }
        }
        let learned_by_name: BTreeMap<&str, &Learned> =
            state.learned.iter().map(|(n, l)| (&**n, l)).collect();
        for grant in &config.grants {
            let used = state.used.get(&grant.name).copied().unwrap_or(0);
            let learned = learned_by_name.get(grant.name.as_str()).copied();
            let Some(table) = find_authority(&mut doc, &grant.name)? else {
                continue;
            };
            let mut comment = match (used, learned) {
                (0, None) => "# urlcap run --learn: no request of the run went through this authority; remove it if the guest never needs it".to_string(),
                (n, None) => format!("# urlcap run --learn: covers {} of the run", requests(n)),
                (n, Some(l)) => format!(
                    "# urlcap run --learn: covers {} of the run ({} of them learned: widened below)",
                    requests(n + l.requests),
                    l.requests
                ),
            };
            if let Some(l) = learned {
                let existing: Vec<PathPrefix> = grant.paths.clone();
                let added: Vec<String> = narrowest_prefixes(&l.paths)
                    .into_iter()
                    .filter(|p| !existing.iter().any(|e| e.grants(p)))
                    .collect();
                if !added.is_empty() {
                    match table.get_mut("paths").and_then(|i| i.as_array_mut()) {
                        Some(paths) => added.iter().for_each(|p| paths.push(p.as_str())),
                        None => {
                            table.insert(
                                "paths",
                                toml_edit::value(string_array(added.iter().map(String::as_str))),
                            );
                        }
                    }
                    comment += &format!("\n# learned paths: {}", added.join(" "));
                }
                let new_methods: Vec<&Method> = l
                    .methods
                    .iter()
                    .filter(|m| !grant.methods.contains(m))
                    .collect();
                if !new_methods.is_empty() {
                    match table.get_mut("methods").and_then(|i| i.as_array_mut()) {
                        Some(methods) => new_methods.iter().for_each(|m| methods.push(m.as_str())),
                        None => {
                            let all = DEFAULT_METHODS
                                .iter()
                                .copied()
                                .chain(new_methods.iter().map(|m| m.as_str()));
                            table.insert("methods", toml_edit::value(string_array(all)));
                        }
                    }
                    let shown: Vec<&str> = new_methods.iter().map(|m| m.as_str()).collect();
                    comment += &format!("\n# learned methods: {}", shown.join(" "));
                }
            }
            add_comment(table, &comment);
        }
        for (name, l) in &state.learned {
            let Some(origin) = &l.new_origin else {
                continue;
            };
            let paths = narrowest_prefixes(&l.paths);
            let mut table = toml_edit::Table::new();
            table.insert("name", toml_edit::value(&**name));
            table.insert("origin", toml_edit::value(origin.to_string()));
            table.insert(
                "paths",
                toml_edit::value(string_array(paths.iter().map(String::as_str))),
            );
            table.insert(
                "methods",
                toml_edit::value(string_array(l.methods.iter().map(|m| m.as_str()))),
            );
            table.decor_mut().set_prefix(format!(
                "\n# urlcap run --learn: learned from {} no grant allowed\n",
                requests(l.requests)
            ));
            authorities(&mut doc)?.push(table);
        }
        let header = "# Written by `urlcap run --learn`: the grants given to the run, plus what the guest was\n\
                      # seen to use (it had unrestricted egress while learning). Review it with\n\
                      # `urlcap check --manifest FILE` before running the guest under it.\n\n";
        let body = doc.to_string();
        Ok(format!(
            "{header}{}",
            body.strip_prefix('\n').unwrap_or(&body)
        ))
    }

    /// Does the manifest `text` (as written to `path`) allow every request learned? Returns
    /// what does not hold, for a warning.
    pub(crate) fn verify(&self, text: &str, path: &Path, config: &Config) -> Result<(), String> {
        let reread = Config::parse_with(text, path, &ProcessSecrets, &config.flag_vars)
            .map_err(|e| format!("it does not load as written: {e}"))?;
        let policy = reread.policy(Arc::new(SystemClock::new()));
        let state = self.state();
        for (_, learned) in &state.learned {
            for (origin, path, method) in &learned.samples {
                let req = Request::new(method.as_str(), &format!("{origin}{path}"))
                    .map_err(|d| format!("{method} {origin}{path}: {d}"))?;
                if let Some(reason) = policy.check(&req).reason() {
                    return Err(format!(
                        "it does not allow {method} {origin}{path} ({reason})"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `1 request`, `2 requests`.
fn requests(n: u64) -> String {
    if n == 1 {
        "1 request".into()
    } else {
        format!("{n} requests")
    }
}

/// `["a", "b"]` as a TOML array.
fn string_array<'a>(items: impl IntoIterator<Item = &'a str>) -> toml_edit::Array {
    items.into_iter().collect()
}

/// The document's `[[authority]]` array of tables, created if it has none.
fn authorities(doc: &mut toml_edit::DocumentMut) -> Result<&mut toml_edit::ArrayOfTables, String> {
    let item = doc
        .entry("authority")
        .or_insert(toml_edit::Item::ArrayOfTables(Default::default()));
    item.as_array_of_tables_mut()
        .ok_or_else(|| "the manifest's authorities are not written as [[authority]] tables; learn mode can only add to those".to_string())
}

/// The `[[authority]]` table named `name`.
fn find_authority<'a>(
    doc: &'a mut toml_edit::DocumentMut,
    name: &str,
) -> Result<Option<&'a mut toml_edit::Table>, String> {
    Ok(authorities(doc)?
        .iter_mut()
        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name)))
}

/// Put `comment` (lines starting with `#`) just above the table's header, after whatever the
/// author wrote there.
fn add_comment(table: &mut toml_edit::Table, comment: &str) {
    let before = table
        .decor()
        .prefix()
        .and_then(|p| p.as_str())
        .unwrap_or("\n")
        .to_string();
    let before = if before.is_empty() {
        "\n".to_string()
    } else {
        before
    };
    table.decor_mut().set_prefix(format!("{before}{comment}\n"));
}

/// Add the IP rules in force (the manifest's and the flags') to the document's `[network]`.
fn merge_network(doc: &mut toml_edit::DocumentMut, config: &Config) -> Result<(), String> {
    let rules = &config.network;
    let embedded: Vec<ipnet::IpNet> = (rules.deny.iter())
        .filter_map(|n| crate::policy::ip::embedded_rule(*n))
        .collect();
    let deny: Vec<ipnet::IpNet> = (rules.deny.iter())
        .filter(|n| !embedded.contains(n))
        .copied()
        .collect();
    if !rules.allow_private && rules.allow.is_empty() && deny.is_empty() {
        return Ok(());
    }
    let network = doc
        .entry("network")
        .or_insert(toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_like_mut()
        .ok_or("the manifest's `network` is not a table")?;
    if rules.allow_private {
        network.insert("allow_private", toml_edit::value(true));
    }
    for (key, nets) in [("allow_ips", &rules.allow), ("deny_ips", &deny)] {
        if nets.is_empty() {
            continue;
        }
        let item = network
            .entry(key)
            .or_insert(toml_edit::value(toml_edit::Array::new()));
        let array = item
            .as_array_mut()
            .ok_or_else(|| format!("the manifest's `network.{key}` is not a list"))?;
        let written: Vec<ipnet::IpNet> = (array.iter())
            .filter_map(|v| v.as_str().and_then(|s| parse_net(s).ok()))
            .collect();
        for net in nets.iter().filter(|n| !written.contains(n)) {
            array.push(net.to_string());
        }
    }
    Ok(())
}

/// The narrowest whole-segment prefixes covering `paths`: each path itself, except that more
/// than [`MAX_SIBLINGS`] side by side in one directory become the directory, deepest first;
/// then every prefix another covers is dropped.
pub(crate) fn narrowest_prefixes(paths: &BTreeSet<String>) -> Vec<String> {
    // The directory a path or prefix sits in: "/a/b/c" and "/a/b/c/" are in "/a/b/".
    fn parent(p: &str) -> Option<&str> {
        let trimmed = p.strip_suffix('/').unwrap_or(p);
        trimmed.rfind('/').map(|i| &p[..=i])
    }
    let mut set: BTreeSet<String> = paths.clone();
    loop {
        let mut by_parent: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &set {
            if let Some(dir) = parent(p).filter(|_| p != "/") {
                *by_parent.entry(dir).or_default() += 1;
            }
        }
        let crowded: Vec<&str> = by_parent
            .iter()
            .filter(|(_, n)| **n > MAX_SIBLINGS)
            .map(|(d, _)| *d)
            .collect();
        let Some(depth) = crowded.iter().map(|d| d.matches('/').count()).max() else {
            break;
        };
        let collapse: BTreeSet<String> = crowded
            .into_iter()
            .filter(|d| d.matches('/').count() == depth)
            .map(str::to_string)
            .collect();
        set = set
            .iter()
            .map(|p| match parent(p) {
                Some(dir) if p != "/" && collapse.contains(dir) => dir.to_string(),
                _ => p.clone(),
            })
            .collect();
    }
    let prefixes: Vec<PathPrefix> = set
        .iter()
        .filter_map(|p| PathPrefix::parse(p).ok())
        .collect();
    prefixes
        .iter()
        .filter(|p| !prefixes.iter().any(|q| q != *p && q.covers(p)))
        .map(|p| p.as_str().to_string())
        .collect()
}

/// A learn-mode run, as `urlcap run` drives it: inactive unless `--learn` was given.
pub struct Session {
    /// Where to write, what was given, and what records the run.
    active: Option<(PathBuf, Config, Arc<Learner>)>,
}

impl Session {
    /// Check that OUT can be written (before the guest runs) and is not the manifest itself.
    pub fn open(out: Option<&Path>, config: &Config) -> Result<Session, String> {
        let Some(out) = out else {
            return Ok(Session { active: None });
        };
        if let Some((manifest, _)) = &config.manifest {
            let same = match (manifest.canonicalize(), out.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => manifest == out,
            };
            if same {
                return Err(format!(
                    "--learn {}: that is the manifest given; write the learned one beside it",
                    out.display()
                ));
            }
        }
        let dir = (out.parent())
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(format!(
                "--learn {}: no directory {} to write it in",
                out.display(),
                dir.display()
            ));
        }
        if out.is_dir() {
            return Err(format!("--learn {}: is a directory", out.display()));
        }
        Ok(Session {
            active: Some((out.to_path_buf(), config.clone(), Arc::new(Learner::new()))),
        })
    }

    /// The learner to build the sandbox with ([`crate::sandbox::Builder::learn`]), if this
    /// session learns.
    pub fn learner(&self) -> Option<Arc<Learner>> {
        self.active.as_ref().map(|(_, _, learner)| learner.clone())
    }

    /// Write OUT (atomically: a temporary file beside it, renamed), check it allows what was
    /// learned, and `say` (one line each, for stderr) that the guest had unrestricted egress.
    /// The exit status to use instead of the guest's if OUT could not be written.
    pub fn finish(self, say: &mut dyn FnMut(String)) -> Option<i32> {
        let (out, config, learner) = self.active?;
        let (requests, origins) = learner.counts();
        say(format!(
            "urlcap: WARNING: learn mode: the guest had unrestricted egress ({} let through that no grant allowed, to {origins} new origin{}; IP rules still applied); review {} with `urlcap check --manifest {}` before running under it",
            self::requests(requests),
            if origins == 1 { "" } else { "s" },
            out.display(),
            out.display()
        ));
        let written = learner.manifest(&config).and_then(|text| {
            let tmp = out.with_extension("toml.tmp");
            std::fs::write(&tmp, &text)
                .and_then(|()| std::fs::rename(&tmp, &out))
                .map_err(|e| format!("{}: {e}", out.display()))?;
            Ok(text)
        });
        match written {
            Err(e) => {
                say(format!(
                    "urlcap: error: learn mode could not write its manifest: {e}"
                ));
                Some(EXIT_CANNOT_WRITE)
            }
            Ok(text) => {
                if let Err(problem) = learner.verify(&text, &out, &config) {
                    say(format!(
                        "urlcap: warning: {}: {problem} (relative `file` and `ca_file` paths are read beside it)",
                        out.display()
                    ));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(paths: &[&str]) -> Vec<String> {
        narrowest_prefixes(&paths.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn each_path_is_its_own_prefix_until_siblings_crowd_a_directory() {
        assert_eq!(
            prefixes(&["/v1/users/1", "/v1/items"]),
            ["/v1/items", "/v1/users/1"]
        );
        assert_eq!(
            prefixes(&["/v1/users/1", "/v1/users/2", "/v1/users/3"]),
            ["/v1/users/1", "/v1/users/2", "/v1/users/3"]
        );
        assert_eq!(
            prefixes(&[
                "/v1/users/1",
                "/v1/users/2",
                "/v1/users/3",
                "/v1/users/4",
                "/v1/items"
            ]),
            ["/v1/items", "/v1/users/"]
        );
        // Collapsing cascades: four crowded directories crowd their parent.
        let many: Vec<String> = (0..4)
            .flat_map(|d| (0..4).map(move |f| format!("/a/d{d}/f{f}")))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(prefixes(&many), ["/a/"]);
        // Covered prefixes go; "/v1" covers "/v1/x", never "/v10".
        assert_eq!(prefixes(&["/v1", "/v1/x", "/v10"]), ["/v1", "/v10"]);
        assert_eq!(prefixes(&["/", "/a"]), ["/"]);
        assert_eq!(prefixes(&["/a", "/b", "/c", "/d"]), ["/"]);
    }
}
