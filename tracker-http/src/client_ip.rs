//! The client's IP address: the socket's peer, or, when that peer is a
//! trusted proxy (`--trusted-proxies`), the right-most address in
//! `Forwarded` / `X-Forwarded-For` that is not a trusted proxy.
//!
//! Walking from the right is what makes the header safe to use: each
//! trusted proxy appends the address it received the request from, so
//! everything right of the first untrusted address was written by our own
//! proxies, and everything left of it may be forged by the client. Headers
//! from an untrusted peer are never read.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, header};
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Proxies in `networks`; empty trusts none.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks.into_iter().map(canonical_net).collect())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with `headers`.
    ///
    /// ```
    /// use axum::http::HeaderMap;
    /// use tracker_http::client_ip::TrustedProxies;
    ///
    /// let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.2".parse().unwrap());
    /// let from_proxy = "10.0.0.1:4000".parse().unwrap();
    /// assert_eq!(proxies.client_ip(from_proxy, &headers).to_string(), "198.51.100.7");
    /// let from_client = "203.0.113.9:4000".parse().unwrap();
    /// assert_eq!(proxies.client_ip(from_client, &headers).to_string(), "203.0.113.9");
    /// ```
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer.ip());
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let forwarded = headers.get_all(header::FORWARDED);
        let hops: Vec<&str> = if forwarded.iter().next().is_some() {
            forwarded
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|element| {
                    element
                        .split(';')
                        .find_map(|pair| {
                            let (key, value) = pair.trim().split_once('=')?;
                            key.eq_ignore_ascii_case("for").then_some(value)
                        })
                        .unwrap_or("")
                })
                .collect()
        } else {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .collect()
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            // A hop that is not an address (`unknown`, an obfuscated
            // identifier, garbage) ends the walk: the proxy that wrote it
            // is the last address known.
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 client.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is the IPv4
/// network: addresses are compared as [`canonical`] makes them, so as
/// written it would never contain a proxy.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, IpNet::V4),
        _ => net,
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:80"`, `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    let inner = hop.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn untrusted_peers_headers_are_ignored() {
        let spoof = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        let peer = "198.51.100.1:1".parse().unwrap();
        assert_eq!(
            TrustedProxies::default()
                .client_ip(peer, &spoof)
                .to_string(),
            "198.51.100.1"
        );
        assert_eq!(
            proxies(&["10.0.0.0/8"]).client_ip(peer, &spoof).to_string(),
            "198.51.100.1"
        );
    }

    #[test]
    fn right_most_untrusted_hop() {
        let p = proxies(&["10.0.0.0/8", "2001:db8::/32"]);
        let peer: SocketAddr = "10.1.1.1:1".parse().unwrap();
        let ip = |pairs: &[(&str, &str)]| p.client_ip(peer, &headers(pairs)).to_string();
        assert_eq!(ip(&[("x-forwarded-for", "6.6.6.6, 7.7.7.7")]), "7.7.7.7");
        assert_eq!(
            ip(&[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "7.7.7.7, 10.0.0.9")
            ]),
            "7.7.7.7"
        );
        assert_eq!(
            ip(&[("x-forwarded-for", "10.0.0.7, 10.0.0.9")]),
            "10.0.0.7",
            "all trusted: the left-most"
        );
        assert_eq!(
            ip(&[("x-forwarded-for", "6.6.6.6, garbage, 10.0.0.9")]),
            "10.0.0.9"
        );
        assert_eq!(ip(&[]), "10.1.1.1");
        assert_eq!(
            ip(&[(
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db9::1]:4711\";proto=https, for=10.0.0.3"
            )]),
            "2001:db9::1"
        );
        assert_eq!(
            ip(&[("forwarded", "for=7.7.7.7"), ("x-forwarded-for", "8.8.8.8")]),
            "7.7.7.7",
            "Forwarded wins over X-Forwarded-For"
        );
        assert_eq!(
            ip(&[("x-forwarded-for", "::ffff:5.5.5.5:80")]),
            "10.1.1.1",
            "not a valid hop"
        );
        assert_eq!(ip(&[("x-forwarded-for", "::ffff:5.5.5.5")]), "5.5.5.5");
        let mapped_peer: SocketAddr = "[::ffff:10.1.1.1]:1".parse().unwrap();
        assert_eq!(
            p.client_ip(mapped_peer, &headers(&[("x-forwarded-for", "9.9.9.9")]))
                .to_string(),
            "9.9.9.9"
        );
    }

    /// Proxies given as IPv4-mapped IPv6 (as a dual-stack socket shows
    /// them) are the IPv4 proxies, whichever way the peer appears.
    #[test]
    fn mapped_proxy_networks_are_their_ipv4_networks() {
        let p = proxies(&["::ffff:10.0.0.0/104", "::ffff:192.0.2.1/128"]);
        let xff = headers(&[("x-forwarded-for", "9.9.9.9, 192.0.2.1")]);
        for peer in ["10.1.1.1:1", "[::ffff:10.1.1.1]:1"] {
            let peer: SocketAddr = peer.parse().unwrap();
            assert_eq!(p.client_ip(peer, &xff).to_string(), "9.9.9.9", "{peer}");
        }
        let outside: SocketAddr = "11.0.0.1:1".parse().unwrap();
        assert_eq!(p.client_ip(outside, &xff).to_string(), "11.0.0.1");
    }
}
