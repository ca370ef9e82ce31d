//! `relabel_configs` / `metric_relabel_configs` / `write_relabel_configs`.
//!
//! The YAML side is decoded here (field names, types, the null-entry check
//! with Prometheus's messages); the rule itself is built and validated by
//! `tributary_relabel`'s builder so the relabel engine owns its semantics.

use crate::decode::{index, seq, string, string_list, unsigned, Ctx, Fields};
use crate::yaml::Node;

pub use tributary_relabel::{NameValidation, RelabelConfig};

/// Decodes the relabel rule list under `key`. `null_message` is reported for
/// each `null` (or empty) entry, as Prometheus does.
pub(crate) fn relabel_list(
    ctx: &mut Ctx,
    f: &mut Fields,
    key: &str,
    null_message: &str,
) -> Vec<RelabelConfig> {
    let Some(node) = f.take(key) else {
        return Vec::new();
    };
    let path = f.path_of(key);
    let Some(items) = seq(ctx, node, &path) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(&path, i);
        if item.is_null() {
            ctx.error(item.pos, &p, null_message);
            continue;
        }
        if let Some(rule) = relabel_rule(ctx, item, &p) {
            out.push(rule);
        }
    }
    out
}

fn relabel_rule(ctx: &mut Ctx, node: &Node, path: &str) -> Option<RelabelConfig> {
    let mut f = Fields::open(ctx, node, path, "relabel.Config")?;
    let mut b = RelabelConfig::builder().name_validation(ctx.name_validation);
    if let Some(v) = f.get(ctx, "source_labels", string_list) {
        b = b.source_labels(v);
    }
    if let Some(v) = f.get(ctx, "separator", string) {
        b = b.separator(v);
    }
    if let Some(v) = f.get(ctx, "regex", string) {
        b = b.regex(v);
    }
    if let Some(v) = f.get(ctx, "modulus", unsigned) {
        b = b.modulus(v);
    }
    if let Some(v) = f.get(ctx, "target_label", string) {
        b = b.target_label(v);
    }
    if let Some(v) = f.get(ctx, "replacement", string) {
        b = b.replacement(v);
    }
    match f.get(ctx, "action", string) {
        Some(v) => b = b.action(v),
        // `action:` written with no value is an error in Prometheus.
        None if f.has_key("action") => b = b.null_action(),
        None => {}
    }
    let pos = f.pos;
    f.finish(ctx);
    match b.build() {
        Ok(rule) => Some(rule),
        Err(e) => {
            ctx.error(pos, path, e.to_string());
            None
        }
    }
}

/// Renders a rule for the effective-config YAML.
pub(crate) fn relabel_yaml(rule: &RelabelConfig) -> crate::emit::Y {
    let mut m = crate::emit::MapY::default();
    if rule.source_labels_set() {
        m.put(
            "source_labels",
            crate::emit::Y::Seq(
                rule.source_labels()
                    .iter()
                    .map(|s| crate::emit::Y::Str(s.clone()))
                    .collect(),
            ),
        );
    }
    m.str("separator", rule.separator());
    if rule.regex_set() {
        m.str("regex", rule.regex().as_str());
    }
    if rule.modulus() != 0 {
        m.raw("modulus", rule.modulus());
    }
    m.opt_str("target_label", Some(rule.target_label()))
        .str("replacement", rule.replacement())
        .str("action", rule.action().as_str());
    m.build()
}
