//! `--enable-feature=created-timestamp-zero-ingestion` through real scrape
//! loops against loopback targets (OpenMetrics `_created` lines and
//! protobuf `created_timestamp` fields), recorded by the in-memory storage:
//! with the feature a zero sample precedes the first sample after each
//! created timestamp and OpenMetrics `_created` series are not stored;
//! without it nothing changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::header;
use axum::routing::get;
use axum::Router;
use tributary_exposition::testing::{delimited, Msg};
use tributary_model::testing::MemStorage;
use tributary_model::{HistogramCount, ResetHint};
use tributary_scrape::ScrapeManager;

/// The created timestamp served first: 1700000000.25 s (exact in binary,
/// so the OpenMetrics seconds convert to this exact millisecond).
const CT0: i64 = 1_700_000_000_250;

#[derive(Clone, Copy, PartialEq)]
enum Body {
    OpenMetrics,
    Protobuf,
}

struct Target {
    addr: String,
    scrapes: Arc<AtomicU64>,
    /// The created timestamp currently served (ms).
    ct: Arc<AtomicI64>,
    /// Set by the test: the next response restarts the counters, with a
    /// created timestamp just after the previous response.
    reset: Arc<AtomicBool>,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn om_body(n: u64, ct: i64) -> String {
    let secs = format!("{}.{:03}", ct.div_euclid(1000), ct.rem_euclid(1000));
    format!(
        "# TYPE c counter\nc_total{{a=\"1\"}} {n}\nc_created{{a=\"1\"}} {secs}\n\
         # TYPE s summary\ns{{quantile=\"0.5\"}} {n}\ns_count {n}\ns_sum {n}\ns_created {secs}\n\
         # TYPE h histogram\nh_bucket{{le=\"1\"}} {n}\nh_bucket{{le=\"+Inf\"}} {n}\nh_count {n}\nh_sum {n}\nh_created {secs}\n\
         # TYPE g gauge\ng_created 5\n# EOF\n"
    )
}

fn proto_body(n: u64, ct: i64) -> Vec<u8> {
    let ts = Msg::default()
        .varint(1, ct.div_euclid(1000) as u64)
        .varint(2, (ct.rem_euclid(1000) * 1_000_000) as u64);
    let counter = Msg::default().str(1, "pc_total").varint(3, 0).msg(
        4,
        Msg::default().msg(3, Msg::default().double(1, n as f64).msg(3, ts.clone())),
    );
    let summary = Msg::default().str(1, "ps").varint(3, 2).msg(
        4,
        Msg::default().msg(
            4,
            Msg::default()
                .varint(1, n)
                .double(2, n as f64)
                .msg(3, Msg::default().double(1, 0.5).double(2, n as f64))
                .msg(4, ts.clone()),
        ),
    );
    // A native histogram: schema 3, zero threshold 0.001, n observations
    // in the zero bucket.
    let histogram = Msg::default()
        .varint(1, n)
        .double(2, 0.0)
        .sint(5, 3)
        .double(6, 0.001)
        .varint(7, n)
        .msg(15, ts);
    let hist = Msg::default()
        .str(1, "ph_seconds")
        .varint(3, 4)
        .msg(4, Msg::default().msg(7, histogram));
    delimited(&[counter, summary, hist])
}

async fn start_target(kind: Body) -> Target {
    let scrapes = Arc::new(AtomicU64::new(0));
    let ct = Arc::new(AtomicI64::new(CT0));
    let reset = Arc::new(AtomicBool::new(false));
    let last_serve = Arc::new(AtomicI64::new(0));
    let (s, c, r) = (scrapes.clone(), ct.clone(), reset.clone());
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let now = wall_ms();
            if r.swap(false, Ordering::SeqCst) {
                // After the previous scrape's timestamp (taken before its
                // request), before this one's (an interval later).
                c.store(last_serve.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
            }
            last_serve.store(now, Ordering::SeqCst);
            let n = s.fetch_add(1, Ordering::SeqCst) + 1;
            let ct = c.load(Ordering::SeqCst);
            async move {
                match kind {
                    Body::OpenMetrics => (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        om_body(n, ct).into_bytes(),
                    ),
                    Body::Protobuf => (
                        [(
                            header::CONTENT_TYPE,
                            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
                        )],
                        proto_body(n, ct),
                    ),
                }
            }
        }),
    );
    let addr = common::serve(app).await;
    Target {
        addr,
        scrapes,
        ct,
        reset,
    }
}

fn manager(storage: &MemStorage, addr: &str, extra: &str, ct_zero: bool) -> ScrapeManager {
    let yaml = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n  - job_name: j\n{extra}    static_configs: []\n"
    );
    let cfg = tributary_config::load_str(&yaml, "test.yml", std::path::Path::new(".")).unwrap();
    let mut m = common::new_manager(Arc::new(storage.clone()));
    m.set_created_timestamp_zero_ingestion(ct_zero);
    common::run_job_j(&mut m, &cfg, &[addr.to_string()], &[]);
    m
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
    // Let the loop finish appending the last scrape.
    tokio::time::sleep(Duration::from_millis(80)).await;
}

/// `(t, v)` of every committed sample of the series `name` whose labels
/// (besides job and instance) include `label`.
fn points(storage: &MemStorage, name: &str, label: Option<(&str, &str)>) -> Vec<(i64, f64)> {
    storage
        .samples_named(name)
        .into_iter()
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| (s.t, s.v))
        .collect()
}

fn zeros(p: &[(i64, f64)]) -> Vec<i64> {
    p.iter()
        .filter(|(_, v)| *v == 0.0)
        .map(|(t, _)| *t)
        .collect()
}

/// The series starts with the zero sample at `ct`, then the first real
/// sample (values are the target's scrape count, never 0), after it.
fn assert_zero_first(name: &str, p: &[(i64, f64)], ct: i64) {
    assert!(p.len() >= 3, "{name}: {p:?}");
    assert_eq!(p[0], (ct, 0.0), "{name}: zero sample first, at the CT");
    assert!(p[1].1 == 1.0 && p[1].0 > ct, "{name}: {p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_created_lines_become_zero_samples_with_the_feature() {
    let t = start_target(Body::OpenMetrics).await;
    let storage = MemStorage::new();
    let mut m = manager(&storage, &t.addr, "", true);
    wait_scrapes(&t, 3).await;
    // A counter reset: the next response carries a newer created timestamp.
    t.reset.store(true, Ordering::SeqCst);
    wait_scrapes(&t, 3).await;
    m.stop();
    let ct1 = t.ct.load(Ordering::SeqCst);
    assert!(ct1 > CT0);

    let c = points(&storage, "c_total", Some(("a", "1")));
    assert_zero_first("c_total", &c, CT0);
    // One zero per created timestamp: not repeated while the CT stays, and
    // a new one (within the 1 ms the seconds-to-ms truncation may cost)
    // for the reset.
    let z = zeros(&c);
    assert_eq!(z.len(), 2, "{c:?}");
    assert!((ct1 - 1..=ct1).contains(&z[1]), "{z:?} vs {ct1}");
    let at = c.iter().position(|(t, _)| *t == z[1]).unwrap();
    assert!(c[at + 1..].iter().all(|(t, _)| *t > z[1]));

    for (name, label) in [
        ("s", Some(("quantile", "0.5"))),
        ("s_count", None),
        ("s_sum", None),
        ("h_bucket", Some(("le", "1.0"))),
        ("h_bucket", Some(("le", "+Inf"))),
        ("h_count", None),
        ("h_sum", None),
    ] {
        let p = points(&storage, name, label);
        assert_zero_first(name, &p, CT0);
        assert_eq!(zeros(&p).len(), 2, "{name} {label:?}: {p:?}");
    }
    for name in ["c_created", "s_created", "h_created"] {
        assert!(storage.samples_named(name).is_empty(), "{name} stored");
    }
    // A gauge owns no `_created` series: an ordinary sample.
    assert!(points(&storage, "g_created", None)
        .iter()
        .all(|(_, v)| *v == 5.0));
    assert!(!storage.samples_named("g_created").is_empty());
    // The skipped lines are not scraped samples either.
    let scraped = points(&storage, "scrape_samples_scraped", None);
    assert!(scraped.iter().all(|(_, v)| *v == 9.0), "{scraped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_created_lines_are_series_without_the_feature() {
    let t = start_target(Body::OpenMetrics).await;
    let storage = MemStorage::new();
    let mut m = manager(&storage, &t.addr, "", false);
    wait_scrapes(&t, 3).await;
    m.stop();
    for (name, label) in [
        ("c_total", Some(("a", "1"))),
        ("s", Some(("quantile", "0.5"))),
        ("h_bucket", Some(("le", "+Inf"))),
        ("h_sum", None),
    ] {
        let p = points(&storage, name, label);
        assert!(p.len() >= 2, "{name}");
        assert!(
            zeros(&p).is_empty(),
            "{name}: zero sample without the feature"
        );
    }
    for name in ["c_created", "s_created", "h_created"] {
        let p = points(&storage, name, None);
        assert!(p.len() >= 2, "{name} not stored");
        assert!(
            p.iter().all(|(_, v)| *v == 1_700_000_000.25),
            "{name}: {p:?}"
        );
    }
    let scraped = points(&storage, "scrape_samples_scraped", None);
    assert!(scraped.iter().all(|(_, v)| *v == 12.0), "{scraped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_created_timestamps_become_zero_samples_and_zero_histograms() {
    let t = start_target(Body::Protobuf).await;
    let storage = MemStorage::new();
    let mut m = manager(
        &storage,
        &t.addr,
        "    scrape_native_histograms: true\n",
        true,
    );
    wait_scrapes(&t, 3).await;
    t.reset.store(true, Ordering::SeqCst);
    wait_scrapes(&t, 3).await;
    m.stop();
    let ct1 = t.ct.load(Ordering::SeqCst);

    for (name, label) in [
        ("pc_total", None),
        ("ps", Some(("quantile", "0.5"))),
        ("ps_count", None),
        ("ps_sum", None),
    ] {
        let p = points(&storage, name, label);
        assert_zero_first(name, &p, CT0);
        // Protobuf timestamps are exact milliseconds.
        assert_eq!(zeros(&p), vec![CT0, ct1], "{name}: {p:?}");
    }

    let h: Vec<_> = storage
        .histograms()
        .into_iter()
        .filter(|h| h.labels.metric_name() == Some("ph_seconds"))
        .collect();
    assert!(h.len() >= 4, "{h:?}");
    let zero_at: Vec<i64> = h
        .iter()
        .filter(|r| r.h.count == HistogramCount::Int(0))
        .map(|r| r.t)
        .collect();
    assert_eq!(zero_at, vec![CT0, ct1]);
    let z = &h[0].h;
    assert_eq!(h[0].t, CT0);
    assert_eq!(z.schema, 3, "zero histogram keeps the schema");
    assert_eq!(z.zero_threshold, 0.001);
    assert_eq!(z.zero_count, HistogramCount::Int(0));
    assert_eq!(z.reset_hint, ResetHint::Yes);
    assert!(z.positive_spans.is_empty() && z.negative_spans.is_empty());
    assert!(h[1].t > CT0 && h[1].h.count != HistogramCount::Int(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_created_timestamps_are_ignored_without_the_feature() {
    let t = start_target(Body::Protobuf).await;
    let storage = MemStorage::new();
    let mut m = manager(
        &storage,
        &t.addr,
        "    scrape_native_histograms: true\n",
        false,
    );
    wait_scrapes(&t, 3).await;
    m.stop();
    for name in ["pc_total", "ps_count"] {
        let p = points(&storage, name, None);
        assert!(p.len() >= 2, "{name}");
        assert!(zeros(&p).is_empty(), "{name}: {p:?}");
    }
    let h = storage.histograms();
    assert!(h.len() >= 2);
    assert!(h
        .iter()
        .all(|r| r.h.count != HistogramCount::Int(0) && r.t > CT0));
}
