//! Append throughput: 2000 series per commit, the shape of one large scrape;
//! and the first commit of a large target, every one of its series new.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use prometheus_client::registry::Registry;
use tributary_model::{Labels, SeriesRef, Storage};
use tributary_wal::{AgentStorage, WalOptions};

const SERIES: usize = 2000;

/// A fresh storage in a temporary directory (kept alive with it).
fn open_storage() -> Option<(tempfile::TempDir, Arc<AgentStorage>)> {
    let dir = tempfile::tempdir().ok()?;
    let storage =
        AgentStorage::open(dir.path(), WalOptions::default(), &mut Registry::default()).ok()?;
    Some((dir, storage))
}

fn bench_append(c: &mut Criterion) {
    let Some((_dir, storage)) = open_storage() else {
        return;
    };
    let labels: Vec<Labels> = (0..SERIES)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", "http_requests_total"),
                ("instance", "10.0.0.1:9100"),
                ("job", "node"),
                ("path", &format!("/api/v1/item/{i}")),
            ])
        })
        .collect();
    let mut app = storage.appender();
    let refs: Vec<SeriesRef> = labels.iter().filter_map(|l| app.series(l).ok()).collect();
    let mut t = 1_000i64;
    c.bench_function("commit_2000_series", |b| {
        b.iter(|| {
            t += 1;
            for r in &refs {
                let _ = app.append(*r, t, black_box(t as f64));
            }
            black_box(app.commit().is_ok())
        })
    });
}

/// Series a large target (kube-state-metrics, a federation endpoint)
/// exposes, all new on its first scrape.
const NEW_SERIES: usize = 20_000;

fn bench_first_commit(c: &mut Criterion) {
    let Some((_dir, storage)) = open_storage() else {
        return;
    };
    let mut round = 0u64;
    let mut group = c.benchmark_group("first_commit");
    group.sample_size(10);
    group.bench_function("20000_new_series", |b| {
        b.iter(|| {
            round += 1;
            let mut app = storage.appender();
            for i in 0..NEW_SERIES {
                let labels = Labels::from_pairs([
                    ("__name__", "kube_pod_info"),
                    ("pod", &format!("pod-{round}-{i}")),
                ]);
                if let Ok(r) = app.series(&labels) {
                    let _ = app.append(r, 1_000, 1.0);
                }
            }
            black_box(app.commit().is_ok())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_first_commit);
criterion_main!(benches);
