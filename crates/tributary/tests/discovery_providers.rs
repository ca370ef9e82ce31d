//! The API-driven SD providers under the real binary: a loopback double of
//! each API (or a real dnsmasq for DNS) tells `tributary` about loopback
//! scrape targets; relabel rules built on the provider's `__meta_*` labels
//! shape the target labels; the series arrive at a remote-write sink with
//! those labels. Then the API's answer changes (one target leaves, another
//! arrives): the removed target's series get staleness markers and the new
//! target's series arrive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use tributary_discovery::testing;

const METRIC: &str = "sd_provider_metric";
const LIMIT: Duration = Duration::from_secs(30);

/// The port a test target listens on.
fn port_of(t: &TestTarget) -> u16 {
    t.addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Whether the sink ever saw a series whose key contains `needle`.
fn sink_saw(run: &Run, needle: &str) -> bool {
    run.seen
        .lock()
        .unwrap()
        .series
        .iter()
        .any(|k| k.contains(needle))
}

fn target() -> TestTarget {
    TestTarget::start("text/plain; version=0.0.4", |_| format!("{METRIC} 1\n"))
}

/// The sink and the agent of one test; both stopped by PID when dropped.
struct Run {
    seen: Arc<Mutex<Seen>>,
    agent: Proc,
    _sink: Proc,
}

fn run_agent(dir: &Path, name: &str, job_block: &str, env: &[(&str, String)]) -> Run {
    let (sink, rw, seen) = start_sink(dir, name.into());
    let config = format!(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n{job_block}remote_write:\n  - url: http://127.0.0.1:{rw}/api/v1/write\n    queue_config:\n      batch_send_deadline: 200ms\n"
    );
    let agent = start_tributary_env(
        dir,
        &config,
        free_port(),
        &["--scrape.discovery-reload-interval=200ms"],
        env,
    );
    Run {
        seen,
        agent,
        _sink: sink,
    }
}

/// The keys of a target's scraped metric and of its `up` series.
fn keys(job: &str, addr: &str, extra: &[(&str, &str)]) -> (String, String) {
    let mut labels = vec![("instance", addr), ("job", job)];
    labels.extend_from_slice(extra);
    (series_key(METRIC, &labels), series_key("up", &labels))
}

/// Waits for A's series with `labels_a`, calls `switch` (the API now
/// answers B instead of A), then waits for B's series and for staleness
/// markers on A's metric and `up`, and checks B was not marked stale.
fn assert_follows(
    run: &Run,
    job: &str,
    (a, labels_a): (&TestTarget, &[(&str, &str)]),
    (b, labels_b): (&TestTarget, &[(&str, &str)]),
    switch: impl FnOnce(),
) {
    let (metric_a, up_a) = keys(job, &a.addr, labels_a);
    let (metric_b, up_b) = keys(job, &b.addr, labels_b);
    let has = |key: &str| run.seen.lock().unwrap().series.contains(key);
    let stale = |key: &str| run.seen.lock().unwrap().stale.contains(key);
    let dump = |what: &str| {
        let s = run.seen.lock().unwrap();
        format!(
            "{what}\nseries: {:#?}\nstale: {:#?}\nagent log:\n{}",
            s.series,
            s.stale,
            run.agent.log_text()
        )
    };
    assert!(
        wait_for(LIMIT, || (has(&metric_a) && has(&up_a)).then_some(())).is_some(),
        "{}",
        dump(&format!("{metric_a} never arrived"))
    );
    assert!(!has(&metric_b), "B scraped before it was discovered");

    switch();
    assert!(
        wait_for(LIMIT, || has(&metric_b).then_some(())).is_some(),
        "{}",
        dump(&format!("{metric_b} never arrived after the change"))
    );
    assert!(
        wait_for(LIMIT, || (stale(&metric_a) && stale(&up_a)).then_some(())).is_some(),
        "{}",
        dump("no staleness markers for the removed target")
    );
    assert!(
        !stale(&metric_b) && !stale(&up_b),
        "{}",
        dump("a target still discovered was marked stale")
    );
}

#[test]
fn dns_sd_srv_records_follow_under_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (target(), target());
    let dns_port = testing::dns::free_port();
    let dns = testing::dns::Dnsmasq::start(
        dns_port,
        &[&format!(
            "--srv-host=_metrics._tcp.svc.test,a.svc.test,{}",
            port_of(&a)
        )],
    );
    // The SRV targets' names do not resolve: the address is rebuilt from
    // the record's port; the record's target becomes a label.
    let job = "  - job_name: dns\n    dns_sd_configs:\n      - names: ['_metrics._tcp.svc.test.']\n        refresh_interval: 1s\n    relabel_configs:\n      - source_labels: [__meta_dns_srv_record_port]\n        target_label: __address__\n        replacement: 127.0.0.1:$1\n      - source_labels: [__meta_dns_srv_record_target]\n        regex: '([^.]+)\\..*'\n        target_label: srv_host\n      - source_labels: [__meta_dns_name]\n        target_label: dns_name\n";
    let run = run_agent(
        dir.path(),
        "dns",
        job,
        &[(
            tributary_discovery::DNS_SD_NAMESERVERS_ENV,
            dns.addr().to_string(),
        )],
    );
    let name = ("dns_name", "_metrics._tcp.svc.test.");
    let mut dns = Some(dns);
    assert_follows(
        &run,
        "dns",
        (&a, &[("srv_host", "a"), name]),
        (&b, &[("srv_host", "b"), name]),
        || {
            // dnsmasq takes its records from the command line: restart it
            // on the same port with B's record instead of A's.
            if let Some(old) = dns.take() {
                old.stop();
            }
            dns = Some(testing::dns::Dnsmasq::start(
                dns_port,
                &[&format!(
                    "--srv-host=_metrics._tcp.svc.test,b.svc.test,{}",
                    port_of(&b)
                )],
            ));
        },
    );
    drop(dns);
}

#[test]
#[cfg_attr(
    not(feature = "sd-consul"),
    ignore = "provider compiled out (cargo feature sd-consul)"
)]
fn consul_sd_services_follow_under_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (target(), target());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let entry = |t: &TestTarget, id: &str| {
        let port = port_of(t);
        testing::consul::health_entry(
            "node-1",
            "127.0.0.1",
            "web",
            id,
            "127.0.0.1",
            port,
            &["prod"],
        )
    };
    let mut services = testing::consul::Services::new();
    services.insert(
        "web".into(),
        (vec!["prod".into()], json!([entry(&a, "web-a")]).to_string()),
    );
    // A service without the prod tag: dropped by the keep rule.
    services.insert(
        "batch".into(),
        (
            vec!["dev".into()],
            json!([testing::consul::health_entry(
                "node-1",
                "127.0.0.1",
                "batch",
                "batch-1",
                "127.0.0.1",
                1,
                &["dev"]
            )])
            .to_string(),
        ),
    );
    let catalog = testing::consul::Catalog::new(services);
    let server = rt.block_on(catalog.serve());
    let job = format!("  - job_name: consul\n    consul_sd_configs:\n      - server: '{server}'\n        refresh_interval: 1s\n    relabel_configs:\n      - source_labels: [__meta_consul_tags]\n        regex: '.*,prod,.*'\n        action: keep\n      - source_labels: [__meta_consul_service_id]\n        target_label: service_id\n      - source_labels: [__meta_consul_dc, __meta_consul_service]\n        separator: /\n        target_label: service\n");
    let run = run_agent(dir.path(), "consul", &job, &[]);
    assert_follows(
        &run,
        "consul",
        (&a, &[("service_id", "web-a"), ("service", "dc1/web")]),
        (&b, &[("service_id", "web-b"), ("service", "dc1/web")]),
        || {
            catalog.update(|s| {
                s.insert(
                    "web".into(),
                    (vec!["prod".into()], json!([entry(&b, "web-b")]).to_string()),
                );
            })
        },
    );
    assert!(
        !sink_saw(&run, "batch"),
        "the keep rule on __meta_consul_tags did not drop the dev service"
    );
}

#[test]
#[cfg_attr(
    not(feature = "sd-docker"),
    ignore = "provider compiled out (cargo feature sd-docker)"
)]
fn docker_sd_containers_follow_under_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (target(), target());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Containers publish their metrics port on 127.0.0.1 (the test
    // targets); the bridge IPs are not reachable from here, so the rules
    // scrape through the published port, as users do for host-only daemons.
    let container = |t: &TestTarget, id: &str, name: &str, ip: &str| {
        let port = port_of(t);
        testing::docker::container(
            id,
            name,
            ip,
            9100,
            "127.0.0.1",
            port,
            json!({"com.example.scrape": "true"}),
        )
    };
    let daemon = testing::docker::Shared::default();
    daemon.lock().containers = json!([container(&a, "ca", "app-a", "172.17.0.2")]).to_string();
    let host = rt.block_on(testing::docker::serve_tcp(daemon.clone()));
    let job = format!("  - job_name: docker\n    docker_sd_configs:\n      - host: {host}\n        refresh_interval: 1s\n    relabel_configs:\n      - source_labels: [__meta_docker_container_label_com_example_scrape]\n        regex: 'true'\n        action: keep\n      - source_labels: [__meta_docker_port_public_ip, __meta_docker_port_public]\n        separator: ':'\n        target_label: __address__\n      - source_labels: [__meta_docker_container_name]\n        regex: '/(.*)'\n        target_label: container\n      - source_labels: [__meta_docker_network_name]\n        target_label: network\n");
    let run = run_agent(dir.path(), "docker", &job, &[]);
    assert_follows(
        &run,
        "docker",
        (&a, &[("container", "app-a"), ("network", "bridge")]),
        (&b, &[("container", "app-b"), ("network", "bridge")]),
        || {
            daemon.lock().containers =
                json!([container(&b, "cb", "app-b", "172.17.0.3")]).to_string();
        },
    );
}

#[test]
#[cfg_attr(
    not(feature = "sd-ec2"),
    ignore = "provider compiled out (cargo feature sd-ec2)"
)]
fn ec2_sd_instances_follow_under_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (target(), target());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ec2 = testing::ec2::Shared::default();
    // The instances' private IPs are not reachable from here: a tag holds
    // the address to scrape (a pattern used with exporters behind proxies).
    ec2.lock().page1 = testing::ec2::instances_page(&[(
        "i-a",
        "10.0.0.1",
        &[("metrics_addr", &a.addr), ("Name", "web-a")],
    )]);
    let endpoint = rt.block_on(testing::ec2::serve(ec2.clone()));
    let job = format!("  - job_name: ec2\n    ec2_sd_configs:\n      - region: us-east-1\n        endpoint: {endpoint}\n        access_key: AKIDTEST\n        secret_key: s3cr3t\n        port: 9100\n        refresh_interval: 1s\n    relabel_configs:\n      - source_labels: [__meta_ec2_tag_metrics_addr]\n        regex: '(.+)'\n        target_label: __address__\n      - source_labels: [__meta_ec2_instance_id]\n        target_label: instance_id\n      - source_labels: [__meta_ec2_tag_Name, __meta_ec2_availability_zone]\n        separator: '@'\n        target_label: name_az\n");
    let run = run_agent(dir.path(), "ec2", &job, &[]);
    assert_follows(
        &run,
        "ec2",
        (
            &a,
            &[("instance_id", "i-a"), ("name_az", "web-a@us-east-1a")],
        ),
        (
            &b,
            &[("instance_id", "i-b"), ("name_az", "web-b@us-east-1a")],
        ),
        || {
            ec2.lock().page1 = testing::ec2::instances_page(&[(
                "i-b",
                "10.0.0.2",
                &[("metrics_addr", &b.addr), ("Name", "web-b")],
            )]);
        },
    );
    let ec2 = ec2.lock();
    assert!(
        ec2.bad_auth.is_empty(),
        "malformed SigV4: {:?}",
        ec2.bad_auth
    );
}

#[test]
#[cfg_attr(
    not(feature = "sd-kubernetes"),
    ignore = "provider compiled out (cargo feature sd-kubernetes)"
)]
fn kubernetes_sd_pods_follow_under_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (target(), target());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = |t: &TestTarget| -> u16 { t.addr.rsplit(':').next().unwrap().parse().unwrap() };
    let kube = testing::kube::FakeKube::new();
    kube.put_quiet(
        "pods",
        testing::kube::pod(
            "shop",
            "a",
            "127.0.0.1",
            port(&a),
            "node-1",
            json!({"app": "demo"}),
        ),
    );
    // Another app's pod: dropped by the keep rule on its label.
    kube.put_quiet(
        "pods",
        testing::kube::pod(
            "shop",
            "other",
            "127.0.0.1",
            1,
            "node-1",
            json!({"app": "other"}),
        ),
    );
    let api = rt.block_on(kube.serve());
    let job = format!("  - job_name: k8s\n    kubernetes_sd_configs:\n      - role: pod\n        api_server: {api}\n    relabel_configs:\n      - source_labels: [__meta_kubernetes_pod_label_app]\n        regex: demo\n        action: keep\n      - source_labels: [__meta_kubernetes_namespace, __meta_kubernetes_pod_name]\n        separator: /\n        target_label: pod\n      - source_labels: [__meta_kubernetes_pod_container_port_name]\n        target_label: port_name\n      - source_labels: [__meta_kubernetes_pod_node_name]\n        target_label: node\n");
    let run = run_agent(dir.path(), "k8s", &job, &[]);
    let common = [("port_name", "metrics"), ("node", "node-1")];
    let la = [&[("pod", "shop/a")][..], &common].concat();
    let lb = [&[("pod", "shop/b")][..], &common].concat();
    assert_follows(&run, "k8s", (&a, &la), (&b, &lb), || {
        kube.delete("pods", "shop/a", true);
        kube.put(
            "pods",
            testing::kube::pod(
                "shop",
                "b",
                "127.0.0.1",
                port(&b),
                "node-1",
                json!({"app": "demo"}),
            ),
        );
    });
    assert!(
        !sink_saw(&run, "shop/other"),
        "the keep rule on __meta_kubernetes_pod_label_app did not drop the other pod"
    );
}
