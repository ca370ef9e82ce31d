use crate::{Labels, MetricType, NativeHistogram, RefSample, SeriesRef, Timestamp};

/// Why an append was refused. Every variant is a per-sample or per-batch
/// condition the caller counts and reports; none of them is fatal to the
/// process.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The reference is not (or no longer) known to the storage, e.g. after
    /// the series was garbage-collected. The caller resolves the series again
    /// by labels.
    #[error("unknown series reference {0}")]
    UnknownSeries(SeriesRef),
    #[error("out of order sample")]
    OutOfOrder,
    #[error("empty label set")]
    EmptyLabels,
    #[error("label set has duplicate label name {0:?}")]
    DuplicateLabelName(String),
    /// The storage could not persist the batch (I/O error, disk full, closed).
    #[error("storage: {0}")]
    Storage(String),
    /// This storage does not keep this kind of data (e.g. native histograms).
    #[error("{0} not supported by this storage")]
    Unsupported(&'static str),
}

/// An exemplar attached to a sample: a trace-like label set with the value
/// and time of one observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds; the scrape fills in the sample's timestamp when the
    /// exposition gave none.
    pub t: Timestamp,
}

/// A batch of appends that becomes visible (and durable in the WAL) on
/// [`Appender::commit`] and disappears on [`Appender::rollback`].
///
/// Series are resolved once by labels ([`Appender::series`]) and then
/// addressed by reference, so the hot path of a steady-state scrape never
/// touches label sets.
pub trait Appender: Send {
    /// Returns the reference of the series with these labels, creating it if
    /// it does not exist yet. The labels must be sorted and unique (which
    /// [`Labels`] guarantees) and not empty.
    fn series(&mut self, labels: &Labels) -> Result<SeriesRef, AppendError>;

    /// Appends a float sample to a series obtained from [`Appender::series`].
    fn append(&mut self, series: SeriesRef, t: Timestamp, v: f64) -> Result<(), AppendError>;

    /// Appends float samples as [`Appender::append`] would, one after
    /// another, and lists each one it refuses in `refused`: its index in
    /// `samples` and why. A storage that locks per append (the WAL's
    /// out-of-order check) locks once for the batch here: scrapes hand it
    /// their series already known, a page's worth in a few calls.
    fn append_floats(&mut self, samples: &[RefSample], refused: &mut Vec<(usize, AppendError)>) {
        for (i, s) in samples.iter().enumerate() {
            if let Err(e) = self.append(s.series, s.t, s.v) {
                refused.push((i, e));
            }
        }
    }

    /// Appends a native histogram sample. Same ordering rules as
    /// [`Appender::append`]; a histogram whose `sum` is the staleness NaN
    /// (see [`NativeHistogram::stale`]) marks the series stale.
    fn append_histogram(
        &mut self,
        series: SeriesRef,
        t: Timestamp,
        h: &NativeHistogram,
    ) -> Result<(), AppendError> {
        let _ = (series, t, h);
        Err(AppendError::Unsupported("native histograms"))
    }

    /// Appends an exemplar for a series. An exemplar identical to the
    /// series' previous one is silently ignored (as Prometheus does).
    fn append_exemplar(&mut self, series: SeriesRef, e: &Exemplar) -> Result<(), AppendError> {
        let _ = (series, e);
        Err(AppendError::Unsupported("exemplars"))
    }

    /// Records the metric metadata of a series. Storages keep only the
    /// latest per series and persist it only when it changed; callers should
    /// still call it only for new series or when the family's metadata
    /// changed. The default discards it.
    fn update_metadata(
        &mut self,
        series: SeriesRef,
        kind: MetricType,
        help: &str,
        unit: &str,
    ) -> Result<(), AppendError> {
        let _ = (series, kind, help, unit);
        Ok(())
    }

    /// Makes every append since the last commit/rollback durable and visible
    /// to readers (remote write).
    fn commit(&mut self) -> Result<(), AppendError>;

    /// Discards every sample appended since the last commit/rollback.
    /// Series created meanwhile stay known.
    fn rollback(&mut self);
}

/// Something that hands out appenders: the WAL in production, an in-memory
/// recorder in tests.
pub trait Storage: Send + Sync + 'static {
    fn appender(&self) -> Box<dyn Appender>;
}
