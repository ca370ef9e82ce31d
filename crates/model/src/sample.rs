/// Milliseconds since the Unix epoch, as Prometheus stores them.
pub type Timestamp = i64;

/// A storage-assigned identifier for one series (one label set).
///
/// References are handed out by the storage and never name two different
/// series while a record of either can still be read. The agent storage
/// makes them `generation << 32 | slot` (a dense slot index, reused with the
/// next generation once a series is gone), so per-series tables elsewhere can
/// be arrays indexed by slot ([`crate::RefMap`]). `SeriesRef(0)` is never a
/// valid reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SeriesRef(pub u64);

impl SeriesRef {
    pub const NONE: SeriesRef = SeriesRef(0);

    /// The dense slot part of the reference.
    pub fn slot(self) -> u32 {
        self.0 as u32
    }

    /// The generation part of the reference.
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for SeriesRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One float sample addressed by series reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    pub series: SeriesRef,
    pub t: Timestamp,
    pub v: f64,
}

/// The bit pattern of Prometheus's staleness marker: a NaN that no
/// arithmetic produces, so receivers can tell "series ended" from a NaN value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a value.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// True only for the exact staleness bit pattern, not for other NaNs.
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nan_is_distinct_from_ordinary_nan() {
        assert!(is_stale_nan(STALE_NAN));
        assert!(STALE_NAN.is_nan());
        assert!(!is_stale_nan(f64::NAN));
        assert!(!is_stale_nan(1.0));
    }
}
