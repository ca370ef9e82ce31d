//! `consul_sd_configs`: service instances from Consul's catalog, kept up to
//! date with blocking queries.
//!
//! Design (after Prometheus's `discovery/consul/consul.go`; label list from
//! configuration.md `<consul_sd_config>`):
//! * Without a datacenter in the config, it is read once from
//!   `GET /v1/agent/self` (`Config.Datacenter`), retried every 15s.
//! * When `services` is empty or `tags` are set, `GET /v1/catalog/services`
//!   is watched with a blocking query (`index` = last `X-Consul-Index`,
//!   `wait=120000ms`), at most once per `refresh_interval`; a watcher task is
//!   started for each service that matches `services`/`tags` and stopped
//!   (its group removed) when the service leaves the catalog. Otherwise
//!   exactly the configured services are watched.
//! * Each service watcher blocks on `GET /v1/health/service/<name>` (with
//!   `tag=` per configured tag) the same way and turns the answer into one
//!   target group, source = the service name, group labels
//!   `__meta_consul_service` and `__meta_consul_dc`, and per instance
//!   `__address__` (service address, else node address, with the service
//!   port), `__meta_consul_{address,node,tags,service_address,service_port,
//!   service_id,health,namespace,partition}` and the sanitized
//!   `__meta_consul_{metadata,service_metadata,tagged_address}_<key>`.
//!   Tags are joined with `tag_separator` and wrapped in it (`,a,b,`).
//! * Every request carries `stale` (with `allow_stale`), `node-meta=k:v`,
//!   `dc`, `ns`, `partition` and the `X-Consul-Token` header as configured;
//!   `filter` applies to the catalog query and `health_filter` to the health
//!   query.
//! * A failed query counts `prometheus_sd_consul_rpc_failures_total`,
//!   reports the error (the last good groups stay) and is retried after 15s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_config::ConsulSdConfig;
use tributary_model::Labels;

use crate::api::{encode_component, query_string, ApiClient, ApiError};
use crate::group::TargetGroup;
use crate::refresh::{join_host_port, sanitize_label_name, ProviderCtx};

/// How long a blocking query may wait on the server.
const WATCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause after a failed query.
const RETRY_INTERVAL: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ConsulSdError {
    #[error("error setting up consul client: {0}")]
    Client(String),
    #[error("Error retrieving datacenter name: {0}")]
    Datacenter(String),
    #[error("Error refreshing service list: {0}")]
    Services(String),
    #[error("Error refreshing service {service}: {reason}")]
    Service { service: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentSelf {
    #[serde(default)]
    config: Option<AgentConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentConfig {
    #[serde(default)]
    datacenter: Option<String>,
}

/// One `GET /v1/health/service/<name>` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceEntry {
    node: Node,
    service: Service,
    #[serde(default)]
    checks: Option<Vec<Check>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(default)]
    node: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Service {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    port: i64,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    partition: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Check {
    #[serde(rename = "CheckID", default)]
    check_id: String,
    #[serde(default)]
    status: String,
}

/// The Consul API as discovery uses it.
struct Consul {
    client: ApiClient,
    cfg: ConsulSdConfig,
}

impl Consul {
    fn new(cfg: ConsulSdConfig) -> Result<Consul, ConsulSdError> {
        let client = tributary_http::build_client(
            &cfg.http_client,
            tributary_http::ClientOptions {
                idle_pool_timeout: Some(2 * WATCH_TIMEOUT),
                ..Default::default()
            },
        )
        .map_err(|e| ConsulSdError::Client(e.to_string()))?;
        let prefix = cfg.path_prefix.trim_end_matches('/');
        let base = format!("{}://{}{}", cfg.scheme, cfg.server.trim(), prefix);
        Ok(Consul {
            client: ApiClient::Http { client, base },
            cfg,
        })
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        match &self.cfg.token {
            Some(token) => vec![("X-Consul-Token", token.expose())],
            None => Vec::new(),
        }
    }

    /// Parameters every query carries.
    fn common_params(&self, index: u64) -> Vec<(&'static str, String)> {
        let c = &self.cfg;
        let mut params = Vec::new();
        if !c.datacenter.is_empty() {
            params.push(("dc", c.datacenter.clone()));
        }
        if c.allow_stale {
            params.push(("stale", String::new()));
        }
        if index > 0 {
            params.push(("index", index.to_string()));
        }
        params.push(("wait", format!("{}ms", WATCH_TIMEOUT.as_millis())));
        for (k, v) in &c.node_meta {
            params.push(("node-meta", format!("{k}:{v}")));
        }
        if !c.namespace.is_empty() {
            params.push(("ns", c.namespace.clone()));
        }
        if !c.partition.is_empty() {
            params.push(("partition", c.partition.clone()));
        }
        params
    }

    async fn datacenter(&self) -> Result<String, ConsulSdError> {
        if !self.cfg.datacenter.is_empty() {
            return Ok(self.cfg.datacenter.clone());
        }
        let resp = self
            .client
            .get_json::<AgentSelf>("/v1/agent/self", &self.headers(), WATCH_TIMEOUT)
            .await
            .map_err(|e| ConsulSdError::Datacenter(e.to_string()))?;
        resp.body
            .config
            .and_then(|c| c.datacenter)
            .ok_or_else(|| ConsulSdError::Datacenter("invalid value for Config.Datacenter".into()))
    }

    /// Blocking query on the catalog: service name → tags, and the index.
    async fn services(
        &self,
        index: u64,
    ) -> Result<(BTreeMap<String, Vec<String>>, u64), ConsulSdError> {
        let mut params = self.common_params(index);
        if !self.cfg.filter.is_empty() {
            params.push(("filter", self.cfg.filter.clone()));
        }
        let path = format!("/v1/catalog/services{}", query_string(&params));
        let resp = self
            .client
            .get_json::<BTreeMap<String, Option<Vec<String>>>>(
                &path,
                &self.headers(),
                WATCH_TIMEOUT + RETRY_INTERVAL,
            )
            .await
            .map_err(|e| ConsulSdError::Services(e.to_string()))?;
        let index = consul_index(&resp.headers).map_err(ConsulSdError::Services)?;
        let services = resp
            .body
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        Ok((services, index))
    }

    /// Blocking query on one service's instances.
    async fn health(
        &self,
        service: &str,
        index: u64,
    ) -> Result<(Vec<ServiceEntry>, u64), ConsulSdError> {
        let fail = |reason: String| ConsulSdError::Service {
            service: service.to_string(),
            reason,
        };
        let mut params = self.common_params(index);
        for tag in &self.cfg.tags {
            params.push(("tag", tag.clone()));
        }
        if !self.cfg.health_filter.is_empty() {
            params.push(("filter", self.cfg.health_filter.clone()));
        }
        let path = format!(
            "/v1/health/service/{}{}",
            encode_component(service),
            query_string(&params)
        );
        let resp = self
            .client
            .get_json::<Option<Vec<ServiceEntry>>>(
                &path,
                &self.headers(),
                WATCH_TIMEOUT + RETRY_INTERVAL,
            )
            .await
            .map_err(|e: ApiError| fail(e.to_string()))?;
        let index = consul_index(&resp.headers).map_err(fail)?;
        Ok((resp.body.unwrap_or_default(), index))
    }

    /// Whether a catalog service is one this config watches.
    fn should_watch(&self, name: &str, tags: &[String]) -> bool {
        let by_name = self.cfg.services.is_empty() || self.cfg.services.iter().any(|s| s == name);
        by_name && self.cfg.tags.iter().all(|want| tags.contains(want))
    }
}

fn consul_index(headers: &http::HeaderMap) -> Result<u64, String> {
    let value = headers
        .get("X-Consul-Index")
        .ok_or("missing X-Consul-Index header")?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("invalid X-Consul-Index header {value:?}"))
}

/// Consul API's `HealthChecks.AggregatedStatus`: maintenance wins over
/// critical over warning over passing; an unknown status yields "".
fn aggregated_status(checks: &[Check]) -> &'static str {
    let (mut passing, mut warning, mut critical, mut maintenance) = (false, false, false, false);
    for c in checks {
        if c.check_id == "_node_maintenance" || c.check_id.starts_with("_service_maintenance:") {
            maintenance = true;
            continue;
        }
        match c.status.as_str() {
            "passing" => passing = true,
            "warning" => warning = true,
            "critical" => critical = true,
            _ => return "",
        }
    }
    if maintenance {
        "maintenance"
    } else if critical {
        "critical"
    } else if warning {
        "warning"
    } else {
        let _ = passing;
        "passing"
    }
}

fn instance_labels(entry: &ServiceEntry, tag_separator: &str) -> Labels {
    let (node, svc) = (&entry.node, &entry.service);
    let tags = format!(
        "{sep}{}{sep}",
        svc.tags.as_deref().unwrap_or_default().join(tag_separator),
        sep = tag_separator
    );
    let host = if svc.address.is_empty() {
        &node.address
    } else {
        &svc.address
    };
    let port = svc.port.to_string();
    let mut pairs: Vec<(String, String)> = vec![
        ("__address__".into(), join_host_port(host, &port)),
        ("__meta_consul_address".into(), node.address.clone()),
        ("__meta_consul_node".into(), node.node.clone()),
        (
            "__meta_consul_namespace".into(),
            svc.namespace.clone().unwrap_or_default(),
        ),
        (
            "__meta_consul_partition".into(),
            svc.partition.clone().unwrap_or_default(),
        ),
        ("__meta_consul_tags".into(), tags),
        ("__meta_consul_service_address".into(), svc.address.clone()),
        ("__meta_consul_service_port".into(), port),
        ("__meta_consul_service_id".into(), svc.id.clone()),
        (
            "__meta_consul_health".into(),
            aggregated_status(entry.checks.as_deref().unwrap_or_default()).into(),
        ),
    ];
    let prefixed = [
        ("__meta_consul_metadata_", &node.meta),
        ("__meta_consul_service_metadata_", &svc.meta),
        ("__meta_consul_tagged_address_", &node.tagged_addresses),
    ];
    for (prefix, map) in prefixed {
        for (k, v) in map.iter().flatten() {
            pairs.push((format!("{prefix}{}", sanitize_label_name(k)), v.clone()));
        }
    }
    Labels::from_pairs(pairs)
}

fn service_group(
    service: &str,
    datacenter: &str,
    entries: &[ServiceEntry],
    tag_separator: &str,
) -> TargetGroup {
    TargetGroup {
        source: service.to_string(),
        targets: entries
            .iter()
            .map(|e| instance_labels(e, tag_separator))
            .collect(),
        labels: Labels::from_pairs([
            ("__meta_consul_service", service),
            ("__meta_consul_dc", datacenter),
        ]),
    }
}

/// What the watcher tasks tell the provider task.
enum Event {
    /// The catalog's current set of watched services.
    Services(BTreeSet<String>),
    Group(TargetGroup),
    Failed(String),
}

/// Sleeps `d` unless cancelled first; `false` when cancelled.
async fn pause(cancel: &CancellationToken, until: Instant) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep_until(until) => true,
    }
}

async fn watch_catalog(
    consul: Arc<Consul>,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
    failures: prometheus_client::metrics::counter::Counter,
) {
    let mut index = 0;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = consul.services(index) => r,
        };
        match result {
            // An unchanged index means the blocking query timed out.
            Ok((_, new_index)) if new_index == index => {}
            Ok((services, new_index)) => {
                index = new_index;
                let watched = services
                    .iter()
                    .filter(|(name, tags)| consul.should_watch(name, tags))
                    .map(|(name, _)| name.clone())
                    .collect();
                if events.send(Event::Services(watched)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                failures.inc();
                if events.send(Event::Failed(e.to_string())).await.is_err()
                    || !pause(&cancel, Instant::now() + RETRY_INTERVAL).await
                {
                    return;
                }
            }
        }
        if !pause(&cancel, started + consul.cfg.refresh_interval).await {
            return;
        }
    }
}

async fn watch_service(
    consul: Arc<Consul>,
    service: String,
    datacenter: String,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
    failures: prometheus_client::metrics::counter::Counter,
) {
    let mut index = 0;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = consul.health(&service, index) => r,
        };
        match result {
            Ok((_, new_index)) if new_index == index => {}
            Ok((entries, new_index)) => {
                index = new_index;
                let group =
                    service_group(&service, &datacenter, &entries, &consul.cfg.tag_separator);
                if events.send(Event::Group(group)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                failures.inc();
                if events.send(Event::Failed(e.to_string())).await.is_err()
                    || !pause(&cancel, Instant::now() + RETRY_INTERVAL).await
                {
                    return;
                }
            }
        }
        if !pause(&cancel, started + consul.cfg.refresh_interval).await {
            return;
        }
    }
}

/// The provider's state: one watcher per service and its latest group.
struct Watchers {
    consul: Arc<Consul>,
    datacenter: String,
    events: mpsc::Sender<Event>,
    parent: CancellationToken,
    failures: prometheus_client::metrics::counter::Counter,
    running: BTreeMap<String, CancellationToken>,
    groups: BTreeMap<String, TargetGroup>,
}

impl Watchers {
    fn start(&mut self, service: String) {
        if self.running.contains_key(&service) {
            return;
        }
        let cancel = self.parent.child_token();
        tokio::spawn(watch_service(
            self.consul.clone(),
            service.clone(),
            self.datacenter.clone(),
            self.events.clone(),
            cancel.clone(),
            self.failures.clone(),
        ));
        self.running.insert(service, cancel);
    }

    /// Starts watchers for new services, stops (and forgets the groups of)
    /// services that are gone.
    fn sync(&mut self, wanted: BTreeSet<String>) {
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|s| !wanted.contains(*s))
            .cloned()
            .collect();
        for service in gone {
            if let Some(cancel) = self.running.remove(&service) {
                cancel.cancel();
            }
            self.groups.remove(&service);
        }
        for service in wanted {
            self.start(service);
        }
    }

    fn snapshot(&self) -> Vec<TargetGroup> {
        self.groups.values().cloned().collect()
    }
}

/// Reads the datacenter, retrying every 15s; `None` when cancelled.
async fn wait_for_datacenter(consul: &Consul, ctx: &ProviderCtx) -> Option<String> {
    loop {
        let result = tokio::select! {
            _ = ctx.cancel.cancelled() => return None,
            r = consul.datacenter() => r,
        };
        match result {
            Ok(dc) => return Some(dc),
            Err(e) => {
                ctx.metrics.consul_rpc_failures.inc();
                tracing::error!(err = %e, "Error retrieving datacenter name");
                if !ctx.report(Err(e.to_string())).await
                    || !ctx.sleep_until(Instant::now() + RETRY_INTERVAL).await
                {
                    return None;
                }
            }
        }
    }
}

/// The provider task.
pub(crate) async fn run(ctx: ProviderCtx, cfg: ConsulSdConfig) {
    let consul = match Consul::new(cfg) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(err = %e, "Cannot start Consul service discovery");
            let _ = ctx.report(Err(e.to_string())).await;
            return;
        }
    };
    let Some(datacenter) = wait_for_datacenter(&consul, &ctx).await else {
        return;
    };
    let (events_tx, mut events) = mpsc::channel(16);
    let mut watchers = Watchers {
        consul: consul.clone(),
        datacenter,
        events: events_tx.clone(),
        parent: ctx.cancel.child_token(),
        failures: ctx.metrics.consul_rpc_failures.clone(),
        running: BTreeMap::new(),
        groups: BTreeMap::new(),
    };
    let cfg = &consul.cfg;
    if cfg.services.is_empty() || !cfg.tags.is_empty() {
        tokio::spawn(watch_catalog(
            consul.clone(),
            events_tx,
            watchers.parent.clone(),
            ctx.metrics.consul_rpc_failures.clone(),
        ));
    } else {
        for service in cfg.services.clone() {
            watchers.start(service);
        }
        drop(events_tx);
    }
    loop {
        let event = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            e = events.recv() => e,
        };
        let result = match event {
            None => break,
            Some(Event::Services(wanted)) => {
                watchers.sync(wanted);
                Ok(watchers.snapshot())
            }
            Some(Event::Group(group)) => {
                // A late answer from a watcher that was just stopped must not
                // resurrect its service.
                if !watchers.running.contains_key(&group.source) {
                    continue;
                }
                watchers.groups.insert(group.source.clone(), group);
                Ok(watchers.snapshot())
            }
            Some(Event::Failed(e)) => {
                tracing::error!(err = %e, "Consul service discovery query failed");
                Err(e)
            }
        };
        if !ctx.report(result).await {
            break;
        }
    }
    watchers.parent.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, status: &str) -> Check {
        Check {
            check_id: id.into(),
            status: status.into(),
        }
    }

    #[test]
    fn aggregated_status_matches_consul_api() {
        assert_eq!(aggregated_status(&[]), "passing");
        assert_eq!(
            aggregated_status(&[check("a", "passing"), check("b", "warning")]),
            "warning"
        );
        assert_eq!(
            aggregated_status(&[check("a", "critical"), check("b", "warning")]),
            "critical"
        );
        assert_eq!(
            aggregated_status(&[
                check("_node_maintenance", "critical"),
                check("b", "passing")
            ]),
            "maintenance"
        );
        assert_eq!(aggregated_status(&[check("a", "bogus")]), "");
    }
}
