//! Native histograms, exemplars and metadata from the real WAL through the
//! queue manager to loopback receivers that decode the published protobuf
//! messages (declared here with prost): remote write 1.0 `histograms` and
//! `exemplars` only when asked for, 1.0 metadata-only requests every
//! `send_interval`, and 2.0 with histograms, exemplars and inline metadata.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{eventually, Count, PbHistogram, PbLabel, PbSample, PbSpan, V2Request, ZeroCount};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use prost::Message;
use tributary_http::{AuthStep, HttpClient};
use tributary_model::{
    BucketSpan, Exemplar, HistogramCount, Labels, MetricType, NativeHistogram, ResetHint, Storage,
};
use tributary_remote::{
    MetadataSettings, QueueManager, QueueSettings, RemoteMetrics, WalSource, WriteClient,
    WriteClientSettings,
};
use tributary_wal::{AgentStorage, WalOptions};

// ----- remote write 1.0 messages ---------------------------------------------

#[derive(Clone, PartialEq, prost::Message)]
struct V1Request {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<V1TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    metadata: Vec<V1Metadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct V1TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<PbLabel>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<PbSample>,
    #[prost(message, repeated, tag = "3")]
    exemplars: Vec<V1Exemplar>,
    #[prost(message, repeated, tag = "4")]
    histograms: Vec<PbHistogram>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct V1Exemplar {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<PbLabel>,
    #[prost(double, tag = "2")]
    value: f64,
    #[prost(int64, tag = "3")]
    timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct V1Metadata {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(string, tag = "2")]
    metric_family_name: String,
    #[prost(string, tag = "4")]
    help: String,
    #[prost(string, tag = "5")]
    unit: String,
}

/// The Histogram message (identical field numbers in 1.0 and 2.0).
// ----- receiver ----------------------------------------------------------------

#[derive(Default)]
struct Seen {
    v1: Vec<V1Request>,
    v2: Vec<V2Request>,
}

async fn handle(State(seen): State<Arc<Mutex<Seen>>>, headers: HeaderMap, body: Bytes) -> Response {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy block");
    let v2 = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("io.prometheus.write.v2.Request"));
    if v2 {
        let req = V2Request::decode(raw.as_slice()).expect("v2 protobuf");
        let (mut s, mut h, mut e) = (0, 0, 0);
        for ts in &req.timeseries {
            s += ts.samples.len();
            h += ts.histograms.len();
            e += ts.exemplars.len();
        }
        seen.lock().v2.push(req);
        return (
            StatusCode::NO_CONTENT,
            [
                ("X-Prometheus-Remote-Write-Samples-Written", s.to_string()),
                (
                    "X-Prometheus-Remote-Write-Histograms-Written",
                    h.to_string(),
                ),
                ("X-Prometheus-Remote-Write-Exemplars-Written", e.to_string()),
            ],
        )
            .into_response();
    }
    let req = V1Request::decode(raw.as_slice()).expect("v1 protobuf");
    seen.lock().v1.push(req);
    StatusCode::NO_CONTENT.into_response()
}

async fn start_receiver() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = axum::Router::new()
        .route("/push", axum::routing::post(handle))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

fn client(url: &str, v2: bool) -> WriteClient {
    let c = WriteClient::new(
        HttpClient::from_parts(reqwest::Client::new(), AuthStep::default()),
        WriteClientSettings {
            url: url.parse().unwrap(),
            timeout: Duration::from_secs(5),
            user_agent: "Prometheus/3.5.0".into(),
            headers: vec![],
            retry_on_http_429: false,
        },
    )
    .unwrap();
    if v2 {
        c.with_remote_write_v2()
    } else {
        c
    }
}

fn settings(send_extras: bool) -> QueueSettings {
    QueueSettings {
        name: "q".into(),
        capacity: 100,
        min_shards: 1,
        max_shards: 1,
        max_samples_per_send: 10,
        batch_send_deadline: Duration::from_millis(20),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        sample_age_limit: None,
        shard_update_interval: Duration::from_secs(3600),
        send_native_histograms: send_extras,
        send_exemplars: send_extras,
        metadata: Some(MetadataSettings {
            send_interval: Duration::from_millis(100),
            max_per_send: 1,
        }),
    }
}

fn histogram() -> NativeHistogram {
    NativeHistogram {
        schema: 2,
        zero_threshold: 0.001,
        zero_count: HistogramCount::Int(0),
        count: HistogramCount::Int(6),
        sum: 4.5,
        positive_spans: vec![BucketSpan {
            offset: 1,
            length: 3,
        }],
        positive_deltas: vec![2, 0, -1],
        negative_spans: vec![BucketSpan {
            offset: -2,
            length: 1,
        }],
        negative_deltas: vec![1],
        reset_hint: ResetHint::No,
        ..NativeHistogram::default()
    }
}

/// Writes one scrape's worth into the WAL: a counter sample with an
/// exemplar and metadata, and a histogram series with metadata.
fn fill(wal: &AgentStorage) {
    let mut app = wal.appender();
    let c = app
        .series(&Labels::from_pairs([
            ("__name__", "jobs_total"),
            ("job", "p"),
        ]))
        .unwrap();
    let h = app
        .series(&Labels::from_pairs([
            ("__name__", "rpc_seconds"),
            ("job", "p"),
        ]))
        .unwrap();
    app.update_metadata(c, MetricType::Counter, "Jobs done.", "")
        .unwrap();
    app.update_metadata(h, MetricType::Histogram, "RPC latency.", "seconds")
        .unwrap();
    app.append(c, 5_000, 42.0).unwrap();
    app.append_exemplar(
        c,
        &Exemplar {
            labels: Labels::from_pairs([("trace_id", "t1")]),
            value: 1.0,
            t: 4_900,
        },
    )
    .unwrap();
    app.append_histogram(h, 5_000, &histogram()).unwrap();
    app.commit().unwrap();
}

/// Opens a WAL with the queue's cursor already at its start (a cursor is
/// otherwise created at the end of the WAL).
fn open_wal(dir: &std::path::Path) -> Arc<AgentStorage> {
    let wal = AgentStorage::open(dir, WalOptions::default(), &mut Registry::default()).unwrap();
    wal.consumer("q").unwrap();
    wal
}

fn start_queue(wal: &Arc<AgentStorage>, url: &str, v2: bool, extras: bool) -> QueueManager {
    let metrics = RemoteMetrics::register(&mut Registry::default()).for_queue("q", url);
    let source = WalSource::open(wal.clone(), "q").unwrap();
    let identity = tributary_remote::SeriesTransform::identity();
    QueueManager::start(settings(extras), client(url, v2), source, identity, metrics)
}

fn pb_labels(l: &[PbLabel]) -> String {
    common::label_string(l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_sends_histograms_exemplars_and_metadata_requests() {
    let (url, seen) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let wal = open_wal(dir.path());
    fill(&wal);
    let q = start_queue(&wal, &url, false, true);
    let done = || {
        let s = seen.lock();
        let series: usize = s.v1.iter().map(|r| r.timeseries.len()).sum();
        let metadata: usize = s.v1.iter().map(|r| r.metadata.len()).sum();
        series >= 3 && metadata >= 2
    };
    assert!(
        eventually(Duration::from_secs(10), done).await,
        "not delivered"
    );
    q.stop(Duration::from_secs(2)).await;

    let s = seen.lock();
    let series: Vec<&V1TimeSeries> = s.v1.iter().flat_map(|r| &r.timeseries).collect();
    // One TimeSeries per sample, histogram and exemplar.
    assert_eq!(series.len(), 3);
    assert!(series
        .iter()
        .all(|t| t.samples.len() + t.histograms.len() + t.exemplars.len() == 1));
    let h = series
        .iter()
        .find(|t| !t.histograms.is_empty())
        .expect("histogram sent");
    assert_eq!(pb_labels(&h.labels), "__name__=rpc_seconds,job=p");
    let ph = &h.histograms[0];
    assert_eq!(ph.count, Some(Count::Int(6)));
    assert_eq!(ph.zero_count, Some(ZeroCount::Int(0)));
    assert_eq!(ph.sum, 4.5);
    assert_eq!(ph.schema, 2);
    assert_eq!(ph.zero_threshold, 0.001);
    assert_eq!(
        ph.positive_spans,
        vec![PbSpan {
            offset: 1,
            length: 3
        }]
    );
    assert_eq!(ph.positive_deltas, vec![2, 0, -1]);
    assert_eq!(
        ph.negative_spans,
        vec![PbSpan {
            offset: -2,
            length: 1
        }]
    );
    assert_eq!(ph.negative_deltas, vec![1]);
    assert_eq!(ph.reset_hint, 2);
    assert_eq!(ph.timestamp, 5_000);
    let e = series
        .iter()
        .find(|t| !t.exemplars.is_empty())
        .expect("exemplar sent");
    assert_eq!(pb_labels(&e.labels), "__name__=jobs_total,job=p");
    assert_eq!(pb_labels(&e.exemplars[0].labels), "trace_id=t1");
    assert_eq!(e.exemplars[0].value, 1.0);
    assert_eq!(e.exemplars[0].timestamp, 4_900);

    // Metadata-only requests, one family per request (max_per_send 1).
    let md_requests: Vec<&V1Request> = s.v1.iter().filter(|r| !r.metadata.is_empty()).collect();
    assert!(md_requests
        .iter()
        .all(|r| r.timeseries.is_empty() && r.metadata.len() == 1));
    let mut families: Vec<(String, i32, String, String)> = md_requests
        .iter()
        .map(|r| {
            let m = &r.metadata[0];
            (
                m.metric_family_name.clone(),
                m.kind,
                m.help.clone(),
                m.unit.clone(),
            )
        })
        .collect();
    families.sort();
    families.dedup();
    assert_eq!(
        families,
        vec![
            ("jobs_total".into(), 1, "Jobs done.".into(), "".into()),
            (
                "rpc_seconds".into(),
                3,
                "RPC latency.".into(),
                "seconds".into()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_without_the_flags_sends_samples_only_and_still_acknowledges() {
    let (url, seen) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let wal = open_wal(dir.path());
    fill(&wal);
    let q = start_queue(&wal, &url, false, false);
    let done = || {
        let s = seen.lock();
        s.v1.iter().map(|r| r.timeseries.len()).sum::<usize>() >= 1
    };
    assert!(
        eventually(Duration::from_secs(10), done).await,
        "not delivered"
    );
    // Give histograms/exemplars a chance to (wrongly) arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.stop(Duration::from_secs(2)).await;
    let s = seen.lock();
    let series: Vec<&V1TimeSeries> = s.v1.iter().flat_map(|r| &r.timeseries).collect();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].samples[0].value, 42.0);
    drop(s);
    // Everything read was acknowledged: a new consumer start has nothing left.
    let cursor = wal.consumer("q").unwrap().position();
    let mut reader = tributary_wal::WalReader::open(wal.wal_dir(), cursor).unwrap();
    assert!(
        reader.next_record().unwrap().is_none(),
        "WAL fully acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_carries_histograms_exemplars_and_inline_metadata() {
    let (url, seen) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let wal = open_wal(dir.path());
    fill(&wal);
    // Flags off: 2.0 carries histograms and exemplars regardless.
    let q = start_queue(&wal, &url, true, false);
    let done = || {
        let s = seen.lock();
        s.v2.iter().map(|r| r.timeseries.len()).sum::<usize>() >= 3
    };
    assert!(
        eventually(Duration::from_secs(10), done).await,
        "not delivered"
    );
    q.stop(Duration::from_secs(2)).await;
    let s = seen.lock();
    assert!(s.v1.is_empty(), "no 1.0 metadata requests with 2.0");
    let mut hist = 0;
    let mut ex = 0;
    for req in &s.v2 {
        assert_eq!(req.symbols.first().map(String::as_str), Some(""));
        let sym = |i: u32| req.symbols[i as usize].clone();
        for ts in &req.timeseries {
            let name = ts
                .labels_refs
                .chunks(2)
                .find(|p| sym(p[0]) == "__name__")
                .map(|p| sym(p[1]))
                .unwrap();
            let md = ts.metadata.as_ref().expect("inline metadata");
            match name.as_str() {
                "rpc_seconds" => {
                    assert_eq!(md.kind, 3);
                    assert_eq!(sym(md.help_ref), "RPC latency.");
                    assert_eq!(sym(md.unit_ref), "seconds");
                    let h = &ts.histograms[0];
                    assert_eq!(h.count, Some(Count::Int(6)));
                    assert_eq!(h.positive_deltas, vec![2, 0, -1]);
                    assert_eq!(h.timestamp, 5_000);
                    hist += 1;
                }
                "jobs_total" => {
                    assert_eq!(md.kind, 1);
                    assert_eq!(sym(md.help_ref), "Jobs done.");
                    assert_eq!(md.unit_ref, 0);
                    for e in &ts.exemplars {
                        let l: Vec<String> = e.labels_refs.iter().map(|r| sym(*r)).collect();
                        assert_eq!(l, vec!["trace_id".to_string(), "t1".to_string()]);
                        assert_eq!(e.timestamp, 4_900);
                        ex += 1;
                    }
                }
                other => panic!("unexpected series {other}"),
            }
        }
    }
    assert_eq!((hist, ex), (1, 1));
}
