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
//!
//! Cargo features `sd-consul`, `sd-docker`, `sd-ec2` and `sd-kubernetes`
//! (all default; `sd-all` = every one) compile those providers in. Each is
//! forwarded to `tributary-config`, which refuses a configuration using a
//! mechanism this build leaves out, naming the field and the feature.

#[cfg(any(
    feature = "sd-consul",
    feature = "sd-docker",
    feature = "sd-ec2",
    feature = "sd-kubernetes"
))]
mod api;
#[cfg(feature = "sd-consul")]
mod consul;
mod dns;
#[cfg(feature = "sd-docker")]
mod docker;
#[cfg(feature = "sd-ec2")]
mod ec2;
mod file;
mod group;
mod http;
#[cfg(feature = "sd-kubernetes")]
mod kubernetes;
mod manager;
mod metrics;
mod refresh;
#[cfg(feature = "testing")]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod testing;

pub use dns::NAMESERVERS_ENV as DNS_SD_NAMESERVERS_ENV;
pub use group::{TargetGroup, TargetGroupError};
pub use manager::{DiscoveredTargets, DiscoveryManager, ProviderStatus};
pub use metrics::DiscoveryMetrics;
