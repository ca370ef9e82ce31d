//! Label sets, stored packed.
//!
//! A [`Labels`] is one immutable, reference-counted allocation holding the
//! sorted name/value pairs as `len bytes` runs, where `len` is written in
//! ASCII-only 6-bit groups so the whole buffer stays valid UTF-8: iterating
//! hands out `&str` slices with no re-validation (remote-write encoding
//! iterates every label of every sample). One allocation per
//! series (instead of two per label) is what keeps bytes-per-series low, and
//! equality and hashing work on the bytes directly. Clones share the buffer,
//! so the WAL's series table and the remote-write queues hold the same set.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The reserved label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One name/value pair borrowed from a [`Labels`] or a builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Label<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// An immutable, sorted set of labels with unique names and non-empty values.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Labels {
    packed: Arc<str>,
}

impl Default for Labels {
    fn default() -> Self {
        Self::empty()
    }
}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.packed.as_bytes());
    }
}

/// Writes a length as 6-bit groups, low first, each byte `0x40 | group`
/// when more follow and `group` for the last: every byte is ASCII.
fn put_len(buf: &mut String, mut v: usize) {
    while v >= 0x40 {
        buf.push(char::from(0x40 | (v & 0x3f) as u8));
        v >>= 6;
    }
    buf.push(char::from(v as u8));
}

/// Decodes a length written by `put_len`; the buffer is always one this
/// module wrote, so a malformed length cannot occur and yields `None`.
fn get_len(buf: &[u8]) -> Option<(usize, usize)> {
    let mut v: usize = 0;
    for (i, b) in buf.iter().enumerate().take(11) {
        v |= ((b & 0x3f) as usize) << (6 * i);
        if b & 0x40 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

impl Labels {
    pub fn empty() -> Self {
        Labels {
            packed: Arc::from(""),
        }
    }

    /// Builds a label set from pairs in any order. Pairs with an empty value
    /// are left out (an empty value means "no such label"); when a name
    /// repeats, the last value wins.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut b = LabelsBuilder::new();
        for (n, v) in pairs {
            b.set(n.as_ref(), v.as_ref());
        }
        b.labels()
    }

    /// Builds from pairs that are already sorted by name, unique and
    /// non-empty (e.g. decoded from the WAL, which only stores such sets).
    /// Returns `None` if that promise is broken.
    pub fn from_sorted<N: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Option<Self> {
        let mut buf = String::new();
        // Where the previous name is in `buf`.
        let mut prev = 0..0;
        for (n, v) in pairs {
            let (n, v) = (n.as_ref(), v.as_ref());
            if n.is_empty() || v.is_empty() || buf.get(prev.clone()).is_some_and(|p| p >= n) {
                return None;
            }
            put_len(&mut buf, n.len());
            prev = buf.len()..buf.len() + n.len();
            buf.push_str(n);
            put_len(&mut buf, v.len());
            buf.push_str(v);
        }
        Some(Labels {
            packed: Arc::from(buf),
        })
    }

    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter { rest: &self.packed }
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|l| l.name == name).map(|l| l.value)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The value of `__name__`.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// The packed representation (stable within a process; used for hashing
    /// and as a map key).
    pub fn as_bytes(&self) -> &[u8] {
        self.packed.as_bytes()
    }

    /// A 64-bit hash of the label set, stable across processes and releases
    /// (xxh3 of the packed bytes). Used for target identity, scrape offsets
    /// and shard selection.
    pub fn stable_hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.packed.as_bytes())
    }

    /// Heap bytes held by this set (shared between clones).
    pub fn heap_size(&self) -> usize {
        self.packed.len() + 2 * std::mem::size_of::<usize>()
    }

    /// A builder pre-filled with these labels, for relabeling.
    pub fn to_builder(&self) -> LabelsBuilder {
        let mut b = LabelsBuilder::new();
        b.reset(self);
        b
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Prometheus's `Labels.String()` form: `{a="1", b="2"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = Label<'a>;
    type IntoIter = LabelsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterates the labels of a [`Labels`] in name order.
#[derive(Clone)]
pub struct LabelsIter<'a> {
    rest: &'a str,
}

impl<'a> LabelsIter<'a> {
    fn take_str(&mut self) -> Option<&'a str> {
        let (len, n) = get_len(self.rest.as_bytes())?;
        // Both ends are char boundaries: the string starts right after an
        // ASCII length byte and the next length (or the end) follows it.
        let s = self.rest.get(n..n + len)?;
        self.rest = self.rest.get(n + len..)?;
        Some(s)
    }
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = Label<'a>;

    fn next(&mut self) -> Option<Label<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let name = self.take_str()?;
        let value = self.take_str()?;
        Some(Label { name, value })
    }
}

/// A mutable label set used by relabeling and label merging. Setting a label
/// to the empty string deletes it, as in Prometheus's `labels.Builder`.
///
/// Clearing keeps the name and value `String`s for reuse (only the first
/// `len` pairs are live): a scrape builds the labels of every new series in
/// one builder, and allocating two strings per label showed up as most of
/// the cold parse path.
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder {
    pairs: Vec<(String, String)>,
    len: usize,
}

impl PartialEq for LabelsBuilder {
    fn eq(&self, other: &Self) -> bool {
        self.live() == other.live()
    }
}

impl Eq for LabelsBuilder {}

impl LabelsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn live(&self) -> &[(String, String)] {
        self.pairs.get(..self.len).unwrap_or_default()
    }

    /// Appends a pair known not to be present, reusing a spare slot.
    fn push(&mut self, name: &str, value: &str) {
        match self.pairs.get_mut(self.len) {
            Some((n, v)) => {
                n.clear();
                n.push_str(name);
                v.clear();
                v.push_str(value);
            }
            None => self.pairs.push((name.to_owned(), value.to_owned())),
        }
        self.len += 1;
    }

    /// Replaces the contents with `labels`, reusing the allocations.
    pub fn reset(&mut self, labels: &Labels) {
        self.len = 0;
        for l in labels.iter() {
            self.push(l.name, l.value);
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.live()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        let len = self.len;
        match self
            .pairs
            .get_mut(..len)
            .and_then(|live| live.iter_mut().find(|(n, _)| n == name))
        {
            Some((_, v)) => {
                v.clear();
                v.push_str(value);
            }
            None => self.push(name, value),
        }
    }

    pub fn del(&mut self, name: &str) {
        self.retain(|n, _| n != name);
    }

    /// Keeps only the labels for which `keep(name, value)` is true (in
    /// their order); the removed ones become spare slots.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        let mut kept = 0;
        for i in 0..self.len {
            let Some((n, v)) = self.pairs.get(i) else {
                break;
            };
            if keep(n, v) {
                self.pairs.swap(kept, i);
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// The current labels in insertion order (not sorted).
    pub fn iter(&self) -> impl Iterator<Item = Label<'_>> {
        self.live().iter().map(|(n, v)| Label { name: n, value: v })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The finished, sorted label set.
    pub fn labels(&self) -> Labels {
        let mut sorted: Vec<(&str, &str)> = self
            .live()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut buf =
            String::with_capacity(sorted.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
        for (n, v) in sorted {
            put_len(&mut buf, n.len());
            buf.push_str(n);
            put_len(&mut buf, v.len());
            buf.push_str(v);
        }
        Labels {
            packed: Arc::from(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sorted_and_empty_values_dropped() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", "")]);
        let got: Vec<_> = l.iter().map(|l| (l.name, l.value)).collect();
        assert_eq!(got, vec![("a", "1"), ("b", "2")]);
        assert_eq!(l.to_string(), r#"{a="1", b="2"}"#);
    }

    #[test]
    fn builder_set_empty_deletes() {
        let mut b = Labels::from_pairs([("a", "1"), ("b", "2")]).to_builder();
        b.set("a", "");
        b.set("c", "3");
        assert_eq!(b.labels(), Labels::from_pairs([("b", "2"), ("c", "3")]));
    }

    #[test]
    fn from_sorted_rejects_unsorted_and_duplicates() {
        assert!(Labels::from_sorted([("b", "1"), ("a", "2")]).is_none());
        assert!(Labels::from_sorted([("a", "1"), ("a", "2")]).is_none());
        assert!(Labels::from_sorted([("a", "")]).is_none());
        assert!(Labels::from_sorted([("a", "1"), ("b", "2")]).is_some());
    }

    #[test]
    fn builder_reuses_slots_without_leaking_old_labels() {
        let mut b = LabelsBuilder::new();
        b.reset(&Labels::from_pairs([("a", "1"), ("b", "2"), ("c", "3")]));
        b.del("b");
        assert_eq!(b.len(), 2);
        assert_eq!(b.get("b"), None);
        let order: Vec<_> = b.iter().map(|l| l.name).collect();
        assert_eq!(order, ["a", "c"], "removal keeps the others' order");
        b.set("d", "4");
        assert_eq!(
            b.labels(),
            Labels::from_pairs([("a", "1"), ("c", "3"), ("d", "4")])
        );
        b.clear();
        assert!(b.is_empty() && b.get("a").is_none());
        b.set("z", "9");
        assert_eq!(b.labels(), Labels::from_pairs([("z", "9")]));
        let mut other = LabelsBuilder::new();
        other.set("z", "9");
        assert_eq!(b, other, "spare slots do not take part in equality");
    }

    #[test]
    fn long_values_round_trip() {
        let long = "x".repeat(100_000);
        let l = Labels::from_pairs([("k", long.as_str())]);
        assert_eq!(l.get("k"), Some(long.as_str()));
    }

    proptest! {
        #[test]
        fn round_trip(pairs in proptest::collection::btree_map("[a-z_]{1,12}", "\\PC{1,20}", 0..12)) {
            let l = Labels::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let back: Vec<(String, String)> = l.iter().map(|l| (l.name.to_owned(), l.value.to_owned())).collect();
            let want: Vec<(String, String)> = pairs.into_iter().collect();
            prop_assert_eq!(back, want);
        }
    }
}
