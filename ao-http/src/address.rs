//! Which addresses the node's outbound client may reach (`http-blocked-addresses`).
//!
//! `relay@1.0` sends a request to any URL a client names, so without a limit anyone can make
//! the node fetch addresses only it can reach: on a cloud VM, the metadata service at
//! `169.254.169.254` (credentials), and on a shared network its neighbours. The policy is
//! checked on the address the request actually connects to: on an address in the URL, and
//! on every address a host name resolves to (the resolver leaves out the blocked ones), for
//! every redirect too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The addresses outbound requests may not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockedAddresses {
    /// None (HyperBEAM's behaviour): `none`.
    None,
    /// Link-local addresses (`169.254.0.0/16`, where cloud metadata services answer, and
    /// `fe80::/10`), the unspecified address, broadcast and multicast: `link-local`, the
    /// default.
    #[default]
    LinkLocal,
    /// Those and every address of the machine or its private networks: loopback, private
    /// (`10/8`, `172.16/12`, `192.168/16`), shared (`100.64/10`) and unique-local (`fc00::/7`):
    /// `internal`, for a node whose peers are all on the public Internet.
    Internal,
}

impl BlockedAddresses {
    /// The policy an option value names.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "link-local" => Some(Self::LinkLocal),
            "internal" => Some(Self::Internal),
            _ => None,
        }
    }

    /// Why `ip` is blocked, if it is.
    pub fn blocks(self, ip: IpAddr) -> Option<&'static str> {
        if self == Self::None {
            return None;
        }
        // `::ffff:a.b.c.d` is the IPv4 address it carries.
        let ip = ip.to_canonical();
        let link_local = match ip {
            IpAddr::V4(v4) => link_local_v4(v4),
            IpAddr::V6(v6) => link_local_v6(v6),
        };
        if let Some(reason) = link_local {
            return Some(reason);
        }
        if self == Self::Internal {
            return match ip {
                IpAddr::V4(v4) => internal_v4(v4),
                IpAddr::V6(v6) => internal_v6(v6),
            };
        }
        None
    }

    /// `addrs` without the blocked ones, or why all of them are blocked.
    pub(crate) fn filter(self, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, &'static str> {
        let mut reason = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.blocks(a.ip()) {
                Some(r) => {
                    reason = Some(r);
                    false
                }
                None => true,
            })
            .collect();
        match (allowed.is_empty(), reason) {
            (true, Some(r)) => Err(r),
            _ => Ok(allowed),
        }
    }
}

fn link_local_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_link_local() {
        Some("a link-local address (such as a cloud metadata service)")
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        Some("not a unicast address")
    } else {
        None
    }
}

fn link_local_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unicast_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("not a unicast address")
    } else {
        None
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) || a == 0 {
        Some("a private address")
    } else {
        None
    }
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unique_local() {
        Some("a private address")
    } else {
        None
    }
}

/// The error the resolver fails with when every address of a name is blocked (found again in
/// the client's error chain).
#[derive(Debug)]
pub(crate) struct Blocked(pub(crate) &'static str);

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "every address of the host is {}", self.0)
    }
}

impl std::error::Error for Blocked {}

/// A DNS resolver that leaves out the addresses the policy blocks.
#[derive(Debug)]
pub(crate) struct FilteringResolver(pub(crate) BlockedAddresses);

impl reqwest::dns::Resolve for FilteringResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed = policy.filter(addrs).map_err(
                |reason| -> Box<dyn std::error::Error + Send + Sync> { Box::new(Blocked(reason)) },
            )?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn link_local_is_blocked_by_default_and_internal_only_when_asked() {
        let default = BlockedAddresses::default();
        for blocked in [
            "169.254.169.254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert!(default.blocks(ip(blocked)).is_some(), "{blocked}");
            assert!(BlockedAddresses::None.blocks(ip(blocked)).is_none());
        }
        for internal in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(default.blocks(ip(internal)).is_none(), "{internal}");
            assert!(
                BlockedAddresses::Internal.blocks(ip(internal)).is_some(),
                "{internal}"
            );
        }
        for public in ["1.1.1.1", "2606:4700::1111", "172.32.0.1", "100.128.0.1"] {
            assert!(
                BlockedAddresses::Internal.blocks(ip(public)).is_none(),
                "{public}"
            );
        }
        assert_eq!(
            BlockedAddresses::parse("internal"),
            Some(BlockedAddresses::Internal)
        );
        assert_eq!(BlockedAddresses::parse("some"), None);
    }

    #[test]
    fn a_name_is_refused_only_when_all_its_addresses_are_blocked() {
        let a = |s: &str| SocketAddr::new(ip(s), 80);
        let p = BlockedAddresses::Internal;
        assert_eq!(
            p.filter(vec![a("127.0.0.1"), a("1.1.1.1")]).unwrap(),
            vec![a("1.1.1.1")]
        );
        assert!(p.filter(vec![a("127.0.0.1"), a("::1")]).is_err());
        assert!(p.filter(Vec::new()).unwrap().is_empty());
    }
}
