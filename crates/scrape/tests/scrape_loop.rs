//! Scrape pools against real loopback HTTP targets, recording into the
//! in-memory storage: values, labels, synthetic series, staleness, limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use tributary_model::is_stale_nan;
use tributary_model::testing::MemStorage;
use tributary_scrape::ScrapeManager;

/// What the target answers, switched by the test.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    WithoutB,
    Error500,
    Garbage,
}

struct Target {
    addr: String,
    mode: Arc<AtomicUsize>,
    scrapes: Arc<AtomicU64>,
}

const MODES: [Mode; 4] = [Mode::Normal, Mode::WithoutB, Mode::Error500, Mode::Garbage];

async fn start_target() -> Target {
    let mode = Arc::new(AtomicUsize::new(0));
    let scrapes = Arc::new(AtomicU64::new(0));
    let (m, s) = (mode.clone(), scrapes.clone());
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let m = MODES[m.load(Ordering::SeqCst)];
            let n = s.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let ct = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
                match m {
                    Mode::Error500 => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, ct, String::from("boom")),
                    Mode::Garbage => (axum::http::StatusCode::OK, ct, String::from("metric{ unterminated 1\n")),
                    _ => {
                        let mut body = format!("# TYPE t_seq counter\nt_seq {n}\nt_dyn{{id=\"a\"}} 1\nt_clash{{job=\"exposed\"}} 5\n");
                        if m == Mode::Normal {
                            body.push_str("t_dyn{id=\"b\"} 2\n");
                        }
                        (axum::http::StatusCode::OK, ct, body)
                    }
                }
            }
        }),
    );
    let addr = common::serve(app).await;
    Target {
        addr,
        mode,
        scrapes,
    }
}

fn config(extra: &str) -> tributary_config::Config {
    let yaml = format!("global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n  - job_name: j\n{extra}");
    tributary_config::load_str(&yaml, "test.yml", std::path::Path::new(".")).unwrap()
}

fn manager(storage: &MemStorage, cfg: &tributary_config::Config, addr: &str) -> ScrapeManager {
    let mut m = common::new_manager(Arc::new(storage.clone()));
    common::run_job_j(
        &mut m,
        cfg,
        &[addr.to_string()],
        &[("team".into(), "t1".into())],
    );
    m
}

/// A manager scraping `t` alone as job `j` (no target labels of the
/// test's own) with `extra` job settings, counting into the returned
/// metrics.
fn counting_manager(
    storage: &MemStorage,
    extra: &str,
    t: &Target,
) -> (ScrapeManager, tributary_scrape::ScrapeMetrics) {
    let metrics = tributary_scrape::ScrapeMetrics::default();
    let mut m = common::new_manager_counting(Arc::new(storage.clone()), metrics.clone());
    common::run_job_j(&mut m, &config(extra), std::slice::from_ref(&t.addr), &[]);
    (m, metrics)
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
    tokio::time::sleep(Duration::from_millis(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_append_values_labels_and_report_series() {
    let t = start_target().await;
    let storage = MemStorage::new();
    let mut m = manager(&storage, &config("    static_configs: []\n"), &t.addr);
    wait_scrapes(&t, 2).await;
    m.stop();
    let seq = storage.samples_named("t_seq");
    assert!(seq.len() >= 2);
    let l = &seq[0].labels;
    assert_eq!(l.get("job"), Some("j"));
    assert_eq!(l.get("instance"), Some(t.addr.as_str()));
    assert_eq!(l.get("team"), Some("t1"));
    // Values follow the target's sequence, timestamps increase.
    assert!(seq.windows(2).all(|w| w[1].v > w[0].v && w[1].t > w[0].t));
    // Conflicting exposed label moved to exported_job.
    let clash = storage.samples_named("t_clash");
    assert_eq!(clash[0].labels.get("job"), Some("j"));
    assert_eq!(clash[0].labels.get("exported_job"), Some("exposed"));
    // Synthetic series.
    let up = storage.samples_named("up");
    assert!(up.iter().all(|s| s.v == 1.0));
    let scraped = storage.samples_named("scrape_samples_scraped");
    assert_eq!(scraped[0].v, 4.0);
    let added = storage.samples_named("scrape_series_added");
    assert_eq!(added[0].v, 4.0);
    assert_eq!(
        added.last().unwrap().v,
        0.0,
        "known series are not re-added"
    );
    for name in [
        "scrape_duration_seconds",
        "scrape_samples_post_metric_relabeling",
    ] {
        assert!(!storage.samples_named(name).is_empty(), "{name}");
    }
    assert!(
        storage.samples_named("scrape_timeout_seconds").is_empty(),
        "extra metrics are opt-in"
    );
}

/// The n-th scrape of this target: every value is n; lines of the shapes
/// a series read again from the scrape cache must survive (labels holding
/// spaces and `}`, exposed timestamps, `le` normalised under a histogram
/// family, label-less series, a blank between name and labels, a tab).
async fn start_tricky_target() -> Target {
    serve_pages(|n| {
        format!(
            "# TYPE h histogram\nh_bucket{{le=\"1\"}} {n}\nh_bucket{{le=\"+Inf\"}} {n}\nh_sum {n}\n\
             plain {n}\nstamped{{a=\"x\"}} {n} {}\nspaced{{p=\"/a b}} c\"}} {n}\n\
             blank {{q=\"1\"}} {n}\ntabbed{{q=\"2\"}}\t{n}\n",
            1_700_000_000_000i64 + n as i64,
        )
    })
    .await
}

/// A target answering its n-th scrape (from 1) with `page(n)`, as the
/// Prometheus text format.
async fn serve_pages(page: fn(u64) -> String) -> Target {
    let scrapes = Arc::new(AtomicU64::new(0));
    let s = scrapes.clone();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let n = s.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    page(n),
                )
            }
        }),
    );
    Target {
        addr: common::serve(app).await,
        mode: Arc::default(),
        scrapes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_read_again_from_the_cache_keep_labels_values_and_timestamps() {
    let t = start_tricky_target().await;
    let storage = MemStorage::new();
    let mut m = manager(&storage, &config("    static_configs: []\n"), &t.addr);
    wait_scrapes(&t, 4).await;
    m.stop();
    let values = |name: &str, label: (&str, &str)| -> Vec<(i64, f64)> {
        storage
            .samples_named(name)
            .into_iter()
            .filter(|s| s.labels.get(label.0) == Some(label.1))
            .map(|s| (s.t, s.v))
            .collect()
    };
    let expected = [
        ("h_bucket", ("le", "1.0")),
        ("h_bucket", ("le", "+Inf")),
        ("h_sum", ("job", "j")),
        ("plain", ("job", "j")),
        ("stamped", ("a", "x")),
        ("spaced", ("p", "/a b} c")),
        ("blank", ("q", "1")),
        ("tabbed", ("q", "2")),
    ];
    let first = values("plain", ("job", "j"));
    assert!(first.len() >= 4, "{first:?}");
    for (name, label) in expected {
        let got = values(name, label);
        // One sample per scrape, the n-th scrape's value n, nothing else.
        assert_eq!(got.len(), first.len(), "{name} {label:?}: {got:?}");
        for (i, (t, v)) in got.iter().enumerate() {
            assert_eq!(*v, first[0].1 + i as f64, "{name} {label:?}: {got:?}");
            if name == "stamped" {
                assert_eq!(*t, 1_700_000_000_000 + *v as i64);
            } else {
                assert_eq!(*t, first[i].0, "{name}");
            }
        }
    }
    assert!(storage.samples_named("h_bucket").len() == 2 * first.len());
}

/// Series on a page of the n-th scrape: `s{k="K"}` for K below 150, then
/// `h_bucket{le="K - 149"}` under a histogram family (the `le` value is
/// normalised, so read again it must come out the same), every value
/// `K * 1000 + n`; comments and blank lines between them. More series than
/// a batch of appends holds.
const PAGE_SERIES: usize = 300;

async fn start_numbered_target() -> Target {
    serve_pages(|n| {
        let mut body = String::from("# TYPE s gauge\n");
        for k in 0..PAGE_SERIES {
            let v = k as u64 * 1000 + n;
            match k {
                0..=149 => body.push_str(&format!("s{{k=\"{k}\"}} {v}\n")),
                150 => body.push_str(&format!(
                    "# a comment\n\n# TYPE h histogram\nh_bucket{{le=\"1\"}} {v}\n"
                )),
                _ => body.push_str(&format!("h_bucket{{le=\"{}\"}} {v}\n", k - 149)),
            }
        }
        body
    })
    .await
}

/// The series number `K` a sample of [`start_numbered_target`] belongs to
/// by its labels.
fn numbered(labels: &tributary_model::Labels) -> Option<u64> {
    match labels.metric_name()? {
        "s" => labels.get("k")?.parse().ok(),
        "h_bucket" => {
            let le = labels.get("le")?.strip_suffix(".0")?;
            Some(le.parse::<u64>().ok()? + 149)
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_the_storage_forgot_are_resolved_again_from_their_lines() {
    let t = start_numbered_target().await;
    let storage = MemStorage::new();
    let mut m = manager(&storage, &config("    static_configs: []\n"), &t.addr);
    wait_scrapes(&t, 2).await;
    // As the WAL's garbage collection does after a long pause: every
    // reference the scrape cache holds is now refused as unknown.
    storage.forget_series();
    wait_scrapes(&t, 3).await;
    m.stop();
    let mut per_series: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for s in storage.samples() {
        if s.labels.metric_name() == Some("up")
            || s.labels.metric_name().unwrap().starts_with("scrape_")
        {
            continue;
        }
        let k = numbered(&s.labels).unwrap_or_else(|| panic!("unexpected {:?}", s.labels));
        // A value under another series' labels: a line resolved from the
        // wrong place on the page.
        assert_eq!(s.v as u64 / 1000, k, "{:?} = {}", s.labels, s.v);
        per_series.entry(k).or_default().push(s.v as u64 % 1000);
    }
    assert_eq!(per_series.len(), PAGE_SERIES);
    let scrapes = per_series[&0].clone();
    assert!(scrapes.len() >= 5, "{scrapes:?}");
    for (k, got) in &per_series {
        // Every scrape's sample of every series, before and after.
        assert_eq!(got, &scrapes, "series {k}");
        assert!(
            got.windows(2).all(|w| w[1] == w[0] + 1),
            "series {k}: {got:?}"
        );
    }
    // Each series (and the five report series) created again exactly once.
    assert_eq!(storage.series_created(), 2 * (PAGE_SERIES + 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_refused_as_out_of_order_are_counted() {
    // The same exposed timestamp every scrape: only the first is taken.
    let t = serve_pages(|_| {
        (0..PAGE_SERIES)
            .map(|k| format!("s{{k=\"{k}\"}} {k} 1700000000000\n"))
            .collect()
    })
    .await;
    let storage = MemStorage::new();
    let (mut m, metrics) = counting_manager(&storage, "    static_configs: []\n", &t);
    wait_scrapes(&t, 4).await;
    m.stop();
    assert_eq!(storage.samples_named("s").len(), PAGE_SERIES);
    let appended_scrapes = storage.samples_named("up").len() as u64;
    assert!(appended_scrapes >= 4);
    assert_eq!(
        metrics.sample_out_of_order.get(),
        PAGE_SERIES as u64 * (appended_scrapes - 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_series_and_failed_scrapes_get_staleness_markers() {
    let t = start_target().await;
    let storage = MemStorage::new();
    let mut m = manager(&storage, &config("    static_configs: []\n"), &t.addr);
    wait_scrapes(&t, 2).await;
    t.mode.store(1, Ordering::SeqCst); // t_dyn{id="b"} disappears
    wait_scrapes(&t, 2).await;
    let b: Vec<_> = storage
        .samples_named("t_dyn")
        .into_iter()
        .filter(|s| s.labels.get("id") == Some("b"))
        .collect();
    assert!(
        is_stale_nan(b.last().unwrap().v),
        "no marker for the vanished series"
    );
    assert_eq!(
        b.iter().filter(|s| is_stale_nan(s.v)).count(),
        1,
        "exactly one marker"
    );
    let a: Vec<_> = storage
        .samples_named("t_dyn")
        .into_iter()
        .filter(|s| s.labels.get("id") == Some("a"))
        .collect();
    assert!(
        a.iter().all(|s| !is_stale_nan(s.v)),
        "no marker while still exposed"
    );

    t.mode.store(2, Ordering::SeqCst); // HTTP 500
    wait_scrapes(&t, 2).await;
    let snap = m.snapshot();
    m.stop();
    let seq = storage.samples_named("t_seq");
    assert!(
        is_stale_nan(seq.last().unwrap().v),
        "failed scrape must mark series stale"
    );
    assert_eq!(
        seq.iter().filter(|s| is_stale_nan(s.v)).count(),
        1,
        "markers written once, not per failure"
    );
    let up = storage.samples_named("up");
    assert_eq!(up.last().unwrap().v, 0.0);
    assert!(
        snap[0].active[0].health.last_error.contains("500"),
        "{}",
        snap[0].active[0].health.last_error
    );
}

/// The targets page's view of the last scrape follows every scrape: the
/// body's head as text (bytes that are not UTF-8 shown as U+FFFD), its
/// content type and headers — also when a scrape writes them over the
/// previous scrape's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_scrape_shows_each_body_head_content_type_and_headers() {
    let scrapes = Arc::new(AtomicU64::new(0));
    // Odd scrapes carry a byte that is not UTF-8 in a comment.
    let page = |n: u64| -> Vec<u8> {
        let mut body = format!("up_seq {n}\n# ").into_bytes();
        body.extend_from_slice(if n % 2 == 1 { b"\xff" } else { b"ok" });
        body.push(b'\n');
        body
    };
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let ct = if n % 2 == 1 {
                    "text/plain; version=0.0.4"
                } else {
                    "text/plain"
                };
                ([(header::CONTENT_TYPE, ct)], page(n))
            }
        }),
    );
    let addr = common::serve(app).await;
    let storage = MemStorage::new();
    let mut m = manager(&storage, &config("    static_configs: []\n"), &addr);
    let start = tokio::time::Instant::now();
    let (mut odd, mut even) = (false, false);
    while !(odd && even) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "both pages not seen"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        let snap = m.snapshot();
        let last = &snap[0].active[0].health.last;
        let Some(n) = last
            .body_head
            .strip_prefix("up_seq ")
            .and_then(|rest| rest.split('\n').next())
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let (comment, ct) = if n % 2 == 1 {
            ("\u{FFFD}", "text/plain; version=0.0.4")
        } else {
            ("ok", "text/plain")
        };
        assert_eq!(last.body_head, format!("up_seq {n}\n# {comment}\n"));
        assert_eq!(last.content_type, ct);
        let sent: Vec<&str> = last
            .headers
            .iter()
            .filter(|&(name, _)| name == "content-type")
            .map(|(_, value)| value)
            .collect();
        assert_eq!(sent, [ct]);
        odd |= n % 2 == 1;
        even |= odd && n % 2 == 0;
    }
    m.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_exposition_fails_the_scrape_with_a_reason() {
    let t = start_target().await;
    t.mode.store(3, Ordering::SeqCst);
    let storage = MemStorage::new();
    let mut m = manager(&storage, &config("    static_configs: []\n"), &t.addr);
    wait_scrapes(&t, 1).await;
    let snap = m.snapshot();
    m.stop();
    let h = &snap[0].active[0].health;
    assert_eq!(h.health, tributary_scrape::Health::Down);
    assert!(!h.last_error.is_empty());
    assert!(storage.samples_named("up").iter().all(|s| s.v == 0.0));
    assert!(storage.samples_named("metric").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_limit_rejects_the_whole_scrape() {
    let t = start_target().await;
    let storage = MemStorage::new();
    let mut m = manager(
        &storage,
        &config("    sample_limit: 2\n    static_configs: []\n"),
        &t.addr,
    );
    wait_scrapes(&t, 2).await;
    let snap = m.snapshot();
    m.stop();
    assert!(storage.samples_named("t_seq").is_empty());
    assert!(storage.samples_named("up").iter().all(|s| s.v == 0.0));
    assert_eq!(snap[0].active[0].health.last_error, "sample limit exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_relabeling_and_honor_labels() {
    let t = start_target().await;
    let storage = MemStorage::new();
    let extra = "    honor_labels: true\n    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: t_dyn\n        action: drop\n    static_configs: []\n";
    let mut m = manager(&storage, &config(extra), &t.addr);
    wait_scrapes(&t, 2).await;
    m.stop();
    assert!(storage.samples_named("t_dyn").is_empty());
    let clash = storage.samples_named("t_clash");
    assert_eq!(clash[0].labels.get("job"), Some("exposed"));
    let post = storage.samples_named("scrape_samples_post_metric_relabeling");
    assert_eq!(post[0].v, 2.0);
}

/// A target that answers after 300 ms; `started` counts requests received.
async fn start_slow_target() -> (String, Arc<AtomicU64>) {
    let started = Arc::new(AtomicU64::new(0));
    let s = started.clone();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let n = s.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    format!("slow_seq {n}\n"),
                )
            }
        }),
    );
    let addr = common::serve(app).await;
    (addr, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_in_flight_at_shutdown_is_completed_and_committed() {
    let (addr, started) = start_slow_target().await;
    let storage = MemStorage::new();
    let cfg = config("    scrape_interval: 5s\n    scrape_timeout: 2s\n    static_configs: []\n");
    let mut m = manager(&storage, &cfg, &addr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "target not scraped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The request is in flight (the target answers after 300 ms).
    assert!(storage.samples_named("slow_seq").is_empty());
    m.stop_and_drain(Duration::from_secs(5)).await;
    let got = storage.samples_named("slow_seq");
    assert_eq!(got.len(), 1, "the in-flight scrape was committed");
    assert_eq!(got[0].v, 1.0);
    assert_eq!(storage.samples_named("up").len(), 1);
}

/// Prometheus fails a scrape whose metric relabeling leaves a series
/// without `__name__` (`errNameLabelMandatory`) instead of storing a
/// nameless series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_relabeled_without_a_name_fails_the_scrape() {
    let t = start_target().await;
    let storage = MemStorage::new();
    let extra = "    metric_relabel_configs:\n      - action: labelkeep\n        regex: job|instance\n    static_configs: []\n";
    let mut m = manager(&storage, &config(extra), &t.addr);
    wait_scrapes(&t, 2).await;
    let snap = m.snapshot();
    m.stop();
    let h = &snap[0].active[0].health;
    assert_eq!(h.health, tributary_scrape::Health::Down);
    assert_eq!(h.last_error, "missing metric name (__name__ label)");
    let samples = storage.samples();
    assert!(samples.iter().all(|s| s.labels.get("__name__").is_some()));
    let up = storage.samples_named("up");
    assert!(!up.is_empty() && up.iter().all(|s| s.v == 0.0));
}

/// With `honor_labels`, a label the page exposes empty keeps the target's
/// label of that name off the series, as a Pushgateway's `instance=""`
/// relies on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honor_labels_leaves_off_a_target_label_exposed_empty() {
    let t =
        serve_pages(|n| format!("pushed{{instance=\"\",job=\"batch\"}} {n}\nplain {n}\n")).await;
    let storage = MemStorage::new();
    let (mut m, _) = counting_manager(
        &storage,
        "    honor_labels: true\n    static_configs: []\n",
        &t,
    );
    wait_scrapes(&t, 2).await;
    m.stop();
    let pushed = storage.samples_named("pushed");
    assert!(!pushed.is_empty());
    assert!(pushed.iter().all(|s| s.labels.get("instance").is_none()));
    assert!(pushed.iter().all(|s| s.labels.get("job") == Some("batch")));
    let plain = storage.samples_named("plain");
    assert_eq!(plain[0].labels.get("instance"), Some(t.addr.as_str()));
}

/// A series repeated in one page: a duplicate without a timestamp of its
/// own (dropped, but counted after relabeling), a further sample with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_repeated_in_a_page_is_a_duplicate_only_without_a_timestamp() {
    let t = serve_pages(|_| {
        "stamped 1 1700000000000\nstamped 2 1700000001000\nplain 1\nplain 2\n".to_string()
    })
    .await;
    let storage = MemStorage::new();
    let (mut m, metrics) = counting_manager(&storage, "    static_configs: []\n", &t);
    wait_scrapes(&t, 2).await;
    m.stop();
    let stamped: Vec<(i64, f64)> = storage
        .samples_named("stamped")
        .iter()
        .map(|s| (s.t, s.v))
        .collect();
    assert_eq!(
        stamped,
        [(1_700_000_000_000, 1.0), (1_700_000_001_000, 2.0)]
    );
    let plain = storage.samples_named("plain");
    let scrapes = storage.samples_named("up").len();
    assert_eq!(plain.len(), scrapes);
    assert!(plain.iter().all(|s| s.v == 1.0));
    assert_eq!(metrics.sample_duplicate_timestamp.get(), scrapes as u64);
    let post = storage.samples_named("scrape_samples_post_metric_relabeling");
    assert!(post.iter().all(|s| s.v == 4.0), "{post:?}");
}

/// Non-stale samples of `t_dyn` in `storage`.
fn live_t_dyn(storage: &MemStorage) -> usize {
    storage
        .samples_named("t_dyn")
        .iter()
        .filter(|s| !is_stale_nan(s.v))
        .count()
}

/// A target scraped twice as job `j` without settings of its own, then
/// the job reloaded with `extra`.
async fn reloaded_after_two_scrapes(extra: &str) -> (Target, MemStorage, ScrapeManager) {
    let t = start_target().await;
    let storage = MemStorage::new();
    let mut m = manager(&storage, &config("    static_configs: []\n"), &t.addr);
    wait_scrapes(&t, 2).await;
    m.apply_config(&config(extra)).unwrap();
    (t, storage, m)
}

/// A reload that changes metric relabeling applies it to the series the
/// loops already know (Prometheus starts them with a new cache), and the
/// series it now drops go stale — and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changing_metric_relabeling_applies_it_to_known_series() {
    let drop_dyn = "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: t_dyn\n        action: drop\n    static_configs: []\n";
    let (t, storage, mut m) = reloaded_after_two_scrapes(drop_dyn).await;
    // A scrape in flight at the reload still commits.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let live_at_reload = live_t_dyn(&storage);
    let seq_at_reload = storage.samples_named("t_seq").len();
    wait_scrapes(&t, 4).await;
    m.stop();
    assert_eq!(live_t_dyn(&storage), live_at_reload);
    assert!(storage.samples_named("t_seq").len() >= seq_at_reload + 3);
    for id in ["a", "b"] {
        let last = storage
            .samples_named("t_dyn")
            .into_iter()
            .rfind(|s| s.labels.get("id") == Some(id))
            .unwrap();
        assert!(is_stale_nan(last.v), "t_dyn{{id={id}}} not marked stale");
    }
    let seq = storage.samples_named("t_seq");
    assert!(seq.iter().all(|s| !is_stale_nan(s.v)), "t_seq marked stale");
}

/// A reload changing only the interval keeps each loop's cache: nothing
/// goes stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changing_only_the_interval_marks_nothing_stale() {
    let (t, storage, mut m) =
        reloaded_after_two_scrapes("    scrape_interval: 250ms\n    static_configs: []\n").await;
    wait_scrapes(&t, 4).await;
    m.stop();
    assert!(storage.samples().iter().all(|s| !is_stale_nan(s.v)));
}

/// A page read whole but refused (here: malformed) reports its size, as
/// Prometheus's `scrape_body_size_bytes` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_page_still_reports_its_body_size() {
    let t = start_target().await;
    t.mode.store(3, Ordering::SeqCst);
    let storage = MemStorage::new();
    let extra = "    extra_scrape_metrics: true\n    static_configs: []\n";
    let mut m = manager(&storage, &config(extra), &t.addr);
    wait_scrapes(&t, 1).await;
    m.stop();
    let size = storage.samples_named("scrape_body_size_bytes");
    let garbage = "metric{ unterminated 1\n".len() as f64;
    assert!(
        !size.is_empty() && size.iter().all(|s| s.v == garbage),
        "{size:?}"
    );
}

/// A reload that changes a target's labels ends its old series as a
/// removed target's: end-of-run staleness markers after two intervals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changing_a_targets_labels_marks_its_old_series_stale() {
    let relabeled = "    relabel_configs:\n      - target_label: env\n        replacement: prod\n    static_configs: []\n";
    let (t, storage, mut m) = reloaded_after_two_scrapes(relabeled).await;
    // Past the old loop's end-of-run markers (2.1 intervals).
    wait_scrapes(&t, 4).await;
    m.stop();
    let seq = storage.samples_named("t_seq");
    let old: Vec<_> = seq
        .iter()
        .filter(|s| s.labels.get("env").is_none())
        .collect();
    let new: Vec<_> = seq
        .iter()
        .filter(|s| s.labels.get("env") == Some("prod"))
        .collect();
    assert!(
        is_stale_nan(old.last().unwrap().v),
        "old series not marked stale"
    );
    assert!(new.len() >= 3 && new.iter().all(|s| !is_stale_nan(s.v)));
}
