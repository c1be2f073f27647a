//! Where the proxy may send card data and signed events (docs/ARCHITECTURE.md §9.3).
//!
//! - The bank and the vault are upstreams of the card-data environment: `https` only, but for
//!   loopback addresses in development or an explicit, loudly logged `allow_insecure_http`.
//! - The bank client resolves only the configured host, and only to addresses that are public
//!   or, when `bank131.allowed_networks` is set, within those networks: DNS that starts
//!   answering with an internal or unexpected address (rebinding) gets nothing.
//! - App webhook URLs come from non-PCI parties: they may not point at loopback, private,
//!   link-local, carrier-grade-NAT or cloud-metadata addresses, checked when a client is created
//!   and again on the resolved address at every delivery, unless
//!   `webhooks.allow_private_networks` is set (development).
//!
//! Written here rather than taken from a crate: it is a dozen address ranges and a resolver
//! wrapper; `ipnet` parses the configured networks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a destination was refused. Names no URL or address (they come from configuration or
/// from an app, and may hold credentials).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// Not an `http(s)://` URL with a host.
    #[error("not an http:// or https:// URL with a host")]
    NotHttp,
    /// Plain http to something other than loopback, without `allow_insecure_http`.
    #[error("must be https (http is allowed only to loopback, or with allow_insecure_http = true)")]
    Insecure,
    /// The destination is loopback, private, link-local, carrier-grade NAT or a metadata
    /// address.
    #[error("points at a loopback, private, link-local or metadata address")]
    PrivateAddress,
    /// The name does not resolve, or only to refused addresses.
    #[error("does not resolve to an allowed address")]
    Unresolvable,
}

/// Whether `ip` is a destination a non-PCI party may not make the proxy reach: loopback,
/// unspecified, private (RFC 1918, unique-local), link-local (which holds the cloud metadata
/// services, 169.254.169.254 and fd00:ec2::254 alike), carrier-grade NAT, multicast, broadcast,
/// documentation and benchmarking ranges. IPv4-mapped IPv6 addresses are judged as IPv4.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64.0.0/10
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18.0.0/15
        || a >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7 (the EC2 metadata fd00:ec2::254)
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

/// Whether the URL's host is a loopback address or `localhost`.
fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Checks an upstream of the card-data environment (`bank131.base_url`, `vault.url`): https, or
/// http to loopback, or http with `allow_insecure_http`.
///
/// # Errors
///
/// [`EgressError::NotHttp`] or [`EgressError::Insecure`].
pub fn check_upstream(url: &str, allow_insecure_http: bool) -> Result<Url, EgressError> {
    let parsed = Url::parse(url).map_err(|_| EgressError::NotHttp)?;
    if parsed.host().is_none() {
        return Err(EgressError::NotHttp);
    }
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback_host(&parsed) || allow_insecure_http => Ok(parsed),
        "http" => Err(EgressError::Insecure),
        _ => Err(EgressError::NotHttp),
    }
}

/// Checks an app webhook URL when a client is created: http(s), and (unless private networks
/// are allowed) a host that is not, and does not resolve to, an internal address.
///
/// # Errors
///
/// [`EgressError`].
pub async fn check_webhook_url(url: &str, allow_private: bool) -> Result<(), EgressError> {
    let parsed = Url::parse(url).map_err(|_| EgressError::NotHttp)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(EgressError::NotHttp);
    }
    let host = parsed.host_str().ok_or(EgressError::NotHttp)?.to_owned();
    if allow_private {
        return Ok(());
    }
    if is_loopback_host(&parsed) {
        return Err(EgressError::PrivateAddress);
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| EgressError::Unresolvable)?
        .collect();
    if addrs.is_empty() {
        return Err(EgressError::Unresolvable);
    }
    if addrs.iter().any(|a| is_internal(a.ip())) {
        return Err(EgressError::PrivateAddress);
    }
    Ok(())
}

/// Checks, just before a delivery, a webhook URL whose host is an IP literal (reqwest connects
/// to those without resolving, so [`PublicOnly`] never sees them).
///
/// # Errors
///
/// [`EgressError::PrivateAddress`] or [`EgressError::NotHttp`].
pub fn check_literal_destination(url: &str, allow_private: bool) -> Result<(), EgressError> {
    let parsed = Url::parse(url).map_err(|_| EgressError::NotHttp)?;
    if allow_private {
        return Ok(());
    }
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        // Names, `localhost` included, are judged by [`PublicOnly`] on what they resolve to.
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(EgressError::NotHttp),
    };
    if is_internal(ip) {
        Err(EgressError::PrivateAddress)
    } else {
        Ok(())
    }
}

/// A resolver that answers only with acceptable addresses: those within `allowed` when it is
/// not empty, else any that is not [`is_internal`]. With `only_host`, every other name is
/// refused outright (the bank client talks to one host).
#[derive(Clone, Debug)]
pub struct PublicOnly {
    only_host: Option<String>,
    allowed: Arc<Vec<IpNet>>,
    allow_internal: bool,
}

impl PublicOnly {
    /// For app webhooks: any name, public addresses only.
    pub fn any_host() -> Self {
        Self {
            only_host: None,
            allowed: Arc::default(),
            allow_internal: false,
        }
    }

    /// For the bank: `url`'s host only, to addresses within `allowed` (or public ones when it is
    /// empty). A loopback base URL (the sandbox, in development) may resolve to loopback.
    pub fn pinned(url: &Url, allowed: Vec<IpNet>) -> Self {
        Self {
            only_host: url.host_str().map(str::to_ascii_lowercase),
            allow_internal: is_loopback_host(url),
            allowed: Arc::new(allowed),
        }
    }

    fn acceptable(&self, ip: IpAddr) -> bool {
        if !self.allowed.is_empty() {
            return self.allowed.iter().any(|net| net.contains(&ip));
        }
        self.allow_internal || !is_internal(ip)
    }
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            if this.only_host.as_ref().is_some_and(|h| *h != host) {
                tracing::error!("refused to resolve a host other than the configured bank's");
                return Err(Box::new(EgressError::Unresolvable) as _);
            }
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| this.acceptable(a.ip()))
                .collect();
            if found.is_empty() {
                tracing::error!(
                    "refused a destination: its name resolves to no allowed address (internal, or outside the allowed networks)"
                );
                return Err(Box::new(EgressError::Unresolvable) as _);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["8.8.8.8", "185.71.76.1", "2a00:1450:4010::64"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn upstreams_are_https_but_for_loopback_or_explicit_leave() {
        assert!(check_upstream("https://proxy.bank131.ru", false).is_ok());
        assert!(check_upstream("http://127.0.0.1:8131", false).is_ok());
        assert!(check_upstream("http://localhost:8200", false).is_ok());
        assert!(check_upstream("http://[::1]:8200", false).is_ok());
        assert_eq!(
            check_upstream("http://vault.internal:8200", false),
            Err(EgressError::Insecure)
        );
        assert!(check_upstream("http://vault.internal:8200", true).is_ok());
        assert_eq!(check_upstream("ftp://x", true), Err(EgressError::NotHttp));
        assert_eq!(check_upstream("not a url", true), Err(EgressError::NotHttp));
    }

    #[tokio::test]
    async fn webhook_urls_may_not_point_inside() {
        for bad in [
            "http://127.0.0.1:9000/hooks",
            "http://localhost/hooks",
            "http://LOCALHOST/hooks",
            "http://169.254.169.254/latest/meta-data",
            "https://10.0.0.5/hooks",
            "http://[::1]/hooks",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
            // Spellings of 127.0.0.1 a URL parser normalises.
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://user:pass@127.0.0.1/",
        ] {
            assert_eq!(
                check_webhook_url(bad, false).await,
                Err(EgressError::PrivateAddress),
                "{bad}"
            );
            if !bad.to_ascii_lowercase().contains("localhost") {
                // Names are left to the resolver at delivery.
                assert_eq!(
                    check_literal_destination(bad, false),
                    Err(EgressError::PrivateAddress),
                    "{bad}"
                );
            }
            assert!(check_webhook_url(bad, true).await.is_ok(), "{bad}");
        }
        assert_eq!(
            check_webhook_url("ftp://shop.example/", false).await,
            Err(EgressError::NotHttp)
        );
        assert!(check_literal_destination("https://8.8.8.8/hooks", false).is_ok());
    }

    #[tokio::test]
    async fn the_pinned_resolver_answers_for_its_host_only() {
        let bank = Url::parse("http://localhost:8131").unwrap();
        let resolver = PublicOnly::pinned(&bank, Vec::new());
        let found: Vec<SocketAddr> = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!found.is_empty());
        assert!(
            resolver
                .resolve("example.com".parse().unwrap())
                .await
                .is_err()
        );
        // Public-only: localhost resolves, but to nothing allowed.
        assert!(
            PublicOnly::any_host()
                .resolve("localhost".parse().unwrap())
                .await
                .is_err()
        );
        // An allowlist that does not hold the address.
        let pinned = PublicOnly::pinned(&bank, vec!["203.0.113.0/24".parse().unwrap()]);
        assert!(pinned.resolve("localhost".parse().unwrap()).await.is_err());
    }
}
