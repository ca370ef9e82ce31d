//! `docker_sd_configs`: one target per container network and exposed TCP
//! port, from the Docker Engine API (`GET /containers/json` and
//! `GET /networks`), refreshed every `refresh_interval`.
//!
//! Behaviour and labels follow Prometheus's `discovery/moby` (docker.go,
//! network.go; label list in configuration.md `<docker_sd_config>`):
//! * one group, source `Docker`; containers without a name are skipped;
//! * `__meta_docker_container_{id,name,network_mode}` and
//!   `__meta_docker_container_label_<name>` (sanitized) on every target;
//! * per network: `__meta_docker_network_ip` plus the network's
//!   `__meta_docker_network_{id,name,scope,internal,ingress}` and
//!   `__meta_docker_network_label_<name>`;
//! * per TCP port: `__address__` = network IP and private port,
//!   `__meta_docker_port_private`, and for mapped ports
//!   `__meta_docker_port_public` / `__meta_docker_port_public_ip`;
//! * without a TCP port: one target on the configured `port`, or
//!   `host_networking_host` for `host` network mode;
//! * containers in `container:<id>` network mode borrow that container's
//!   networks; with `match_first_network` only the alphabetically first
//!   network of a multi-network container is used.
//!
//! `host` may be `unix://`, `tcp://` (plain HTTP, like the Docker client
//! without TLS), `http://` or `https://`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;
use tokio::time::Instant;
use tributary_config::DockerSdConfig;
use tributary_model::Labels;

use crate::api::{query_string, ApiClient};
use crate::group::TargetGroup;
use crate::refresh::{join_host_port, sanitize_label_name, ProviderCtx};

#[derive(Debug, thiserror::Error)]
pub enum DockerSdError {
    #[error("unsupported docker host {0:?} (want unix://, tcp://, http:// or https://)")]
    Host(String),
    #[error("error setting up docker client: {0}")]
    Client(String),
    #[error("error while listing containers: {0}")]
    Containers(String),
    #[error("error while computing network labels: {0}")]
    Networks(String),
}

/// `GET /containers/json` item (Engine API `ContainerSummary`), only the
/// fields discovery reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Container {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    host_config: HostConfig,
    #[serde(default)]
    network_settings: NetworkSettings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HostConfig {
    #[serde(default)]
    network_mode: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkSettings {
    #[serde(default)]
    networks: Option<BTreeMap<String, Option<Endpoint>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Endpoint {
    #[serde(rename = "NetworkID", default)]
    network_id: String,
    #[serde(rename = "IPAddress", default)]
    ip_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Port {
    #[serde(rename = "IP", default)]
    ip: String,
    #[serde(default)]
    private_port: u16,
    #[serde(default)]
    public_port: u16,
    #[serde(rename = "Type", default)]
    kind: String,
}

/// `GET /networks` item.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Network {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    ingress: bool,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Maps `host` to an API client.
pub(crate) fn client_for(cfg: &DockerSdConfig) -> Result<ApiClient, DockerSdError> {
    let host = cfg.host.as_str();
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(ApiClient::Unix {
            socket: PathBuf::from(path),
        });
    }
    let base = if let Some(rest) = host.strip_prefix("tcp://") {
        format!("http://{rest}")
    } else if host.starts_with("http://") || host.starts_with("https://") {
        host.to_string()
    } else {
        return Err(DockerSdError::Host(host.to_string()));
    };
    let client =
        tributary_http::build_client(&cfg.http_client, tributary_http::ClientOptions::default())
            .map_err(|e| DockerSdError::Client(e.to_string()))?;
    Ok(ApiClient::Http {
        client,
        base: base.trim_end_matches('/').to_string(),
    })
}

/// The `filters` query value the Docker client sends:
/// `{"name":{"value":true,…},…}`.
fn filters_param(cfg: &DockerSdConfig) -> Option<String> {
    let mut by_name: BTreeMap<&str, BTreeMap<&str, bool>> = BTreeMap::new();
    for f in &cfg.filters {
        for v in &f.values {
            by_name
                .entry(f.name.as_str())
                .or_default()
                .insert(v.as_str(), true);
        }
    }
    if by_name.is_empty() {
        return None;
    }
    serde_json::to_string(&by_name).ok()
}

/// One refresh: both API calls, then the target group.
pub(crate) async fn refresh(
    client: &ApiClient,
    cfg: &DockerSdConfig,
) -> Result<Vec<TargetGroup>, DockerSdError> {
    let params: Vec<(&str, String)> = filters_param(cfg)
        .map(|f| ("filters", f))
        .into_iter()
        .collect();
    let containers: Vec<Container> = client
        .get_json(
            &format!("/containers/json{}", query_string(&params)),
            &[],
            cfg.refresh_interval,
        )
        .await
        .map_err(|e| DockerSdError::Containers(e.to_string()))?
        .body;
    let networks: Vec<Network> = client
        .get_json("/networks", &[], cfg.refresh_interval)
        .await
        .map_err(|e| DockerSdError::Networks(e.to_string()))?
        .body;
    Ok(vec![build_group(
        cfg,
        &containers,
        &network_labels(&networks),
    )])
}

/// `__meta_docker_network_*` labels per network ID.
fn network_labels(networks: &[Network]) -> HashMap<String, Vec<(String, String)>> {
    networks
        .iter()
        .map(|n| {
            let mut labels = vec![
                ("__meta_docker_network_id".to_string(), n.id.clone()),
                ("__meta_docker_network_name".to_string(), n.name.clone()),
                ("__meta_docker_network_scope".to_string(), n.scope.clone()),
                (
                    "__meta_docker_network_internal".to_string(),
                    n.internal.to_string(),
                ),
                (
                    "__meta_docker_network_ingress".to_string(),
                    n.ingress.to_string(),
                ),
            ];
            for (k, v) in n.labels.iter().flatten() {
                labels.push((
                    format!("__meta_docker_network_label_{}", sanitize_label_name(k)),
                    v.clone(),
                ));
            }
            (n.id.clone(), labels)
        })
        .collect()
}

/// The networks a container is reachable on: its own, or for
/// `container:<id>` mode those of the container it shares (followed through
/// chains, bounded by the number of containers so a cycle cannot hang).
fn container_networks<'a>(
    c: &'a Container,
    by_id: &HashMap<&str, &'a Container>,
) -> Vec<(&'a str, &'a Endpoint)> {
    let own = |c: &'a Container| -> Vec<(&'a str, &'a Endpoint)> {
        c.network_settings
            .networks
            .iter()
            .flatten()
            .filter_map(|(name, ep)| ep.as_ref().map(|ep| (name.as_str(), ep)))
            .collect()
    };
    let mut networks = own(c);
    let mut mode = c.host_config.network_mode.as_str();
    let mut hops = 0;
    while networks.is_empty() && hops < by_id.len() {
        let Some(other_id) = mode.strip_prefix("container:") else {
            break;
        };
        let Some(other) = by_id.get(other_id) else {
            break;
        };
        networks = own(other);
        mode = other.host_config.network_mode.as_str();
        hops += 1;
    }
    networks
}

fn build_group(
    cfg: &DockerSdConfig,
    containers: &[Container],
    network_labels: &HashMap<String, Vec<(String, String)>>,
) -> TargetGroup {
    let by_id: HashMap<&str, &Container> = containers.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut targets = Vec::new();
    for c in containers {
        let Some(name) = c.names.first() else {
            continue;
        };
        let mut common = vec![
            ("__meta_docker_container_id".to_string(), c.id.clone()),
            ("__meta_docker_container_name".to_string(), name.clone()),
            (
                "__meta_docker_container_network_mode".to_string(),
                c.host_config.network_mode.clone(),
            ),
        ];
        for (k, v) in c.labels.iter().flatten() {
            common.push((
                format!("__meta_docker_container_label_{}", sanitize_label_name(k)),
                v.clone(),
            ));
        }
        let mut networks = container_networks(c, &by_id);
        if cfg.match_first_network && networks.len() > 1 {
            // Already sorted by name (BTreeMap): keep the first.
            networks.truncate(1);
        }
        for (_, ep) in networks {
            let net_labels = network_labels
                .get(&ep.network_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let mut added = false;
            for p in c.ports.iter().filter(|p| p.kind == "tcp") {
                let mut pairs = base_pairs(&common, net_labels, &ep.ip_address);
                pairs.push((
                    "__meta_docker_port_private".into(),
                    p.private_port.to_string(),
                ));
                if p.public_port > 0 {
                    pairs.push((
                        "__meta_docker_port_public".into(),
                        p.public_port.to_string(),
                    ));
                    pairs.push(("__meta_docker_port_public_ip".into(), p.ip.clone()));
                }
                pairs.push((
                    "__address__".into(),
                    join_host_port(&ep.ip_address, p.private_port),
                ));
                targets.push(Labels::from_pairs(pairs));
                added = true;
            }
            if !added {
                let mut pairs = base_pairs(&common, net_labels, &ep.ip_address);
                let address = if c.host_config.network_mode == "host" {
                    cfg.host_networking_host.clone()
                } else {
                    join_host_port(&ep.ip_address, cfg.port)
                };
                pairs.push(("__address__".into(), address));
                targets.push(Labels::from_pairs(pairs));
            }
        }
    }
    TargetGroup {
        source: "Docker".to_string(),
        targets,
        labels: Labels::empty(),
    }
}

fn base_pairs(
    common: &[(String, String)],
    network: &[(String, String)],
    ip: &str,
) -> Vec<(String, String)> {
    let mut pairs = Vec::with_capacity(common.len() + network.len() + 5);
    pairs.push(("__meta_docker_network_ip".to_string(), ip.to_string()));
    pairs.extend_from_slice(common);
    pairs.extend_from_slice(network);
    pairs
}

/// The provider task: refreshes every `refresh_interval` until cancelled.
pub(crate) async fn run(ctx: ProviderCtx, cfg: DockerSdConfig) {
    let client = match client_for(&cfg) {
        Ok(c) => c,
        Err(e) => {
            ctx.count_failure();
            tracing::error!(err = %e, "Cannot start Docker service discovery");
            let _ = ctx.report(Err(e.to_string())).await;
            return;
        }
    };
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            r = refresh(&client, &cfg) => r.map_err(|e| e.to_string()),
        };
        if !ctx.complete_refresh(started, result).await
            || !ctx.sleep_until(started + cfg.refresh_interval).await
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_encoded_like_the_docker_client() {
        let mut cfg = test_config();
        assert_eq!(filters_param(&cfg), None);
        cfg.filters = vec![tributary_config::DockerFilter {
            name: "label".into(),
            values: vec!["a=b".into(), "c".into()],
        }];
        assert_eq!(
            filters_param(&cfg).as_deref(),
            Some(r#"{"label":{"a=b":true,"c":true}}"#)
        );
    }

    #[test]
    fn unknown_host_scheme_is_an_error() {
        let mut cfg = test_config();
        cfg.host = "ssh://x".into();
        assert!(matches!(client_for(&cfg), Err(DockerSdError::Host(_))));
    }

    fn test_config() -> DockerSdConfig {
        DockerSdConfig {
            host: "unix:///var/run/docker.sock".into(),
            port: 80,
            host_networking_host: "localhost".into(),
            match_first_network: true,
            filters: Vec::new(),
            refresh_interval: std::time::Duration::from_secs(60),
            http_client: tributary_config::HttpClientConfig::default_for_scrape(),
        }
    }
}
