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

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

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
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        "each limits.trusted_proxies entry must be an IP address (10.0.0.7) or a network (10.0.0.0/8)"
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            IpAddr::V4(_) => addr,
        };
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
            let Ok(line) = line.to_str() else {
                return Some(nearest);
            };
            for hop in line.rsplit(',') {
                // Anything unreadable ends the walk at the last hop we could trust to have
                // written it.
                let Ok(addr) = hop.trim().parse::<IpAddr>() else {
                    return Some(nearest);
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
        // No header, or garbage: the proxy itself.
        assert_eq!(lb.source(peer, &HeaderMap::new()), peer);
        assert_eq!(lb.source(peer, &forwarded(&["not-an-address"])), peer);
        // An IPv4 peer seen as IPv4-mapped IPv6 is still the trusted proxy.
        assert_eq!(
            lb.source(Some(ip("::ffff:10.1.2.3")), &forwarded(&["198.51.100.7"])),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn entries_are_addresses_or_networks() {
        assert!(TrustedProxies::parse(&["fd00::/8".to_owned(), "::1".to_owned()]).is_ok());
        for bad in ["10.0.0.0/33", "proxy.internal", "", "10.0.0.0/8,"] {
            assert!(TrustedProxies::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
