//! The data model every other Tributary crate speaks: label sets, samples,
//! series references, metric metadata and the [`Appender`] trait through
//! which scraped samples reach storage.
//!
//! Nothing here does I/O. The crate sits at the root of the dependency graph
//! so that parsers, relabeling, scraping, the WAL and remote write agree on
//! one representation without depending on each other.

mod appender;
mod arena;
pub mod histogram;
mod label_store;
mod labels;
mod metadata;
mod packed_text;
mod pairs;
mod protocol;
mod ref_map;
mod sample;
pub mod testing;
mod text_symbols;

pub use appender::{AppendError, Appender, Exemplar, Storage};
pub use arena::resize_gently;
pub use histogram::{BucketSpan, HistogramCount, NativeHistogram, ResetHint};
pub use label_store::{LabelStore, PairIds, SharedLabelStore};
pub use labels::{Label, Labels, LabelsBuilder, LabelsIter, METRIC_NAME};
pub use metadata::MetricType;
pub use pairs::{PairId, PairScratch, PairTable, PairTableFull, StoredLabel};
pub use protocol::ScrapeProtocol;
pub use ref_map::RefMap;
pub use sample::{is_stale_nan, RefSample, SeriesRef, Timestamp, STALE_NAN, STALE_NAN_BITS};
