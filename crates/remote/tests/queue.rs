//! End-to-end queue tests against a real loopback receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use prometheus_client::registry::Registry;
use tributary_http::{AuthStep, HttpClient};
use tributary_model::Labels;
use tributary_remote::{
    QueueManager, QueueMetrics, QueueSettings, RemoteMetrics, SeriesTransform, WriteClient,
    WriteClientSettings,
};

const WAIT: Duration = Duration::from_secs(10);

fn settings(shards: usize) -> QueueSettings {
    QueueSettings {
        name: "test".into(),
        capacity: 50,
        min_shards: shards,
        max_shards: shards,
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

/// A client as the agent builds it for a plain `http://` endpoint: 1.0
/// requests go over its own HTTP/1.1 connections.
fn client(rx: &Receiver, retry_429: bool) -> WriteClient {
    let http = tributary_http::build_client(
        &tributary_config::HttpClientConfig::default_for_remote_write(),
        tributary_http::ClientOptions::default(),
    )
    .unwrap();
    assert!(http.is_plain());
    client_over(http, rx, retry_429)
}

/// A client that sends everything through reqwest (as for endpoints with
/// TLS, a proxy or credentials).
fn general_client(rx: &Receiver, retry_429: bool) -> WriteClient {
    let http = HttpClient::from_parts(reqwest::Client::new(), AuthStep::default());
    assert!(!http.is_plain());
    client_over(http, rx, retry_429)
}

fn client_over(http: HttpClient, rx: &Receiver, retry_429: bool) -> WriteClient {
    WriteClient::new(
        http,
        WriteClientSettings {
            url: format!("http://{}/push", rx.addr).parse().unwrap(),
            timeout: Duration::from_secs(5),
            user_agent: "Prometheus/3.5.0".into(),
            headers: vec![("X-Tenant".into(), "team-a".into())],
            retry_on_http_429: retry_429,
        },
    )
    .unwrap()
}

/// External label `cluster="c1"` added when absent; series with
/// `drop="yes"` removed (a stand-in for write_relabel_configs).
fn transform() -> SeriesTransform {
    SeriesTransform {
        external: Labels::from_pairs([("cluster", "c1")]),
        relabel: Some(Arc::new(|l: &Labels| {
            (l.get("drop") != Some("yes")).then(|| l.clone())
        })),
    }
}

/// A queue over `wal` with `shards` shards sending to `rx`.
fn start_queue(rx: &Receiver, wal: &MemWal, shards: usize, m: QueueMetrics) -> QueueManager {
    QueueManager::start(
        settings(shards),
        client(rx, false),
        wal.source(),
        transform(),
        m,
    )
}

fn metrics() -> QueueMetrics {
    RemoteMetrics::register(&mut Registry::default()).for_queue("test", "http://x")
}

fn series(n: u64) -> MemRecord {
    MemRecord::Series(
        (1..=n)
            .map(|i| {
                (
                    i,
                    Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]),
                )
            })
            .collect(),
    )
}

/// `per_series` samples for each of `n` series at timestamps 1000, 1001, …
/// spread over several records.
fn fill(wal: &MemWal, n: u64, per_series: i64) {
    wal.push(series(n));
    for t in 0..per_series {
        wal.push(MemRecord::Samples(
            (1..=n).map(|i| (i, 1000 + t, t as f64)).collect(),
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_everything_with_exact_labels_and_headers() {
    delivers_everything_over(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_everything_with_exact_labels_and_headers_over_the_general_client() {
    delivers_everything_over(general_client).await;
}

async fn delivers_everything_over(client: fn(&Receiver, bool) -> WriteClient) {
    let rx = start_receiver().await;
    let wal = MemWal::default();
    wal.push(MemRecord::Series(vec![
        (1, Labels::from_pairs([("__name__", "up"), ("job", "a")])),
        (
            2,
            Labels::from_pairs([("__name__", "up"), ("cluster", "own")]),
        ),
        (3, Labels::from_pairs([("__name__", "up"), ("drop", "yes")])),
    ]));
    wal.push(MemRecord::Samples(vec![
        (1, 10, 1.0),
        (2, 10, 2.0),
        (3, 10, 3.0),
        (99, 10, 4.0),
    ]));
    let m = metrics();
    let q = QueueManager::start(
        settings(1),
        client(&rx, false),
        wal.source(),
        transform(),
        m.clone(),
    );
    assert!(eventually(WAIT, || wal.acked.load(Ordering::SeqCst) == 2).await);
    let mut got = rx.state.accepted_samples();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("__name__=up,cluster=c1,job=a".to_owned(), 10, 1.0),
            ("__name__=up,cluster=own".to_owned(), 10, 2.0),
        ]
    );
    let reqs = rx.state.requests.lock().clone();
    let h = &reqs[0].headers;
    assert_eq!(h["content-encoding"], "snappy");
    assert_eq!(h["content-type"], "application/x-protobuf");
    assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(h["user-agent"], "Prometheus/3.5.0");
    assert_eq!(h["x-tenant"], "team-a");
    assert!(h.get("retry-attempt").is_none());
    assert_eq!(m.samples.get(), 2);
    assert_eq!(m.dropped_series.get(), 1);
    assert_eq!(m.dropped_unknown.get(), 1);
    q.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_delivered() {
    let rx = start_receiver().await;
    rx.state.script.lock().extend([
        (StatusCode::INTERNAL_SERVER_ERROR, None),
        (StatusCode::SERVICE_UNAVAILABLE, None),
    ]);
    let wal = MemWal::default();
    fill(&wal, 5, 4);
    let m = metrics();
    let q = start_queue(&rx, &wal, 1, m.clone());
    assert!(eventually(WAIT, || wal.acked.load(Ordering::SeqCst) == 5).await);
    let got = rx.state.accepted_samples();
    assert_eq!(
        got.len(),
        20,
        "every sample delivered exactly once after retries"
    );
    assert!(m.samples_retried.get() >= 2);
    assert_eq!(m.samples_failed.get(), 0);
    let reqs = rx.state.requests.lock().clone();
    assert_eq!(reqs[1].headers["retry-attempt"], "1");
    assert_eq!(reqs[2].headers["retry-attempt"], "2");
    assert_eq!(
        reqs[0].samples, reqs[2].samples,
        "the same batch is re-sent"
    );
    q.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_drop_the_batch_without_resending() {
    let rx = start_receiver().await;
    rx.state
        .script
        .lock()
        .push_back((StatusCode::BAD_REQUEST, None));
    let wal = MemWal::default();
    fill(&wal, 5, 4);
    let m = metrics();
    let q = start_queue(&rx, &wal, 1, m.clone());
    assert!(eventually(WAIT, || wal.acked.load(Ordering::SeqCst) == 5).await);
    let reqs = rx.state.requests.lock().clone();
    let rejected = reqs[0].samples.clone();
    assert_eq!(rejected.len(), 10);
    let accepted = rx.state.accepted_samples();
    assert_eq!(accepted.len(), 10);
    assert!(
        rejected.iter().all(|s| !accepted.contains(s)),
        "400 batch never re-sent"
    );
    assert_eq!(m.samples_failed.get(), 10);
    assert_eq!(m.samples_retried.get(), 0);
    q.stop(Duration::from_secs(1)).await;
}

/// Five series of four samples each, queued (one shard, ten samples a
/// request) to a receiver that answers 413 to a request of more than
/// `max` samples, until every record is acknowledged.
async fn deliver_with_a_size_limit(max: usize) -> (Receiver, QueueMetrics, QueueManager) {
    let rx = start_receiver().await;
    *rx.state.max_samples.lock() = Some(max);
    let wal = MemWal::default();
    fill(&wal, 5, 4);
    let m = metrics();
    let q = start_queue(&rx, &wal, 1, m.clone());
    assert!(eventually(WAIT, || wal.acked.load(Ordering::SeqCst) == 5).await);
    (rx, m, q)
}

/// A receiver (or the proxy in front of it) that refuses requests over a
/// size with 413 gets the batch in halves until they pass: every sample
/// once, each series in order, none failed. Once a body was refused, none
/// as large is sent again: the second batch is split before it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_too_large_for_the_receiver_is_sent_in_halves() {
    let (rx, m, q) = deliver_with_a_size_limit(3).await;
    let requests: Vec<(usize, u16, usize)> = rx
        .state
        .requests
        .lock()
        .iter()
        .map(|r| (r.samples.len(), r.status.as_u16(), r.body_len))
        .collect();
    // The first batch of 10 is refused, then its first half of 5.
    assert_eq!(
        requests[..2].iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        [(10, 413), (5, 413)]
    );
    // Without the memory, the second batch repeats the first: 10 and
    // both its halves refused again.
    let whole = requests.iter().filter(|r| r.0 == 10).count();
    assert_eq!(whole, 1, "the second batch sent whole: {requests:?}");
    for (i, later) in requests.iter().enumerate() {
        let refused_before = requests[..i].iter().filter(|r| r.1 == 413);
        for earlier in refused_before {
            assert!(
                later.2 < earlier.2,
                "request {i} of {} bytes sent after {} bytes were refused: {requests:?}",
                later.2,
                earlier.2
            );
        }
    }
    let got = rx.state.accepted_samples();
    let mut want = Vec::new();
    for t in 0..4 {
        for i in 1..=5 {
            want.push((format!("__name__=m,cluster=c1,i={i}"), 1000 + t, t as f64));
        }
    }
    assert_eq!(got, want, "every sample once, in the order read");
    assert_eq!(m.samples_failed.get(), 0);
    assert_eq!(m.samples.get(), 20);
    // Each refused request's samples count as retried; the parts split
    // before they were sent do not.
    let refused: usize = requests.iter().filter(|r| r.1 == 413).map(|r| r.0).sum();
    assert_eq!(m.samples_retried.get(), refused as u64);
    q.stop(Duration::from_secs(1)).await;
}

/// A single sample refused for its size is dropped as a non-recoverable
/// failure, and the queue goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_sample_too_large_for_the_receiver_is_dropped() {
    let (rx, m, q) = deliver_with_a_size_limit(0).await;
    assert_eq!(m.samples_failed.get(), 20);
    assert_eq!(m.samples.get(), 0);
    // Sent and refused: 10, 5 and 2, then the first sample alone. From
    // then on every request of more than one sample is split unsent.
    assert_eq!(m.samples_retried.get(), 10 + 5 + 2);
    let requests: Vec<usize> = rx
        .state
        .requests
        .lock()
        .iter()
        .map(|r| r.samples.len())
        .collect();
    let singles = requests.iter().filter(|&&n| n == 1).count();
    assert_eq!(singles, 20, "each sample tried alone once: {requests:?}");
    assert_eq!(requests.len(), 3 + 20, "{requests:?}");
    q.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_honours_retry_after_only_when_enabled() {
    for retry in [true, false] {
        let rx = start_receiver().await;
        rx.state
            .script
            .lock()
            .push_back((StatusCode::TOO_MANY_REQUESTS, Some("1".into())));
        let wal = MemWal::default();
        fill(&wal, 3, 1);
        let m = metrics();
        let q = QueueManager::start(
            settings(1),
            client(&rx, retry),
            wal.source(),
            transform(),
            m.clone(),
        );
        assert!(eventually(WAIT, || wal.acked.load(Ordering::SeqCst) == 2).await);
        let reqs = rx.state.requests.lock().clone();
        if retry {
            assert_eq!(reqs.len(), 2);
            let gap = reqs[1].at - reqs[0].at;
            assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
            assert_eq!(rx.state.accepted_samples().len(), 3);
        } else {
            assert_eq!(reqs.len(), 1);
            assert_eq!(m.samples_failed.get(), 3);
        }
        q.stop(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_series_order_is_kept_across_shards() {
    let rx = start_receiver().await;
    // Some failures to force retries interleaving between shards.
    rx.state.script.lock().extend([
        (StatusCode::INTERNAL_SERVER_ERROR, None),
        (StatusCode::OK, None),
        (StatusCode::BAD_GATEWAY, None),
    ]);
    let wal = MemWal::default();
    fill(&wal, 40, 25);
    let q = start_queue(&rx, &wal, 4, metrics());
    assert!(eventually(WAIT, || wal.acked.load(Ordering::SeqCst) == 26).await);
    let got = rx.state.accepted_samples();
    assert_eq!(got.len(), 40 * 25);
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    for (l, t, _) in got {
        let prev = last.insert(l.clone(), t);
        assert!(prev.is_none_or(|p| p < t), "{l}: {prev:?} then {t}");
    }
    assert_eq!(q.status().shards, 4);
    q.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_holds_the_cursor_and_bounds_memory() {
    let rx = start_receiver().await;
    *rx.state.default_status.lock() = Some(StatusCode::SERVICE_UNAVAILABLE);
    let wal = MemWal::default();
    fill(&wal, 20, 50); // 1000 samples, capacity 50 per shard
    let m = metrics();
    let q = start_queue(&rx, &wal, 1, m.clone());
    assert!(
        eventually(WAIT, || m.enqueue_retries.get() > 0).await,
        "watcher back-pressured"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Only the series record (nothing to deliver) may be acknowledged.
    assert!(wal.acked.load(Ordering::SeqCst) <= 1);
    let st = q.status();
    assert!(
        st.pending_samples <= 50 + 10 + 20,
        "pending {}",
        st.pending_samples
    );
    assert!(st.last_error.is_some());
    q.stop(Duration::from_millis(100)).await;
    assert!(wal.acked.load(Ordering::SeqCst) <= 1);
    assert_eq!(rx.state.accepted_samples().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_delivers_everything_not_acknowledged() {
    let rx = start_receiver().await;
    *rx.state.default_status.lock() = Some(StatusCode::SERVICE_UNAVAILABLE);
    let wal = MemWal::default();
    fill(&wal, 10, 10);
    let q = start_queue(&rx, &wal, 2, metrics());
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.stop(Duration::from_millis(50)).await;
    // Endpoint recovers; a new queue resumes from the cursor.
    *rx.state.default_status.lock() = None;
    wal.push(MemRecord::Samples(
        (1..=10).map(|i| (i, 5000, 1.0)).collect(),
    ));
    let q = start_queue(&rx, &wal, 2, metrics());
    assert!(eventually(WAIT, || wal.acked.load(Ordering::SeqCst) == 12).await);
    let got: std::collections::HashSet<(String, i64)> = rx
        .state
        .accepted_samples()
        .into_iter()
        .map(|(l, t, _)| (l, t))
        .collect();
    assert_eq!(
        got.len(),
        10 * 11,
        "every sample delivered after the restart"
    );
    q.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_the_endpoint_down_does_not_wait_out_the_flush_deadline() {
    let rx = start_receiver().await;
    *rx.state.default_status.lock() = Some(StatusCode::SERVICE_UNAVAILABLE);
    let wal = MemWal::default();
    fill(&wal, 10, 5);
    let m = metrics();
    let q = start_queue(&rx, &wal, 2, m.clone());
    assert!(
        eventually(WAIT, || m.samples_retried.get() > 0).await,
        "sends are failing"
    );
    let started = std::time::Instant::now();
    q.stop(Duration::from_secs(60)).await;
    let took = started.elapsed();
    // One more attempt after at most one backoff (50 ms here), not 60 s.
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    assert!(
        wal.acked.load(Ordering::SeqCst) <= 1,
        "nothing unsent is acknowledged: it stays in the WAL"
    );
    assert_eq!(rx.state.accepted_samples().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_collected_by_the_wal_are_forgotten_by_the_queue() {
    let rx = start_receiver().await;
    let wal = MemWal::default();
    fill(&wal, 2, 1);
    let m = metrics();
    let q = start_queue(&rx, &wal, 1, m.clone());
    assert!(eventually(WAIT, || rx.state.accepted_samples().len() == 2).await);
    // Truncation collects series 1; a (corrupt) later sample for it now
    // meets an unknown series instead of its stale labels.
    wal.collect(1);
    wal.push(MemRecord::Samples(vec![(1, 2000, 1.0), (2, 1500, 1.0)]));
    assert!(eventually(WAIT, || rx.state.accepted_samples().len() == 3).await);
    let got: Vec<(String, i64)> = rx
        .state
        .accepted_samples()
        .into_iter()
        .map(|(l, t, _)| (l, t))
        .filter(|(_, t)| *t >= 1500)
        .collect();
    assert_eq!(got.len(), 1);
    assert!(got[0].0.ends_with("i=2"), "{got:?}");
    assert!(
        eventually(WAIT, || {
            m.dropped(tributary_remote::DropReason::UnintentionallyDroppedSeries)
                .get()
                == 1
        })
        .await
    );
    // What was sent is accounted: three samples, the newest at 1.5 s.
    assert!(eventually(WAIT, || m.samples.get() == 3).await);
    assert_eq!(m.queue_highest_sent_timestamp.get(), 1.5);
    assert_eq!(m.samples_pending.get(), 0);
    q.stop(Duration::from_secs(1)).await;
}

/// A backlog read after an outage or a restart is sent as soon as the
/// watcher has caught up: the last partial batch does not wait out
/// `batch_send_deadline` (an hour here) for more samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_of_a_backlog_is_sent_once_the_watcher_caught_up() {
    let rx = start_receiver().await;
    let wal = MemWal::default();
    // 3 series × 5 samples = 15 = one full batch of 10 and a tail of 5,
    // all timestamped in 1970: old data.
    fill(&wal, 3, 5);
    let s = QueueSettings {
        batch_send_deadline: Duration::from_secs(3600),
        ..settings(1)
    };
    let q = QueueManager::start(s, client(&rx, false), wal.source(), transform(), metrics());
    assert!(
        eventually(WAIT, || rx.state.accepted_samples().len() == 15).await,
        "tail of the backlog not sent: {} of 15",
        rx.state.accepted_samples().len()
    );
    q.stop(Duration::from_secs(1)).await;
}
