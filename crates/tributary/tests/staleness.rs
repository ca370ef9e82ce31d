//! Staleness is tracked per series, as Prometheus tracks it per label set:
//! a target that writes a series' labels in another order from one scrape
//! to the next still exposes that series, so it gets no staleness marker.
//! Before, the marker was attempted at the same timestamp as the sample,
//! refused, and counted in `prometheus_agent_out_of_order_samples_total`
//! every scrape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_series_whose_labels_change_order_gets_no_marker() {
    let dir = tempfile::tempdir().unwrap();
    let target = TestTarget::start("text/plain; version=0.0.4", |n| {
        let labels = if n % 2 == 1 {
            "a=\"1\",b=\"2\""
        } else {
            "b=\"2\",a=\"1\""
        };
        // `st_gone` has a new label value every scrape: it does go stale.
        format!("st_two{{{labels}}} {n}\nst_gone{{n=\"{n}\"}} 1\n")
    });
    let (_sink, rw, seen) = start_sink(dir.path(), "staleness".into());
    let port = free_port();
    let cfg = format!("global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n  - job_name: st\n    static_configs:\n      - targets: [\"{}\"]\nremote_write:\n  - url: http://127.0.0.1:{rw}/api/v1/write\n    queue_config:\n      batch_send_deadline: 200ms\n", target.addr);
    let _agent = start_tributary(dir.path(), &cfg, port, &[]);

    let scraped = wait_for(Duration::from_secs(30), || {
        let s = seen.lock().unwrap();
        (s.stale.iter().filter(|k| k.starts_with("st_gone{")).count() >= 6).then_some(())
    });
    assert!(scraped.is_some(), "the vanished series got no markers");
    let (_, metrics) = http_get(
        &format!("http://127.0.0.1:{port}/metrics"),
        Duration::from_secs(5),
    )
    .unwrap();
    let out_of_order = metrics
        .lines()
        .find(|l| l.starts_with("prometheus_agent_out_of_order_samples_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(out_of_order, Some(0.0), "{metrics}");
    let s = seen.lock().unwrap();
    let two: Vec<&String> = s
        .stale
        .iter()
        .filter(|k| k.starts_with("st_two{"))
        .collect();
    assert!(
        two.is_empty(),
        "markers for a series still exposed: {two:?}"
    );
    assert!(s.series.iter().any(|k| k.starts_with("st_two{")));
}
