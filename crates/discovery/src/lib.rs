//! Service discovery: every `<x>_sd_configs` block of a scrape job becomes a
//! provider task that produces [`TargetGroup`]s; the [`DiscoveryManager`]
//! merges them per job and hands the scrape manager a throttled snapshot.
//!
//! Providers implemented: `static_configs`, `file_sd_configs`,
//! `http_sd_configs`, `dns_sd_configs` (`dns`), `consul_sd_configs`
//! (`consul`), `docker_sd_configs` (`docker`) and `ec2_sd_configs` (`ec2`,
//! signed by `tributary_http::sigv4`) and `kubernetes_sd_configs` (`kubernetes`, watch-based); `refresh` and `api` hold what the API-polling
//! providers share. The config crate rejects the other
//! mechanisms with "not supported yet", so nothing is silently ignored.

mod api;
mod consul;
mod dns;
mod docker;
mod ec2;
mod file;
mod group;
mod http;
mod kubernetes;
mod manager;
mod metrics;
mod refresh;

pub use group::{TargetGroup, TargetGroupError};
pub use manager::{DiscoveredTargets, DiscoveryManager, ProviderStatus};
pub use metrics::DiscoveryMetrics;
