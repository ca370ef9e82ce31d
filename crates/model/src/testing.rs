//! An in-memory [`Storage`] that records committed samples, for tests of the
//! crates upstream of the WAL (scrape, discovery, the binary's wiring).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{
    AppendError, Appender, Exemplar, Labels, MetricType, NativeHistogram, SeriesRef, Storage,
    Timestamp,
};

/// One committed sample with its full label set.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSample {
    pub labels: Labels,
    pub t: Timestamp,
    pub v: f64,
}

/// One committed native histogram sample with its full label set.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedHistogram {
    pub labels: Labels,
    pub t: Timestamp,
    pub h: NativeHistogram,
}

/// One committed exemplar with the labels of its series.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedExemplar {
    pub labels: Labels,
    pub exemplar: Exemplar,
}

/// The latest metadata recorded for a series.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordedMetadata {
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

enum Pending {
    Float(SeriesRef, Timestamp, f64),
    Histogram(SeriesRef, Timestamp, NativeHistogram),
    Exemplar(SeriesRef, Exemplar),
    Metadata(SeriesRef, RecordedMetadata),
}

#[derive(Default)]
struct Inner {
    by_labels: HashMap<Labels, SeriesRef>,
    by_ref: Vec<Labels>,
    last_ts: Vec<Timestamp>,
    committed: Vec<RecordedSample>,
    histograms: Vec<RecordedHistogram>,
    exemplars: Vec<RecordedExemplar>,
    metadata: HashMap<Labels, RecordedMetadata>,
    commits: usize,
    /// Refs up to this one are forgotten (see [`MemStorage::forget_series`]).
    forgotten: usize,
}

/// Records what a real storage would persist, with the agent WAL's
/// out-of-order rule (a timestamp at or before the series' last one is refused).
#[derive(Clone, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<Inner>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every committed sample so far, in commit order.
    pub fn samples(&self) -> Vec<RecordedSample> {
        self.lock().committed.clone()
    }

    /// Every committed native histogram sample, in commit order.
    pub fn histograms(&self) -> Vec<RecordedHistogram> {
        self.lock().histograms.clone()
    }

    /// Every committed exemplar, in commit order.
    pub fn exemplars(&self) -> Vec<RecordedExemplar> {
        self.lock().exemplars.clone()
    }

    /// The latest committed metadata of the series with these labels.
    pub fn metadata(&self, labels: &Labels) -> Option<RecordedMetadata> {
        self.lock().metadata.get(labels).cloned()
    }

    /// Forgets every series, as the WAL's garbage collection does with
    /// series not written for a while: appends by their references are
    /// refused as unknown from now on, and resolving their labels again
    /// creates new ones.
    pub fn forget_series(&self) {
        let mut inner = self.lock();
        inner.by_labels.clear();
        inner.forgotten = inner.by_ref.len();
    }

    /// Number of series created so far, forgotten ones included.
    pub fn series_created(&self) -> usize {
        self.lock().by_ref.len()
    }

    /// Number of successful commits.
    pub fn commits(&self) -> usize {
        self.lock().commits
    }

    /// Committed samples of the series whose metric name is `name`.
    pub fn samples_named(&self, name: &str) -> Vec<RecordedSample> {
        self.lock()
            .committed
            .iter()
            .filter(|s| s.labels.metric_name() == Some(name))
            .cloned()
            .collect()
    }
}

impl Storage for MemStorage {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(MemAppender {
            storage: self.clone(),
            pending: Vec::new(),
        })
    }
}

struct MemAppender {
    storage: MemStorage,
    pending: Vec<Pending>,
}

impl Inner {
    /// The index of a series not forgotten.
    fn live(&self, series: SeriesRef) -> Result<usize, AppendError> {
        let idx = (series.0 as usize).wrapping_sub(1);
        if (self.forgotten..self.by_ref.len()).contains(&idx) {
            Ok(idx)
        } else {
            Err(AppendError::UnknownSeries(series))
        }
    }
}

impl MemAppender {
    /// Applies the out-of-order rule and advances the series' watermark.
    fn check_order(&self, series: SeriesRef, t: Timestamp) -> Result<(), AppendError> {
        let mut inner = self.storage.lock();
        let idx = inner.live(series)?;
        let last = inner
            .last_ts
            .get_mut(idx)
            .ok_or(AppendError::UnknownSeries(series))?;
        if t <= *last {
            return Err(AppendError::OutOfOrder);
        }
        *last = t;
        Ok(())
    }

    fn known(&self, series: SeriesRef) -> Result<(), AppendError> {
        self.storage.lock().live(series).map(|_| ())
    }
}

impl Appender for MemAppender {
    fn series(&mut self, labels: &Labels) -> Result<SeriesRef, AppendError> {
        if labels.is_empty() {
            return Err(AppendError::EmptyLabels);
        }
        let mut inner = self.storage.lock();
        if let Some(r) = inner.by_labels.get(labels) {
            return Ok(*r);
        }
        inner.by_ref.push(labels.clone());
        inner.last_ts.push(i64::MIN);
        let r = SeriesRef(inner.by_ref.len() as u64);
        inner.by_labels.insert(labels.clone(), r);
        Ok(r)
    }

    fn append(&mut self, series: SeriesRef, t: Timestamp, v: f64) -> Result<(), AppendError> {
        self.check_order(series, t)?;
        self.pending.push(Pending::Float(series, t, v));
        Ok(())
    }

    fn append_histogram(
        &mut self,
        series: SeriesRef,
        t: Timestamp,
        h: &NativeHistogram,
    ) -> Result<(), AppendError> {
        self.check_order(series, t)?;
        self.pending.push(Pending::Histogram(series, t, h.clone()));
        Ok(())
    }

    fn append_exemplar(&mut self, series: SeriesRef, e: &Exemplar) -> Result<(), AppendError> {
        self.known(series)?;
        self.pending.push(Pending::Exemplar(series, e.clone()));
        Ok(())
    }

    fn update_metadata(
        &mut self,
        series: SeriesRef,
        kind: MetricType,
        help: &str,
        unit: &str,
    ) -> Result<(), AppendError> {
        self.known(series)?;
        let m = RecordedMetadata {
            kind,
            help: help.to_string(),
            unit: unit.to_string(),
        };
        self.pending.push(Pending::Metadata(series, m));
        Ok(())
    }

    fn commit(&mut self) -> Result<(), AppendError> {
        let mut inner = self.storage.lock();
        let labels_of = |inner: &Inner, r: SeriesRef| {
            inner
                .by_ref
                .get((r.0 as usize).wrapping_sub(1))
                .cloned()
                .unwrap_or_default()
        };
        for p in self.pending.drain(..) {
            match p {
                Pending::Float(r, t, v) => {
                    let labels = labels_of(&inner, r);
                    inner.committed.push(RecordedSample { labels, t, v });
                }
                Pending::Histogram(r, t, h) => {
                    let labels = labels_of(&inner, r);
                    inner.histograms.push(RecordedHistogram { labels, t, h });
                }
                Pending::Exemplar(r, exemplar) => {
                    let labels = labels_of(&inner, r);
                    inner.exemplars.push(RecordedExemplar { labels, exemplar });
                }
                Pending::Metadata(r, m) => {
                    let labels = labels_of(&inner, r);
                    inner.metadata.insert(labels, m);
                }
            }
        }
        inner.commits += 1;
        Ok(())
    }

    fn rollback(&mut self) {
        self.pending.clear();
    }
}
