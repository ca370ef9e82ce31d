//! The queue manager of one `remote_write` entry.
//!
//! Tasks:
//! - the **watcher** reads WAL records from the consumer cursor, decides
//!   once per series whether `write_relabel_configs` keep, drop or rewrite
//!   it (no per-series state without such rules: labels are read from the
//!   storage's [`tributary_model::LabelStore`] when a batch is encoded),
//!   registers each record with the [`AckTracker`] and enqueues its
//!   samples to shard `ref % n`,
//!   one message per shard per record (a channel send and a wake-up per
//!   sample cost more than encoding it). Each shard holds at most
//!   `capacity` queued samples (a semaphore of that many permits); a full
//!   shard makes the watcher sleep and retry (`enqueue_retries_total`), so
//!   a dead endpoint stops WAL reading instead of growing memory.
//! - **shards** batch up to `max_samples_per_send` samples (or whatever
//!   arrived within `batch_send_deadline` of the first sample of the batch,
//!   or at once when the watcher has just caught up with a backlog of old
//!   records — after an outage or a restart — so its tail does not wait),
//!   send with unbounded retries on recoverable errors, then report the
//!   batch's samples done to the tracker, which acknowledges the WAL cursor.
//! - the **resharder** recomputes the desired shard count every
//!   `shard_update_interval` from EWMA rates (Prometheus's formula); the
//!   watcher applies it between records by closing all shards, letting them
//!   flush, and starting the new set, so no sample is lost or reordered.
//!
//! - the **metadata sender** (remote write 1.0 with `metadata_config.send`)
//!   sends, every `send_interval`, metadata-only requests with the latest
//!   metadata of every metric family the watcher has seen in Metadata
//!   records, in chunks of `max_samples_per_send`. 2.0 carries metadata
//!   inline with each series instead.
//!
//! Native histograms and exemplars travel like samples (one TimeSeries
//! entry each, same shard as their series). With 1.0 they are forwarded
//! only when `send_native_histograms` / `send_exemplars` ask for them (and
//! are then not even counted, as Prometheus's watcher skips them); 2.0
//! always carries them.
//!
//! On stop the watcher stops reading, shards flush until the deadline and
//! are then cancelled; cancelled samples are never acknowledged, so the
//! next start re-reads them from the WAL. For the same reason a shard whose
//! send fails while stopping gives up at once instead of retrying until the
//! deadline: with the endpoint down, shutdown takes one attempt, not the
//! whole flush deadline (Prometheus waits it out, as it would lose the
//! data otherwise).

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;
use tributary_model::{
    LabelStore, Labels, MetricType, NativeHistogram, RefMap, SeriesRef, SharedLabelStore, Timestamp,
};

use crate::ack::{AckTracker, RecordRuns};
use crate::client::{Protocol, SendError, WriteClient};
use crate::encode::{
    EncodableSample, ExternalLabels, ItemLabels, MetricMetadata, Payload, WriteRequestEncoder,
};
use crate::encode_v2::WriteRequestV2Encoder;
use crate::metrics::{raise, DropReason, QueueMetrics};
use crate::source::{Acker, DecodedRecord, RecordKind, RecordSource};

/// First sleep when a shard queue is full; doubles up to `max_backoff`.
const ENQUEUE_FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Fallback re-read interval when no commit notification arrives.
const IDLE_READ_INTERVAL: Duration = Duration::from_secs(15);
/// Wait after a WAL read error before trying again.
const READ_ERROR_BACKOFF: Duration = Duration::from_secs(5);
/// Resharding is skipped when the last successful send is older than this.
const RESHARD_STALE_SEND: Duration = Duration::from_secs(10);
const EWMA_ALPHA: f64 = 0.2;
const SHARD_TOLERANCE: f64 = 0.3;
const BACKLOG_CATCHUP: f64 = 0.05;
/// Never reduce shards while the queue is this far behind (seconds).
const DOWNSHARD_MAX_DELAY_SECS: f64 = 10.0;

/// `write_relabel_configs` as a function of a series' labels (external
/// labels already added); `None` drops the series.
pub type RelabelFn = Arc<dyn Fn(&Labels) -> Option<Labels> + Send + Sync>;

/// What a queue does to a series' stored labels before sending them:
/// external labels are added where the series lacks the name, then the
/// write relabeling runs (Prometheus's order).
#[derive(Clone, Default)]
pub struct SeriesTransform {
    pub external: Labels,
    pub relabel: Option<RelabelFn>,
}

impl SeriesTransform {
    /// Sends the stored labels unchanged.
    pub fn identity() -> Self {
        Self::default()
    }

    /// The stored labels with the external labels added.
    fn with_external(&self, labels: &Labels) -> Labels {
        if self.external.is_empty() {
            return labels.clone();
        }
        let mut b = labels.to_builder();
        for l in &self.external {
            if b.get(l.name).is_none() {
                b.set(l.name, l.value);
            }
        }
        b.labels()
    }

    /// The watcher's decision for a series with these stored labels.
    fn decide(&self, stored: &Labels, relabel: &RelabelFn) -> SeriesDecision {
        let full = self.with_external(stored);
        match relabel(&full) {
            None => SeriesDecision::Drop,
            Some(out) if out.is_empty() => SeriesDecision::Drop,
            Some(out) if out == full => SeriesDecision::Keep,
            Some(out) => SeriesDecision::Rewrite(out),
        }
    }
}

/// What write relabeling made of a series.
#[derive(Clone, Debug)]
enum SeriesDecision {
    /// Sent with its stored labels (and external labels).
    Keep,
    Drop,
    /// Sent with these labels instead.
    Rewrite(Labels),
}

/// The queue_config of one remote_write entry, validated.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// `remote_name` label and WAL consumer name.
    pub name: String,
    /// Samples buffered per shard.
    pub capacity: usize,
    pub min_shards: usize,
    pub max_shards: usize,
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Samples older than this are dropped (`None` = keep everything).
    pub sample_age_limit: Option<Duration>,
    /// How often the shard count is recomputed (Prometheus: 10s).
    pub shard_update_interval: Duration,
    /// Remote write 1.0: forward native histograms (2.0 always does).
    pub send_native_histograms: bool,
    /// Remote write 1.0: forward exemplars (2.0 always does).
    pub send_exemplars: bool,
    /// 1.0 metadata requests (`metadata_config`); `None` when not sent.
    pub metadata: Option<MetadataSettings>,
}

/// `metadata_config` of a remote_write entry with `send: true`.
#[derive(Clone, Debug)]
pub struct MetadataSettings {
    pub send_interval: Duration,
    /// Metadata entries per request.
    pub max_per_send: usize,
}

impl QueueSettings {
    fn normalized(mut self) -> Self {
        self.capacity = self.capacity.max(1);
        self.min_shards = self.min_shards.max(1);
        self.max_shards = self.max_shards.max(self.min_shards);
        self.max_samples_per_send = self.max_samples_per_send.max(1);
        self.max_backoff = self.max_backoff.max(self.min_backoff);
        self
    }
}

/// A point-in-time view of a queue, for the web UI.
#[derive(Clone, Debug)]
pub struct QueueStatus {
    pub name: String,
    pub url: String,
    pub shards: usize,
    pub desired_shards: f64,
    pub pending_samples: i64,
    pub last_send: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Highest timestamp (ms) delivered, 0 if nothing yet.
    pub highest_sent_timestamp_ms: Timestamp,
    /// The acknowledged WAL position, formatted.
    pub acked_position: Option<String>,
    pub wal_backlog_bytes: Option<u64>,
    /// Highest timestamp (ms) read from the WAL for this queue: with
    /// `highest_sent_timestamp_ms`, the queue's lag.
    pub highest_read_timestamp_ms: Timestamp,
    pub samples_sent_total: u64,
    pub samples_failed_total: u64,
    pub samples_retried_total: u64,
}

/// What a queued item carries instead of a float.
#[derive(Debug)]
enum Item {
    Histogram(NativeHistogram),
    Exemplar(Labels, f64),
}

/// Which per-kind counters an item belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemKind {
    Sample,
    Histogram,
    Exemplar,
}

/// A sample, histogram or exemplar on its way to the endpoint. Nearly
/// every item is a float of a series sent with its stored labels: that is
/// 32 bytes with nothing to free, and all else is boxed aside (a record's
/// items are moved twice, into a chunk and into a batch, and freed once).
#[derive(Debug)]
struct QueuedSample {
    series: SeriesRef,
    t: Timestamp,
    /// The float's value; 0 for a histogram or exemplar.
    value: f64,
    extra: Option<Box<Extra>>,
}

/// What few items carry besides a float.
#[derive(Debug)]
struct Extra {
    /// Labels write relabeling produced; `None`: the stored ones.
    rewritten: Option<Labels>,
    /// The series' metadata, sent inline by 2.0.
    metadata: Option<Arc<MetricMetadata>>,
    /// A histogram or exemplar; `None`: the float.
    item: Option<Item>,
}

/// The items of one WAL record for one shard, with the record's
/// ack-tracker sequence (carried once, not per item); no items asks the
/// shard to send what it holds.
struct Chunk {
    seq: u64,
    items: Vec<QueuedSample>,
}

impl QueuedSample {
    /// A float of a series sent with its stored labels.
    fn float(series: SeriesRef, t: Timestamp, value: f64) -> Self {
        QueuedSample {
            series,
            t,
            value,
            extra: None,
        }
    }

    fn new(
        series: SeriesRef,
        t: Timestamp,
        item: ItemRef<'_>,
        rewritten: Option<Labels>,
        metadata: Option<Arc<MetricMetadata>>,
    ) -> Self {
        let (value, item) = match item {
            ItemRef::Float(v) => (v, None),
            ItemRef::Histogram(h) => (0.0, Some(Item::Histogram(h.clone()))),
            ItemRef::Exemplar(l, v) => (0.0, Some(Item::Exemplar(l.clone(), v))),
        };
        let plain = item.is_none() && rewritten.is_none() && metadata.is_none();
        let extra = Extra {
            rewritten,
            metadata,
            item,
        };
        QueuedSample {
            series,
            t,
            value,
            extra: (!plain).then(|| Box::new(extra)),
        }
    }

    fn item(&self) -> Option<&Item> {
        self.extra.as_ref()?.item.as_ref()
    }

    fn rewritten(&self) -> Option<&Labels> {
        self.extra.as_ref()?.rewritten.as_ref()
    }

    fn kind(&self) -> ItemKind {
        match self.item() {
            None => ItemKind::Sample,
            Some(Item::Histogram(_)) => ItemKind::Histogram,
            Some(Item::Exemplar(..)) => ItemKind::Exemplar,
        }
    }
}

/// A queued sample with its labels found: in the store (under the read
/// lock the encoder holds) or rewritten by relabeling.
struct Resolved<'a> {
    sample: &'a QueuedSample,
    labels: ItemLabels<'a>,
}

impl<'a> Resolved<'a> {
    fn new(
        sample: &'a QueuedSample,
        store: &'a LabelStore,
        external: &'a ExternalLabels,
    ) -> Option<Self> {
        let labels = match sample.rewritten() {
            Some(l) => ItemLabels::Owned(l),
            None => ItemLabels::Stored {
                pairs: store.pairs(),
                ids: store.pair_ids(sample.series)?,
                external,
            },
        };
        Some(Resolved { sample, labels })
    }
}

impl<'a> EncodableSample<'a> for Resolved<'a> {
    fn labels(&self) -> ItemLabels<'a> {
        self.labels.clone()
    }
    fn timestamp(&self) -> Timestamp {
        self.sample.t
    }
    fn value(&self) -> f64 {
        self.sample.value
    }
    fn payload(&self) -> Payload<'a> {
        match self.sample.item() {
            None => Payload::Sample(self.sample.value),
            Some(Item::Histogram(h)) => Payload::Histogram(h),
            Some(Item::Exemplar(l, v)) => Payload::Exemplar(l, *v),
        }
    }
    fn metadata(&self) -> Option<&'a MetricMetadata> {
        self.sample.extra.as_ref()?.metadata.as_deref()
    }
}

/// Adds `s` to a batch's counts by kind (samples, histograms, exemplars:
/// `ItemKind`'s order) and, unless it is an exemplar (whose time is not a
/// sample's), to its newest time.
fn count_item(kinds: &mut [u64; 3], highest: &mut Timestamp, s: &QueuedSample) {
    let kind = s.kind();
    if let Some(n) = kinds.get_mut(kind as usize) {
        *n += 1;
    }
    if kind != ItemKind::Exemplar {
        *highest = (*highest).max(s.t);
    }
}

/// Which counter of each kind to bump.
#[derive(Clone, Copy)]
enum Tally {
    Sent,
    Failed,
    Retried,
}

fn tally(m: &QueueMetrics, [samples, histograms, exemplars]: [u64; 3], which: Tally) {
    let (s, h, e) = match which {
        Tally::Sent => (&m.samples, &m.histograms.sent, &m.exemplars.sent),
        Tally::Failed => (&m.samples_failed, &m.histograms.failed, &m.exemplars.failed),
        Tally::Retried => (
            &m.samples_retried,
            &m.histograms.retried,
            &m.exemplars.retried,
        ),
    };
    s.inc_by(samples);
    h.inc_by(histograms);
    e.inc_by(exemplars);
}

#[derive(Default)]
struct Outcome {
    last_send: Option<SystemTime>,
    last_error: Option<String>,
    last_success: Option<Instant>,
    no_reshard_until: Option<Instant>,
}

/// State shared by the watcher, the shards and the resharder.
struct Shared<P> {
    settings: QueueSettings,
    /// The label sets of the series the WAL's records refer to.
    labels: SharedLabelStore,
    external: ExternalLabels,
    client: WriteClient,
    metrics: QueueMetrics,
    tracker: Mutex<AckTracker<P>>,
    acker: Acker<P>,
    outcome: Mutex<Outcome>,
    pending: AtomicI64,
    /// Pending items by [`ItemKind`] (samples, histograms, exemplars), for
    /// the per-kind `*_pending` gauges.
    pending_by_kind: [AtomicI64; 3],
    highest_enqueued_ms: AtomicI64,
    highest_sent_ms: AtomicI64,
    /// Cumulative counters feeding the resharding EWMAs.
    samples_in: AtomicU64,
    samples_out: AtomicU64,
    samples_dropped: AtomicU64,
    send_nanos: AtomicU64,
    shards: AtomicUsize,
    desired_shards: AtomicUsize,
    desired_unrounded: Mutex<f64>,
    backlog_bytes: AtomicU64,
    /// Set once stop was requested: failed sends are not retried.
    stopping: std::sync::atomic::AtomicBool,
    /// Wakes shards sleeping in a retry backoff when stop is requested.
    stop_notify: tokio::sync::Notify,
    /// Latest metadata per metric family, for 1.0 metadata requests.
    family_metadata: Mutex<std::collections::BTreeMap<String, Arc<MetricMetadata>>>,
    /// Bodies at least this large are split before they are sent.
    refused_size: Mutex<RefusedSize>,
}

/// How long a size the receiver refused keeps bodies of that size from
/// being sent. After it, one full batch is tried again, so that a limit
/// raised on the receiver's side (a proxy's `client_max_body_size`) is
/// found without a restart, at the cost of a refused request or a few.
const REFUSED_SIZE_KEPT: Duration = Duration::from_secs(600);

/// The smallest body the receiver refused for its size (413) within
/// [`REFUSED_SIZE_KEPT`], and when it was last refused.
#[derive(Debug, Default)]
struct RefusedSize(Option<(usize, Instant)>);

impl RefusedSize {
    /// Whether a body of `len` bytes is known to be too large.
    fn covers(&mut self, len: usize, now: Instant) -> bool {
        match self.0 {
            Some((_, at)) if now.saturating_duration_since(at) >= REFUSED_SIZE_KEPT => {
                self.0 = None;
                false
            }
            Some((size, _)) => len >= size,
            None => false,
        }
    }

    fn remember(&mut self, len: usize, now: Instant) {
        let size = self.0.map_or(len, |(size, _)| size.min(len));
        self.0 = Some((size, now));
    }
}

/// One running queue: watcher, shards and resharder.
pub struct QueueManager {
    status: Box<dyn Fn() -> QueueStatus + Send + Sync>,
    stop_tx: watch::Sender<Option<Instant>>,
    watcher: JoinHandle<()>,
    resharder: JoinHandle<()>,
    metadata_sender: Option<JoinHandle<()>>,
}

impl QueueManager {
    /// Starts the queue's tasks on the current tokio runtime.
    pub fn start<S: RecordSource>(
        settings: QueueSettings,
        client: WriteClient,
        source: S,
        transform: SeriesTransform,
        metrics: QueueMetrics,
    ) -> Self {
        let settings = settings.normalized();
        metrics.shards_min.set(settings.min_shards as i64);
        metrics.shards_max.set(settings.max_shards as i64);
        metrics.shard_capacity.set(settings.capacity as i64);
        metrics
            .max_samples_per_send
            .set(settings.max_samples_per_send as i64);
        metrics.shards_desired.set(settings.min_shards as f64);
        let shared = Arc::new(Shared {
            labels: source.label_store(),
            external: ExternalLabels::new(&transform.external),
            acker: source.acker(),
            tracker: Mutex::new(AckTracker::new()),
            outcome: Mutex::new(Outcome::default()),
            pending: AtomicI64::new(0),
            pending_by_kind: Default::default(),
            highest_enqueued_ms: AtomicI64::new(0),
            highest_sent_ms: AtomicI64::new(0),
            samples_in: AtomicU64::new(0),
            samples_out: AtomicU64::new(0),
            samples_dropped: AtomicU64::new(0),
            send_nanos: AtomicU64::new(0),
            shards: AtomicUsize::new(settings.min_shards),
            desired_shards: AtomicUsize::new(settings.min_shards),
            desired_unrounded: Mutex::new(settings.min_shards as f64),
            backlog_bytes: AtomicU64::new(u64::MAX),
            stopping: std::sync::atomic::AtomicBool::new(false),
            stop_notify: tokio::sync::Notify::new(),
            family_metadata: Mutex::new(std::collections::BTreeMap::new()),
            refused_size: Mutex::new(RefusedSize::default()),
            settings,
            client,
            metrics,
        });
        let (stop_tx, stop_rx) = watch::channel(None);
        let watcher = tokio::spawn(run_watcher(
            source,
            shared.clone(),
            transform,
            stop_rx.clone(),
        ));
        let metadata_sender = shared
            .settings
            .metadata
            .clone()
            .map(|m| tokio::spawn(run_metadata_sender(shared.clone(), m, stop_rx.clone())));
        let resharder = tokio::spawn(run_resharder(shared.clone(), stop_rx));
        let status_shared = shared;
        Self {
            status: Box::new(move || status_of(&status_shared)),
            stop_tx,
            watcher,
            resharder,
            metadata_sender,
        }
    }

    pub fn status(&self) -> QueueStatus {
        (self.status)()
    }

    /// Stops reading, lets shards flush for up to `flush_deadline`, then
    /// cancels what is left (it stays unacknowledged in the WAL).
    pub async fn stop(self, flush_deadline: Duration) {
        let _ = self.stop_tx.send(Some(Instant::now() + flush_deadline));
        if let Err(e) = self.watcher.await {
            tracing::error!(error = %e, "remote write watcher task failed");
        }
        self.resharder.abort();
        let _ = self.resharder.await;
        if let Some(m) = self.metadata_sender {
            m.abort();
            let _ = m.await;
        }
    }
}

fn status_of<P: Copy + std::fmt::Debug>(shared: &Shared<P>) -> QueueStatus {
    let outcome = shared.outcome.lock();
    let backlog = shared.backlog_bytes.load(Ordering::Relaxed);
    QueueStatus {
        name: shared.settings.name.clone(),
        url: shared.client.url().to_string(),
        shards: shared.shards.load(Ordering::Relaxed),
        desired_shards: *shared.desired_unrounded.lock(),
        pending_samples: shared.pending_by_kind[0].load(Ordering::Relaxed),
        last_send: outcome.last_send,
        last_error: outcome.last_error.clone(),
        highest_sent_timestamp_ms: shared.highest_sent_ms.load(Ordering::Relaxed),
        acked_position: shared.tracker.lock().watermark().map(|p| format!("{p:?}")),
        wal_backlog_bytes: (backlog != u64::MAX).then_some(backlog),
        highest_read_timestamp_ms: shared.highest_enqueued_ms.load(Ordering::Relaxed),
        samples_sent_total: shared.metrics.samples.get(),
        samples_failed_total: shared.metrics.samples_failed.get(),
        samples_retried_total: shared.metrics.samples_retried.get(),
    }
}

fn set_pending_gauges<P>(shared: &Shared<P>) {
    let m = &shared.metrics;
    let [samples, histograms, exemplars] = &shared.pending_by_kind;
    m.samples_pending.set(samples.load(Ordering::Relaxed));
    m.histograms_pending.set(histograms.load(Ordering::Relaxed));
    m.exemplars_pending.set(exemplars.load(Ordering::Relaxed));
}

fn is_stopping(stop: &watch::Receiver<Option<Instant>>) -> bool {
    stop.borrow().is_some()
}

/// Waits until stop is requested; returns the flush deadline.
async fn stop_requested(stop: &mut watch::Receiver<Option<Instant>>) -> Instant {
    match stop.wait_for(|v| v.is_some()).await {
        Ok(v) => v.unwrap_or_else(Instant::now),
        // The manager was dropped without stop(): flush nothing, exit now.
        Err(_) => Instant::now(),
    }
}

// ---------------------------------------------------------------- watcher

async fn run_watcher<S: RecordSource>(
    mut source: S,
    shared: Arc<Shared<S::Position>>,
    transform: SeriesTransform,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let mut series = SeriesCache::default();
    let mut series_gc = source.series_gc_generation();
    let mut shards = ShardSet::start(&shared, shared.settings.min_shards);
    let mut record = DecodedRecord::default();
    let mut stop_deadline = None;
    // Whether the records read since the watcher was last idle included
    // samples older than batch_send_deadline (a backlog: after an outage or
    // a restart), so the shards' partial batches must not wait any longer.
    let mut read_backlog = false;
    while stop_deadline.is_none() {
        if is_stopping(&stop) {
            stop_deadline = Some(stop_requested(&mut stop).await);
            break;
        }
        let desired = shared.desired_shards.load(Ordering::Relaxed);
        if desired != shards.len() {
            match shards.reshard(&shared, desired, &mut stop).await {
                Ok(new) => shards = new,
                Err((old, deadline)) => {
                    shards = old;
                    stop_deadline = Some(deadline);
                    break;
                }
            }
        }
        record.clear();
        match source.next_record(&mut record) {
            Ok(Some(pos)) => {
                let gc = source.series_gc_generation();
                if gc != series_gc {
                    // Truncation collected series: forget them.
                    series_gc = gc;
                    source.retain_live(&mut series.decisions);
                    source.retain_live(&mut series.metadata);
                }
                if let Some(segment) = source.current_segment() {
                    shared.metrics.current_segment.set(segment as i64);
                }
                if !read_backlog {
                    let bsd = shared.settings.batch_send_deadline.as_millis() as i64;
                    let oldest = record.samples.first().map(|s| s.1);
                    read_backlog = oldest.is_some_and(|t| now_ms().saturating_sub(t) > bsd);
                }
                let ok = handle_record(
                    &shared,
                    &transform,
                    &mut series,
                    &record,
                    pos,
                    &mut shards,
                    &mut stop,
                )
                .await;
                if !ok {
                    stop_deadline = Some(stop_requested(&mut stop).await);
                }
            }
            Ok(None) => {
                if let Some(b) = source.backlog_bytes() {
                    shared.backlog_bytes.store(b, Ordering::Relaxed);
                }
                if std::mem::take(&mut read_backlog) {
                    // Caught up: the tail of the backlog has waited long
                    // enough; send it now, not batch_send_deadline later.
                    shards.flush();
                }
                tokio::select! {
                    _ = source.wait_for_data(IDLE_READ_INTERVAL) => {}
                    d = stop_requested(&mut stop) => stop_deadline = Some(d),
                }
            }
            Err(e) => {
                tracing::error!(remote_name = %shared.settings.name, error = %e, "error tailing WAL");
                tokio::select! {
                    _ = tokio::time::sleep(READ_ERROR_BACKOFF) => {}
                    d = stop_requested(&mut stop) => stop_deadline = Some(d),
                }
            }
        }
    }
    let deadline = stop_deadline.unwrap_or_else(Instant::now);
    shared.stopping.store(true, Ordering::Release);
    shared.stop_notify.notify_waiters();
    shards.shutdown(deadline).await;
}

/// The watcher's per-series state: what write relabeling decided (only
/// kept when there are rules) and, for 2.0 which sends it inline, the
/// latest metadata per ref.
#[derive(Default)]
struct SeriesCache {
    decisions: RefMap<SeriesDecision>,
    metadata: RefMap<Arc<MetricMetadata>>,
}

/// The metric family name a series' metadata belongs to: its metric name
/// without the suffixes its type adds (`_bucket`, `_sum`, …), as the
/// scrape cache keys metadata by family.
fn family_name(metric: &str, kind: MetricType) -> &str {
    let suffixes: &[&str] = match kind {
        MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
        MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
        MetricType::Summary => &["_sum", "_count", "_created"],
        MetricType::Counter => &["_created"],
        MetricType::Info => &["_info"],
        _ => &[],
    };
    suffixes
        .iter()
        .find_map(|s| metric.strip_suffix(s))
        .unwrap_or(metric)
}

/// Remembers metadata of kept series, per series (2.0) and per family (1.0
/// metadata requests).
fn store_metadata<P>(
    shared: &Shared<P>,
    series: &mut SeriesCache,
    record: &DecodedRecord,
    v2: bool,
) {
    if record.metadata.is_empty() {
        return;
    }
    let mut families = None;
    let store = shared.labels.read();
    for (r, m) in &record.metadata {
        if store.resolve(*r).is_none()
            || matches!(series.decisions.get(*r), Some(SeriesDecision::Drop))
        {
            continue;
        }
        if v2 {
            series.metadata.insert(*r, Arc::clone(m));
        }
        if shared.settings.metadata.is_some() {
            if let Some(metric) = store.metric_name(*r) {
                let family = family_name(&metric, m.kind);
                let map = families.get_or_insert_with(|| shared.family_metadata.lock());
                if map.get(family).is_none_or(|old| **old != **m) {
                    map.insert(family.to_string(), Arc::clone(m));
                }
            }
        }
    }
}

/// The items of a record this queue forwards: (series, time, item).
fn record_items<'a>(
    record: &'a DecodedRecord,
    floats: bool,
    histograms: bool,
    exemplars: bool,
) -> impl Iterator<Item = (SeriesRef, Timestamp, ItemRef<'a>)> + 'a {
    // A kind not forwarded is not walked at all.
    let all_or_none = |on: bool| if on { usize::MAX } else { 0 };
    let samples = record
        .samples
        .iter()
        .take(all_or_none(floats))
        .map(|&(r, t, v)| (r, t, ItemRef::Float(v)));
    let hs = record
        .histograms
        .iter()
        .take(all_or_none(histograms))
        .map(|(r, t, h)| (*r, *t, ItemRef::Histogram(h)));
    let xs = record
        .exemplars
        .iter()
        .take(all_or_none(exemplars))
        .map(|(r, t, v, l)| (*r, *t, ItemRef::Exemplar(l, *v)));
    samples.chain(hs).chain(xs)
}

/// A borrowed item of a decoded record.
#[derive(Clone, Copy)]
enum ItemRef<'a> {
    Float(f64),
    Histogram(&'a NativeHistogram),
    Exemplar(&'a Labels, f64),
}

impl ItemRef<'_> {
    fn kind(self) -> ItemKind {
        match self {
            ItemRef::Float(_) => ItemKind::Sample,
            ItemRef::Histogram(_) => ItemKind::Histogram,
            ItemRef::Exemplar(..) => ItemKind::Exemplar,
        }
    }
}

/// Applies one record; returns false if a stop interrupted enqueueing.
async fn handle_record<P: Copy + Send + Sync + 'static>(
    shared: &Shared<P>,
    transform: &SeriesTransform,
    series: &mut SeriesCache,
    record: &DecodedRecord,
    pos: P,
    shards: &mut ShardSet,
    stop: &mut watch::Receiver<Option<Instant>>,
) -> bool {
    let m = &shared.metrics;
    if let Some(e) = &record.decode_error {
        m.decode_failures.inc();
        tracing::warn!(remote_name = %shared.settings.name, error = %e, "skipping undecodable WAL record");
    }
    match record.kind {
        RecordKind::Series => {
            m.records_series.inc();
        }
        RecordKind::Samples => {
            m.records_samples.inc();
        }
        RecordKind::Histograms => {
            m.records_histograms.inc();
        }
        RecordKind::Exemplars => {
            m.records_exemplars.inc();
        }
        RecordKind::Metadata => {
            m.records_metadata.inc();
        }
        RecordKind::Other => {
            m.records_other.inc();
        }
    }
    let v2 = shared.client.protocol() == Protocol::V2;
    // Series records of the bootstrap carry the metadata known so far.
    store_metadata(shared, series, record, v2);
    let send_histograms = v2 || shared.settings.send_native_histograms;
    let send_exemplars = v2 || shared.settings.send_exemplars;
    let min_ts = min_allowed_timestamp(&shared.settings);
    // Sort what gets enqueued into one chunk per shard first, so the record
    // is registered with its exact count before any shard can complete
    // part of it. Each chunk is sized up front so it is not grown (and
    // copied) sample by sample: every item for one shard, else an even
    // spread plus three standard deviations of it.
    let items = record.samples.len() + record.histograms.len() + record.exemplars.len();
    let capacity = match shards.len() {
        0 | 1 => items,
        n => items / n + 3 * (items / n).isqrt() + 8,
    };
    let mut chunks: Vec<Vec<QueuedSample>> =
        std::iter::repeat_with(|| Vec::with_capacity(capacity))
            .take(shards.len())
            .collect();
    let mut in_by_kind = [0u64; 3];
    let mut keep_by_kind = [0i64; 3];
    let mut dropped = [0u64; 3];
    let mut highest = i64::MIN;
    // The common case — one shard, no write relabeling, 1.0 (no metadata
    // inline), nothing too old — takes the record's floats in one go:
    // built one at a time below, each item went through the stack, and its
    // reloads stalled on the narrower stores before them (two thirds of
    // this function's time).
    let floats_at_once = match chunks.as_mut_slice() {
        [chunk] if transform.relabel.is_none() && !v2 => {
            let (oldest, newest) = record
                .samples
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), &(_, t, _)| {
                    (lo.min(t), hi.max(t))
                });
            let young = oldest >= min_ts;
            if young {
                chunk.extend(
                    record
                        .samples
                        .iter()
                        .map(|&(r, t, v)| QueuedSample::float(r, t, v)),
                );
                let n = record.samples.len();
                in_by_kind[ItemKind::Sample as usize] += n as u64;
                keep_by_kind[ItemKind::Sample as usize] += n as i64;
                highest = highest.max(newest);
            }
            young
        }
        _ => false,
    };
    for (r, t, item) in record_items(record, !floats_at_once, send_histograms, send_exemplars) {
        let kind = item.kind() as usize;
        in_by_kind[kind] += 1;
        if t < min_ts {
            dropped[0] += 1;
            continue;
        }
        let rewritten = match relabel_decision(shared, transform, series, r) {
            Some(SeriesDecision::Keep) => None,
            Some(SeriesDecision::Rewrite(l)) => Some(l),
            Some(SeriesDecision::Drop) => {
                dropped[1] += 1;
                continue;
            }
            None => {
                dropped[2] += 1;
                tracing::debug!(remote_name = %shared.settings.name, series = %r, "dropped sample for unknown series reference");
                continue;
            }
        };
        keep_by_kind[kind] += 1;
        if !matches!(item, ItemRef::Exemplar(..)) {
            highest = highest.max(t);
        }
        let metadata = if v2 {
            series.metadata.get(r).cloned()
        } else {
            None
        };
        let sample = QueuedSample::new(r, t, item, rewritten, metadata);
        if let Some(chunk) = chunks.get_mut(shards.shard_of(r)) {
            chunk.push(sample);
        }
    }
    let m = &shared.metrics;
    m.samples_in.inc_by(in_by_kind[0]);
    m.histograms_in.inc_by(in_by_kind[1]);
    m.exemplars_in.inc_by(in_by_kind[2]);
    for (reason, n) in [
        DropReason::TooOld,
        DropReason::DroppedSeries,
        DropReason::UnintentionallyDroppedSeries,
    ]
    .into_iter()
    .zip(dropped)
    {
        if n > 0 {
            m.dropped(reason).inc_by(n);
        }
    }
    let total: u64 = in_by_kind.iter().sum();
    let keep: i64 = keep_by_kind.iter().sum();
    shared.samples_in.fetch_add(total, Ordering::Relaxed);
    shared
        .samples_dropped
        .fetch_add(total - keep as u64, Ordering::Relaxed);
    if highest > i64::MIN {
        shared
            .highest_enqueued_ms
            .fetch_max(highest, Ordering::Relaxed);
        let secs = highest as f64 / 1000.0;
        raise(&m.queue_highest_timestamp, secs);
        raise(&m.highest_timestamp_in_seconds, secs);
    }
    shared.pending.fetch_add(keep, Ordering::Relaxed);
    for (kind, n) in keep_by_kind.into_iter().enumerate() {
        shared.pending_by_kind[kind].fetch_add(n, Ordering::Relaxed);
    }
    set_pending_gauges(shared);
    let (seq, moved) = shared.tracker.lock().register(pos, keep as usize);
    if let Some(p) = moved {
        (shared.acker)(p);
    }
    for (idx, items) in chunks.into_iter().enumerate() {
        if items.is_empty() {
            continue;
        }
        if !shards
            .enqueue(shared, idx, Chunk { seq, items }, stop)
            .await
        {
            return false;
        }
    }
    true
}

/// What write relabeling makes of series `r`, decided on its first sample
/// (`None`: the storage does not know `r`). Without rules every series is
/// kept and nothing is looked up: a series the storage no longer has is
/// found out when its batch is encoded.
fn relabel_decision<P>(
    shared: &Shared<P>,
    transform: &SeriesTransform,
    series: &mut SeriesCache,
    r: SeriesRef,
) -> Option<SeriesDecision> {
    let Some(relabel) = &transform.relabel else {
        return Some(SeriesDecision::Keep);
    };
    if let Some(d) = series.decisions.get(r) {
        return Some(d.clone());
    }
    let stored = shared.labels.read().labels(r)?;
    let d = transform.decide(&stored, relabel);
    series.decisions.insert(r, d.clone());
    Some(d)
}

// ------------------------------------------------------- metadata sender

/// Sends every family's metadata every `send_interval` (1.0 only: 2.0
/// sends it inline). Each request is tried until it succeeds, fails for
/// good, or the next interval begins.
async fn run_metadata_sender<P>(
    shared: Arc<Shared<P>>,
    settings: MetadataSettings,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let mut encoder = WriteRequestEncoder::new();
    let interval = settings.send_interval.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop_requested(&mut stop) => return,
        }
        if shared.client.protocol() != Protocol::V1 {
            continue;
        }
        let all: Vec<(String, Arc<MetricMetadata>)> = shared
            .family_metadata
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let deadline = Instant::now() + interval;
        for chunk in all.chunks(settings.max_per_send.max(1)) {
            if !send_metadata_chunk(&shared, &mut encoder, chunk, deadline).await {
                break;
            }
        }
    }
}

/// Sends one metadata request with retries until `deadline`. Returns false
/// when the deadline passed (the rest waits for the next interval).
async fn send_metadata_chunk<P>(
    shared: &Shared<P>,
    encoder: &mut WriteRequestEncoder,
    chunk: &[(String, Arc<MetricMetadata>)],
    deadline: Instant,
) -> bool {
    let m = &shared.metrics;
    let n = chunk.len() as u64;
    let body = match encoder.encode_metadata(chunk.iter().map(|(f, md)| (f.as_str(), &**md))) {
        Ok(b) => b,
        Err(e) => {
            m.metadata.failed.inc_by(n);
            tracing::error!(remote_name = %shared.settings.name, error = %e, "encoding metadata failed");
            return true;
        }
    };
    let mut backoff = shared.settings.min_backoff;
    let mut attempt = 0u32;
    loop {
        match shared
            .client
            .send_as(body.clone(), attempt, Protocol::V1, 0)
            .await
        {
            Ok(()) => {
                m.metadata.sent.inc_by(n);
                m.metadata_bytes.inc_by(body.len() as u64);
                return true;
            }
            Err(SendError::NonRecoverable(msg) | SendError::TooLarge(msg)) => {
                m.metadata.failed.inc_by(n);
                tracing::error!(remote_name = %shared.settings.name, error = %msg, "non-recoverable error while sending metadata");
                return true;
            }
            Err(SendError::Recoverable {
                message,
                retry_after,
            }) => {
                let sleep = retry_after.unwrap_or(backoff);
                if Instant::now() + sleep >= deadline {
                    m.metadata.failed.inc_by(n);
                    tracing::warn!(remote_name = %shared.settings.name, error = %message, "sending metadata failed; retrying next interval");
                    return false;
                }
                m.metadata.retried.inc_by(n);
                tokio::time::sleep(sleep).await;
                backoff = (sleep * 2)
                    .max(shared.settings.min_backoff)
                    .min(shared.settings.max_backoff);
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

fn min_allowed_timestamp(settings: &QueueSettings) -> Timestamp {
    match settings.sample_age_limit {
        Some(limit) => now_ms().saturating_sub(limit.as_millis() as i64),
        None => i64::MIN,
    }
}

fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ----------------------------------------------------------------- shards

struct ShardSet {
    queues: Vec<ShardQueue>,
    handles: Vec<JoinHandle<()>>,
    hard_stop: watch::Sender<bool>,
}

/// The watcher's end of one shard: chunks of samples, and permits for the
/// room left under `capacity`.
struct ShardQueue {
    tx: mpsc::UnboundedSender<Chunk>,
    room: Arc<Semaphore>,
}

impl ShardSet {
    fn start<P: Copy + Send + Sync + 'static>(shared: &Arc<Shared<P>>, n: usize) -> Self {
        let n = n.max(1);
        let (hard_stop, hard_rx) = watch::channel(false);
        let mut queues = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            let room = Arc::new(Semaphore::new(shared.settings.capacity));
            handles.push(tokio::spawn(run_shard(
                shared.clone(),
                rx,
                Arc::clone(&room),
                hard_rx.clone(),
            )));
            queues.push(ShardQueue { tx, room });
        }
        shared.shards.store(n, Ordering::Relaxed);
        shared.metrics.shards.set(n as i64);
        Self {
            queues,
            handles,
            hard_stop,
        }
    }

    fn len(&self) -> usize {
        self.queues.len()
    }

    /// Asks every shard to send its partial batch now (an empty chunk).
    fn flush(&self) {
        for q in &self.queues {
            let _ = q.tx.send(Chunk {
                seq: 0,
                items: Vec::new(),
            });
        }
    }

    /// The shard of a series: all its samples go through one shard, in
    /// order. One shard (the usual case until the input outgrows a
    /// connection) needs no division, which costs tens of cycles a sample.
    fn shard_of(&self, series: SeriesRef) -> usize {
        match self.queues.len() as u64 {
            0 | 1 => 0,
            n => (series.0 % n) as usize,
        }
    }

    /// Puts a chunk of samples on shard `idx`, in pieces of at most
    /// `capacity`, waiting (with growing sleeps) while the shard is full.
    /// False if a stop was requested meanwhile.
    async fn enqueue<P>(
        &self,
        shared: &Shared<P>,
        idx: usize,
        mut chunk: Chunk,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> bool {
        let Some(queue) = self.queues.get(idx) else {
            return false;
        };
        let capacity = shared.settings.capacity;
        while !chunk.items.is_empty() {
            let rest = Chunk {
                seq: chunk.seq,
                items: if chunk.items.len() > capacity {
                    chunk.items.split_off(capacity)
                } else {
                    Vec::new()
                },
            };
            let n = u32::try_from(chunk.items.len()).unwrap_or(u32::MAX);
            let mut backoff = ENQUEUE_FIRST_BACKOFF;
            loop {
                match queue.room.try_acquire_many(n) {
                    Ok(permits) => {
                        // Given back by the shard as it takes the samples.
                        permits.forget();
                        break;
                    }
                    Err(TryAcquireError::Closed) => return false,
                    Err(TryAcquireError::NoPermits) => {
                        shared.metrics.enqueue_retries.inc();
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop_requested(stop) => return false,
                        }
                        backoff = (backoff * 2).min(shared.settings.max_backoff);
                    }
                }
            }
            if queue.tx.send(chunk).is_err() {
                return false;
            }
            chunk = rest;
        }
        true
    }

    /// Flushes every shard completely, then starts `n` new ones. If a stop
    /// arrives while flushing, returns the old (closing) set and the
    /// deadline so the caller can shut it down.
    async fn reshard<P: Copy + Send + Sync + 'static>(
        mut self,
        shared: &Arc<Shared<P>>,
        n: usize,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> Result<ShardSet, (ShardSet, Instant)> {
        tracing::info!(remote_name = %shared.settings.name, from = self.len(), to = n, "remote storage resharding");
        self.queues.clear();
        while let Some(h) = self.handles.last_mut() {
            tokio::select! {
                _ = h => { self.handles.pop(); }
                d = stop_requested(stop) => return Err((self, d)),
            }
        }
        Ok(ShardSet::start(shared, n))
    }

    /// Closes the queues, waits for shards to flush until `deadline`, then
    /// cancels the rest.
    async fn shutdown(mut self, deadline: Instant) {
        self.queues.clear();
        let deadline = tokio::time::Instant::from_std(deadline);
        let mut handles = std::mem::take(&mut self.handles);
        let all = futures_join_all(&mut handles);
        if tokio::time::timeout_at(deadline, all).await.is_err() {
            tracing::warn!("failed to flush all samples on shutdown; the rest stays in the WAL");
            let _ = self.hard_stop.send(true);
            futures_join_all(&mut handles).await;
        }
    }
}

/// Awaits every handle in turn (finished ones are removed), so the call can
/// be timed out and resumed.
async fn futures_join_all(handles: &mut Vec<JoinHandle<()>>) {
    while let Some(h) = handles.last_mut() {
        if let Err(e) = h.await {
            tracing::error!(error = %e, "remote write shard task failed");
        }
        handles.pop();
    }
}

async fn run_shard<P: Copy + Send + Sync + 'static>(
    shared: Arc<Shared<P>>,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    room: Arc<Semaphore>,
    mut hard_stop: watch::Receiver<bool>,
) {
    let max = shared.settings.max_samples_per_send;
    let mut batch = Batch::new(max);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let flush_timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            biased;
            _ = hard_stop.wait_for(|v| *v) => return,
            msg = rx.recv() => match msg {
                Some(chunk) => ShardEvent::Chunk(chunk),
                None => ShardEvent::Closed,
            },
            _ = flush_timer => ShardEvent::Deadline,
        };
        match event {
            ShardEvent::Chunk(chunk) if chunk.items.is_empty() => {
                // The watcher caught up with a backlog (see ShardSet::flush).
                if !batch.samples.is_empty() {
                    deadline = None;
                    if !batch.send(&shared, &mut hard_stop).await {
                        return;
                    }
                }
            }
            ShardEvent::Chunk(Chunk { seq, mut items }) => {
                // As much of the chunk as the batch has room for at a time,
                // moved in one go; its room is given back as it is taken.
                while !items.is_empty() {
                    if batch.samples.is_empty() {
                        deadline =
                            Some(tokio::time::Instant::now() + shared.settings.batch_send_deadline);
                    }
                    let n = max
                        .saturating_sub(batch.samples.len())
                        .clamp(1, items.len());
                    batch.take(&mut items, n, seq);
                    room.add_permits(n);
                    if batch.samples.len() >= max {
                        deadline = None;
                        if !batch.send(&shared, &mut hard_stop).await {
                            return;
                        }
                    }
                }
            }
            ShardEvent::Deadline => {
                deadline = None;
                if !batch.send(&shared, &mut hard_stop).await {
                    return;
                }
            }
            ShardEvent::Closed => {
                if !batch.samples.is_empty() {
                    batch.send(&shared, &mut hard_stop).await;
                }
                return;
            }
        }
    }
}

enum ShardEvent {
    Chunk(Chunk),
    Deadline,
    Closed,
}

struct Batch {
    samples: Vec<QueuedSample>,
    runs: RecordRuns,
    /// `samples` counted by kind, and their newest sample or histogram
    /// time, kept as they are added: the batch's accounting reads them
    /// instead of walking the items again (a batch is ~130 KB of items,
    /// and each walk of it was a pass of cache misses).
    kinds: [u64; 3],
    highest: Timestamp,
    encoder: WriteRequestEncoder,
    encoder_v2: WriteRequestV2Encoder,
}

enum Delivery {
    /// Every sample sent or dropped (`dropped` of them).
    Done { dropped: usize },
    /// A hard stop came first: nothing is acknowledged.
    Cancelled,
}

/// How sending one part of a batch ended.
enum PartDelivery {
    Sent,
    Dropped,
    Cancelled,
    /// Refused for its size (413), and it has more than one sample.
    TooLarge,
}

impl Batch {
    fn new(capacity: usize) -> Batch {
        Batch {
            samples: Vec::with_capacity(capacity),
            runs: RecordRuns::default(),
            kinds: [0; 3],
            highest: Timestamp::MIN,
            encoder: WriteRequestEncoder::new(),
            encoder_v2: WriteRequestV2Encoder::new(),
        }
    }

    /// Moves the first `n` of `items` (of WAL record `seq`) to the end of
    /// the batch.
    fn take(&mut self, items: &mut Vec<QueuedSample>, n: usize, seq: u64) {
        let Batch {
            samples,
            kinds,
            highest,
            runs,
            ..
        } = self;
        let n = n.min(items.len());
        let start = samples.len();
        // Moved whole and counted after: counting on the way through
        // (`inspect`) made each item pass through the stack, and its
        // 16-byte reloads stalled on the narrower stores before them.
        samples.extend(items.drain(..n));
        for s in samples.get(start..).unwrap_or_default() {
            count_item(kinds, highest, s);
        }
        runs.push_n(seq, n);
    }

    /// Counts and newest time again, after items were removed.
    fn recount(&mut self) {
        self.kinds = [0; 3];
        self.highest = Timestamp::MIN;
        for s in &self.samples {
            count_item(&mut self.kinds, &mut self.highest, s);
        }
    }

    /// Sends the batch (retrying recoverable failures forever) and marks its
    /// samples done. False if cancelled by a hard stop (nothing acked).
    async fn send<P: Copy + Send + Sync + 'static>(
        &mut self,
        shared: &Shared<P>,
        hard_stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let count = self.samples.len();
        let by_kind = self.kinds;
        let dropped = match self.deliver(shared, hard_stop).await {
            Delivery::Cancelled => return false,
            Delivery::Done { dropped } => dropped,
        };
        if dropped > 0 {
            shared
                .samples_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        let mut moved = None;
        {
            let mut tracker = shared.tracker.lock();
            for (seq, n) in self.runs.iter() {
                if let Some(p) = tracker.complete(seq, n) {
                    moved = Some(p);
                }
            }
        }
        if let Some(p) = moved {
            (shared.acker)(p);
        }
        shared.pending.fetch_sub(count as i64, Ordering::Relaxed);
        for (kind, n) in by_kind.into_iter().enumerate() {
            shared.pending_by_kind[kind].fetch_sub(n as i64, Ordering::Relaxed);
        }
        set_pending_gauges(shared);
        self.samples.clear();
        self.runs.clear();
        self.recount();
        true
    }

    /// Sends the batch, in parts if the receiver refuses it for its size:
    /// a request refused with 413 is split in halves, sent in order, down
    /// to a single sample, which is dropped as a non-recoverable failure.
    /// Prometheus drops the whole batch at the 413, as at any 4xx; a proxy's
    /// body limit (nginx's `client_max_body_size`, 1 MiB by default) must
    /// not cost data that smaller requests would have delivered. Bodies as
    /// large as one refused within [`REFUSED_SIZE_KEPT`] are split without
    /// being sent, so that each batch does not pay a refused request (and
    /// a warning) for every halving.
    async fn deliver<P>(
        &mut self,
        shared: &Shared<P>,
        hard_stop: &mut watch::Receiver<bool>,
    ) -> Delivery {
        // The parts still to send, the next last.
        let mut parked: Vec<Vec<QueuedSample>> = Vec::new();
        let mut dropped = 0;
        loop {
            let len = self.samples.len();
            match self.deliver_part(shared, hard_stop).await {
                PartDelivery::Cancelled => return Delivery::Cancelled,
                PartDelivery::Sent => {}
                PartDelivery::Dropped => dropped += len,
                PartDelivery::TooLarge => {
                    parked.push(self.samples.split_off(len / 2));
                    self.recount();
                    continue;
                }
            }
            let Some(mut next) = parked.pop() else {
                return Delivery::Done { dropped };
            };
            // Into the batch's own vector, which keeps its capacity.
            self.samples.clear();
            self.samples.append(&mut next);
            self.recount();
        }
    }

    /// Sends the batch's samples as one request, retrying recoverable
    /// failures.
    async fn deliver_part<P>(
        &mut self,
        shared: &Shared<P>,
        hard_stop: &mut watch::Receiver<bool>,
    ) -> PartDelivery {
        let s = &shared.settings;
        let m = &shared.metrics;
        let mut attempt = 0u32;
        let mut backoff = s.min_backoff;
        loop {
            if attempt > 0 {
                self.drop_too_old(shared);
            }
            if self.samples.is_empty() {
                return PartDelivery::Dropped;
            }
            let protocol = shared.client.protocol();
            let encoded = self.encode(shared, protocol);
            if self.samples.is_empty() {
                return PartDelivery::Dropped;
            }
            let body = match encoded {
                Ok(b) => b,
                Err(e) => {
                    tally(m, self.kinds, Tally::Failed);
                    record_error(shared, format!("encoding batch: {e}"));
                    return PartDelivery::Dropped;
                }
            };
            if self.samples.len() > 1
                && shared
                    .refused_size
                    .lock()
                    .covers(body.len(), Instant::now())
            {
                if protocol == Protocol::V1 {
                    self.encoder.recycle(body);
                }
                return PartDelivery::TooLarge;
            }
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                _ = hard_stop.wait_for(|v| *v) => return PartDelivery::Cancelled,
                r = shared.client.send_as(body.clone(), attempt, protocol, self.samples.len() as u64) => r,
            };
            let took = started.elapsed();
            m.sent_batch_duration.observe(took.as_secs_f64());
            let sent_bytes = body.len();
            // Only the 1.0 stream writes into recycled buffers.
            if protocol == Protocol::V1 {
                self.encoder.recycle(body);
            }
            if matches!(result, Err(SendError::TooLarge(_))) {
                shared
                    .refused_size
                    .lock()
                    .remember(sent_bytes, Instant::now());
            }
            match result {
                Ok(()) => {
                    self.record_success(shared, sent_bytes, took);
                    return PartDelivery::Sent;
                }
                Err(SendError::TooLarge(msg)) if self.samples.len() > 1 => {
                    // Sent again, in halves: counted as retried, so the
                    // dashboards that watch retries see it.
                    tally(m, self.kinds, Tally::Retried);
                    tracing::warn!(remote_name = %s.name, url = %shared.client.url(), samples = self.samples.len(), error = %msg, "request too large for the receiver, sending it in halves (lower queue_config.max_samples_per_send to avoid this)");
                    record_error(shared, msg);
                    return PartDelivery::TooLarge;
                }
                Err(SendError::NonRecoverable(msg) | SendError::TooLarge(msg)) => {
                    tally(m, self.kinds, Tally::Failed);
                    tracing::error!(remote_name = %s.name, url = %shared.client.url(), samples = self.samples.len(), error = %msg, "non-recoverable error, dropping batch");
                    record_error(shared, msg);
                    return PartDelivery::Dropped;
                }
                Err(SendError::Recoverable { message, .. })
                    if shared.stopping.load(Ordering::Acquire) =>
                {
                    record_error(shared, message);
                    tracing::warn!(remote_name = %s.name, samples = self.samples.len(), "send failed while stopping; the samples stay in the WAL for the next start");
                    return PartDelivery::Cancelled;
                }
                Err(SendError::Recoverable {
                    message,
                    retry_after,
                }) => {
                    tally(m, self.kinds, Tally::Retried);
                    let sleep = retry_after.unwrap_or(backoff);
                    tracing::warn!(remote_name = %s.name, url = %shared.client.url(), error = %message, retry_in = ?sleep, "failed to send batch, retrying");
                    record_error(shared, message);
                    shared.outcome.lock().no_reshard_until = Some(Instant::now() + sleep * 2);
                    tokio::select! {
                        biased;
                        _ = hard_stop.wait_for(|v| *v) => return PartDelivery::Cancelled,
                        // One more attempt at once; if it fails too, the
                        // samples stay in the WAL (see the module docs).
                        _ = shared.stop_notify.notified() => {}
                        _ = tokio::time::sleep(sleep) => {}
                    }
                    // A zero Retry-After (or the 2.0 → 1.0 fallback) must not zero
                    // the backoff for later failures.
                    backoff = (sleep * 2).max(s.min_backoff).min(s.max_backoff);
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    /// Encodes the batch for `protocol`, leaving out (and dropping)
    /// samples whose series the storage collected meanwhile (forced WAL
    /// truncation).
    fn encode<P>(
        &mut self,
        shared: &Shared<P>,
        protocol: Protocol,
    ) -> Result<Bytes, crate::encode::EncodeError> {
        let store = shared.labels.read();
        let external = &shared.external;
        // Each item's labels are looked up once, while encoding. A series
        // found missing there (collected meanwhile: rare) is left out of
        // the request; its samples are then dropped from the batch by the
        // same test, so the counts and acks match what was sent.
        let (body, missing) = encode_resolved(
            &mut self.encoder,
            &mut self.encoder_v2,
            protocol,
            &self.samples,
            &store,
            external,
        )?;
        if missing {
            self.drop_where(shared, DropReason::UnintentionallyDroppedSeries, |s| {
                Resolved::new(s, &store, external).is_none()
            });
        }
        Ok(body)
    }

    fn drop_too_old<P>(&mut self, shared: &Shared<P>) {
        let min_ts = min_allowed_timestamp(&shared.settings);
        self.drop_where(shared, DropReason::TooOld, |s| s.t < min_ts);
    }

    /// Removes the samples `drop` picks, counting them under `reason`.
    fn drop_where<P>(
        &mut self,
        shared: &Shared<P>,
        reason: DropReason,
        drop: impl Fn(&QueuedSample) -> bool,
    ) {
        let before = self.samples.len();
        self.samples.retain(|s| !drop(s));
        let dropped = before - self.samples.len();
        if dropped > 0 {
            shared.metrics.dropped(reason).inc_by(dropped as u64);
            self.recount();
        }
    }

    fn record_success<P>(&self, shared: &Shared<P>, bytes: usize, took: Duration) {
        let m = &shared.metrics;
        let n = self.samples.len() as u64;
        tally(m, self.kinds, Tally::Sent);
        m.bytes.inc_by(bytes as u64);
        shared.samples_out.fetch_add(n, Ordering::Relaxed);
        shared
            .send_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        if self.highest > Timestamp::MIN {
            shared
                .highest_sent_ms
                .fetch_max(self.highest, Ordering::Relaxed);
            raise(
                &m.queue_highest_sent_timestamp,
                self.highest as f64 / 1000.0,
            );
        }
        let mut o = shared.outcome.lock();
        o.last_send = Some(SystemTime::now());
        o.last_success = Some(Instant::now());
    }
}

/// Encodes `samples` with their labels from `store`, leaving out those
/// whose series is gone; true with the body if there were any.
fn encode_resolved(
    encoder: &mut WriteRequestEncoder,
    encoder_v2: &mut WriteRequestV2Encoder,
    protocol: Protocol,
    samples: &[QueuedSample],
    store: &LabelStore,
    external: &ExternalLabels,
) -> Result<(Bytes, bool), crate::encode::EncodeError> {
    let missing = std::cell::Cell::new(false);
    let items = samples.iter().filter_map(|s| {
        let r = Resolved::new(s, store, external);
        if r.is_none() {
            missing.set(true);
        }
        r
    });
    let body = match protocol {
        // Rewritten labels are owned: the snappy stream of interned pairs
        // would be abandoned at the first, after encoding what came before.
        Protocol::V1 if samples.iter().any(|s| s.rewritten().is_some()) => {
            encoder.encode_plain(items)
        }
        Protocol::V1 => encoder.encode(items),
        Protocol::V2 => encoder_v2.encode(items),
    }?;
    Ok((body, missing.get()))
}

fn record_error<P>(shared: &Shared<P>, msg: String) {
    shared.outcome.lock().last_error = Some(msg);
}

// -------------------------------------------------------------- resharder

/// An exponentially weighted per-second rate.
#[derive(Default)]
struct Ewma {
    last_total: u64,
    rate: Option<f64>,
}

impl Ewma {
    fn tick(&mut self, total: u64, interval: Duration) -> f64 {
        let delta = total.saturating_sub(self.last_total) as f64;
        self.last_total = total;
        let instant = delta / interval.as_secs_f64().max(f64::EPSILON);
        let rate = match self.rate {
            Some(r) => r + EWMA_ALPHA * (instant - r),
            None => instant,
        };
        self.rate = Some(rate);
        rate
    }
}

async fn run_resharder<P: Copy + Send + Sync + 'static>(
    shared: Arc<Shared<P>>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let interval = shared.settings.shard_update_interval;
    let mut rates = [
        Ewma::default(),
        Ewma::default(),
        Ewma::default(),
        Ewma::default(),
    ];
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop_requested(&mut stop) => return,
        }
        let [r_in, r_out, r_dropped, r_nanos] = &mut rates;
        let inputs = RateInputs {
            rate_in: r_in.tick(shared.samples_in.load(Ordering::Relaxed), interval),
            rate_out: r_out.tick(shared.samples_out.load(Ordering::Relaxed), interval),
            rate_dropped: r_dropped.tick(shared.samples_dropped.load(Ordering::Relaxed), interval),
            send_seconds_rate: r_nanos.tick(shared.send_nanos.load(Ordering::Relaxed), interval)
                / 1e9,
            delay_secs: (shared.highest_enqueued_ms.load(Ordering::Relaxed)
                - shared.highest_sent_ms.load(Ordering::Relaxed)) as f64
                / 1000.0,
        };
        if !reshard_allowed(&shared) {
            continue;
        }
        let current = shared.shards.load(Ordering::Relaxed);
        if let Some((desired, unrounded)) = desired_shards(&inputs, current, &shared.settings) {
            *shared.desired_unrounded.lock() = unrounded;
            shared.metrics.shards_desired.set(unrounded);
            shared.desired_shards.store(desired, Ordering::Relaxed);
        }
    }
}

fn reshard_allowed<P>(shared: &Shared<P>) -> bool {
    let o = shared.outcome.lock();
    let now = Instant::now();
    if o.no_reshard_until.is_some_and(|t| now < t) {
        return false;
    }
    match o.last_success {
        Some(t) => now.duration_since(t) <= RESHARD_STALE_SEND,
        None => false,
    }
}

#[derive(Debug, Clone, Copy)]
struct RateInputs {
    rate_in: f64,
    rate_out: f64,
    rate_dropped: f64,
    send_seconds_rate: f64,
    delay_secs: f64,
}

/// Prometheus's shard calculation: enough shards to keep up with the input
/// rate plus 5% of the backlog per second, with a ±30% dead band, no
/// downsharding while more than 10s behind, clamped to [min, max].
/// Returns the shard count to run and the unrounded estimate.
fn desired_shards(r: &RateInputs, current: usize, s: &QueueSettings) -> Option<(usize, f64)> {
    if r.rate_out <= 0.0 {
        return None;
    }
    let kept_ratio = r.rate_out / (r.rate_dropped + r.rate_out);
    let pending = r.delay_secs.max(0.0) * r.rate_in * kept_ratio;
    let time_per_sample = r.send_seconds_rate / r.rate_out;
    let unrounded = time_per_sample * (r.rate_in * kept_ratio + BACKLOG_CATCHUP * pending);
    let cur = current as f64;
    let mut desired = unrounded.ceil().max(0.0) as usize;
    let within_band = unrounded.ceil() >= cur * (1.0 - SHARD_TOLERANCE)
        && unrounded.ceil() <= cur * (1.0 + SHARD_TOLERANCE);
    if within_band || (desired < current && r.delay_secs > DOWNSHARD_MAX_DELAY_SECS) {
        desired = current;
    }
    Some((desired.clamp(s.min_shards, s.max_shards), unrounded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_size_covers_larger_bodies_until_it_expires() {
        let t0 = Instant::now();
        let mut refused = RefusedSize::default();
        assert!(!refused.covers(usize::MAX, t0), "nothing refused yet");
        refused.remember(1000, t0);
        refused.remember(2000, t0);
        assert!(refused.covers(1000, t0));
        assert!(!refused.covers(999, t0));
        refused.remember(800, t0 + Duration::from_secs(1));
        assert!(refused.covers(800, t0 + Duration::from_secs(2)));
        // Kept from the last refusal, then forgotten: the next full batch
        // is tried.
        let later = t0 + Duration::from_secs(1) + REFUSED_SIZE_KEPT;
        assert!(refused.covers(800, later - Duration::from_millis(1)));
        assert!(!refused.covers(usize::MAX, later));
        assert!(!refused.covers(usize::MAX, later - Duration::from_millis(1)));
    }

    fn settings() -> QueueSettings {
        QueueSettings {
            name: "t".into(),
            capacity: 100,
            min_shards: 1,
            max_shards: 10,
            max_samples_per_send: 10,
            batch_send_deadline: Duration::from_millis(50),
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            sample_age_limit: None,
            shard_update_interval: Duration::from_secs(10),
            send_native_histograms: false,
            send_exemplars: false,
            metadata: None,
        }
    }

    #[test]
    fn shard_calculation_scales_with_send_time() {
        // 1000 samples/s in and out, each sample costs 5ms of send time → 5 shards.
        let r = RateInputs {
            rate_in: 1000.0,
            rate_out: 1000.0,
            rate_dropped: 0.0,
            send_seconds_rate: 5.0,
            delay_secs: 0.0,
        };
        assert_eq!(desired_shards(&r, 1, &settings()).map(|d| d.0), Some(5));
        // Within ±30% of the current count: unchanged.
        assert_eq!(desired_shards(&r, 4, &settings()).map(|d| d.0), Some(4));
        // Clamped to max.
        let heavy = RateInputs {
            send_seconds_rate: 50.0,
            ..r
        };
        assert_eq!(
            desired_shards(&heavy, 1, &settings()).map(|d| d.0),
            Some(10)
        );
        // No output yet: no decision.
        let idle = RateInputs { rate_out: 0.0, ..r };
        assert!(desired_shards(&idle, 1, &settings()).is_none());
    }

    #[test]
    fn no_downshard_while_behind() {
        let r = RateInputs {
            rate_in: 10.0,
            rate_out: 10.0,
            rate_dropped: 0.0,
            send_seconds_rate: 0.01,
            delay_secs: 30.0,
        };
        assert_eq!(desired_shards(&r, 8, &settings()).map(|d| d.0), Some(8));
        let caught_up = RateInputs {
            delay_secs: 0.0,
            ..r
        };
        assert_eq!(
            desired_shards(&caught_up, 8, &settings()).map(|d| d.0),
            Some(1)
        );
    }

    fn queued(series: u64, rewritten: Option<Labels>, t: i64) -> QueuedSample {
        QueuedSample::new(
            SeriesRef(series),
            t,
            ItemRef::Float(t as f64),
            rewritten,
            None,
        )
    }

    #[test]
    fn a_batch_counts_what_it_holds_and_again_after_removals() {
        let mut batch = Batch::new(3);
        let labels = Labels::default();
        let exemplar = QueuedSample::new(
            SeriesRef(2),
            5000,
            ItemRef::Exemplar(&labels, 1.0),
            None,
            None,
        );
        let mut first = vec![queued(1, None, 1000), exemplar];
        let mut second = vec![queued(3, None, 3000), queued(4, None, 4000)];
        batch.take(&mut first, 2, 7);
        // Part of a record: the rest stays for the next batch, in order.
        batch.take(&mut second, 1, 8);
        assert!(first.is_empty());
        assert_eq!(second.iter().map(|s| s.t).collect::<Vec<_>>(), [4000]);
        let taken: Vec<_> = batch.samples.iter().map(|s| s.series.0).collect();
        assert_eq!(taken, [1, 2, 3]);
        // An exemplar's time is not a sample's.
        assert_eq!((batch.kinds, batch.highest), ([2, 0, 1], 3000));
        assert_eq!(batch.runs.iter().collect::<Vec<_>>(), vec![(7, 2), (8, 1)]);
        batch.samples.retain(|s| s.t != 3000);
        batch.recount();
        assert_eq!((batch.kinds, batch.highest), ([1, 0, 1], 1000));
        batch.samples.retain(|s| s.t != 1000);
        batch.recount();
        assert_eq!((batch.kinds, batch.highest), ([0, 0, 1], Timestamp::MIN));
    }

    /// The series names of the request `batch` encodes to, in order, and
    /// whether a series was found missing.
    fn encode_names(batch: &[QueuedSample], store: &LabelStore) -> (Vec<String>, bool) {
        let (mut v1, mut v2) = (WriteRequestEncoder::new(), WriteRequestV2Encoder::new());
        let external = ExternalLabels::default();
        let encoded = encode_resolved(&mut v1, &mut v2, Protocol::V1, batch, store, &external);
        let (body, missing) = encoded.unwrap_or_default();
        let names = crate::encode::tests::decode(&body)
            .timeseries
            .iter()
            .map(|ts| {
                let name = ts.labels.iter().find(|l| l.name == "__name__");
                name.map(|l| l.value.clone()).unwrap_or_default()
            })
            .collect();
        (names, missing)
    }

    #[test]
    fn a_batch_is_encoded_with_one_lookup_per_item_and_flags_gone_series() {
        let mut store = LabelStore::new();
        for (r, name) in [(1, "a"), (2, "b")] {
            let l = Labels::from_pairs([("__name__", name), ("job", "j")]);
            assert!(store.insert(SeriesRef(r), &l).is_ok());
        }
        let rewritten = Labels::from_pairs([("__name__", "c")]);
        // Stored, rewritten (owned labels: the plain path), stored.
        let batch = [
            queued(1, None, 1),
            queued(9, Some(rewritten), 2),
            queued(2, None, 3),
        ];
        assert_eq!(
            encode_names(&batch, &store),
            (vec!["a".into(), "c".into(), "b".into()], false)
        );
        // A series the store no longer has is left out and flagged.
        let batch = [queued(1, None, 1), queued(7, None, 2), queued(2, None, 3)];
        assert_eq!(
            encode_names(&batch, &store),
            (vec!["a".into(), "b".into()], true)
        );
    }

    #[test]
    fn a_queued_float_is_four_words() {
        assert_eq!(std::mem::size_of::<QueuedSample>(), 32);
        let q = queued(1, None, 7);
        assert!(q.extra.is_none() && q.kind() == ItemKind::Sample);
        assert!(queued(1, Some(Labels::default()), 7).extra.is_some());
    }

    #[test]
    fn ewma_smooths_rates() {
        let mut e = Ewma::default();
        assert_eq!(e.tick(100, Duration::from_secs(10)), 10.0);
        let r = e.tick(100, Duration::from_secs(10));
        assert!((r - 8.0).abs() < 1e-9);
    }
}
