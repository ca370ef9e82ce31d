//! `RemoteStorage`: the set of queue managers, one per `remote_write`
//! entry, kept in step with the configuration.
//!
//! On reload a queue whose configuration and external labels are unchanged
//! keeps running untouched; a changed one is stopped and restarted — it
//! resumes from its durable WAL cursor (the consumer is named after the
//! entry's `name`), so nothing is resent from "now" as Prometheus does; a
//! removed one is stopped and its cursor forgotten.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tributary_config::RemoteWriteConfig;
use tributary_model::Labels;
use tributary_wal::AgentStorage;

use crate::client::{WriteClient, WriteClientSettings};
use crate::metrics::RemoteMetrics;
use crate::queue::{MetadataSettings, QueueManager, QueueSettings, QueueStatus, SeriesTransform};
use crate::wal_source::WalSource;

/// How long a queue being replaced on reload may flush. Its unsent data
/// stays in the WAL and the replacement resends it, so this can be short.
const RELOAD_FLUSH: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote_write {name:?}: {reason}")]
    Queue { name: String, reason: String },
}

struct RunningQueue {
    cfg: RemoteWriteConfig,
    external_labels: Labels,
    manager: QueueManager,
}

pub struct RemoteStorage {
    wal: Arc<AgentStorage>,
    metrics: RemoteMetrics,
    user_agent: String,
    queues: Vec<RunningQueue>,
}

/// External labels (added when absent) then `write_relabel_configs`.
fn transform(cfg: &RemoteWriteConfig, external: &Labels) -> SeriesTransform {
    let rules = cfg.write_relabel_configs.clone();
    let relabel: Option<crate::queue::RelabelFn> = (!rules.is_empty()).then(|| {
        Arc::new(move |labels: &Labels| {
            let mut b = labels.to_builder();
            if !tributary_relabel::relabel(&rules, &mut b) || b.is_empty() {
                return None;
            }
            Some(b.labels())
        }) as crate::queue::RelabelFn
    });
    SeriesTransform {
        external: external.clone(),
        relabel,
    }
}

impl RemoteStorage {
    pub fn new(wal: Arc<AgentStorage>, registry: &mut Registry, user_agent: String) -> Self {
        RemoteStorage {
            wal,
            metrics: RemoteMetrics::register(registry),
            user_agent,
            queues: Vec::new(),
        }
    }

    fn start_queue(
        &self,
        cfg: &RemoteWriteConfig,
        external: &Labels,
    ) -> Result<QueueManager, RemoteError> {
        let err = |reason: String| RemoteError::Queue {
            name: cfg.name.clone(),
            reason,
        };
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| err(format!("invalid url: {e}")))?;
        let http = tributary_http::build_client(
            &cfg.http_client,
            tributary_http::ClientOptions {
                user_agent: self.user_agent.clone(),
                round_robin_dns: cfg.round_robin_dns,
                ..Default::default()
            },
        )
        .map_err(|e| err(e.to_string()))?;
        let client = WriteClient::new(
            http,
            WriteClientSettings {
                url,
                timeout: cfg.remote_timeout,
                user_agent: self.user_agent.clone(),
                headers: cfg.headers.clone(),
                retry_on_http_429: cfg.queue_config.retry_on_http_429,
            },
        )
        .map_err(|e| err(e.to_string()))?;
        let client = match cfg.protobuf_message {
            tributary_config::RemoteWriteProtoMsg::V2 => client.with_remote_write_v2(),
            tributary_config::RemoteWriteProtoMsg::V1 => client,
        };
        let q = &cfg.queue_config;
        let settings = QueueSettings {
            name: cfg.name.clone(),
            capacity: q.capacity,
            min_shards: q.min_shards,
            max_shards: q.max_shards,
            max_samples_per_send: q.max_samples_per_send,
            batch_send_deadline: q.batch_send_deadline,
            min_backoff: q.min_backoff,
            max_backoff: q.max_backoff,
            sample_age_limit: (!q.sample_age_limit.is_zero()).then_some(q.sample_age_limit),
            shard_update_interval: Duration::from_secs(10),
            send_native_histograms: cfg.send_native_histograms,
            send_exemplars: cfg.send_exemplars,
            metadata: cfg.metadata_config.send.then_some(MetadataSettings {
                send_interval: cfg.metadata_config.send_interval,
                max_per_send: cfg.metadata_config.max_samples_per_send,
            }),
        };
        let source =
            WalSource::open(self.wal.clone(), &cfg.name).map_err(|e| err(e.to_string()))?;
        let metrics = self.metrics.for_queue(&cfg.name, &cfg.url);
        Ok(QueueManager::start(
            settings,
            client,
            source,
            transform(cfg, external),
            metrics,
        ))
    }

    /// Brings the running queues in line with `cfgs`; unchanged queues are
    /// not touched. Every failing entry is reported; the others still apply.
    pub async fn apply_config(
        &mut self,
        cfgs: &[RemoteWriteConfig],
        external: &Labels,
    ) -> Result<(), Vec<RemoteError>> {
        let mut keep = Vec::new();
        for q in std::mem::take(&mut self.queues) {
            let same = cfgs.contains(&q.cfg) && q.external_labels == *external;
            if same {
                keep.push(q);
                continue;
            }
            tracing::info!(remote_name = %q.cfg.name, url = %q.cfg.url, "Stopping remote storage queue");
            q.manager.stop(RELOAD_FLUSH).await;
            self.metrics.remove_queue(&q.cfg.name, &q.cfg.url);
        }
        self.queues = keep;
        // Cursors of endpoints no longer configured, whether their queue
        // ran in this process or only the cursor file names them.
        match self
            .wal
            .retain_consumers(|name| cfgs.iter().any(|c| c.name == name))
        {
            Ok(gone) => {
                for name in gone {
                    tracing::info!(remote_name = %name, "Forgot the WAL cursor of an endpoint no longer configured");
                }
            }
            Err(e) => tracing::warn!(err = %e, "Forgetting WAL cursors failed"),
        }
        let mut errors = Vec::new();
        for cfg in cfgs {
            if self.queues.iter().any(|q| q.cfg == *cfg) {
                continue;
            }
            match self.start_queue(cfg, external) {
                Ok(manager) => {
                    tracing::info!(remote_name = %cfg.name, url = %cfg.url, "Starting remote storage queue");
                    self.queues.push(RunningQueue {
                        cfg: cfg.clone(),
                        external_labels: external.clone(),
                        manager,
                    });
                }
                Err(e) => {
                    tracing::error!(err = %e, "Failed to start remote storage queue");
                    errors.push(e);
                }
            }
        }
        // The endpoints just started are those whose cursors a damaged
        // cursor file lost, if it was; one added by a later reload is new.
        self.wal.end_cursor_recovery();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn status(&self) -> Vec<QueueStatus> {
        self.queues.iter().map(|q| q.manager.status()).collect()
    }

    /// Shutdown: every queue flushes for up to `flush_deadline`; what is
    /// left stays in the WAL for the next start.
    pub async fn stop(&mut self, flush_deadline: Duration) {
        let queues = std::mem::take(&mut self.queues);
        let stops = queues.into_iter().map(|q| q.manager.stop(flush_deadline));
        futures_join_all(stops).await;
    }
}

/// Awaits all futures concurrently (tiny local join_all, avoiding a dependency).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}
