//! `round_robin_dns`: a resolver that hands each new connection the
//! resolved addresses rotated by one more position than the last, so
//! connections spread across every address of a multi-A-record host.
//!
//! Prometheus dials a random resolved IP per new connection; rotation gives
//! the same spread with a deterministic order (easier to test and fairer
//! over few connections). Resolution happens per new connection (hyper only
//! resolves when it dials), so DNS changes are picked up as connections are
//! replaced.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// See the module docs. `hosts` is a static table consulted before system
/// DNS (like `/etc/hosts`), for tests and pinned endpoints.
#[derive(Debug, Default)]
pub struct RoundRobinResolver {
    next: AtomicUsize,
    hosts: Vec<(String, Vec<IpAddr>)>,
}

impl RoundRobinResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Names in `hosts` resolve to the given addresses (case-insensitive).
    pub fn with_hosts(hosts: Vec<(String, Vec<IpAddr>)>) -> Self {
        Self {
            next: AtomicUsize::new(0),
            hosts: hosts
                .into_iter()
                .map(|(name, ips)| (name.to_ascii_lowercase(), ips))
                .collect(),
        }
    }

    fn fixed(&self, name: &str) -> Option<Vec<SocketAddr>> {
        self.hosts
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, ips)| ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect())
    }
}

impl Resolve for RoundRobinResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let fixed = self.fixed(name.as_str());
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let mut addrs: Vec<SocketAddr> = match fixed {
                Some(addrs) => addrs,
                // Port 0: reqwest substitutes the URL's (or scheme's) port.
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            if !addrs.is_empty() {
                let shift = turn % addrs.len();
                addrs.rotate_left(shift);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_resolution_starts_one_address_later() {
        let ips: Vec<IpAddr> = (1..=3).map(|i| IpAddr::from([127, 0, 0, i])).collect();
        let r = RoundRobinResolver::with_hosts(vec![("Rr.Test".into(), ips.clone())]);
        let mut firsts = Vec::new();
        for _ in 0..4 {
            let name: Name = "rr.test".parse().unwrap();
            let addrs: Vec<SocketAddr> = r.resolve(name).await.unwrap().collect();
            assert_eq!(addrs.len(), 3);
            firsts.push(addrs[0].ip());
        }
        assert_eq!(firsts, vec![ips[0], ips[1], ips[2], ips[0]]);
    }
}
