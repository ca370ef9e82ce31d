//! Parsers for the Prometheus text (0.0.4 / 1.0.0), OpenMetrics 1.0 and
//! protobuf (`io.prometheus.client.MetricFamily`, delimited) exposition
//! formats, built for the scrape loop's hot path.
//!
//! Design:
//! - [`Parser`] is a pull parser over a borrowed body. [`Parser::next`]
//!   yields an [`Entry`] per meaningful line. For a sample it validates the
//!   whole line but keeps only offsets: [`Parser::series`] returns the raw
//!   `name{labels}` bytes (the scrape cache key), the timestamp and value.
//!   Labels are unescaped and copied into a `LabelsBuilder` only when asked
//!   ([`Parser::labels`]), i.e. on a cache miss, so steady-state scrapes do
//!   no per-sample allocation.
//! - The Prometheus text format follows Prometheus's *scrape-side* parser
//!   (lenient whitespace, optional commas, no duplicate-metadata checks,
//!   optional final newline); OpenMetrics follows Prometheus's strict
//!   OpenMetrics parser (single spaces, `# EOF`, float-second timestamps,
//!   exemplars, `_created`).
//! - Semantic OpenMetrics rules that Prometheus does not enforce while
//!   scraping (family grouping, histogram bucket consistency, counter
//!   values, ...) and `promtool check metrics`-style lints live in
//!   [`check_metrics`], which drives the same parser.
//! - Protobuf bodies are decoded by a hand-written zero-copy wire reader
//!   (`protobuf`, `wire`) behind the same [`Parser`] API: classic types
//!   become float series exactly as Prometheus names them, native
//!   histograms become [`Entry::Histogram`] with a
//!   [`tributary_model::NativeHistogram`] ([`Parser::histogram`]); the
//!   cache key is a canonical encoding of name and labels.
//! - Numbers use Go's `ParseFloat` spellings minus hex floats and digit
//!   separators, as Prometheus does.

mod check;
mod error;
mod format;
mod number;
mod parser;
mod protobuf;
mod scan;
mod wire;

pub mod testing;

pub use check::{check_metrics, sniff_format, CheckReport, Problem, Severity};
pub use error::{ParseError, UnsupportedContentType};
pub use format::Format;
pub use number::NORMAL_NAN_BITS;
pub use parser::{
    Entry, Exemplar, GuessedSeries, Parser, ParserOptions, DEFAULT_MAX_LABELS_PER_SERIES,
};
