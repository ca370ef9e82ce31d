//! `tributary receive`: a remote-write 1.0 receiver that prints every sample
//! it accepts, one line each — the other half of the bundled example, and a
//! handy probe when debugging someone's pipeline.

use std::io::Write;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::cli::ReceiveArgs;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Decodes a snappy-compressed remote-write 1.0 body.
pub fn decode_body(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

/// One sample as a line: `name{a="b"} value timestamp_ms`.
pub fn format_sample(ts: &TimeSeries, s: &Sample) -> String {
    let name = ts
        .labels
        .iter()
        .find(|l| l.name == "__name__")
        .map(|l| l.value.as_str())
        .unwrap_or("");
    let labels: Vec<String> = ts
        .labels
        .iter()
        .filter(|l| l.name != "__name__")
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    let value = if tributary_model::is_stale_nan(s.value) {
        "StaleNaN".to_string()
    } else {
        s.value.to_string()
    };
    format!("{name}{{{}}} {value} {}", labels.join(","), s.timestamp)
}

struct Receiver {
    max_per_request: usize,
}

async fn write(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("io.prometheus.write.v2.Request") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "remote write 2.0 is not supported by this receiver\n".into(),
        );
    }
    let req = match decode_body(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let mut out = std::io::stdout().lock();
    let mut n = 0;
    for ts in &req.timeseries {
        for s in &ts.samples {
            n += 1;
            if r.max_per_request == 0 || n <= r.max_per_request {
                let _ = writeln!(out, "{}", format_sample(ts, s));
            }
        }
    }
    if r.max_per_request > 0 && n > r.max_per_request {
        let _ = writeln!(
            out,
            "... and {} more samples in this request",
            n - r.max_per_request
        );
    }
    let _ = out.flush();
    (StatusCode::NO_CONTENT, String::new())
}

pub async fn run(args: ReceiveArgs) -> anyhow::Result<()> {
    let state = Arc::new(Receiver {
        max_per_request: args.max_per_request,
    });
    let app = Router::new()
        .route("/api/v1/write", post(write))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    eprintln!(
        "Receiving remote write on http://{}/api/v1/write",
        listener.local_addr()?
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    tributary_web::serve_plain(listener, app, shutdown).await;
    Ok(())
}
