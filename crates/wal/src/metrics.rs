//! Self-metrics with Prometheus's names, so existing dashboards and alerts
//! keep working. Counters are registered without `_total`; the encoder adds
//! it. Prometheus exposes the fsync duration as a summary; prometheus-client
//! has no summary, so it is a histogram with the same base name.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub(crate) type LabelPairs = Vec<(String, String)>;

pub(crate) struct Metrics {
    pub active_series: Gauge,
    pub deleted_series: Gauge,
    pub replay_duration: Gauge<f64, AtomicU64>,
    pub clean_start: Gauge,
    pub samples_appended: Counter,
    pub histograms_appended: Counter,
    pub out_of_order: Counter,
    pub corruptions: Counter,
    pub checkpoint_creations: Counter,
    pub checkpoint_creations_failed: Counter,
    pub checkpoint_deletions: Counter,
    pub checkpoint_deletions_failed: Counter,
    pub fsync_duration: Histogram,
    pub page_flushes: Counter,
    pub completed_pages: Counter,
    pub truncations: Counter,
    pub truncations_failed: Counter,
    pub writes_failed: Counter,
    pub segment_current: Gauge,
    pub storage_size: Gauge,
    pub consumer_dropped: Family<LabelPairs, Counter>,
    pub write_buffer_bytes: Gauge,
    pub write_buffer_dropped: Counter,
    pub checkpoint_reserve: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics {
            active_series: Gauge::default(),
            deleted_series: Gauge::default(),
            replay_duration: Gauge::default(),
            clean_start: Gauge::default(),
            samples_appended: Counter::default(),
            histograms_appended: Counter::default(),
            out_of_order: Counter::default(),
            corruptions: Counter::default(),
            checkpoint_creations: Counter::default(),
            checkpoint_creations_failed: Counter::default(),
            checkpoint_deletions: Counter::default(),
            checkpoint_deletions_failed: Counter::default(),
            fsync_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            page_flushes: Counter::default(),
            completed_pages: Counter::default(),
            truncations: Counter::default(),
            truncations_failed: Counter::default(),
            writes_failed: Counter::default(),
            segment_current: Gauge::default(),
            storage_size: Gauge::default(),
            consumer_dropped: Family::default(),
            write_buffer_bytes: Gauge::default(),
            write_buffer_dropped: Counter::default(),
            checkpoint_reserve: Gauge::default(),
        }
    }

    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "prometheus_agent_active_series",
            "Number of active series being tracked by the WAL storage",
            self.active_series.clone(),
        );
        r.register(
            "prometheus_agent_deleted_series",
            "Number of series pending deletion from the WAL",
            self.deleted_series.clone(),
        );
        r.register(
            "prometheus_agent_data_replay_duration_seconds",
            "Time taken to replay the data on disk",
            self.replay_duration.clone(),
        );
        r.register("prometheus_agent_clean_start", "-1: lockfile is disabled. 0: a lockfile from a previous execution was replaced. 1: lockfile creation was clean", self.clean_start.clone());
        r.register(
            "prometheus_agent_samples_appended",
            "Total number of samples appended to the storage",
            AppendedByType {
                float: self.samples_appended.clone(),
                histogram: self.histograms_appended.clone(),
            },
        );
        r.register(
            "prometheus_agent_out_of_order_samples",
            "Total number of out of order samples ingestion failed attempts",
            self.out_of_order.clone(),
        );
        r.register(
            "prometheus_agent_corruptions",
            "Total number of WAL corruptions",
            self.corruptions.clone(),
        );
        r.register(
            "prometheus_agent_checkpoint_creations",
            "Total number of checkpoint creations attempted",
            self.checkpoint_creations.clone(),
        );
        r.register(
            "prometheus_agent_checkpoint_creations_failed",
            "Total number of checkpoint creations that failed",
            self.checkpoint_creations_failed.clone(),
        );
        r.register(
            "prometheus_agent_checkpoint_deletions",
            "Total number of checkpoint deletions attempted",
            self.checkpoint_deletions.clone(),
        );
        r.register(
            "prometheus_agent_checkpoint_deletions_failed",
            "Total number of checkpoint deletions that failed",
            self.checkpoint_deletions_failed.clone(),
        );
        r.register(
            "prometheus_tsdb_wal_fsync_duration_seconds",
            "Duration of write log fsync",
            self.fsync_duration.clone(),
        );
        r.register(
            "prometheus_tsdb_wal_page_flushes",
            "Total number of page flushes",
            self.page_flushes.clone(),
        );
        r.register(
            "prometheus_tsdb_wal_completed_pages",
            "Total number of completed pages",
            self.completed_pages.clone(),
        );
        r.register(
            "prometheus_tsdb_wal_truncations",
            "Total number of write log truncations attempted",
            self.truncations.clone(),
        );
        r.register(
            "prometheus_tsdb_wal_truncations_failed",
            "Total number of write log truncations that failed",
            self.truncations_failed.clone(),
        );
        r.register(
            "prometheus_tsdb_wal_writes_failed",
            "Total number of write log writes that failed",
            self.writes_failed.clone(),
        );
        r.register(
            "prometheus_tsdb_wal_segment_current",
            "Write log segment index that TSDB is currently writing to",
            self.segment_current.clone(),
        );
        r.register(
            "prometheus_tsdb_wal_storage_size_bytes",
            "Size of the write log directory",
            self.storage_size.clone(),
        );
        r.register(
            "tributary_wal_write_buffer_bytes",
            "Bytes of committed data held in memory because the disk refused WAL writes",
            self.write_buffer_bytes.clone(),
        );
        r.register(
            "tributary_wal_write_buffer_dropped_samples",
            "Samples refused because the disk refused WAL writes and the in-memory write buffer was full",
            self.write_buffer_dropped.clone(),
        );
        r.register(
            "tributary_wal_checkpoint_reserve_bytes",
            "Disk space held back so that truncation can write its checkpoint on a full disk",
            self.checkpoint_reserve.clone(),
        );
        r.register("tributary_wal_consumer_dropped_samples", "Samples a WAL consumer lost because truncation deleted them before they were acknowledged", self.consumer_dropped.clone());
    }

    pub(crate) fn dropped_counter(&self, consumer: &str, reason: &str) -> Counter {
        self.consumer_dropped
            .get_or_create(&vec![
                ("consumer".to_owned(), consumer.to_owned()),
                ("reason".to_owned(), reason.to_owned()),
            ])
            .clone()
    }
}

/// The appended counters with their `type` label (`float`, and
/// `histogram` once one was appended, as Prometheus creates that child
/// lazily). Plain counters are bumped on every commit, avoiding a family
/// lookup.
#[derive(Debug)]
struct AppendedByType {
    float: Counter,
    histogram: Counter,
}

impl prometheus_client::encoding::EncodeMetric for AppendedByType {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        self.float
            .encode(encoder.encode_family(&[("type", "float")])?)?;
        if self.histogram.get() > 0 {
            self.histogram
                .encode(encoder.encode_family(&[("type", "histogram")])?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Counter
    }
}
