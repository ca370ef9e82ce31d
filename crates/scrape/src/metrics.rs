use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type JobLabel = Vec<(&'static str, String)>;

/// `prometheus_target_*` metrics, named as Prometheus names them.
#[derive(Clone, Default)]
pub struct ScrapeMetrics {
    pub pool_targets: Family<JobLabel, Gauge>,
    pub pool_target_limit: Family<JobLabel, Gauge>,
    pub pools_total: Counter,
    pub pool_reloads: Counter,
    pub pool_sync: Family<JobLabel, Counter>,
    pub exceeded_target_limit: Counter,
    pub exceeded_label_limits: Counter,
    pub exceeded_body_size_limit: Counter,
    pub exceeded_sample_limit: Counter,
    pub exceeded_bucket_limit: Counter,
    pub sample_duplicate_timestamp: Counter,
    pub sample_out_of_order: Counter,
    pub sample_out_of_bounds: Counter,
    pub cache_flush_forced: Counter,
}

impl ScrapeMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = ScrapeMetrics::default();
        let r = registry;
        r.register(
            "prometheus_target_scrape_pool_targets",
            "Current number of targets in this scrape pool",
            m.pool_targets.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_target_limit",
            "Maximum number of targets allowed in this scrape pool",
            m.pool_target_limit.clone(),
        );
        r.register(
            "prometheus_target_scrape_pools",
            "Total number of scrape pool creation attempts",
            m.pools_total.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_reloads",
            "Total number of scrape pool reloads",
            m.pool_reloads.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_sync",
            "Total number of syncs that were executed on a scrape pool",
            m.pool_sync.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_exceeded_target_limit",
            "Total number of times scrape pools hit the target limit, during sync or config reload",
            m.exceeded_target_limit.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_exceeded_label_limits",
            "Total number of times scrape pools hit the label limits, during sync or config reload",
            m.exceeded_label_limits.clone(),
        );
        r.register(
            "prometheus_target_scrapes_exceeded_body_size_limit",
            "Total number of scrapes that hit the body size limit",
            m.exceeded_body_size_limit.clone(),
        );
        r.register(
            "prometheus_target_scrapes_exceeded_sample_limit",
            "Total number of scrapes that hit the sample limit and were rejected",
            m.exceeded_sample_limit.clone(),
        );
        r.register(
            "prometheus_target_scrapes_exceeded_native_histogram_bucket_limit",
            "Total number of scrapes that hit the native histogram bucket limit and were rejected",
            m.exceeded_bucket_limit.clone(),
        );
        r.register(
            "prometheus_target_scrapes_sample_duplicate_timestamp",
            "Total number of samples rejected due to duplicate timestamps but different values",
            m.sample_duplicate_timestamp.clone(),
        );
        r.register(
            "prometheus_target_scrapes_sample_out_of_order",
            "Total number of samples rejected due to not being out of the expected order",
            m.sample_out_of_order.clone(),
        );
        r.register(
            "prometheus_target_scrapes_sample_out_of_bounds",
            "Total number of samples rejected due to timestamp falling outside of the time bounds",
            m.sample_out_of_bounds.clone(),
        );
        r.register("prometheus_target_scrapes_cache_flush_forced", "How many times a scrape cache was flushed due to getting big while scrapes are failing", m.cache_flush_forced.clone());
        m
    }
}
