//! Hot reload (`/-/reload`, SIGHUP): a valid config applies, an invalid one
//! keeps the old config running and flips
//! `prometheus_config_last_reload_successful` to 0, and a change to one job
//! leaves the other job's loop running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;

fn config(a: &str, b: &str, b_label: &str) -> String {
    format!(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [\"{a}\"]\n  - job_name: b\n    static_configs:\n      - targets: [\"{b}\"]\n        labels:\n          version: \"{b_label}\"\n"
    )
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = http_get(
        &format!("http://127.0.0.1:{port}/metrics"),
        Duration::from_secs(5),
    )?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn target_label(port: u16, job: &str, label: &str) -> Option<String> {
    let (_, body) = http_get(
        &format!("http://127.0.0.1:{port}/api/v1/targets?scrapePool={job}"),
        Duration::from_secs(5),
    )?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["activeTargets"][0]["labels"][label]
        .as_str()
        .map(String::from)
}

#[test]
fn reload_applies_valid_configs_and_keeps_the_old_one_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ta = TestTarget::start("text/plain; version=0.0.4", |_| "m_a 1\n".into());
    let tb = TestTarget::start("text/plain; version=0.0.4", |_| "m_b 1\n".into());
    let port = free_port();
    let agent = start_tributary(
        dir.path(),
        &config(&ta.addr, &tb.addr, "v1"),
        port,
        &["--web.enable-lifecycle"],
    );
    let cfg_path = dir.path().join("tributary.yml");
    assert_eq!(
        wait_for(Duration::from_secs(10), || target_label(
            port, "b", "version"
        ))
        .as_deref(),
        Some("v1")
    );
    assert_eq!(
        metric(port, "prometheus_config_last_reload_successful"),
        Some(1.0)
    );

    // GET is not allowed; lifecycle POST is.
    let (code, _) = http_request(
        "GET",
        &format!("http://127.0.0.1:{port}/-/reload"),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 405);

    // Invalid config: 500, old config keeps running, gauge 0.
    std::fs::write(
        &cfg_path,
        "scrape_configs:\n  - job_name: a\n    scrape_interval: nonsense\n",
    )
    .unwrap();
    let (code, body) = http_request(
        "POST",
        &format!("http://127.0.0.1:{port}/-/reload"),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("failed to reload config"), "{body}");
    assert!(body.contains("scrape_interval"), "{body}");
    assert_eq!(
        metric(port, "prometheus_config_last_reload_successful"),
        Some(0.0)
    );
    let before = tb.scrapes.load(Ordering::SeqCst);
    let more = wait_for(Duration::from_secs(10), || {
        (tb.scrapes.load(Ordering::SeqCst) >= before + 3).then_some(())
    });
    assert!(
        more.is_some(),
        "the old config stopped scraping after a failed reload"
    );

    // Valid change to job b only, via SIGHUP.
    let a_before = ta.scrapes.load(Ordering::SeqCst);
    std::fs::write(&cfg_path, config(&ta.addr, &tb.addr, "v2")).unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &agent.child.id().to_string()])
        .status();
    assert_eq!(
        wait_for(Duration::from_secs(10), || target_label(
            port, "b", "version"
        )
        .filter(|v| v == "v2"))
        .as_deref(),
        Some("v2")
    );
    assert_eq!(
        metric(port, "prometheus_config_last_reload_successful"),
        Some(1.0)
    );
    // Job a kept scraping throughout (its loop was not restarted: no gap).
    let a_more = wait_for(Duration::from_secs(10), || {
        (ta.scrapes.load(Ordering::SeqCst) >= a_before + 4).then_some(())
    });
    assert!(a_more.is_some());
}

#[test]
fn lifecycle_endpoints_are_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let ta = TestTarget::start("text/plain; version=0.0.4", |_| "m_a 1\n".into());
    let port = free_port();
    let _agent = start_tributary(dir.path(), &config(&ta.addr, &ta.addr, "v1"), port, &[]);
    for path in ["/-/reload", "/-/quit"] {
        let (code, _) = http_request(
            "POST",
            &format!("http://127.0.0.1:{port}{path}"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(code, 403, "{path}");
    }
    // Pools appear once the first discovery snapshot is applied.
    let metrics = wait_for(Duration::from_secs(10), || {
        http_get(
            &format!("http://127.0.0.1:{port}/metrics"),
            Duration::from_secs(5),
        )
        .map(|(_, b)| b)
        .filter(|b| b.contains("prometheus_target_scrape_pool_targets{"))
    })
    .expect("no scrape pool metrics");
    assert!(
        metrics.contains("\nprometheus_build_info{"),
        "prometheus_build_info missing"
    );
    assert!(!metrics.contains("prometheus_build_info_info"));
    for name in [
        "prometheus_agent_active_series",
        "prometheus_remote_storage_highest_timestamp_in_seconds",
        "prometheus_target_scrape_pool_targets",
        "prometheus_tsdb_wal_segment_current",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // The binary's allocator: its small blocks are in use from the start.
    let allocator = |state: &str| -> f64 {
        let series = format!("tributary_allocator_small_bytes{{state=\"{state}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series}missing from /metrics"))
    };
    let (used, committed) = (allocator("used"), allocator("committed"));
    assert!(
        used > 0.0 && committed >= used,
        "small blocks: {used} bytes in use, {committed} committed"
    );
    let (code, body) = http_get(
        &format!("http://127.0.0.1:{port}/-/healthy"),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("Healthy"));
    let (code, body) = http_get(
        &format!("http://127.0.0.1:{port}/api/v1/query?query=up"),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 422);
    assert!(body.contains("unavailable with Prometheus Agent"));
}
