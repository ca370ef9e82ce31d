//! `dns_sd_configs`: targets from SRV, A, AAAA, MX or NS answers, refreshed
//! every `refresh_interval`.
//!
//! Behaviour follows Prometheus's `discovery/dns` (dns.go and the label list
//! of configuration.md `<dns_sd_config>`):
//! * one target group per configured name, with `source` = the name;
//! * every target carries `__meta_dns_name` (the name as configured), and
//!   `__meta_dns_srv_record_target` / `__meta_dns_srv_record_port`,
//!   `__meta_dns_mx_record_target` or `__meta_dns_ns_record_target` for the
//!   matching record type (the record target keeps its trailing dot; the
//!   `__address__` host drops it);
//! * SRV answers carry their port, the other types use the configured one;
//!   CNAMEs in the answer are skipped;
//! * "no such name" (NXDOMAIN) and "no records of that type" are valid,
//!   empty answers that clear the group; any other failure (timeout,
//!   SERVFAIL, REFUSED) keeps that name's last good group.
//!
//! Resolution uses hickory-resolver with the system configuration
//! (`/etc/resolv.conf`: nameservers, `search`, `ndots`, like Go's resolver),
//! with its cache disabled so every refresh asks the servers; tests and
//! callers may pin explicit nameservers instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tributary_config::{DnsRecordType, DnsSdConfig};
use tributary_model::Labels;

use crate::group::TargetGroup;
use crate::refresh::{join_host_port, ProviderCtx};

#[derive(Debug, thiserror::Error)]
pub enum DnsSdError {
    #[error("could not configure the DNS resolver: {0}")]
    Resolver(String),
    #[error("could not resolve {name:?}: {reason}")]
    Lookup { name: String, reason: String },
}

/// Environment variable naming the DNS servers `dns_sd_configs` asks
/// instead of `/etc/resolv.conf`'s: comma-separated `ip:port`. resolv.conf
/// cannot name a port, so this is how a resolver on another port (a local
/// dnsmasq, the binary's end-to-end tests) is reached. Not a Prometheus
/// setting; unset means the system configuration, as in Prometheus.
pub const NAMESERVERS_ENV: &str = "TRIBUTARY_DNS_SD_NAMESERVERS";

/// Parses [`NAMESERVERS_ENV`]'s value.
pub(crate) fn parse_nameservers(value: &str) -> Result<Vec<SocketAddr>, DnsSdError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<SocketAddr>().map_err(|e| {
                DnsSdError::Resolver(format!("{NAMESERVERS_ENV}: {s:?} is not ip:port: {e}"))
            })
        })
        .collect()
}

/// The nameservers from [`NAMESERVERS_ENV`]; empty (the system resolver)
/// when unset. A malformed value is logged as an error and ignored, so a
/// typo cannot stop the agent, but is never silent.
pub(crate) fn nameservers_from_env() -> Vec<SocketAddr> {
    let Ok(value) = std::env::var(NAMESERVERS_ENV) else {
        return Vec::new();
    };
    match parse_nameservers(&value) {
        Ok(servers) => servers,
        Err(e) => {
            tracing::error!(err = %e, "Ignoring the DNS SD nameserver override");
            Vec::new()
        }
    }
}

/// Builds the resolver: the system configuration, or exactly `nameservers`
/// (UDP with TCP fallback) when given.
pub(crate) fn build_resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, DnsSdError> {
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| DnsSdError::Resolver(e.to_string()))?
    } else {
        let servers = nameservers
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for conn in &mut ns.connections {
                    conn.port = addr.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let opts = builder.options_mut();
    // Prometheus asks the DNS servers on every refresh: no answer cache, and
    // /etc/hosts is not consulted.
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    // Like Go's miekg/dns client Prometheus uses: 2s per exchange, each
    // server asked once per refresh.
    opts.timeout = std::time::Duration::from_secs(2);
    opts.attempts = 1;
    builder
        .build()
        .map_err(|e| DnsSdError::Resolver(e.to_string()))
}

fn query_type(t: DnsRecordType) -> RecordType {
    match t {
        DnsRecordType::Srv => RecordType::SRV,
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
        DnsRecordType::Mx => RecordType::MX,
        DnsRecordType::Ns => RecordType::NS,
    }
}

/// Resolves one configured name into its target group. `Ok` with no
/// targets for NXDOMAIN / NODATA; `Err` when the answer is unknown.
pub(crate) async fn lookup_group(
    resolver: &TokioResolver,
    name: &str,
    record_type: DnsRecordType,
    port: u16,
) -> Result<TargetGroup, DnsSdError> {
    let lookup = match resolver.lookup(name, query_type(record_type)).await {
        Ok(lookup) => lookup,
        Err(NetError::Dns(DnsError::NoRecordsFound(none)))
            if matches!(
                none.response_code,
                ResponseCode::NXDomain | ResponseCode::NoError
            ) =>
        {
            return Ok(empty_group(name));
        }
        Err(e) => {
            return Err(DnsSdError::Lookup {
                name: name.to_string(),
                reason: e.to_string(),
            })
        }
    };
    let mut targets = Vec::with_capacity(lookup.answers().len());
    for record in lookup.answers() {
        if let Some(labels) = target_labels(name, &record.data, port) {
            targets.push(labels);
        }
    }
    Ok(TargetGroup {
        source: name.to_string(),
        targets,
        labels: Labels::empty(),
    })
}

fn empty_group(name: &str) -> TargetGroup {
    TargetGroup {
        source: name.to_string(),
        targets: Vec::new(),
        labels: Labels::empty(),
    }
}

/// The labels of one answer record; `None` for records that are not
/// targets (CNAMEs of the chain, anything unexpected).
fn target_labels(name: &str, data: &RData, port: u16) -> Option<Labels> {
    let (address, record_label) = match data {
        RData::SRV(srv) => {
            let target = srv.target.to_string();
            let address = join_host_port(target.trim_end_matches('.'), srv.port);
            let port_value = srv.port.to_string();
            return Some(Labels::from_pairs([
                ("__address__", address.as_str()),
                ("__meta_dns_name", name),
                ("__meta_dns_srv_record_target", target.as_str()),
                ("__meta_dns_srv_record_port", port_value.as_str()),
            ]));
        }
        RData::MX(mx) => {
            let target = mx.exchange.to_string();
            let address = join_host_port(target.trim_end_matches('.'), port);
            (address, Some(("__meta_dns_mx_record_target", target)))
        }
        RData::NS(ns) => {
            let target = ns.0.to_string();
            let address = join_host_port(target.trim_end_matches('.'), port);
            (address, Some(("__meta_dns_ns_record_target", target)))
        }
        RData::A(a) => (join_host_port(&a.0.to_string(), port), None),
        RData::AAAA(aaaa) => (join_host_port(&aaaa.0.to_string(), port), None),
        RData::CNAME(_) => return None,
        other => {
            tracing::warn!(record = ?other.record_type(), "Invalid record");
            return None;
        }
    };
    let mut pairs = vec![
        ("__address__", address),
        ("__meta_dns_name", name.to_string()),
    ];
    if let Some((label, value)) = record_label {
        pairs.push((label, value));
    }
    Some(Labels::from_pairs(pairs))
}

/// Looks every name up concurrently and merges the answers into `last`
/// (the last good group per name). Returns the groups in configuration
/// order, or an error when every lookup failed.
async fn refresh(
    resolver: &TokioResolver,
    cfg: &DnsSdConfig,
    last: &mut BTreeMap<String, TargetGroup>,
    ctx: &ProviderCtx,
) -> Result<Vec<TargetGroup>, String> {
    let mut lookups = JoinSet::new();
    for name in &cfg.names {
        let resolver = resolver.clone();
        let name = name.clone();
        let (record_type, port) = (cfg.record_type, cfg.port);
        lookups.spawn(async move { lookup_group(&resolver, &name, record_type, port).await });
    }
    let mut errors = Vec::new();
    while let Some(joined) = lookups.join_next().await {
        ctx.metrics.dns_lookups.inc();
        match joined {
            Ok(Ok(group)) => {
                last.insert(group.source.clone(), group);
            }
            Ok(Err(e)) => {
                ctx.metrics.dns_lookup_failures.inc();
                tracing::error!(err = %e, "Error refreshing DNS targets");
                errors.push(e.to_string());
            }
            Err(e) => errors.push(format!("DNS lookup task failed: {e}")),
        }
    }
    if !errors.is_empty() && errors.len() == cfg.names.len() {
        return Err(errors.join("; "));
    }
    Ok(cfg
        .names
        .iter()
        .filter_map(|n| last.get(n).cloned())
        .collect())
}

/// The provider task: resolves every `refresh_interval` until cancelled.
pub(crate) async fn run(ctx: ProviderCtx, cfg: DnsSdConfig, nameservers: Vec<SocketAddr>) {
    let resolver = match build_resolver(&nameservers) {
        Ok(r) => r,
        Err(e) => {
            ctx.count_failure();
            tracing::error!(err = %e, "Cannot start DNS service discovery");
            let _ = ctx.report(Err(e.to_string())).await;
            return;
        }
    };
    let mut last = BTreeMap::new();
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            r = refresh(&resolver, &cfg, &mut last, &ctx) => r,
        };
        if !ctx.complete_refresh(started, result).await
            || !ctx.sleep_until(started + cfg.refresh_interval).await
        {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::{NS, SRV};
    use hickory_resolver::proto::rr::Name;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn nameserver_override_parses_ip_port_lists() {
        assert_eq!(
            parse_nameservers("127.0.0.1:5353, [::1]:53").unwrap(),
            vec![
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert!(parse_nameservers("").unwrap().is_empty());
        let err = parse_nameservers("127.0.0.1").unwrap_err().to_string();
        assert!(err.contains("is not ip:port"), "{err}");
    }

    #[test]
    fn ns_record_keeps_rooted_target_in_meta_label() {
        let labels = target_labels(
            "example.test",
            &RData::NS(NS(name("ns1.example.test."))),
            53,
        )
        .unwrap();
        assert_eq!(labels.get("__address__"), Some("ns1.example.test:53"));
        assert_eq!(
            labels.get("__meta_dns_ns_record_target"),
            Some("ns1.example.test.")
        );
        assert_eq!(labels.get("__meta_dns_name"), Some("example.test"));
        assert_eq!(labels.get("__meta_dns_srv_record_target"), None);
    }

    #[test]
    fn srv_record_uses_its_own_port() {
        let srv = SRV::new(0, 5, 8443, name("api.example.test."));
        let labels = target_labels("_api._tcp.example.test", &RData::SRV(srv), 1).unwrap();
        assert_eq!(labels.get("__address__"), Some("api.example.test:8443"));
        assert_eq!(labels.get("__meta_dns_srv_record_port"), Some("8443"));
    }

    #[test]
    fn cname_is_not_a_target() {
        let cname = hickory_resolver::proto::rr::rdata::CNAME(name("x.example.test."));
        assert!(target_labels("a", &RData::CNAME(cname), 80).is_none());
    }
}
