//! Applying rules to a label set (Prometheus's `relabel.ProcessBuilder`).
//!
//! The engine is written once against a small [`LabelStore`] trait with two
//! implementations:
//! * [`LabelsBuilder`], for callers that already hold a builder;
//! * a copy-on-write view of an immutable [`Labels`], used by
//!   [`relabel_labels`]. It only copies the labels into a builder when a rule
//!   really changes something, so the common `keep`/`drop` rules (and any
//!   rule that rewrites a label to the value it already has) run without
//!   allocating and hand back a clone of the input.

use std::borrow::Cow;

use md5::{Digest, Md5};
use tributary_model::{Labels, LabelsBuilder};

use crate::config::{Action, RelabelConfig};

/// The label state after one rule, for step-by-step debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Index of the rule in the list.
    pub rule: usize,
    /// The labels after the rule ran (when it dropped, the labels it saw).
    pub labels: Labels,
    /// Whether the rule dropped the set; no later rules run.
    pub dropped: bool,
}

/// Applies `rules` in order to `labels`. Returns `false` as soon as a rule
/// drops the set (the builder then holds the labels as that rule saw them).
pub fn relabel(rules: &[RelabelConfig], labels: &mut LabelsBuilder) -> bool {
    let mut scratch = String::new();
    rules
        .iter()
        .all(|rule| apply_rule(rule, labels, &mut scratch))
}

/// Applies `rules` to `labels`, returning the result, or `None` if dropped.
/// Rules that change nothing do not copy the set.
pub fn relabel_labels(rules: &[RelabelConfig], labels: &Labels) -> Option<Labels> {
    let mut store = CowLabels::Borrowed(labels);
    let mut scratch = String::new();
    for rule in rules {
        if !apply_rule(rule, &mut store, &mut scratch) {
            return None;
        }
    }
    Some(store.finish())
}

/// Applies `rules` one at a time, recording the labels after each, and stops
/// after the first rule that drops.
pub fn relabel_steps(rules: &[RelabelConfig], labels: &Labels) -> Vec<Step> {
    let mut builder = labels.to_builder();
    let mut scratch = String::new();
    let mut steps = Vec::with_capacity(rules.len());
    for (rule_index, rule) in rules.iter().enumerate() {
        let keep = apply_rule(rule, &mut builder, &mut scratch);
        steps.push(Step {
            rule: rule_index,
            labels: builder.labels(),
            dropped: !keep,
        });
        if !keep {
            break;
        }
    }
    steps
}

/// The label operations relabeling needs.
trait LabelStore {
    fn get(&self, name: &str) -> Option<&str>;
    /// Sets `name`; an empty value deletes it.
    fn set(&mut self, name: &str, value: &str);
    fn retain_names(&mut self, keep: impl FnMut(&str) -> bool);
    /// Visits every label, in Prometheus's `Builder.Range` order for sets
    /// fresh from a `Labels` (sorted by name).
    fn for_each(&self, f: impl FnMut(&str, &str));
}

impl LabelStore for LabelsBuilder {
    fn get(&self, name: &str) -> Option<&str> {
        LabelsBuilder::get(self, name)
    }
    fn set(&mut self, name: &str, value: &str) {
        LabelsBuilder::set(self, name, value);
    }
    fn retain_names(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.retain(|name, _| keep(name));
    }
    fn for_each(&self, mut f: impl FnMut(&str, &str)) {
        for l in self.iter() {
            f(l.name, l.value);
        }
    }
}

/// An immutable label set that turns into a builder on first change.
enum CowLabels<'a> {
    Borrowed(&'a Labels),
    Owned(LabelsBuilder),
}

impl CowLabels<'_> {
    fn builder(&mut self) -> &mut LabelsBuilder {
        if let CowLabels::Borrowed(labels) = *self {
            *self = CowLabels::Owned(labels.to_builder());
        }
        match self {
            CowLabels::Owned(builder) => builder,
            // Just replaced above.
            CowLabels::Borrowed(_) => unreachable!("CowLabels was converted to Owned"),
        }
    }

    fn finish(self) -> Labels {
        match self {
            CowLabels::Borrowed(labels) => labels.clone(),
            CowLabels::Owned(builder) => builder.labels(),
        }
    }
}

impl LabelStore for CowLabels<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match self {
            CowLabels::Borrowed(labels) => labels.get(name),
            CowLabels::Owned(builder) => builder.get(name),
        }
    }

    fn set(&mut self, name: &str, value: &str) {
        let unchanged = match self.get(name) {
            Some(current) => current == value,
            None => value.is_empty(),
        };
        if !unchanged {
            self.builder().set(name, value);
        }
    }

    fn retain_names(&mut self, mut keep: impl FnMut(&str) -> bool) {
        if let CowLabels::Borrowed(labels) = self {
            if labels.iter().all(|l| keep(l.name)) {
                return;
            }
        }
        self.builder().retain(|name, _| keep(name));
    }

    fn for_each(&self, mut f: impl FnMut(&str, &str)) {
        match self {
            CowLabels::Borrowed(labels) => labels.iter().for_each(|l| f(l.name, l.value)),
            CowLabels::Owned(builder) => builder.iter().for_each(|l| f(l.name, l.value)),
        }
    }
}

/// The source labels' values joined by the separator; missing labels
/// contribute "". Borrows the label's value when there is one source label.
fn source_value<'a>(
    rule: &RelabelConfig,
    store: &'a impl LabelStore,
    scratch: &'a mut String,
) -> &'a str {
    match rule.source_labels() {
        [] => "",
        [only] => store.get(only).unwrap_or(""),
        [first, rest @ ..] => {
            scratch.clear();
            scratch.push_str(store.get(first).unwrap_or(""));
            for name in rest {
                scratch.push_str(rule.separator());
                scratch.push_str(store.get(name).unwrap_or(""));
            }
            scratch
        }
    }
}

/// Applies one rule; `false` means the set is dropped.
fn apply_rule(rule: &RelabelConfig, store: &mut impl LabelStore, scratch: &mut String) -> bool {
    let value = source_value(rule, store, scratch);
    match rule.action() {
        Action::Drop => !rule.regex().is_match(value),
        Action::Keep => rule.regex().is_match(value),
        Action::DropEqual => store.get(rule.target_label()).unwrap_or("") != value,
        Action::KeepEqual => store.get(rule.target_label()).unwrap_or("") == value,
        Action::Replace => {
            if let Some((target, replacement)) = replace_result(rule, value) {
                store.set(&target, &replacement);
            }
            true
        }
        Action::Lowercase => {
            let lowered = go_to_lower(value);
            store.set(rule.target_label(), &lowered);
            true
        }
        Action::Uppercase => {
            let uppered = go_to_upper(value);
            store.set(rule.target_label(), &uppered);
            true
        }
        Action::HashMod => {
            let bucket = hash_mod(value, rule.modulus());
            let mut buf = [0u8; 20];
            store.set(rule.target_label(), format_u64(bucket, &mut buf));
            true
        }
        Action::LabelMap => {
            label_map(rule, store);
            true
        }
        Action::LabelDrop => {
            store.retain_names(|name| !rule.regex().is_match(name));
            true
        }
        Action::LabelKeep => {
            store.retain_names(|name| rule.regex().is_match(name));
            true
        }
    }
}

/// The (target, value) a `replace` rule writes, or `None` when it does
/// nothing (no match, or the expanded target is not a valid name). An empty
/// value means "delete the target".
fn replace_result<'r>(
    rule: &'r RelabelConfig,
    value: &str,
) -> Option<(Cow<'r, str>, Cow<'r, str>)> {
    let target_template = rule.target_template();
    let replacement_template = rule.replacement_template();
    let (target, replacement) = match (target_template.literal(), replacement_template.literal()) {
        // Neither side needs the groups: a plain match test suffices.
        (Some(target), Some(replacement)) => {
            if !rule.regex().is_match(value) {
                return None;
            }
            (Cow::Borrowed(target), Cow::Borrowed(replacement))
        }
        _ => {
            let caps = rule.regex().captures(value)?;
            (
                target_template.expand(&caps),
                replacement_template.expand(&caps),
            )
        }
    };
    if !rule.name_validation().is_valid_label_name(&target) {
        return None;
    }
    Some((target, replacement))
}

/// `labelmap`: every label whose name matches gets copied to the name the
/// replacement expands to. Targets are computed from the labels as they were
/// before the rule (like Go's `Builder.Range`), then written in order.
fn label_map(rule: &RelabelConfig, store: &mut impl LabelStore) {
    let regex = rule.regex();
    let template = rule.replacement_template();
    let mut copies: Vec<(String, String)> = Vec::new();
    store.for_each(|name, value| {
        let new_name = match template.literal() {
            Some(literal) if regex.is_match(name) => literal.to_owned(),
            Some(_) => return,
            None => match regex.captures(name) {
                Some(caps) => template.expand(&caps).into_owned(),
                None => return,
            },
        };
        copies.push((new_name, value.to_owned()));
    });
    for (name, value) in copies {
        store.set(&name, &value);
    }
}

/// MD5 of the value; the last 8 digest bytes as a big-endian integer, mod
/// `modulus` (validation guarantees it is non-zero).
fn hash_mod(value: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(value.as_bytes());
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[8..16]);
    // A zero modulus never passes validation; yield bucket 0 rather than panic.
    u64::from_be_bytes(tail).checked_rem(modulus).unwrap_or(0)
}

/// Decimal formatting without allocating.
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[start..]).unwrap_or("0")
}

/// Go's `strings.ToLower`: per-character simple case mapping (no final-sigma
/// rule, no expansion to several characters).
fn go_to_lower(s: &str) -> String {
    s.chars().map(simple_lower).collect()
}

/// Go's `strings.ToUpper`: per-character simple case mapping.
fn go_to_upper(s: &str) -> String {
    s.chars().map(simple_upper).collect()
}

/// The simple lowercase mapping. Rust's `char::to_lowercase` gives the full
/// mapping, which differs from the simple one only for U+0130.
fn simple_lower(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(lower), None) => lower,
        _ if c == '\u{130}' => 'i',
        _ => c,
    }
}

/// The simple uppercase mapping. Where the full mapping expands to several
/// characters, the simple one is either the character itself or, for Greek
/// letters with ypogegrammeni, the matching prosgegrammeni capital.
fn simple_upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(upper), None) => upper,
        _ => greek_iota_subscript_upper(c).unwrap_or(c),
    }
}

fn greek_iota_subscript_upper(c: char) -> Option<char> {
    let cp = u32::from(c);
    let mapped = match cp {
        0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => cp + 8,
        0x1FB3 => 0x1FBC,
        0x1FC3 => 0x1FCC,
        0x1FF3 => 0x1FFC,
        _ => return None,
    };
    char::from_u32(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_u64_matches_to_string() {
        for n in [0, 7, 10, 976, u64::MAX] {
            let mut buf = [0u8; 20];
            assert_eq!(format_u64(n, &mut buf), n.to_string());
        }
    }

    #[test]
    fn hash_mod_reference_values() {
        assert_eq!(hash_mod("baz", 1000), 976);
        assert_eq!(hash_mod("foo\nbar", 1000), 734);
    }

    #[test]
    fn go_case_mapping() {
        assert_eq!(go_to_upper("bAr123Foo"), "BAR123FOO");
        assert_eq!(go_to_lower("bAr123Foo"), "bar123foo");
        // No expansion: Go keeps ß, Rust's to_uppercase gives "SS".
        assert_eq!(go_to_upper("straße"), "STRAßE");
        // No final-sigma rule.
        assert_eq!(go_to_lower("ΟΔΟΣ"), "οδοσ");
        assert_eq!(go_to_lower("İ"), "i");
        assert_eq!(go_to_upper("ᾳ"), "ᾼ");
        assert_eq!(go_to_upper("ﬁ"), "ﬁ");
    }
}
