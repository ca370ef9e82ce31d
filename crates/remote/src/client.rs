//! One remote-write HTTP attempt and the classification of its outcome.
//!
//! The client only knows how to POST one compressed body with the exact
//! remote-write 1.0 headers and to tell the caller whether a failure is worth
//! retrying (transport errors, 5xx, and 429 when enabled) and for how long
//! the receiver asked us to wait (`Retry-After`), or whether the request
//! was refused for its size (413). The retry loop itself
//! lives with the shards, which own the batch and its accounting.
//!
//! Remote write 2.0 (opt-in with [`WriteClient::with_remote_write_v2`]):
//! requests carry the 2.0 content type and version; a 2xx whose
//! `X-Prometheus-Remote-Write-*-Written` headers confirm nothing written of
//! a non-empty request is a non-recoverable error (a 1.0-only receiver that
//! ignored the content type); a 415 switches the endpoint to 1.0 for good
//! and asks for an immediate retry, which the shard re-encodes as 1.0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT,
};
use reqwest::{StatusCode, Url};
use tributary_http::HttpClient;

use crate::h1::{H1Endpoint, Reply};

/// At most this much of an error response body is kept for the log.
pub(crate) const MAX_ERROR_BODY: usize = 1024;

const REMOTE_WRITE_VERSION: HeaderName =
    HeaderName::from_static("x-prometheus-remote-write-version");
const RETRY_ATTEMPT: HeaderName = HeaderName::from_static("retry-attempt");

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying; `retry_after` is the receiver's requested delay.
    #[error("{message}")]
    Recoverable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The batch must be dropped (4xx, or a request we cannot build).
    #[error("{0}")]
    NonRecoverable(String),
    /// The receiver, or a proxy in front of it, refused the request for its
    /// size (413): smaller requests of the same samples may pass.
    #[error("{0}")]
    TooLarge(String),
}

/// Sends remote-write 1.0 requests to one endpoint.
#[derive(Clone, Debug)]
pub struct WriteClient {
    http: HttpClient,
    url: Url,
    timeout: Duration,
    headers: HeaderMap,
    headers_v2: HeaderMap,
    /// Send 2.0 requests (cleared for good when the receiver answers 415).
    v2: Arc<AtomicBool>,
    retry_on_http_429: bool,
    /// 1.0 requests to a plain `http://` endpoint (no proxy, credentials
    /// or TLS) go over connections of our own.
    h1: Option<Arc<H1Endpoint>>,
}

/// The remote-write protocol of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    V1,
    V2,
}

/// Static settings of a [`WriteClient`].
#[derive(Clone, Debug)]
pub struct WriteClientSettings {
    pub url: Url,
    /// Per-request timeout (`remote_timeout`).
    pub timeout: Duration,
    /// `User-Agent`, e.g. `Prometheus/3.0.0`.
    pub user_agent: String,
    /// Configured `headers` of the remote_write entry.
    pub headers: Vec<(String, String)>,
    pub retry_on_http_429: bool,
}

impl WriteClient {
    pub fn new(http: HttpClient, settings: WriteClientSettings) -> Result<Self, SendError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SendError::NonRecoverable(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                SendError::NonRecoverable(format!("invalid value for header {name}"))
            })?;
            headers.append(name, value);
        }
        // Protocol headers are set last so configured headers cannot override
        // them (config validation forbids that too).
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(REMOTE_WRITE_VERSION, HeaderValue::from_static("0.1.0"));
        let ua = HeaderValue::from_str(&settings.user_agent)
            .map_err(|_| SendError::NonRecoverable("invalid user agent".to_owned()))?;
        headers.insert(USER_AGENT, ua);
        let mut headers_v2 = headers.clone();
        headers_v2.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(crate::encode_v2::CONTENT_TYPE_V2),
        );
        headers_v2.insert(
            REMOTE_WRITE_VERSION,
            HeaderValue::from_static(crate::encode_v2::VERSION_V2),
        );
        let h1 = if http.is_plain() {
            let rendered: Vec<(&str, &[u8])> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes()))
                .collect();
            H1Endpoint::new(&settings.url, &rendered).map(Arc::new)
        } else {
            None
        };
        Ok(Self {
            h1,
            http,
            url: settings.url,
            timeout: settings.timeout,
            headers,
            headers_v2,
            v2: Arc::new(AtomicBool::new(false)),
            retry_on_http_429: settings.retry_on_http_429,
        })
    }

    /// Sends `io.prometheus.write.v2.Request` (falling back to 1.0 on 415).
    pub fn with_remote_write_v2(self) -> Self {
        self.v2.store(true, Ordering::Relaxed);
        self
    }

    /// The protocol to encode the next request with.
    pub fn protocol(&self) -> Protocol {
        if self.v2.load(Ordering::Relaxed) {
            Protocol::V2
        } else {
            Protocol::V1
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// POSTs `body` once. `attempt` is 0 for the first try; later tries carry
    /// `Retry-Attempt: <attempt>`.
    pub async fn send(&self, body: Bytes, attempt: u32) -> Result<(), SendError> {
        self.send_as(body, attempt, Protocol::V1, 0).await
    }

    /// POSTs `body`, encoded as `protocol` and holding `samples` samples
    /// (used by the 2.0 written-headers check).
    pub async fn send_as(
        &self,
        body: Bytes,
        attempt: u32,
        protocol: Protocol,
        samples: u64,
    ) -> Result<(), SendError> {
        if let (Protocol::V1, Some(h1)) = (protocol, &self.h1) {
            if let Some(sent) = self.send_plain(h1, &body, attempt).await {
                return sent;
            }
        }
        let headers = match protocol {
            Protocol::V1 => &self.headers,
            Protocol::V2 => &self.headers_v2,
        };
        let mut rb = self
            .http
            .client()
            .post(self.url.clone())
            .headers(headers.clone())
            .timeout(self.timeout)
            .body(body);
        if attempt > 0 {
            rb = rb.header(RETRY_ATTEMPT, attempt);
        }
        // A credentials file that cannot be read is an operator problem that
        // may be fixed at any moment: retry rather than drop data.
        let rb = self
            .http
            .apply_auth_async(rb)
            .await
            .map_err(|e| SendError::Recoverable {
                message: e.to_string(),
                retry_after: None,
            })?;
        let resp = rb.send().await.map_err(|e| SendError::Recoverable {
            message: format!("sending request: {e}"),
            retry_after: None,
        })?;
        let status = resp.status();
        if status.is_success() {
            if protocol == Protocol::V2 {
                let written = crate::encode_v2::WrittenStats::from_headers(resp.headers());
                if written.contradicts_success(samples) {
                    return Err(SendError::NonRecoverable(format!(
                        "sent a 2.0 request with {samples} samples; got {status} but the response headers say nothing was written (receiver probably only supports remote write 1.0)"
                    )));
                }
            }
            return Ok(());
        }
        if protocol == Protocol::V2 && status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            self.v2.store(false, Ordering::Relaxed);
            tracing::warn!(url = %self.url, "receiver answered 415 to remote write 2.0; falling back to 1.0");
            return Err(SendError::Recoverable {
                message: "receiver does not accept remote write 2.0 (415); retrying as 1.0".into(),
                retry_after: Some(Duration::ZERO),
            });
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = error_body(resp).await;
        Err(self.failure(status, retry_after.as_deref(), &body))
    }

    /// POSTs `body` over the endpoint's own HTTP/1.1 connections; `None`
    /// for a redirect, which the general client follows as configured.
    async fn send_plain(
        &self,
        h1: &H1Endpoint,
        body: &Bytes,
        attempt: u32,
    ) -> Option<Result<(), SendError>> {
        let transport = |message: String| SendError::Recoverable {
            message,
            retry_after: None,
        };
        let reply = match tokio::time::timeout(self.timeout, h1.post(body, attempt)).await {
            Err(_) => {
                let waited = format!("sending request: no response within {:?}", self.timeout);
                return Some(Err(transport(waited)));
            }
            Ok(Err(e)) => return Some(Err(transport(format!("sending request: {e}")))),
            Ok(Ok(reply)) => reply,
        };
        let Reply::Response {
            status,
            retry_after,
            body,
        } = reply
        else {
            return None;
        };
        let Ok(status) = StatusCode::from_u16(status) else {
            return Some(Err(transport(format!("invalid HTTP status {status}"))));
        };
        if status.is_success() {
            return Some(Ok(()));
        }
        let body = String::from_utf8_lossy(&body).trim().to_owned();
        Some(Err(self.failure(status, retry_after.as_deref(), &body)))
    }

    /// The error for a response with a failure `status`.
    fn failure(&self, status: StatusCode, retry_after: Option<&str>, body: &str) -> SendError {
        let retry_after = retry_after.and_then(|v| parse_retry_after(v, SystemTime::now()));
        let message = format!("server returned HTTP status {status}: {body}");
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return SendError::TooLarge(message);
        }
        if is_recoverable(status, self.retry_on_http_429) {
            SendError::Recoverable {
                message,
                retry_after,
            }
        } else {
            SendError::NonRecoverable(message)
        }
    }
}

fn is_recoverable(status: StatusCode, retry_on_http_429: bool) -> bool {
    status.is_server_error() || (retry_on_http_429 && status == StatusCode::TOO_MANY_REQUESTS)
}

async fn error_body(mut resp: reqwest::Response) -> String {
    let mut out = Vec::new();
    while out.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(MAX_ERROR_BODY - out.len());
                out.extend_from_slice(chunk.get(..take).unwrap_or_default());
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).trim().to_owned()
}

/// The longest wait a `Retry-After` can ask for. Prometheus honours any
/// value; one beyond a day is taken as a day, so that a nonsensical one
/// (`5000000000000000000`) cannot overflow the retry deadline's arithmetic
/// and end the shard.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses `Retry-After` as integer seconds or an HTTP-date (relative to
/// `now`), at most [`MAX_RETRY_AFTER`]. Zero, past dates and garbage yield
/// `None` (use normal backoff).
pub(crate) fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(v)
            .ok()?
            .duration_since(now)
            .ok()?,
    };
    (!wait.is_zero()).then(|| wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&earlier, now), None);
    }

    #[test]
    fn retry_after_beyond_a_day_waits_a_day() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for v in ["5000000000000000000", "18446744073709551615"] {
            assert_eq!(parse_retry_after(v, now), Some(MAX_RETRY_AFTER), "{v}");
        }
        let far = httpdate::fmt_http_date(now + Duration::from_secs(400 * 24 * 3600));
        assert_eq!(parse_retry_after(&far, now), Some(MAX_RETRY_AFTER));
        // What the shard computes from it must not overflow.
        let sleep = parse_retry_after("5000000000000000000", now).unwrap_or_default();
        assert!(std::time::Instant::now().checked_add(sleep * 2).is_some());
    }

    #[test]
    fn recoverable_statuses() {
        assert!(is_recoverable(StatusCode::INTERNAL_SERVER_ERROR, false));
        assert!(is_recoverable(StatusCode::SERVICE_UNAVAILABLE, false));
        assert!(!is_recoverable(StatusCode::BAD_REQUEST, false));
        assert!(!is_recoverable(StatusCode::TOO_MANY_REQUESTS, false));
        assert!(is_recoverable(StatusCode::TOO_MANY_REQUESTS, true));
        assert!(!is_recoverable(StatusCode::REQUEST_TIMEOUT, true));
    }
}
