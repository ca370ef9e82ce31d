//! Native (exponential) histograms as scraped from the protobuf exposition.
//!
//! The shape mirrors remote write 1.0's `Histogram` message so the WAL and
//! remote write can carry it without reinterpretation: integer histograms
//! keep their buckets delta-encoded (`*_deltas`), float histograms keep
//! absolute counts (`*_counts`); which one is meant is told by
//! [`HistogramCount`].

/// A count that is an integer for ordinary histograms and a float for float
/// histograms (e.g. the result of a recording rule or a float-histogram
/// exposing client).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HistogramCount {
    Int(u64),
    Float(f64),
}

impl HistogramCount {
    pub fn as_f64(self) -> f64 {
        match self {
            HistogramCount::Int(v) => v as f64,
            HistogramCount::Float(v) => v,
        }
    }
}

impl Default for HistogramCount {
    fn default() -> Self {
        HistogramCount::Int(0)
    }
}

/// Whether a counter reset happened before this histogram sample; numbered
/// as remote write 1.0's `Histogram.ResetHint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResetHint {
    #[default]
    Unknown = 0,
    Yes = 1,
    No = 2,
    /// A gauge histogram: resets are meaningless.
    Gauge = 3,
}

/// A run of `length` consecutive buckets starting `offset` buckets after the
/// end of the previous span (or at bucket index `offset` for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BucketSpan {
    pub offset: i32,
    pub length: u32,
}

/// One native histogram sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NativeHistogram {
    /// Bucket resolution: each power of two is split into `2^schema` buckets.
    pub schema: i32,
    /// Observations with an absolute value up to this go to the zero bucket.
    pub zero_threshold: f64,
    pub zero_count: HistogramCount,
    pub count: HistogramCount,
    pub sum: f64,
    pub positive_spans: Vec<BucketSpan>,
    /// Integer histograms: each bucket's count minus the previous one's.
    pub positive_deltas: Vec<i64>,
    /// Float histograms: absolute bucket counts.
    pub positive_counts: Vec<f64>,
    pub negative_spans: Vec<BucketSpan>,
    pub negative_deltas: Vec<i64>,
    pub negative_counts: Vec<f64>,
    pub reset_hint: ResetHint,
}

impl NativeHistogram {
    /// True for a float histogram (counts in `*_counts`), false for an
    /// integer one (counts in `*_deltas`).
    pub fn is_float(&self) -> bool {
        matches!(self.count, HistogramCount::Float(_))
    }

    /// The staleness marker for a histogram series: an empty integer
    /// histogram whose sum is the staleness NaN (what Prometheus appends
    /// when a histogram series disappears).
    pub fn stale() -> NativeHistogram {
        NativeHistogram {
            sum: crate::STALE_NAN,
            ..NativeHistogram::default()
        }
    }

    /// True for a staleness marker (sum is the staleness NaN).
    pub fn is_stale(&self) -> bool {
        crate::is_stale_nan(self.sum)
    }

    /// Empties the histogram but keeps its allocations, for reuse.
    pub fn clear(&mut self) {
        self.schema = 0;
        self.zero_threshold = 0.0;
        self.zero_count = HistogramCount::default();
        self.count = HistogramCount::default();
        self.sum = 0.0;
        self.positive_spans.clear();
        self.positive_deltas.clear();
        self.positive_counts.clear();
        self.negative_spans.clear();
        self.negative_deltas.clear();
        self.negative_counts.clear();
        self.reset_hint = ResetHint::Unknown;
    }
}
