//! The `urlcap:http` interfaces as host functions: preopened authorities as resources, and
//! every `fetch` through the sandbox's [`Outbound`] (policy → egress → audit).

use super::SandboxState;
use crate::audit::{Event, Record};
use crate::policy::{
    Attenuation, Authority, Denial, HandleTable, Host, Method, MethodSet, PathPrefix, Rate, Reason,
};
use std::time::Duration;
use wasmtime::component::Resource;

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "urlcap:http/imports",
    imports: { default: async | trappable },
    with: { "urlcap:http/types.authority": super::sandbox::GuestAuthority },
});

use self::urlcap::http::{preopens, sandbox, types as t};

/// Most authority handles one guest may hold at once in its resource table (listing the
/// preopens past it traps; deriving past it is refused with `handle_limit`); also the most
/// derived handles a whole sandbox tree may keep alive, held or not.
pub(crate) const MAX_LIVE_HANDLES: usize = 10_000;
/// Most bytes the grants of a sandbox tree's live derived handles may occupy in the host.
pub(crate) const MAX_LIVE_HANDLE_BYTES: usize = 16 << 20;
/// Entries of a sandbox's resource table that handles leave free for wasi's own resources.
const RESOURCES_KEPT_FOR_WASI: usize = 64;
/// Longest host name, rate or method text a derivation may carry.
const MAX_ATTENUATION_WORD: usize = 255;

/// The policy's reasons are the WIT `reason` enum's cases, one for one: both matches are
/// exhaustive, so a reason added on one side only does not compile, and
/// `tests::the_wit_reason_enum_lists_every_code_in_order` checks the names and their order.
impl From<Reason> for t::Reason {
    fn from(reason: Reason) -> t::Reason {
        use t::Reason as W;
        match reason {
            Reason::MalformedUrl => W::MalformedUrl,
            Reason::ControlCharacter => W::ControlCharacter,
            Reason::Userinfo => W::Userinfo,
            Reason::UnsupportedScheme => W::UnsupportedScheme,
            Reason::InvalidPort => W::InvalidPort,
            Reason::InvalidHost => W::InvalidHost,
            Reason::NonCanonicalPath => W::NonCanonicalPath,
            Reason::InvalidMethod => W::InvalidMethod,
            Reason::InvalidHeader => W::InvalidHeader,
            Reason::HeadersTooLarge => W::HeadersTooLarge,
            Reason::ForbiddenHeader => W::ForbiddenHeader,
            Reason::NoAuthority => W::NoAuthority,
            Reason::PathNotAllowed => W::PathNotAllowed,
            Reason::MethodNotAllowed => W::MethodNotAllowed,
            Reason::RequestBodyTooLarge => W::RequestBodyTooLarge,
            Reason::BudgetExhausted => W::BudgetExhausted,
            Reason::RateLimited => W::RateLimited,
            Reason::Expired => W::Expired,
            Reason::Revoked => W::Revoked,
            Reason::IpDenied => W::IpDenied,
            Reason::DnsFailure => W::DnsFailure,
            Reason::ConnectFailed => W::ConnectFailed,
            Reason::TlsFailure => W::TlsFailure,
            Reason::Timeout => W::Timeout,
            Reason::ResponseBodyTooLarge => W::ResponseBodyTooLarge,
            Reason::UpstreamError => W::UpstreamError,
            Reason::ConcurrencyLimit => W::ConcurrencyLimit,
            Reason::InvalidComponent => W::InvalidComponent,
            Reason::NestingLimit => W::NestingLimit,
            Reason::AttenuationWidens => W::AttenuationWidens,
            Reason::InvalidAttenuation => W::InvalidAttenuation,
            Reason::AuditUnavailable => W::AuditUnavailable,
            Reason::HandleLimit => W::HandleLimit,
        }
    }
}

impl From<t::Reason> for Reason {
    fn from(reason: t::Reason) -> Reason {
        use t::Reason as W;
        match reason {
            W::MalformedUrl => Reason::MalformedUrl,
            W::ControlCharacter => Reason::ControlCharacter,
            W::Userinfo => Reason::Userinfo,
            W::UnsupportedScheme => Reason::UnsupportedScheme,
            W::InvalidPort => Reason::InvalidPort,
            W::InvalidHost => Reason::InvalidHost,
            W::NonCanonicalPath => Reason::NonCanonicalPath,
            W::InvalidMethod => Reason::InvalidMethod,
            W::InvalidHeader => Reason::InvalidHeader,
            W::HeadersTooLarge => Reason::HeadersTooLarge,
            W::ForbiddenHeader => Reason::ForbiddenHeader,
            W::NoAuthority => Reason::NoAuthority,
            W::PathNotAllowed => Reason::PathNotAllowed,
            W::MethodNotAllowed => Reason::MethodNotAllowed,
            W::RequestBodyTooLarge => Reason::RequestBodyTooLarge,
            W::BudgetExhausted => Reason::BudgetExhausted,
            W::RateLimited => Reason::RateLimited,
            W::Expired => Reason::Expired,
            W::Revoked => Reason::Revoked,
            W::IpDenied => Reason::IpDenied,
            W::DnsFailure => Reason::DnsFailure,
            W::ConnectFailed => Reason::ConnectFailed,
            W::TlsFailure => Reason::TlsFailure,
            W::Timeout => Reason::Timeout,
            W::ResponseBodyTooLarge => Reason::ResponseBodyTooLarge,
            W::UpstreamError => Reason::UpstreamError,
            W::ConcurrencyLimit => Reason::ConcurrencyLimit,
            W::InvalidComponent => Reason::InvalidComponent,
            W::NestingLimit => Reason::NestingLimit,
            W::AttenuationWidens => Reason::AttenuationWidens,
            W::InvalidAttenuation => Reason::InvalidAttenuation,
            W::AuditUnavailable => Reason::AuditUnavailable,
            W::HandleLimit => Reason::HandleLimit,
        }
    }
}

fn guest_error(d: Denial) -> t::Error {
    t::Error {
        reason: d.reason.into(),
        detail: d.detail,
    }
}

fn invalid(detail: String) -> t::Error {
    refusal_error(Reason::InvalidAttenuation, detail)
}

fn refusal_error(reason: Reason, detail: String) -> t::Error {
    t::Error {
        reason: reason.into(),
        detail,
    }
}

/// Refuse an oversize derivation before parsing any of it: its cost is then bounded by these
/// caps, not by what the guest sent.
fn check_attenuation_size(a: &t::Attenuation) -> Result<(), t::Error> {
    use crate::policy::{MAX_ATTENUATION_METHODS, MAX_ATTENUATION_PATHS, MAX_PATH_PREFIX_LEN};
    let paths = a.paths.as_deref().unwrap_or_default();
    let methods = a.methods.as_deref().unwrap_or_default();
    if paths.len() > MAX_ATTENUATION_PATHS {
        return Err(invalid(format!(
            "{} path prefixes; a derivation names at most {MAX_ATTENUATION_PATHS}",
            paths.len()
        )));
    }
    if paths.iter().any(|p| p.len() > MAX_PATH_PREFIX_LEN) {
        return Err(invalid(format!(
            "a path prefix is longer than {MAX_PATH_PREFIX_LEN} bytes"
        )));
    }
    if methods.len() > MAX_ATTENUATION_METHODS {
        return Err(invalid(format!(
            "{} methods; a derivation names at most {MAX_ATTENUATION_METHODS}",
            methods.len()
        )));
    }
    let year_ms = 365 * 24 * 60 * 60 * 1000;
    if a.timeout_ms.is_some_and(|t| t > year_ms) || a.expires_in_ms.is_some_and(|t| t > year_ms) {
        return Err(invalid(
            "timeout_ms and expires_in_ms are at most 365 days".into(),
        ));
    }
    let words = methods.iter().chain(&a.host).chain(&a.rate);
    if words.into_iter().any(|w| w.len() > MAX_ATTENUATION_WORD) {
        return Err(invalid(format!(
            "a host, rate or method is longer than {MAX_ATTENUATION_WORD} bytes"
        )));
    }
    Ok(())
}

/// A guest's attenuation, parsed with the same parsers as the manifest.
fn attenuation(a: t::Attenuation) -> Result<Attenuation, t::Error> {
    check_attenuation_size(&a)?;
    let paths = match a.paths {
        None => None,
        Some(ps) => Some(
            ps.iter()
                .map(|p| PathPrefix::parse(p).map_err(|e| invalid(e.0)))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let methods = match a.methods {
        None => None,
        Some(ms) => Some(MethodSet::new(
            ms.iter()
                .map(|m| Method::parse(m).map_err(invalid))
                .collect::<Result<Vec<_>, _>>()?,
        )),
    };
    Ok(Attenuation {
        host: a
            .host
            .map(|h| Host::parse(&h).map_err(invalid))
            .transpose()?,
        paths,
        methods,
        max_requests: a.max_requests,
        rate: a
            .rate
            .map(|r| Rate::parse(&r).map_err(invalid))
            .transpose()?,
        timeout: a.timeout_ms.map(Duration::from_millis),
        max_request_body: a.max_request_body,
        max_response_body: a.max_response_body,
        expires_in: a.expires_in_ms.map(Duration::from_millis),
    })
}

impl SandboxState {
    /// Audit a refusal the guest is about to receive (every denial gets one record).
    fn audit_refusal(&self, event: Event, on: Option<&crate::policy::AuthorityRef>, e: &t::Error) {
        let mut record = Record::new(
            event,
            self.outbound.sandbox(),
            format!("refused: {}", e.detail),
        );
        if let Some(reference) = on {
            record = record.on(reference);
        }
        record.reason = Some(e.reason.into());
        self.outbound.audit().record(&record);
    }

    fn push_handle(
        &mut self,
        authority: Authority,
    ) -> wasmtime::Result<Resource<super::GuestAuthority>> {
        if self.live_handles >= MAX_LIVE_HANDLES {
            wasmtime::bail!("guest holds more than {MAX_LIVE_HANDLES} authority handles");
        }
        let handle = self.table.push(super::GuestAuthority { authority })?;
        self.live_handles += 1;
        Ok(handle)
    }

    fn authority(&self, handle: &Resource<super::GuestAuthority>) -> wasmtime::Result<Authority> {
        Ok(self.table.get(handle)?.authority.clone())
    }
}

impl preopens::Host for SandboxState {
    async fn get_authorities(
        &mut self,
    ) -> wasmtime::Result<Vec<(Resource<super::GuestAuthority>, String)>> {
        let preopens: Vec<(Authority, String)> = (self.outbound.handles().iter())
            .map(|(a, name)| (a.clone(), name.to_string()))
            .collect();
        preopens
            .into_iter()
            .map(|(a, name)| Ok((self.push_handle(a)?, name)))
            .collect()
    }
}

impl t::Host for SandboxState {}

impl t::HostAuthority for SandboxState {
    async fn origin(&mut self, this: Resource<super::GuestAuthority>) -> wasmtime::Result<String> {
        Ok(self.authority(&this)?.grant().origin.to_string())
    }

    async fn describe(
        &mut self,
        this: Resource<super::GuestAuthority>,
    ) -> wasmtime::Result<String> {
        Ok(self.authority(&this)?.to_string())
    }

    async fn fetch(
        &mut self,
        this: Resource<super::GuestAuthority>,
        req: t::Request,
    ) -> wasmtime::Result<Result<t::Response, t::Error>> {
        let authority = self.authority(&this)?;
        // What the host buffers for the guest is bounded by what its memory has left, not by
        // its whole limit.
        let cap = self
            .limiter
            .remaining()
            .map_or(self.response_cap, |left| left.min(self.response_cap));
        let result = self
            .outbound
            .fetch_buffered(
                &authority,
                &req.method,
                &req.path_and_query,
                &req.headers,
                req.body,
                cap,
            )
            .await;
        Ok(result
            .map(|r| t::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(guest_error))
    }

    async fn derive(
        &mut self,
        this: Resource<super::GuestAuthority>,
        att: t::Attenuation,
    ) -> wasmtime::Result<Result<Resource<super::GuestAuthority>, t::Error>> {
        let parent = self.authority(&this)?;
        // Refused before deriving, so no handle the guest never receives is recorded.
        // Handles leave room in the resource table (sized by the memory limit) for the
        // streams and pollables every wasi call needs, so a guest refused a handle can go on.
        let table_room = self
            .table
            .max_capacity()
            .saturating_sub(RESOURCES_KEPT_FOR_WASI);
        let derived = if self.live_handles >= MAX_LIVE_HANDLES {
            Err(refusal_error(
                Reason::HandleLimit,
                format!("the guest holds {MAX_LIVE_HANDLES} handles; drop some first"),
            ))
        } else if self.live_handles >= table_room {
            Err(refusal_error(
                Reason::HandleLimit,
                format!("the guest holds {} handles, as many as its memory limit allows; drop some first", self.live_handles),
            ))
        } else {
            match attenuation(att) {
                Ok(att) => parent.derive_within(&att, &self.quota).map_err(guest_error),
                Err(e) => Err(e),
            }
        };
        match derived {
            Ok(child) => {
                let record = Record::new(
                    Event::AuthorityDerived,
                    self.outbound.sandbox(),
                    child.to_string(),
                )
                .on(child.reference());
                // Recorded only once the guest holds it: a sandbox whose resource table is
                // full (its memory limit bounds it) is refused, not trapped.
                match self.push_handle(child) {
                    Ok(handle) => {
                        self.outbound.audit().record(&record);
                        Ok(Ok(handle))
                    }
                    Err(e)
                        if matches!(
                            e.downcast_ref(),
                            Some(wasmtime::component::ResourceTableError::Full)
                        ) =>
                    {
                        let e = refusal_error(
                            Reason::HandleLimit,
                            format!("the sandbox holds as many resources as its memory limit allows ({}); drop some first", self.table.max_capacity()),
                        );
                        self.audit_refusal(Event::AuthorityDerived, Some(parent.reference()), &e);
                        Ok(Err(e))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => {
                self.audit_refusal(Event::AuthorityDerived, Some(parent.reference()), &e);
                Ok(Err(e))
            }
        }
    }

    async fn revoke(&mut self, this: Resource<super::GuestAuthority>) -> wasmtime::Result<()> {
        let authority = self.authority(&this)?;
        authority.revoke();
        let record = Record::new(
            Event::AuthorityRevoked,
            self.outbound.sandbox(),
            "revoked with its descendants",
        )
        .on(authority.reference());
        self.outbound.audit().record(&record);
        Ok(())
    }

    async fn drop(&mut self, this: Resource<super::GuestAuthority>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.live_handles = self.live_handles.saturating_sub(1);
        Ok(())
    }
}

/// Bytes of a parent's memory a component it spawns needs at the least, per byte of it, for
/// its compiled code (typically a few times the wasm's size): a spawn without that much left
/// is refused before anything is compiled. What is charged is the compiled code's real size.
pub(crate) const MIN_COMPILED_CODE_CHARGE: u64 = 4;

/// Most handles one `sandbox.run` may pass to the child.
pub(crate) const MAX_CHILD_PREOPENS: usize = 256;

/// Most bytes of a nested sandbox's stdout and of its stderr kept for its parent.
pub(crate) const CHILD_OUTPUT_CAP: usize = 1 << 20;

fn refusal(reason: Reason, detail: String) -> Denial {
    Denial::new(reason, detail)
}

impl sandbox::Host for SandboxState {
    async fn run(
        &mut self,
        component: Vec<u8>,
        preopens: Vec<(Resource<super::GuestAuthority>, String)>,
        args: Vec<String>,
    ) -> wasmtime::Result<Result<sandbox::ExitStatus, t::Error>> {
        Ok(match self.spawn_child(component, preopens, args).await? {
            Ok(status) => Ok(status),
            Err(denial) => {
                let on = denial.authority.clone();
                let e = guest_error(denial);
                self.audit_refusal(Event::SandboxSpawned, on.as_ref(), &e);
                Err(e)
            }
        })
    }
}

impl SandboxState {
    /// The wall-clock time this sandbox has left (None: no limit), or the refusal to start a
    /// child when it has none.
    fn time_left(&self) -> Result<Option<Duration>, Denial> {
        let Some(deadline) = self.deadline else {
            return Ok(None);
        };
        match deadline.checked_duration_since(tokio::time::Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(refusal(
                Reason::NestingLimit,
                "this sandbox has no time left to give".into(),
            )),
        }
    }

    /// Run a nested sandbox; `Ok(Err(..))` is a refusal to start it (naming the handle that
    /// caused it, when one did).
    async fn spawn_child(
        &mut self,
        component: Vec<u8>,
        preopens: Vec<(Resource<super::GuestAuthority>, String)>,
        args: Vec<String>,
    ) -> wasmtime::Result<Result<sandbox::ExitStatus, Denial>> {
        let shared = self.shared.clone();
        if self.depth >= shared.max_depth() {
            let detail = format!(
                "sandboxes nest at most {} levels below the top",
                shared.max_depth()
            );
            return Ok(Err(refusal(Reason::NestingLimit, detail)));
        }
        let timeout = match self.time_left() {
            Ok(left) => left,
            Err(denial) => return Ok(Err(denial)),
        };
        if preopens.len() > MAX_CHILD_PREOPENS {
            return Ok(Err(refusal(
                Reason::InvalidAttenuation,
                format!(
                    "{} handles passed; a nested sandbox takes at most {MAX_CHILD_PREOPENS}",
                    preopens.len()
                ),
            )));
        }
        let mut child_preopens: Vec<(Authority, String)> = Vec::with_capacity(preopens.len());
        for (handle, name) in &preopens {
            if let Err(e) = crate::policy::check_name(name) {
                return Ok(Err(refusal(Reason::InvalidAttenuation, e)));
            }
            match self
                .authority(handle)?
                .derive_within(&Attenuation::default(), &self.quota)
            {
                Ok(child) => child_preopens.push((child, name.clone())),
                Err(d) => return Ok(Err(d)),
            }
        }
        // The child's whole reach: fresh children of what it was passed, nothing else. Its
        // `wasi:http` requests are matched against this table too.
        let child_handles = match HandleTable::new(child_preopens) {
            Ok(table) => table,
            Err(e) => return Ok(Err(refusal(Reason::InvalidAttenuation, e))),
        };
        // The compiled code is charged to this sandbox's memory while the child runs (refused
        // at once without room for at least MIN_COMPILED_CODE_CHARGE times the component),
        // and the compile to its wall clock: it runs off the async threads, so this sandbox's
        // deadline still fires while it compiles.
        if let Err(why) = super::admission::check_size(component.len()) {
            return Ok(Err(refusal(Reason::InvalidComponent, why)));
        }
        let charge = (component.len() as u64).saturating_mul(MIN_COMPILED_CODE_CHARGE);
        let left = self.limiter.remaining();
        if left.is_some_and(|left| left < charge) {
            return Ok(Err(refusal(
                Reason::NestingLimit,
                format!(
                    "a component of {} bytes needs {charge} bytes of this sandbox's memory to compile; it has {} left",
                    component.len(),
                    left.unwrap_or_default()
                ),
            )));
        }
        // Waiting for a compile slot counts against the wall clock too. The compile may use
        // what this sandbox has left: all its memory (the compile is over before the child
        // runs) and its wall clock, at whose end the compile is abandoned (and, in a compile
        // process, killed).
        let allowance = super::compile_worker::Allowance {
            memory: left,
            time: timeout,
        };
        let compile = shared.compile_nested(std::sync::Arc::from(component), allowance);
        let compiled = match timeout {
            None => compile.await,
            Some(left) => match tokio::time::timeout(left, compile).await {
                Ok(compiled) => compiled,
                Err(_) => {
                    return Ok(Err(refusal(
                        Reason::NestingLimit,
                        format!("the component did not compile within this sandbox's remaining time (the host compiles at most {} guest components at once)", super::MAX_CONCURRENT_COMPILES),
                    )))
                }
            },
        };
        use super::compile_worker::CompileError;
        let command = match compiled {
            Ok(command) => command,
            Err(CompileError::Invalid(why)) => {
                return Ok(Err(refusal(Reason::InvalidComponent, why)))
            }
            Err(CompileError::OverLimit(why)) => {
                return Ok(Err(refusal(Reason::NestingLimit, why)))
            }
            Err(CompileError::Host(why)) => {
                return Ok(Err(refusal(
                    Reason::NestingLimit,
                    format!("the host could not compile the component: {why}"),
                )))
            }
        };
        let super::engine::NestedCommand {
            command,
            kept_bytes: charge,
        } = command;
        if left.is_some_and(|left| left < charge) {
            return Ok(Err(refusal(
                Reason::NestingLimit,
                format!(
                    "the component's compiled code and tables take {charge} bytes of this sandbox's memory; it has {} left",
                    left.unwrap_or_default()
                ),
            )));
        }
        // What is left of the wall clock after the compile.
        let timeout = match self.time_left() {
            Ok(left) => left,
            Err(denial) => return Ok(Err(denial)),
        };
        self.children += 1;
        let child_id = format!("{}/{}", self.outbound.sandbox(), self.children);
        let handles: Vec<String> = child_handles
            .iter()
            .map(|(a, n)| format!("{n}={}", a.reference().lineage))
            .collect();
        let memory = left.map(|left| left - charge);
        let mut spawned = Record::new(
            Event::SandboxSpawned,
            &child_id,
            format!(
                "nested in {} with {}",
                self.outbound.sandbox(),
                handles.join(" ")
            ),
        );
        if let Some((first, _)) = child_handles.iter().next() {
            spawned = spawned.on(first.reference());
        }
        self.outbound.audit().record(&spawned);
        let exited = ExitRecord {
            outbound: self.outbound.clone(),
            child_id: child_id.clone(),
            written: false,
        };
        let stdio = super::Stdio::capture(CHILD_OUTPUT_CAP);
        let spec = super::SandboxSpec {
            outbound: std::sync::Arc::new(self.outbound.for_child(&child_id, child_handles)),
            args,
            env: Vec::new(),
            dirs: Vec::new(),
            memory,
            timeout,
            stdio: stdio.clone(),
        };
        let child = shared.run(&command, spec, self.depth + 1, self.quota.clone());
        let outcome = match Box::pin(child).await {
            Ok(outcome) => outcome,
            Err(e)
                if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some() =>
            {
                exited.write("the host had no room to run it");
                return Ok(Err(refusal(
                    Reason::NestingLimit,
                    "the host has no room for another nested sandbox now (its instance pools are full); try again later".into(),
                )));
            }
            Err(e) => {
                exited.write("the host could not run it");
                return Err(e);
            }
        };
        exited.write(&outcome.summary());
        let (stdout, stderr) = match &stdio {
            super::Stdio::Capture(out, err) => (out.contents().to_vec(), err.contents().to_vec()),
            super::Stdio::Inherit | super::Stdio::InheritBesideAudit(_) => (Vec::new(), Vec::new()),
        };
        Ok(Ok(sandbox::ExitStatus {
            code: outcome.exit_code,
            message: outcome.message,
            stdout,
            stderr,
        }))
    }
}

/// Writes a nested sandbox's `sandbox.exited` record exactly once: with its outcome when the
/// run returns, or, when the run is dropped first, from `Drop`. A run is dropped only when an
/// enclosing sandbox's wall-clock limit fires while the child still runs (the enclosing limit
/// always wins: a child's deadline is never earlier than its parent's, and each sandbox checks
/// its deadline before polling what runs inside it), so that is what the record then says.
struct ExitRecord {
    outbound: std::sync::Arc<crate::outbound::Outbound>,
    child_id: String,
    written: bool,
}

impl ExitRecord {
    fn write(mut self, detail: &str) {
        self.record(detail);
    }

    fn record(&mut self, detail: &str) {
        self.written = true;
        self.outbound
            .audit()
            .record(&Record::new(Event::SandboxExited, &self.child_id, detail));
    }
}

impl Drop for ExitRecord {
    fn drop(&mut self) {
        if !self.written {
            self.record(&format!(
                "exit status {}: guest stopped: an enclosing sandbox's wall-clock limit was reached while it ran",
                super::EXIT_TIMEOUT
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WIT file's `reason` cases are the policy's codes, in the same order, kebab-cased.
    #[test]
    fn the_wit_reason_enum_lists_every_code_in_order() {
        let wit = include_str!("../../../../wit/urlcap-http.wit");
        let body = wit
            .split_once("enum reason {")
            .and_then(|(_, rest)| rest.split_once('}'))
            .expect("wit/urlcap-http.wit declares `enum reason`")
            .0;
        let cases: Vec<String> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(|l| l.trim_end_matches(',').replace('-', "_"))
            .collect();
        let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(cases, codes);
        for &reason in Reason::ALL {
            assert_eq!(Reason::from(t::Reason::from(reason)), reason);
        }
    }
}
