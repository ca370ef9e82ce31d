//! Prometheus duration and byte-size syntax.
//!
//! Durations follow `model.Duration` of prometheus/common: a sequence of
//! integer+unit terms in descending order (`y`=365d, `w`, `d`, `h`, `m`,
//! `s`, `ms`), each unit at most once, or a bare `0`. The canonical string
//! form emits only exact years/weeks, then days down to milliseconds
//! (`90s` → `1m30s`, `0` → `0s`).
//!
//! Sizes follow `units.Base2Bytes`: terms of number (may be fractional) and
//! unit `B`, `KB`/`KiB`, `MB`/`MiB` … `EB`/`EiB`, all powers of 1024.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    #[error("empty duration string")]
    EmptyDuration,
    #[error("not a valid duration string: {0:?}")]
    InvalidDuration(String),
    #[error("duration out of range")]
    DurationOutOfRange,
    #[error("invalid size {0:?}")]
    InvalidSize(String),
}

const MS_PER_SECOND: u64 = 1000;
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;
const MS_PER_WEEK: u64 = 7 * MS_PER_DAY;
const MS_PER_YEAR: u64 = 365 * MS_PER_DAY;

/// Units in the only order they may appear.
const DURATION_UNITS: [(&str, u64); 7] = [
    ("y", MS_PER_YEAR),
    ("w", MS_PER_WEEK),
    ("d", MS_PER_DAY),
    ("h", MS_PER_HOUR),
    ("m", MS_PER_MINUTE),
    ("s", MS_PER_SECOND),
    ("ms", 1),
];

/// Parses a Prometheus duration such as `1m30s`, `5m`, `1d`, `500ms` or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    if text.is_empty() {
        return Err(UnitError::EmptyDuration);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || UnitError::InvalidDuration(text.to_string());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut next_unit = 0; // index into DURATION_UNITS that may still appear
    let mut total_ms: u64 = 0;
    while i < bytes.len() {
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start {
            return Err(invalid());
        }
        let number: u64 = text[digits_start..i]
            .parse()
            .map_err(|_| UnitError::DurationOutOfRange)?;
        let unit_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        let unit = &text[unit_start..i];
        let offset = DURATION_UNITS[next_unit..]
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        let (_, mult) = DURATION_UNITS[next_unit + offset];
        next_unit += offset + 1;
        let term = number
            .checked_mul(mult)
            .ok_or(UnitError::DurationOutOfRange)?;
        total_ms = total_ms
            .checked_add(term)
            .ok_or(UnitError::DurationOutOfRange)?;
    }
    // Prometheus stores durations as int64 nanoseconds.
    if total_ms > (i64::MAX as u64) / 1_000_000 {
        return Err(UnitError::DurationOutOfRange);
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way Prometheus prints `model.Duration`
/// (sub-millisecond precision is dropped).
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, mult) in DURATION_UNITS {
        let exact_only = mult >= MS_PER_WEEK;
        if exact_only && ms % mult != 0 {
            continue;
        }
        let count = ms / mult;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
            ms -= count * mult;
        }
    }
    out
}

const SIZE_UNITS: [(&str, &str, u32); 7] = [
    ("B", "B", 0),
    ("KB", "KiB", 1),
    ("MB", "MiB", 2),
    ("GB", "GiB", 3),
    ("TB", "TiB", 4),
    ("PB", "PiB", 5),
    ("EB", "EiB", 6),
];

fn size_multiplier(unit: &str) -> Option<f64> {
    SIZE_UNITS
        .iter()
        .find(|(old, new, _)| *old == unit || *new == unit)
        .map(|(_, _, power)| 1024f64.powi(*power as i32))
}

/// Parses a base-2 byte size such as `100MB`, `1.5GiB`, `1GB512MB` or `0`.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let invalid = || UnitError::InvalidSize(text.to_string());
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(invalid());
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    while i < bytes.len() {
        let number_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number: f64 = text[number_start..i].parse().map_err(|_| invalid())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult = size_multiplier(&text[unit_start..i]).ok_or_else(invalid)?;
        total += number * mult;
    }
    if !total.is_finite() || total >= i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(total as u64)
}

/// Formats a size like `units.Base2Bytes` does (`100MiB`, `1GiB512MiB`, `0B`).
pub fn format_size(mut size: u64) -> String {
    if size == 0 {
        return "0B".to_string();
    }
    let mut out = String::new();
    for (_, unit, power) in SIZE_UNITS.iter().rev() {
        let mult = 1024u64.pow(*power);
        let count = size / mult;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
            size -= count * mult;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_duration("1y").unwrap(),
            Duration::from_secs(365 * 86_400)
        );
        assert_eq!(
            parse_duration("2w3d").unwrap(),
            Duration::from_secs(17 * 86_400)
        );
    }

    #[test]
    fn rejects_bad_durations() {
        assert_eq!(parse_duration(""), Err(UnitError::EmptyDuration));
        for bad in ["1", "1.5s", "s", "1s1m", "1m1m", "1x", "-1s", "1 m"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            parse_duration("999999999999y"),
            Err(UnitError::DurationOutOfRange)
        );
    }

    #[test]
    fn formats_like_model_duration() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_secs(8 * 86_400)), "8d");
        assert_eq!(format_duration(Duration::from_secs(14 * 86_400)), "2w");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
    }

    #[test]
    fn sizes_are_base2() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("100MB").unwrap(), 100 * 1024 * 1024);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("1.5KB").unwrap(), 1536);
        assert_eq!(parse_size("1GB512MB").unwrap(), 1536 * 1024 * 1024);
        assert!(parse_size("100").is_err());
        assert!(parse_size("10XB").is_err());
        assert_eq!(format_size(100 * 1024 * 1024), "100MiB");
        assert_eq!(format_size(1536), "1KiB512B");
    }
}
