//! The client's address behind trusted reverse proxies (`--trusted-proxies`): the address
//! the per-address connect limit counts and the logs name.
//!
//! Behind an ingress controller or a load balancer that ends TCP, every connection comes
//! from the proxy's few addresses, so a limit per TCP peer would throttle all browsers
//! together. A proxy appends the address it was reached from to `X-Forwarded-For`; when
//! the TCP peer is trusted, the gateway walks that list from the right, past the trusted
//! proxies, to the first address that is not one. Whatever a client wrote into the header
//! itself stays to the left of that and is never read. With no trusted proxies (the
//! default) the header is ignored.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or a single address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// An address as an integer and its width in bits (IPv4-mapped IPv6 counts as IPv4).
fn bits(ip: IpAddr) -> (u128, u8) {
    match ip.to_canonical() {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, width) = bits(self.net);
        let (addr, addr_width) = bits(ip);
        let shift = u32::from(width - self.prefix);
        width == addr_width
            && net.checked_shr(shift).unwrap_or(0) == addr.checked_shr(shift).unwrap_or(0)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an address or a network like 10.0.0.0/8"))?;
        let width = bits(net).1;
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {width}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as some proxies write it. Entries are split from the raw bytes, so
/// bytes that are not text elsewhere in the header (a client's) do not spoil the rest.
fn hop(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?.trim();
    entry
        .parse()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The address a request comes from: the TCP `peer`, unless it is in `trusted`; then the
/// rightmost `X-Forwarded-For` entry that is not in `trusted`. If the list runs out, or
/// reaches an entry that is not an address, the last trusted address seen stands (a
/// proxy that forwarded nothing usable is counted as the client).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    let entries = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .rev();
    for entry in entries {
        match hop(entry) {
            Some(ip) => client = ip.to_canonical(),
            None => break,
        }
        if !is_trusted(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_contain() {
        let n: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.1.2")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped peer");
        assert!(!n.contains(ip("fd00::1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "10.0.0.0/x",
            "host/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        assert_eq!(format!("{n:?}"), "10.0.0.0/8");
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop_behind_a_trusted_peer() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1"]);
        let headers = |v: &[&str]| {
            let mut h = HeaderMap::new();
            for v in v {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            h
        };
        let from = |peer: &str, xff: &[&str]| client_ip(ip(peer), &headers(xff), &trusted);
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(from("198.51.100.1", &["203.0.113.5"]), ip("198.51.100.1"));
        // A trusted peer with no header: the peer.
        assert_eq!(from("10.1.1.1", &[]), ip("10.1.1.1"));
        // One proxy: the address it appended.
        assert_eq!(from("10.1.1.1", &["203.0.113.5"]), ip("203.0.113.5"));
        // A forged entry to the left of the real one is never reached.
        assert_eq!(
            from("10.1.1.1", &["1.2.3.4, 203.0.113.5"]),
            ip("203.0.113.5")
        );
        // Two proxies (and two header lines), ports and spaces.
        assert_eq!(
            from("127.0.0.1", &["1.2.3.4", " 203.0.113.5:4433 , 10.2.2.2"]),
            ip("203.0.113.5")
        );
        assert_eq!(from("10.1.1.1", &["[2001:db8::1]:443"]), ip("2001:db8::1"));
        // Every hop trusted: the leftmost. Garbage stops the walk at the last good hop.
        assert_eq!(from("10.1.1.1", &["10.9.9.9, 10.8.8.8"]), ip("10.9.9.9"));
        assert_eq!(from("10.1.1.1", &["203.0.113.5, unknown"]), ip("10.1.1.1"));
        assert_eq!(from("10.1.1.1", &["unknown, 10.3.3.3"]), ip("10.3.3.3"));
        // Bytes that are not text, left of the entry the proxy appended, are never read.
        let mut odd = HeaderMap::new();
        odd.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.5").unwrap(),
        );
        assert_eq!(client_ip(ip("10.1.1.1"), &odd, &trusted), ip("203.0.113.5"));
        // An IPv4-mapped trusted peer is recognised.
        assert_eq!(from("::ffff:10.1.1.1", &["203.0.113.5"]), ip("203.0.113.5"));
        // With nothing trusted the header is ignored.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &headers(&["203.0.113.5"]), &[]),
            ip("127.0.0.1")
        );
    }
}
