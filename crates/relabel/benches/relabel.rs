//! Relabeling throughput for the shapes that dominate real configs:
//! a metric_relabel keep that changes nothing (must not allocate), a drop,
//! target relabeling with labelmap + templated replace, and hashmod sharding.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tributary_model::Labels;
use tributary_relabel::{relabel_labels, RelabelConfig, RelabelConfigBuilder};

fn rule(b: RelabelConfigBuilder) -> RelabelConfig {
    match b.build() {
        Ok(r) => r,
        Err(e) => panic!("bench rule is invalid: {e}"),
    }
}

fn series() -> Labels {
    Labels::from_pairs([
        ("__name__", "http_requests_total"),
        ("instance", "10.0.0.1:9100"),
        ("job", "node"),
        ("method", "GET"),
        ("code", "200"),
    ])
}

fn target() -> Labels {
    Labels::from_pairs([
        ("__address__", "10.0.0.1:9100"),
        ("__meta_kubernetes_namespace", "default"),
        ("__meta_kubernetes_pod_name", "node-exporter-abcde"),
        ("__meta_kubernetes_pod_label_app", "node-exporter"),
        ("__meta_kubernetes_pod_label_team", "infra"),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_port",
            "9100",
        ),
        ("__scheme__", "http"),
        ("__metrics_path__", "/metrics"),
        ("job", "kubernetes-pods"),
    ])
}

fn benches(c: &mut Criterion) {
    let series = series();
    let keep = [rule(
        RelabelConfig::builder()
            .action("keep")
            .source_labels(["__name__"])
            .regex("http_.*|process_.*"),
    )];
    c.bench_function("keep_unchanged", |b| {
        b.iter(|| relabel_labels(black_box(&keep), black_box(&series)))
    });

    let drop = [rule(
        RelabelConfig::builder()
            .action("drop")
            .source_labels(["__name__", "code"])
            .regex(r"http_.*;5\d\d"),
    )];
    c.bench_function("drop_no_match", |b| {
        b.iter(|| relabel_labels(black_box(&drop), black_box(&series)))
    });

    let target = target();
    let target_rules = [
        rule(
            RelabelConfig::builder()
                .action("labelmap")
                .regex("__meta_kubernetes_pod_label_(.+)"),
        ),
        rule(
            RelabelConfig::builder()
                .source_labels([
                    "__address__",
                    "__meta_kubernetes_pod_annotation_prometheus_io_port",
                ])
                .regex(r"([^:]+)(?::\d+)?;(\d+)")
                .replacement("$1:$2")
                .target_label("__address__"),
        ),
        rule(
            RelabelConfig::builder()
                .source_labels(["__meta_kubernetes_namespace"])
                .target_label("namespace"),
        ),
        rule(
            RelabelConfig::builder()
                .action("hashmod")
                .source_labels(["__address__"])
                .modulus(4)
                .target_label("__tmp_shard"),
        ),
        rule(
            RelabelConfig::builder()
                .action("labeldrop")
                .regex("__meta_kubernetes_pod_annotation_.*"),
        ),
    ];
    c.bench_function("target_pipeline", |b| {
        b.iter(|| relabel_labels(black_box(&target_rules), black_box(&target)))
    });
}

criterion_group!(relabel_benches, benches);
criterion_main!(relabel_benches);
