//! IP classification: which addresses a request may reach after DNS.
//!
//! Every special-purpose range (IANA registries, RFC 6890 and successors) is denied by default,
//! because a guest that can reach loopback, link-local metadata services or the private network
//! holds far more authority than its grant names. IPv4-mapped (`::ffff:a.b.c.d`) and
//! IPv4-compatible (`::a.b.c.d`) IPv6 addresses are judged as the IPv4 address they carry, so no
//! encoding of an address escapes its IPv4 rule.

use super::decision::Denial;
use super::reason::Reason;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};

/// A special-purpose range and the name we report for it.
struct SpecialRange {
    net: &'static str,
    name: &'static str,
}

const SPECIAL_RANGES: &[SpecialRange] = &[
    SpecialRange {
        net: "0.0.0.0/8",
        name: "this network",
    },
    SpecialRange {
        net: "10.0.0.0/8",
        name: "private",
    },
    SpecialRange {
        net: "100.64.0.0/10",
        name: "shared address space (CGNAT)",
    },
    SpecialRange {
        net: "127.0.0.0/8",
        name: "loopback",
    },
    SpecialRange {
        net: "169.254.0.0/16",
        name: "link-local",
    },
    SpecialRange {
        net: "172.16.0.0/12",
        name: "private",
    },
    SpecialRange {
        net: "192.0.0.0/24",
        name: "IETF protocol assignments",
    },
    SpecialRange {
        net: "192.0.2.0/24",
        name: "documentation (TEST-NET-1)",
    },
    SpecialRange {
        net: "192.88.99.0/24",
        name: "6to4 relay anycast",
    },
    SpecialRange {
        net: "192.168.0.0/16",
        name: "private",
    },
    SpecialRange {
        net: "198.18.0.0/15",
        name: "benchmarking",
    },
    SpecialRange {
        net: "198.51.100.0/24",
        name: "documentation (TEST-NET-2)",
    },
    SpecialRange {
        net: "203.0.113.0/24",
        name: "documentation (TEST-NET-3)",
    },
    SpecialRange {
        net: "224.0.0.0/4",
        name: "multicast",
    },
    SpecialRange {
        net: "240.0.0.0/4",
        name: "reserved",
    },
    SpecialRange {
        net: "::/128",
        name: "unspecified",
    },
    SpecialRange {
        net: "::1/128",
        name: "loopback",
    },
    SpecialRange {
        net: "::/96",
        name: "IPv4-compatible",
    },
    SpecialRange {
        net: "::ffff:0:0/96",
        name: "IPv4-mapped",
    },
    SpecialRange {
        net: "64:ff9b::/96",
        name: "NAT64",
    },
    SpecialRange {
        net: "64:ff9b:1::/48",
        name: "local-use NAT64",
    },
    SpecialRange {
        net: "100::/64",
        name: "discard-only",
    },
    SpecialRange {
        net: "2001::/23",
        name: "IETF protocol assignments (incl. Teredo)",
    },
    SpecialRange {
        net: "2001:db8::/32",
        name: "documentation",
    },
    SpecialRange {
        net: "2002::/16",
        name: "6to4",
    },
    SpecialRange {
        net: "fc00::/7",
        name: "unique local",
    },
    SpecialRange {
        net: "fe80::/10",
        name: "link-local",
    },
    SpecialRange {
        net: "fec0::/10",
        name: "site-local (deprecated)",
    },
    SpecialRange {
        net: "ff00::/8",
        name: "multicast",
    },
];

/// The special-purpose ranges, parsed once.
fn special_ranges() -> &'static [(IpNet, &'static str)] {
    static PARSED: std::sync::OnceLock<Vec<(IpNet, &'static str)>> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        SPECIAL_RANGES
            .iter()
            .map(|r| {
                (
                    r.net
                        .parse()
                        .expect("SPECIAL_RANGES entries are valid CIDRs"),
                    r.name,
                )
            })
            .collect()
    })
}

/// The address as it must be judged: IPv4-mapped and IPv4-compatible IPv6 become IPv4.
/// `::` and `::1` stay IPv6 (they are the unspecified and loopback addresses, not embeddings).
pub fn judged_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6 == Ipv6Addr::UNSPECIFIED || v6 == Ipv6Addr::LOCALHOST => ip,
        IpAddr::V6(v6) => match v6.to_ipv4() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// The special-purpose range containing `ip` (after [`judged_as`]), with its name.
pub fn special_purpose(ip: IpAddr) -> Option<(IpNet, &'static str)> {
    let ip = judged_as(ip);
    special_ranges()
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .copied()
}

/// The sandbox-wide IP rules from the manifest's `[network]` table and the `--allow-ip`,
/// `--deny-ip` and `--allow-private` flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRules {
    /// Do not apply the special-purpose deny set at all.
    pub allow_private: bool,
    /// Exceptions to the special-purpose deny set.
    pub allow: Vec<IpNet>,
    /// Extra denials; these win over every exception.
    pub deny: Vec<IpNet>,
}

impl IpRules {
    /// May a request through a grant with exceptions `grant_allow` connect to `ip`?
    pub fn vet(&self, ip: IpAddr, grant_allow: &[IpNet]) -> Result<(), Denial> {
        let judged = judged_as(ip);
        // Worded only for a denial: an allowed address (every pooled request) formats nothing.
        let shown = || {
            if judged == ip {
                ip.to_string()
            } else {
                format!("{ip} (judged as {judged})")
            }
        };
        if let Some(net) = self.deny.iter().find(|n| n.contains(&judged)) {
            return Err(Denial::new(
                Reason::IpDenied,
                format!("{} is in deny_ips {net}", shown()),
            ));
        }
        if self.allow_private {
            return Ok(());
        }
        let Some((net, name)) = special_purpose(judged) else {
            return Ok(());
        };
        if self
            .allow
            .iter()
            .chain(grant_allow)
            .any(|n| n.contains(&judged))
        {
            return Ok(());
        }
        Err(Denial::new(
            Reason::IpDenied,
            format!(
                "{} is in the special-purpose range {net} ({name}); allow it with allow_ips or --allow-ip",
                shown()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vet(rules: &IpRules, ip: &str) -> bool {
        rules.vet(ip.parse().unwrap(), &[]).is_ok()
    }

    #[test]
    fn special_purpose_ranges_are_denied_by_default() {
        let rules = IpRules::default();
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "2002:7f00:1::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!vet(&rules, ip), "{ip} should be denied");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        let rules = IpRules::default();
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(vet(&rules, ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn mapped_addresses_are_judged_as_ipv4_for_exceptions_too() {
        let rules = IpRules {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
            ..IpRules::default()
        };
        assert!(vet(&rules, "::ffff:127.0.0.1"));
        assert!(!vet(&rules, "127.0.0.2"));
        let denied = IpRules {
            deny: vec!["8.8.8.0/24".parse().unwrap()],
            ..IpRules::default()
        };
        assert!(!vet(&denied, "::ffff:8.8.8.8"));
    }

    #[test]
    fn deny_ips_win_over_allow_private_and_exceptions() {
        let rules = IpRules {
            allow_private: true,
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            deny: vec!["10.1.0.0/16".parse().unwrap()],
        };
        assert!(vet(&rules, "10.2.0.1"));
        assert!(!vet(&rules, "10.1.0.1"));
    }

    #[test]
    fn grant_exceptions_apply_only_to_their_grant() {
        let rules = IpRules::default();
        let grant_allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(rules
            .vet("127.0.0.1".parse().unwrap(), &grant_allow)
            .is_ok());
        assert!(rules.vet("127.0.0.1".parse().unwrap(), &[]).is_err());
    }
}
