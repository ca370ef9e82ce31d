//! `consul_sd_configs` against a loopback Consul HTTP API double (axum on
//! 127.0.0.1) that implements blocking queries (`index`/`wait`, answering
//! as soon as its index moves past the client's) for `/v1/agent/self`,
//! `/v1/catalog/services` and `/v1/health/service/<name>`, serving fixtures
//! written from Consul's API reference.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{flattened, harness, load, pairs, target_count, wait_for};
use tributary_discovery::testing::consul::Catalog;
use tributary_discovery::testing::fixture;

const WAIT: Duration = Duration::from_secs(10);

fn catalog() -> Arc<Catalog> {
    let mut services = BTreeMap::new();
    services.insert(
        "web".to_string(),
        (
            vec!["prod".into(), "v1".into()],
            fixture("consul_health_web.json"),
        ),
    );
    services.insert(
        "db".to_string(),
        (vec!["primary".into()], fixture("consul_health_db.json")),
    );
    Catalog::new(services)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_services_appear_change_and_disappear() {
    let c = catalog();
    let server = c.serve().await;
    let mut h = harness();
    h.manager.apply_config(&load(&format!(
        "scrape_configs:\n  - job_name: consul\n    consul_sd_configs:\n      - server: '{server}'\n        token: s3cr3t\n        refresh_interval: 50ms\n        node_meta: {{rack: r1}}\n"
    )));

    let groups = wait_for(&mut h.rx, "consul", WAIT, |g| target_count(g) == 3).await;
    let sources: Vec<&str> = groups.iter().map(|g| g.source.as_str()).collect();
    assert_eq!(sources, ["db", "web"]);
    let common = [
        ("__meta_consul_dc", "dc1"),
        ("__meta_consul_service", "web"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = common.to_vec();
        v.extend_from_slice(extra);
        pairs(&v)
    };
    let mut want = vec![
        with(&[
            ("__address__", "10.1.1.1:8080"),
            ("__meta_consul_address", "10.1.0.1"),
            ("__meta_consul_node", "node-1"),
            ("__meta_consul_tags", ",prod,v1,"),
            ("__meta_consul_service_address", "10.1.1.1"),
            ("__meta_consul_service_port", "8080"),
            ("__meta_consul_service_id", "web-1"),
            ("__meta_consul_health", "warning"),
            ("__meta_consul_metadata_rack", "r1"),
            ("__meta_consul_metadata_os_version", "12"),
            ("__meta_consul_service_metadata_version", "1.0"),
            ("__meta_consul_tagged_address_lan", "10.1.0.1"),
            ("__meta_consul_tagged_address_wan", "198.18.0.1"),
        ]),
        with(&[
            ("__address__", "10.1.0.2:8080"),
            ("__meta_consul_address", "10.1.0.2"),
            ("__meta_consul_node", "node-2"),
            ("__meta_consul_tags", ",,"),
            ("__meta_consul_service_port", "8080"),
            ("__meta_consul_service_id", "web-2"),
            ("__meta_consul_health", "passing"),
        ]),
        pairs(&[
            ("__meta_consul_dc", "dc1"),
            ("__meta_consul_service", "db"),
            ("__address__", "10.1.0.3:5432"),
            ("__meta_consul_address", "10.1.0.3"),
            ("__meta_consul_node", "node-3"),
            ("__meta_consul_tags", ",primary,"),
            ("__meta_consul_service_port", "5432"),
            ("__meta_consul_service_id", "db-1"),
            ("__meta_consul_health", "maintenance"),
        ]),
    ];
    want.sort();
    assert_eq!(flattened(&groups), want);

    // Requests carry the token, stale reads, node-meta and blocking waits.
    let seen = c.seen();
    assert!(
        seen.iter()
            .all(|(_, token)| token.as_deref() == Some("s3cr3t")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(q, _)| q.contains("stale=")
            && q.contains("node-meta=rack:r1")
            && q.contains("wait=120000ms")),
        "{seen:?}"
    );

    // Change: web loses an instance.
    c.update(|s| {
        if let Some(web) = s.get_mut("web") {
            let entries: Vec<serde_json::Value> = serde_json::from_str(&web.1).unwrap();
            web.1 = serde_json::to_string(&entries[..1]).unwrap();
        }
    });
    wait_for(&mut h.rx, "consul", WAIT, |g| target_count(g) == 2).await;

    // Disappear: db leaves the catalog, its group goes with it.
    c.update(|s| {
        s.remove("db");
    });
    let groups = wait_for(&mut h.rx, "consul", WAIT, |g| g.len() == 1).await;
    assert_eq!(groups[0].source, "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_services_with_tags_are_filtered() {
    let c = catalog();
    let server = c.serve().await;
    let mut h = harness();
    h.manager.apply_config(&load(&format!(
        "scrape_configs:\n  - job_name: consul\n    consul_sd_configs:\n      - server: '{server}'\n        datacenter: dc9\n        services: [web, db]\n        tags: [primary]\n        refresh_interval: 50ms\n"
    )));
    // Only db carries the "primary" tag in the catalog.
    let groups = wait_for(&mut h.rx, "consul", WAIT, |g| target_count(g) == 1).await;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].labels.get("__meta_consul_dc"), Some("dc9"));
    let seen = c.seen();
    assert!(
        seen.iter()
            .any(|(q, _)| q.contains("tag=primary") && q.contains("dc=dc9")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_queries_keep_the_last_targets() {
    let c = catalog();
    let server = c.serve().await;
    let mut h = harness();
    h.manager.apply_config(&load(&format!(
        "scrape_configs:\n  - job_name: consul\n    consul_sd_configs:\n      - server: '{server}'\n        services: [web]\n        refresh_interval: 50ms\n"
    )));
    wait_for(&mut h.rx, "consul", WAIT, |g| target_count(g) == 2).await;

    c.set_fail_health(true);
    // Wake the blocked watcher so its next query fails.
    c.update(|_| {});
    let deadline = tokio::time::Instant::now() + WAIT;
    let error = loop {
        if let Some(e) = h.manager.status().into_iter().find_map(|s| s.last_error) {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "failure never reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(error.contains("Error refreshing service web"), "{error}");
    assert!(error.contains("500"), "{error}");
    assert_eq!(target_count(&h.rx.borrow()["consul"]), 2);
    let metrics = common::metrics_text(&h.registry);
    assert!(
        metrics.contains("prometheus_sd_consul_rpc_failures_total 1"),
        "{metrics}"
    );
}
