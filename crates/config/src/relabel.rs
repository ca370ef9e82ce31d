//! `relabel_configs` / `metric_relabel_configs` / `write_relabel_configs`.
//!
//! The YAML side is decoded here (field names, types, the null-entry check
//! with Prometheus's messages); the rule itself is built and validated by
//! `tributary_relabel` so the relabel engine owns its semantics.

use crate::decode::{index, seq, string, string_list, unsigned, Ctx, Fields};
use crate::yaml::Node;

pub use spec::{RelabelConfig, RelabelSpec};

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
    let spec = RelabelSpec {
        source_labels: f.get(ctx, "source_labels", string_list),
        separator: f.get(ctx, "separator", string),
        regex: f.get(ctx, "regex", string),
        modulus: f.get(ctx, "modulus", unsigned),
        target_label: f.get(ctx, "target_label", string),
        replacement: f.get(ctx, "replacement", string),
        action: f.get(ctx, "action", string),
    };
    let pos = f.pos;
    f.finish(ctx);
    match spec::build(spec) {
        Ok(rule) => Some(rule),
        Err(message) => {
            ctx.error(pos, path, message);
            None
        }
    }
}

mod spec {
    /// The rule as written in YAML; `None` means "not set" so the engine can
    /// apply Prometheus's defaults (separator `;`, regex `(.*)`,
    /// replacement `$1`, action `replace`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct RelabelSpec {
        pub source_labels: Option<Vec<String>>,
        pub separator: Option<String>,
        pub regex: Option<String>,
        pub modulus: Option<u64>,
        pub target_label: Option<String>,
        pub replacement: Option<String>,
        pub action: Option<String>,
    }

    /// Placeholder until `tributary_relabel` exposes its rule type.
    pub type RelabelConfig = RelabelSpec;

    pub(crate) fn build(spec: RelabelSpec) -> Result<RelabelConfig, String> {
        Ok(spec)
    }
}

/// Renders a rule for the effective-config YAML.
pub(crate) fn relabel_yaml(rule: &RelabelConfig) -> crate::emit::Y {
    let mut m = crate::emit::MapY::default();
    if let Some(src) = &rule.source_labels {
        m.list("source_labels", src);
    }
    m.opt_str("separator", rule.separator.as_deref())
        .opt_str("regex", rule.regex.as_deref());
    if let Some(modulus) = rule.modulus {
        m.raw("modulus", modulus);
    }
    m.opt_str("target_label", rule.target_label.as_deref())
        .opt_str("replacement", rule.replacement.as_deref())
        .opt_str("action", rule.action.as_deref());
    m.build()
}
