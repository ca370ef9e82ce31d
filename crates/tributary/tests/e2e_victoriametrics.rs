//! End to end against a real VictoriaMetrics (Debian package
//! `victoria-metrics`) as the remote-write receiver: a page whose series
//! share most of their label pairs, as a Kubernetes node's do, so requests
//! carry every form the request encoder writes — pairs new to the request,
//! pairs copied from earlier series, label text matched against earlier
//! text, timestamps copied from the previous sample, the sample written
//! before the labels — and every series must arrive with exactly its labels
//! and values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

const PODS: usize = 40;
const METRICS: [&str; 3] = [
    "e2e_container_cpu_seconds_total",
    "e2e_container_memory_bytes",
    "e2e_container_restarts_total",
];

/// The labels and value of series `i` of metric `m`: pod and container
/// names and ids that recur across the metrics, a UUID and a long hex id.
fn series(m: usize, i: usize) -> (Vec<(String, String)>, f64) {
    let pod = format!("api-gateway-{:010x}-{:05x}", i * 7919, i);
    let uid = format!("{:08x}-{:04x}-4000-8000-{:012x}", i * 31, i, i * 977);
    let labels = vec![
        ("container".to_string(), format!("gateway-{}", i % 4)),
        (
            "id".to_string(),
            format!("/kubepods/burstable/pod{uid}/{:064x}", i * 104_729),
        ),
        (
            "image".to_string(),
            format!(
                "registry.example.internal/team-{}/api-gateway:v1.{}.0",
                i % 3,
                i % 5
            ),
        ),
        ("namespace".to_string(), format!("ns-{}", i % 6)),
        ("pod".to_string(), pod),
    ];
    (labels, (m * 1000 + i) as f64 + 0.25)
}

fn page() -> String {
    let mut out = String::new();
    for (m, name) in METRICS.iter().enumerate() {
        out.push_str(&format!("# TYPE {name} gauge\n"));
        for i in 0..PODS {
            let (labels, v) = series(m, i);
            let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            out.push_str(&format!("{name}{{{}}} {v}\n", text.join(",")));
        }
    }
    out
}

/// A series as sorted `(name, value)` pairs.
type SeriesLabels = Vec<(String, String)>;

/// Every sample VictoriaMetrics holds for metrics named like `pattern`:
/// series → values.
fn export(port: u16, pattern: &str) -> Option<BTreeMap<SeriesLabels, Vec<f64>>> {
    // Newly written rows become searchable once flushed.
    http_get(
        &format!("http://127.0.0.1:{port}/internal/force_flush"),
        Duration::from_secs(5),
    )?;
    let selector = query_escape(&format!("{{__name__=~\"{pattern}\"}}"));
    let (status, body) = http_get(
        &format!("http://127.0.0.1:{port}/api/v1/export?match%5B%5D={selector}"),
        Duration::from_secs(10),
    )?;
    if status != 200 {
        return None;
    }
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let mut labels: SeriesLabels = v["metric"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        labels.sort();
        let values = v["values"]
            .as_array()?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        out.insert(labels, values);
    }
    Some(out)
}

#[test]
fn every_series_of_a_page_of_shared_labels_reaches_victoria_metrics_intact() {
    let dir = tempfile::tempdir().unwrap();
    let target = TestTarget::start("text/plain; version=0.0.4; charset=utf-8", |_| page());
    let vm_port = free_port();
    let _vm = start_victoria_metrics(dir.path(), vm_port);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 800ms\n  external_labels:\n    agent: e2e-vm\nscrape_configs:\n  - job_name: e2e\n    static_configs:\n      - targets: [\"{}\"]\nremote_write:\n  - url: http://127.0.0.1:{vm_port}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n",
        target.addr
    );
    let port = free_port();
    let agent = start_tributary(dir.path(), &config, port, &[]);

    // Three scrapes' worth: later requests repeat the first one's pairs.
    let expected = METRICS.len() * PODS;
    let got = wait_for(Duration::from_secs(60), || {
        export(vm_port, "e2e_container_.*")
            .filter(|s| s.len() == expected && s.values().all(|v| v.len() >= 3))
    })
    .unwrap_or_else(|| {
        panic!(
            "VictoriaMetrics never held {expected} series with 3 samples each: {:?}\nagent log:\n{}",
            export(vm_port, "e2e_container_.*").map(|s| s.len()),
            agent.log_text()
        )
    });
    for (m, name) in METRICS.iter().enumerate() {
        for i in 0..PODS {
            let (labels, v) = series(m, i);
            let mut want: SeriesLabels = labels;
            want.extend([
                ("__name__".to_string(), name.to_string()),
                ("agent".to_string(), "e2e-vm".to_string()),
                ("instance".to_string(), target.addr.clone()),
                ("job".to_string(), "e2e".to_string()),
            ]);
            want.sort();
            let values = got
                .get(&want)
                .unwrap_or_else(|| panic!("series {name} #{i} missing or with other labels"));
            assert!(
                values.iter().all(|&x| x == v),
                "{name} #{i}: {values:?}, want {v}"
            );
        }
    }

    // The synthetic series too.
    let up = wait_for(Duration::from_secs(20), || {
        export(vm_port, "up").filter(|s| !s.is_empty())
    })
    .expect("up never arrived");
    let (labels, values) = up.iter().next().unwrap();
    assert!(labels.contains(&("job".to_string(), "e2e".to_string())));
    assert!(
        !values.is_empty() && values.iter().all(|&v| v == 1.0),
        "up: {values:?}"
    );
}
