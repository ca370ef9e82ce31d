//! A minimal JSON-over-HTTP GET client for the SD mechanisms that poll an
//! API (Docker, Consul): either the shared reqwest client built from the
//! job's `<http_config>`, or HTTP/1.1 over a Unix socket (Docker's default
//! `unix:///var/run/docker.sock`, which reqwest cannot dial).
//!
//! Responses are size-capped and only 2xx bodies are decoded; headers the
//! caller needs (Consul's `X-Consul-Index`) are returned alongside.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// Responses larger than this are refused rather than buffered.
const MAX_BODY_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Request(String),
    #[error("server returned HTTP status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("response body exceeds {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("invalid response: {0}")]
    Parse(String),
}

pub(crate) enum ApiClient {
    Http {
        client: tributary_http::HttpClient,
        /// `scheme://host[:port][/prefix]`, without a trailing slash.
        base: String,
    },
    Unix {
        socket: PathBuf,
    },
}

/// A decoded body plus the response headers.
pub(crate) struct ApiResponse<T> {
    pub body: T,
    pub headers: http::HeaderMap,
}

impl ApiClient {
    /// GETs `path_and_query` (starting with `/`) and decodes the JSON body.
    /// `extra_headers` are sent as given (tokens).
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        extra_headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<ApiResponse<T>, ApiError> {
        let (status, headers, body) = match self {
            ApiClient::Http { client, base } => {
                http_get(
                    client,
                    &format!("{base}{path_and_query}"),
                    extra_headers,
                    timeout,
                )
                .await?
            }
            ApiClient::Unix { socket } => tokio::time::timeout(
                timeout,
                unix_get(socket.clone(), path_and_query, extra_headers),
            )
            .await
            .map_err(|_| ApiError::Request("request timed out".into()))??,
        };
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)])
                .trim()
                .to_string();
            return Err(ApiError::Status { status, body: text });
        }
        let body = serde_json::from_slice(&body).map_err(|e| ApiError::Parse(e.to_string()))?;
        Ok(ApiResponse { body, headers })
    }
}

async fn http_get(
    client: &tributary_http::HttpClient,
    url: &str,
    extra_headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, http::HeaderMap, Vec<u8>), ApiError> {
    let mut req = client
        .client()
        .get(url)
        .timeout(timeout)
        .header("Accept", "application/json");
    for (name, value) in extra_headers {
        req = req.header(*name, *value);
    }
    let mut resp = client
        .apply_auth(req)
        .map_err(|e| ApiError::Request(e.to_string()))?
        .send()
        .await
        .map_err(|e| ApiError::Request(e.to_string()))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ApiError::Request(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body))
}

async fn unix_get(
    socket: PathBuf,
    path_and_query: &str,
    extra_headers: &[(&str, &str)],
) -> Result<(u16, http::HeaderMap, Vec<u8>), ApiError> {
    let request_err =
        |e: &dyn std::fmt::Display| ApiError::Request(format!("{}: {e}", socket.display()));
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .map_err(|e| request_err(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| request_err(&e))?;
    // The connection future drives the socket; it ends when `sender` drops.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(err = %e, "unix socket connection closed with an error");
        }
    });
    let mut builder = http::Request::get(path_and_query)
        // HTTP/1.1 needs a Host; the Docker client sends the socket path's
        // placeholder host too.
        .header("Host", "docker")
        .header("Accept", "application/json")
        .header("User-Agent", "Prometheus/3.0.0");
    for (name, value) in extra_headers {
        builder = builder.header(*name, *value);
    }
    let req = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Request(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| request_err(&e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::TooLarge
            } else {
                ApiError::Request(e.to_string())
            }
        })?
        .to_bytes();
    Ok((status, headers, body.to_vec()))
}

/// Percent-encodes a query component (RFC 3986 unreserved characters kept).
pub(crate) fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `?k=v&k2=v2` (empty when there are no parameters).
pub(crate) fn query_string(params: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&encode_component(k));
        out.push('=');
        out.push_str(&encode_component(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_components() {
        assert_eq!(encode_component("a b/{\"x\"}"), "a%20b%2F%7B%22x%22%7D");
        assert_eq!(
            query_string(&[("index", "5".into()), ("stale", String::new())]),
            "?index=5&stale="
        );
        assert_eq!(query_string(&[]), "");
    }
}
