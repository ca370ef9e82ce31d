use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A labelled histogram whose buckets come from a constructor.
pub type HistogramFamily = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

/// `prometheus_sd_*` metrics, with the `name="scrape"` manager label.
#[derive(Clone)]
pub struct DiscoveryMetrics {
    pub discovered_targets: Family<Vec<(String, String)>, Gauge>,
    pub failed_configs: Family<Vec<(String, String)>, Gauge>,
    pub received_updates: Family<Vec<(String, String)>, Counter>,
    pub updates: Family<Vec<(String, String)>, Counter>,
    pub refresh_failures: Family<Vec<(String, String)>, Counter>,
    pub file_read_errors: Counter,
    pub http_failures: Counter,
    /// `prometheus_sd_refresh_duration_seconds{mechanism,config}`. Prometheus
    /// exports a summary; prometheus-client has none, so this is a histogram
    /// (same name, `_count`/`_sum` compatible).
    pub refresh_duration: HistogramFamily,
    pub dns_lookups: Counter,
    pub dns_lookup_failures: Counter,
    pub consul_rpc_failures: Counter,
    /// `prometheus_sd_kubernetes_events_total{role,event}`.
    pub kubernetes_events: Family<Vec<(String, String)>, Counter>,
    /// `prometheus_sd_kubernetes_failures_total`: failed LIST/WATCH requests.
    pub kubernetes_failures: Counter,
}

fn refresh_duration_histogram() -> Histogram {
    // 1ms .. ~33s: DNS answers in milliseconds, Consul blocking queries and
    // slow Docker daemons take seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl DiscoveryMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = DiscoveryMetrics {
            discovered_targets: Family::default(),
            failed_configs: Family::default(),
            received_updates: Family::default(),
            updates: Family::default(),
            refresh_failures: Family::default(),
            file_read_errors: Counter::default(),
            http_failures: Counter::default(),
            refresh_duration: Family::new_with_constructor(refresh_duration_histogram),
            dns_lookups: Counter::default(),
            dns_lookup_failures: Counter::default(),
            consul_rpc_failures: Counter::default(),
            kubernetes_events: Family::default(),
            kubernetes_failures: Counter::default(),
        };
        registry.register(
            "prometheus_sd_discovered_targets",
            "Current number of discovered targets",
            m.discovered_targets.clone(),
        );
        registry.register(
            "prometheus_sd_failed_configs",
            "Current number of service discovery configurations that failed to load",
            m.failed_configs.clone(),
        );
        registry.register(
            "prometheus_sd_received_updates",
            "Total number of update events received from the SD providers",
            m.received_updates.clone(),
        );
        registry.register(
            "prometheus_sd_updates",
            "Total number of update events sent to the SD consumers",
            m.updates.clone(),
        );
        registry.register(
            "prometheus_sd_refresh_failures",
            "Number of refresh failures for the given SD mechanism",
            m.refresh_failures.clone(),
        );
        registry.register(
            "prometheus_sd_file_read_errors",
            "The number of File-SD read errors",
            m.file_read_errors.clone(),
        );
        registry.register(
            "prometheus_sd_http_failures",
            "Number of HTTP service discovery refresh failures",
            m.http_failures.clone(),
        );
        registry.register(
            "prometheus_sd_refresh_duration_seconds",
            "The duration of a refresh for the given SD mechanism",
            m.refresh_duration.clone(),
        );
        registry.register(
            "prometheus_sd_dns_lookups",
            "The number of DNS-SD lookups",
            m.dns_lookups.clone(),
        );
        registry.register(
            "prometheus_sd_dns_lookup_failures",
            "The number of DNS-SD lookup failures",
            m.dns_lookup_failures.clone(),
        );
        registry.register(
            "prometheus_sd_consul_rpc_failures",
            "The number of Consul RPC call failures",
            m.consul_rpc_failures.clone(),
        );
        registry.register(
            "prometheus_sd_kubernetes_events",
            "The number of Kubernetes events handled.",
            m.kubernetes_events.clone(),
        );
        registry.register(
            "prometheus_sd_kubernetes_failures",
            "The number of failed WATCH/LIST requests.",
            m.kubernetes_failures.clone(),
        );
        m
    }

    /// The `{mechanism, config}` label pair of the refresh metrics; `config`
    /// is the scrape job name, as in Prometheus.
    pub fn refresh_labels(mechanism: &str, config: &str) -> Vec<(String, String)> {
        vec![
            ("mechanism".into(), mechanism.into()),
            ("config".into(), config.into()),
        ]
    }

    pub fn scrape_label() -> Vec<(String, String)> {
        vec![("name".into(), "scrape".into())]
    }
}
