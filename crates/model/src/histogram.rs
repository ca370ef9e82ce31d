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

/// The coarsest exponential schema (each bucket spans a factor of 2^16).
pub const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
/// The finest exponential schema (each power of two split into 256).
pub const EXPONENTIAL_SCHEMA_MAX: i32 = 8;

/// The finest schema whose bucket growth factor is at least `factor`, as
/// Prometheus derives it from `native_histogram_min_bucket_factor` (a
/// factor ≤ 1 means no limit: the finest schema).
pub fn schema_for_min_bucket_factor(factor: f64) -> i32 {
    let factor = if factor <= 1.0 { 1.00271 } else { factor };
    let floor = (-factor.log2().log2()).floor();
    if floor >= f64::from(EXPONENTIAL_SCHEMA_MAX) {
        EXPONENTIAL_SCHEMA_MAX
    } else if floor <= f64::from(EXPONENTIAL_SCHEMA_MIN) {
        EXPONENTIAL_SCHEMA_MIN
    } else {
        floor as i32
    }
}

/// Absolute counts of delta-encoded integer buckets.
fn absolute_counts(deltas: &[i64]) -> Vec<i64> {
    let mut current = 0i64;
    deltas
        .iter()
        .map(|d| {
            current = current.wrapping_add(*d);
            current
        })
        .collect()
}

fn delta_encode(counts: &[i64]) -> Vec<i64> {
    let mut prev = 0i64;
    counts
        .iter()
        .map(|c| {
            let d = c.wrapping_sub(prev);
            prev = *c;
            d
        })
        .collect()
}

/// Merges the buckets of one side (spans + absolute counts) into the
/// buckets `shift` schemas coarser, rebuilding the spans.
fn merge_buckets<T: Copy + std::ops::Add<Output = T>>(
    spans: &mut Vec<BucketSpan>,
    counts: &mut Vec<T>,
    shift: u32,
) {
    let mut out_spans: Vec<BucketSpan> = Vec::with_capacity(spans.len());
    let mut out_counts: Vec<T> = Vec::with_capacity(counts.len());
    let mut values = counts.iter().copied();
    let mut index: i32 = 0;
    let mut last: Option<i32> = None;
    for (n, span) in spans.iter().enumerate() {
        index = if n == 0 {
            span.offset
        } else {
            index.saturating_add(span.offset)
        };
        for _ in 0..span.length {
            let Some(count) = values.next() else {
                break;
            };
            let target = (index.saturating_sub(1) >> shift).saturating_add(1);
            match last {
                Some(t) if t == target => {
                    if let Some(c) = out_counts.last_mut() {
                        *c = *c + count;
                    }
                }
                Some(t) => {
                    let gap = target.saturating_sub(t).saturating_sub(1);
                    match out_spans.last_mut() {
                        Some(s) if gap == 0 => s.length += 1,
                        _ => out_spans.push(BucketSpan {
                            offset: gap,
                            length: 1,
                        }),
                    }
                    out_counts.push(count);
                }
                None => {
                    out_spans.push(BucketSpan {
                        offset: target,
                        length: 1,
                    });
                    out_counts.push(count);
                }
            }
            last = Some(target);
            index = index.saturating_add(1);
        }
    }
    *spans = out_spans;
    *counts = out_counts;
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

    /// Buckets it carries (positive plus negative), what
    /// `native_histogram_bucket_limit` counts.
    pub fn bucket_count(&self) -> usize {
        if self.is_float() {
            self.positive_counts.len() + self.negative_counts.len()
        } else {
            self.positive_deltas.len() + self.negative_deltas.len()
        }
    }

    /// Whether the schema is an exponential one (-4 to 8), whose resolution
    /// can be reduced; custom-bucket schemas cannot.
    pub fn is_exponential(&self) -> bool {
        (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&self.schema)
    }

    /// Lowers an exponential histogram's resolution to schema `target`,
    /// merging buckets: bucket `i` of schema `s` lies inside bucket
    /// `((i - 1) >> (s - target)) + 1` of the coarser schema (each bucket
    /// is `(base^(i-1), base^i]`). Counts, sum and the zero bucket are
    /// unchanged. A no-op for a target not below the current schema or a
    /// non-exponential schema.
    pub fn reduce_resolution(&mut self, target: i32) {
        if !self.is_exponential() || target >= self.schema {
            return;
        }
        let shift = (self.schema - target.max(EXPONENTIAL_SCHEMA_MIN)) as u32;
        if self.is_float() {
            merge_buckets(&mut self.positive_spans, &mut self.positive_counts, shift);
            merge_buckets(&mut self.negative_spans, &mut self.negative_counts, shift);
        } else {
            for (spans, deltas) in [
                (&mut self.positive_spans, &mut self.positive_deltas),
                (&mut self.negative_spans, &mut self.negative_deltas),
            ] {
                let mut counts = absolute_counts(deltas);
                merge_buckets(spans, &mut counts, shift);
                *deltas = delta_encode(&counts);
            }
        }
        self.schema = target.max(EXPONENTIAL_SCHEMA_MIN);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn span(offset: i32, length: u32) -> BucketSpan {
        BucketSpan { offset, length }
    }

    /// Buckets 1, 2 (one span) and 5 (after a gap of two) at schema 1
    /// become, one schema coarser, bucket 1 (old 1 + 2) and bucket 3 (old
    /// 5): (i - 1) >> 1 + 1 maps 1→1, 2→1, 5→3.
    #[test]
    fn reducing_by_one_schema_merges_pairs_of_buckets() {
        let mut h = NativeHistogram {
            schema: 1,
            count: HistogramCount::Int(10),
            positive_spans: vec![span(1, 2), span(2, 1)],
            positive_deltas: vec![3, 1, -2], // counts 3, 4, 2
            negative_spans: vec![span(0, 2)],
            negative_deltas: vec![1, 0], // counts 1, 1 at indexes 0, 1
            ..NativeHistogram::default()
        };
        h.reduce_resolution(0);
        assert_eq!(h.schema, 0);
        assert_eq!(h.positive_spans, vec![span(1, 1), span(1, 1)]);
        assert_eq!(h.positive_deltas, vec![7, -5]); // counts 7, 2
                                                    // Indexes 0 and 1 map to 0 and 1: nothing merges.
        assert_eq!(h.negative_spans, vec![span(0, 2)]);
        assert_eq!(h.negative_deltas, vec![1, 0]);
        assert_eq!(h.bucket_count(), 4);
    }

    #[test]
    fn float_histograms_merge_absolute_counts_across_several_schemas() {
        let mut h = NativeHistogram {
            schema: 3,
            count: HistogramCount::Float(10.0),
            positive_spans: vec![span(-3, 8)],
            positive_counts: vec![1.0; 8], // indexes -3..=4
            ..NativeHistogram::default()
        };
        h.reduce_resolution(0);
        // (i - 1) >> 3 + 1: -3..=0 → 0, 1..=4 → 1.
        assert_eq!(h.positive_spans, vec![span(0, 2)]);
        assert_eq!(h.positive_counts, vec![4.0, 4.0]);
        let mut custom = NativeHistogram {
            schema: -53,
            ..h.clone()
        };
        custom.reduce_resolution(-4);
        assert_eq!(custom.schema, -53, "custom buckets cannot be reduced");
    }

    #[test]
    fn min_bucket_factor_picks_prometheus_schemas() {
        assert_eq!(schema_for_min_bucket_factor(0.0), 8);
        assert_eq!(schema_for_min_bucket_factor(1.1), 2);
        assert_eq!(schema_for_min_bucket_factor(2.0), 0);
        assert_eq!(schema_for_min_bucket_factor(4.0), -1);
        assert_eq!(schema_for_min_bucket_factor(1e300), -4);
    }
}
