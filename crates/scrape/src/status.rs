//! What the web UI and API show about a target's last scrape.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// The last scrape of one target, beyond what Prometheus keeps: response
/// status, headers, size and the first bytes of the body, so an operator can
/// see *why* a scrape failed without curl.
#[derive(Debug, Clone, Default)]
pub struct LastScrape {
    pub http_status: u16,
    pub content_type: String,
    pub headers: crate::ResponseHeaders,
    pub wire_bytes: u64,
    pub body_bytes: u64,
    pub body_head: String,
    pub samples: u64,
    pub series_added: u64,
}

#[derive(Debug, Clone, Default)]
pub struct TargetHealth {
    pub health: Health,
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
    pub last: LastScrape,
}

/// How much of the body is kept for the UI.
pub const BODY_HEAD_BYTES: usize = 2048;
