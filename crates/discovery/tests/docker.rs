//! `docker_sd_configs` against a loopback Docker Engine API double (axum on
//! 127.0.0.1 and on a Unix socket) serving fixtures written from the Engine
//! API reference (`ContainerList`, `NetworkList`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{flattened, harness, load, target_count, wait_for};
use tributary_discovery::testing::docker::{router, serve_tcp, Shared};
use tributary_discovery::testing::fixture;

const WAIT: Duration = Duration::from_secs(10);

fn network(
    id: &str,
    name: &str,
    scope: &str,
    internal: &str,
    ingress: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("__meta_docker_network_id", id.into()),
        ("__meta_docker_network_name", name.into()),
        ("__meta_docker_network_scope", scope.into()),
        ("__meta_docker_network_internal", internal.into()),
        ("__meta_docker_network_ingress", ingress.into()),
    ]
}

fn target(base: &[(&str, &str)], net: Vec<(&'static str, String)>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = base
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.extend(net.into_iter().map(|(a, b)| (a.to_string(), b)));
    v.sort();
    v
}

/// What Prometheus's docker SD yields for `docker_containers.json`.
fn expected_initial() -> Vec<Vec<(String, String)>> {
    let mut want = vec![
        target(
            &[
                ("__address__", "172.17.0.2:8080"),
                ("__meta_docker_container_id", "c1"),
                ("__meta_docker_container_name", "/web"),
                ("__meta_docker_container_network_mode", "bridge"),
                ("__meta_docker_container_label_com_example_team", "infra"),
                ("__meta_docker_network_ip", "172.17.0.2"),
                ("__meta_docker_port_private", "8080"),
                ("__meta_docker_port_public", "18080"),
                ("__meta_docker_port_public_ip", "0.0.0.0"),
            ],
            network("n1", "bridge", "local", "false", "false"),
        ),
        target(
            &[
                ("__address__", "172.17.0.2:80"),
                ("__meta_docker_container_id", "c2"),
                ("__meta_docker_container_name", "/sidecar"),
                ("__meta_docker_container_network_mode", "container:c1"),
                ("__meta_docker_network_ip", "172.17.0.2"),
            ],
            network("n1", "bridge", "local", "false", "false"),
        ),
        target(
            &[
                ("__address__", "localhost"),
                ("__meta_docker_container_id", "c3"),
                ("__meta_docker_container_name", "/node-exporter"),
                ("__meta_docker_container_network_mode", "host"),
            ],
            network("n2", "host", "local", "false", "false"),
        ),
        target(
            &[
                ("__address__", "10.0.3.2:9090"),
                ("__meta_docker_container_id", "c4"),
                ("__meta_docker_container_name", "/multi"),
                ("__meta_docker_container_network_mode", "zeta"),
                ("__meta_docker_network_ip", "10.0.3.2"),
                (
                    "__meta_docker_network_label_com_docker_compose_network",
                    "alpha",
                ),
                ("__meta_docker_port_private", "9090"),
            ],
            network("n3", "alpha", "local", "true", "false"),
        ),
    ];
    want.sort();
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_appear_change_survive_failure_and_disappear() {
    let state = Shared::default();
    state.lock().containers = fixture("docker_containers.json");
    let host = serve_tcp(state.clone()).await;
    let mut h = harness();
    h.manager.apply_config(&load(&format!(
        "scrape_configs:\n  - job_name: docker\n    docker_sd_configs:\n      - host: {host}\n        refresh_interval: 100ms\n        filters:\n          - name: status\n            values: [running]\n"
    )));

    let groups = wait_for(&mut h.rx, "docker", WAIT, |g| target_count(g) == 4).await;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].source, "Docker");
    assert_eq!(flattened(&groups), expected_initial());
    assert_eq!(
        state.lock().last_filters.as_deref(),
        Some(r#"{"status":{"running":true}}"#)
    );

    // Change + disappear: only c1 is left, on a new port.
    state.lock().containers = fixture("docker_containers_after.json");
    let groups = wait_for(&mut h.rx, "docker", WAIT, |g| target_count(g) == 1).await;
    let only = &flattened(&groups)[0];
    assert!(
        only.contains(&("__address__".into(), "172.17.0.2:8081".into())),
        "{only:?}"
    );

    // Failure keeps the last good targets and is counted.
    state.lock().fail = true;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !h.manager.status().iter().any(|s| s.last_error.is_some()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "failure never reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = h
        .manager
        .status()
        .into_iter()
        .find_map(|s| s.last_error)
        .unwrap_or_default();
    assert!(error.contains("error while listing containers"), "{error}");
    assert_eq!(target_count(&h.rx.borrow()["docker"]), 1);
    let metrics = common::metrics_text(&h.registry);
    assert!(
        metrics.contains(
            r#"prometheus_sd_refresh_failures_total{mechanism="docker",config="docker"}"#
        ),
        "{metrics}"
    );

    // Recovery with an empty daemon: every target disappears.
    {
        let mut d = state.lock();
        d.fail = false;
        d.containers = "[]".into();
    }
    wait_for(&mut h.rx, "docker", WAIT, |g| target_count(g) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let state = Shared::default();
    state.lock().containers = fixture("docker_containers.json");
    let app = router(state);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut h = harness();
    h.manager.apply_config(&load(&format!(
        "scrape_configs:\n  - job_name: docker\n    docker_sd_configs:\n      - host: unix://{}\n        match_first_network: false\n",
        socket.display()
    )));
    let groups = wait_for(&mut h.rx, "docker", WAIT, |g| target_count(g) == 5).await;
    // Without match_first_network the multi-network container yields one
    // target per network.
    let addrs: Vec<String> = flattened(&groups)
        .iter()
        .filter_map(|t| {
            t.iter()
                .find(|(n, _)| n == "__address__")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(addrs.contains(&"10.0.3.2:9090".to_string()), "{addrs:?}");
    assert!(addrs.contains(&"10.0.4.2:9090".to_string()), "{addrs:?}");
}
