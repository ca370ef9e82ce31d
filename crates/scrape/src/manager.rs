//! The scrape manager: one [`ScrapePool`] per job, created, reloaded and
//! removed as the configuration changes, fed with discovery snapshots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_config::Config;
use tributary_discovery::DiscoveredTargets;
use tributary_model::Storage;

use crate::metrics::ScrapeMetrics;
use crate::pool::{ActiveTarget, PoolError, ScrapePool};
use crate::scrape_loop::LoopOptions;
use crate::target::DroppedTarget;

pub struct ScrapeManager {
    pools: BTreeMap<String, ScrapePool>,
    storage: Arc<dyn Storage>,
    user_agent: String,
    adjust_timestamps: bool,
    timestamp_tolerance: Duration,
    created_timestamp_zero_ingestion: bool,
    options: Option<LoopOptions>,
    metrics: ScrapeMetrics,
    shutdown: CancellationToken,
    targets: DiscoveredTargets,
}

/// A job's targets for the API and UI.
#[derive(Debug, Clone)]
pub struct PoolSnapshot {
    pub job: String,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub active: Vec<ActiveTarget>,
    pub dropped: Vec<DroppedTarget>,
}

/// Spreads this host's scrapes differently from another host's with the
/// same targets (as Prometheus seeds offsets with hostname and external labels).
fn offset_seed(cfg: &Config) -> u64 {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(host.as_bytes());
    h.update(cfg.global.external_labels.to_string().as_bytes());
    h.digest()
}

impl ScrapeManager {
    pub fn new(
        storage: Arc<dyn Storage>,
        user_agent: String,
        adjust_timestamps: bool,
        timestamp_tolerance: Duration,
        metrics: ScrapeMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        ScrapeManager {
            pools: BTreeMap::new(),
            storage,
            user_agent,
            adjust_timestamps,
            timestamp_tolerance,
            created_timestamp_zero_ingestion: false,
            options: None,
            metrics,
            shutdown,
            targets: DiscoveredTargets::default(),
        }
    }

    /// `--enable-feature=created-timestamp-zero-ingestion` (see
    /// [`LoopOptions::created_timestamp_zero_ingestion`]). A process-wide
    /// flag: set it before the first [`ScrapeManager::apply_config`].
    pub fn set_created_timestamp_zero_ingestion(&mut self, on: bool) {
        self.created_timestamp_zero_ingestion = on;
    }

    /// Creates, reloads and removes pools to match `cfg`. Unchanged jobs
    /// keep their loops running untouched. Returns the jobs that failed.
    pub fn apply_config(&mut self, cfg: &Config) -> Result<(), Vec<PoolError>> {
        let options = LoopOptions {
            offset_seed: offset_seed(cfg),
            adjust_timestamps: self.adjust_timestamps,
            timestamp_tolerance: self.timestamp_tolerance,
            created_timestamp_zero_ingestion: self.created_timestamp_zero_ingestion,
        };
        let options_changed =
            self.options.as_ref().map(|o| o.offset_seed) != Some(options.offset_seed);
        self.options = Some(options.clone());
        let mut errors = Vec::new();
        self.pools
            .retain(|job, _| cfg.scrape_configs.iter().any(|s| &s.job_name == job));
        for sc in &cfg.scrape_configs {
            let sc = Arc::new(sc.clone());
            match self.pools.get_mut(&sc.job_name) {
                Some(pool) if *pool.config() == *sc && !options_changed => {}
                Some(pool) => {
                    if let Err(e) = pool.reload(sc) {
                        errors.push(e);
                    }
                }
                None => match ScrapePool::new(
                    sc.clone(),
                    self.storage.clone(),
                    options.clone(),
                    self.user_agent.clone(),
                    self.metrics.clone(),
                    self.shutdown.child_token(),
                ) {
                    Ok(mut pool) => {
                        if let Some(groups) = self.targets.get(&sc.job_name) {
                            pool.sync(groups);
                        }
                        self.pools.insert(sc.job_name.clone(), pool);
                    }
                    Err(e) => errors.push(e),
                },
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Hands each pool its job's current target groups.
    pub fn sync(&mut self, targets: DiscoveredTargets) {
        for (job, pool) in self.pools.iter_mut() {
            let groups = targets.get(job).map(|g| g.as_slice()).unwrap_or(&[]);
            pool.sync(groups);
        }
        self.targets = targets;
    }

    /// Stops every loop (shutdown: no staleness markers).
    pub fn stop(&mut self) {
        for pool in self.pools.values_mut() {
            pool.stop();
        }
    }

    /// Stops every loop, letting scrapes in flight finish and commit, and
    /// returns a future that resolves when they have (or after `max`):
    /// at shutdown, a scrape whose timestamp is already taken is not lost.
    pub fn stop_and_drain(
        &mut self,
        max: std::time::Duration,
    ) -> impl std::future::Future<Output = ()> + use<> {
        let joins: Vec<_> = self.pools.values_mut().flat_map(|p| p.stop()).collect();
        async move {
            let all = async {
                for j in joins {
                    let _ = j.await;
                }
            };
            if tokio::time::timeout(max, all).await.is_err() {
                tracing::warn!(?max, "scrapes still in flight at shutdown were abandoned");
            }
        }
    }

    /// Every pool's [`ScrapePool::target_metadata`], jobs in name order.
    pub fn target_metadata(&self) -> Vec<crate::TargetMetadata> {
        self.pools
            .values()
            .flat_map(|p| p.target_metadata())
            .collect()
    }

    pub fn snapshot(&self) -> Vec<PoolSnapshot> {
        self.pools
            .iter()
            .map(|(job, p)| PoolSnapshot {
                job: job.clone(),
                scrape_interval: p.config().scrape_interval,
                scrape_timeout: p.config().scrape_timeout,
                active: p.active_targets(),
                dropped: p.dropped_targets().to_vec(),
            })
            .collect()
    }
}
