//! Scraping: per-job [`ScrapePool`]s of per-target scrape loops that fetch
//! an exposition, parse it, attach target labels, apply
//! `metric_relabel_configs`, and append samples (plus `up`, `scrape_*` and
//! staleness markers) to a [`tributary_model::Storage`].
//!
//! Data flow for one scrape: [`fetch`] (HTTP, gzip, size cap) → parser
//! (`tributary-exposition`) → [`cache`] hit: append by reference; miss:
//! labels → merge → relabel → limits → `Appender::series` → append.
//!
//! With `scrape_native_histograms`, protobuf native histograms are appended
//! as histograms (plus their classic series with
//! `always_scrape_classic_histograms`); without it, histograms are parsed
//! into classic series. Exemplars are appended after their sample, and each
//! target's metric metadata is kept per family
//! ([`ScrapePool::target_metadata`]) and handed to the storage for new
//! series and when it changes.

mod buffers;
mod cache;
pub mod fetch;
mod float_batch;
mod manager;
mod metadata;
mod metrics;
mod pool;
mod response_headers;
mod scrape_loop;
mod status;
pub mod target;

pub use buffers::{idle_buffer_bytes, BodyBuf};
pub use cache::ScrapeCache;
pub use manager::{PoolSnapshot, ScrapeManager};
pub use metadata::{FamilyMetadata, TargetMetadata, MAX_FAMILIES_PER_TARGET};
pub use metrics::ScrapeMetrics;
pub use pool::{ActiveTarget, PoolError, ScrapePool};
pub use response_headers::ResponseHeaders;
pub use scrape_loop::{LoopOptions, ScrapeError};
pub use status::{Health, LastScrape, TargetHealth};
pub use target::{DropReason, DroppedTarget, Target};
