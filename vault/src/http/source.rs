//! The address a request came from, as the per-address rate limits see it.
//!
//! Behind a load balancer or TLS terminator every request's TCP peer is the proxy, so limits
//! keyed on the peer would put every cardholder in one bucket (one busy minute, or one
//! attacker, and the card form answers 429 to everyone). When the peer is one of
//! `limits.trusted_proxies`, the source is read from `X-Forwarded-For` instead: walking from
//! the right (each proxy appends the address it received the request from), the first address
//! that is not itself a trusted proxy. Everything left of it was written by the client and is
//! not believed, so a client cannot pick its own bucket. Without trusted proxies the header is
//! ignored entirely.
//!
//! Hops are split on the raw bytes: proxies such as nginx append the client's address to the
//! line the client sent, so a client's unreadable bytes stay left of the hop we read. A hop
//! written by a trusted proxy that cannot be read (or `unknown`) is its own source,
//! [`UNKNOWN_SOURCE`], never the proxy's address, which every request without the header
//! shares.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The source of requests whose nearest forwarded hop cannot be read: an address of the IPv6
/// discard prefix (RFC 6666), which no client has.
pub const UNKNOWN_SOURCE: IpAddr = IpAddr::V6(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 1));

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `limits.trusted_proxies`: each an address (`10.0.0.7`) or a network
    /// (`10.0.0.0/8`, `fd00::/8`).
    ///
    /// # Errors
    ///
    /// A fixed message naming the setting.
    pub fn parse(entries: &[String]) -> Result<Self, &'static str> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                let net = e
                    .parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        "each limits.trusted_proxies entry must be an IP address (10.0.0.7) or a network (10.0.0.0/8)"
                    })?;
                if net.prefix_len() == 0 {
                    return Err(
                        "limits.trusted_proxies must not list every address (0.0.0.0/0, ::/0): that would believe every client's X-Forwarded-For",
                    );
                }
                Ok(unmapped(net))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        let addr = unmapped_addr(addr);
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The source of a request whose TCP peer is `peer`.
    pub fn source(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut nearest = peer;
        for line in headers.get_all("x-forwarded-for").iter().rev() {
            for hop in line.as_bytes().rsplit(|b| *b == b',') {
                // Written by a proxy we trust, yet unreadable: a source of its own kind.
                let Some(addr) = hop_address(hop) else {
                    return Some(UNKNOWN_SOURCE);
                };
                if !self.trusts(addr) {
                    return Some(addr);
                }
                nearest = addr;
            }
        }
        Some(nearest)
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One `X-Forwarded-For` hop: an address, or an address and port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as proxies write them.
fn hop_address(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?.trim();
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(unmapped_addr)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn unmapped_addr(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// A network written in IPv4-mapped form (`::ffff:10.0.0.0/104`) as the IPv4 network it is,
/// so it matches the unmapped addresses it is compared with.
fn unmapped(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(v4net) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(v4net.trunc());
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        let peer = Some(ip("203.0.113.9"));
        assert_eq!(none.source(peer, &forwarded(&["198.51.100.1"])), peer);
    }

    #[test]
    fn behind_a_trusted_proxy_the_nearest_untrusted_hop_is_the_source() {
        let lb = TrustedProxies::parse(&["10.0.0.0/8".to_owned(), "192.0.2.1".to_owned()]).unwrap();
        let peer = Some(ip("10.1.2.3"));
        assert_eq!(
            lb.source(peer, &forwarded(&["198.51.100.7"])),
            Some(ip("198.51.100.7"))
        );
        // A client cannot choose its bucket: what it wrote is left of what the proxy appended.
        assert_eq!(
            lb.source(peer, &forwarded(&["1.1.1.1, 198.51.100.7"])),
            Some(ip("198.51.100.7"))
        );
        // Two proxies deep, across two header lines.
        assert_eq!(
            lb.source(peer, &forwarded(&["1.1.1.1, 198.51.100.8", "192.0.2.1"])),
            Some(ip("198.51.100.8"))
        );
        // A peer outside the list is its own source, whatever it claims.
        assert_eq!(
            lb.source(Some(ip("203.0.113.5")), &forwarded(&["198.51.100.7"])),
            Some(ip("203.0.113.5"))
        );
        // No header: the proxy itself. A hop it wrote that cannot be read: the unknown source,
        // not the proxy's bucket.
        assert_eq!(lb.source(peer, &HeaderMap::new()), peer);
        assert_eq!(
            lb.source(peer, &forwarded(&["not-an-address"])),
            Some(UNKNOWN_SOURCE)
        );
        // A client's unreadable bytes stay left of the hop its proxy appended.
        let mut spoiled = HeaderMap::new();
        spoiled.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\x80\xff, 198.51.100.7").unwrap(),
        );
        assert_eq!(lb.source(peer, &spoiled), Some(ip("198.51.100.7")));
        // Ports, as some proxies write them.
        assert_eq!(
            lb.source(peer, &forwarded(&["198.51.100.9:4711"])),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(
            lb.source(peer, &forwarded(&["[2001:db8::9]:443"])),
            Some(ip("2001:db8::9"))
        );
        // An IPv4 peer seen as IPv4-mapped IPv6 is still the trusted proxy.
        assert_eq!(
            lb.source(Some(ip("::ffff:10.1.2.3")), &forwarded(&["198.51.100.7"])),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn entries_are_addresses_or_networks() {
        assert!(TrustedProxies::parse(&["fd00::/8".to_owned(), "::1".to_owned()]).is_ok());
        let mapped = TrustedProxies::parse(&["::ffff:10.0.0.0/104".to_owned()]).unwrap();
        assert_eq!(
            mapped.source(Some(ip("10.9.9.9")), &forwarded(&["198.51.100.7"])),
            Some(ip("198.51.100.7")),
            "a mapped network matches the IPv4 peers it means"
        );
        for bad in [
            "10.0.0.0/33",
            "proxy.internal",
            "",
            "10.0.0.0/8,",
            "0.0.0.0/0",
            "::/0",
        ] {
            assert!(TrustedProxies::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
