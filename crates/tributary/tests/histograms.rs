//! End to end with native histograms: the real binary scrapes a loopback
//! protobuf target exposing a native histogram (with an exemplar) and a
//! counter, and remote-writes (1.0, `send_native_histograms`,
//! `send_exemplars`) into a real Prometheus 2.42 running with native
//! histograms and exemplar storage enabled, where `histogram_count`,
//! `histogram_sum` and the exemplar query must return what the target
//! exposed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tributary_exposition::testing::{put_varint, Msg};

// ----- a tiny protobuf encoder for the target's body ------------------------

/// `e2e_rpc_seconds`: a native histogram with count 5, sum 9 (schema 3,
/// buckets 1, 2, 1 plus one zero-bucket observation) and an exemplar with
/// a timestamp; `e2e_jobs_total`: a counter at 42.
fn exposition(exemplar_ts_s: u64) -> Vec<u8> {
    let span = |o: i64, l: u64| Msg::default().sint(1, o).varint(2, l);
    let label = |n: &str, v: &str| Msg::default().str(1, n).str(2, v);
    let histogram = Msg::default()
        .varint(1, 5)
        .double(2, 9.0)
        .sint(5, 3)
        .double(6, 0.001)
        .varint(7, 1)
        .msg(12, span(0, 2))
        .msg(12, span(1, 1))
        .bytes(13, &{
            let mut packed = Vec::new();
            for d in [1i64, 1, -1] {
                put_varint(&mut packed, ((d << 1) ^ (d >> 63)) as u64);
            }
            packed
        })
        .msg(
            16,
            Msg::default()
                .msg(1, label("trace_id", "e2e-trace"))
                .double(2, 1.5)
                .msg(3, Msg::default().varint(1, exemplar_ts_s)),
        );
    let families = [
        Msg::default()
            .str(1, "e2e_rpc_seconds")
            .str(2, "RPC latency.")
            .varint(3, 4)
            .msg(
                4,
                Msg::default().msg(1, label("svc", "api")).msg(7, histogram),
            ),
        Msg::default()
            .str(1, "e2e_jobs_total")
            .str(2, "Jobs.")
            .varint(3, 0)
            .msg(4, Msg::default().msg(3, Msg::default().double(1, 42.0))),
    ];
    let mut out = Vec::new();
    for f in families {
        put_varint(&mut out, f.0.len() as u64);
        out.extend_from_slice(&f.0);
    }
    out
}

/// A loopback target serving the protobuf exposition; stops when dropped.
struct ProtoTarget {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl ProtoTarget {
    fn start(exemplar_ts_s: u64) -> ProtoTarget {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let body = exposition(exemplar_ts_s);
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut req = [0u8; 4096];
                        let _ = conn.read(&mut req);
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = conn.write_all(head.as_bytes());
                        let _ = conn.write_all(&body);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ProtoTarget { addr, stop }
    }
}

impl Drop for ProtoTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Prometheus 2.42 as a remote-write receiver that stores native
/// histograms and exemplars.
fn start_prometheus_with_histograms(dir: &std::path::Path, port: u16) -> Proc {
    let cfg = dir.join("prom.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").unwrap();
    let mut cmd = Command::new(prometheus_bin());
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .arg("--enable-feature=native-histograms,exemplar-storage")
        .arg("--storage.tsdb.retention.time=1d");
    let p = Proc::spawn("prometheus", &mut cmd, &dir.join("prometheus.log"));
    wait_ready(p, &format!("http://127.0.0.1:{port}/-/ready"))
}

fn first_value(result: &serde_json::Value) -> Option<f64> {
    result.as_array()?.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn native_histograms_and_exemplars_reach_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let target = ProtoTarget::start(now_s);
    let prom_port = free_port();
    let prom = start_prometheus_with_histograms(dir.path(), prom_port);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 800ms\nscrape_configs:\n  - job_name: nh\n    scrape_protocols: [PrometheusProto]\n    scrape_native_histograms: true\n    static_configs:\n      - targets: [\"{}\"]\nremote_write:\n  - url: http://127.0.0.1:{prom_port}/api/v1/write\n    send_native_histograms: true\n    send_exemplars: true\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n",
        target.addr
    );
    let port = free_port();
    let agent = start_tributary(dir.path(), &config, port, &[]);

    let count = wait_for(Duration::from_secs(40), || {
        first_value(&prom_query(prom_port, "histogram_count(e2e_rpc_seconds)")?)
    });
    assert_eq!(
        count,
        Some(5.0),
        "histogram_count never reached Prometheus\nagent log:\n{}\nprometheus log:\n{}",
        agent.log_text(),
        prom.log_text()
    );
    let sum = first_value(&prom_query(prom_port, "histogram_sum(e2e_rpc_seconds)").unwrap());
    assert_eq!(sum, Some(9.0));
    let series = prom_query(prom_port, "e2e_rpc_seconds").unwrap();
    let metric = &series[0]["metric"];
    assert_eq!(metric["job"], "nh");
    assert_eq!(metric["svc"], "api");
    assert_eq!(metric["instance"], target.addr.as_str());
    // Without always_scrape_classic_histograms there are no classic series.
    let classic = prom_query(prom_port, "e2e_rpc_seconds_count").unwrap();
    assert_eq!(classic.as_array().map(Vec::len), Some(0));
    let jobs = first_value(&prom_query(prom_port, "e2e_jobs_total").unwrap());
    assert_eq!(jobs, Some(42.0));

    // The exemplar, through the exemplar query API.
    let exemplar = wait_for(Duration::from_secs(20), || {
        let start = now_s - 600;
        let end = now_s + 600;
        let (status, body) = http_get(
            &format!(
                "http://127.0.0.1:{prom_port}/api/v1/query_exemplars?query=e2e_rpc_seconds&start={start}&end={end}"
            ),
            Duration::from_secs(5),
        )?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let first = v["data"].as_array()?.first()?["exemplars"].as_array()?.first()?.clone();
        (status == 200).then_some(first)
    })
    .expect("exemplar never reached Prometheus");
    assert_eq!(exemplar["labels"]["trace_id"], "e2e-trace");
    assert_eq!(exemplar["value"], "1.5");
}
