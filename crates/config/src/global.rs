//! The `global:` block and helpers shared with scrape configs
//! (scrape protocols, label-name validation, environment expansion).

use std::time::Duration;

use tributary_model::{Labels, ScrapeProtocol};

use crate::decode::{
    boolean, duration, file_path, index, map_entries, seq, size, string, unsigned, Ctx, Fields,
};
use crate::types::GlobalConfig;
use crate::yaml::Node;

pub(crate) const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn decode_global(
    ctx: &mut Ctx,
    node: Option<&Node>,
    env: &dyn Fn(&str) -> Option<String>,
) -> GlobalConfig {
    let mut g = GlobalConfig::default();
    let Some(node) = node else {
        return g;
    };
    let Some(mut f) = Fields::open(ctx, node, "global", "config.GlobalConfig") else {
        return g;
    };
    if let Some(v) = f
        .get(ctx, "scrape_interval", duration)
        .filter(|d| !d.is_zero())
    {
        g.scrape_interval = v;
    }
    let explicit_timeout = f
        .get(ctx, "scrape_timeout", duration)
        .filter(|d| !d.is_zero());
    match explicit_timeout {
        Some(t) => {
            if t > g.scrape_interval {
                ctx.error(
                    f.pos_of("scrape_timeout"),
                    &f.path_of("scrape_timeout"),
                    "global scrape timeout greater than scrape interval",
                );
            }
            g.scrape_timeout = t;
        }
        None => g.scrape_timeout = DEFAULT_SCRAPE_TIMEOUT.min(g.scrape_interval),
    }
    if let Some(v) = f
        .get(ctx, "evaluation_interval", duration)
        .filter(|d| !d.is_zero())
    {
        g.evaluation_interval = v;
    }
    if let Some(v) = f.get(ctx, "rule_query_offset", duration) {
        g.rule_query_offset = v;
    }
    g.scrape_protocols = f.get(ctx, "scrape_protocols", scrape_protocols);
    if let Some(v) = f.get(ctx, "metric_name_validation_scheme", string) {
        g.metric_name_validation_scheme = match v.as_str() {
            "" | "utf8" => "utf8".into(),
            "legacy" => "legacy".into(),
            other => {
                ctx.error(
                    f.pos_of("metric_name_validation_scheme"),
                    &f.path_of("metric_name_validation_scheme"),
                    format!("unknown global name validation method specified, must be either '', 'legacy' or 'utf8', got {other}"),
                );
                "utf8".into()
            }
        };
    }
    let escaping = f
        .get(ctx, "metric_name_escaping_scheme", string)
        .unwrap_or_default();
    g.metric_name_escaping_scheme = resolve_escaping_scheme(
        ctx,
        &f,
        &escaping,
        &g.metric_name_validation_scheme,
        "global",
    );
    let legacy = g.metric_name_validation_scheme == "legacy";
    if let Some(labels) = f.get(ctx, "external_labels", |c, n, p| {
        external_labels(c, n, p, env, legacy)
    }) {
        g.external_labels = labels;
    }
    macro_rules! limit {
        ($field:ident, $conv:expr) => {
            if let Some(v) = f.get(ctx, stringify!($field), $conv) {
                g.$field = v;
            }
        };
    }
    limit!(body_size_limit, size);
    limit!(sample_limit, unsigned);
    limit!(label_limit, unsigned);
    limit!(label_name_length_limit, unsigned);
    limit!(label_value_length_limit, unsigned);
    limit!(target_limit, unsigned);
    limit!(keep_dropped_targets, unsigned);
    limit!(scrape_native_histograms, boolean);
    limit!(always_scrape_classic_histograms, boolean);
    limit!(convert_classic_histograms_to_nhcb, boolean);
    limit!(extra_scrape_metrics, boolean);
    reject_nhcb_conversion(ctx, &f, g.convert_classic_histograms_to_nhcb);
    g.query_log_file = f
        .get(ctx, "query_log_file", file_path)
        .filter(|s| !s.is_empty());
    g.scrape_failure_log_file = f
        .get(ctx, "scrape_failure_log_file", file_path)
        .filter(|s| !s.is_empty());
    f.finish(ctx);
    g
}

/// Validates `metric_name_escaping_scheme` against the validation scheme
/// and fills its default.
pub(crate) fn resolve_escaping_scheme(
    ctx: &mut Ctx,
    f: &Fields,
    value: &str,
    validation: &str,
    owner: &str,
) -> String {
    let key = "metric_name_escaping_scheme";
    match value {
        "" => {
            if validation == "legacy" {
                "underscores".into()
            } else {
                "allow-utf-8".into()
            }
        }
        "allow-utf-8" if validation == "legacy" => {
            ctx.error(
                f.pos_of(key),
                &f.path_of(key),
                format!("{owner} metric name escaping scheme cannot be allow-utf-8 when the metric name validation scheme is legacy"),
            );
            value.into()
        }
        "allow-utf-8" | "underscores" | "dots" | "values" => value.into(),
        other => {
            ctx.error(
                f.pos_of(key),
                &f.path_of(key),
                format!("unknown {owner} metric name escaping scheme {other:?}, must be one of allow-utf-8, underscores, dots, values"),
            );
            "allow-utf-8".into()
        }
    }
}

pub(crate) fn scrape_protocols(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
) -> Option<Vec<ScrapeProtocol>> {
    let items = seq(ctx, node, path)?;
    if items.is_empty() {
        ctx.error(node.pos, path, "scrape_protocols cannot be empty");
        return None;
    }
    let mut out: Vec<ScrapeProtocol> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(name) = string(ctx, item, &p) else {
            ok = false;
            continue;
        };
        match scrape_protocol_by_name(ctx, item, &p, &name) {
            Some(proto) if out.contains(&proto) => {
                ctx.error(
                    item.pos,
                    &p,
                    format!("duplicated protocol in scrape_protocols, got {name}"),
                );
                ok = false;
            }
            Some(proto) => out.push(proto),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

pub(crate) fn scrape_protocol_by_name(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    name: &str,
) -> Option<ScrapeProtocol> {
    let found = ScrapeProtocol::from_name(name);
    if found.is_none() {
        let supported: Vec<&str> = ScrapeProtocol::ALL.iter().map(|p| p.name()).collect();
        ctx.error(
            node.pos,
            path,
            format!(
                "unknown scrape protocol {name}, supported: [{}]",
                supported.join(" ")
            ),
        );
    }
    found
}

/// The per-job default when neither job nor global set `scrape_protocols`.
pub(crate) fn default_scrape_protocols(native_histograms: bool) -> Vec<ScrapeProtocol> {
    let text = [
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::PrometheusText1_0_0,
        ScrapeProtocol::PrometheusText0_0_4,
    ];
    let mut out = Vec::with_capacity(5);
    if native_histograms {
        out.push(ScrapeProtocol::PrometheusProto);
    }
    out.extend(text);
    out
}

/// Label-name validity under the configured validation scheme.
pub(crate) fn is_valid_label_name(name: &str, legacy: bool) -> bool {
    if name.is_empty() {
        return false;
    }
    if !legacy {
        return true; // any non-empty UTF-8 (Rust strings always are)
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn external_labels(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    legacy: bool,
) -> Option<Labels> {
    let entries = map_entries(ctx, node, path)?;
    let mut pairs = Vec::with_capacity(entries.len());
    for e in entries {
        let p = crate::decode::child(path, &e.key);
        if !is_valid_label_name(&e.key, legacy) || e.key == "__name__" {
            ctx.error(
                e.key_pos,
                &p,
                format!("{:?} is not a valid label name", e.key),
            );
            continue;
        }
        let Some(raw) = string(ctx, &e.value, &p) else {
            continue;
        };
        pairs.push((e.key.clone(), expand_env(&raw, env)));
    }
    // Labels drops empty values: an external label that expanded to "" is
    // never attached to series.
    Some(Labels::from_pairs(pairs))
}

/// Expands `$VAR` and `${VAR}` like Go's `os.Expand` with Prometheus's
/// mapping: `$$` is a literal `$`, unset variables expand to "".
pub(crate) fn expand_env(input: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if after.is_empty() {
            out.push('$');
            rest = after;
            break;
        }
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(0) => rest = &braced[1..], // `${}`: Go drops it whole
                None => rest = braced,          // unterminated: Go drops `${`
                Some(end) => {
                    out.push_str(&env(&braced[..end]).unwrap_or_default());
                    rest = &braced[end + 1..];
                }
            }
            continue;
        }
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if name_len == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&env(&after[..name_len]).unwrap_or_default());
        rest = &after[name_len..];
    }
    out.push_str(rest);
    out
}

/// `convert_classic_histograms_to_nhcb: true` would change what is sent
/// (native histograms with custom buckets instead of classic series);
/// until Tributary implements it, such a configuration is refused rather
/// than silently sending the classic series.
pub(crate) fn reject_nhcb_conversion(ctx: &mut Ctx, f: &Fields, enabled: bool) {
    const KEY: &str = "convert_classic_histograms_to_nhcb";
    if enabled {
        ctx.error(
            f.pos_of(KEY),
            &f.path_of(KEY),
            format!("{KEY}: converting classic histograms to native histograms with custom buckets is not supported yet by Tributary"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("h1".into()),
            "REGION" => Some("eu".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_like_os_expand() {
        assert_eq!(expand_env("$HOST", &env), "h1");
        assert_eq!(expand_env("${HOST}-${REGION}", &env), "h1-eu");
        assert_eq!(expand_env("cost $$5", &env), "cost $5");
        assert_eq!(expand_env("$UNSET", &env), "");
        assert_eq!(expand_env("a$", &env), "a$");
        assert_eq!(expand_env("a$-b", &env), "a$-b");
        assert_eq!(expand_env("x${}y", &env), "xy");
        assert_eq!(expand_env("x${abc", &env), "xabc");
    }

    #[test]
    fn legacy_label_names() {
        assert!(is_valid_label_name("foo_1", true));
        assert!(!is_valid_label_name("1foo", true));
        assert!(!is_valid_label_name("foo.bar", true));
        assert!(is_valid_label_name("foo.bar", false));
        assert!(!is_valid_label_name("", false));
    }
}
