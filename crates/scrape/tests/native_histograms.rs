//! Native histograms, exemplars and metadata from a loopback protobuf
//! target through the scrape loop into the real WAL, read back with the
//! WAL's own decoders; plus the per-target metadata accessor and the stale
//! histogram written when the histogram disappears.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use tributary_exposition::testing::{put_varint, Msg};
use tributary_model::{HistogramCount, Labels, MetricType, SeriesRef, Storage};
use tributary_scrape::ScrapeManager;
use tributary_wal::record::{self, RecordType};
use tributary_wal::{
    AgentStorage, Position, RefExemplar, RefHistogram, RefMetadata, WalOptions, WalReader,
};

// ----- a tiny protobuf encoder for the target's body ------------------------

/// io.prometheus.client families: a native histogram (count 5, sum 9,
/// schema 3, two positive spans, one timestamped exemplar, plus one classic
/// bucket) and a counter with an exemplar.
fn exposition(with_histogram: bool, exemplar_ts_s: u64) -> Vec<u8> {
    let span = |o: i64, l: u64| Msg::default().sint(1, o).varint(2, l);
    let label = |n: &str, v: &str| Msg::default().str(1, n).str(2, v);
    let ts = |s: u64| Msg::default().varint(1, s);
    let histogram = Msg::default()
        .varint(1, 5)
        .double(2, 9.0)
        .sint(5, 3)
        .double(6, 0.001)
        .varint(7, 1)
        .msg(12, span(-1, 2))
        .msg(12, span(1, 1))
        .bytes(13, &{
            let mut packed = Vec::new();
            for d in [1i64, 1, -1] {
                put_varint(&mut packed, ((d << 1) ^ (d >> 63)) as u64);
            }
            packed
        })
        .msg(3, Msg::default().varint(1, 4).double(2, 1.0))
        .msg(
            16,
            Msg::default()
                .msg(1, label("trace_id", "h1"))
                .double(2, 0.7)
                .msg(3, ts(exemplar_ts_s)),
        );
    let hist_family = Msg::default()
        .str(1, "rpc_seconds")
        .str(2, "RPC latency.")
        .varint(3, 4)
        .msg(
            4,
            Msg::default().msg(1, label("svc", "api")).msg(7, histogram),
        );
    let counter = Msg::default().double(1, 42.0).msg(
        2,
        Msg::default()
            .msg(1, label("trace_id", "c1"))
            .double(2, 1.0),
    );
    let counter_family = Msg::default()
        .str(1, "jobs_total")
        .str(2, "Jobs done.")
        .varint(3, 0)
        .msg(4, Msg::default().msg(3, counter));
    let mut out = Vec::new();
    let families = if with_histogram {
        vec![hist_family, counter_family]
    } else {
        vec![counter_family]
    };
    for f in families {
        put_varint(&mut out, f.0.len() as u64);
        out.extend_from_slice(&f.0);
    }
    out
}

struct Target {
    addr: String,
    scrapes: Arc<AtomicU64>,
    with_histogram: Arc<AtomicBool>,
}

async fn start_target() -> Target {
    let scrapes = Arc::new(AtomicU64::new(0));
    let with_histogram = Arc::new(AtomicBool::new(true));
    let (s, h) = (scrapes.clone(), with_histogram.clone());
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let n = s.fetch_add(1, Ordering::SeqCst);
            let _ = n;
            let body = exposition(h.load(Ordering::SeqCst), 1_000);
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
                    )],
                    body,
                )
            }
        }),
    );
    let addr = common::serve(app).await;
    Target {
        addr,
        scrapes,
        with_histogram,
    }
}

async fn wait_scrapes(t: &Target, n: u64) {
    let start = tokio::time::Instant::now();
    let target = t.scrapes.load(Ordering::SeqCst) + n;
    while t.scrapes.load(Ordering::SeqCst) < target {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "target not scraped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(80)).await;
}

#[derive(Default)]
struct Read {
    series: Vec<(SeriesRef, Labels)>,
    samples: Vec<tributary_wal::RefSample>,
    histograms: Vec<RefHistogram>,
    exemplars: Vec<RefExemplar>,
    metadata: Vec<RefMetadata>,
}

fn read_wal(dir: &std::path::Path) -> Read {
    let mut out = Read::default();
    let mut r = WalReader::open(dir, Position::new(0, 0)).unwrap();
    while let Some(rec) = r.next_record().unwrap() {
        match record::record_type(rec.payload) {
            Some(RecordType::Series) => {
                record::decode_series(rec.payload, &mut out.series).unwrap()
            }
            Some(RecordType::Samples) => {
                record::decode_samples(rec.payload, &mut out.samples).unwrap()
            }
            Some(RecordType::HistogramSamples | RecordType::FloatHistogramSamples) => {
                record::decode_histograms(rec.payload, &mut out.histograms).unwrap()
            }
            Some(RecordType::Exemplars) => {
                record::decode_exemplars(rec.payload, &mut out.exemplars).unwrap()
            }
            Some(RecordType::Metadata) => {
                record::decode_metadata(rec.payload, &mut out.metadata).unwrap()
            }
            _ => {}
        }
    }
    out
}

fn manager(storage: Arc<dyn Storage>, extra: &str, addr: &str) -> ScrapeManager {
    let yaml = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n  - job_name: j\n    scrape_protocols: [PrometheusProto]\n{extra}    static_configs: []\n"
    );
    let cfg = tributary_config::load_str(&yaml, "test.yml", std::path::Path::new(".")).unwrap();
    let mut m = common::new_manager(storage);
    common::run_job_j(&mut m, &cfg, &[addr.to_string()], &[]);
    m
}

fn name_of(read: &Read, r: SeriesRef) -> String {
    read.series
        .iter()
        .find(|(s, _)| *s == r)
        .and_then(|(_, l)| l.metric_name().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_exemplars_and_metadata_reach_the_wal() {
    let t = start_target().await;
    let dir = tempfile::tempdir().unwrap();
    let wal =
        AgentStorage::open(dir.path(), WalOptions::default(), &mut Default::default()).unwrap();
    let mut m = manager(wal.clone(), "    scrape_native_histograms: true\n", &t.addr);
    wait_scrapes(&t, 2).await;

    let meta = m.target_metadata();
    assert_eq!(meta.len(), 1);
    assert_eq!(meta[0].target.get("instance"), Some(t.addr.as_str()));
    let families: Vec<(&str, MetricType, &str)> = meta[0]
        .metrics
        .iter()
        .map(|f| (f.family.as_str(), f.kind, f.help.as_str()))
        .collect();
    assert_eq!(
        families,
        vec![
            ("jobs_total", MetricType::Counter, "Jobs done."),
            ("rpc_seconds", MetricType::Histogram, "RPC latency."),
        ]
    );

    // The histogram disappears: its series gets a stale histogram.
    t.with_histogram.store(false, Ordering::SeqCst);
    wait_scrapes(&t, 2).await;
    m.stop();
    wal.close().unwrap();

    let read = read_wal(&dir.path().join("wal"));
    let hist: Vec<&RefHistogram> = read.histograms.iter().collect();
    assert!(
        hist.len() >= 3,
        "two scrapes and a stale marker: {}",
        hist.len()
    );
    assert!(hist
        .iter()
        .all(|h| name_of(&read, h.series) == "rpc_seconds"));
    let first = &hist[0].h;
    assert_eq!(first.count, HistogramCount::Int(5));
    assert_eq!(first.sum, 9.0);
    assert_eq!(first.schema, 3);
    assert_eq!(first.positive_deltas, vec![1, 1, -1]);
    assert!(!first.is_stale());
    assert!(hist.last().unwrap().h.is_stale(), "stale histogram written");
    // Without always_scrape_classic_histograms no classic series exist.
    assert!(read
        .series
        .iter()
        .all(|(_, l)| l.metric_name() != Some("rpc_seconds_bucket")));

    // Exemplars: the histogram's is timestamped and the same every scrape
    // (logged once); the counter's has no timestamp, so it takes each
    // scrape's (logged every scrape, as Prometheus does).
    let hist_ex: Vec<&RefExemplar> = read
        .exemplars
        .iter()
        .filter(|e| name_of(&read, e.series) == "rpc_seconds")
        .collect();
    assert_eq!(hist_ex.len(), 1, "an unchanged exemplar is logged once");
    assert_eq!(hist_ex[0].labels.get("trace_id"), Some("h1"));
    assert_eq!(hist_ex[0].v, 0.7);
    assert_eq!(hist_ex[0].t, 1_000_000);
    let counter_ex: Vec<&RefExemplar> = read
        .exemplars
        .iter()
        .filter(|e| name_of(&read, e.series) == "jobs_total")
        .collect();
    assert!(counter_ex.len() >= 4);
    assert!(counter_ex.windows(2).all(|w| w[1].t > w[0].t));
    let counter_ts: Vec<i64> = read
        .samples
        .iter()
        .filter(|s| s.v == 42.0)
        .map(|s| s.t)
        .collect();
    assert!(counter_ex.iter().all(|e| counter_ts.contains(&e.t)));

    // Metadata: once per series, not per scrape.
    let md: Vec<(String, MetricType, String)> = read
        .metadata
        .iter()
        .map(|m| (name_of(&read, m.series), m.kind, m.help.clone()))
        .collect();
    assert_eq!(
        md,
        vec![
            (
                "rpc_seconds".into(),
                MetricType::Histogram,
                "RPC latency.".into()
            ),
            (
                "jobs_total".into(),
                MetricType::Counter,
                "Jobs done.".into()
            ),
        ]
    );
    assert!(read.samples.iter().any(|s| s.v == 42.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_native_histograms_classic_series_are_scraped() {
    let t = start_target().await;
    let storage = tributary_model::testing::MemStorage::new();
    let mut m = manager(Arc::new(storage.clone()), "", &t.addr);
    wait_scrapes(&t, 1).await;
    m.stop();
    assert!(storage.histograms().is_empty());
    let buckets = storage.samples_named("rpc_seconds_bucket");
    assert!(!buckets.is_empty(), "classic buckets kept");
    let count = storage.samples_named("rpc_seconds_count");
    assert_eq!(count[0].v, 5.0);
    let l = &count[0].labels;
    assert_eq!(
        storage.metadata(l).map(|m| m.kind),
        Some(MetricType::Histogram)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_scrape_classic_keeps_both() {
    let t = start_target().await;
    let storage = tributary_model::testing::MemStorage::new();
    let mut m = manager(
        Arc::new(storage.clone()),
        "    scrape_native_histograms: true\n    always_scrape_classic_histograms: true\n",
        &t.addr,
    );
    wait_scrapes(&t, 1).await;
    m.stop();
    let h = storage.histograms();
    assert!(!h.is_empty());
    assert_eq!(h[0].labels.metric_name(), Some("rpc_seconds"));
    assert!(!storage.samples_named("rpc_seconds_bucket").is_empty());
    assert!(!storage.exemplars().is_empty());
}

/// The target's histogram has schema 3 and buckets -1, 0 (span 1) and 2
/// (span 2) with counts 1, 2, 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_limit_and_min_bucket_factor_lower_the_resolution() {
    let t = start_target().await;
    let storage = tributary_model::testing::MemStorage::new();
    let mut m = manager(
        Arc::new(storage.clone()),
        "    scrape_native_histograms: true\n    native_histogram_bucket_limit: 2\n",
        &t.addr,
    );
    wait_scrapes(&t, 1).await;
    m.stop();
    let h = &storage.histograms()[0].h;
    // One schema coarser, -1 and 0 share bucket 0: counts 3 and 1.
    assert_eq!(h.schema, 2);
    assert_eq!(
        h.positive_spans,
        vec![tributary_model::BucketSpan {
            offset: 0,
            length: 2
        }]
    );
    assert_eq!(h.positive_deltas, vec![3, -2]);
    assert_eq!(h.count, HistogramCount::Int(5));

    let t = start_target().await;
    let storage = tributary_model::testing::MemStorage::new();
    // Growth factor ≥ 1.5 allows schema 0 at most.
    let mut m = manager(
        Arc::new(storage.clone()),
        "    scrape_native_histograms: true\n    native_histogram_min_bucket_factor: 1.5\n",
        &t.addr,
    );
    wait_scrapes(&t, 1).await;
    m.stop();
    let h = &storage.histograms()[0].h;
    assert_eq!(h.schema, 0);
    assert_eq!(h.positive_deltas, vec![3, -2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_histogram_that_cannot_meet_the_bucket_limit_fails_the_scrape() {
    let t = start_target().await;
    let storage = tributary_model::testing::MemStorage::new();
    // Buckets on both sides of 1 never merge: one bucket is out of reach.
    let mut m = manager(
        Arc::new(storage.clone()),
        "    scrape_native_histograms: true\n    native_histogram_bucket_limit: 1\n",
        &t.addr,
    );
    wait_scrapes(&t, 2).await;
    let snapshot = m.snapshot();
    m.stop();
    let target = &snapshot[0].active[0];
    assert_eq!(target.health.last_error, "histogram bucket limit exceeded");
    assert!(
        storage.histograms().is_empty(),
        "the scrape was rolled back"
    );
    let up = storage.samples_named("up");
    assert!(!up.is_empty() && up.iter().all(|s| s.v == 0.0), "up = 0");
}
