//! A scrape pool: the loops of one job. It turns discovered target groups
//! into targets, deduplicates them by identity, starts loops for new
//! targets, stops (with end-of-run staleness) those that disappeared, and
//! keeps the dropped ones for the service-discovery page.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tributary_config::ScrapeConfig;
use tributary_discovery::TargetGroup;
use tributary_model::Storage;

use crate::cache::ScrapeCache;
use crate::fetch::{accept_header, ScrapeRequest, DEFAULT_BODY_CAP};
use crate::metadata::{SharedMetadata, TargetMetadata};
use crate::metrics::ScrapeMetrics;
use crate::scrape_loop::{LoopOptions, Predecessor, ScrapeLoop};
use crate::status::TargetHealth;
use crate::target::{build_target, discovered_labels, DroppedTarget, Target};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("error creating HTTP client for job {job:?}: {reason}")]
    Client { job: String, reason: String },
}

struct LoopHandle {
    target: Target,
    status: Arc<Mutex<TargetHealth>>,
    metadata: SharedMetadata,
    stop: CancellationToken,
    removed: CancellationToken,
    join: JoinHandle<ScrapeCache>,
}

/// One active target as the API shows it.
#[derive(Debug, Clone)]
pub struct ActiveTarget {
    pub target: Target,
    pub health: TargetHealth,
}

pub struct ScrapePool {
    cfg: Arc<ScrapeConfig>,
    client: tributary_http::HttpClient,
    storage: Arc<dyn Storage>,
    options: LoopOptions,
    user_agent: String,
    metrics: ScrapeMetrics,
    shutdown: CancellationToken,
    forced_error: Arc<Mutex<Option<String>>>,
    loops: HashMap<u64, LoopHandle>,
    dropped: Vec<DroppedTarget>,
    groups: Vec<TargetGroup>,
}

fn build_client(
    cfg: &ScrapeConfig,
    user_agent: &str,
) -> Result<tributary_http::HttpClient, PoolError> {
    let opts = tributary_http::ClientOptions {
        user_agent: user_agent.to_string(),
        ..tributary_http::ClientOptions::default()
    };
    tributary_http::build_client(&cfg.http_client, opts).map_err(|e| PoolError::Client {
        job: cfg.job_name.clone(),
        reason: e.to_string(),
    })
}

impl ScrapePool {
    pub(crate) fn new(
        cfg: Arc<ScrapeConfig>,
        storage: Arc<dyn Storage>,
        options: LoopOptions,
        user_agent: String,
        metrics: ScrapeMetrics,
        shutdown: CancellationToken,
    ) -> Result<Self, PoolError> {
        let client = build_client(&cfg, &user_agent)?;
        metrics.pools_total.inc();
        Ok(ScrapePool {
            cfg,
            client,
            storage,
            options,
            user_agent,
            metrics,
            shutdown,
            forced_error: Arc::new(Mutex::new(None)),
            loops: HashMap::new(),
            dropped: Vec::new(),
            groups: Vec::new(),
        })
    }

    pub fn config(&self) -> &ScrapeConfig {
        &self.cfg
    }

    /// Replaces the job's target groups.
    pub(crate) fn sync(&mut self, groups: &[TargetGroup]) {
        self.groups = groups.to_vec();
        self.metrics
            .pool_sync
            .get_or_create(&self.job_label())
            .inc();
        let (targets, dropped) = self.build_targets();
        self.dropped = dropped;
        let mut wanted: HashMap<u64, Target> = HashMap::with_capacity(targets.len());
        for t in targets {
            wanted.entry(t.hash).or_insert(t);
        }
        self.loops.retain(|hash, h| {
            if wanted.contains_key(hash) {
                return true;
            }
            h.removed.cancel();
            false
        });
        for (hash, target) in wanted {
            if !self.loops.contains_key(&hash) {
                let h = self.spawn(target, None);
                self.loops.insert(hash, h);
            }
        }
        self.enforce_target_limit();
    }

    /// Applies a changed job configuration: every loop restarts with the new
    /// settings, taking over from the loop of the same target (the same
    /// hash, or else the same URL and labels: an interval or timeout of
    /// its own changes the hash, not the series). Where only settings that
    /// do not change what a page's lines become were changed (see
    /// [`cache_reusable`]), it inherits the predecessor's cache; otherwise
    /// every series goes through the new labels and relabeling again, and
    /// those the first scrape no longer yields go stale. A target the new
    /// configuration no longer yields (its labels changed) ends as a
    /// removed one does, with end-of-run staleness markers.
    pub(crate) fn reload(&mut self, cfg: Arc<ScrapeConfig>) -> Result<(), PoolError> {
        self.client = build_client(&cfg, &self.user_agent)?;
        let reuse = cache_reusable(&self.cfg, &cfg);
        self.cfg = cfg;
        self.metrics.pool_reloads.inc();
        let mut old: HashMap<u64, LoopHandle> = std::mem::take(&mut self.loops);
        let by_series: HashMap<(String, u64), u64> = old
            .iter()
            .map(|(&hash, h)| ((h.target.url.clone(), h.target.labels.stable_hash()), hash))
            .collect();
        let (targets, dropped) = self.build_targets();
        self.dropped = dropped;
        for t in targets {
            if self.loops.contains_key(&t.hash) {
                continue;
            }
            let found = old.remove(&t.hash).or_else(|| {
                let hash = by_series.get(&(t.url.clone(), t.labels.stable_hash()))?;
                old.remove(hash)
            });
            let predecessor = found.map(|h| {
                h.stop.cancel();
                if reuse {
                    Predecessor::Cache(h.join)
                } else {
                    Predecessor::Series(h.join)
                }
            });
            let h = self.spawn(t, predecessor);
            self.loops.insert(h.target.hash, h);
        }
        for h in old.into_values() {
            h.removed.cancel();
        }
        self.enforce_target_limit();
        Ok(())
    }

    /// Stops every loop without staleness markers (shutdown, job removed).
    /// A scrape in flight still completes and commits (within its
    /// timeout); the returned handles finish when it has.
    pub(crate) fn stop(&mut self) -> Vec<JoinHandle<ScrapeCache>> {
        let mut joins = Vec::with_capacity(self.loops.len());
        for (_, h) in self.loops.drain() {
            h.stop.cancel();
            joins.push(h.join);
        }
        self.metrics
            .pool_targets
            .get_or_create(&self.job_label())
            .set(0);
        joins
    }

    fn job_label(&self) -> Vec<(&'static str, String)> {
        vec![("scrape_job", self.cfg.job_name.clone())]
    }

    fn build_targets(&self) -> (Vec<Target>, Vec<DroppedTarget>) {
        let mut targets = Vec::new();
        let mut dropped = Vec::new();
        let keep = self.cfg.keep_dropped_targets as usize;
        for g in &self.groups {
            for t in &g.targets {
                let discovered = discovered_labels(t, &g.labels, &self.cfg);
                match build_target(discovered, &self.cfg) {
                    Ok(t) => targets.push(t),
                    Err(d) => {
                        if d.reason != crate::target::DropReason::Relabeled {
                            tracing::warn!(scrape_pool = %self.cfg.job_name, labels = %d.discovered, err = %d.reason, "Target dropped");
                        }
                        if keep == 0 || dropped.len() < keep {
                            dropped.push(d);
                        }
                    }
                }
            }
        }
        (targets, dropped)
    }

    fn enforce_target_limit(&mut self) {
        let limit = self.cfg.target_limit as usize;
        let n = self.loops.len();
        self.metrics
            .pool_targets
            .get_or_create(&self.job_label())
            .set(n as i64);
        self.metrics
            .pool_target_limit
            .get_or_create(&self.job_label())
            .set(limit as i64);
        let forced = if limit > 0 && n > limit {
            self.metrics.exceeded_target_limit.inc();
            Some(format!(
                "target_limit exceeded (number of targets: {n}, limit: {limit})"
            ))
        } else {
            None
        };
        *self.forced_error.lock() = forced;
    }

    fn spawn(&self, target: Target, predecessor: Option<Predecessor>) -> LoopHandle {
        let cfg = &self.cfg;
        let body_limit = if cfg.body_size_limit > 0 {
            cfg.body_size_limit
        } else {
            DEFAULT_BODY_CAP
        };
        let request = ScrapeRequest {
            url: target.url.clone(),
            accept: accept_header(&cfg.scrape_protocols, "allow-utf-8"),
            accept_encoding: if cfg.enable_compression {
                "gzip"
            } else {
                "identity"
            },
            user_agent: self.user_agent.clone(),
            timeout: target.timeout,
            body_limit,
        };
        let status = Arc::new(Mutex::new(TargetHealth::default()));
        let metadata = SharedMetadata::default();
        let stop = self.shutdown.child_token();
        let removed = CancellationToken::new();
        let sl = ScrapeLoop::new(
            metadata.clone(),
            target.clone(),
            cfg.clone(),
            self.client.clone(),
            self.storage.clone(),
            request,
            self.options.clone(),
            status.clone(),
            self.metrics.clone(),
            self.forced_error.clone(),
        );
        let join = tokio::spawn(sl.run(stop.clone(), removed.clone(), predecessor));
        LoopHandle {
            target,
            status,
            metadata,
            stop,
            removed,
            join,
        }
    }

    pub fn active_targets(&self) -> Vec<ActiveTarget> {
        let mut v: Vec<ActiveTarget> = self
            .loops
            .values()
            .map(|h| ActiveTarget {
                target: h.target.clone(),
                health: h.status.lock().clone(),
            })
            .collect();
        v.sort_by(|a, b| a.target.url.cmp(&b.target.url));
        v
    }

    /// The metric metadata each active target exposed (type, help, unit
    /// per family), for `/api/v1/targets/metadata`; sorted by target URL.
    pub fn target_metadata(&self) -> Vec<TargetMetadata> {
        let mut handles: Vec<&LoopHandle> = self.loops.values().collect();
        handles.sort_by(|a, b| a.target.url.cmp(&b.target.url));
        handles
            .into_iter()
            .map(|h| TargetMetadata {
                target: h.target.labels.clone(),
                metrics: h.metadata.lock().snapshot(),
            })
            .collect()
    }

    pub fn dropped_targets(&self) -> &[DroppedTarget] {
        &self.dropped
    }
}

/// Prometheus's `reusableCache`: a loop's cache maps a page's lines to the
/// series they became, which only the interval, the timeout, the sample
/// limit and the HTTP client settings leave unchanged.
fn cache_reusable(old: &ScrapeConfig, new: &ScrapeConfig) -> bool {
    let old_with_new_unrelated = ScrapeConfig {
        scrape_interval: new.scrape_interval,
        scrape_timeout: new.scrape_timeout,
        sample_limit: new.sample_limit,
        http_client: new.http_client.clone(),
        ..old.clone()
    };
    old_with_new_unrelated == *new
}

impl Drop for ScrapePool {
    fn drop(&mut self) {
        self.stop();
    }
}
