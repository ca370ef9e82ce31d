//! Per-target metric metadata (type, help, unit per metric family), kept
//! for `/api/v1/targets/metadata` and to tell the storage when a family's
//! metadata changed.
//!
//! The store is keyed by family name, not by series, so its size follows
//! the number of families a target exposes (bounded by
//! [`MAX_FAMILIES_PER_TARGET`]); families not seen for a few scrapes are
//! forgotten, like the scrape cache's series.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tributary_model::{Labels, MetricType};

/// A target exposing more families than this keeps metadata for the first
/// ones only: a hostile target cannot grow the agent's memory through it.
pub const MAX_FAMILIES_PER_TARGET: usize = 20_000;

/// Families unseen for this many scrapes are forgotten.
const EVICT_AFTER_ITERATIONS: u32 = 10;

/// The metadata of one metric family as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyMetadata {
    pub family: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

/// One target's metadata, for `/api/v1/targets/metadata`.
#[derive(Debug, Clone)]
pub struct TargetMetadata {
    /// The target's labels (`job`, `instance`, …).
    pub target: Labels,
    /// Sorted by family name.
    pub metrics: Vec<FamilyMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Stored {
    kind: MetricType,
    help: Box<str>,
    unit: Box<str>,
    last_iter: u32,
}

/// The metadata store of one target, shared between its scrape loop and
/// the API.
#[derive(Debug, Default)]
pub(crate) struct MetadataStore {
    families: HashMap<Box<str>, Stored>,
}

pub(crate) type SharedMetadata = Arc<Mutex<MetadataStore>>;

impl MetadataStore {
    /// Records the family's metadata as seen in scrape `iter`. Returns
    /// whether it differs from what was stored (a new family counts as
    /// changed).
    pub(crate) fn observe(&mut self, family: &FamilyState, iter: u32) -> bool {
        if let Some(s) = self.families.get_mut(family.name.as_str()) {
            s.last_iter = iter;
            let same = s.kind == family.kind && *s.help == *family.help && *s.unit == *family.unit;
            if !same {
                s.kind = family.kind;
                s.help = family.help.as_str().into();
                s.unit = family.unit.as_str().into();
            }
            return !same;
        }
        if self.families.len() < MAX_FAMILIES_PER_TARGET {
            self.families.insert(
                family.name.as_str().into(),
                Stored {
                    kind: family.kind,
                    help: family.help.as_str().into(),
                    unit: family.unit.as_str().into(),
                    last_iter: iter,
                },
            );
        }
        true
    }

    /// Forgets families not seen for a while (after a successful scrape).
    pub(crate) fn evict_unseen(&mut self, iter: u32) {
        self.families
            .retain(|_, s| iter.wrapping_sub(s.last_iter) <= EVICT_AFTER_ITERATIONS);
    }

    /// All families, sorted by name.
    pub(crate) fn snapshot(&self) -> Vec<FamilyMetadata> {
        let mut v: Vec<FamilyMetadata> = self
            .families
            .iter()
            .map(|(name, s)| FamilyMetadata {
                family: name.to_string(),
                kind: s.kind,
                help: s.help.to_string(),
                unit: s.unit.to_string(),
            })
            .collect();
        v.sort_by(|a, b| a.family.cmp(&b.family));
        v
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.families.len()
    }
}

/// The family the parser is in while it walks one exposition: filled by
/// TYPE/HELP/UNIT lines, compared with the store at its first sample.
#[derive(Debug, Default)]
pub(crate) struct FamilyState {
    pub name: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
    /// Metadata lines were read since the store was last consulted.
    pub dirty: bool,
    /// The store had other metadata for it: its series must be told.
    pub changed: bool,
}

impl FamilyState {
    /// As new, keeping the strings' buffers.
    pub(crate) fn reset(&mut self) {
        self.name.clear();
        self.kind = MetricType::Unknown;
        self.help.clear();
        self.unit.clear();
        self.dirty = false;
        self.changed = false;
    }

    /// Switches to family `name` (resetting its metadata) unless it is the
    /// current one.
    pub(crate) fn enter(&mut self, name: &str) {
        if self.name != name {
            self.reset();
            self.name.push_str(name);
        }
        self.dirty = true;
    }

    /// Whether a series with this metric name belongs to the family: the
    /// family name itself or it plus a suffix the family's type allows.
    pub(crate) fn covers(&self, metric_name: &str) -> bool {
        if self.name.is_empty() {
            return false;
        }
        let Some(rest) = metric_name.strip_prefix(self.name.as_str()) else {
            return false;
        };
        let allowed: &[&str] = match self.kind {
            MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            MetricType::Summary => &["_sum", "_count", "_created"],
            MetricType::Counter => &["_total", "_created"],
            MetricType::Info => &["_info"],
            _ => &[],
        };
        rest.is_empty() || allowed.contains(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fam(name: &str, kind: MetricType, help: &str) -> FamilyState {
        let mut f = FamilyState::default();
        f.enter(name);
        f.kind = kind;
        f.help = help.into();
        f
    }

    #[test]
    fn observe_reports_new_and_changed_families_only() {
        let mut s = MetadataStore::default();
        assert!(s.observe(&fam("a", MetricType::Counter, "h"), 1));
        assert!(!s.observe(&fam("a", MetricType::Counter, "h"), 2));
        assert!(s.observe(&fam("a", MetricType::Counter, "new help"), 3));
        assert_eq!(s.snapshot()[0].help, "new help");
        s.evict_unseen(3 + EVICT_AFTER_ITERATIONS + 1);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn family_covers_its_own_series_only() {
        let f = fam("rpc", MetricType::Histogram, "");
        assert!(f.covers("rpc"));
        assert!(f.covers("rpc_bucket"));
        assert!(f.covers("rpc_count"));
        assert!(!f.covers("rpc_other"));
        assert!(!f.covers("rp"));
        assert!(!FamilyState::default().covers("rpc"));
    }

    #[test]
    fn store_is_bounded() {
        let mut s = MetadataStore::default();
        for i in 0..MAX_FAMILIES_PER_TARGET + 10 {
            s.observe(&fam(&format!("f{i}"), MetricType::Gauge, ""), 1);
        }
        assert_eq!(s.len(), MAX_FAMILIES_PER_TARGET);
    }
}
