//! `dns_sd_configs` (Prometheus `discovery/dns.SDConfig`): names to resolve,
//! the record type, the port for record types that carry none, and the
//! refresh interval. Defaults and validation messages follow Prometheus's
//! `UnmarshalYAML`: type `SRV`, refresh 30s, at least one name, and a port
//! for every type except SRV.

use std::time::Duration;

use crate::decode::{duration, index, seq, string, string_list, unsigned, Ctx, Fields};
use crate::emit::{MapY, Y};
use crate::yaml::Node;

const DNS_SD_DEFAULT_REFRESH: Duration = Duration::from_secs(30);

/// The DNS record type a `dns_sd_configs` entry queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsRecordType {
    Srv,
    A,
    Aaaa,
    Mx,
    Ns,
}

impl DnsRecordType {
    /// Parses the config spelling; Prometheus upper-cases before matching.
    pub fn from_name(name: &str) -> Option<DnsRecordType> {
        match name.to_ascii_uppercase().as_str() {
            "SRV" => Some(DnsRecordType::Srv),
            "A" => Some(DnsRecordType::A),
            "AAAA" => Some(DnsRecordType::Aaaa),
            "MX" => Some(DnsRecordType::Mx),
            "NS" => Some(DnsRecordType::Ns),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DnsRecordType::Srv => "SRV",
            DnsRecordType::A => "A",
            DnsRecordType::Aaaa => "AAAA",
            DnsRecordType::Mx => "MX",
            DnsRecordType::Ns => "NS",
        }
    }
}

/// One `dns_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSdConfig {
    pub names: Vec<String>,
    pub refresh_interval: Duration,
    pub record_type: DnsRecordType,
    /// Target port for A, AAAA, MX and NS answers; ignored for SRV, whose
    /// records carry their own port.
    pub port: u16,
}

pub(crate) fn dns_sd_configs(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<DnsSdConfig>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "dns.SDConfig") else {
            continue;
        };
        if let Some(cfg) = dns_sd_config(ctx, &mut f, &p) {
            out.push(cfg);
        }
        f.finish(ctx);
    }
    Some(out)
}

fn dns_sd_config(ctx: &mut Ctx, f: &mut Fields, path: &str) -> Option<DnsSdConfig> {
    let names = f.get(ctx, "names", string_list).unwrap_or_default();
    if names.is_empty() {
        ctx.error(
            f.pos,
            path,
            "DNS-SD config must contain at least one SRV record name",
        );
    }
    let refresh_interval = f
        .get(ctx, "refresh_interval", duration)
        .filter(|d| !d.is_zero())
        .unwrap_or(DNS_SD_DEFAULT_REFRESH);
    let port = match f.get(ctx, "port", unsigned) {
        None => 0,
        Some(p) => match u16::try_from(p) {
            Ok(p) => p,
            Err(_) => {
                ctx.error(
                    f.pos_of("port"),
                    &f.path_of("port"),
                    format!("port {p} is out of range"),
                );
                0
            }
        },
    };
    let type_name = f
        .get(ctx, "type", string)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "SRV".to_string());
    let Some(record_type) = DnsRecordType::from_name(&type_name) else {
        ctx.error(
            f.pos_of("type"),
            &f.path_of("type"),
            format!("invalid DNS-SD records type {type_name}"),
        );
        return None;
    };
    if record_type != DnsRecordType::Srv && port == 0 {
        ctx.error(
            f.pos,
            path,
            "a port is required in DNS-SD configs for all record types except SRV",
        );
    }
    Some(DnsSdConfig {
        names,
        refresh_interval,
        record_type,
        port,
    })
}

pub(crate) fn dns_sd_yaml(c: &DnsSdConfig) -> Y {
    let mut m = MapY::default();
    m.list("names", &c.names)
        .duration("refresh_interval", c.refresh_interval)
        .str("type", c.record_type.name())
        .raw("port", c.port);
    m.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_type_names_are_case_insensitive() {
        assert_eq!(DnsRecordType::from_name("srv"), Some(DnsRecordType::Srv));
        assert_eq!(DnsRecordType::from_name("Aaaa"), Some(DnsRecordType::Aaaa));
        assert_eq!(DnsRecordType::from_name("TXT"), None);
    }
}
