//! Self-metrics with Prometheus's exact names and labels.
//!
//! Every metric is a [`Family`] registered once per process; each queue
//! resolves its children once (labels `remote_name`, `url`) into a
//! [`QueueMetrics`] of cheap handles, and removes them again when the queue
//! is stopped so a removed `remote_write` entry disappears from `/metrics`.
//! Counters are registered without `_total`: prometheus-client appends it.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub(crate) type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    remote_name: String,
    url: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    remote_name: String,
    url: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordTypeLabels {
    consumer: String,
    r#type: &'static str,
}

/// Why samples were dropped before sending (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    TooOld,
    DroppedSeries,
    UnintentionallyDroppedSeries,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::TooOld => "too_old",
            DropReason::DroppedSeries => "dropped_series",
            DropReason::UnintentionallyDroppedSeries => "unintentionally_dropped_series",
        }
    }
}

/// Prometheus's `DefBuckets` plus the remote-write additions.
const SENT_BATCH_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0, 300.0,
];

fn sent_batch_histogram() -> Histogram {
    Histogram::new(SENT_BATCH_BUCKETS)
}

type HistogramFamily = Family<QueueLabels, Histogram, fn() -> Histogram>;

/// Sent / failed / retried counter families of one kind of data
/// (`histograms`, `exemplars`, `metadata`).
#[derive(Default)]
struct KindFamilies {
    sent: Family<QueueLabels, Counter>,
    failed: Family<QueueLabels, Counter>,
    retried: Family<QueueLabels, Counter>,
}

impl KindFamilies {
    fn register(&self, registry: &mut Registry, kind: &str) {
        let rs = "prometheus_remote_storage_";
        registry.register(
            format!("{rs}{kind}"),
            format!("Total number of {kind} sent to remote storage."),
            self.sent.clone(),
        );
        registry.register(
            format!("{rs}{kind}_failed"),
            format!("Total number of {kind} which failed on send to remote storage, non-recoverable errors."),
            self.failed.clone(),
        );
        registry.register(
            format!("{rs}{kind}_retried"),
            format!("Total number of {kind} which failed on send to remote storage but were retried because the send error was recoverable."),
            self.retried.clone(),
        );
    }

    fn for_queue(&self, l: &QueueLabels) -> KindCounters {
        KindCounters {
            sent: self.sent.get_or_create_owned(l),
            failed: self.failed.get_or_create_owned(l),
            retried: self.retried.get_or_create_owned(l),
        }
    }

    fn remove(&self, l: &QueueLabels) {
        self.sent.remove(l);
        self.failed.remove(l);
        self.retried.remove(l);
    }
}

/// One queue's sent / failed / retried counters of one kind of data.
#[derive(Clone, Debug)]
pub struct KindCounters {
    pub sent: Counter,
    pub failed: Counter,
    pub retried: Counter,
}

/// All remote-storage metric families of the process.
pub struct RemoteMetrics {
    samples: Family<QueueLabels, Counter>,
    samples_failed: Family<QueueLabels, Counter>,
    samples_retried: Family<QueueLabels, Counter>,
    samples_dropped: Family<DropLabels, Counter>,
    enqueue_retries: Family<QueueLabels, Counter>,
    bytes: Family<QueueLabels, Counter>,
    sent_batch_duration: HistogramFamily,
    queue_highest_timestamp: Family<QueueLabels, FloatGauge>,
    queue_highest_sent_timestamp: Family<QueueLabels, FloatGauge>,
    samples_pending: Family<QueueLabels, Gauge>,
    histograms_pending: Family<QueueLabels, Gauge>,
    exemplars_pending: Family<QueueLabels, Gauge>,
    shard_capacity: Family<QueueLabels, Gauge>,
    shards: Family<QueueLabels, Gauge>,
    shards_max: Family<QueueLabels, Gauge>,
    shards_min: Family<QueueLabels, Gauge>,
    shards_desired: Family<QueueLabels, FloatGauge>,
    max_samples_per_send: Family<QueueLabels, Gauge>,
    /// Unlabelled, process-wide; kept for the standard lag alert.
    pub highest_timestamp_in_seconds: FloatGauge,
    /// Unlabelled, process-wide count of samples handed to remote storage.
    pub samples_in: Counter,
    pub histograms_in: Counter,
    pub exemplars_in: Counter,
    histograms: KindFamilies,
    exemplars: KindFamilies,
    metadata: KindFamilies,
    metadata_bytes: Family<QueueLabels, Counter>,
    watcher_records_read: Family<RecordTypeLabels, Counter>,
    watcher_decode_failures: Family<ConsumerLabels, Counter>,
    watcher_current_segment: Family<ConsumerLabels, Gauge>,
}

impl Default for RemoteMetrics {
    fn default() -> Self {
        Self {
            samples: Family::default(),
            samples_failed: Family::default(),
            samples_retried: Family::default(),
            samples_dropped: Family::default(),
            enqueue_retries: Family::default(),
            bytes: Family::default(),
            sent_batch_duration: Family::new_with_constructor(sent_batch_histogram),
            queue_highest_timestamp: Family::default(),
            queue_highest_sent_timestamp: Family::default(),
            samples_pending: Family::default(),
            histograms_pending: Family::default(),
            exemplars_pending: Family::default(),
            shard_capacity: Family::default(),
            shards: Family::default(),
            shards_max: Family::default(),
            shards_min: Family::default(),
            shards_desired: Family::default(),
            max_samples_per_send: Family::default(),
            highest_timestamp_in_seconds: FloatGauge::default(),
            samples_in: Counter::default(),
            histograms_in: Counter::default(),
            exemplars_in: Counter::default(),
            histograms: KindFamilies::default(),
            exemplars: KindFamilies::default(),
            metadata: KindFamilies::default(),
            metadata_bytes: Family::default(),
            watcher_records_read: Family::default(),
            watcher_decode_failures: Family::default(),
            watcher_current_segment: Family::default(),
        }
    }
}

impl RemoteMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let rs = "prometheus_remote_storage_";
        registry.register(
            format!("{rs}samples"),
            "Total number of samples sent to remote storage",
            m.samples.clone(),
        );
        registry.register(format!("{rs}samples_failed"), "Total number of samples which failed on send to remote storage, non-recoverable errors", m.samples_failed.clone());
        registry.register(format!("{rs}samples_retried"), "Total number of samples which failed on send to remote storage but were retried because the send error was recoverable", m.samples_retried.clone());
        registry.register(format!("{rs}samples_dropped"), "Total number of samples which were dropped after being read from the WAL before being sent via remote write, either via relabelling, due to being too old or unintentionally because of an unknown reference ID", m.samples_dropped.clone());
        registry.register(
            format!("{rs}enqueue_retries"),
            "Total number of times enqueue has failed because a shards queue was full",
            m.enqueue_retries.clone(),
        );
        registry.register(
            format!("{rs}bytes"),
            "The total number of bytes of data (not metadata) sent by the queue after compression",
            m.bytes.clone(),
        );
        registry.register(
            format!("{rs}sent_batch_duration_seconds"),
            "Duration of send calls to the remote storage",
            m.sent_batch_duration.clone(),
        );
        registry.register(
            format!("{rs}queue_highest_timestamp_seconds"),
            "Highest timestamp that was enqueued, in seconds since epoch",
            m.queue_highest_timestamp.clone(),
        );
        registry.register(
            format!("{rs}queue_highest_sent_timestamp_seconds"),
            "Highest timestamp successfully sent by this queue, in seconds since epoch",
            m.queue_highest_sent_timestamp.clone(),
        );
        registry.register(
            format!("{rs}samples_pending"),
            "The number of samples pending in the queues shards to be sent to the remote storage",
            m.samples_pending.clone(),
        );
        registry.register(
            format!("{rs}histograms_pending"),
            "The number of histograms pending in the queues shards to be sent to the remote storage",
            m.histograms_pending.clone(),
        );
        registry.register(
            format!("{rs}exemplars_pending"),
            "The number of exemplars pending in the queues shards to be sent to the remote storage",
            m.exemplars_pending.clone(),
        );
        registry.register(format!("{rs}shard_capacity"), "The capacity of each shard of the queue used for parallel sending to the remote storage", m.shard_capacity.clone());
        registry.register(
            format!("{rs}shards"),
            "The number of shards used for parallel sending to the remote storage",
            m.shards.clone(),
        );
        registry.register(
            format!("{rs}shards_max"),
            "The maximum number of shards that the queue is allowed to run",
            m.shards_max.clone(),
        );
        registry.register(
            format!("{rs}shards_min"),
            "The minimum number of shards that the queue is allowed to run",
            m.shards_min.clone(),
        );
        registry.register(format!("{rs}shards_desired"), "The number of shards that the queues shard calculation wants to run based on the rate of samples in vs. samples out", m.shards_desired.clone());
        registry.register(
            format!("{rs}max_samples_per_send"),
            "The maximum number of samples to be sent, in a single request, to the remote storage",
            m.max_samples_per_send.clone(),
        );
        registry.register(format!("{rs}highest_timestamp_in_seconds"), "Highest timestamp that has come into the remote storage via the Appender interface, in seconds since epoch", m.highest_timestamp_in_seconds.clone());
        registry.register(
            format!("{rs}samples_in"),
            "Samples in to remote storage, compare to samples out for queue managers",
            m.samples_in.clone(),
        );
        registry.register(
            format!("{rs}histograms_in"),
            "Histograms in to remote storage, compare to histograms out for queue managers.",
            m.histograms_in.clone(),
        );
        registry.register(
            format!("{rs}exemplars_in"),
            "Exemplars in to remote storage, compare to exemplars out for queue managers.",
            m.exemplars_in.clone(),
        );
        m.histograms.register(registry, "histograms");
        m.exemplars.register(registry, "exemplars");
        m.metadata.register(registry, "metadata");
        registry.register(
            format!("{rs}metadata_bytes"),
            "The total number of bytes of metadata sent by the queue after compression.",
            m.metadata_bytes.clone(),
        );
        let ww = "prometheus_wal_watcher_";
        registry.register(
            format!("{ww}records_read"),
            "Number of records read by the WAL watcher from the WAL",
            m.watcher_records_read.clone(),
        );
        registry.register(
            format!("{ww}record_decode_failures"),
            "Number of records read by the WAL watcher that resulted in an error when decoding",
            m.watcher_decode_failures.clone(),
        );
        registry.register(
            format!("{ww}current_segment"),
            "Current segment the WAL watcher is reading records from",
            m.watcher_current_segment.clone(),
        );
        m
    }

    /// Resolves the children of one queue.
    pub fn for_queue(&self, remote_name: &str, url: &str) -> QueueMetrics {
        let l = QueueLabels {
            remote_name: remote_name.to_owned(),
            url: url.to_owned(),
        };
        let drop = |reason: DropReason| {
            self.samples_dropped.get_or_create_owned(&DropLabels {
                remote_name: l.remote_name.clone(),
                url: l.url.clone(),
                reason: reason.label(),
            })
        };
        let consumer = ConsumerLabels {
            consumer: remote_name.to_owned(),
        };
        let records = |ty: &'static str| {
            self.watcher_records_read
                .get_or_create_owned(&RecordTypeLabels {
                    consumer: remote_name.to_owned(),
                    r#type: ty,
                })
        };
        QueueMetrics {
            samples: self.samples.get_or_create_owned(&l),
            samples_failed: self.samples_failed.get_or_create_owned(&l),
            samples_retried: self.samples_retried.get_or_create_owned(&l),
            dropped_too_old: drop(DropReason::TooOld),
            dropped_series: drop(DropReason::DroppedSeries),
            dropped_unknown: drop(DropReason::UnintentionallyDroppedSeries),
            enqueue_retries: self.enqueue_retries.get_or_create_owned(&l),
            bytes: self.bytes.get_or_create_owned(&l),
            sent_batch_duration: self.sent_batch_duration.get_or_create_owned(&l),
            queue_highest_timestamp: self.queue_highest_timestamp.get_or_create_owned(&l),
            queue_highest_sent_timestamp: self.queue_highest_sent_timestamp.get_or_create_owned(&l),
            samples_pending: self.samples_pending.get_or_create_owned(&l),
            histograms_pending: self.histograms_pending.get_or_create_owned(&l),
            exemplars_pending: self.exemplars_pending.get_or_create_owned(&l),
            shard_capacity: self.shard_capacity.get_or_create_owned(&l),
            shards: self.shards.get_or_create_owned(&l),
            shards_max: self.shards_max.get_or_create_owned(&l),
            shards_min: self.shards_min.get_or_create_owned(&l),
            shards_desired: self.shards_desired.get_or_create_owned(&l),
            max_samples_per_send: self.max_samples_per_send.get_or_create_owned(&l),
            highest_timestamp_in_seconds: self.highest_timestamp_in_seconds.clone(),
            samples_in: self.samples_in.clone(),
            histograms_in: self.histograms_in.clone(),
            exemplars_in: self.exemplars_in.clone(),
            histograms: self.histograms.for_queue(&l),
            exemplars: self.exemplars.for_queue(&l),
            metadata: self.metadata.for_queue(&l),
            metadata_bytes: self.metadata_bytes.get_or_create_owned(&l),
            records_series: records("series"),
            records_samples: records("samples"),
            records_histograms: records("histograms"),
            records_exemplars: records("exemplars"),
            records_metadata: records("metadata"),
            records_other: records("other"),
            decode_failures: self.watcher_decode_failures.get_or_create_owned(&consumer),
            current_segment: self.watcher_current_segment.get_or_create_owned(&consumer),
        }
    }

    /// Removes the children of a stopped queue from every family.
    pub fn remove_queue(&self, remote_name: &str, url: &str) {
        let l = QueueLabels {
            remote_name: remote_name.to_owned(),
            url: url.to_owned(),
        };
        for f in [
            &self.samples,
            &self.samples_failed,
            &self.samples_retried,
            &self.enqueue_retries,
            &self.bytes,
            &self.metadata_bytes,
        ] {
            f.remove(&l);
        }
        for k in [&self.histograms, &self.exemplars, &self.metadata] {
            k.remove(&l);
        }
        for f in [
            &self.samples_pending,
            &self.histograms_pending,
            &self.exemplars_pending,
            &self.shard_capacity,
            &self.shards,
            &self.shards_max,
            &self.shards_min,
            &self.max_samples_per_send,
        ] {
            f.remove(&l);
        }
        for f in [
            &self.queue_highest_timestamp,
            &self.queue_highest_sent_timestamp,
            &self.shards_desired,
        ] {
            f.remove(&l);
        }
        self.sent_batch_duration.remove(&l);
        for reason in [
            DropReason::TooOld,
            DropReason::DroppedSeries,
            DropReason::UnintentionallyDroppedSeries,
        ] {
            self.samples_dropped.remove(&DropLabels {
                remote_name: l.remote_name.clone(),
                url: l.url.clone(),
                reason: reason.label(),
            });
        }
        let consumer = ConsumerLabels {
            consumer: remote_name.to_owned(),
        };
        self.watcher_decode_failures.remove(&consumer);
        self.watcher_current_segment.remove(&consumer);
        for ty in [
            "series",
            "samples",
            "histograms",
            "exemplars",
            "metadata",
            "other",
        ] {
            self.watcher_records_read.remove(&RecordTypeLabels {
                consumer: remote_name.to_owned(),
                r#type: ty,
            });
        }
    }
}

/// The resolved metric handles of one queue; cloning shares the values.
#[derive(Clone)]
pub struct QueueMetrics {
    pub samples: Counter,
    pub samples_failed: Counter,
    pub samples_retried: Counter,
    pub dropped_too_old: Counter,
    pub dropped_series: Counter,
    pub dropped_unknown: Counter,
    pub enqueue_retries: Counter,
    pub bytes: Counter,
    pub sent_batch_duration: Histogram,
    pub queue_highest_timestamp: FloatGauge,
    pub queue_highest_sent_timestamp: FloatGauge,
    pub samples_pending: Gauge,
    pub histograms_pending: Gauge,
    pub exemplars_pending: Gauge,
    pub shard_capacity: Gauge,
    pub shards: Gauge,
    pub shards_max: Gauge,
    pub shards_min: Gauge,
    pub shards_desired: FloatGauge,
    pub max_samples_per_send: Gauge,
    pub highest_timestamp_in_seconds: FloatGauge,
    pub samples_in: Counter,
    pub histograms_in: Counter,
    pub exemplars_in: Counter,
    pub histograms: KindCounters,
    pub exemplars: KindCounters,
    pub metadata: KindCounters,
    pub metadata_bytes: Counter,
    pub records_series: Counter,
    pub records_samples: Counter,
    pub records_histograms: Counter,
    pub records_exemplars: Counter,
    pub records_metadata: Counter,
    pub records_other: Counter,
    pub decode_failures: Counter,
    pub current_segment: Gauge,
}

impl QueueMetrics {
    pub fn dropped(&self, reason: DropReason) -> &Counter {
        match reason {
            DropReason::TooOld => &self.dropped_too_old,
            DropReason::DroppedSeries => &self.dropped_series,
            DropReason::UnintentionallyDroppedSeries => &self.dropped_unknown,
        }
    }
}

/// Raises a float gauge to `v` if it is higher (a monotone "highest" gauge).
pub(crate) fn raise(g: &FloatGauge, v: f64) {
    if v > g.get() {
        g.set(v);
    }
}
