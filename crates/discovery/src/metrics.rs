use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
        };
        registry.register("prometheus_sd_discovered_targets", "Current number of discovered targets.", m.discovered_targets.clone());
        registry.register("prometheus_sd_failed_configs", "Current number of service discovery configurations that failed to load.", m.failed_configs.clone());
        registry.register("prometheus_sd_received_updates", "Total number of update events received from the SD providers.", m.received_updates.clone());
        registry.register("prometheus_sd_updates", "Total number of update events sent to the SD consumers.", m.updates.clone());
        registry.register("prometheus_sd_refresh_failures", "Number of refresh failures for the given SD mechanism.", m.refresh_failures.clone());
        registry.register("prometheus_sd_file_read_errors", "The number of File-SD read errors.", m.file_read_errors.clone());
        registry.register("prometheus_sd_http_failures", "Number of HTTP service discovery refresh failures.", m.http_failures.clone());
        m
    }

    pub fn scrape_label() -> Vec<(String, String)> {
        vec![("name".into(), "scrape".into())]
    }
}
