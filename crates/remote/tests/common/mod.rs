//! Test doubles: a loopback remote-write receiver with scripted faults and
//! an in-memory WAL.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use prost::Message;
use tributary_model::{Labels, SeriesRef, SharedLabelStore};
use tributary_remote::{Acker, DecodedRecord, RecordKind, RecordSource, SourceError};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbWriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<PbTimeSeries>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbTimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<PbLabel>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PbSample>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbLabel {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// One received request.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    /// (labels as "a=1,b=2", timestamp, value) per sample.
    pub samples: Vec<(String, i64, f64)>,
    /// The status we answered.
    pub status: StatusCode,
    /// The body's size as sent (compressed).
    pub body_len: usize,
}

#[derive(Default)]
pub struct ReceiverState {
    /// Scripted answers for the next requests; empty = 200.
    pub script: Mutex<VecDeque<(StatusCode, Option<String>)>>,
    /// Answer used when the script is empty.
    pub default_status: Mutex<Option<StatusCode>>,
    /// Requests of more samples than this are refused with 413 (as a
    /// proxy's body limit refuses them), before the script is consulted.
    pub max_samples: Mutex<Option<usize>>,
    pub requests: Mutex<Vec<Received>>,
}

impl ReceiverState {
    pub fn accepted_samples(&self) -> Vec<(String, i64, f64)> {
        self.requests
            .lock()
            .iter()
            .filter(|r| r.status.is_success())
            .flat_map(|r| r.samples.clone())
            .collect()
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<ReceiverState>,
}

pub fn label_string(labels: &[PbLabel]) -> String {
    labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect::<Vec<_>>()
        .join(",")
}

async fn handle(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy block body");
    let req = PbWriteRequest::decode(raw.as_slice()).expect("protobuf body");
    let samples: Vec<_> = req
        .timeseries
        .iter()
        .flat_map(|ts| {
            let l = label_string(&ts.labels);
            ts.samples
                .iter()
                .map(move |s| (l.clone(), s.timestamp, s.value))
        })
        .collect();
    let too_large = state
        .max_samples
        .lock()
        .is_some_and(|max| samples.len() > max);
    let (status, retry_after) = if too_large {
        (StatusCode::PAYLOAD_TOO_LARGE, None)
    } else {
        state
            .script
            .lock()
            .pop_front()
            .unwrap_or((state.default_status.lock().unwrap_or(StatusCode::OK), None))
    };
    state.requests.lock().push(Received {
        at: Instant::now(),
        headers,
        samples,
        status,
        body_len: body.len(),
    });
    let mut resp = (status, "scripted").into_response();
    if let Some(ra) = retry_after {
        resp.headers_mut()
            .insert("retry-after", ra.parse().unwrap());
    }
    resp
}

pub async fn start_receiver() -> Receiver {
    let state = Arc::new(ReceiverState::default());
    let app = axum::Router::new()
        .route("/push", axum::routing::post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { addr, state }
}

/// What the in-memory WAL holds per record.
#[derive(Clone)]
pub enum MemRecord {
    Series(Vec<(u64, Labels)>),
    Samples(Vec<(u64, i64, f64)>),
}

/// A WAL in memory: positions are record indexes (end = index + 1).
#[derive(Clone, Default)]
pub struct MemWal {
    pub records: Arc<Mutex<Vec<MemRecord>>>,
    pub acked: Arc<AtomicUsize>,
    pub notify: Arc<tokio::sync::Notify>,
    /// Series "garbage-collected" by the test, and the generation that
    /// tells readers so.
    pub collected: Arc<Mutex<Vec<u64>>>,
    pub gc_generation: Arc<AtomicUsize>,
    /// The label sets of the series pushed so far, as the storage keeps them.
    pub labels: SharedLabelStore,
}

impl MemWal {
    pub fn push(&self, r: MemRecord) {
        if let MemRecord::Series(s) = &r {
            let mut store = self.labels.write();
            for (r, l) in s {
                store.insert(SeriesRef(*r), l).unwrap();
            }
        }
        self.records.lock().push(r);
        self.notify.notify_one();
    }

    /// Garbage-collects series `r`, as WAL truncation does.
    pub fn collect(&self, r: u64) {
        self.labels.write().remove(SeriesRef(r));
        self.collected.lock().push(r);
        self.gc_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// A reader resuming at the acknowledged position.
    pub fn source(&self) -> MemSource {
        MemSource {
            wal: self.clone(),
            next: self.acked.load(Ordering::SeqCst),
        }
    }
}

pub struct MemSource {
    wal: MemWal,
    next: usize,
}

impl RecordSource for MemSource {
    type Position = usize;

    fn next_record(&mut self, out: &mut DecodedRecord) -> Result<Option<usize>, SourceError> {
        let records = self.wal.records.lock();
        let Some(r) = records.get(self.next) else {
            return Ok(None);
        };
        match r {
            MemRecord::Series(_) => out.kind = RecordKind::Series,
            MemRecord::Samples(s) => {
                out.kind = RecordKind::Samples;
                out.samples
                    .extend(s.iter().map(|(r, t, v)| (SeriesRef(*r), *t, *v)));
            }
        }
        self.next += 1;
        Ok(Some(self.next))
    }

    fn label_store(&self) -> SharedLabelStore {
        self.wal.labels.clone()
    }

    fn series_gc_generation(&self) -> u64 {
        self.wal.gc_generation.load(Ordering::SeqCst) as u64
    }

    fn retain_live<V>(&self, map: &mut tributary_model::RefMap<V>) {
        let collected = self.wal.collected.lock();
        map.retain(|r, _| !collected.contains(&r.0));
    }

    fn acker(&self) -> Acker<usize> {
        let acked = self.wal.acked.clone();
        Arc::new(move |p| {
            acked.fetch_max(p, Ordering::SeqCst);
        })
    }

    async fn wait_for_data(&mut self, max: Duration) {
        let _ = tokio::time::timeout(max, self.wal.notify.notified()).await;
    }
}

/// Polls `cond` every 10ms for at most `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

// ----- remote write 2.0 messages (and the native histogram of 1.0) -------------

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbHistogram {
    #[prost(oneof = "Count", tags = "1, 2")]
    pub count: Option<Count>,
    #[prost(double, tag = "3")]
    pub sum: f64,
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(oneof = "ZeroCount", tags = "6, 7")]
    pub zero_count: Option<ZeroCount>,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<PbSpan>,
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<PbSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Count {
    #[prost(uint64, tag = "1")]
    Int(u64),
    #[prost(double, tag = "2")]
    Float(f64),
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ZeroCount {
    #[prost(uint64, tag = "6")]
    Int(u64),
    #[prost(double, tag = "7")]
    Float(f64),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct V2Request {
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<V2TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct V2TimeSeries {
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PbSample>,
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<PbHistogram>,
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<V2Exemplar>,
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<V2Metadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct V2Exemplar {
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct V2Metadata {
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}
