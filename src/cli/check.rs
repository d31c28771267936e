//! `urlcap check`: validate grants and print what is in force.

use super::{GrantArgs, EXIT_OK};
use clap::Args;
use std::io::Write;
use urlcap::manifest::{Config, ConfigError};

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    grants: GrantArgs,
}

pub fn run(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, ConfigError> {
    let config = args.grants.load()?;
    let _ = write!(out, "{}", describe(&config));
    // What `urlcap serve` would serve: each route's prefix, component and authorities.
    for route in &config.routes {
        let _ = writeln!(
            out,
            "route {} -> {} (authorities: {}) ({})",
            route.prefix.as_str(),
            route.component.display(),
            if route.authorities.is_empty() {
                "none".to_string()
            } else {
                route.authorities.join(", ")
            },
            route.source
        );
    }
    for warning in config.warnings() {
        let _ = writeln!(err, "warning: {warning}");
    }
    Ok(EXIT_OK)
}

/// The effective grants, one block per authority, as `check` prints them.
pub fn describe(config: &Config) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let l = &config.limits;
    let unlimited = |v: Option<String>| v.unwrap_or_else(|| "unlimited".into());
    let or_default =
        |v: Option<String>, default: String| v.unwrap_or(format!("{default} (default)"));
    let _ = writeln!(
        s,
        "limits: memory {}, timeout {}, max_concurrent_requests {}, max_nesting_depth {}",
        unlimited(
            l.memory
                .map(|m| bytesize::ByteSize(m).display().iec().to_string())
        ),
        unlimited(l.timeout.map(|t| humantime::format_duration(t).to_string())),
        or_default(
            l.max_concurrent_requests.map(|n| n.to_string()),
            urlcap::egress::DEFAULT_MAX_IN_FLIGHT.to_string()
        ),
        or_default(
            l.max_nesting_depth.map(|n| n.to_string()),
            urlcap::host::DEFAULT_MAX_DEPTH.to_string()
        ),
    );
    let egress = urlcap::egress::EgressConfig::default();
    let _ = writeln!(
        s,
        "egress defaults: connect timeout {}, first-byte timeout {}, between-bytes timeout {}, no total timeout unless a grant sets one; idle connections {} per origin, {} in all, closed after {} idle; at most {} informational (1xx) responses",
        humantime::format_duration(egress.connect_timeout),
        humantime::format_duration(egress.first_byte_timeout),
        humantime::format_duration(egress.between_bytes_timeout),
        egress.max_idle_per_origin,
        egress.max_idle_total,
        humantime::format_duration(egress.idle_connection_timeout),
        urlcap::egress::MAX_INTERIM_RESPONSES,
    );
    let _ = writeln!(
        s,
        "request bounds: URLs at most {} bytes; at most 100 headers and 64 KiB of them; a native fetch's response buffered up to 64 MiB (or what the sandbox's memory has left)",
        urlcap::policy::MAX_URL_LEN,
    );
    let n = &config.network;
    let nets = |v: &[ipnet::IpNet]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let _ = writeln!(
        s,
        "network: special-purpose ranges {}; allow_ips {}; deny_ips {}",
        if n.allow_private {
            "ALLOWED (allow_private)"
        } else {
            "denied"
        },
        nets(&n.allow),
        nets(&n.deny)
    );
    let mut names: Vec<&str> = config.variables.iter().map(|u| u.name.as_str()).collect();
    names.dedup();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let uses: Vec<&urlcap::manifest::VariableUse> =
            config.variables.iter().filter(|u| u.name == name).collect();
        let at: Vec<&str> = uses.iter().map(|u| u.at.as_str()).collect();
        let _ = writeln!(
            s,
            "variable {name}: from {}; used at {} (its value is shown only in the grants below)",
            uses[0].source,
            at.join(", ")
        );
    }
    if config.grants.is_empty() {
        let _ = writeln!(s, "no authorities: every request will be denied");
    }
    for g in &config.grants {
        let _ = write!(s, "authority {}\n{g:#}", g.name);
    }
    s
}
