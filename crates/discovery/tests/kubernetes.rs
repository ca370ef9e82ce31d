//! `kubernetes_sd_configs` against a loopback Kubernetes API double (axum on
//! 127.0.0.1) that speaks LIST (with `limit`/`continue`) and WATCH
//! (newline-delimited events, `resourceVersion` resume, BOOKMARK events,
//! `410 Gone` as an ERROR event once versions are compacted), serving the
//! JSON fixtures in `tests/fixtures/kubernetes/` (written from the
//! Kubernetes API reference). Expected labels follow Prometheus's
//! discovery/kubernetes/*.go and configuration.md `<kubernetes_sd_config>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{flattened, harness, load, metrics_text, target_count, wait_for};
use serde_json::json;
use tributary_discovery::testing::kube::FakeKube;

const LIMIT: Duration = Duration::from_secs(15);

fn sd_config(job: &str, base: &str, role: &str, extra: &str) -> tributary_config::Config {
    load(&format!(
        "scrape_configs:\n  - job_name: {job}\n    kubernetes_sd_configs:\n      - role: {role}\n        api_server: {base}\n{extra}"
    ))
}

/// The flattened targets that have `__address__ == addr`.
fn target_with(
    groups: &[tributary_discovery::TargetGroup],
    addr: &str,
) -> Option<Vec<(String, String)>> {
    flattened(groups)
        .into_iter()
        .find(|t| t.iter().any(|(n, v)| n == "__address__" && v == addr))
}

fn labels(items: &[(&str, &str)]) -> Vec<(String, String)> {
    common::pairs(items)
}

#[tokio::test]
async fn pod_role_follows_watch_with_bookmarks_and_gone() {
    let fake = FakeKube::new();
    fake.load("pods", "pods.json");
    let base = fake.serve().await;
    let mut h = harness();
    h.manager.apply_config(&sd_config("pods", &base, "pod", ""));

    // web pod: 2 ports on app + sidecar without ports + init container = 4;
    // db pod: 1; the pending pod (no IP) has none.
    let groups = wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 5).await;
    let expected = labels(&[
        ("__address__", "10.1.0.5:9090"),
        ("__meta_kubernetes_namespace", "default"),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "true",
        ),
        (
            "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape",
            "true",
        ),
        ("__meta_kubernetes_pod_container_id", "containerd://aaa111"),
        ("__meta_kubernetes_pod_container_image", "example/web:1.2"),
        ("__meta_kubernetes_pod_container_init", "false"),
        ("__meta_kubernetes_pod_container_name", "app"),
        ("__meta_kubernetes_pod_container_port_name", "metrics"),
        ("__meta_kubernetes_pod_container_port_number", "9090"),
        ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
        ("__meta_kubernetes_pod_controller_kind", "ReplicaSet"),
        ("__meta_kubernetes_pod_controller_name", "web-7d4b9c"),
        ("__meta_kubernetes_pod_host_ip", "192.168.0.10"),
        ("__meta_kubernetes_pod_ip", "10.1.0.5"),
        ("__meta_kubernetes_pod_label_app", "web"),
        ("__meta_kubernetes_pod_label_pod_template_hash", "7d4b9c"),
        ("__meta_kubernetes_pod_labelpresent_app", "true"),
        (
            "__meta_kubernetes_pod_labelpresent_pod_template_hash",
            "true",
        ),
        ("__meta_kubernetes_pod_name", "web-7d4b9c-abcde"),
        ("__meta_kubernetes_pod_node_name", "node-a"),
        ("__meta_kubernetes_pod_phase", "Running"),
        ("__meta_kubernetes_pod_ready", "true"),
        (
            "__meta_kubernetes_pod_uid",
            "0e7a1c6e-1111-4c1e-9b7a-000000000001",
        ),
    ]);
    assert_eq!(target_with(&groups, "10.1.0.5:9090"), Some(expected));
    // A container without ports is one target on the bare pod IP; init
    // containers count too.
    let flat = flattened(&groups);
    let bare: Vec<_> = flat
        .iter()
        .filter(|t| t.contains(&("__address__".into(), "10.1.0.5".into())))
        .collect();
    assert_eq!(bare.len(), 2, "{bare:#?}");
    assert!(bare
        .iter()
        .any(|t| t.contains(&("__meta_kubernetes_pod_container_init".into(), "true".into()))));
    // IPv6 pod IPs are bracketed; Ready=False → "false".
    let db = target_with(&groups, "[fd00::7]:5432").expect("db target");
    assert!(db.contains(&("__meta_kubernetes_pod_ready".into(), "false".into())));
    assert!(db.contains(&(
        "__meta_kubernetes_pod_controller_kind".into(),
        "StatefulSet".into()
    )));

    // The pending pod gets an IP: a new target appears (MODIFIED event).
    let mut pending = fake.obj("pods", "default/pending-0");
    pending["status"]["podIP"] = json!("10.1.0.77");
    fake.put("pods", pending);
    let groups = wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 6).await;
    let t = target_with(&groups, "10.1.0.77:80").expect("pending pod target");
    assert!(t.contains(&("__meta_kubernetes_pod_ready".into(), "unknown".into())));

    // Let the server end a watch: the client resumes from its version
    // (advanced by bookmarks) instead of listing again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    {
        let watches = fake.watches();
        assert_eq!(fake.lists(), 1, "watch resume must not re-list");
        assert!(watches.len() >= 2, "{watches:?}");
        let last_rv: u64 = watches
            .last()
            .and_then(|w| w.split('@').nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert_eq!(
            last_rv,
            fake.resource_version(),
            "bookmarks advance the resume version: {watches:?}"
        );
    }

    // Deleted pod: its targets disappear.
    fake.delete("pods", "data/db-0", true);
    let groups = wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 5).await;
    assert!(target_with(&groups, "[fd00::7]:5432").is_none());

    // A deletion missed while history was compacted: the next watch gets
    // 410 Gone, the client re-lists and drops the vanished pod.
    fake.delete("pods", "default/pending-0", false);
    fake.compact();
    let groups = wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 4).await;
    assert!(target_with(&groups, "10.1.0.77:80").is_none());
    assert!(fake.lists() >= 2);

    let metrics = metrics_text(&h.registry);
    assert!(
        metrics.contains("prometheus_sd_kubernetes_events_total{role=\"pod\",event=\"add\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("prometheus_sd_kubernetes_events_total{role=\"pod\",event=\"delete\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn node_role_uses_preferred_address_and_kubelet_port() {
    let fake = FakeKube::new();
    fake.load("nodes", "nodes.json");
    let base = fake.serve().await;
    let mut h = harness();
    h.manager
        .apply_config(&sd_config("nodes", &base, "node", ""));
    let groups = wait_for(&mut h.rx, "nodes", LIMIT, |g| target_count(g) == 2).await;
    let expected = labels(&[
        ("__address__", "192.168.0.10:10250"),
        ("instance", "node-a"),
        ("__meta_kubernetes_node_address_ExternalIP", "203.0.113.4"),
        ("__meta_kubernetes_node_address_Hostname", "node-a"),
        ("__meta_kubernetes_node_address_InternalIP", "192.168.0.10"),
        (
            "__meta_kubernetes_node_annotation_node_alpha_kubernetes_io_ttl",
            "0",
        ),
        (
            "__meta_kubernetes_node_annotationpresent_node_alpha_kubernetes_io_ttl",
            "true",
        ),
        ("__meta_kubernetes_node_condition_memorypressure", "false"),
        ("__meta_kubernetes_node_condition_ready", "true"),
        (
            "__meta_kubernetes_node_label_kubernetes_io_hostname",
            "node-a",
        ),
        (
            "__meta_kubernetes_node_label_topology_kubernetes_io_zone",
            "z1",
        ),
        (
            "__meta_kubernetes_node_labelpresent_kubernetes_io_hostname",
            "true",
        ),
        (
            "__meta_kubernetes_node_labelpresent_topology_kubernetes_io_zone",
            "true",
        ),
        ("__meta_kubernetes_node_name", "node-a"),
        ("__meta_kubernetes_node_provider_id", "aws:///z1/i-0abc"),
    ]);
    assert_eq!(target_with(&groups, "192.168.0.10:10250"), Some(expected));
    // Only a Hostname address: that is used.
    assert!(target_with(&groups, "node-b.example:10250").is_some());

    fake.delete("nodes", "node-b", true);
    wait_for(&mut h.rx, "nodes", LIMIT, |g| target_count(g) == 1).await;
}

#[tokio::test]
async fn service_role_one_target_per_port() {
    let fake = FakeKube::new();
    fake.load("services", "services.json");
    let base = fake.serve().await;
    let mut h = harness();
    h.manager
        .apply_config(&sd_config("svc", &base, "service", ""));
    let groups = wait_for(&mut h.rx, "svc", LIMIT, |g| target_count(g) == 4).await;
    let expected = labels(&[
        ("__address__", "web.default.svc:9090"),
        ("__meta_kubernetes_namespace", "default"),
        (
            "__meta_kubernetes_service_annotation_prometheus_io_port",
            "9090",
        ),
        (
            "__meta_kubernetes_service_annotationpresent_prometheus_io_port",
            "true",
        ),
        ("__meta_kubernetes_service_cluster_ip", "10.96.0.10"),
        ("__meta_kubernetes_service_label_app", "web"),
        ("__meta_kubernetes_service_labelpresent_app", "true"),
        ("__meta_kubernetes_service_name", "web"),
        ("__meta_kubernetes_service_port_name", "metrics"),
        ("__meta_kubernetes_service_port_number", "9090"),
        ("__meta_kubernetes_service_port_protocol", "TCP"),
        ("__meta_kubernetes_service_type", "ClusterIP"),
    ]);
    assert_eq!(target_with(&groups, "web.default.svc:9090"), Some(expected));
    let lb = target_with(&groups, "lb.default.svc:443").expect("lb");
    assert!(lb.contains(&(
        "__meta_kubernetes_service_loadbalancer_ip".into(),
        "198.51.100.1,198.51.100.2".into()
    )));
    let ext = target_with(&groups, "ext.data.svc:5432").expect("ext");
    assert!(ext.contains(&(
        "__meta_kubernetes_service_external_name".into(),
        "db.example.com".into()
    )));
    assert!(!ext
        .iter()
        .any(|(n, _)| n == "__meta_kubernetes_service_cluster_ip"));

    // Namespaces are applied server-side: only `data` is watched.
    let mut h2 = harness();
    h2.manager.apply_config(&sd_config(
        "svc",
        &base,
        "service",
        "        namespaces:\n          names: [data]\n",
    ));
    let groups = wait_for(&mut h2.rx, "svc", LIMIT, |g| target_count(g) == 1).await;
    assert!(target_with(&groups, "ext.data.svc:5432").is_some());
    assert!(fake.watches().iter().any(|w| w.starts_with("services@")));
}

#[tokio::test]
async fn ingress_role_per_rule_path_with_tls_scheme() {
    let fake = FakeKube::new();
    fake.load("ingresses", "ingresses.json");
    let base = fake.serve().await;
    let mut h = harness();
    h.manager
        .apply_config(&sd_config("ing", &base, "ingress", ""));
    let groups = wait_for(&mut h.rx, "ing", LIMIT, |g| target_count(g) == 3).await;
    let flat = flattened(&groups);
    let api = flat
        .iter()
        .find(|t| t.contains(&("__meta_kubernetes_ingress_path".into(), "/api".into())))
        .expect("api path");
    assert_eq!(
        *api,
        labels(&[
            ("__address__", "www.example.com"),
            ("__meta_kubernetes_ingress_class_name", "nginx"),
            ("__meta_kubernetes_ingress_host", "www.example.com"),
            ("__meta_kubernetes_ingress_label_team", "a"),
            ("__meta_kubernetes_ingress_labelpresent_team", "true"),
            ("__meta_kubernetes_ingress_name", "site"),
            ("__meta_kubernetes_ingress_path", "/api"),
            ("__meta_kubernetes_ingress_scheme", "https"),
            ("__meta_kubernetes_namespace", "default"),
        ])
    );
    let plain = target_with(&groups, "plain.example.org").expect("plain rule");
    assert!(plain.contains(&("__meta_kubernetes_ingress_scheme".into(), "http".into())));
    assert!(plain.contains(&("__meta_kubernetes_ingress_path".into(), "/".into())));
}

#[tokio::test]
async fn endpoints_role_joins_pods_and_services() {
    let fake = FakeKube::new();
    fake.load("endpoints", "endpoints.json");
    fake.load("services", "services.json");
    fake.load("pods", "pods.json");
    let base = fake.serve().await;
    let mut h = harness();
    h.manager
        .apply_config(&sd_config("ep", &base, "endpoints", ""));
    // 2 addresses × 1 port, plus the pod's other container port (9090).
    let groups = wait_for(&mut h.rx, "ep", LIMIT, |g| target_count(g) == 3).await;
    let t = target_with(&groups, "10.1.0.5:8080").expect("pod-backed endpoint");
    for want in [
        ("__meta_kubernetes_endpoint_ready", "true"),
        ("__meta_kubernetes_endpoint_port_name", "http"),
        ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
        ("__meta_kubernetes_endpoint_node_name", "node-a"),
        ("__meta_kubernetes_endpoint_address_target_kind", "Pod"),
        (
            "__meta_kubernetes_endpoint_address_target_name",
            "web-7d4b9c-abcde",
        ),
        ("__meta_kubernetes_endpoints_name", "web"),
        ("__meta_kubernetes_endpoints_label_app", "web"),
        ("__meta_kubernetes_service_name", "web"),
        ("__meta_kubernetes_service_label_app", "web"),
        ("__meta_kubernetes_pod_name", "web-7d4b9c-abcde"),
        ("__meta_kubernetes_pod_container_name", "app"),
        ("__meta_kubernetes_pod_container_port_name", "http"),
        ("__meta_kubernetes_pod_container_port_number", "8080"),
        ("__meta_kubernetes_namespace", "default"),
    ] {
        assert!(
            t.contains(&(want.0.into(), want.1.into())),
            "missing {want:?} in {t:#?}"
        );
    }
    let not_ready = target_with(&groups, "10.1.0.9:8080").expect("not-ready address");
    assert!(not_ready.contains(&("__meta_kubernetes_endpoint_ready".into(), "false".into())));
    assert!(not_ready.contains(&("__meta_kubernetes_endpoint_hostname".into(), "web-9".into())));
    let extra = target_with(&groups, "10.1.0.5:9090").expect("unlisted container port");
    assert!(extra.contains(&(
        "__meta_kubernetes_pod_container_port_name".into(),
        "metrics".into()
    )));
    assert!(!extra
        .iter()
        .any(|(n, _)| n == "__meta_kubernetes_endpoint_ready"));

    // A pod change reaches the endpoints group that references it.
    let mut pod = fake.obj("pods", "default/web-7d4b9c-abcde");
    pod["metadata"]["labels"]["version"] = json!("v2");
    fake.put("pods", pod);
    wait_for(&mut h.rx, "ep", LIMIT, |g| {
        target_with(g, "10.1.0.5:8080").is_some_and(|t| {
            t.contains(&("__meta_kubernetes_pod_label_version".into(), "v2".into()))
        })
    })
    .await;
    // The service going away removes its labels.
    fake.delete("services", "default/web", true);
    wait_for(&mut h.rx, "ep", LIMIT, |g| {
        target_with(g, "10.1.0.9:8080")
            .is_some_and(|t| !t.iter().any(|(n, _)| n == "__meta_kubernetes_service_name"))
    })
    .await;
    fake.delete("endpoints", "default/web", true);
    wait_for(&mut h.rx, "ep", LIMIT, |g| target_count(g) == 0).await;
}

#[tokio::test]
async fn endpointslice_role_labels() {
    let fake = FakeKube::new();
    fake.load("endpointslices", "endpointslices.json");
    fake.load("services", "services.json");
    fake.load("pods", "pods.json");
    let base = fake.serve().await;
    let mut h = harness();
    h.manager
        .apply_config(&sd_config("es", &base, "endpointslice", ""));
    let groups = wait_for(&mut h.rx, "es", LIMIT, |g| target_count(g) == 3).await;
    let t = target_with(&groups, "10.1.0.5:8080").expect("slice endpoint");
    for want in [
        ("__meta_kubernetes_endpointslice_address_type", "IPv4"),
        ("__meta_kubernetes_endpointslice_name", "web-x1"),
        ("__meta_kubernetes_endpointslice_port", "8080"),
        ("__meta_kubernetes_endpointslice_port_name", "http"),
        ("__meta_kubernetes_endpointslice_port_protocol", "TCP"),
        ("__meta_kubernetes_endpointslice_port_app_protocol", "http"),
        (
            "__meta_kubernetes_endpointslice_endpoint_conditions_ready",
            "true",
        ),
        (
            "__meta_kubernetes_endpointslice_endpoint_conditions_serving",
            "true",
        ),
        (
            "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
            "false",
        ),
        (
            "__meta_kubernetes_endpointslice_endpoint_node_name",
            "node-a",
        ),
        ("__meta_kubernetes_endpointslice_endpoint_zone", "z1"),
        ("__meta_kubernetes_endpointslice_address_target_kind", "Pod"),
        (
            "__meta_kubernetes_endpointslice_address_target_name",
            "web-7d4b9c-abcde",
        ),
        (
            "__meta_kubernetes_endpointslice_label_kubernetes_io_service_name",
            "web",
        ),
        ("__meta_kubernetes_service_name", "web"),
        ("__meta_kubernetes_pod_container_name", "app"),
        ("__meta_kubernetes_pod_ip", "10.1.0.5"),
    ] {
        assert!(
            t.contains(&(want.0.into(), want.1.into())),
            "missing {want:?} in {t:#?}"
        );
    }
    let nr = target_with(&groups, "10.1.0.9:8080").expect("not ready");
    assert!(nr.contains(&(
        "__meta_kubernetes_endpointslice_endpoint_conditions_ready".into(),
        "false".into()
    )));
    assert!(nr.contains(&(
        "__meta_kubernetes_endpointslice_endpoint_hostname".into(),
        "web-9".into()
    )));
    fake.delete("endpointslices", "default/web-x1", true);
    wait_for(&mut h.rx, "es", LIMIT, |g| target_count(g) == 0).await;
}

#[tokio::test]
async fn pod_role_attaches_node_and_namespace_metadata() {
    let fake = FakeKube::new();
    fake.load("pods", "pods.json");
    fake.load("nodes", "nodes.json");
    fake.put_quiet(
        "namespaces",
        json!({"metadata": {"name": "default", "labels": {"team": "core"}}}),
    );
    let base = fake.serve().await;
    let mut h = harness();
    h.manager.apply_config(&sd_config(
        "pods",
        &base,
        "pod",
        "        attach_metadata: {node: true, namespace: true}\n",
    ));
    let groups = wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 5).await;
    let t = target_with(&groups, "10.1.0.5:8080").expect("web");
    assert!(t.contains(&("__meta_kubernetes_node_name".into(), "node-a".into())));
    assert!(t.contains(&(
        "__meta_kubernetes_node_label_topology_kubernetes_io_zone".into(),
        "z1".into()
    )));
    assert!(t.contains(&(
        "__meta_kubernetes_namespace_label_team".into(),
        "core".into()
    )));
    // Node metadata changes reach the pods on that node.
    let mut node = fake.obj("nodes", "node-a");
    node["metadata"]["labels"]["pool"] = json!("gpu");
    fake.put("nodes", node);
    wait_for(&mut h.rx, "pods", LIMIT, |g| {
        target_with(g, "10.1.0.5:8080").is_some_and(|t| {
            t.contains(&("__meta_kubernetes_node_label_pool".into(), "gpu".into()))
        })
    })
    .await;
}

/// Prometheus 3.11's `attach_metadata: {deployment, job, cronjob}`
/// (pod.go `podLabels`): the controller's controller, looked up through
/// ReplicaSet and Job watches, and following changes to them.
#[tokio::test]
async fn pod_role_attaches_deployment_job_and_cronjob_names() {
    let fake = FakeKube::new();
    fake.load("pods", "pods.json");
    let mut job_pod = tributary_discovery::testing::kube::pod(
        "default",
        "report-28000000-x1",
        "10.1.0.40",
        9100,
        "node-a",
        json!({}),
    );
    job_pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "report-28000000", "controller": true}]);
    fake.put_quiet("pods", job_pod);
    let replicaset = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d4b9c", "namespace": "default",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "controller": true}]},
        "spec": {"replicas": 1}});
    fake.put_quiet("replicasets", replicaset.clone());
    fake.put_quiet(
        "jobs",
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "report-28000000", "namespace": "default",
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "report", "controller": true}]}}),
    );
    let base = fake.serve().await;
    let mut h = harness();
    h.manager.apply_config(&sd_config(
        "pods",
        &base,
        "pod",
        "        attach_metadata: {deployment: true, job: true, cronjob: true}\n",
    ));
    let groups = wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 6).await;
    let web = target_with(&groups, "10.1.0.5:8080").expect("web");
    assert!(web.contains(&("__meta_kubernetes_pod_deployment_name".into(), "web".into())));
    assert!(!web.iter().any(|(n, _)| n.contains("job_name")), "{web:?}");
    let job = target_with(&groups, "10.1.0.40:9100").expect("job pod");
    assert!(job.contains(&(
        "__meta_kubernetes_pod_job_name".into(),
        "report-28000000".into()
    )));
    assert!(job.contains(&("__meta_kubernetes_pod_cronjob_name".into(), "report".into())));
    // A StatefulSet's pod gets none of them.
    let db = target_with(&groups, "[fd00::7]:5432").expect("db");
    assert!(
        !db.iter()
            .any(|(n, _)| n.contains("deployment_name") || n.contains("job_name")),
        "{db:?}"
    );
    let watches = fake.watches();
    assert!(
        watches.iter().any(|w| w.starts_with("replicasets@")),
        "{watches:?}"
    );
    assert!(
        watches.iter().any(|w| w.starts_with("jobs@")),
        "{watches:?}"
    );

    // The ReplicaSet changes hands: its pods follow.
    let mut rs = replicaset;
    rs["metadata"]["ownerReferences"][0]["name"] = json!("web-v2");
    fake.put("replicasets", rs);
    wait_for(&mut h.rx, "pods", LIMIT, |g| {
        target_with(g, "10.1.0.5:8080").is_some_and(|t| {
            t.contains(&(
                "__meta_kubernetes_pod_deployment_name".into(),
                "web-v2".into(),
            ))
        })
    })
    .await;
    // The Job is deleted: the CronJob name goes, the Job name (from the
    // pod's own owner reference) stays.
    fake.delete("jobs", "default/report-28000000", true);
    let groups = wait_for(&mut h.rx, "pods", LIMIT, |g| {
        target_with(g, "10.1.0.40:9100").is_some_and(|t| {
            !t.iter()
                .any(|(n, _)| n == "__meta_kubernetes_pod_cronjob_name")
        })
    })
    .await;
    let job = target_with(&groups, "10.1.0.40:9100").expect("job pod");
    assert!(job.contains(&(
        "__meta_kubernetes_pod_job_name".into(),
        "report-28000000".into()
    )));
}

/// Without the switches, no ReplicaSet/Job watch runs and no label appears.
#[tokio::test]
async fn pod_controller_owner_names_need_their_switches() {
    let fake = FakeKube::new();
    fake.load("pods", "pods.json");
    let base = fake.serve().await;
    let mut h = harness();
    h.manager.apply_config(&sd_config("pods", &base, "pod", ""));
    let groups = wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 5).await;
    let web = target_with(&groups, "10.1.0.5:8080").expect("web");
    assert!(
        !web.iter().any(|(n, _)| n.contains("deployment_name")),
        "{web:?}"
    );
    let watches = fake.watches();
    assert!(
        !watches
            .iter()
            .any(|w| w.starts_with("replicasets@") || w.starts_with("jobs@")),
        "{watches:?}"
    );
}

/// A kubeconfig whose user is an `exec` credential plugin: a real shell
/// script (path relative to the kubeconfig) that counts its runs, records
/// `KUBERNETES_EXEC_INFO`, and prints an ExecCredential v1 whose token
/// embeds its argument and run number.
fn exec_plugin_kubeconfig(dir: &std::path::Path, server: &str, expiry: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("bin/plugin.sh");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(
        &script,
        "#!/bin/sh\nn=$(cat \"$COUNT_FILE\" 2>/dev/null || echo 0)\nn=$((n+1))\necho \"$n\" > \"$COUNT_FILE\"\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$INFO_FILE\"\nprintf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"tok-%s-%s\",\"expirationTimestamp\":\"%s\"}}' \"$1\" \"$n\" \"$EXPIRY\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {{server: '{server}'}}\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: ./bin/plugin.sh\n      args: [a1]\n      env:\n      - {{name: COUNT_FILE, value: '{}'}}\n      - {{name: INFO_FILE, value: '{}'}}\n      - {{name: EXPIRY, value: '{expiry}'}}\n      interactiveMode: Never\n",
            dir.join("count").display(),
            dir.join("info").display(),
        ),
    )
    .unwrap();
    kubeconfig.display().to_string()
}

fn plugin_runs(dir: &std::path::Path) -> u32 {
    std::fs::read_to_string(dir.join("count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_exec_plugin_token_is_cached_and_renewed_on_401() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKube::new();
    fake.load("pods", "pods.json");
    fake.require_bearer(Some("tok-a1-1"));
    let base = fake.serve().await;
    let kubeconfig = exec_plugin_kubeconfig(dir.path(), &base, "2999-01-01T00:00:00Z");
    let mut h = harness();
    h.manager.apply_config(&load(&format!(
        "scrape_configs:\n  - job_name: pods\n    kubernetes_sd_configs:\n      - role: pod\n        kubeconfig_file: {kubeconfig}\n"
    )));
    wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 5).await;
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("info")).unwrap()).unwrap();
    assert_eq!(info["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(info["kind"], "ExecCredential");
    assert_eq!(info["spec"]["interactive"], false);
    // Watches end every 700 ms: several requests, one plugin run.
    let deadline = Instant::now() + LIMIT;
    while fake.watches().len() < 3 {
        assert!(Instant::now() < deadline, "watches not renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(plugin_runs(dir.path()), 1, "the token was not cached");
    assert!(fake.authorizations().iter().all(|a| a == "Bearer tok-a1-1"));

    // The server revokes the token: a 401, then the plugin runs again and
    // its new token is accepted; the targets stay throughout.
    fake.require_bearer(Some("tok-a1-2"));
    let deadline = Instant::now() + LIMIT;
    while !fake.authorizations().iter().any(|a| a == "Bearer tok-a1-2") {
        assert!(Instant::now() < deadline, "plugin not re-run after a 401");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(plugin_runs(dir.path()), 2);
    // A new pod arrives through the renewed credential.
    let mut pod = fake.obj("pods", "data/db-0");
    pod["metadata"]["name"] = json!("db-1");
    pod["status"]["podIP"] = json!("fd00::8");
    fake.put("pods", pod);
    wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_exec_plugin_expired_credentials_are_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKube::new();
    fake.load("pods", "pods.json");
    let base = fake.serve().await;
    // Already expired when issued: every request must run the plugin.
    let kubeconfig = exec_plugin_kubeconfig(dir.path(), &base, "2000-01-01T00:00:00Z");
    let mut h = harness();
    h.manager.apply_config(&load(&format!(
        "scrape_configs:\n  - job_name: pods\n    kubernetes_sd_configs:\n      - role: pod\n        kubeconfig_file: {kubeconfig}\n"
    )));
    wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 5).await;
    let deadline = Instant::now() + LIMIT;
    while plugin_runs(dir.path()) < 4 {
        assert!(Instant::now() < deadline, "expired token reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let auths = fake.authorizations();
    assert!(auths.contains(&"Bearer tok-a1-3".to_string()), "{auths:?}");
}

#[tokio::test]
async fn kubeconfig_exec_plugin_failure_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\nclusters:\n- name: k\n  cluster: {server: 'http://127.0.0.1:1'}\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: /bin/sh\n      args: ['-c', 'echo token service down >&2; exit 3']\n",
    )
    .unwrap();
    let mut h = harness();
    h.manager.apply_config(&load(&format!(
        "scrape_configs:\n  - job_name: pods\n    kubernetes_sd_configs:\n      - role: pod\n        kubeconfig_file: {}\n",
        kubeconfig.display()
    )));
    let deadline = Instant::now() + LIMIT;
    let error = loop {
        if let Some(e) = h.manager.status().into_iter().find_map(|s| s.last_error) {
            break e;
        }
        assert!(Instant::now() < deadline, "failure never reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(error.contains("token service down"), "{error}");
}

#[tokio::test]
async fn unreachable_api_server_counts_failures_and_recovers() {
    let fake = FakeKube::new();
    fake.load("pods", "pods.json");
    // Reserve a port, then serve on it only after the provider has failed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let base = format!("http://{addr}");
    let mut h = harness();
    h.manager.apply_config(&sd_config("pods", &base, "pod", ""));
    let deadline = Instant::now() + LIMIT;
    while !metrics_text(&h.registry).contains("prometheus_sd_kubernetes_failures_total 1") {
        assert!(Instant::now() < deadline, "no failure counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.serve_at(addr).await;
    wait_for(&mut h.rx, "pods", LIMIT, |g| target_count(g) == 5).await;
}

/// Reads this process's resident set size from /proc (Linux), in bytes.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_pods_memory_and_time_to_first_full_set() {
    const PODS: usize = 5000;
    let fake = FakeKube::new();
    for i in 0..PODS {
        fake.put_quiet(
            "pods",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("app-{i}"), "namespace": format!("ns-{}", i % 50),
                    "uid": format!("00000000-0000-0000-0000-{i:012}"),
                    "labels": {"app": "app", "pod-template-hash": "5d8f7c9b6", "instance": format!("i{i}")},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "app-5d8f7c9b6", "controller": true}],
                    "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:status": {"f:conditions": {}}}}]
                },
                "spec": {
                    "nodeName": format!("node-{}", i % 100),
                    "containers": [{"name": "app", "image": "example/app:1.0", "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"}],
                        "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1"}}}]
                },
                "status": {
                    "phase": "Running", "podIP": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                    "hostIP": format!("192.168.{}.{}", (i % 100) / 256, i % 100),
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "app", "containerID": format!("containerd://{i:064x}"), "ready": true}]
                }
            }),
        );
    }
    let base = fake.serve().await;
    let mut h = harness();
    let rss_before = rss_bytes();
    let started = Instant::now();
    h.manager.apply_config(&sd_config("big", &base, "pod", ""));
    let groups = wait_for(&mut h.rx, "big", Duration::from_secs(60), |g| {
        target_count(g) == 2 * PODS
    })
    .await;
    let elapsed = started.elapsed();
    let rss_after = rss_bytes();

    // What the provider (and, shared, the manager) holds: every label
    // buffer, the sources and the vectors.
    let held: usize = groups
        .iter()
        .map(|g| {
            g.source.capacity()
                + g.labels.heap_size()
                + g.targets.iter().map(|t| t.heap_size()).sum::<usize>()
                + g.targets.capacity() * std::mem::size_of::<tributary_model::Labels>()
                + std::mem::size_of::<tributary_discovery::TargetGroup>()
        })
        .sum();
    eprintln!(
        "k8s pod role: {PODS} pods / {} targets: first full target set after {:?}; target groups hold ~{} KiB; RSS delta {:?} KiB (includes the loopback API server's fixtures)",
        target_count(&groups),
        elapsed,
        held / 1024,
        rss_before.zip(rss_after).map(|(b, a)| a.saturating_sub(b) / 1024),
    );
    assert_eq!(groups.len(), PODS);
    assert!(elapsed < Duration::from_secs(60));
    // ~5000 × (group labels ≈ 700 B + 2 targets ≈ 2 × 330 B): well under 16 MiB.
    assert!(held < 16 << 20, "held {held} bytes");
    // Paged LIST: 5000 pods in pages of 500.
    assert_eq!(fake.lists(), PODS / 500);
}
