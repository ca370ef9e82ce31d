//! Helpers shared by the provider integration tests: a discovery manager
//! fed from a YAML config, and bounded waits on its output.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tributary_discovery::{DiscoveredTargets, DiscoveryManager, DiscoveryMetrics, TargetGroup};

pub struct Harness {
    pub manager: DiscoveryManager,
    pub rx: watch::Receiver<DiscoveredTargets>,
    pub registry: Registry,
    pub shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn harness() -> Harness {
    let mut registry = Registry::default();
    let metrics = DiscoveryMetrics::new(&mut registry);
    let shutdown = CancellationToken::new();
    let (manager, rx) =
        DiscoveryManager::start(Duration::from_millis(20), metrics, shutdown.clone());
    Harness {
        manager,
        rx,
        registry,
        shutdown,
    }
}

pub fn load(yaml: &str) -> tributary_config::Config {
    match tributary_config::load_str(yaml, "test.yml", Path::new("/")) {
        Ok(c) => c,
        Err(e) => panic!("config does not load: {e}"),
    }
}

/// Waits (at most `limit`) until `job`'s groups satisfy `done`; returns them.
pub async fn wait_for(
    rx: &mut watch::Receiver<DiscoveredTargets>,
    job: &str,
    limit: Duration,
    done: impl Fn(&[TargetGroup]) -> bool,
) -> Vec<TargetGroup> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let current = rx.borrow_and_update().get(job).cloned().unwrap_or_default();
        if done(&current) {
            return current;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("discovery manager stopped"),
            Err(_) => panic!("timed out waiting for {job}; last groups: {current:#?}"),
        }
    }
}

pub fn target_count(groups: &[TargetGroup]) -> usize {
    groups.iter().map(|g| g.targets.len()).sum()
}

/// Every target of every group as sorted `(name, value)` pairs, group
/// labels merged in (what relabeling sees), sorted for comparison.
pub fn flattened(groups: &[TargetGroup]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = groups
        .iter()
        .flat_map(|g| {
            g.targets.iter().map(move |t| {
                let mut pairs: Vec<(String, String)> = g
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                for l in t.iter() {
                    pairs.retain(|(n, _)| n != l.name);
                    pairs.push((l.name.to_string(), l.value.to_string()));
                }
                pairs.sort();
                pairs
            })
        })
        .collect();
    out.sort();
    out
}

pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

pub fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        panic!("encoding metrics: {e}");
    }
    out
}
