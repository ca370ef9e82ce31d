//! The discovery manager's own timing: the first snapshot does not wait
//! for a reload interval.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{load, target_count, wait_for};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tributary_discovery::{DiscoveryManager, DiscoveryMetrics};

/// With a reload interval far longer than the wait, static targets must
/// still arrive at once: the snapshot after start is sent as soon as the
/// providers that answer immediately have reported. (A ticker whose first
/// tick fires at start used to swallow that moment, so every (re)start
/// scraped nothing for a whole `--scrape.discovery-reload-interval`.)
///
/// Which of the ticker and the provider's update the manager sees first
/// is up to the runtime, so the start is repeated.
#[tokio::test]
async fn the_first_snapshot_does_not_wait_for_the_reload_interval() {
    let cfg = load(
        "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['127.0.0.1:1', '127.0.0.1:2']\n",
    );
    for _ in 0..5 {
        let mut registry = Registry::default();
        let metrics = DiscoveryMetrics::new(&mut registry);
        let shutdown = CancellationToken::new();
        let (mut manager, mut rx) =
            DiscoveryManager::start(Duration::from_secs(3600), metrics, shutdown.clone());
        // The agent applies its configuration a while after starting the
        // manager (WAL replay, remote-write setup).
        tokio::time::sleep(Duration::from_millis(150)).await;
        manager.apply_config(&cfg);
        let groups = wait_for(&mut rx, "a", Duration::from_secs(3), |g| {
            target_count(g) == 2
        })
        .await;
        assert_eq!(target_count(&groups), 2);
        shutdown.cancel();
    }
}
