//! An in-memory [`Storage`] that records committed samples, for tests of the
//! crates upstream of the WAL (scrape, discovery, the binary's wiring).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{AppendError, Appender, Labels, SeriesRef, Storage, Timestamp};

/// One committed sample with its full label set.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSample {
    pub labels: Labels,
    pub t: Timestamp,
    pub v: f64,
}

#[derive(Default)]
struct Inner {
    by_labels: HashMap<Labels, SeriesRef>,
    by_ref: Vec<Labels>,
    last_ts: Vec<Timestamp>,
    committed: Vec<RecordedSample>,
    commits: usize,
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
    pending: Vec<(SeriesRef, Timestamp, f64)>,
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
        let mut inner = self.storage.lock();
        let idx = (series.0 as usize).wrapping_sub(1);
        let last = inner
            .last_ts
            .get_mut(idx)
            .ok_or(AppendError::UnknownSeries(series))?;
        if t <= *last {
            return Err(AppendError::OutOfOrder);
        }
        *last = t;
        self.pending.push((series, t, v));
        Ok(())
    }

    fn commit(&mut self) -> Result<(), AppendError> {
        let mut inner = self.storage.lock();
        for (r, t, v) in self.pending.drain(..) {
            let labels = inner.by_ref[(r.0 - 1) as usize].clone();
            inner.committed.push(RecordedSample { labels, t, v });
        }
        inner.commits += 1;
        Ok(())
    }

    fn rollback(&mut self) {
        self.pending.clear();
    }
}
