//! `urlcap explain`: one request through the real policy, without sending it.

use super::{GrantArgs, EXIT_DENY, EXIT_OK};
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use urlcap::audit::redact_url;
use urlcap::egress::{lookup, vet_answer, EgressConfig, SystemResolver};
use urlcap::manifest::ConfigError;
use urlcap::policy::{Authority, Decision, Denial, Reason, Request, SystemClock, VettedAddr};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    grants: GrantArgs,
    /// The request method (exact, case-sensitive).
    #[arg(long, default_value = "GET")]
    method: String,
    /// A request header as the guest would send it, 'Name: value' (repeatable).
    #[arg(long, value_name = "'K: V'")]
    header: Vec<String>,
    /// Also resolve the host with the system resolver and check every address.
    #[arg(long)]
    resolve: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The absolute URL the guest would request.
    url: String,
}

/// The `--json` output. `decision`, `authority`, `reason` and `detail` are the contract.
#[derive(Serialize)]
struct Explanation {
    decision: &'static str,
    authority: Option<String>,
    reason: Option<Reason>,
    detail: String,
    lineage: Option<String>,
    method: String,
    url: String,
    addresses: Vec<IpAddr>,
    /// The smallest change to the grants that would allow the request; `null` when it is
    /// allowed, or when nothing may allow it.
    hint: Option<String>,
}

pub fn run(
    args: &ExplainArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, ConfigError> {
    let config = args.grants.load()?;
    let mut headers = Vec::new();
    for h in &args.header {
        let Some((name, value)) = h.split_once(':') else {
            return Err(ConfigError::flag(
                "--header",
                "(its value is not shown)",
                "expected 'Name: value', with a colon",
                None,
            ));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    for warning in config.warnings() {
        let _ = writeln!(err, "warning: {warning}");
    }
    let policy = config.policy(Arc::new(SystemClock::new()));
    let mut addresses = Vec::new();
    let request = Request::new(&args.method, &args.url)
        .and_then(|r| headers.iter().try_fold(r, |req, (k, v)| req.header(k, v)));
    let (decision, url) = match request {
        Err(denial) => (Decision::Deny(denial), redact_url(&args.url)),
        Ok(req) => {
            let mut decision = policy.check(&req);
            if let Decision::Deny(denial) = &mut decision {
                denial.fix = policy.fix(denial, &req).map(Box::new);
            }
            if let (true, Decision::Allow(reference)) = (args.resolve, &decision) {
                let authority = policy
                    .get(&reference.name)
                    .expect("an allowing authority exists");
                decision = match resolve(authority, &req) {
                    Err(denial) => Decision::Deny(denial.on(reference)),
                    Ok((ips, Err(denial))) => {
                        addresses = ips;
                        Decision::Deny(denial)
                    }
                    Ok((ips, Ok(_vetted))) => {
                        addresses = ips;
                        decision
                    }
                };
            }
            (decision, req.url().to_string())
        }
    };
    let explanation = explain(&decision, &policy, args.method.clone(), url, addresses);
    if args.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(&explanation).expect("serializable")
        );
    } else {
        let _ = write!(out, "{}", human(&explanation));
    }
    Ok(if decision.is_allow() {
        EXIT_OK
    } else {
        EXIT_DENY
    })
}

/// Resolve and vet exactly as egress does before a connection: the same [`lookup`] (the
/// system resolver, names with a dot absolute, the default connect timeout) and the same
/// [`vet_answer`] (every address, a mixed answer denied whole). The outer error is a lookup
/// that failed; otherwise the answer, and the verdict on it.
fn resolve(authority: &Authority, req: &Request) -> Result<ResolvedAnswer, Denial> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Denial::new(
                Reason::DnsFailure,
                format!("cannot start the resolver: {e}"),
            )
        })?;
    let wait = EgressConfig::default().connect_timeout;
    let ips = runtime.block_on(lookup(&SystemResolver, req.url(), wait))?;
    let verdict = vet_answer(authority, req.url(), &ips);
    Ok((ips, verdict))
}

/// The addresses a name resolved to, and whether every one passed.
type ResolvedAnswer = (Vec<IpAddr>, Result<Vec<VettedAddr>, Denial>);

fn explain(
    decision: &Decision,
    policy: &urlcap::policy::Policy,
    method: String,
    url: String,
    addresses: Vec<IpAddr>,
) -> Explanation {
    match decision {
        Decision::Allow(r) => {
            let grant = policy
                .get(&r.name)
                .expect("an allowing authority exists")
                .grant();
            Explanation {
                decision: "allow",
                authority: Some(r.name.to_string()),
                reason: None,
                detail: format!("authority {} grants {grant}", r.name),
                lineage: Some(r.lineage.to_string()),
                method,
                url,
                addresses,
                hint: None,
            }
        }
        Decision::Deny(d) => Explanation {
            decision: "deny",
            authority: d.authority.as_ref().map(|a| a.name.to_string()),
            reason: Some(d.reason),
            detail: d.detail.clone(),
            lineage: d.authority.as_ref().map(|a| a.lineage.to_string()),
            method,
            url,
            addresses,
            hint: d.fix.as_ref().map(|f| f.to_string()),
        },
    }
}

fn human(e: &Explanation) -> String {
    let mut s = format!(
        "{} {} {}\n",
        e.decision,
        e.method.escape_debug(),
        e.url.escape_debug()
    );
    if let Some(a) = &e.authority {
        s += &format!(
            "  authority {a} (lineage {})\n",
            e.lineage.as_deref().unwrap_or(a)
        );
    }
    if let Some(r) = e.reason {
        s += &format!("  reason    {r}\n");
    }
    s += &format!("  detail    {}\n", e.detail.escape_debug());
    if !e.addresses.is_empty() {
        let list: Vec<String> = e.addresses.iter().map(|a| a.to_string()).collect();
        s += &format!("  addresses {}\n", list.join(" "));
    }
    if let Some(hint) = &e.hint {
        // Quotes stay as written: the hint is meant to be copied into a shell or a manifest.
        let shown: String = (hint.chars())
            .flat_map(|c| {
                let control = c.is_control();
                c.escape_debug()
                    .filter(move |_| control)
                    .chain((!control).then_some(c))
            })
            .collect();
        s += &format!("  hint      {shown}\n");
    }
    s
}
