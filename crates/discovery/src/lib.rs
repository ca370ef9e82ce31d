//! Service discovery: every `<x>_sd_configs` block of a scrape job becomes a
//! provider task that produces [`TargetGroup`]s; the [`DiscoveryManager`]
//! merges them per job and hands the scrape manager a throttled snapshot.
//!
//! Providers implemented: `static_configs`, `file_sd_configs` and
//! `http_sd_configs`. The config crate rejects the others with "not supported
//! yet", so nothing is silently ignored.

mod file;
mod group;
mod http;
mod manager;
mod metrics;

pub use group::{TargetGroup, TargetGroupError};
pub use manager::{DiscoveredTargets, DiscoveryManager, ProviderStatus};
pub use metrics::DiscoveryMetrics;
