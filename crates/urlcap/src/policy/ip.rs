//! IP classification: which addresses a request may reach after DNS.
//!
//! Every special-purpose range (IANA registries, RFC 6890 and successors) is denied by default,
//! because a guest that can reach loopback, link-local metadata services or the private network
//! holds far more authority than its grant names. IPv4-mapped (`::ffff:a.b.c.d`) and
//! IPv4-compatible (`::a.b.c.d`) IPv6 addresses are judged as the IPv4 address they carry (the
//! host's stack connects to that IPv4 address), and rules written in those forms are read as
//! the IPv4 rule they mean. An IPv6 address that *embeds* an IPv4 address a gateway will
//! translate to — NAT64 (RFC 6052, local-use RFC 8215), 6to4, Teredo server and client — is
//! allowed only if the IPv6 address and every IPv4 address it embeds each pass, so a
//! `deny_ips` entry on either form denies it.
//!
//! A yes is a value, not a boolean: `IpRules::vet` is the only code that makes a
//! [`VettedAddr`], and egress connects only to one (as cap-std's `Pool` is the only way to a
//! socket there). Vetting stays pure: it judges an address someone else resolved and opens
//! nothing.

use super::decision::Denial;
use super::reason::Reason;
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A special-purpose range and the name we report for it.
struct SpecialRange {
    net: &'static str,
    name: &'static str,
}

/// The default deny set. Last compared with the IANA IPv4 and IPv6 Special-Purpose Address
/// Registries (plus the multicast blocks, and the IPv4-translated prefix of RFC 2765) on
/// 2026-11-29; README.md and SECURITY.md give the same date.
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
        net: "192.31.196.0/24",
        name: "AS112-v4",
    },
    SpecialRange {
        net: "192.52.193.0/24",
        name: "AMT",
    },
    SpecialRange {
        net: "192.168.0.0/16",
        name: "private",
    },
    SpecialRange {
        net: "192.175.48.0/24",
        name: "direct delegation AS112 service",
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
        net: "::ffff:0:0:0/96",
        name: "IPv4-translated",
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
        net: "100:0:0:1::/64",
        name: "dummy IPv6 prefix",
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
        net: "2620:4f:8000::/48",
        name: "direct delegation AS112 service",
    },
    SpecialRange {
        net: "3fff::/20",
        name: "documentation",
    },
    SpecialRange {
        net: "5f00::/16",
        name: "SRv6 SIDs",
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
    // Not special-purpose, but no one's to reach: everything outside global unicast
    // (2000::/3) is reserved by IANA (as 240.0.0.0/4 is for IPv4). Listed last, so the
    // specific names above win.
    SpecialRange {
        net: "::/3",
        name: "reserved (outside global unicast 2000::/3)",
    },
    SpecialRange {
        net: "4000::/2",
        name: "reserved (outside global unicast 2000::/3)",
    },
    SpecialRange {
        net: "8000::/1",
        name: "reserved (outside global unicast 2000::/3)",
    },
    // A public address a cloud platform answers on inside every tenant's network, like the
    // link-local metadata address: Azure's wire server (instance metadata, DHCP, health).
    SpecialRange {
        net: "168.63.129.16/32",
        name: "cloud platform (Azure wire server)",
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
pub(crate) fn judged_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6 == Ipv6Addr::UNSPECIFIED || v6 == Ipv6Addr::LOCALHOST => ip,
        IpAddr::V6(v6) => match v6.to_ipv4() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// The IPv4 addresses an IPv6 address embeds for a translator or tunnel to reach: NAT64
/// (`64:ff9b::/96`, and `64:ff9b:1::/48` at every RFC 6052 prefix length it may be used
/// with), IPv4-translated (`::ffff:0:0:0/96`), 6to4 (`2002::/16`), and Teredo (`2001::/32`:
/// the server, and the obfuscated client).
/// IPv4-mapped and -compatible addresses are not here: they *are* their IPv4 address
/// ([`judged_as`]).
pub(crate) fn embedded_ipv4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let o = ip.octets();
    let v4 = |a: u8, b: u8, c: u8, d: u8| Ipv4Addr::new(a, b, c, d);
    let seg = ip.segments();
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        return vec![v4(o[12], o[13], o[14], o[15])];
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
        // RFC 6052 layouts for /48, /56, /64 and /96 (bits 64..71 are the reserved "u" octet).
        return vec![
            v4(o[6], o[7], o[9], o[10]),
            v4(o[7], o[9], o[10], o[11]),
            v4(o[9], o[10], o[11], o[12]),
            v4(o[12], o[13], o[14], o[15]),
        ];
    }
    if seg[..4] == [0, 0, 0, 0] && seg[4] == 0xffff && seg[5] == 0 {
        return vec![v4(o[12], o[13], o[14], o[15])]; // IPv4-translated (SIIT)
    }
    if seg[0] == 0x2002 {
        return vec![v4(o[2], o[3], o[4], o[5])];
    }
    if seg[0] == 0x2001 && seg[1] == 0 {
        return vec![
            v4(o[4], o[5], o[6], o[7]),
            v4(!o[12], !o[13], !o[14], !o[15]),
        ];
    }
    Vec::new()
}

/// A rule as it is meant: an IPv4-mapped or IPv4-compatible CIDR (`::ffff:8.8.8.8`,
/// `::ffff:10.0.0.0/104`, `::0.0.0.0/104`) is the IPv4 CIDR it spells, since addresses in those
/// forms are judged as IPv4 — otherwise it could never match. `::/128` and `::1/128` (the
/// unspecified and loopback addresses, not embeddings) stay as they are.
pub(crate) fn normalize_rule(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else {
        return net;
    };
    let addr = v6.network();
    let seg = addr.segments();
    let mapped = seg[..5] == [0; 5] && seg[5] == 0xffff;
    // A compatible rule whose network starts at `::` also covers `::` and `::1` (the
    // unspecified and loopback addresses, judged as IPv6): rewriting it to IPv4 would drop them
    // from a denial, or open 0.0.0.0/… with an exception, so it stays as written.
    let compatible = seg[..6] == [0; 6] && (seg[6] != 0 || seg[7] > 1);
    if v6.prefix_len() < 96 || !(mapped || compatible) {
        return net;
    }
    let o = addr.octets();
    let v4 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
        .map(|n| n.trunc())
        .unwrap_or(net)
}

/// The IPv4 rule a rule on an IPv4-embedding IPv6 form also means (a `deny_ips` entry on
/// `64:ff9b::a9fe:a9fe` denies 169.254.169.254 itself too): for NAT64 and IPv4-translated
/// rules longer than /96, 6to4 rules longer than /16, and Teredo-server rules longer than /32.
/// A rule on a whole prefix (`64:ff9b::/96`) stays on the IPv6 form.
pub(crate) fn embedded_rule(net: IpNet) -> Option<IpNet> {
    let IpNet::V6(v6) = net else {
        return None;
    };
    let (o, seg, len) = (
        v6.network().octets(),
        v6.network().segments(),
        v6.prefix_len(),
    );
    let v4 = |a: u8, b: u8, c: u8, d: u8, bits: u8| {
        IpNet::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), bits.min(32))
            .ok()
            .map(|n| n.trunc())
    };
    let nat64 = seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0];
    let translated = seg[..4] == [0; 4] && seg[4] == 0xffff && seg[5] == 0;
    if (nat64 || translated) && len > 96 {
        return v4(o[12], o[13], o[14], o[15], len - 96);
    }
    if seg[0] == 0x2002 && len > 16 {
        return v4(o[2], o[3], o[4], o[5], len - 16);
    }
    if seg[0] == 0x2001 && seg[1] == 0 && len > 32 {
        return v4(o[4], o[5], o[6], o[7], len - 32);
    }
    None
}

/// The special-purpose range containing `ip` (after [`judged_as`]), with its name.
pub(crate) fn special_purpose(ip: IpAddr) -> Option<(IpNet, &'static str)> {
    let ip = judged_as(ip);
    special_ranges()
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .copied()
}

/// A socket address the IP rules accepted: the proof egress needs to open a connection.
///
/// Its field is private to this module, so the only way to get one is `IpRules::vet` (or
/// [`super::Authority::vet`], which calls it with the grant's exceptions). The connector takes
/// a `VettedAddr`, never a bare `SocketAddr`, so a socket cannot be opened to an address no
/// one vetted, whatever path the code took to get there. It proves the address passed the rules
/// of the authority that vetted it: a connection kept for reuse is vetted again for the next
/// authority that wants it.
///
/// Outside this module it cannot be forged:
/// ```compile_fail
/// let forged = urlcap::policy::VettedAddr("169.254.169.254:80".parse().unwrap());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VettedAddr(SocketAddr);

impl VettedAddr {
    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.0
    }
}

impl fmt::Display for VettedAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
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
    /// May a request through a grant with exceptions `grant_allow` connect to `addr`? The port
    /// is not judged (the grant's origin already fixed it); the address is, and an IPv6 address
    /// that embeds IPv4 addresses ([`embedded_ipv4`]) passes only if it and each of them pass.
    /// A yes is the [`VettedAddr`] egress requires to connect.
    pub(crate) fn vet(
        &self,
        addr: SocketAddr,
        grant_allow: &[IpNet],
    ) -> Result<VettedAddr, Denial> {
        self.judge(addr.ip(), grant_allow)?;
        Ok(VettedAddr(addr))
    }

    /// The judgment behind `IpRules::vet`, for callers that only need yes or no about an
    /// address with no port (the manifest's warnings).
    pub(crate) fn judge(&self, ip: IpAddr, grant_allow: &[IpNet]) -> Result<(), Denial> {
        self.vet_one(ip, grant_allow)?;
        if let IpAddr::V6(v6) = judged_as(ip) {
            for embedded in embedded_ipv4(v6) {
                self.vet_one(IpAddr::V4(embedded), grant_allow)
                    .map_err(|d| {
                        Denial::new(d.reason, format!("{ip} embeds {embedded}: {}", d.detail))
                    })?;
            }
        }
        Ok(())
    }

    /// The exceptions (`allow_ips` entries, one address each) that would let a request through
    /// a grant with exceptions `grant_allow` reach `ip`: none when it already may, `None` when
    /// no exception can (an address in `deny_ips`, which beat every exception). For hints.
    pub(crate) fn exceptions_needed(
        &self,
        ip: IpAddr,
        grant_allow: &[IpNet],
    ) -> Option<Vec<IpNet>> {
        let mut addresses = vec![judged_as(ip)];
        if let IpAddr::V6(v6) = addresses[0] {
            addresses.extend(embedded_ipv4(v6).into_iter().map(IpAddr::V4));
        }
        let mut needed = Vec::new();
        for address in addresses {
            if self.deny.iter().any(|n| n.contains(&address)) {
                return None;
            }
            if self.vet_one(address, grant_allow).is_err() {
                let net = IpNet::from(address);
                if !needed.contains(&net) {
                    needed.push(net);
                }
            }
        }
        Some(needed)
    }

    fn vet_one(&self, ip: IpAddr, grant_allow: &[IpNet]) -> Result<(), Denial> {
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
        rules.judge(ip.parse().unwrap(), &[]).is_ok()
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

    /// Read from the table itself: both ends of every special-purpose range are denied by
    /// default and allowed under `allow_private`.
    #[test]
    fn every_special_range_is_denied_at_both_ends() {
        let open = IpRules {
            allow_private: true,
            ..IpRules::default()
        };
        let mut count = 0;
        for &(net, name) in special_ranges() {
            for ip in [net.network(), net.broadcast()] {
                assert!(!vet(&IpRules::default(), &ip.to_string()), "{ip} ({name})");
                assert!(
                    vet(&open, &ip.to_string()),
                    "{ip} ({name}) under allow_private"
                );
            }
            count += 1;
        }
        assert!(count >= 37, "{count} ranges");
        // The entries a review found missing (IANA registries, checked on the table's date).
        let table: Vec<String> = special_ranges()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        for must in [
            "3fff::/20",
            "5f00::/16",
            "::ffff:0:0:0/96",
            "192.31.196.0/24",
            "2620:4f:8000::/48",
            "4000::/2",
            "168.63.129.16/32",
        ] {
            assert!(table.iter().any(|t| t == must), "{must} is in the table");
        }
    }

    fn rules(allow_private: bool, allow: &[&str], deny: &[&str]) -> IpRules {
        let net = |n: &&str| {
            normalize_rule(
                n.parse()
                    .unwrap_or_else(|_| IpNet::from(n.parse::<IpAddr>().unwrap())),
            )
        };
        IpRules {
            allow_private,
            allow: allow.iter().map(net).collect(),
            deny: deny.iter().map(net).collect(),
        }
    }

    /// An IPv6 address embedding IPv4 passes only if both forms pass; a denial of either form
    /// denies it. Rows: (allow_private, allow, deny, address, allowed, why).
    #[test]
    fn embedded_ipv4_is_judged_in_both_forms() {
        let nat64 = &["64:ff9b::/96"][..];
        let meta = &["169.254.169.254"][..];
        type Row<'a> = (bool, &'a [&'a str], &'a [&'a str], &'a str, bool, &'a str);
        let rows: &[Row] = &[
            (
                false,
                nat64,
                &[],
                "64:ff9b::a00:5",
                false,
                "NAT64 to 10.0.0.5: private",
            ),
            (
                false,
                nat64,
                &[],
                "64:ff9b::808:808",
                true,
                "NAT64 to 8.8.8.8: public",
            ),
            (
                true,
                &[],
                meta,
                "64:ff9b::a9fe:a9fe",
                false,
                "NAT64 to the metadata address",
            ),
            (
                true,
                &[],
                meta,
                "2002:a9fe:a9fe::1",
                false,
                "6to4 of the metadata address",
            ),
            (
                true,
                &[],
                meta,
                "2001:0:808:808::5601:5601",
                false,
                "Teredo client 169.254.169.254",
            ),
            (
                true,
                &[],
                meta,
                "2001:0:a9fe:a9fe::f7f7:f7f7",
                false,
                "Teredo server 169.254.169.254",
            ),
            (
                true,
                &[],
                meta,
                "2001:0:808:808::f7f7:f7f7",
                true,
                "Teredo 8.8.8.8 both ways",
            ),
            (
                true,
                &[],
                &["64:ff9b::/96"],
                "64:ff9b::808:808",
                false,
                "the IPv6 form denied",
            ),
            (
                true,
                &[],
                &["10.0.0.0/8"],
                "64:ff9b:1:a00:0:500::",
                false,
                "local-use NAT64 /48",
            ),
            (
                true,
                &[],
                &["10.0.0.0/8"],
                "64:ff9b:1::a00:5",
                false,
                "local-use NAT64 /96",
            ),
            (
                true,
                &[],
                &["10.0.0.5"],
                "::ffff:0:a00:5",
                false,
                "IPv4-translated",
            ),
            (
                true,
                &[],
                &["::ffff:8.8.8.8"],
                "8.8.8.8",
                false,
                "a mapped rule means IPv4",
            ),
            (
                true,
                &[],
                &["::ffff:8.8.8.0/120"],
                "::ffff:8.8.8.9",
                false,
                "mapped CIDR",
            ),
            (
                false,
                &["::ffff:127.0.0.1"],
                &[],
                "127.0.0.1",
                true,
                "a mapped exception too",
            ),
        ];
        for (private, allow, deny, ip, allowed, why) in rows {
            let r = rules(*private, allow, deny);
            assert_eq!(vet(&r, ip), *allowed, "{ip}: {why}");
        }
    }

    #[test]
    fn mapped_and_compatible_rules_become_ipv4_and_others_stay() {
        let n = |s: &str| normalize_rule(s.parse().unwrap()).to_string();
        assert_eq!(n("::ffff:8.8.8.8/128"), "8.8.8.8/32");
        assert_eq!(n("::ffff:10.0.0.0/104"), "10.0.0.0/8");
        assert_eq!(n("::ffff:0:0/96"), "0.0.0.0/0");
        assert_eq!(n("::1/128"), "::1/128");
        assert_eq!(n("::/128"), "::/128");
        assert_eq!(n("64:ff9b::/96"), "64:ff9b::/96");
        assert_eq!(n("10.0.0.0/8"), "10.0.0.0/8");
        // A compatible rule covering `::` and `::1` stays IPv6, so a denial keeps them and an
        // exception does not open IPv4 (second review).
        assert_eq!(n("::/96"), "::/96");
        assert_eq!(n("::/127"), "::/127");
        assert_eq!(n("::0.0.0.0/104"), "::/104");
        assert_eq!(n("::10.0.0.0/104"), "10.0.0.0/8");
        assert_eq!(n("::8.8.8.8/128"), "8.8.8.8/32");
    }

    /// A rule on an IPv4-embedding form also means the IPv4 rule (for denials), except on a
    /// whole translation prefix.
    #[test]
    fn rules_on_embedding_forms_also_name_the_ipv4_rule() {
        let e = |s: &str| embedded_rule(s.parse().unwrap()).map(|n| n.to_string());
        assert_eq!(
            e("64:ff9b::a9fe:a9fe/128").as_deref(),
            Some("169.254.169.254/32")
        );
        assert_eq!(e("64:ff9b::a00:0/104").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(
            e("2002:a9fe:a9fe::/48").as_deref(),
            Some("169.254.169.254/32")
        );
        assert_eq!(e("2002:a00::/24").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(
            e("2001:0:a9fe:a9fe::/64").as_deref(),
            Some("169.254.169.254/32")
        );
        assert_eq!(e("::ffff:0:a00:5/128").as_deref(), Some("10.0.0.5/32"));
        assert_eq!(e("64:ff9b::/96"), None);
        assert_eq!(e("2002::/16"), None);
        assert_eq!(e("10.0.0.0/8"), None);
        assert_eq!(e("2606:4700::/32"), None);
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
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(rules.vet(addr, &grant_allow).unwrap().addr(), addr);
        assert!(rules.vet(addr, &[]).is_err());
    }
}
