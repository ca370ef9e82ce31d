//! Encode + snappy-compress one full batch (2000 samples, the default
//! `max_samples_per_send`) of realistic series: from owned label sets
//! (plain protobuf, then snappy) and from the label store the queues read
//! (interned pairs written as a snappy stream with copies).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tributary_model::{LabelStore, Labels, SeriesRef, Timestamp};
use tributary_remote::{
    EncodableSample, ExternalLabels, ItemLabels, WriteRequestEncoder, WriteRequestV2Encoder,
};

struct Sample {
    labels: Labels,
    t: Timestamp,
    v: f64,
}

impl<'a> EncodableSample<'a> for &'a Sample {
    fn labels(&self) -> ItemLabels<'a> {
        ItemLabels::Owned(&self.labels)
    }
    fn timestamp(&self) -> Timestamp {
        self.t
    }
    fn value(&self) -> f64 {
        self.v
    }
}

struct StoredSample<'a> {
    store: &'a LabelStore,
    external: &'a ExternalLabels,
    series: SeriesRef,
    t: Timestamp,
    v: f64,
}

impl<'a> EncodableSample<'a> for &StoredSample<'a> {
    fn labels(&self) -> ItemLabels<'a> {
        match self.store.pair_ids(self.series) {
            Some(ids) => ItemLabels::Stored {
                pairs: self.store.pairs(),
                ids,
                external: self.external,
            },
            None => panic!("series {} not stored", self.series),
        }
    }
    fn timestamp(&self) -> Timestamp {
        self.t
    }
    fn value(&self) -> f64 {
        self.v
    }
}

/// The series of an exposition page (`TRIBUTARY_BENCH_PAGE`, e.g. one
/// of `../shared/bench`'s farm pages), plain `name{k="v",…} value` lines
/// only, with `job` and `instance` added as a scrape would.
fn page_batch(path: &str) -> Vec<Sample> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => panic!("{path}: {e}"),
    };
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.contains('\\') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, rest) = series.split_once('{').unwrap_or((series, "}"));
        let mut pairs = vec![
            ("__name__".to_owned(), name.to_owned()),
            ("job".to_owned(), "bench".to_owned()),
            ("instance".to_owned(), "127.0.0.1:20045".to_owned()),
        ];
        for kv in rest.trim_end_matches('}').split("\",") {
            if let Some((k, v)) = kv.split_once("=\"") {
                pairs.push((k.to_owned(), v.trim_end_matches('"').to_owned()));
            }
        }
        out.push(Sample {
            labels: Labels::from_pairs(pairs),
            t: 1_700_000_000_000,
            v: value.parse().unwrap_or(0.0),
        });
    }
    out
}

/// cAdvisor/node-exporter-like series of one target scrape.
fn batch() -> Vec<Sample> {
    if let Ok(path) = std::env::var("TRIBUTARY_BENCH_PAGE") {
        return page_batch(&path);
    }
    (0..2000)
        .map(|i| Sample {
            labels: Labels::from_pairs([
                ("__name__", format!("container_metric_{}", i % 40)),
                ("container", format!("app-{}", i / 40 % 10)),
                (
                    "id",
                    format!(
                        "/kubepods/burstable/pod{:08x}-c393-7e37/{:064x}",
                        i / 40,
                        i / 40
                    ),
                ),
                ("instance", "10.0.3.17:9100".to_owned()),
                ("job", "node".to_owned()),
                (
                    "namespace",
                    ["default", "monitoring", "kube-system"][i % 3].to_owned(),
                ),
                ("pod", format!("app-{}-7c9f8b6d4-x{}", i / 40 % 10, i / 400)),
            ]),
            t: 1_700_000_000_000,
            v: i as f64 * 1.5,
        })
        .collect()
}

fn bench_encode(c: &mut Criterion) {
    let samples = batch();
    let mut store = LabelStore::new();
    for (i, s) in samples.iter().enumerate() {
        if let Err(e) = store.insert(SeriesRef(i as u64 + 1), &s.labels) {
            panic!("{e}");
        }
    }
    let external = ExternalLabels::new(&Labels::from_pairs([("cluster", "edge-1")]));
    let no_external = ExternalLabels::default();
    let stored: Vec<StoredSample<'_>> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| StoredSample {
            store: &store,
            external: &no_external,
            series: SeriesRef(i as u64 + 1),
            t: s.t,
            v: s.v,
        })
        .collect();
    let stored_ext: Vec<StoredSample<'_>> = stored
        .iter()
        .map(|s| StoredSample {
            external: &external,
            ..*s
        })
        .collect();
    let mut enc = WriteRequestEncoder::new();
    let mut enc2 = WriteRequestV2Encoder::new();
    // Wire size per sample, printed once: what the benchmark cannot time.
    let n = samples.len() as f64;
    let sizes = [
        enc.encode(&samples).map(|b| b.len()),
        enc.encode(&stored).map(|b| b.len()),
        enc2.encode(&samples).map(|b| b.len()),
    ];
    if let [Ok(plain), Ok(stream), Ok(v2)] = sizes {
        eprintln!(
            "wire bytes/sample: v1 owned+snappy {:.2}, v1 interned stream {:.2}, v2 {:.2}",
            plain as f64 / n,
            stream as f64 / n,
            v2 as f64 / n,
        );
    }
    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("encode_owned_snappy_2000", |b| {
        b.iter(|| enc.encode(&samples).map(|body| body.len()))
    });
    g.bench_function("encode_interned_stream_2000", |b| {
        b.iter(|| enc.encode(&stored).map(|body| body.len()))
    });
    g.bench_function("encode_interned_stream_external_2000", |b| {
        b.iter(|| enc.encode(&stored_ext).map(|body| body.len()))
    });
    g.bench_function("encode_v2_snappy_2000", |b| {
        b.iter(|| enc2.encode(&samples).map(|body| body.len()))
    });
    g.finish();
}

/// The same batch size drawn from a store of 200 targets × the page's
/// series (400k, the bench's `--targets 200 --series 2000`), each batch
/// from the next target: the label store no longer fits the caches, as in
/// the agent, so what this times includes the lookups' cache misses.
fn bench_encode_from_large_store(c: &mut Criterion) {
    const TARGETS: u64 = 200;
    let samples = batch();
    let per_target = samples.len() as u64;
    let mut store = LabelStore::new();
    for t in 0..TARGETS {
        for (i, s) in samples.iter().enumerate() {
            // Every value but the metric name and job is the target's own,
            // as instance, pod and container ids are on a real fleet.
            let labels = Labels::from_pairs(s.labels.iter().map(|l| {
                let value = match l.name {
                    "__name__" | "job" => l.value.to_owned(),
                    _ => format!("{}-t{t}", l.value),
                };
                (l.name.to_owned(), value)
            }));
            if let Err(e) = store.insert(SeriesRef(t * per_target + i as u64 + 1), &labels) {
                panic!("{e}");
            }
        }
    }
    let external = ExternalLabels::default();
    let targets: Vec<Vec<StoredSample<'_>>> = (0..TARGETS)
        .map(|t| {
            samples
                .iter()
                .enumerate()
                .map(|(i, s)| StoredSample {
                    store: &store,
                    external: &external,
                    series: SeriesRef(t * per_target + i as u64 + 1),
                    t: s.t,
                    v: s.v,
                })
                .collect()
        })
        .collect();
    let mut enc = WriteRequestEncoder::new();
    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(per_target));
    let mut next = targets.iter().cycle();
    g.bench_function("encode_interned_stream_2000_of_400k", |b| {
        b.iter(|| {
            let batch = next.next().map(Vec::as_slice).unwrap_or_default();
            enc.encode(batch).map(|body| body.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_encode, bench_encode_from_large_store);
criterion_main!(benches);
