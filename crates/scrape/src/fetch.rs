//! One scrape request: headers as Prometheus sends them, the body read
//! chunk by chunk under a byte cap, gzip inflated through the same cap.
//!
//! The cap is what makes a hostile target (gzip bomb, endless body) cost
//! bounded memory: `body_size_limit` when configured, otherwise
//! [`DEFAULT_BODY_CAP`] — a Tributary safety net Prometheus does not have.
//! A gzip'd body is read whole (its compressed bytes held to the same cap)
//! and then inflated, in one call when it can be trusted ([`inflate_gzip`]).

use std::io::Write;
use std::time::Duration;

use crate::buffers::BodyBuf;
use crate::ResponseHeaders;
use tributary_model::ScrapeProtocol;

mod gzip;
mod h1;

pub use gzip::{inflate_gzip, inflate_gzip_streaming};

/// Cap on the decompressed body when `body_size_limit` is 0 (unlimited in
/// Prometheus). Far above any real exposition, far below what would hurt.
pub const DEFAULT_BODY_CAP: u64 = 128 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Http(String),
    #[error("server returned HTTP status {0}")]
    Status(String),
    #[error("body size limit exceeded")]
    BodySizeLimit,
    #[error("decompressing gzip body: {0}")]
    Gzip(String),
    #[error("context deadline exceeded")]
    Timeout,
}

/// Everything the scrape loop keeps from a response.
#[derive(Debug, Default)]
pub struct FetchedBody {
    /// Bytes received on the wire (compressed when gzip).
    pub wire_bytes: u64,
    pub status: u16,
}

/// The `Accept` header for the configured protocols, weights as Prometheus
/// assigns them (0.6, 0.5, … then `*/*`).
pub fn accept_header(protocols: &[ScrapeProtocol], escaping: &str) -> String {
    let mut weight = ScrapeProtocol::ALL.len() + 1;
    let mut parts = Vec::with_capacity(protocols.len() + 1);
    for p in protocols {
        let mut v = p.media_type().to_string();
        if matches!(
            p,
            ScrapeProtocol::PrometheusText1_0_0
                | ScrapeProtocol::OpenMetricsText1_0_0
                | ScrapeProtocol::PrometheusProto
        ) {
            v.push_str(";escaping=");
            v.push_str(escaping);
        }
        v.push_str(&format!(";q=0.{weight}"));
        parts.push(v);
        weight = weight.saturating_sub(1);
    }
    parts.push(format!("*/*;q=0.{weight}"));
    parts.join(",")
}

/// Request parameters fixed for the lifetime of a scrape loop.
pub struct ScrapeRequest {
    pub url: String,
    pub accept: String,
    pub accept_encoding: &'static str,
    pub user_agent: String,
    pub timeout: Duration,
    pub body_limit: u64,
}

/// A writer that refuses to grow the body it writes — the bytes of `buf`
/// from `base` on — to `cap` bytes or more (a body of exactly
/// `body_size_limit` bytes fails, as in Prometheus).
struct CappedWriter<'a> {
    buf: &'a mut Vec<u8>,
    base: usize,
    cap: u64,
    exceeded: bool,
}

impl<'a> CappedWriter<'a> {
    fn new(buf: &'a mut Vec<u8>, cap: u64) -> Self {
        Self::after(buf, 0, cap)
    }

    /// A writer whose body starts at `base` in `buf`: what `buf` holds past
    /// `base` already belongs to the body.
    fn after(buf: &'a mut Vec<u8>, base: usize, cap: u64) -> Self {
        Self {
            buf,
            base,
            cap,
            exceeded: false,
        }
    }

    /// The body's length so far.
    fn len(&self) -> u64 {
        self.buf.len().saturating_sub(self.base) as u64
    }
}

impl Write for CappedWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.len() + data.len() as u64 >= self.cap {
            self.exceeded = true;
            return Err(std::io::Error::other("body size limit exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A scrape loop's way to its target: its own kept-alive HTTP/1.1
/// connection for a plain `http://` target (see [`h1`]), the general
/// client for everything else.
#[derive(Debug, Default)]
pub struct Connection {
    target: Option<h1::H1Target>,
    stream: Option<tokio::net::TcpStream>,
    /// The last response's headers (its `Content-Type` chooses the
    /// parser), read into the same buffers each time; a failed fetch may
    /// leave an earlier response's, which nothing reads then.
    pub headers: ResponseHeaders,
}

impl Connection {
    pub fn new(client: &tributary_http::HttpClient, req: &ScrapeRequest) -> Self {
        Connection {
            target: client.is_plain().then(|| h1::H1Target::new(req)).flatten(),
            stream: None,
            headers: ResponseHeaders::default(),
        }
    }
}

/// Performs the request and leaves the (decompressed) body in `body`.
pub async fn fetch(
    client: &tributary_http::HttpClient,
    req: &ScrapeRequest,
    conn: &mut Connection,
    body: &mut BodyBuf,
) -> Result<FetchedBody, FetchError> {
    body.clear();
    // A gzip'd body's compressed bytes, kept until it is inflated, and the
    // response head: pooled like the body buffer, so a scrape allocates
    // none of them in steady state.
    let mut compressed = crate::buffers::take();
    let mut head = crate::buffers::take();
    let work = async {
        if let Some(target) = &conn.target {
            let bufs = h1::Buffers {
                head: &mut head,
                headers: &mut conn.headers,
                body,
                compressed: &mut compressed,
            };
            let outcome = h1::fetch(target, req, &mut conn.stream, bufs).await?;
            match outcome {
                h1::Outcome::Done(f) => return Ok(f),
                h1::Outcome::Redirect => {
                    body.clear();
                    compressed.clear();
                }
            }
        }
        fetch_inner(client, req, body, &mut compressed, &mut conn.headers).await
    };
    let result = tokio::time::timeout(req.timeout, work)
        .await
        .unwrap_or(Err(FetchError::Timeout));
    if result.is_err() {
        // Whatever state the connection is in, do not reuse it.
        conn.stream = None;
    }
    crate::buffers::give_back(compressed);
    crate::buffers::give_back(head);
    result
}

async fn fetch_inner(
    client: &tributary_http::HttpClient,
    req: &ScrapeRequest,
    body: &mut BodyBuf,
    compressed: &mut Vec<u8>,
    headers: &mut ResponseHeaders,
) -> Result<FetchedBody, FetchError> {
    let builder = client
        .client()
        .get(&req.url)
        .header("Accept", &req.accept)
        .header("Accept-Encoding", req.accept_encoding)
        .header("User-Agent", &req.user_agent)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format_seconds(req.timeout),
        );
    let mut resp = client
        .apply_auth(builder)
        .map_err(|e| FetchError::Http(e.to_string()))?
        .send()
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let status = resp.status();
    if status.as_u16() != 200 {
        return Err(FetchError::Status(status.to_string()));
    }
    let gzip = resp
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    headers.clear();
    for (name, value) in resp.headers() {
        headers.push(name.as_str(), value.as_bytes());
    }
    let cap = req.body_limit;
    // The compressed bytes are held to the cap too: a valid gzip body is
    // hardly larger than its content, and an endless stream of empty
    // deflate blocks must not grow the buffer forever.
    let mut writer = CappedWriter::new(
        if gzip {
            &mut *compressed
        } else {
            body.appender()
        },
        cap,
    );
    let mut wire_bytes = 0u64;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?
    {
        wire_bytes += chunk.len() as u64;
        if writer.write_all(&chunk).is_err() {
            return Err(FetchError::BodySizeLimit);
        }
    }
    if gzip {
        inflate_gzip(compressed, body, cap)?;
    }
    Ok(FetchedBody {
        wire_bytes,
        status: status.as_u16(),
    })
}

/// Seconds as Go's `strconv.FormatFloat(s, 'f', -1, 64)` prints them.
fn format_seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_accept_header_matches_prometheus() {
        let protos = [
            ScrapeProtocol::OpenMetricsText1_0_0,
            ScrapeProtocol::OpenMetricsText0_0_1,
            ScrapeProtocol::PrometheusText1_0_0,
            ScrapeProtocol::PrometheusText0_0_4,
        ];
        assert_eq!(
            accept_header(&protos, "allow-utf-8"),
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        );
    }

    #[test]
    fn timeout_header_is_shortest_float() {
        assert_eq!(format_seconds(Duration::from_secs(10)), "10");
        assert_eq!(format_seconds(Duration::from_millis(800)), "0.8");
    }
}
