//! One target's scrape loop: scheduled on Prometheus's offset grid, fetches
//! the target, appends its samples through the scrape cache, writes the
//! synthetic series and staleness markers, and publishes its health.
//!
//! A loop is one tokio task. Parsing and appending run synchronously inside
//! it (a scrape is a few milliseconds of CPU); the fetch is bounded by
//! `scrape_timeout`, so a slow or hostile target delays nobody else.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_config::ScrapeConfig;
use tributary_exposition::{Entry, Format, Parser, ParserOptions};
use tributary_model::histogram::{schema_for_min_bucket_factor, EXPONENTIAL_SCHEMA_MIN};
use tributary_model::{
    AppendError, Appender, Exemplar, HistogramCount, Labels, LabelsBuilder, NativeHistogram,
    RefSample, ResetHint, ScrapeProtocol, SeriesRef, Storage, STALE_NAN,
};

use crate::buffers::BodyBuf;
use crate::cache::{self, NewEntry, ScrapeCache, StaleSeries};
use crate::fetch::{fetch, Connection, FetchError, ScrapeRequest};
use crate::float_batch::{replay_to, FloatBatch};
use crate::metadata::{FamilyState, SharedMetadata};
use crate::metrics::ScrapeMetrics;
use crate::status::{Health, TargetHealth, BODY_HEAD_BYTES};
use crate::target::Target;

/// Samples more than this far in the future are dropped (out of bounds).
const MAX_FUTURE_MS: i64 = 10 * 60 * 1000;
/// Lines read from their end that were not what the cache expected, after
/// which a scrape stops guessing (see `ScrapeLoop::append_parsed`).
const GUESS_MISSES_ALLOWED: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    ContentType(String),
    #[error("sample limit exceeded")]
    SampleLimit,
    #[error("histogram bucket limit exceeded")]
    BucketLimit,
    #[error("{0}")]
    LabelLimit(String),
    /// Metric relabeling took a series' name away (Prometheus's
    /// `errNameLabelMandatory`).
    #[error("missing metric name (__name__ label)")]
    MissingName,
    #[error("append: {0}")]
    Append(#[from] AppendError),
    #[error("{0}")]
    Forced(String),
}

/// Counts of one scrape, reported as the synthetic series.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    scraped: u64,
    post_relabel: u64,
    /// Of `post_relabel`, duplicates: never appended, so outside the
    /// sample limit.
    duplicates: u64,
    added: u64,
}

/// Options shared by all loops of the process.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    pub offset_seed: u64,
    pub adjust_timestamps: bool,
    pub timestamp_tolerance: Duration,
    /// `--enable-feature=created-timestamp-zero-ingestion`: a counter,
    /// summary or histogram sample whose exposition carries a created
    /// timestamp is preceded by a zero sample at that timestamp, and
    /// OpenMetrics `_created` lines are not ingested as series.
    pub created_timestamp_zero_ingestion: bool,
}

/// Synthetic series names, in the order they are written.
const REPORT_NAMES: [&str; 8] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "scrape_timeout_seconds",
    "scrape_sample_limit",
    "scrape_body_size_bytes",
];

/// The loop a new loop replaces on a reload, which hands over its cache
/// when it has finished (a scrape in flight still commits).
pub(crate) enum Predecessor {
    /// Only settings that leave a page's lines mapping to the same series
    /// changed: the cache goes on as it was, and nothing goes stale.
    Cache(tokio::task::JoinHandle<ScrapeCache>),
    /// Labels or relabeling changed: every series is built afresh, and the
    /// predecessor's series that the first scrape no longer yields get
    /// staleness markers then.
    Series(tokio::task::JoinHandle<ScrapeCache>),
}

pub(crate) struct ScrapeLoop {
    pub target: Target,
    pub cfg: Arc<ScrapeConfig>,
    pub client: tributary_http::HttpClient,
    pub storage: Arc<dyn Storage>,
    pub request: ScrapeRequest,
    connection: Connection,
    /// The metadata lines of the family being parsed; kept between scrapes
    /// so that its strings' buffers are reused.
    family: FamilyState,
    pub options: LoopOptions,
    pub status: Arc<Mutex<TargetHealth>>,
    pub metrics: ScrapeMetrics,
    /// Set by the pool: `target_limit` exceeded, scrape fails with this.
    pub forced_error: Arc<Mutex<Option<String>>>,
    pub cache: ScrapeCache,
    body: BodyBuf,
    builder: LabelsBuilder,
    /// The series of a predecessor whose cache could not be reused (see
    /// [`Predecessor::Series`]), until the first scrape has said which
    /// are gone.
    inherited: Vec<StaleSeries>,
    /// Names the current series exposes with an empty value (see
    /// [`merge_target_labels`]).
    exposed_empty: Vec<String>,
    stale: Vec<StaleSeries>,
    report_refs: [SeriesRef; 8],
    /// Per-family metadata of this target, shared with the pool (API).
    pub metadata: SharedMetadata,
    /// Reused for the exemplars of one sample.
    exemplars: Vec<tributary_exposition::Exemplar>,
    /// The stale histogram, built once.
    stale_histogram: NativeHistogram,
    /// Reused for created-timestamp zero histograms (no bucket vectors, so
    /// filling it in never allocates).
    zero_histogram: NativeHistogram,
}

/// Whether a native histogram is finer than `max_schema` or has more than
/// `limit` buckets (0: no limit).
fn needs_fitting(h: &NativeHistogram, limit: usize, max_schema: i32) -> bool {
    (h.is_exponential() && h.schema > max_schema) || (limit > 0 && h.bucket_count() > limit)
}

/// Brings a histogram under the maximum schema and the bucket limit by
/// lowering its resolution, as Prometheus's scrape appenders do; false if
/// the limit cannot be met (custom buckets, or already at the coarsest
/// schema).
fn fit_histogram(h: &mut NativeHistogram, limit: usize, max_schema: i32) -> bool {
    if h.is_exponential() && h.schema > max_schema {
        h.reduce_resolution(max_schema);
    }
    if limit == 0 {
        return true;
    }
    while h.bucket_count() > limit {
        if !h.is_exponential() || h.schema <= EXPONENTIAL_SCHEMA_MIN {
            return false;
        }
        h.reduce_resolution(h.schema - 1);
    }
    true
}

fn wall_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ScrapeLoop {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        metadata: SharedMetadata,
        target: Target,
        cfg: Arc<ScrapeConfig>,
        client: tributary_http::HttpClient,
        storage: Arc<dyn Storage>,
        request: ScrapeRequest,
        options: LoopOptions,
        status: Arc<Mutex<TargetHealth>>,
        metrics: ScrapeMetrics,
        forced_error: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let cache = ScrapeCache::new(options.created_timestamp_zero_ingestion);
        let connection = Connection::new(&client, &request);
        ScrapeLoop {
            target,
            cfg,
            client,
            storage,
            request,
            connection,
            family: FamilyState::default(),
            options,
            status,
            metrics,
            forced_error,
            cache,
            body: BodyBuf::default(),
            builder: LabelsBuilder::new(),
            inherited: Vec::new(),
            exposed_empty: Vec::new(),
            stale: Vec::new(),
            report_refs: [SeriesRef::NONE; 8],
            metadata,
            exemplars: Vec::new(),
            stale_histogram: NativeHistogram::stale(),
            zero_histogram: NativeHistogram::default(),
        }
    }

    /// The first scrape time on the grid: `offset` into each interval, where
    /// the offset spreads targets evenly and stays stable across restarts.
    fn first_slot(&self, now_ms: i64) -> i64 {
        let interval = self.target.interval.as_millis().max(1) as i64;
        let offset = ((self.target.hash ^ self.options.offset_seed) % interval as u64) as i64;
        let base = now_ms - now_ms.rem_euclid(interval) + offset;
        if base < now_ms {
            base + interval
        } else {
            base
        }
    }

    /// Runs until `stop` (process shutdown or pool reload: no staleness
    /// markers; a scrape in flight finishes first) or `removed` (target gone from discovery: end-of-run markers).
    /// Returns the cache so a successor loop can continue staleness tracking.
    pub(crate) async fn run(
        mut self,
        stop: CancellationToken,
        removed: CancellationToken,
        predecessor: Option<Predecessor>,
    ) -> ScrapeCache {
        match predecessor {
            Some(Predecessor::Cache(p)) => {
                if let Ok(c) = p.await {
                    self.cache = c;
                }
            }
            Some(Predecessor::Series(p)) => {
                if let Ok(c) = p.await {
                    c.current_series(&mut self.inherited);
                }
            }
            None => {}
        }
        let interval_ms = self.target.interval.as_millis().max(1) as i64;
        let start_wall = wall_ms(SystemTime::now());
        let start_instant = Instant::now();
        let at =
            |slot: i64| start_instant + Duration::from_millis((slot - start_wall).max(0) as u64);
        let mut slot = self.first_slot(start_wall);
        let mut last_slot: Option<i64> = None;
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return self.cache,
                _ = removed.cancelled() => break,
                _ = tokio::time::sleep_until(at(slot)) => {}
            }
            let now = wall_ms(SystemTime::now());
            let tolerance =
                (self.options.timestamp_tolerance.as_millis() as i64).min(interval_ms / 100);
            let ts = if self.options.adjust_timestamps && (now - slot).abs() <= tolerance {
                slot
            } else {
                now
            };
            // Not cancelled by `stop`: a scrape that started completes and
            // commits (its fetch is bounded by the scrape timeout), so
            // shutdown never drops a scrape whose time has come.
            self.scrape_once(ts).await;
            last_slot = Some(slot);
            // Next slot strictly in the future (skipping missed ones).
            let now = wall_ms(SystemTime::now());
            slot += interval_ms;
            if slot <= now {
                slot += ((now - slot) / interval_ms + 1) * interval_ms;
            }
        }
        if let Some(last) = last_slot {
            self.end_of_run_staleness(last, interval_ms, &stop).await;
        }
        self.cache
    }

    /// A removed target's series go stale at the time of its first missed
    /// scrape, written after two more intervals (+10%) in case the target
    /// comes back meanwhile under a new loop.
    async fn end_of_run_staleness(
        &mut self,
        last_slot: i64,
        interval_ms: i64,
        stop: &CancellationToken,
    ) {
        let wait_until_ms = last_slot + 2 * interval_ms + interval_ms / 10;
        let wait = (wait_until_ms - wall_ms(SystemTime::now())).max(0) as u64;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
        let ts = last_slot + interval_ms;
        let mut stale = std::mem::take(&mut self.stale);
        stale.clear();
        self.cache.current_series(&mut stale);
        let mut app = self.storage.appender();
        self.append_stale_markers(app.as_mut(), &stale, ts);
        for r in self.report_refs.iter().copied() {
            if !r.is_none() {
                let _ = app.append(r, ts, STALE_NAN);
            }
        }
        if let Err(e) = app.commit() {
            tracing::warn!(target = %self.target.url, err = %e, "Appending end-of-run staleness markers failed");
        }
        self.stale = stale;
    }

    /// One scrape: fetch, append, report. Never fails: a failure becomes
    /// `up` = 0, staleness markers and the target's last error.
    pub(crate) async fn scrape_once(&mut self, ts: i64) {
        let started = Instant::now();
        self.body = crate::buffers::take_body();
        let forced = self.forced_error.lock().clone();
        let fetched = match forced {
            Some(msg) => Err(ScrapeError::Forced(msg)),
            None => fetch(
                &self.client,
                &self.request,
                &mut self.connection,
                &mut self.body,
            )
            .await
            .map_err(ScrapeError::from),
        };
        if matches!(fetched, Err(ScrapeError::Fetch(FetchError::BodySizeLimit))) {
            self.metrics.exceeded_body_size_limit.inc();
        }
        let mut app = self.storage.appender();
        let mut counts = Counts::default();
        let body_read = fetched.is_ok();
        let result = match &fetched {
            Ok(_) => match self.format_for(self.connection.headers.content_type()) {
                Ok(format) => self.append_body(app.as_mut(), format, ts, &mut counts),
                Err(e) => Err(e),
            },
            Err(_) => Ok(()),
        };
        let result = match (fetched, result) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(f), Ok(())) => Ok(f),
        };
        let duration = started.elapsed();
        let (up, body_size) = match &result {
            Ok(_) => {
                self.cache.finish_success(&mut self.stale);
                (1.0, self.body.len() as f64)
            }
            Err(e) => {
                app.rollback();
                app = self.storage.appender();
                self.cache.finish_failure(&mut self.stale);
                counts.added = 0;
                // As Prometheus: the body's size when it was read (a page
                // that failed to parse or broke a limit), -1 over the body
                // size limit.
                let size = match e {
                    ScrapeError::Fetch(FetchError::BodySizeLimit) => -1.0,
                    _ if body_read => self.body.len() as f64,
                    _ => 0.0,
                };
                (0.0, size)
            }
        };
        let mut stale = std::mem::take(&mut self.stale);
        self.stale_inherited(&mut stale);
        self.append_stale_markers(app.as_mut(), &stale, ts);
        // A failed scrape marks every series stale at once; do not keep
        // room for all of them in every loop afterwards.
        if stale.capacity() > 64 {
            stale = Vec::new();
        }
        self.stale = stale;
        let sample_limit = self.cfg.sample_limit as f64;
        let values = [
            up,
            duration.as_secs_f64(),
            counts.scraped as f64,
            counts.post_relabel as f64,
            counts.added as f64,
            self.target.timeout.as_secs_f64(),
            sample_limit,
            body_size,
        ];
        let n = if self.cfg.extra_scrape_metrics { 8 } else { 5 };
        let mut report_result = Ok(());
        for (i, v) in values.into_iter().enumerate().take(n) {
            if let Err(e) = self.append_report(app.as_mut(), i, ts, v) {
                report_result = Err(e);
            }
        }
        let commit = app.commit();
        self.publish(
            ts,
            duration,
            &result,
            counts,
            commit
                .err()
                .map(|e| e.to_string())
                .or(report_result.err().map(|e| e.to_string())),
        );
    }

    /// Adds to `stale` the series inherited from a predecessor (see
    /// [`Predecessor::Series`]) that this scrape, the loop's first, did not
    /// yield (all of them if it failed).
    fn stale_inherited(&mut self, stale: &mut Vec<StaleSeries>) {
        if self.inherited.is_empty() {
            return;
        }
        let mut current = Vec::new();
        self.cache.current_series(&mut current);
        let current: std::collections::HashSet<SeriesRef> =
            current.into_iter().map(|s| s.series).collect();
        stale.extend(
            std::mem::take(&mut self.inherited)
                .into_iter()
                .filter(|s| !current.contains(&s.series)),
        );
    }

    /// Staleness markers: the stale NaN for float series, a stale
    /// histogram for native histogram series (as Prometheus's storage
    /// turns a stale NaN on a histogram series into). A marker for a series
    /// the storage already forgot is moot, so errors are ignored.
    fn append_stale_markers(&self, app: &mut dyn Appender, stale: &[StaleSeries], ts: i64) {
        for s in stale {
            let _ = if s.histogram {
                app.append_histogram(s.series, ts, &self.stale_histogram)
            } else {
                app.append(s.series, ts, STALE_NAN)
            };
        }
    }

    fn publish(
        &mut self,
        ts: i64,
        duration: Duration,
        result: &Result<crate::fetch::FetchedBody, ScrapeError>,
        counts: Counts,
        storage_error: Option<String>,
    ) {
        let mut st = self.status.lock();
        let was = st.health;
        st.last_scrape = Some(UNIX_EPOCH + Duration::from_millis(ts.max(0) as u64));
        st.last_duration = duration;
        match result {
            Ok(f) => {
                st.health = Health::Up;
                st.last_error = storage_error.unwrap_or_default();
                st.last.http_status = f.status;
                // Into the buffers of the scrape before, not new ones.
                let headers = &self.connection.headers;
                st.last.content_type.clear();
                st.last.content_type.push_str(headers.content_type());
                st.last.headers.clone_from(headers);
                st.last.wire_bytes = f.wire_bytes;
            }
            Err(e) => {
                st.health = Health::Down;
                st.last_error = e.to_string();
                if let ScrapeError::Fetch(_) | ScrapeError::Forced(_) = e {
                    st.last.http_status = 0;
                    st.last.headers.clear();
                }
            }
        }
        st.last.body_bytes = self.body.len() as u64;
        let body = self.body.as_slice();
        let head = &body[..body.len().min(BODY_HEAD_BYTES)];
        // Checked with `from_utf8` first: the lossy path walks the bytes
        // chunk by chunk, slower on the valid text nearly every page is.
        st.last.body_head.clear();
        match std::str::from_utf8(head) {
            Ok(text) => st.last.body_head.push_str(text),
            Err(_) => st.last.body_head.push_str(&String::from_utf8_lossy(head)),
        }
        st.last.samples = counts.scraped;
        st.last.series_added = counts.added;
        if was != st.health {
            if st.health == Health::Down {
                tracing::warn!(scrape_pool = %self.cfg.job_name, target = %self.target.url, err = %st.last_error, "Target went down");
            } else if was == Health::Down {
                tracing::info!(scrape_pool = %self.cfg.job_name, target = %self.target.url, "Target is up again");
            }
        }
        crate::buffers::give_back_body(std::mem::take(&mut self.body));
    }

    fn format_for(&self, content_type: &str) -> Result<Format, ScrapeError> {
        match Format::from_content_type(content_type) {
            Ok(f) => Ok(f),
            Err(e) => match self.cfg.fallback_scrape_protocol {
                Some(p) => protocol_format(p).ok_or_else(|| {
                    ScrapeError::ContentType(format!("fallback protocol {p} is not supported yet"))
                }),
                None => Err(ScrapeError::ContentType(format!(
                    "{e}; set fallback_scrape_protocol to scrape it anyway"
                ))),
            },
        }
    }

    fn append_report(
        &mut self,
        app: &mut dyn Appender,
        i: usize,
        ts: i64,
        v: f64,
    ) -> Result<(), AppendError> {
        if self.report_refs[i].is_none() {
            self.report_refs[i] = app.series(&self.report_labels(i))?;
        }
        match app.append(self.report_refs[i], ts, v) {
            Err(AppendError::UnknownSeries(_)) => {
                self.report_refs[i] = app.series(&self.report_labels(i))?;
                app.append(self.report_refs[i], ts, v)
            }
            Err(AppendError::OutOfOrder) => Ok(()),
            other => other,
        }
    }

    fn report_labels(&self, i: usize) -> Labels {
        let mut b = self.target.labels.to_builder();
        b.set("__name__", REPORT_NAMES[i]);
        b.labels()
    }

    /// Parses the body and appends every sample through the cache.
    fn append_body(
        &mut self,
        app: &mut dyn Appender,
        format: Format,
        ts: i64,
        counts: &mut Counts,
    ) -> Result<(), ScrapeError> {
        let body = std::mem::take(&mut self.body);
        let r = self.append_parsed(app, format, body.as_slice(), ts, counts);
        self.body = body;
        r
    }

    fn append_parsed(
        &mut self,
        app: &mut dyn Appender,
        format: Format,
        body: &[u8],
        ts: i64,
        counts: &mut Counts,
    ) -> Result<(), ScrapeError> {
        let iter = self.cache.begin();
        let now = wall_ms(SystemTime::now());
        let honor_ts = self.cfg.honor_timestamps;
        let track_ts_staleness = self.cfg.track_timestamps_staleness;
        let native = self.cfg.scrape_native_histograms;
        let ct_zero = self.options.created_timestamp_zero_ingestion;
        let options = ParserOptions {
            // Without native histograms, a histogram that has classic
            // buckets is ingested as classic series instead.
            keep_classic_histograms: !native || self.cfg.always_scrape_classic_histograms,
            // With created-timestamp ingestion, OpenMetrics `_created` lines
            // are read as the created timestamp of their point, not stored
            // (Prometheus's `OpenMetricsSkipSTSeries`).
            skip_created_series: ct_zero,
            ..ParserOptions::default()
        };
        let mut parser = Parser::with_options(format, body, options);
        let store = Arc::clone(&self.metadata);
        // Held for the scrape (milliseconds): one lock instead of one per
        // family; the API only reads it.
        let mut store = store.lock();
        // The last scrape's, for its strings' buffers.
        let mut family = std::mem::take(&mut self.family);
        family.reset();
        // native_histogram_min_bucket_factor as a maximum schema, and
        // native_histogram_bucket_limit; a histogram over either is
        // reduced in this scratch copy, the parser's stays untouched.
        let max_schema = schema_for_min_bucket_factor(self.cfg.native_histogram_min_bucket_factor);
        let bucket_limit =
            usize::try_from(self.cfg.native_histogram_bucket_limit).unwrap_or(usize::MAX);
        let mut reduced = NativeHistogram::default();
        let mut bucket_limit_exceeded = false;
        // Lines of series the cache expects next are not tokenised: the
        // value is read where the expected series' length says it starts
        // (`Parser::guess_series_of_len`; from the line's end when the
        // length is not known, `Parser::guess_series`); a target
        // whose lines keep missing (new, reordered, timestamped) is parsed
        // the usual way for the rest of the scrape.
        let mut guess_misses = if format == Format::PrometheusText {
            0
        } else {
            GUESS_MISSES_ALLOWED
        };
        // Text pages only: a batched sample is found again by its line,
        // and a protobuf parser numbers families, not series.
        let batchable = format != Format::Protobuf;
        let mut floats = FloatBatch::new();
        loop {
            let mut known_key = None;
            if guess_misses < GUESS_MISSES_ALLOWED {
                let guess = match self.cache.next_len() {
                    Some(len) => parser.guess_series_of_len(len),
                    None => parser.guess_series(),
                };
                if let Some(g) = guess {
                    let k = cache::key(g.series);
                    if self.cache.is_next(k) {
                        parser.take_guessed(&g);
                        known_key = Some(k);
                    } else {
                        guess_misses += 1;
                    }
                }
            }
            let entry = match known_key {
                Some(_) => Some(Entry::Series),
                None => parser
                    .next()
                    .map_err(|e| ScrapeError::Parse(e.to_string()))?,
            };
            let histogram = match entry {
                None => break,
                Some(Entry::Series) => false,
                Some(Entry::Histogram) if native => true,
                Some(Entry::Histogram) => continue,
                Some(Entry::Type { name, kind }) => {
                    family.enter(&name);
                    family.kind = kind;
                    continue;
                }
                Some(Entry::Help { name, text }) => {
                    family.enter(&name);
                    family.help.clear();
                    family.help.push_str(&text);
                    continue;
                }
                Some(Entry::Unit { name, unit }) => {
                    family.enter(&name);
                    family.unit.clear();
                    family.unit.push_str(unit);
                    continue;
                }
                Some(_) => continue,
            };
            if family.dirty {
                family.changed = store.observe(&family, iter);
                family.dirty = false;
            }
            let (raw, exposed_ts, v) = parser.series();
            counts.scraped += 1;
            let t = match exposed_ts {
                Some(t) if honor_ts => t,
                _ => ts,
            };
            let in_bounds = t <= now + MAX_FUTURE_MS;
            let k = known_key.unwrap_or_else(|| cache::key(raw));
            let (series, is_new, prev_t) = match self.cache.get_mut(k) {
                // The same series again in one exposition: without a
                // timestamp of its own a duplicate (counted after
                // relabeling all the same, as Prometheus counts it);
                // with one, a further sample of the series.
                Some(e) if e.seen_in(iter) && (exposed_ts.is_none() || !honor_ts) => {
                    if !e.series().is_none() {
                        self.metrics.sample_duplicate_timestamp.inc();
                        counts.post_relabel += 1;
                        counts.duplicates += 1;
                    }
                    continue;
                }
                Some(mut e) => {
                    if !e.seen_in(iter) {
                        e.touch(iter, histogram);
                    }
                    if e.series().is_none() {
                        continue;
                    }
                    let prev_t = e.last_t();
                    if in_bounds {
                        e.raise_last_t(t);
                    }
                    (e.series(), false, prev_t)
                }
                None => {
                    let stale_tracked = exposed_ts.is_none() || !honor_ts || track_ts_staleness;
                    let series = match self.build_labels(&parser)? {
                        Some(labels) => {
                            counts.added += 1;
                            app.series(&labels)?
                        }
                        None => SeriesRef::NONE,
                    };
                    self.cache.insert(
                        k,
                        NewEntry {
                            series,
                            iter,
                            stale_tracked,
                            histogram,
                            last_t: if in_bounds { t } else { i64::MIN },
                        },
                    );
                    if series.is_none() {
                        continue;
                    }
                    (series, true, i64::MIN)
                }
            };
            counts.post_relabel += 1;
            if !in_bounds {
                self.metrics.sample_out_of_bounds.inc();
                continue;
            }
            let parsed_h = if histogram { parser.histogram() } else { None };
            let native_h = match parsed_h {
                Some(h) if needs_fitting(h, bucket_limit, max_schema) => {
                    reduced.clone_from(h);
                    if !fit_histogram(&mut reduced, bucket_limit, max_schema) {
                        // Like the sample limit: keep parsing to count
                        // the samples, then fail the scrape.
                        bucket_limit_exceeded = true;
                        continue;
                    }
                    Some(&reduced)
                }
                other => other,
            };
            // Prometheus 3.x: created timestamps are parsed only with the
            // feature on (the OpenMetrics look-ahead is not free), and a
            // zero sample is written only when the created timestamp lies
            // after everything the series has and before this sample.
            let ct = if ct_zero {
                parser
                    .created_timestamp()
                    .filter(|&ct| ct != 0 && ct < t && ct > prev_t)
            } else {
                None
            };
            // A known series' float with nothing else to write (no created
            // timestamp, metadata or exemplar) waits for a batch.
            if batchable
                && !histogram
                && ct.is_none()
                && !is_new
                && !family.changed
                && !parser.has_exemplar()
            {
                if floats.push(&parser, RefSample { series, t, v }) {
                    self.flush_floats(app, &mut floats)?;
                }
                continue;
            }
            // The rest in page order after the batch.
            self.flush_floats(app, &mut floats)?;
            if let Some(ct) = ct {
                self.append_ct_zero(app, series, ct, native_h);
            }
            let series = match append_value(app, series, t, v, native_h) {
                Ok(()) => series,
                Err(AppendError::OutOfOrder) => {
                    self.metrics.sample_out_of_order.inc();
                    continue;
                }
                Err(AppendError::UnknownSeries(_)) => {
                    let Some(series) = self.relearn(app, &parser, k)? else {
                        continue;
                    };
                    if let Some(ct) = ct {
                        self.append_ct_zero(app, series, ct, native_h);
                    }
                    if let Err(AppendError::OutOfOrder) = append_value(app, series, t, v, native_h)
                    {
                        self.metrics.sample_out_of_order.inc();
                        continue;
                    }
                    series
                }
                // A storage without native histograms: skip them, keep the rest.
                Err(AppendError::Unsupported(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            if (is_new || family.changed) && family.covers(&parser.metric_name()) {
                // Failures only lose metadata, never the scrape.
                let _ = app.update_metadata(series, family.kind, &family.help, &family.unit);
            }
            self.append_exemplars(app, &parser, series, t, histogram);
        }
        self.family = family;
        self.flush_floats(app, &mut floats)?;
        store.evict_unseen(iter);
        drop(store);
        let limit = self.cfg.sample_limit;
        if limit > 0 && counts.post_relabel - counts.duplicates > limit {
            self.metrics.exceeded_sample_limit.inc();
            return Err(ScrapeError::SampleLimit);
        }
        if bucket_limit_exceeded {
            self.metrics.exceeded_bucket_limit.inc();
            return Err(ScrapeError::BucketLimit);
        }
        Ok(())
    }

    /// Appends the batched floats. Refused ones are handled as a lone
    /// append's refusal would be: counted when out of order, resolved again
    /// from their line (replayed from the batch's first) when the storage
    /// forgot their series.
    fn flush_floats(
        &mut self,
        app: &mut dyn Appender,
        floats: &mut FloatBatch<'_>,
    ) -> Result<(), ScrapeError> {
        floats.append(app);
        let mut replay = None;
        let mut result = Ok(());
        for (s, line, e) in floats.refused() {
            result = match e {
                AppendError::OutOfOrder => {
                    self.metrics.sample_out_of_order.inc();
                    Ok(())
                }
                AppendError::UnknownSeries(_) => {
                    let parser = replay.get_or_insert_with(|| floats.replay());
                    self.append_relearned(app, parser.as_mut(), line, s)
                }
                AppendError::Unsupported(_) => Ok(()),
                e => Err(e.clone().into()),
            };
            if result.is_err() {
                break;
            }
        }
        floats.clear();
        result
    }

    /// A batched sample of a series the storage forgot: its line found
    /// again by `replay`, the series resolved again, the sample appended.
    fn append_relearned(
        &mut self,
        app: &mut dyn Appender,
        replay: Option<&mut Parser<'_>>,
        line: usize,
        s: RefSample,
    ) -> Result<(), ScrapeError> {
        let Some(parser) = replay else {
            return Err(AppendError::UnknownSeries(s.series).into());
        };
        // The replay reads the page as the first parse did, so it finds the
        // line; were the two ever to disagree, the scrape fails rather than
        // lose the sample unseen.
        if !replay_to(parser, line) {
            return Err(AppendError::UnknownSeries(s.series).into());
        }
        let k = cache::key(parser.series().0);
        if let Some(series) = self.relearn(app, parser, k)? {
            if let Err(AppendError::OutOfOrder) = app.append(series, s.t, s.v) {
                self.metrics.sample_out_of_order.inc();
            }
        }
        Ok(())
    }

    /// The series of the parser's line again, after the storage forgot
    /// its reference (garbage-collected it); the cache entry `k` is pointed
    /// at the new one. `None` if relabeling drops it.
    fn relearn(
        &mut self,
        app: &mut dyn Appender,
        parser: &Parser<'_>,
        k: u128,
    ) -> Result<Option<SeriesRef>, ScrapeError> {
        let Some(labels) = self.build_labels(parser)? else {
            return Ok(None);
        };
        let series = app.series(&labels)?;
        if let Some(mut e) = self.cache.get_mut(k) {
            e.set_series(series);
        }
        Ok(Some(series))
    }

    /// The created-timestamp zero sample before a sample: 0 for a float
    /// series; for a native histogram an empty histogram of the sample's
    /// schema and zero threshold (and kind: integer or float) flagged as a
    /// counter reset, as Prometheus's agent storage writes it. Best effort,
    /// like Prometheus: an out-of-order created timestamp is skipped
    /// silently and any other refusal only logged, never failing the
    /// scrape; a vanished series is resolved again by the sample's own
    /// append, which then retries this.
    fn append_ct_zero(
        &mut self,
        app: &mut dyn Appender,
        series: SeriesRef,
        ct: i64,
        histogram: Option<&NativeHistogram>,
    ) {
        let result = match histogram {
            Some(h) => {
                let z = &mut self.zero_histogram;
                z.schema = h.schema;
                z.zero_threshold = h.zero_threshold;
                let zero = if h.is_float() {
                    HistogramCount::Float(0.0)
                } else {
                    HistogramCount::Int(0)
                };
                z.count = zero;
                z.zero_count = zero;
                z.reset_hint = ResetHint::Yes;
                app.append_histogram(series, ct, z)
            }
            None => app.append(series, ct, 0.0),
        };
        match result {
            Ok(()) | Err(AppendError::OutOfOrder) | Err(AppendError::UnknownSeries(_)) => {}
            Err(e) => {
                tracing::debug!(target = %self.target.url, ct, err = %e, "Error when appending created timestamp zero sample");
            }
        }
    }

    /// Appends the exemplars of the parser's current sample. Exemplars
    /// without a timestamp take the sample's (native histograms only keep
    /// timestamped ones, which the parser already enforces). Rejected
    /// exemplars are dropped without failing the scrape.
    fn append_exemplars(
        &mut self,
        app: &mut dyn Appender,
        parser: &Parser<'_>,
        series: SeriesRef,
        t: i64,
        histogram: bool,
    ) {
        self.exemplars.clear();
        parser.exemplars(&mut self.exemplars);
        for e in self.exemplars.drain(..) {
            let Some(et) = e.timestamp.or((!histogram).then_some(t)) else {
                continue;
            };
            let ex = Exemplar {
                labels: e.labels,
                value: e.value,
                t: et,
            };
            if let Err(err) = app.append_exemplar(series, &ex) {
                tracing::debug!(target = %self.target.url, err = %err, "exemplar dropped");
            }
        }
    }

    /// Labels of the parser's current series after merging the target's
    /// labels and metric relabeling; `None` when relabeling drops it.
    fn build_labels(&mut self, parser: &Parser<'_>) -> Result<Option<Labels>, ScrapeError> {
        let b = &mut self.builder;
        b.clear();
        let honor_labels = self.cfg.honor_labels;
        let parsed = if honor_labels {
            parser.labels_noting_empty(b, &mut self.exposed_empty)
        } else {
            parser.labels(b)
        };
        parsed.map_err(|e| ScrapeError::Parse(e.to_string()))?;
        merge_target_labels(b, &self.target.labels, honor_labels, &self.exposed_empty);
        if !tributary_relabel::relabel(&self.cfg.metric_relabel_configs, b) || b.is_empty() {
            return Ok(None);
        }
        if b.get("__name__").is_none() {
            return Err(ScrapeError::MissingName);
        }
        if let Err(e) = check_label_limits(b, &self.cfg) {
            self.metrics.exceeded_label_limits.inc();
            return Err(e);
        }
        Ok(Some(b.labels()))
    }
}

/// Attaches the target's labels to a scraped series. With `honor_labels`
/// the exposed label wins, also when exposed empty (`exposed_empty`, which
/// `b` does not hold: an empty value means no label); otherwise the
/// target's value wins and a conflicting exposed value moves to
/// `exported_<name>` (prefixed again until free).
pub(crate) fn merge_target_labels(
    b: &mut LabelsBuilder,
    target: &Labels,
    honor_labels: bool,
    exposed_empty: &[String],
) {
    if honor_labels {
        for l in target {
            if b.get(l.name).is_none() && !exposed_empty.iter().any(|n| n == l.name) {
                b.set(l.name, l.value);
            }
        }
        return;
    }
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for l in target {
        if let Some(exposed) = b.get(l.name) {
            if !exposed.is_empty() {
                conflicts.push((l.name.to_string(), exposed.to_string()));
            }
        }
        b.set(l.name, l.value);
    }
    conflicts.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then(a.0.cmp(&b.0)));
    for (name, value) in conflicts {
        let mut new_name = format!("exported_{name}");
        while b.get(&new_name).is_some() {
            new_name.insert_str(0, "exported_");
        }
        b.set(&new_name, &value);
    }
}

fn check_label_limits(b: &LabelsBuilder, cfg: &ScrapeConfig) -> Result<(), ScrapeError> {
    let name = || {
        b.get("__name__")
            .unwrap_or("")
            .chars()
            .take(50)
            .collect::<String>()
    };
    if cfg.label_limit > 0 && b.len() as u64 > cfg.label_limit {
        return Err(ScrapeError::LabelLimit(format!(
            "label_limit exceeded (metric: {}, number of labels: {}, limit: {})",
            name(),
            b.len(),
            cfg.label_limit
        )));
    }
    for l in b.iter() {
        if cfg.label_name_length_limit > 0 && l.name.len() as u64 > cfg.label_name_length_limit {
            return Err(ScrapeError::LabelLimit(format!(
                "label_name_length_limit exceeded (metric: {}, label name: {}, length: {}, limit: {})",
                name(), l.name, l.name.len(), cfg.label_name_length_limit
            )));
        }
        if cfg.label_value_length_limit > 0 && l.value.len() as u64 > cfg.label_value_length_limit {
            return Err(ScrapeError::LabelLimit(format!(
                "label_value_length_limit exceeded (metric: {}, label name: {}, value: {:?}, length: {}, limit: {})",
                name(), l.name, l.value, l.value.len(), cfg.label_value_length_limit
            )));
        }
    }
    Ok(())
}

/// Appends a float sample, or the native histogram when there is one.
fn append_value(
    app: &mut dyn Appender,
    series: SeriesRef,
    t: i64,
    v: f64,
    histogram: Option<&NativeHistogram>,
) -> Result<(), AppendError> {
    match histogram {
        Some(h) => app.append_histogram(series, t, h),
        None => app.append(series, t, v),
    }
}

fn protocol_format(p: ScrapeProtocol) -> Option<Format> {
    match p {
        ScrapeProtocol::PrometheusText0_0_4 | ScrapeProtocol::PrometheusText1_0_0 => {
            Some(Format::PrometheusText)
        }
        ScrapeProtocol::OpenMetricsText0_0_1 | ScrapeProtocol::OpenMetricsText1_0_0 => {
            Some(Format::OpenMetrics)
        }
        ScrapeProtocol::PrometheusProto => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_prefixing_matches_prometheus() {
        let mut b =
            Labels::from_pairs([("__name__", "m"), ("job", "exposed"), ("exported_job", "x")])
                .to_builder();
        merge_target_labels(
            &mut b,
            &Labels::from_pairs([("job", "j"), ("instance", "i")]),
            false,
            &[],
        );
        let l = b.labels();
        assert_eq!(l.get("job"), Some("j"));
        assert_eq!(l.get("instance"), Some("i"));
        assert_eq!(l.get("exported_job"), Some("x"));
        assert_eq!(l.get("exported_exported_job"), Some("exposed"));
    }

    #[test]
    fn honor_labels_keeps_exposed_values() {
        let mut b = Labels::from_pairs([("__name__", "m"), ("job", "exposed")]).to_builder();
        merge_target_labels(
            &mut b,
            &Labels::from_pairs([("job", "j"), ("instance", "i")]),
            true,
            &[],
        );
        let l = b.labels();
        assert_eq!(l.get("job"), Some("exposed"));
        assert_eq!(l.get("instance"), Some("i"));
    }

    /// The Pushgateway's way of keeping a pushed series free of an
    /// `instance` label: it exposes `instance=""`.
    #[test]
    fn honor_labels_keeps_a_label_exposed_empty_out() {
        let mut b = Labels::from_pairs([("__name__", "m")]).to_builder();
        merge_target_labels(
            &mut b,
            &Labels::from_pairs([("job", "j"), ("instance", "pgw:9091")]),
            true,
            &["instance".to_string()],
        );
        let l = b.labels();
        assert_eq!(l.get("job"), Some("j"));
        assert_eq!(l.get("instance"), None);
    }
}
