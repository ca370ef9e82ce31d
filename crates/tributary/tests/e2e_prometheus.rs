//! End to end against a real Prometheus (Debian package) as the
//! remote-write receiver: what Tributary scrapes from loopback targets must
//! be queryable in Prometheus with the right labels and values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

fn config(targets: &[&str], rw_port: u16) -> String {
    let list = targets
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 800ms\n  external_labels:\n    agent: e2e\nscrape_configs:\n  - job_name: e2e\n    static_configs:\n      - targets: [{list}]\n        labels:\n          team: storage\nremote_write:\n  - url: http://127.0.0.1:{rw_port}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n"
    )
}

fn good_target() -> TestTarget {
    TestTarget::start("text/plain; version=0.0.4; charset=utf-8", |n| {
        format!(
            "# HELP e2e_requests_total Requests.\n# TYPE e2e_requests_total counter\ne2e_requests_total{{code=\"200\"}} {}\ne2e_requests_total{{code=\"500\"}} 7\n# TYPE e2e_temperature gauge\ne2e_temperature 21.5\n",
            n * 10
        )
    })
}

#[test]
fn samples_reach_a_real_prometheus_with_labels_and_up() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_target();
    let bad = TestTarget::start("text/plain; version=0.0.4", |_| {
        "this is { not an exposition\n".to_string()
    });
    let prom_port = free_port();
    let _prom = start_prometheus(dir.path(), prom_port);
    let port = free_port();
    let _agent = start_tributary(
        dir.path(),
        &config(&[&good.addr, &bad.addr], prom_port),
        port,
        &[],
    );

    // The good target: up == 1 with job, instance, static and external labels.
    let up = wait_for(Duration::from_secs(40), || {
        let r = prom_query(prom_port, &format!("up{{instance=\"{}\"}}", good.addr))?;
        r.as_array().filter(|a| !a.is_empty()).cloned()
    })
    .expect("up for the good target never reached Prometheus");
    let metric = &up[0]["metric"];
    assert_eq!(metric["job"], "e2e");
    assert_eq!(metric["instance"], good.addr.as_str());
    assert_eq!(metric["team"], "storage");
    assert_eq!(metric["agent"], "e2e");
    assert_eq!(up[0]["value"][1], "1");

    // Scraped series with their exposed labels and plausible values.
    let r = wait_for(Duration::from_secs(20), || {
        prom_query(prom_port, "e2e_requests_total{code=\"500\"}")
            .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
    })
    .expect("e2e_requests_total never arrived");
    assert_eq!(r[0]["value"][1], "7");
    assert_eq!(r[0]["metric"]["job"], "e2e");
    let r = prom_query(prom_port, "e2e_temperature").unwrap();
    assert_eq!(r[0]["value"][1], "21.5");
    let r = prom_query(prom_port, "e2e_requests_total{code=\"200\"}").unwrap();
    let v: f64 = r[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(v >= 10.0 && v % 10.0 == 0.0, "counter value {v}");

    // Synthetic series.
    let r = prom_query(
        prom_port,
        &format!("scrape_samples_scraped{{instance=\"{}\"}}", good.addr),
    )
    .unwrap();
    assert_eq!(r[0]["value"][1], "3");
    for name in [
        "scrape_duration_seconds",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        let r = prom_query(prom_port, &format!("{name}{{instance=\"{}\"}}", good.addr)).unwrap();
        assert_eq!(r.as_array().map(|a| a.len()), Some(1), "{name} missing");
    }

    // The malformed target: up == 0 in Prometheus, a reason on the targets API.
    let up_bad = wait_for(Duration::from_secs(20), || {
        prom_query(prom_port, &format!("up{{instance=\"{}\"}}", bad.addr))
            .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
    })
    .expect("up for the bad target never arrived");
    assert_eq!(up_bad[0]["value"][1], "0");
    let (_, body) = http_get(
        &format!("http://127.0.0.1:{port}/api/v1/targets"),
        Duration::from_secs(5),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bad_t = v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["instance"] == bad.addr.as_str())
        .cloned()
        .unwrap();
    assert_eq!(bad_t["health"], "down");

    // Metadata from the exposition's HELP/TYPE lines, per target.
    let (_, body) = http_get(
        &format!("http://127.0.0.1:{port}/api/v1/targets/metadata?metric=e2e_requests_total"),
        Duration::from_secs(5),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!(rows[0]["type"], "counter");
    assert_eq!(rows[0]["help"], "Requests.");
    assert_eq!(rows[0]["target"]["instance"], good.addr.as_str());
    assert!(!bad_t["lastError"].as_str().unwrap().is_empty());
}

/// With the remote down, samples stay in the WAL; when it comes back they
/// are delivered — including those scraped before it came back.
#[test]
fn unreachable_remote_keeps_data_in_the_wal_and_delivers_later() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_target();
    let prom_port = free_port();
    let port = free_port();
    let mut agent = start_tributary(dir.path(), &config(&[&good.addr], prom_port), port, &[]);
    // Let it scrape for a while with nobody listening.
    let scraped_before = wait_for(Duration::from_secs(20), || {
        let n = good.scrapes.load(std::sync::atomic::Ordering::SeqCst);
        (n >= 4).then_some(n)
    })
    .expect("the target was not scraped while the remote was down");
    let wal = dir.path().join("data").join("wal");
    let size: u64 = std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert!(size > 0, "WAL is empty");
    // Restart the agent while the remote is still down: nothing may be lost.
    agent.terminate();
    let _agent = start_tributary(dir.path(), &config(&[&good.addr], prom_port), port, &[]);
    let t_remote_up = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let _prom = start_prometheus(dir.path(), prom_port);
    // The earliest samples (scraped while the remote was down, before the
    // restart) must arrive: count the up samples older than the remote.
    let n = wait_for(Duration::from_secs(40), || {
        let q = format!(
            "count_over_time(up{{instance=\"{}\"}}[5m] @ {t_remote_up})",
            good.addr
        );
        let r = prom_query(prom_port, &q)?;
        let v: f64 = r.as_array()?.first()?["value"][1].as_str()?.parse().ok()?;
        (v >= scraped_before as f64).then_some(v)
    });
    assert!(
        n.is_some(),
        "samples buffered before the restart were not delivered"
    );
}
