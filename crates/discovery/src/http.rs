//! `http_sd_configs`: target groups from a JSON endpoint, refreshed every
//! `refresh_interval`. A failed refresh keeps the last good targets.

use std::time::Duration;

use crate::group::{GroupSpec, TargetGroup};

/// Responses larger than this are refused rather than buffered.
const MAX_BODY_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpSdError {
    #[error("{0}")]
    Request(String),
    #[error("server returned HTTP status {0}")]
    Status(u16),
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    #[error("response body exceeds {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("invalid response: {0}")]
    Parse(String),
}

pub(crate) async fn fetch_groups(
    client: &tributary_http::HttpClient,
    url: &str,
    refresh: Duration,
) -> Result<Vec<TargetGroup>, HttpSdError> {
    let req = client
        .client()
        .get(url)
        .header("Accept", "application/json")
        .header(
            "X-Prometheus-Refresh-Interval-Seconds",
            refresh.as_secs_f64().to_string(),
        );
    let mut resp = client
        .apply_auth(req)
        .map_err(|e| HttpSdError::Request(e.to_string()))?
        .send()
        .await
        .map_err(|e| HttpSdError::Request(e.to_string()))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(HttpSdError::Status(status));
    }
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !ct.trim().starts_with("application/json") {
        return Err(HttpSdError::ContentType(ct));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| HttpSdError::Request(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(HttpSdError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let specs: Vec<GroupSpec> =
        serde_json::from_slice(&body).map_err(|e| HttpSdError::Parse(e.to_string()))?;
    TargetGroup::from_specs(url, specs, ("__meta_url", url))
        .map_err(|e| HttpSdError::Parse(e.to_string()))
}
