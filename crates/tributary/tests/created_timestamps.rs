//! `--enable-feature=created-timestamp-zero-ingestion` end to end: the real
//! binary scrapes a loopback OpenMetrics target (`_created` lines) and a
//! loopback protobuf target (`created_timestamp` fields) and remote-writes
//! into a real sink (`tributary receive`). With the feature the sink gets a
//! zero sample at each created timestamp and no `_created` series, and the
//! scrape asks for protobuf first; without it the `_created` series arrive
//! as ordinary samples, no zero sample, and text formats come first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tributary_exposition::testing::{delimited, Msg};

/// 1700000000.25 s: exact in binary, so OpenMetrics seconds give this ms.
const CT: i64 = 1_700_000_000_250;

const OM: &str =
    "# TYPE om_jobs counter\nom_jobs_total{k=\"v\"} 7\nom_jobs_created{k=\"v\"} 1700000000.25\n\
# TYPE om_lat summary\nom_lat_count 3\nom_lat_sum 1.5\nom_lat_created 1700000000.25\n# EOF\n";

fn proto() -> Vec<u8> {
    let ts = Msg::default()
        .varint(1, 1_700_000_000)
        .varint(2, 250_000_000);
    let counter = Msg::default().str(1, "pb_jobs_total").varint(3, 0).msg(
        4,
        Msg::default().msg(3, Msg::default().double(1, 9.0).msg(3, ts)),
    );
    delimited(&[counter])
}

/// A loopback target serving one fixed body and recording the Accept
/// header of each request; stops when dropped.
struct Target {
    addr: String,
    accept: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Target {
    fn start(content_type: &'static str, body: Vec<u8>) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = Arc::new(Mutex::new(Vec::new()));
        let (st, acc) = (stop.clone(), accept.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut req = [0u8; 8192];
                        let n = conn.read(&mut req).unwrap_or(0);
                        let head = String::from_utf8_lossy(&req[..n]).to_string();
                        if let Some(line) = head
                            .lines()
                            .find(|l| l.to_ascii_lowercase().starts_with("accept:"))
                        {
                            acc.lock().unwrap().push(line[7..].trim().to_string());
                        }
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = conn.write_all(resp.as_bytes());
                        let _ = conn.write_all(&body);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Target { addr, accept, stop }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Every sample the sink printed, as `(series key, value, timestamp)`.
type Samples = Arc<Mutex<Vec<(String, String, i64)>>>;

fn start_sink(dir: &std::path::Path) -> (Proc, u16, Samples) {
    let samples: Samples = Arc::default();
    let s = samples.clone();
    let (proc, port) = start_receiver(dir, "ct", move |key, value, ts| {
        s.lock()
            .unwrap()
            .push((key.to_string(), value.to_string(), ts));
    });
    (proc, port, samples)
}

struct Run {
    samples: Vec<(String, String, i64)>,
    om_accept: String,
}

/// Runs the agent (with `extra` flags) against both targets until the sink
/// has at least two real samples of every scraped series.
fn run(extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let om = Target::start(
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        OM.as_bytes().to_vec(),
    );
    let pb = Target::start(
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
        proto(),
    );
    let (_sink, sink_port, samples) = start_sink(dir.path());
    let config = format!(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n  - job_name: om\n    static_configs:\n      - targets: [\"{}\"]\n  - job_name: pb\n    static_configs:\n      - targets: [\"{}\"]\nremote_write:\n  - url: http://127.0.0.1:{sink_port}/api/v1/write\n    queue_config:\n      batch_send_deadline: 200ms\n      min_backoff: 50ms\n      max_backoff: 200ms\n",
        om.addr, pb.addr
    );
    let mut agent = start_tributary(dir.path(), &config, free_port(), extra);
    let real = |s: &[(String, String, i64)], name: &str| {
        s.iter()
            .filter(|(k, v, _)| k.starts_with(&format!("{name}{{")) && v != "0")
            .count()
    };
    let done = wait_for(Duration::from_secs(30), || {
        let s = samples.lock().unwrap();
        [
            "om_jobs_total",
            "om_lat_count",
            "om_lat_sum",
            "pb_jobs_total",
        ]
        .iter()
        .all(|n| real(&s, n) >= 2)
        .then_some(())
    });
    agent.terminate();
    assert!(
        done.is_some(),
        "sink did not get the samples: {:?}\n{}",
        samples.lock().unwrap(),
        agent.log_text()
    );
    let om_accept = om
        .accept
        .lock()
        .unwrap()
        .first()
        .cloned()
        .unwrap_or_default();
    let samples = samples.lock().unwrap().clone();
    Run { samples, om_accept }
}

fn of<'a>(r: &'a Run, name: &str) -> Vec<&'a (String, String, i64)> {
    r.samples
        .iter()
        .filter(|(k, _, _)| k.starts_with(&format!("{name}{{")))
        .collect()
}

#[test]
fn created_timestamps_become_zero_samples_with_the_feature() {
    let r = run(&["--enable-feature=created-timestamp-zero-ingestion"]);
    for name in [
        "om_jobs_total",
        "om_lat_count",
        "om_lat_sum",
        "pb_jobs_total",
    ] {
        let s = of(&r, name);
        let zeros: Vec<i64> = s.iter().filter(|(_, v, _)| v == "0").map(|x| x.2).collect();
        assert_eq!(zeros, vec![CT], "{name}: one zero sample at the CT: {s:?}");
        // The zero sample comes first, the real ones after it.
        assert_eq!(s[0].2, CT, "{name}: {s:?}");
        assert!(s[1..].iter().all(|(_, v, t)| v != "0" && *t > CT), "{name}");
    }
    for name in ["om_jobs_created", "om_lat_created"] {
        assert!(of(&r, name).is_empty(), "{name} must not be ingested");
    }
    assert!(
        r.om_accept
            .starts_with("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"),
        "protobuf first by default with the feature: {}",
        r.om_accept
    );
}

#[test]
fn created_series_are_ordinary_samples_without_the_feature() {
    let r = run(&[]);
    for name in [
        "om_jobs_total",
        "om_lat_count",
        "om_lat_sum",
        "pb_jobs_total",
    ] {
        let s = of(&r, name);
        assert!(
            s.iter().all(|(_, v, _)| v != "0"),
            "{name}: no zero sample: {s:?}"
        );
    }
    for name in ["om_jobs_created", "om_lat_created"] {
        let s = of(&r, name);
        assert!(!s.is_empty(), "{name} is ingested without the feature");
        assert!(s.iter().all(|(_, v, _)| v == "1700000000.25"), "{s:?}");
    }
    assert!(
        r.om_accept.starts_with("application/openmetrics-text"),
        "{}",
        r.om_accept
    );
}
