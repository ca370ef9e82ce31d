//! Remote write 2.0 end to end: a loopback receiver decodes requests against
//! the published `io.prometheus.write.v2` messages (declared here with
//! prost), answers with the `*-Written` headers, and can play a 1.0-only
//! receiver (415 to 2.0) or a broken one (2xx, nothing written).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use prost::Message;
use tributary_http::{AuthStep, HttpClient};
use tributary_model::Labels;
use tributary_remote::{
    Protocol, QueueManager, QueueSettings, RemoteMetrics, SendError, WriteClient,
    WriteClientSettings,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Accepts 2.0 (and 1.0), reporting what it wrote.
    V2,
    /// Answers 415 to 2.0, accepts 1.0.
    V1Only,
    /// Answers 200 with `Samples-Written: 0` to everything.
    WritesNothing,
}

#[derive(Default)]
struct Seen {
    /// (protocol version header, labels, t, v) of every accepted sample.
    samples: Vec<(String, String, i64, f64)>,
    versions: Vec<String>,
}

struct Rx {
    mode: Mode,
    seen: Mutex<Seen>,
}

fn decode_v2(raw: &[u8]) -> Vec<(String, i64, f64)> {
    let req = V2Request::decode(raw).expect("v2 protobuf");
    assert_eq!(
        req.symbols.first().map(String::as_str),
        Some(""),
        "symbols[0] must be empty"
    );
    let sym = |i: u32| {
        req.symbols
            .get(i as usize)
            .expect("label ref in range")
            .clone()
    };
    let mut out = Vec::new();
    for ts in &req.timeseries {
        let labels = ts
            .labels_refs
            .chunks(2)
            .map(|p| format!("{}={}", sym(p[0]), sym(p[1])))
            .collect::<Vec<_>>()
            .join(",");
        for s in &ts.samples {
            out.push((labels.clone(), s.timestamp, s.value));
        }
    }
    out
}

async fn handle(State(rx): State<Arc<Rx>>, headers: HeaderMap, body: Bytes) -> Response {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy block");
    let version = headers
        .get("x-prometheus-remote-write-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_v2 = content_type == "application/x-protobuf;proto=io.prometheus.write.v2.Request";
    rx.seen.lock().versions.push(version.clone());
    if rx.mode == Mode::WritesNothing {
        return (
            StatusCode::OK,
            [("X-Prometheus-Remote-Write-Samples-Written", "0")],
        )
            .into_response();
    }
    if is_v2 && rx.mode == Mode::V1Only {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let samples = if is_v2 {
        assert_eq!(version, "2.0.0");
        decode_v2(&raw)
    } else {
        assert_eq!(version, "0.1.0");
        let req = PbWriteRequest::decode(raw.as_slice()).expect("v1 protobuf");
        req.timeseries
            .iter()
            .flat_map(|ts| {
                let l = label_string(&ts.labels);
                ts.samples
                    .iter()
                    .map(move |s| (l.clone(), s.timestamp, s.value))
            })
            .collect()
    };
    let n = samples.len().to_string();
    let mut seen = rx.seen.lock();
    seen.samples.extend(
        samples
            .into_iter()
            .map(|(l, t, v)| (version.clone(), l, t, v)),
    );
    (
        StatusCode::NO_CONTENT,
        [
            ("X-Prometheus-Remote-Write-Samples-Written", n.as_str()),
            ("X-Prometheus-Remote-Write-Histograms-Written", "0"),
            ("X-Prometheus-Remote-Write-Exemplars-Written", "0"),
        ],
    )
        .into_response()
}

async fn start(mode: Mode) -> (String, Arc<Rx>) {
    let rx = Arc::new(Rx {
        mode,
        seen: Mutex::new(Seen::default()),
    });
    let app = axum::Router::new()
        .route("/push", axum::routing::post(handle))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

fn client(url: &str) -> WriteClient {
    WriteClient::new(
        HttpClient::from_parts(reqwest::Client::new(), AuthStep::default()),
        WriteClientSettings {
            url: url.parse().unwrap(),
            timeout: Duration::from_secs(5),
            user_agent: "Prometheus/3.5.0".into(),
            headers: vec![],
            retry_on_http_429: false,
        },
    )
    .unwrap()
    .with_remote_write_v2()
}

fn settings() -> QueueSettings {
    QueueSettings {
        name: "v2".into(),
        capacity: 50,
        min_shards: 1,
        max_shards: 1,
        max_samples_per_send: 10,
        batch_send_deadline: Duration::from_millis(20),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        sample_age_limit: None,
        shard_update_interval: Duration::from_secs(3600),
        send_native_histograms: false,
        send_exemplars: false,
        metadata: None,
    }
}

/// 5 series × 6 samples; returns the expected (labels, t, v), sorted.
fn fill(wal: &MemWal) -> Vec<(String, i64, f64)> {
    wal.push(MemRecord::Series(
        (1..=5u64)
            .map(|i| {
                (
                    i,
                    Labels::from_pairs([("__name__", "m"), ("i", &i.to_string()), ("job", "rw2")]),
                )
            })
            .collect(),
    ));
    let mut want = Vec::new();
    for t in 0..6i64 {
        wal.push(MemRecord::Samples(
            (1..=5u64)
                .map(|i| (i, 1000 + t, (i as i64 * t) as f64))
                .collect(),
        ));
        for i in 1..=5 {
            want.push((
                format!("__name__=m,i={i},job=rw2"),
                1000 + t,
                (i * t) as f64,
            ));
        }
    }
    want.sort_by(|a, b| a.partial_cmp(b).unwrap());
    want
}

async fn deliver(mode: Mode) -> (Arc<Rx>, Vec<(String, i64, f64)>, Vec<String>) {
    let (url, rx) = start(mode).await;
    let wal = MemWal::default();
    let want = fill(&wal);
    let records = wal.records.lock().len();
    let metrics = RemoteMetrics::register(&mut Registry::default()).for_queue("v2", &url);
    let identity = tributary_remote::SeriesTransform::identity();
    let q = QueueManager::start(settings(), client(&url), wal.source(), identity, metrics);
    assert!(
        eventually(Duration::from_secs(10), || wal.acked.load(Ordering::SeqCst)
            == records)
        .await,
        "not everything acknowledged"
    );
    q.stop(Duration::from_secs(2)).await;
    let seen = rx.seen.lock();
    let versions: Vec<String> = seen.samples.iter().map(|s| s.0.clone()).collect();
    let mut got: Vec<(String, i64, f64)> = seen
        .samples
        .iter()
        .map(|s| (s.1.clone(), s.2, s.3))
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(got, want);
    drop(seen);
    (rx, got, versions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_receiver_gets_every_sample_with_its_labels() {
    let (_rx, got, versions) = deliver(Mode::V2).await;
    assert_eq!(got.len(), 30);
    assert!(versions.iter().all(|v| v == "2.0.0"), "{versions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_415_falls_back_to_v1_without_losing_anything() {
    let (rx, got, versions) = deliver(Mode::V1Only).await;
    assert_eq!(got.len(), 30);
    assert!(versions.iter().all(|v| v == "0.1.0"), "{versions:?}");
    // The 2.0 attempt was made once, then the endpoint stayed on 1.0.
    let attempts = rx.seen.lock().versions.clone();
    assert_eq!(
        attempts.iter().filter(|v| *v == "2.0.0").count(),
        1,
        "{attempts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_that_wrote_nothing_is_an_error() {
    let (url, _rx) = start(Mode::WritesNothing).await;
    let c = client(&url);
    assert_eq!(c.protocol(), Protocol::V2);
    let mut enc = tributary_remote::WriteRequestV2Encoder::new();
    struct S(Labels);
    impl<'a> tributary_remote::EncodableSample<'a> for &'a S {
        fn labels(&self) -> tributary_remote::ItemLabels<'a> {
            tributary_remote::ItemLabels::Owned(&self.0)
        }
        fn timestamp(&self) -> i64 {
            1
        }
        fn value(&self) -> f64 {
            1.0
        }
    }
    let s = [S(Labels::from_pairs([("__name__", "up")]))];
    let body = enc.encode(&s).unwrap();
    let r = c.send_as(body, 0, Protocol::V2, 1).await;
    assert!(
        matches!(r, Err(SendError::NonRecoverable(ref m)) if m.contains("nothing was written")),
        "{r:?}"
    );
}
