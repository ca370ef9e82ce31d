//! Plumbing shared by the providers that talk to a remote API (DNS, Consul,
//! Docker): the handle a provider task uses to report to the manager (with
//! Prometheus's refresh metrics), and the small label helpers every
//! mechanism needs.
//!
//! A provider reports the *complete* list of its target groups each time;
//! an error report leaves the manager's last good groups in place, which is
//! Prometheus's behaviour for a failed refresh.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::group::TargetGroup;
use crate::manager::Update;
use crate::metrics::DiscoveryMetrics;

/// What a provider task needs to report to the manager.
#[derive(Clone)]
pub(crate) struct ProviderCtx {
    pub id: u64,
    /// The scrape job: the `config` label of the refresh metrics.
    pub job: String,
    pub mechanism: &'static str,
    pub updates: mpsc::Sender<Update>,
    pub cancel: CancellationToken,
    pub metrics: DiscoveryMetrics,
}

impl ProviderCtx {
    /// Sends a result to the manager; `false` once the manager is gone.
    pub async fn report(&self, result: Result<Vec<TargetGroup>, String>) -> bool {
        self.updates.send((self.id, result)).await.is_ok()
    }

    /// Counts a failed refresh in `prometheus_sd_refresh_failures_total`.
    pub fn count_failure(&self) {
        self.metrics
            .refresh_failures
            .get_or_create(&DiscoveryMetrics::refresh_labels(self.mechanism, &self.job))
            .inc();
    }

    /// Finishes one refresh the way Prometheus's `refresh.Discovery` does:
    /// times it, counts and logs a failure, and reports the result.
    /// Returns `false` once the manager is gone.
    pub async fn complete_refresh(
        &self,
        started: Instant,
        result: Result<Vec<TargetGroup>, String>,
    ) -> bool {
        self.observe_duration(started.elapsed());
        if let Err(e) = &result {
            self.count_failure();
            tracing::error!(mechanism = self.mechanism, job = %self.job, err = %e, "Unable to refresh target groups");
        }
        self.report(result).await
    }

    fn observe_duration(&self, elapsed: Duration) {
        self.metrics
            .refresh_duration
            .get_or_create(&DiscoveryMetrics::refresh_labels(self.mechanism, &self.job))
            .observe(elapsed.as_secs_f64());
    }

    /// Sleeps until `deadline` or cancellation; `false` when cancelled.
    pub async fn sleep_until(&self, deadline: Instant) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep_until(deadline) => true,
        }
    }
}

/// Prometheus's `strutil.SanitizeLabelName`: every character outside
/// `[a-zA-Z0-9_]` becomes `_` (used for `__meta_*_label_<name>` suffixes).
#[cfg_attr(
    not(any(
        feature = "sd-consul",
        feature = "sd-docker",
        feature = "sd-ec2",
        feature = "sd-kubernetes"
    )),
    allow(dead_code)
)]
pub(crate) fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Go's `net.JoinHostPort`: IPv6 literals (anything with a colon) are
/// bracketed.
pub(crate) fn join_host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_like_prometheus() {
        assert_eq!(
            sanitize_label_name("com.docker.compose-project"),
            "com_docker_compose_project"
        );
        assert_eq!(sanitize_label_name("ok_1"), "ok_1");
        assert_eq!(sanitize_label_name("é"), "_");
    }

    #[test]
    fn joins_v6_with_brackets() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("2001:db8::1", 9100), "[2001:db8::1]:9100");
    }
}
