//! Typed views the binary hands to the web crate, beyond what the scrape
//! crate's [`tributary_scrape::PoolSnapshot`] carries, plus the Go-style
//! time formatting the Prometheus API uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Remote write as the operator wants to see it: one row per endpoint and
/// the WAL that feeds them all.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteWriteStatus {
    pub endpoints: Vec<RemoteEndpointStatus>,
    pub wal: WalStatus,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteEndpointStatus {
    /// The queue name (`remote_write[].name`, or Prometheus's hash name).
    pub name: String,
    /// The endpoint URL; never carries credentials.
    pub url: String,
    pub shards: usize,
    pub desired_shards: f64,
    pub max_shards: usize,
    pub pending_samples: i64,
    /// Newest sample timestamp (ms) the endpoint acknowledged; 0 = none yet.
    pub highest_sent_timestamp_ms: i64,
    /// Newest sample timestamp (ms) appended to the WAL; lag is the gap.
    pub highest_wal_timestamp_ms: i64,
    pub samples_sent_total: u64,
    pub samples_failed_total: u64,
    pub samples_retried_total: u64,
    #[serde(serialize_with = "serialize_go_time")]
    pub last_send: Option<SystemTime>,
    pub last_error: Option<String>,
    /// WAL bytes written after this queue's acknowledged position.
    pub wal_backlog_bytes: Option<u64>,
}

impl RemoteEndpointStatus {
    /// How far delivery trails ingestion; `None` before the first send.
    pub fn lag(&self) -> Option<Duration> {
        if self.highest_sent_timestamp_ms <= 0 {
            return None;
        }
        let behind = self
            .highest_wal_timestamp_ms
            .saturating_sub(self.highest_sent_timestamp_ms);
        Some(Duration::from_millis(u64::try_from(behind).unwrap_or(0)))
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WalStatus {
    pub segments: usize,
    pub first_segment: Option<u32>,
    pub current_segment: u32,
    /// Segments plus checkpoint, on disk.
    pub bytes: u64,
    /// `--storage.agent.retention.max-size`; `None` = unbounded.
    pub byte_cap: Option<u64>,
    pub active_series: usize,
}

/// Per-target metric metadata, as the scrape layer keeps it.
pub use tributary_scrape::{FamilyMetadata as MetricMetadata, TargetMetadata};

/// Go's `time.Time` JSON form (RFC 3339 with nanoseconds, trailing zeros
/// trimmed), in UTC.
pub fn go_time(t: SystemTime) -> String {
    let full = humantime::format_rfc3339_nanos(t).to_string();
    // "2026-01-02T03:04:05.120000000Z" → "2026-01-02T03:04:05.12Z"
    match full.strip_suffix('Z').and_then(|s| s.split_once('.')) {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{frac}Z")
            }
        }
        None => full,
    }
}

fn serialize_go_time<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&go_time_or_zero(*t))
}

/// Go's zero `time.Time`, which Prometheus shows for "never".
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn go_time_or_zero(t: Option<SystemTime>) -> String {
    t.map_or_else(|| GO_ZERO_TIME.to_string(), go_time)
}

/// Truncated to the second, as Prometheus derives `lastConfigTime` from a
/// gauge of Unix seconds (so "never" is the Unix epoch).
pub fn go_time_seconds(t: Option<SystemTime>) -> String {
    let secs = t
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    go_time(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_like_go() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000);
        assert_eq!(go_time(t), "2023-11-14T22:13:20.12Z");
        let whole = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(go_time(whole), "2023-11-14T22:13:20Z");
        assert_eq!(go_time_or_zero(None), GO_ZERO_TIME);
        assert_eq!(go_time_seconds(None), "1970-01-01T00:00:00Z");
        assert_eq!(go_time_seconds(Some(t)), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn lag_is_wal_head_minus_delivered() {
        let mut e = RemoteEndpointStatus::default();
        assert_eq!(e.lag(), None);
        e.highest_sent_timestamp_ms = 10_000;
        e.highest_wal_timestamp_ms = 12_500;
        assert_eq!(e.lag(), Some(Duration::from_millis(2_500)));
    }
}
