//! [`AgentStorage`]: the WAL-backed [`Storage`] with series table, replay,
//! consumers, truncation and maintenance.

use std::collections::BTreeMap;

// foldhash-seeded maps: the series table is hit once per appended sample,
// and SipHash was the single largest cost of `append` in profiles.
use hashbrown::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tributary_model::{
    AppendError, Appender, Exemplar, Labels, MetricType, NativeHistogram, SeriesRef,
    SharedLabelStore, Storage, Timestamp,
};

use crate::checkpoint;
use crate::consumer::{self, Consumer, ConsumerState};
use crate::cursor_file::CursorStore;
use crate::error::WalError;
use crate::format;
use crate::metrics::Metrics;
use crate::reader::{Position, SkipReason, WalReader};
use crate::record::{self, BodyEntry, RecordType, RefSample};
use crate::reserve::{self, CheckpointReserve};
use crate::series::{Replayed as ReplayedSeries, SeriesTable};
use crate::tail::WalTail;
use crate::writer::SegmentWriter;

/// Options of the agent WAL (`--storage.agent.*` flags).
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Soft size limit of one segment; a multiple of 32 KiB.
    pub segment_size: u64,
    /// Snappy-compress records (when that makes them smaller).
    pub compression: bool,
    /// Data younger than this is never deleted by regular truncation.
    pub min_time: Duration,
    /// Data older than this is deleted even if a consumer has not sent it.
    pub max_time: Duration,
    /// How often truncation runs.
    pub truncate_frequency: Duration,
    /// Cap on the WAL directory size; oldest segments are deleted (even if
    /// unsent) to stay under it.
    pub max_bytes: Option<u64>,
    /// Do not create `<dir>/lock`.
    pub no_lockfile: bool,
    /// Period of the background fsync (and cursor persistence).
    pub fsync_interval: Duration,
    /// Accept samples up to this much older than the series' newest one.
    pub out_of_order_window: Duration,
    /// While the disk refuses writes (ENOSPC, EIO), committed batches are
    /// kept in memory up to this many encoded bytes and written, in order,
    /// once a retry succeeds; beyond it commits fail.
    pub write_buffer_bytes: usize,
    /// Most WAL bytes any one consumer may lag behind; when its backlog
    /// grows past this, its oldest unsent data is skipped (and counted), so
    /// the global truncation can reclaim it. `None`: only the global caps.
    pub max_bytes_per_consumer: Option<u64>,
    /// Per-consumer overrides of `max_bytes_per_consumer`, by name.
    pub consumer_max_bytes: BTreeMap<String, u64>,
    /// Uncompressed record bytes of the newest commits kept in memory for
    /// readers at the head (see `tail`; commits of the last 5 s at most);
    /// a commit over half of it is read from the file. 0: read everything
    /// from the file.
    pub tail_bytes: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 128 << 20,
            compression: true,
            min_time: Duration::from_secs(5 * 60),
            max_time: Duration::from_secs(4 * 3600),
            truncate_frequency: Duration::from_secs(2 * 3600),
            max_bytes: None,
            no_lockfile: false,
            fsync_interval: Duration::from_secs(1),
            out_of_order_window: Duration::ZERO,
            write_buffer_bytes: 64 << 20,
            max_bytes_per_consumer: None,
            consumer_max_bytes: BTreeMap::new(),
            // ~11 scrapes of 2,000 series, half a second at 400k series
            // every 10 s, where a reader that keeps up is milliseconds
            // behind; commits up to ~11k samples are kept.
            tail_bytes: 256 << 10,
        }
    }
}

impl WalOptions {
    /// The byte cap of consumer `name`, if any.
    fn consumer_cap(&self, name: &str) -> Option<u64> {
        self.consumer_max_bytes
            .get(name)
            .copied()
            .or(self.max_bytes_per_consumer)
    }

    fn validate(&self) -> Result<(), WalError> {
        if self.segment_size < format::PAGE_SIZE
            || (self.segment_size / format::PAGE_SIZE) * format::PAGE_SIZE != self.segment_size
        {
            return Err(WalError::InvalidOptions(format!(
                "segment size {} is not a positive multiple of {} bytes",
                self.segment_size,
                format::PAGE_SIZE
            )));
        }
        if self.fsync_interval.is_zero() || self.truncate_frequency.is_zero() {
            return Err(WalError::InvalidOptions(
                "fsync interval and truncate frequency must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// What one truncation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TruncateStats {
    pub segments_deleted: u32,
    /// The checkpoint written, if any (`checkpoint.N`).
    pub checkpoint: Option<u32>,
    pub series_removed: usize,
    /// Unsent samples deleted because of `max_time` / `max_bytes`, summed
    /// over consumers.
    pub dropped_max_time: u64,
    pub dropped_max_bytes: u64,
}

/// A snapshot for the web UI.
#[derive(Debug, Clone, Default)]
pub struct WalStats {
    pub first_segment: Option<u32>,
    pub current_segment: u32,
    pub segments: usize,
    /// Segments plus checkpoint bytes.
    pub bytes: u64,
    pub active_series: usize,
    pub consumers: Vec<ConsumerStats>,
}

#[derive(Debug, Clone)]
pub struct ConsumerStats {
    pub name: String,
    pub position: Position,
    /// WAL bytes written after the consumer's position.
    pub backlog_bytes: u64,
    pub dropped: consumer::DroppedCounts,
}

/// Metric metadata as kept per series.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct SeriesMetadata {
    pub kind: MetricType,
    pub unit: Box<str>,
    pub help: Box<str>,
}

impl SeriesMetadata {
    fn same_as(&self, kind: MetricType, unit: &str, help: &str) -> bool {
        self.kind == kind && &*self.unit == unit && &*self.help == help
    }
}

#[derive(Clone, Copy)]
struct SegmentMeta {
    max_t: Timestamp,
    samples: u64,
}

impl Default for SegmentMeta {
    fn default() -> Self {
        SegmentMeta {
            max_t: Timestamp::MIN,
            samples: 0,
        }
    }
}

struct WriterState {
    writer: SegmentWriter,
    segments: BTreeMap<u32, SegmentMeta>,
    /// Commits accepted while the disk refused writes, oldest first.
    pending: PendingWrites,
}

/// One commit waiting for the disk: its encoded records and what the series
/// table and segment metadata need once it is written.
struct PendingBatch {
    records: Vec<Vec<u8>>,
    /// Series logged by the batch and series of its samples.
    refs: Vec<SeriesRef>,
    samples: u64,
    max_t: Timestamp,
}

#[derive(Default)]
struct PendingWrites {
    batches: std::collections::VecDeque<PendingBatch>,
    bytes: usize,
    /// Samples refused because the buffer was full, this episode.
    overflowed: u64,
}

impl PendingWrites {
    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

impl PendingBatch {
    fn bytes(&self) -> usize {
        self.records.iter().map(Vec::len).sum()
    }
}

struct Shared {
    dir: PathBuf,
    wal_dir: PathBuf,
    opts: WalOptions,
    ooo_window_ms: i64,
    /// Lock order: `writer` before `series`.
    writer: Mutex<WriterState>,
    series: Mutex<SeriesTable>,
    consumers: Mutex<BTreeMap<String, Arc<ConsumerState>>>,
    cursor_generation: Arc<AtomicU64>,
    persisted_generation: AtomicU64,
    /// The cursor file; held while it is written, as the maintenance pass
    /// and a truncation on another thread both persist cursors.
    persisting: Mutex<CursorStore>,
    /// Persisting cursors failed at the last attempt (logged once).
    cursors_failing: AtomicBool,
    /// The cursor file was damaged and the consumers it lost are not all
    /// recreated yet (see `AgentStorage::consumer`).
    cursors_lost: AtomicBool,
    commit_tx: watch::Sender<u64>,
    /// The newest records, for readers at the head (see `tail`).
    tail: Arc<WalTail>,
    metrics: Arc<Metrics>,
    lock_file: Mutex<Option<File>>,
    closed: AtomicBool,
    truncating: Mutex<()>,
    /// When truncation last ran (ms since the epoch).
    last_truncation: AtomicI64,
    /// Bumped whenever truncation garbage-collects series.
    series_gc: AtomicU64,
    /// Buffers of dropped appenders, for the next ones.
    spare_buffers: Mutex<Vec<AppenderBuffers>>,
    /// Space held for the next checkpoint (see `reserve`). Taken before
    /// `series` when both are held, never together with `writer`.
    reserve: Mutex<ReserveState>,
}

struct ReserveState {
    reserve: CheckpointReserve,
    /// The last attempt to take it failed (logged once per episode).
    failing: bool,
}

/// The agent's WAL-backed storage. See the crate docs for the design.
pub struct AgentStorage {
    shared: Arc<Shared>,
}

/// Left free when buffered commits are written back after a full disk.
const ROOM_MARGIN: u64 = 1 << 20;
/// How often truncation runs while commits wait for a full disk.
const FULL_DISK_TRUNCATION_INTERVAL: Duration = Duration::from_secs(10);

fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl AgentStorage {
    /// Opens (creating if needed) the storage in `dir`, WAL in `dir/wal`:
    /// takes the lock, replays checkpoint + segments, repairs a torn tail and
    /// starts a fresh segment.
    pub fn open(
        dir: &Path,
        mut opts: WalOptions,
        registry: &mut Registry,
    ) -> Result<Arc<AgentStorage>, WalError> {
        opts.validate()?;
        opts.segment_size = effective_segment_size(&opts);
        let wal_dir = dir.join("wal");
        fs::create_dir_all(&wal_dir).map_err(WalError::io("create WAL directory", &wal_dir))?;
        let metrics = Arc::new(Metrics::new());
        metrics.register(registry);
        let lock_file = acquire_lock(dir, opts.no_lockfile, &metrics)?;
        // Before anything is written: a cursor file that cannot be read
        // stops the start.
        let (cursor_store, persisted) = CursorStore::open(dir)?;

        // Leftovers of a checkpoint interrupted by a crash.
        checkpoint::delete_checkpoints_before(&wal_dir, 0);
        let started = Instant::now();
        let replayed = replay(&wal_dir, &metrics)?;
        metrics.replay_duration.set(started.elapsed().as_secs_f64());
        let writer = SegmentWriter::create(
            &wal_dir,
            replayed.next_segment,
            opts.segment_size,
            opts.compression,
            Arc::clone(&metrics),
        )?;
        let mut segments = replayed.segments;
        segments.insert(writer.segment(), SegmentMeta::default());
        metrics.active_series.set(replayed.series.len() as i64);
        let reserve = CheckpointReserve::open(dir, &wal_dir);

        let generation = Arc::new(AtomicU64::new(0));
        if persisted.damaged {
            tracing::warn!("WAL consumer cursors lost; endpoints start at the WAL's oldest record and may send some samples again");
        }
        let mut consumers = BTreeMap::new();
        for (name, mut pos) in persisted.cursors {
            // A cursor past the end read what this WAL never held: the
            // directory was emptied and the cursor file kept, or the last
            // segment was lost with the page cache. Left there it would
            // wait for a segment not yet written and skip everything
            // before it (which truncation would then take as read); what
            // comes next is all new to it.
            if pos > writer.end() {
                tracing::warn!(consumer = %name, segment = pos.segment, offset = pos.offset, "WAL cursor beyond the end of the WAL; continuing at the end");
                pos = writer.end();
            }
            let st = ConsumerState::new(
                &name,
                pos,
                &metrics,
                opts.consumer_cap(&name),
                Arc::clone(&generation),
            );
            consumers.insert(name, Arc::new(st));
        }
        let (commit_tx, _) = watch::channel(0);
        let tail = Arc::new(WalTail::new(opts.tail_bytes));
        let shared = Shared {
            dir: dir.to_path_buf(),
            wal_dir,
            ooo_window_ms: duration_ms(opts.out_of_order_window),
            opts,
            writer: Mutex::new(WriterState {
                writer,
                segments,
                pending: PendingWrites::default(),
            }),
            series: Mutex::new(replayed.series),
            consumers: Mutex::new(consumers),
            cursor_generation: generation,
            persisted_generation: AtomicU64::new(0),
            cursors_lost: AtomicBool::new(persisted.damaged),
            persisting: Mutex::new(cursor_store),
            cursors_failing: AtomicBool::new(false),
            commit_tx,
            tail,
            metrics,
            lock_file: Mutex::new(lock_file),
            closed: AtomicBool::new(false),
            truncating: Mutex::new(()),
            last_truncation: AtomicI64::new(now_ms()),
            series_gc: AtomicU64::new(0),
            spare_buffers: Mutex::new(Vec::new()),
            reserve: Mutex::new(ReserveState {
                reserve,
                failing: false,
            }),
        };
        shared.keep_reserve();
        shared.update_size_gauge();
        Ok(Arc::new(AgentStorage {
            shared: Arc::new(shared),
        }))
    }

    pub fn wal_dir(&self) -> &Path {
        &self.shared.wal_dir
    }

    /// A reader that returns records starting at `start`, taking those
    /// still in memory from there instead of the file.
    pub fn reader(&self, start: Position) -> Result<WalReader, WalError> {
        Ok(WalReader::open(&self.shared.wal_dir, start)?.with_tail(Arc::clone(&self.shared.tail)))
    }

    /// A receiver whose value is bumped after every successful commit.
    pub fn commit_watch(&self) -> watch::Receiver<u64> {
        self.shared.commit_tx.subscribe()
    }

    /// The latest metadata logged for a live series: (type, unit, help).
    pub fn series_metadata(&self, r: SeriesRef) -> Option<(MetricType, String, String)> {
        let t = self.shared.series.lock();
        let m = t.metadata(r)??;
        Some((m.kind, m.unit.to_string(), m.help.to_string()))
    }

    /// Calls `f` with (ref, type, unit, help) for live series that have
    /// metadata, from slot `from` on and at most `max` of them, so that a
    /// caller can page through 400k series without copying them all at
    /// once. Returns the slot to go on from; `None` once all were seen.
    pub fn live_metadata(
        &self,
        from: usize,
        max: usize,
        mut f: impl FnMut(SeriesRef, MetricType, &str, &str),
    ) -> Option<usize> {
        let t = self.shared.series.lock();
        let mut n = 0;
        for (r, _, m) in t.iter_from(from) {
            let Some(m) = m else { continue };
            if n == max {
                return Some(r.slot() as usize);
            }
            f(r, m.kind, &m.unit, &m.help);
            n += 1;
        }
        None
    }

    /// The label set of a live series.
    pub fn series_labels(&self, r: SeriesRef) -> Option<Labels> {
        self.shared.series.lock().labels(r)
    }

    /// The label sets of the live series, for readers that encode labels
    /// straight from the interned pairs (remote write). Refs of samples in
    /// the WAL resolve here for as long as their segment exists.
    pub fn label_store(&self) -> SharedLabelStore {
        Arc::clone(self.shared.series.lock().label_store())
    }

    /// A counter bumped each time truncation garbage-collects series, so
    /// readers holding per-series state know when to drop theirs.
    pub fn series_gc_generation(&self) -> u64 {
        self.shared.series_gc.load(Ordering::Acquire)
    }

    /// Keeps only the entries of `map` whose series the storage still has.
    /// Safe for a consumer at its cursor: truncation only collects series
    /// whose every record lies in segments all cursors have passed.
    pub fn retain_live<V>(&self, map: &mut tributary_model::RefMap<V>) {
        let t = self.shared.series.lock();
        map.retain(|r, _| t.hot(r).is_some());
    }

    /// The durable cursor `name`, created at the current end of the WAL if
    /// it does not exist yet: an endpoint added to the configuration sends
    /// what is scraped from then on, as in Prometheus. When the cursor file
    /// was damaged, the positions of the endpoints configured before are
    /// lost, not unknown; until [`AgentStorage::end_cursor_recovery`], new
    /// cursors start at the WAL's oldest record instead, so what they had
    /// not sent is sent, with what they had sent again rather than lost.
    pub fn consumer(&self, name: &str) -> Result<Consumer, WalError> {
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire) {
            return Err(WalError::Closed);
        }
        let mut consumers = s.consumers.lock();
        if let Some(st) = consumers.get(name) {
            return Ok(Consumer {
                state: Arc::clone(st),
            });
        }
        let start = {
            let w = s.writer.lock();
            match w.segments.keys().next() {
                Some(&oldest) if s.cursors_lost.load(Ordering::Acquire) => Position::new(oldest, 0),
                _ => w.writer.end(),
            }
        };
        let st = Arc::new(ConsumerState::new(
            name,
            start,
            &s.metrics,
            s.opts.consumer_cap(name),
            Arc::clone(&s.cursor_generation),
        ));
        consumers.insert(name.to_owned(), Arc::clone(&st));
        s.cursor_generation.fetch_add(1, Ordering::Relaxed);
        Ok(Consumer { state: st })
    }

    /// The consumers of the configuration the agent started with exist:
    /// cursors created from now on start at the WAL's end, whether or not
    /// the cursor file was damaged at open.
    pub fn end_cursor_recovery(&self) {
        self.shared.cursors_lost.store(false, Ordering::Release);
    }

    /// Forgets a consumer's cursor (its endpoint left the configuration), so
    /// it no longer holds back truncation.
    pub fn remove_consumer(&self, name: &str) -> Result<(), WalError> {
        self.retain_consumers(|n| n != name).map(|_| ())
    }

    /// Forgets every consumer `keep` refuses: endpoints that left the
    /// configuration, also those only the cursor file still names from an
    /// earlier configuration (an entry without a `name` is named by a hash
    /// of its settings), which would otherwise hold back truncation for
    /// good. Returns their names.
    pub fn retain_consumers(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, WalError> {
        let mut removed = Vec::new();
        self.shared.consumers.lock().retain(|name, _| {
            let kept = keep(name);
            if !kept {
                removed.push(name.clone());
            }
            kept
        });
        if !removed.is_empty() {
            self.shared
                .cursor_generation
                .fetch_add(1, Ordering::Relaxed);
            self.shared.persist_cursors(true)?;
        }
        Ok(removed)
    }

    /// One maintenance pass now, as the periodic task runs every
    /// `fsync_interval`: retry buffered writes, enforce consumer byte caps,
    /// fsync, persist cursors, and truncate if over the global byte cap.
    pub fn maintain_now(&self) {
        self.shared.maintenance_pass(false);
    }

    /// Runs one truncation now (what the periodic task does).
    pub fn truncate_now(&self) -> Result<TruncateStats, WalError> {
        self.shared.truncate(now_ms())
    }

    /// Truncation as if the wall clock read `now` (ms): for tests of the
    /// time-based rules.
    pub fn truncate_at(&self, now: Timestamp) -> Result<TruncateStats, WalError> {
        self.shared.truncate(now)
    }

    /// Periodic fsync + cursor persistence (every `fsync_interval`, which
    /// also enforces `max_bytes`) and truncation (every
    /// `truncate_frequency`, first one period after start). Returns after
    /// `shutdown` is cancelled, with the WAL fsynced and cursors persisted;
    /// [`AgentStorage::close`] is still the caller's job.
    pub async fn run_maintenance(self: Arc<Self>, shutdown: CancellationToken) {
        {
            let shared = Arc::clone(&self.shared);
            let mut tick = tokio::time::interval(shared.opts.fsync_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let freq = shared.opts.truncate_frequency;
            let mut trunc = tokio::time::interval_at(tokio::time::Instant::now() + freq, freq);
            trunc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let truncate = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => false,
                    _ = trunc.tick() => true,
                };
                let s = Arc::clone(&shared);
                let job = tokio::task::spawn_blocking(move || s.maintenance_pass(truncate));
                if let Err(e) = job.await {
                    tracing::error!(error = %e, "WAL maintenance task panicked");
                }
            }
            let s = Arc::clone(&shared);
            let _ = tokio::task::spawn_blocking(move || s.flush_and_persist()).await;
        }
    }

    /// Flushes and fsyncs the WAL, persists cursors and releases the lock.
    /// Appends fail afterwards. Idempotent.
    pub fn close(&self) -> Result<(), WalError> {
        let s = &self.shared;
        if s.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Every write is tried: one that fails is cut back off the segment.
        if !s.flush_pending(false) {
            let w = s.writer.lock();
            let lost: u64 = w.pending.batches.iter().map(|b| b.samples).sum();
            tracing::error!(
                samples = lost,
                bytes = w.pending.bytes,
                "closing the WAL with commits the disk never accepted; they are lost"
            );
        }
        let synced = s.writer.lock().writer.sync();
        let persisted = s.persist_cursors(true);
        if let Some(f) = s.lock_file.lock().take() {
            drop(f);
            let _ = fs::remove_file(s.dir.join("lock"));
        }
        synced.and(persisted)
    }

    pub fn stats(&self) -> WalStats {
        self.shared.stats()
    }

    #[cfg(test)]
    pub(crate) fn fail_next_writes(&self, n: u32) {
        self.shared.writer.lock().writer.fail_writes = n;
    }
}

impl Drop for AgentStorage {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing WAL on drop failed");
        }
    }
}

impl Storage for AgentStorage {
    fn appender(&self) -> Box<dyn Appender> {
        let AppenderBuffers { samples, bufs } =
            self.shared.spare_buffers.lock().pop().unwrap_or_default();
        Box::new(WalAppender {
            shared: Arc::clone(&self.shared),
            new_series: Vec::new(),
            samples,
            floats_seen: FloatsSeen::default(),
            histograms: Vec::new(),
            float_histograms: Vec::new(),
            histogram_bodies: Vec::new(),
            exemplars: Vec::new(),
            exemplar_bodies: Vec::new(),
            metadata: Vec::new(),
            bufs,
        })
    }
}

/// With a byte cap, segments must be small enough that deleting one frees a
/// useful fraction of the cap (and the active segment alone cannot exceed
/// it): at most a quarter of the cap, at least one page.
fn effective_segment_size(opts: &WalOptions) -> u64 {
    let Some(cap) = opts.max_bytes else {
        return opts.segment_size;
    };
    let quarter = (cap / 4 / format::PAGE_SIZE).max(1) * format::PAGE_SIZE;
    if quarter < opts.segment_size {
        tracing::info!(
            segment_size = quarter,
            max_bytes = cap,
            "reducing WAL segment size to fit the byte cap"
        );
        return quarter;
    }
    opts.segment_size
}

fn acquire_lock(dir: &Path, disabled: bool, metrics: &Metrics) -> Result<Option<File>, WalError> {
    if disabled {
        metrics.clean_start.set(-1);
        return Ok(None);
    }
    let path = dir.join("lock");
    let existed = path.exists();
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(WalError::io("open lock file", &path))?;
    match fs4::FileExt::try_lock(&f) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => return Err(WalError::Locked(dir.to_path_buf())),
        Err(fs4::TryLockError::Error(e)) => return Err(WalError::io("lock", &path)(e)),
    }
    metrics.clean_start.set(if existed { 0 } else { 1 });
    Ok(Some(f))
}

struct Replayed {
    series: SeriesTable,
    segments: BTreeMap<u32, SegmentMeta>,
    next_segment: u32,
}

/// Rebuilds the series table from the latest checkpoint and the segments
/// after it, and cuts a torn tail off the newest segment.
fn replay(wal_dir: &Path, metrics: &Metrics) -> Result<Replayed, WalError> {
    let mut table = SeriesTable::default();
    let mut corruptions = 0u64;
    // Duplicate refs for one label set (possible after a crash between
    // creating and logging a series) are folded into the first ref.
    let mut aliases: HashMap<SeriesRef, SeriesRef> = HashMap::new();
    let cp = checkpoint::read_latest_checkpoint(wal_dir, &mut corruptions, |r, l| {
        insert_replayed(&mut table, &mut aliases, r, l, 0);
    })?;
    if let Some(c) = cp {
        for h in table.hot_iter_mut() {
            h.last_segment = c;
        }
    }
    let segs =
        format::list_segments(wal_dir).map_err(WalError::io("list WAL segments", wal_dir))?;
    let mut segments = BTreeMap::new();
    let live: Vec<(u32, u64)> = segs
        .into_iter()
        .filter(|(i, _)| cp.is_none_or(|c| *i > c))
        .collect();
    let next_segment = match (live.last(), cp) {
        (Some((last, _)), _) => last.saturating_add(1),
        (None, Some(c)) => c.saturating_add(1),
        (None, None) => 0,
    };
    if let (Some(&(first, _)), Some(&(last, last_len))) = (live.first(), live.last()) {
        let mut reader = WalReader::open(wal_dir, Position::new(first, 0))?;
        let mut series = Vec::new();
        let mut samples = Vec::new();
        let mut histograms = Vec::new();
        let mut metadata = Vec::new();
        let mut last_metadata: Option<Arc<SeriesMetadata>> = None;
        // Start of damage in the newest segment not followed by any valid
        // record: the tail to cut.
        let mut tail_damage: Option<Position> = None;
        while let Some(rec) = reader.next_record()? {
            if let Some(skip) = rec.skipped {
                if skip.reason == SkipReason::Corruption {
                    corruptions += 1;
                    if skip.from.segment == last && tail_damage.is_none() {
                        tail_damage = Some(skip.from);
                    }
                }
                continue;
            }
            let seg = rec.start.segment;
            tail_damage = None;
            match record::record_type(rec.payload) {
                Some(RecordType::Series) => {
                    series.clear();
                    if let Err(e) = record::decode_series(rec.payload, &mut series) {
                        corruptions += 1;
                        tracing::warn!(position = %rec.start, error = %e, "undecodable Series record skipped during replay");
                    }
                    for (r, l) in series.drain(..) {
                        insert_replayed(&mut table, &mut aliases, r, l, seg);
                    }
                }
                Some(RecordType::HistogramSamples | RecordType::FloatHistogramSamples) => {
                    histograms.clear();
                    if let Err(e) = record::decode_histograms(rec.payload, &mut histograms) {
                        corruptions += 1;
                        tracing::warn!(position = %rec.start, error = %e, "undecodable histogram record skipped during replay");
                    }
                    let points = histograms.iter().map(|h| (h.series, h.t));
                    replay_points(
                        &mut table,
                        &aliases,
                        segments.entry(seg).or_default(),
                        seg,
                        points,
                    );
                }
                Some(RecordType::Metadata) => {
                    metadata.clear();
                    if let Err(e) = record::decode_metadata(rec.payload, &mut metadata) {
                        corruptions += 1;
                        tracing::warn!(position = %rec.start, error = %e, "undecodable Metadata record skipped during replay");
                    }
                    for m in metadata.drain(..) {
                        let r = aliases.get(&m.series).copied().unwrap_or(m.series);
                        // Series of one family were logged one after
                        // another: one allocation for the run (the table
                        // interns values anyway), as when appended.
                        let value = match &last_metadata {
                            Some(v) if SeriesMetadata::same_as(v, m.kind, &m.unit, &m.help) => {
                                Arc::clone(v)
                            }
                            _ => Arc::new(SeriesMetadata {
                                kind: m.kind,
                                unit: m.unit.into(),
                                help: m.help.into(),
                            }),
                        };
                        table.set_metadata(r, &value);
                        last_metadata = Some(value);
                    }
                }
                Some(RecordType::Samples) => {
                    samples.clear();
                    if let Err(e) = record::decode_samples(rec.payload, &mut samples) {
                        corruptions += 1;
                        tracing::warn!(position = %rec.start, error = %e, "undecodable Samples record skipped during replay");
                    }
                    let points = samples.iter().map(|s| (s.series, s.t));
                    replay_points(
                        &mut table,
                        &aliases,
                        segments.entry(seg).or_default(),
                        seg,
                        points,
                    );
                }
                _ => {}
            }
        }
        // Whatever follows the last good record of the newest segment is a
        // torn write: cut it so the segment ends cleanly.
        let end = tail_damage.unwrap_or_else(|| reader.position());
        if end.segment == last && end.offset < last_len {
            if tail_damage.is_none() {
                corruptions += 1;
            }
            let path = format::segment_path(wal_dir, last);
            tracing::warn!(
                segment = last,
                offset = end.offset,
                size = last_len,
                "cutting torn tail of WAL segment"
            );
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| {
                    f.set_len(end.offset)?;
                    f.sync_all()
                })
                .map_err(WalError::io("repair WAL segment", &path))?;
        }
        for (i, _) in &live {
            segments.entry(*i).or_default();
        }
    }
    table.rebuild_free_list();
    metrics.corruptions.inc_by(corruptions);
    Ok(Replayed {
        series: table,
        segments,
        next_segment,
    })
}

/// Replayed samples or histogram samples of segment `seg`: they count
/// towards the segment's data and advance their series' newest timestamp
/// and segment.
fn replay_points(
    table: &mut SeriesTable,
    aliases: &HashMap<SeriesRef, SeriesRef>,
    meta: &mut SegmentMeta,
    seg: u32,
    points: impl Iterator<Item = (SeriesRef, Timestamp)>,
) {
    for (series, t) in points {
        meta.samples += 1;
        meta.max_t = meta.max_t.max(t);
        let r = aliases.get(&series).copied().unwrap_or(series);
        if let Some(h) = table.hot_mut(r) {
            h.last_ts = h.last_ts.max(t);
            h.last_segment = h.last_segment.max(seg);
        }
    }
}

fn insert_replayed(
    table: &mut SeriesTable,
    aliases: &mut HashMap<SeriesRef, SeriesRef>,
    r: SeriesRef,
    labels: Labels,
    segment: u32,
) {
    if let ReplayedSeries::Alias(to) = table.insert_replayed(r, &labels, segment) {
        aliases.insert(r, to);
    }
}

/// The segments a truncation deletes and why.
#[derive(Default)]
struct DeletePlan {
    /// (segment, reason) oldest first; reason `None` = fully consumed.
    segments: Vec<(u32, Option<DropReason>)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DropReason {
    MaxTime,
    MaxBytes,
}

impl Shared {
    fn truncate(&self, now: Timestamp) -> Result<TruncateStats, WalError> {
        let _one_at_a_time = self.truncating.lock();
        self.last_truncation.store(now_ms(), Ordering::Relaxed);
        self.metrics.truncations.inc();
        let r = self.truncate_inner(now);
        if let Err(e) = &r {
            self.metrics.truncations_failed.inc();
            tracing::error!(error = %e, "WAL truncation failed; retrying next period");
        }
        self.update_size_gauge();
        r
    }

    fn truncate_inner(&self, now: Timestamp) -> Result<TruncateStats, WalError> {
        let mut stats = TruncateStats::default();
        // Start a new segment so that everything written so far becomes
        // eligible; never delete the segment being written.
        let (current, metas) = {
            let mut w = self.writer.lock();
            if w.writer.end().offset > 0 {
                w.writer.rotate()?;
                let seg = w.writer.segment();
                w.segments.insert(seg, SegmentMeta::default());
            }
            (w.writer.segment(), w.segments.clone())
        };
        let plan = self.plan_deletion(now, current, &metas)?;
        let Some(&(last, _)) = plan.segments.last() else {
            return Ok(stats);
        };

        // GC series with no data left in kept segments and not seen within
        // min_time, then checkpoint the rest.
        let keep_after = now.saturating_sub(duration_ms(self.opts.min_time));
        let (live, store): (Vec<SeriesRef>, SharedLabelStore) = {
            let mut t = self.series.lock();
            stats.series_removed =
                t.remove_where(|h| h.logged() && h.last_segment <= last && h.last_ts < keep_after);
            if stats.series_removed > 0 {
                self.series_gc.fetch_add(1, Ordering::Release);
            }
            self.metrics.active_series.set(t.len() as i64);
            let refs = t.iter().map(|(r, _, _)| r).collect();
            (refs, Arc::clone(t.label_store()))
        };
        self.metrics.checkpoint_creations.inc();
        let size = match self.write_checkpoint(last, &live, &store) {
            Ok(size) => size,
            Err(e) => {
                self.metrics.checkpoint_creations_failed.inc();
                return Err(e);
            }
        };
        self.reserve.lock().reserve.learn(size, live.len());
        drop(live);
        stats.checkpoint = Some(last);

        self.count_drops(&plan, &mut stats);
        for &(seg, _) in &plan.segments {
            let path = format::segment_path(&self.wal_dir, seg);
            match fs::remove_file(&path) {
                Ok(()) => stats.segments_deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::io("delete WAL segment", path)(e)),
            }
        }
        {
            let mut w = self.writer.lock();
            w.segments.retain(|s, _| *s > last);
        }
        let (deleted, failed) = checkpoint::delete_checkpoints_before(&self.wal_dir, last);
        self.metrics.checkpoint_deletions.inc_by(deleted + failed);
        self.metrics.checkpoint_deletions_failed.inc_by(failed);
        self.persist_cursors(false)?;
        Ok(stats)
    }

    /// Writes `checkpoint.<upto>`; if that fails (the disk is full, most
    /// likely), gives up the checkpoint reserve and tries once more in the
    /// space it held.
    fn write_checkpoint(
        &self,
        upto: u32,
        live: &[SeriesRef],
        store: &SharedLabelStore,
    ) -> Result<u64, WalError> {
        let write = || {
            checkpoint::write_checkpoint(&self.wal_dir, upto, live, store, self.opts.compression)
        };
        let e = match write() {
            Ok(size) => return Ok(size),
            Err(e) => e,
        };
        let released = {
            let mut r = self.reserve.lock();
            let released = r.reserve.release();
            self.metrics.checkpoint_reserve.set(0);
            released
        };
        if released == 0 {
            return Err(e);
        }
        tracing::warn!(error = %e, released_bytes = released, "writing the WAL checkpoint failed; writing it into the space held in reserve");
        write()
    }

    /// Writes the commits the full disk refused, as far as there is room,
    /// and keeps the checkpoint reserve. Returns false while commits still
    /// wait.
    ///
    /// The reserve goes first when a truncation gave it up and there is
    /// room for it and the oldest waiting commit: taking it back is what
    /// lets the next full disk be freed again. When there is not, the
    /// commits go first (the disk is full of something else than the WAL,
    /// and the reserve would only hold them back), and the reserve is taken
    /// once none waits.
    fn write_back_refused(&self) -> bool {
        let oldest = self
            .writer
            .lock()
            .pending
            .batches
            .front()
            .map(PendingBatch::bytes);
        let Some(oldest) = oldest else {
            self.keep_reserve();
            return true;
        };
        if self.reserve.lock().reserve.held() == 0 {
            let need = self.reserve_target().saturating_add(oldest as u64);
            if self
                .free_bytes()
                .is_none_or(|free| free >= need + ROOM_MARGIN)
            {
                self.keep_reserve();
            }
        }
        let written = self.flush_pending(true);
        if written {
            self.keep_reserve();
        }
        written
    }

    /// What the checkpoint reserve should hold for the series now.
    fn reserve_target(&self) -> u64 {
        let series = self.series.lock().len();
        self.reserve.lock().reserve.target(series)
    }

    /// Takes the checkpoint reserve, or resizes it to the series count.
    fn keep_reserve(&self) {
        let mut r = self.reserve.lock();
        let (series, sample) = {
            let t = self.series.lock();
            let sample = r.reserve.wants_estimate(t.len()).then(|| {
                let refs = t.iter().take(reserve::SAMPLE_SERIES).map(|(r, _, _)| r);
                (
                    refs.collect::<Vec<SeriesRef>>(),
                    Arc::clone(t.label_store()),
                )
            });
            (t.len(), sample)
        };
        if let Some((refs, store)) = sample {
            if let Some(per) = checkpoint::bytes_per_series(&refs, &store, self.opts.compression) {
                r.reserve.estimated(per, series);
            }
        }
        match r.reserve.ensure(series) {
            Ok(_) if r.failing => {
                r.failing = false;
                tracing::info!(bytes = r.reserve.held(), "checkpoint reserve taken again");
            }
            Ok(_) => {}
            Err(e) if !r.failing => {
                r.failing = true;
                tracing::warn!(error = %e, path = %self.dir.join(reserve::FILE_NAME).display(), "could not take the checkpoint reserve; truncation may not be able to free a full disk until it is taken");
            }
            Err(_) => {}
        }
        let held = r.reserve.held();
        self.metrics
            .checkpoint_reserve
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    fn plan_deletion(
        &self,
        now: Timestamp,
        current: u32,
        metas: &BTreeMap<u32, SegmentMeta>,
    ) -> Result<DeletePlan, WalError> {
        let segs = format::list_segments(&self.wal_dir)
            .map_err(WalError::io("list WAL segments", &self.wal_dir))?;
        // A cursor at the very end of a finished segment has consumed it.
        let min_cursor = self
            .consumers
            .lock()
            .values()
            .map(|c| {
                let p = *c.position.lock();
                let finished = p.segment < current
                    && segs
                        .iter()
                        .any(|&(i, size)| i == p.segment && p.offset >= size);
                if finished {
                    p.segment.saturating_add(1)
                } else {
                    p.segment
                }
            })
            .min()
            .unwrap_or(u32::MAX);
        let min_time_cut = now.saturating_sub(duration_ms(self.opts.min_time));
        let max_time_cut = now.saturating_sub(duration_ms(self.opts.max_time));
        let mut total = self.dir_size(&segs);
        let mut plan = DeletePlan::default();
        for (seg, size) in segs {
            if seg >= current {
                break;
            }
            let max_t = metas.get(&seg).map_or(Timestamp::MIN, |m| m.max_t);
            let over_cap = self.opts.max_bytes.is_some_and(|cap| total > cap);
            let reason = if seg < min_cursor && max_t < min_time_cut {
                None
            } else if max_t < max_time_cut {
                Some(DropReason::MaxTime)
            } else if over_cap {
                Some(DropReason::MaxBytes)
            } else {
                break;
            };
            plan.segments.push((seg, reason));
            total = total.saturating_sub(size);
        }
        Ok(plan)
    }

    /// Counts, per consumer, the samples in force-deleted segments it had not
    /// acknowledged; moves its cursor past the deleted range; logs once per
    /// consumer.
    fn count_drops(&self, plan: &DeletePlan, stats: &mut TruncateStats) {
        let Some(&(last, _)) = plan.segments.last() else {
            return;
        };
        let after = Position::new(last.saturating_add(1), 0);
        let consumers: Vec<Arc<ConsumerState>> = self.consumers.lock().values().cloned().collect();
        for c in consumers {
            let pos = *c.position.lock();
            if pos >= after {
                continue;
            }
            let (mut by_time, mut by_bytes) = (0u64, 0u64);
            for &(seg, reason) in &plan.segments {
                let Some(reason) = reason else { continue };
                if seg < pos.segment {
                    continue;
                }
                let from = if seg == pos.segment { pos.offset } else { 0 };
                let n = count_samples_in_segment(&self.wal_dir, seg, from);
                match reason {
                    DropReason::MaxTime => by_time += n,
                    DropReason::MaxBytes => by_bytes += n,
                }
            }
            c.dropped_max_time.inc_by(by_time);
            c.dropped_max_bytes.inc_by(by_bytes);
            stats.dropped_max_time += by_time;
            stats.dropped_max_bytes += by_bytes;
            if by_time + by_bytes > 0 {
                tracing::warn!(
                    consumer = %c.name,
                    from = %pos,
                    to = %after,
                    dropped_max_time = by_time,
                    dropped_max_bytes = by_bytes,
                    "WAL truncation deleted samples this consumer had not sent"
                );
            }
            // A cursor at the very end of the last deleted segment loses
            // nothing and moves on quietly: its reader reads on. Any other
            // is moved past records it has not acknowledged.
            let at_end = pos.segment == last
                && fs::metadata(format::segment_path(&self.wal_dir, last))
                    .is_ok_and(|m| pos.offset >= m.len());
            if at_end {
                c.advance(after);
            } else {
                c.jump(after);
            }
        }
    }

    fn dir_size(&self, segs: &[(u32, u64)]) -> u64 {
        let seg_bytes: u64 = segs.iter().map(|(_, s)| *s).sum();
        let cp_bytes: u64 = format::list_checkpoints(&self.wal_dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|(_, p)| format::list_segments(p).ok())
            .flatten()
            .map(|(_, s)| s)
            .sum();
        seg_bytes + cp_bytes
    }

    fn update_size_gauge(&self) {
        if let Ok(segs) = format::list_segments(&self.wal_dir) {
            let size = self.dir_size(&segs);
            self.metrics
                .storage_size
                .set(i64::try_from(size).unwrap_or(i64::MAX));
        }
    }

    /// One maintenance tick: fsync, persist cursors, enforce the byte cap,
    /// and truncate when due.
    fn maintenance_pass(&self, truncate_due: bool) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let disk_full = !self.write_back_refused();
        self.enforce_consumer_caps();
        self.flush_and_persist();
        let over_cap = self.opts.max_bytes.is_some_and(|cap| {
            format::list_segments(&self.wal_dir).is_ok_and(|segs| self.dir_size(&segs) > cap)
        });
        // On a full disk, what every endpoint has sent is deleted as soon
        // as `min_time` allows rather than at the next period: meanwhile
        // commits wait in a bounded buffer.
        let now = now_ms();
        let full_disk_due = disk_full
            && now.saturating_sub(self.last_truncation.load(Ordering::Relaxed))
                >= duration_ms(FULL_DISK_TRUNCATION_INTERVAL);
        if truncate_due || over_cap || full_disk_due {
            // Errors are logged and counted inside.
            let _ = self.truncate(now);
        } else {
            self.update_size_gauge();
        }
    }

    /// Moves every consumer whose backlog exceeds its own byte cap forward
    /// to the oldest segment start that brings it back under the cap (never
    /// past the start of the segment being written), counting the skipped
    /// samples and logging once per jump. Its reader notices the jump and
    /// resumes there; segments nobody needs any more then go at the next
    /// regular truncation.
    fn enforce_consumer_caps(&self) {
        let capped: Vec<Arc<ConsumerState>> = self
            .consumers
            .lock()
            .values()
            .filter(|c| c.max_backlog_bytes.is_some())
            .cloned()
            .collect();
        if capped.is_empty() {
            return;
        }
        let Ok(segs) = format::list_segments(&self.wal_dir) else {
            return;
        };
        let current = self.writer.lock().writer.segment();
        for c in capped {
            let Some(cap) = c.max_backlog_bytes else {
                continue;
            };
            let pos = *c.position.lock();
            let Some(target) = cap_target(&segs, pos, cap, current) else {
                continue;
            };
            let skipped: u64 = segs
                .iter()
                .filter(|(i, _)| *i >= pos.segment && *i < target.segment)
                .map(|&(i, _)| {
                    let from = if i == pos.segment { pos.offset } else { 0 };
                    count_samples_in_segment(&self.wal_dir, i, from)
                })
                .sum();
            c.dropped_consumer_cap.inc_by(skipped);
            tracing::warn!(
                consumer = %c.name,
                from = %pos,
                to = %target,
                cap_bytes = cap,
                dropped_samples = skipped,
                "consumer backlog over its byte cap; skipping its oldest unsent data"
            );
            c.jump(target);
        }
    }

    /// fsyncs the current segment (outside the writer lock) and then
    /// persists changed cursors: cursor files never get ahead of data
    /// durability by more than one tick.
    fn flush_and_persist(&self) {
        let dirty = self.writer.lock().writer.take_dirty();
        if let Some(f) = dirty {
            if let Err(e) = crate::writer::sync_file(&f, &self.metrics) {
                tracing::error!(error = %e, "WAL fsync failed");
                self.writer.lock().writer.mark_dirty();
            }
        }
        // Logged once per episode: on a full disk this fails every tick.
        match self.persist_cursors(false) {
            Ok(()) if self.cursors_failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("WAL consumer cursors persisted again");
            }
            Ok(()) => {}
            Err(e) if !self.cursors_failing.swap(true, Ordering::Relaxed) => {
                tracing::error!(error = %e, "persisting WAL consumer cursors failed; retrying every tick");
            }
            Err(_) => {}
        }
    }

    fn persist_cursors(&self, force: bool) -> Result<(), WalError> {
        let mut store = self.persisting.lock();
        let gen = self.cursor_generation.load(Ordering::Acquire);
        if !force && gen == self.persisted_generation.load(Ordering::Acquire) {
            return Ok(());
        }
        let snapshot: BTreeMap<String, Position> = self
            .consumers
            .lock()
            .iter()
            .map(|(n, c)| (n.clone(), *c.position.lock()))
            .collect();
        store.store(snapshot)?;
        self.persisted_generation.store(gen, Ordering::Release);
        Ok(())
    }

    fn stats(&self) -> WalStats {
        let segs = format::list_segments(&self.wal_dir).unwrap_or_default();
        let current_segment = self.writer.lock().writer.segment();
        let bytes = self.dir_size(&segs);
        let consumers = self
            .consumers
            .lock()
            .values()
            .map(|c| {
                let pos = *c.position.lock();
                let backlog_bytes = segs
                    .iter()
                    .filter(|(i, _)| *i >= pos.segment)
                    .map(|(i, s)| {
                        if *i == pos.segment {
                            s.saturating_sub(pos.offset)
                        } else {
                            *s
                        }
                    })
                    .sum();
                ConsumerStats {
                    name: c.name.clone(),
                    position: pos,
                    backlog_bytes,
                    dropped: Consumer {
                        state: Arc::clone(c),
                    }
                    .dropped(),
                }
            })
            .collect();
        WalStats {
            first_segment: segs.first().map(|(i, _)| *i),
            current_segment,
            segments: segs.len(),
            bytes,
            active_series: self.series.lock().len(),
            consumers,
        }
    }
}

/// Where a consumer at `pos` must jump to so that at most `cap` WAL bytes
/// lie after it: the start of the oldest segment for which that holds,
/// never later than the start of `current` (the segment being written).
/// `None` when it is already under the cap.
fn cap_target(segs: &[(u32, u64)], pos: Position, cap: u64, current: u32) -> Option<Position> {
    let backlog_from = |seg: u32, offset: u64| -> u64 {
        segs.iter()
            .filter(|(i, _)| *i >= seg)
            .map(|&(i, size)| {
                if i == seg {
                    size.saturating_sub(offset)
                } else {
                    size
                }
            })
            .sum()
    };
    if backlog_from(pos.segment, pos.offset) <= cap {
        return None;
    }
    let target = segs
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| *i > pos.segment && *i <= current)
        .find(|i| backlog_from(*i, 0) <= cap)
        .unwrap_or(current);
    (target > pos.segment).then(|| Position::new(target, 0))
}

/// Samples, floats and histograms, in `segment` from `offset` on (reading
/// stops at its end).
fn count_samples_in_segment(wal_dir: &Path, segment: u32, offset: u64) -> u64 {
    let Ok(mut r) = WalReader::open(wal_dir, Position::new(segment, offset)) else {
        return 0;
    };
    let is_sample = |t| {
        matches!(
            t,
            Some(
                RecordType::Samples
                    | RecordType::HistogramSamples
                    | RecordType::FloatHistogramSamples
            )
        )
    };
    let mut histograms = Vec::new();
    let mut n = 0;
    while let Ok(Some(rec)) = r.next_filtered(is_sample) {
        if rec.start.segment != segment {
            break;
        }
        if rec.skipped.is_some() {
            continue;
        }
        if record::record_type(rec.payload) == Some(RecordType::Samples) {
            n += record::count_samples(rec.payload).unwrap_or(0);
            continue;
        }
        histograms.clear();
        if record::decode_histograms(rec.payload, &mut histograms).is_ok() {
            n += histograms.len() as u64;
        }
    }
    n
}

/// The appender handed to scrape loops: buffers one batch and writes it on
/// commit.
struct WalAppender {
    shared: Arc<Shared>,
    /// Series this appender created; their Series records go out with the
    /// next commit or rollback.
    new_series: Vec<SeriesRef>,
    samples: Vec<RefSample>,
    /// What admitting `samples` found out, so that a commit need not look
    /// each of their series up again.
    floats_seen: FloatsSeen,
    /// Integer and float histogram samples; their bodies are encoded at
    /// append time into `histogram_bodies` (no allocation per sample).
    histograms: Vec<BodyEntry>,
    float_histograms: Vec<BodyEntry>,
    histogram_bodies: Vec<u8>,
    exemplars: Vec<BodyEntry>,
    exemplar_bodies: Vec<u8>,
    /// Metadata that differs from what the series has logged.
    metadata: Vec<(SeriesRef, Arc<SeriesMetadata>)>,
    bufs: RecordBufs,
}

/// Appender buffers kept for the next appender: a scrape appends a page's
/// samples (~2,000 on the bench's targets), and an appender's fresh vectors
/// grew to that by doubling on every scrape, then went back to the
/// allocator (and their pages to the kernel at the next trim).
#[derive(Default)]
struct AppenderBuffers {
    samples: Vec<RefSample>,
    bufs: RecordBufs,
}

/// Appenders run on the runtime's worker threads without awaiting, so few
/// are alive at once; more spares than that would only hold memory.
const SPARE_APPENDER_BUFFERS: usize = 4;
/// Buffers grown past this (a page of ~100k samples) are let go rather
/// than kept for pages that are mostly smaller.
const SPARE_BUFFER_MAX_BYTES: usize = 4 << 20;

impl Drop for WalAppender {
    fn drop(&mut self) {
        let mut samples = std::mem::take(&mut self.samples);
        let mut bufs = std::mem::take(&mut self.bufs);
        // Series and metadata records are written for new series and
        // changed metadata: on the first scrapes (when the series buffer
        // grows to a whole page of label sets) and on churn. Kept, they
        // would hold that first scrape's memory for good.
        bufs.series = Vec::new();
        bufs.metadata = Vec::new();
        let bytes = samples.capacity() * std::mem::size_of::<RefSample>()
            + bufs.all_mut().iter().map(|b| b.capacity()).sum::<usize>();
        if bytes > SPARE_BUFFER_MAX_BYTES {
            return;
        }
        samples.clear();
        bufs.clear();
        let mut spare = self.shared.spare_buffers.lock();
        if spare.len() < SPARE_APPENDER_BUFFERS {
            spare.push(AppenderBuffers { samples, bufs });
        }
    }
}

/// Reused encoding buffers, one per record a commit may write, in the order
/// they are written.
#[derive(Default)]
struct RecordBufs {
    series: Vec<u8>,
    metadata: Vec<u8>,
    samples: Vec<u8>,
    histograms: Vec<u8>,
    float_histograms: Vec<u8>,
    exemplars: Vec<u8>,
}

impl RecordBufs {
    fn clear(&mut self) {
        for b in self.all_mut() {
            b.clear();
        }
    }

    fn all_mut(&mut self) -> [&mut Vec<u8>; 6] {
        [
            &mut self.series,
            &mut self.metadata,
            &mut self.samples,
            &mut self.histograms,
            &mut self.float_histograms,
            &mut self.exemplars,
        ]
    }

    /// The non-empty records, in write order (on the stack: a commit
    /// allocates nothing for the list).
    fn records(&self) -> RecordList<'_> {
        let mut list = RecordList {
            items: [&[]; 6],
            len: 0,
        };
        for b in [
            &self.series,
            &self.metadata,
            &self.samples,
            &self.histograms,
            &self.float_histograms,
            &self.exemplars,
        ] {
            if !b.is_empty() {
                list.items[list.len] = b.as_slice();
                list.len += 1;
            }
        }
        list
    }
}

/// A commit's non-empty records: at most one of each kind.
struct RecordList<'a> {
    items: [&'a [u8]; 6],
    len: usize,
}

impl<'a> std::ops::Deref for RecordList<'a> {
    type Target = [&'a [u8]];

    fn deref(&self) -> &Self::Target {
        &self.items[..self.len]
    }
}

fn exemplar_hash(e: &Exemplar) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&e.t.to_le_bytes());
    h.update(&e.value.to_bits().to_le_bytes());
    for l in e.labels.iter() {
        h.update(l.name.as_bytes());
        h.update(&[0xff]);
        h.update(l.value.as_bytes());
        h.update(&[0xff]);
    }
    // 0 means "no exemplar yet".
    h.digest().max(1)
}

/// The out-of-order check of every sample, float or histogram; advances the
/// series' watermark. Says whether the series is logged.
fn check_order(
    table: &mut SeriesTable,
    series: SeriesRef,
    t: Timestamp,
    ooo_window_ms: i64,
) -> Result<bool, AppendError> {
    let Some(e) = table.hot_mut(series) else {
        return Err(AppendError::UnknownSeries(series));
    };
    if e.last_ts != Timestamp::MIN && t <= e.last_ts.saturating_sub(ooo_window_ms) {
        return Err(AppendError::OutOfOrder);
    }
    // Advanced at append time so duplicates within one batch are caught; a
    // rolled-back sample still moves the watermark (as the next scrape is
    // later anyway).
    e.last_ts = e.last_ts.max(t);
    Ok(e.logged())
}

/// Admits float `s` and adds it to an appender's `samples`, noting what
/// was found in `seen`.
fn push_float(
    samples: &mut Vec<RefSample>,
    seen: &mut FloatsSeen,
    table: &mut SeriesTable,
    ooo_window_ms: i64,
    s: RefSample,
) -> Result<(), AppendError> {
    if samples.is_empty() {
        *seen = FloatsSeen::start(table);
    }
    let logged = check_order(table, s.series, s.t, ooo_window_ms)?;
    seen.note(s.t, logged);
    samples.push(s);
    Ok(())
}

/// What admitting an appender's float samples found out about them.
#[derive(Clone, Copy)]
struct FloatsSeen {
    /// Every one's series was logged when it was admitted.
    all_logged: bool,
    /// The series table's removal count when the first was admitted.
    removals: u64,
    /// The newest sample's time.
    newest: Timestamp,
}

impl Default for FloatsSeen {
    fn default() -> Self {
        FloatsSeen {
            all_logged: true,
            removals: 0,
            newest: Timestamp::MIN,
        }
    }
}

impl FloatsSeen {
    /// Starts over for a batch whose first float is admitted now.
    fn start(table: &SeriesTable) -> Self {
        FloatsSeen {
            removals: table.removals(),
            ..FloatsSeen::default()
        }
    }

    fn note(&mut self, t: Timestamp, logged: bool) {
        self.all_logged &= logged;
        self.newest = self.newest.max(t);
    }

    /// Whether the floats' series are all still live and logged: then a
    /// commit has nothing to log for them and nothing to drop. (A series
    /// only ever goes from unlogged to logged while it lives.)
    fn still_hold(&self, table: &SeriesTable) -> bool {
        self.all_logged && table.removals() == self.removals
    }
}

impl WalAppender {
    /// [`check_order`] under the series table's lock, counted when out of
    /// order.
    fn admit(&self, series: SeriesRef, t: Timestamp) -> Result<(), AppendError> {
        let admitted = check_order(
            &mut self.shared.series.lock(),
            series,
            t,
            self.shared.ooo_window_ms,
        )
        .map(|_logged| ());
        if let Err(AppendError::OutOfOrder) = admitted {
            self.shared.metrics.out_of_order.inc();
        }
        admitted
    }

    fn has_data(&self) -> bool {
        !(self.samples.is_empty()
            && self.histograms.is_empty()
            && self.float_histograms.is_empty()
            && self.exemplars.is_empty()
            && self.metadata.is_empty())
    }

    fn clear_data(&mut self) {
        self.samples.clear();
        self.histograms.clear();
        self.float_histograms.clear();
        self.histogram_bodies.clear();
        self.exemplars.clear();
        self.exemplar_bodies.clear();
        self.metadata.clear();
    }
}

impl Appender for WalAppender {
    fn series(&mut self, labels: &Labels) -> Result<SeriesRef, AppendError> {
        if labels.is_empty() {
            return Err(AppendError::EmptyLabels);
        }
        let mut t = self.shared.series.lock();
        let (r, created) = t
            .get_or_create(labels)
            .map_err(|e| AppendError::Storage(e.to_string()))?;
        if !created {
            return Ok(r);
        }
        self.shared.metrics.active_series.set(t.len() as i64);
        drop(t);
        self.new_series.push(r);
        Ok(r)
    }

    fn append(&mut self, series: SeriesRef, t: Timestamp, v: f64) -> Result<(), AppendError> {
        // A batch of one: admitted, noted and counted as every float is.
        let mut refused = Vec::new();
        self.append_floats(&[RefSample { series, t, v }], &mut refused);
        refused.pop().map_or(Ok(()), |(_, e)| Err(e))
    }

    /// One lock for the batch: taken once a sample, its two atomic
    /// instructions were most of what an append cost.
    fn append_floats(&mut self, samples: &[RefSample], refused: &mut Vec<(usize, AppendError)>) {
        self.samples.reserve(samples.len());
        let window = self.shared.ooo_window_ms;
        let mut out_of_order = 0;
        let mut table = self.shared.series.lock();
        for (i, &s) in samples.iter().enumerate() {
            let pushed = push_float(
                &mut self.samples,
                &mut self.floats_seen,
                &mut table,
                window,
                s,
            );
            if let Err(e) = pushed {
                out_of_order += u64::from(matches!(e, AppendError::OutOfOrder));
                refused.push((i, e));
            }
        }
        drop(table);
        if out_of_order > 0 {
            self.shared.metrics.out_of_order.inc_by(out_of_order);
        }
    }

    fn append_histogram(
        &mut self,
        series: SeriesRef,
        t: Timestamp,
        h: &NativeHistogram,
    ) -> Result<(), AppendError> {
        self.admit(series, t)?;
        let start = self.histogram_bodies.len();
        let kind = record::encode_histogram_body(h, &mut self.histogram_bodies);
        let entry = BodyEntry {
            series,
            t,
            body: start..self.histogram_bodies.len(),
        };
        if kind == RecordType::FloatHistogramSamples {
            self.float_histograms.push(entry);
        } else {
            self.histograms.push(entry);
        }
        Ok(())
    }

    fn append_exemplar(&mut self, series: SeriesRef, e: &Exemplar) -> Result<(), AppendError> {
        let hash = exemplar_hash(e);
        match self.shared.series.lock().note_exemplar(series, hash) {
            None => return Err(AppendError::UnknownSeries(series)),
            Some(false) => return Ok(()),
            Some(true) => {}
        }
        let start = self.exemplar_bodies.len();
        record::encode_exemplar_body(e.value, &e.labels, &mut self.exemplar_bodies);
        self.exemplars.push(BodyEntry {
            series,
            t: e.t,
            body: start..self.exemplar_bodies.len(),
        });
        Ok(())
    }

    fn update_metadata(
        &mut self,
        series: SeriesRef,
        kind: MetricType,
        help: &str,
        unit: &str,
    ) -> Result<(), AppendError> {
        {
            let table = self.shared.series.lock();
            let Some(known) = table.metadata(series) else {
                return Err(AppendError::UnknownSeries(series));
            };
            if known.is_some_and(|m| m.same_as(kind, unit, help)) {
                return Ok(());
            }
        }
        // Series of one family arrive one after another: share their value.
        let value = match self.metadata.last() {
            Some((_, m)) if m.same_as(kind, unit, help) => Arc::clone(m),
            _ => Arc::new(SeriesMetadata {
                kind,
                unit: unit.into(),
                help: help.into(),
            }),
        };
        self.metadata.push((series, value));
        Ok(())
    }

    fn commit(&mut self) -> Result<(), AppendError> {
        let r = self.write_batch(true);
        self.clear_data();
        self.new_series.clear();
        r
    }

    fn rollback(&mut self) {
        self.clear_data();
        if let Err(e) = self.write_batch(false) {
            tracing::warn!(error = %e, "logging series on rollback failed");
        }
        self.new_series.clear();
    }
}

impl WalAppender {
    /// Writes Series records for series not logged yet and (if
    /// `with_samples`) the pending metadata, samples, histograms and
    /// exemplars, in one write.
    fn write_batch(&mut self, with_samples: bool) -> Result<(), AppendError> {
        if !self.has_data() && self.new_series.is_empty() {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        if shared.closed.load(Ordering::Acquire) {
            return Err(AppendError::Storage(WalError::Closed.to_string()));
        }
        let mut w = shared.writer.lock();
        let mut t = shared.series.lock();
        self.bufs.clear();
        let mut to_log: Vec<SeriesRef> = Vec::new();
        let mut max_t = Timestamp::MIN;
        for &r in &self.new_series {
            if t.hot(r).is_some_and(|h| !h.logged()) {
                to_log.push(r);
            }
        }
        // The floats need no second look when admitting them found every
        // series logged and none was removed since (the common case: every
        // commit of a scrape of known series).
        let floats_hold = self.floats_seen.still_hold(&t);
        if with_samples && floats_hold && !self.samples.is_empty() {
            max_t = self.floats_seen.newest;
        }
        if with_samples {
            // Data may refer to series another appender created and has
            // not logged yet: log them here so a record never precedes its
            // series. Data of series GC'd meanwhile is dropped. Whether a
            // series is in `to_log` already is looked up in a set, made at
            // the first unlogged series: on a large target's first scrape
            // every sample's series is unlogged, and searching the list
            // for each was quadratic (20,000 new series: 142 → 52 ms a
            // commit, `cargo bench -p tributary-wal --bench append`).
            let mut queued: Option<HashSet<SeriesRef>> = None;
            let mut keep = |r: SeriesRef, ts: Timestamp, counts: bool| match t.hot(r) {
                Some(h) => {
                    if !h.logged() {
                        let queued = queued.get_or_insert_with(|| to_log.iter().copied().collect());
                        if queued.insert(r) {
                            to_log.push(r);
                        }
                    }
                    if counts {
                        max_t = max_t.max(ts);
                    }
                    true
                }
                None => false,
            };
            if !floats_hold {
                self.samples.retain(|s| keep(s.series, s.t, true));
            }
            self.histograms.retain(|h| keep(h.series, h.t, true));
            self.float_histograms.retain(|h| keep(h.series, h.t, true));
            self.exemplars.retain(|x| keep(x.series, x.t, false));
            self.metadata.retain(|(r, _)| keep(*r, 0, false));
        }
        if !to_log.is_empty() {
            self.bufs.series.push(RecordType::Series as u8);
            let store = t.label_store().read();
            for r in &to_log {
                record::encode_stored_series(&store, *r, &mut self.bufs.series);
            }
        }
        if with_samples {
            self.encode_data_records();
        }
        let records = self.bufs.records();
        if records.is_empty() {
            return Ok(());
        }
        let samples: &[RefSample] = if with_samples { &self.samples } else { &[] };
        let batch = BatchInfo {
            logged: &to_log,
            samples,
            histograms: [&self.histograms, &self.float_histograms],
            max_t,
        };
        if with_samples {
            apply_metadata(&mut t, &self.metadata);
        }
        if !w.pending.is_empty() {
            // A disk-full episode is under way: queue behind the earlier
            // batches so the WAL keeps commit order.
            return shared.buffer_batch(&mut w, &mut t, &records, &batch);
        }
        let end = match w.writer.write_records(&records) {
            Ok(end) => end,
            Err(e) => {
                shared.tail.invalidate();
                tracing::warn!(error = %e, "WAL write failed; keeping commits in memory until the disk accepts writes again");
                return shared.buffer_batch(&mut w, &mut t, &records, &batch);
            }
        };
        mark_written(
            &mut w,
            &mut t,
            end.segment,
            batch.logged,
            batch.refs(),
            batch.count(),
            max_t,
        );
        shared.metrics.samples_appended.inc_by(samples.len() as u64);
        shared
            .metrics
            .histograms_appended
            .inc_by((self.histograms.len() + self.float_histograms.len()) as u64);
        drop(t);
        // Still under the writer lock, so records are published in the
        // order they were written.
        shared.tail.publish(&records, w.writer.last_spans());
        drop(w);
        shared.commit_tx.send_modify(|v| *v = v.wrapping_add(1));
        Ok(())
    }

    /// Encodes the pending metadata, samples, histograms and exemplars into
    /// their record buffers.
    fn encode_data_records(&mut self) {
        if !self.metadata.is_empty() {
            self.bufs.metadata.push(RecordType::Metadata as u8);
            for (r, m) in &self.metadata {
                record::encode_metadata_entry(
                    *r,
                    m.kind,
                    &m.unit,
                    &m.help,
                    &mut self.bufs.metadata,
                );
            }
        }
        if !self.samples.is_empty() {
            record::encode_samples(&self.samples, &mut self.bufs.samples);
        }
        record::encode_with_bodies(
            RecordType::HistogramSamples,
            &self.histograms,
            &self.histogram_bodies,
            &mut self.bufs.histograms,
        );
        record::encode_with_bodies(
            RecordType::FloatHistogramSamples,
            &self.float_histograms,
            &self.histogram_bodies,
            &mut self.bufs.float_histograms,
        );
        record::encode_with_bodies(
            RecordType::Exemplars,
            &self.exemplars,
            &self.exemplar_bodies,
            &mut self.bufs.exemplars,
        );
    }
}

/// Remembers the metadata a commit logs, so unchanged metadata is not
/// logged again.
fn apply_metadata(t: &mut SeriesTable, metadata: &[(SeriesRef, Arc<SeriesMetadata>)]) {
    for (r, m) in metadata {
        t.set_metadata(*r, m);
    }
}

/// What a batch carries, for bookkeeping once it is on disk.
struct BatchInfo<'a> {
    logged: &'a [SeriesRef],
    samples: &'a [RefSample],
    /// Integer and float histogram samples.
    histograms: [&'a [BodyEntry]; 2],
    max_t: Timestamp,
}

impl BatchInfo<'_> {
    /// Series of the batch's samples and histograms.
    fn refs(&self) -> impl Iterator<Item = SeriesRef> + '_ {
        self.samples.iter().map(|s| s.series).chain(
            self.histograms
                .iter()
                .flat_map(|h| h.iter().map(|e| e.series)),
        )
    }

    /// Samples plus histogram samples: what truncation counts as data.
    fn count(&self) -> u64 {
        (self.samples.len() + self.histograms[0].len() + self.histograms[1].len()) as u64
    }
}

/// Records that a batch reached segment `segment`: its series are logged,
/// they and the series of its samples live at least until that segment,
/// and the segment's sample count and newest timestamp grow.
fn mark_written(
    w: &mut WriterState,
    t: &mut SeriesTable,
    segment: u32,
    logged: &[SeriesRef],
    sample_refs: impl Iterator<Item = SeriesRef>,
    samples: u64,
    max_t: Timestamp,
) {
    for r in logged {
        if let Some(h) = t.hot_mut(*r) {
            h.set_logged();
            h.last_segment = h.last_segment.max(segment);
        }
    }
    for r in sample_refs {
        if let Some(h) = t.hot_mut(r) {
            h.last_segment = h.last_segment.max(segment);
        }
    }
    if samples > 0 {
        let meta = w.segments.entry(segment).or_default();
        meta.samples += samples;
        meta.max_t = meta.max_t.max(max_t);
    }
}

impl Shared {
    /// Keeps a batch the disk refused in memory, if the buffer has room.
    /// Its series count as logged from now on: their Series record is
    /// queued ahead of every later record.
    fn buffer_batch(
        &self,
        w: &mut WriterState,
        t: &mut SeriesTable,
        records: &[&[u8]],
        batch: &BatchInfo<'_>,
    ) -> Result<(), AppendError> {
        let size: usize = records.iter().map(|r| r.len()).sum();
        if w.pending.bytes + size > self.opts.write_buffer_bytes {
            if w.pending.overflowed == 0 {
                tracing::error!(
                    buffered_bytes = w.pending.bytes,
                    limit = self.opts.write_buffer_bytes,
                    "WAL write buffer full while the disk refuses writes; dropping new commits"
                );
            }
            w.pending.overflowed += batch.count();
            self.metrics.write_buffer_dropped.inc_by(batch.count());
            return Err(AppendError::Storage(
                "WAL disk full and in-memory write buffer full".into(),
            ));
        }
        for r in batch.logged {
            if let Some(h) = t.hot_mut(*r) {
                h.set_logged();
            }
        }
        let mut refs = batch.logged.to_vec();
        refs.extend(batch.refs());
        w.pending.batches.push_back(PendingBatch {
            records: records.iter().map(|r| r.to_vec()).collect(),
            refs,
            samples: batch.count(),
            max_t: batch.max_t,
        });
        w.pending.bytes += size;
        self.metrics.write_buffer_bytes.set(w.pending.bytes as i64);
        self.metrics
            .samples_appended
            .inc_by(batch.samples.len() as u64);
        Ok(())
    }

    /// Writes buffered batches, oldest first, until one fails or (with
    /// `check_room`) does not fit. Returns whether the buffer is empty now.
    fn flush_pending(&self, check_room: bool) -> bool {
        // Asked once, outside the writer lock; what is written is taken off.
        let mut room = if check_room {
            self.free_bytes()
                .map_or(u64::MAX, |free| free.saturating_sub(ROOM_MARGIN))
        } else {
            u64::MAX
        };
        let mut w = self.writer.lock();
        if w.pending.is_empty() {
            return true;
        }
        let mut written = 0usize;
        loop {
            let ws = &mut *w;
            let Some(b) = ws.pending.batches.front() else {
                break;
            };
            let size = b.bytes();
            // Saves a doomed write (and the segment rotation that follows a
            // failed one); writes what fits when not all does.
            let Some(left) = room.checked_sub(size as u64) else {
                break;
            };
            room = left;
            let records: Vec<&[u8]> = b.records.iter().map(Vec::as_slice).collect();
            let end = match ws.writer.write_records(&records) {
                Ok(end) => end,
                Err(e) => {
                    self.tail.invalidate();
                    tracing::debug!(error = %e, "WAL write retry failed");
                    break;
                }
            };
            self.tail.publish(&records, ws.writer.last_spans());
            let Some(b) = w.pending.batches.pop_front() else {
                break;
            };
            w.pending.bytes -= size;
            written += 1;
            let mut t = self.series.lock();
            mark_written(
                &mut w,
                &mut t,
                end.segment,
                &[],
                b.refs.iter().copied(),
                b.samples,
                b.max_t,
            );
        }
        self.metrics.write_buffer_bytes.set(w.pending.bytes as i64);
        let empty = w.pending.is_empty();
        if empty {
            tracing::info!(
                refused_samples = w.pending.overflowed,
                "WAL writes succeed again; buffered commits written"
            );
            w.pending.overflowed = 0;
        }
        drop(w);
        if written > 0 {
            self.commit_tx.send_modify(|v| *v = v.wrapping_add(1));
        }
        empty
    }

    /// Free bytes on the WAL's filesystem, if it says.
    fn free_bytes(&self) -> Option<u64> {
        fs4::available_space(&self.wal_dir).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn labels(i: usize) -> Labels {
        Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())])
    }

    fn open_default(dir: &Path) -> Arc<AgentStorage> {
        AgentStorage::open(dir, WalOptions::default(), &mut Registry::default()).unwrap()
    }

    fn read_samples(wal_dir: &Path, start: Position) -> Vec<RefSample> {
        let mut r = WalReader::open(wal_dir, start).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            assert!(rec.skipped.is_none(), "{:?}", rec.skipped);
            if record::record_type(rec.payload) == Some(RecordType::Samples) {
                record::decode_samples(rec.payload, &mut out).unwrap();
            }
        }
        out
    }

    fn commit_one(
        app: &mut Box<dyn Appender>,
        r: SeriesRef,
        t: Timestamp,
    ) -> Result<(), AppendError> {
        app.append(r, t, t as f64).unwrap();
        app.commit()
    }

    /// Every record a reader takes from the writer's memory is the one
    /// the file holds at that place: same positions, same bytes, same
    /// order — across segment rotations (by size, by truncation and after
    /// failed writes), commits too large to keep, and readers that fall
    /// behind the window and come back to it.
    #[test]
    fn records_from_memory_are_the_records_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::default();
        let opts = WalOptions {
            segment_size: 64 * 1024,
            // Commits of up to 16 KiB kept, ~10 of the small ones.
            tail_bytes: 32 * 1024,
            ..WalOptions::default()
        };
        let s = AgentStorage::open(dir.path(), opts, &mut reg).unwrap();
        let start = s.consumer("c").unwrap().position();
        let mut with_tail = s.reader(start).unwrap();
        let mut refs = Vec::new();
        let mut app = s.appender();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        type Seen = Vec<(Position, Position, Vec<u8>)>;
        let read_all = |r: &mut WalReader, out: &mut Seen| {
            while let Some(rec) = r.next_record().unwrap() {
                if rec.skipped.is_none() {
                    out.push((rec.start, rec.end, rec.payload.to_vec()));
                }
            }
        };
        let mut seen = Seen::new();
        let t0 = now_ms();
        let mut lag = 0;
        for round in 0..400u64 {
            // New series now and then (a Series record in the commit),
            // 1 to ~6,000 samples: small commits, and some over a quarter
            // of the window, kept only in the file.
            if refs.is_empty() || next(4) == 0 {
                refs.push(app.series(&labels(refs.len())).unwrap());
            }
            let n = if next(20) == 0 { 6_000 } else { 1 + next(300) };
            for k in 0..n {
                let r = refs[(k as usize) % refs.len()];
                app.append(r, t0 + (round * 10_000 + k) as i64, k as f64)
                    .unwrap();
            }
            match next(40) {
                0 => s.fail_next_writes(1 + next(2) as u32),
                1 => drop(s.truncate_now().unwrap()),
                _ => {}
            }
            // Commits refused by the disk are buffered and succeed.
            app.commit().unwrap();
            if next(3) == 0 {
                s.shared.flush_pending(false);
            }
            // The reader catches up now (most of the time, from memory),
            // or only after many commits, behind the window.
            if lag > 0 {
                lag -= 1;
            } else if next(25) == 0 {
                lag = 5 + next(20);
            } else {
                read_all(&mut with_tail, &mut seen);
            }
        }
        while !s.shared.flush_pending(false) {}
        read_all(&mut with_tail, &mut seen);

        let mut from_file = WalReader::open(s.wal_dir(), start).unwrap();
        let mut expected = Seen::new();
        read_all(&mut from_file, &mut expected);
        assert!(expected.len() >= 400, "{}", expected.len());
        assert_eq!(seen.len(), expected.len());
        for (i, (a, b)) in seen.iter().zip(&expected).enumerate() {
            assert!(
                a == b,
                "record {i}: {:?}..{:?} vs {:?}..{:?}",
                a.0,
                a.1,
                b.0,
                b.1
            );
        }
        assert!(
            with_tail.from_tail > expected.len() / 2,
            "{} of {} from memory",
            with_tail.from_tail,
            expected.len()
        );
        assert!(with_tail.from_tail < expected.len());
    }

    #[test]
    fn refused_writes_are_buffered_in_order_and_written_when_the_disk_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::default();
        let opts = WalOptions {
            segment_size: 64 * 1024,
            ..WalOptions::default()
        };
        let s = AgentStorage::open(dir.path(), opts.clone(), &mut reg).unwrap();
        let start = s.consumer("c").unwrap().position();
        let mut app = s.appender();
        let a = app.series(&labels(1)).unwrap();
        commit_one(&mut app, a, 1).unwrap();

        // The disk refuses the next two writes: the commit still succeeds,
        // and so does the next one (queued behind it, not written out of
        // order), a new series included.
        s.fail_next_writes(2);
        commit_one(&mut app, a, 2).unwrap();
        let b = app.series(&labels(2)).unwrap();
        app.append(b, 3, 3.0).unwrap();
        commit_one(&mut app, a, 3).unwrap();
        assert_eq!(read_samples(s.wal_dir(), start).len(), 1);
        assert!(s.shared.metrics.write_buffer_bytes.get() > 0);

        // First retry fails too, the second one writes both batches.
        assert!(!s.shared.flush_pending(false));
        assert!(s.shared.flush_pending(false));
        assert_eq!(s.shared.metrics.write_buffer_bytes.get(), 0);
        assert_eq!(s.shared.metrics.writes_failed.get(), 2);
        let ts: Vec<i64> = read_samples(s.wal_dir(), start)
            .iter()
            .map(|x| x.t)
            .collect();
        assert_eq!(ts, vec![1, 2, 3, 3]);
        commit_one(&mut app, b, 4).unwrap();
        s.close().unwrap();
        drop(s);

        // Nothing on disk is damaged and every series is known after replay.
        let mut reg = Registry::default();
        let s = AgentStorage::open(dir.path(), opts, &mut reg).unwrap();
        assert_eq!(s.shared.metrics.corruptions.get(), 0);
        assert_eq!(s.series_labels(b), Some(labels(2)));
        let ts: Vec<i64> = read_samples(s.wal_dir(), start)
            .iter()
            .map(|x| x.t)
            .collect();
        assert_eq!(ts, vec![1, 2, 3, 3, 4]);
    }

    #[test]
    fn a_full_write_buffer_refuses_commits_and_counts_their_samples() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size: 64 * 1024,
            write_buffer_bytes: 200,
            ..WalOptions::default()
        };
        let s = AgentStorage::open(dir.path(), opts, &mut Registry::default()).unwrap();
        let start = s.consumer("c").unwrap().position();
        let mut app = s.appender();
        let a = app.series(&labels(1)).unwrap();
        s.fail_next_writes(1000);
        let mut accepted = Vec::new();
        let mut refused = None;
        for t in 1..100 {
            match commit_one(&mut app, a, t) {
                Ok(()) => accepted.push(t),
                Err(AppendError::Storage(_)) => {
                    refused = Some(t);
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        let refused = refused.expect("the buffer never filled");
        assert!(!accepted.is_empty());
        assert_eq!(s.shared.metrics.write_buffer_dropped.get(), 1);

        s.fail_next_writes(0);
        assert!(s.shared.flush_pending(false));
        commit_one(&mut app, a, refused + 1).unwrap();
        let ts: Vec<i64> = read_samples(s.wal_dir(), start)
            .iter()
            .map(|x| x.t)
            .collect();
        accepted.push(refused + 1);
        assert_eq!(ts, accepted);
    }

    #[test]
    fn failed_write_is_reported_and_leaves_a_readable_wal() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::default();
        let opts = WalOptions {
            segment_size: 64 * 1024,
            ..WalOptions::default()
        };
        let s = AgentStorage::open(dir.path(), opts.clone(), &mut reg).unwrap();
        let start = s.consumer("c").unwrap().position();
        let mut app = s.appender();
        let a = app.series(&labels(1)).unwrap();
        app.append(a, 1, 1.0).unwrap();
        app.commit().unwrap();

        s.fail_next_writes(1);
        let b = app.series(&labels(2)).unwrap();
        app.append(a, 2, 2.0).unwrap();
        app.append(b, 2, 2.0).unwrap();
        // Refused by the disk, kept in memory: the commit succeeds.
        app.commit().unwrap();
        assert_eq!(s.shared.metrics.writes_failed.get(), 1);
        assert!(s.shared.flush_pending(false));

        // The series created in the failed batch is logged by the next
        // commit that uses it.
        app.append(a, 3, 3.0).unwrap();
        app.append(b, 3, 3.0).unwrap();
        app.commit().unwrap();
        let got = read_samples(s.wal_dir(), start);
        let ts: Vec<i64> = got.iter().map(|x| x.t).collect();
        assert_eq!(ts, vec![1, 2, 2, 3, 3]);
        s.close().unwrap();
        drop(s);

        let s = AgentStorage::open(dir.path(), opts, &mut Registry::default()).unwrap();
        assert_eq!(s.series_labels(b), Some(labels(2)));
        let got = read_samples(s.wal_dir(), start);
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn replayed_metadata_is_shared_per_family_and_pages_cover_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_default(dir.path());
        let mut app = s.appender();
        let refs: Vec<SeriesRef> = (0..25).map(|i| app.series(&labels(i)).unwrap()).collect();
        for (i, &r) in refs.iter().enumerate() {
            let help = if i < 20 {
                "first family"
            } else {
                "second family"
            };
            app.update_metadata(r, MetricType::Counter, help, "")
                .unwrap();
            app.append(r, 1, 1.0).unwrap();
        }
        app.commit().unwrap();
        drop(app);
        s.close().unwrap();
        drop(s);

        let s = open_default(dir.path());
        {
            let t = s.shared.series.lock();
            let values: Vec<&Arc<SeriesMetadata>> = refs
                .iter()
                .map(|&r| t.metadata(r).unwrap().unwrap())
                .collect();
            assert!(Arc::ptr_eq(values[0], values[19]), "one family, one value");
            assert!(Arc::ptr_eq(values[20], values[24]));
            assert!(!Arc::ptr_eq(values[0], values[20]));
        }
        let (mut seen, mut pages, mut from) = (Vec::new(), 0, Some(0));
        while let Some(f) = from {
            pages += 1;
            from = s.live_metadata(f, 10, |r, kind, _, help| {
                assert_eq!(kind, MetricType::Counter);
                seen.push((r, help.to_string()));
            });
        }
        assert_eq!(pages, 3);
        assert_eq!(seen.iter().map(|(r, _)| *r).collect::<Vec<_>>(), refs);
        assert_eq!(seen[24].1, "second family");
    }

    /// The WAL's records in order: (series, None) for each series a Series
    /// record logs, (series, Some(t)) for each sample of a Samples record.
    fn read_in_order(wal_dir: &Path, start: Position) -> Vec<(SeriesRef, Option<Timestamp>)> {
        let mut r = WalReader::open(wal_dir, start).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            match record::record_type(rec.payload) {
                Some(RecordType::Series) => {
                    let mut series = Vec::new();
                    record::decode_series(rec.payload, &mut series).unwrap();
                    out.extend(series.into_iter().map(|(r, _)| (r, None)));
                }
                Some(RecordType::Samples) => {
                    let mut samples = Vec::new();
                    record::decode_samples(rec.payload, &mut samples).unwrap();
                    out.extend(samples.into_iter().map(|s| (s.series, Some(s.t))));
                }
                _ => {}
            }
        }
        out
    }

    /// A commit takes a second look at its floats' series only when it must
    /// — and then logs a series another appender created (once, before its
    /// samples) and drops the sample of a series removed since its
    /// admission.
    #[test]
    fn a_commit_logs_series_it_did_not_create_and_drops_samples_of_removed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_default(dir.path());
        let start = s.consumer("c").unwrap().position();
        let (mut creator, mut app) = (s.appender(), s.appender());
        let logged = app.series(&labels(1)).unwrap();
        commit_one(&mut app, logged, 1_000).unwrap();
        // Created, not logged: its creator has not committed.
        let unlogged = creator.series(&labels(2)).unwrap();
        let sample = |series, t| RefSample { series, t, v: 1.0 };
        let mut refused = Vec::new();
        app.append_floats(
            &[
                sample(logged, 2_000),
                sample(unlogged, 2_000),
                sample(unlogged, 2_001),
            ],
            &mut refused,
        );
        app.commit().unwrap();
        // Admitted while logged, then removed before the commit.
        app.append_floats(&[sample(logged, 3_000)], &mut refused);
        s.shared.series.lock().remove_where(|h| h.last_ts == 3_000);
        app.commit().unwrap();
        // All logged, none removed: straight through, one by one too.
        app.append_floats(&[sample(unlogged, 4_000)], &mut refused);
        app.append(unlogged, 5_000, 1.0).unwrap();
        app.commit().unwrap();
        creator.commit().unwrap();
        assert!(refused.is_empty());

        assert_eq!(
            read_in_order(s.wal_dir(), start),
            [
                (logged, None),
                (logged, Some(1_000)),
                (unlogged, None),
                (logged, Some(2_000)),
                (unlogged, Some(2_000)),
                (unlogged, Some(2_001)),
                (unlogged, Some(4_000)),
                (unlogged, Some(5_000)),
            ]
        );
    }

    #[test]
    fn a_dropped_appenders_buffers_serve_the_next_one_and_what_it_wrote_is_intact() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_default(dir.path());
        let start = s.consumer("c").unwrap().position();
        let spare = |s: &AgentStorage| {
            let spare = s.shared.spare_buffers.lock();
            let sizes = spare
                .iter()
                .map(|b| (b.samples.capacity(), b.bufs.samples.capacity()));
            (spare.len(), sizes.max().unwrap_or_default())
        };
        let mut app = s.appender();
        let refs: Vec<SeriesRef> = (0..1000).map(|i| app.series(&labels(i)).unwrap()).collect();
        for &r in &refs {
            app.append(r, 1, 1.0).unwrap();
        }
        app.commit().unwrap();
        assert_eq!(spare(&s).0, 0);
        drop(app);
        let (n, (samples, record)) = spare(&s);
        assert_eq!(n, 1);
        assert!(samples >= 1000 && record >= 1000, "{samples} {record}");
        // Not the buffer the 1,000 new series were logged with.
        assert!(s
            .shared
            .spare_buffers
            .lock()
            .iter()
            .all(|b| b.bufs.series.capacity() == 0));

        // An appender dropped without a commit leaves nothing behind for
        // the next one, which takes the buffers and writes its own batch.
        let mut app = s.appender();
        for &r in &refs[500..505] {
            app.append(r, 2, 9.0).unwrap();
        }
        drop(app);
        let mut app = s.appender();
        assert_eq!(spare(&s).0, 0);
        for &r in &refs[..10] {
            app.append(r, 2, 2.0).unwrap();
        }
        app.commit().unwrap();
        drop(app);
        let got = read_samples(s.wal_dir(), start);
        assert_eq!(got.len(), 1010);
        assert!(got[1000..].iter().all(|x| x.t == 2 && x.v == 2.0));

        // A page far larger than usual is not kept for the rest.
        let mut app = s.appender();
        for k in 0..=SPARE_BUFFER_MAX_BYTES / std::mem::size_of::<RefSample>() {
            app.append(refs[k % refs.len()], 3 + (k / refs.len()) as i64, 3.0)
                .unwrap();
        }
        drop(app);
        assert_eq!(spare(&s).0, 0);
    }
    /// The reserve taken before any checkpoint (sized from a sample of the
    /// series) holds the checkpoint that truncation then writes, without
    /// being many times larger; the checkpoint's measure then sizes it.
    #[test]
    fn the_reserve_is_sized_for_the_checkpoint_truncation_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_default(dir.path());
        let reserve_file = dir.path().join(reserve::FILE_NAME);
        let held = || fs::metadata(&reserve_file).map_or(0, |m| m.len());
        assert_eq!(held(), reserve::MIN_BYTES + reserve::MIN_BYTES / 2);
        let commit_all = |t: Timestamp| {
            let mut app = s.appender();
            for i in 0..40_000 {
                let l = Labels::from_pairs([
                    ("__name__", "node_filesystem_avail_bytes"),
                    ("device", &format!("/dev/sd{i}")),
                    ("fstype", "ext4"),
                    ("instance", &format!("host-{}.example.org:9100", i / 50)),
                    ("job", "node"),
                    ("mountpoint", &format!("/srv/volume/{i}")),
                    // As hard to compress as a container id.
                    (
                        "id",
                        &format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                    ),
                ]);
                let r = app.series(&l).unwrap();
                app.append(r, t, i as f64).unwrap();
            }
            app.commit().unwrap();
        };
        // Series logged in segment 0 with data in segment 1: truncation
        // deletes segment 0 and checkpoints all of them.
        commit_all(1_000);
        s.truncate_at(0).unwrap();
        commit_all(2_000);
        s.maintain_now();
        let before = held();
        let stats = s.truncate_at(301_500).unwrap();
        assert_eq!(stats.series_removed, 0);
        let cp = dir
            .path()
            .join("wal")
            .join(format::checkpoint_name(stats.checkpoint.unwrap()))
            .join("00000000");
        let cp_size = fs::metadata(cp).unwrap().len();
        assert!(
            cp_size > reserve::MIN_BYTES,
            "checkpoint of {cp_size} bytes"
        );
        assert!(
            before >= cp_size && before <= 3 * cp_size,
            "reserve of {before} bytes for a checkpoint of {cp_size}"
        );
        s.maintain_now();
        assert!(held() >= cp_size, "{} < {cp_size}", held());
    }
}
