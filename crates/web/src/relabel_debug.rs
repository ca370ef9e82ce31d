//! The relabel debugger: labels plus rules in, the label set after every
//! rule out. Serves Prometheus 3.x's `/api/v1/targets/relabel_steps`
//! (rules taken from a loaded job), Tributary's `POST
//! /api/v1/relabel_debugger` (rules pasted as YAML) and the UI page.
//!
//! Pasted rules are parsed by the real config loader, wrapped in a one-job
//! configuration, so they get exactly the validation and messages a config
//! file gets; error positions are mapped back to the pasted text.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::LabelsJson;
use tributary_config::ConfigError;
use tributary_model::{Labels, LabelsBuilder};
use tributary_relabel::RelabelConfig;

/// Why debugger input was rejected; shown to the operator verbatim.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DebugInputError {
    #[error("invalid labels: {0}")]
    Labels(String),
    #[error("invalid relabel rules:\n{0}")]
    Rules(String),
}

/// One rule's effect, in the shape of Prometheus's `RelabelStep`: the
/// output is empty once a rule has dropped the set.
#[derive(Debug, Clone, PartialEq)]
pub struct DebugStep {
    pub rule: RelabelConfig,
    pub output: Labels,
    pub keep: bool,
}

/// Runs every rule, as Prometheus's endpoint does: rules after a drop are
/// still listed, with `keep: false` and no labels.
pub fn debug_steps(rules: &[RelabelConfig], input: &Labels) -> Vec<DebugStep> {
    let ran = tributary_relabel::relabel_steps(rules, input);
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let step = ran.get(i);
            let keep = step.is_some_and(|s| !s.dropped);
            DebugStep {
                rule: rule.clone(),
                output: if keep {
                    step.map(|s| s.labels.clone()).unwrap_or_default()
                } else {
                    Labels::default()
                },
                keep,
            }
        })
        .collect()
}

/// A rule as Prometheus's `relabel.Config` marshals to JSON (its field
/// order and `omitempty` choices).
#[derive(Serialize)]
pub struct RuleJson<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    source_labels: &'a [String],
    separator: &'a str,
    regex: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    modulus: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    target_label: &'a str,
    replacement: &'a str,
    action: &'static str,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub fn rule_json(rule: &RelabelConfig) -> RuleJson<'_> {
    RuleJson {
        source_labels: rule.source_labels(),
        separator: rule.separator(),
        regex: rule.regex().as_str(),
        modulus: rule.modulus(),
        target_label: rule.target_label(),
        replacement: rule.replacement(),
        action: rule.action().as_str(),
    }
}

#[derive(Serialize)]
pub struct StepJson<'a> {
    rule: RuleJson<'a>,
    output: LabelsJson<'a>,
    keep: bool,
}

/// `{"steps": [...]}` as Prometheus's `relabel_steps` answers.
#[derive(Serialize)]
pub struct StepsJson<'a> {
    steps: Vec<StepJson<'a>>,
}

pub fn steps_json(steps: &[DebugStep]) -> StepsJson<'_> {
    StepsJson {
        steps: steps
            .iter()
            .map(|s| StepJson {
                rule: rule_json(&s.rule),
                output: LabelsJson(&s.output),
                keep: s.keep,
            })
            .collect(),
    }
}

/// The debugger's answer: Prometheus's steps plus input and outcome.
#[derive(Serialize)]
pub struct DebuggerJson<'a> {
    steps: Vec<StepJson<'a>>,
    input: LabelsJson<'a>,
    keep: bool,
    /// The final labels; empty when dropped.
    result: LabelsJson<'a>,
}

pub fn debugger_json<'a>(input: &'a Labels, steps: &'a [DebugStep]) -> DebuggerJson<'a> {
    let keep = steps.last().is_none_or(|s| s.keep);
    let result = match steps.last() {
        None => input,
        Some(last) => &last.output,
    };
    DebuggerJson {
        steps: steps_json(steps).steps,
        input: LabelsJson(input),
        keep,
        result: LabelsJson(result),
    }
}

/// Labels as an operator pastes them: a JSON object
/// (`{"__address__":"a:9100"}`), a selector (`{job="x", instance="y"}`) or
/// one `name=value` / `name="value"` per line.
pub fn parse_labels(text: &str) -> Result<Labels, DebugInputError> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') && trimmed.contains("\":") {
        if let Ok(map) = serde_json::from_str::<Map<String, Value>>(trimmed) {
            return labels_from_json(&map);
        }
    }
    let body = trimmed
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(trimmed);
    let mut b = LabelsBuilder::default();
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let (name, value, after) = one_pair(rest)?;
        b.set(name, &value);
        rest = after;
    }
    Ok(b.labels())
}

/// The labels parameter of `relabel_steps`: a JSON object of strings.
pub fn labels_from_json(map: &Map<String, Value>) -> Result<Labels, DebugInputError> {
    let mut b = LabelsBuilder::default();
    for (k, v) in map {
        let Some(v) = v.as_str() else {
            return Err(DebugInputError::Labels(format!(
                "value of {k:?} is not a string"
            )));
        };
        b.set(k, v);
    }
    Ok(b.labels())
}

/// `name="value"` or `name=value` at the start of `s`; returns the rest.
fn one_pair(s: &str) -> Result<(&str, String, &str), DebugInputError> {
    let Some((name, after_eq)) = s.split_once('=') else {
        return Err(DebugInputError::Labels(format!(
            "expected name=value at {:?}",
            first_line(s)
        )));
    };
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(DebugInputError::Labels(format!(
            "invalid label name {name:?}"
        )));
    }
    let after_eq = after_eq.trim_start_matches([' ', '\t']);
    if let Some(quoted) = after_eq.strip_prefix('"') {
        let (value, rest) = quoted_value(quoted)
            .ok_or_else(|| DebugInputError::Labels(format!("unterminated value for {name:?}")))?;
        return Ok((name, value, rest));
    }
    let end = after_eq.find([',', '\n']).unwrap_or(after_eq.len());
    let (value, rest) = after_eq.split_at(end);
    Ok((name, value.trim().to_string(), rest))
}

/// A Go-style double-quoted string body; returns it unescaped and the rest.
fn quoted_value(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Lines of the wrapper before the pasted rules (for error positions).
const WRAPPER_LINES: u32 = 3;
const WRAPPER_PATH: &str = "scrape_configs[0].relabel_configs";

/// Rules pasted as YAML: a list of rules, optionally under a
/// `relabel_configs:` key. Empty text is an empty rule list.
pub fn parse_rules(yaml: &str) -> Result<Vec<RelabelConfig>, DebugInputError> {
    let list = strip_key(yaml);
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut doc = String::with_capacity(list.len() + 128);
    doc.push_str("scrape_configs:\n- job_name: relabel-debugger\n  relabel_configs:\n");
    for line in list.lines() {
        doc.push_str("    ");
        doc.push_str(line);
        doc.push('\n');
    }
    match tributary_config::load_str(&doc, "rules", std::path::Path::new(".")) {
        Ok(cfg) => Ok(cfg
            .scrape_configs
            .into_iter()
            .next()
            .map(|job| job.relabel_configs)
            .unwrap_or_default()),
        Err(errs) => Err(DebugInputError::Rules(
            errs.errors
                .iter()
                .map(describe_error)
                .collect::<Vec<_>>()
                .join("\n"),
        )),
    }
}

fn strip_key(yaml: &str) -> &str {
    let t = yaml.trim_start();
    match t.strip_prefix("relabel_configs:") {
        Some(rest) => rest,
        None => yaml,
    }
}

/// A loader error in terms of the pasted text: `line 2: rules[0].action: …`.
fn describe_error(e: &ConfigError) -> String {
    let path = e
        .path
        .strip_prefix(WRAPPER_PATH)
        .map(|p| format!("rules{p}"))
        .unwrap_or_else(|| e.path.clone());
    let mut out = String::new();
    if e.position.line > WRAPPER_LINES {
        out.push_str(&format!("line {}: ", e.position.line - WRAPPER_LINES));
    }
    if !path.is_empty() {
        out.push_str(&path);
        out.push_str(": ");
    }
    out.push_str(&e.message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_in_all_pasted_forms() {
        let want = Labels::from_pairs([("__address__", "h:9100"), ("job", "node")]);
        assert_eq!(
            parse_labels(r#"{"__address__":"h:9100","job":"node"}"#),
            Ok(want.clone())
        );
        assert_eq!(
            parse_labels(r#"{__address__="h:9100", job="node"}"#),
            Ok(want.clone())
        );
        assert_eq!(parse_labels("__address__=h:9100\njob=node\n"), Ok(want));
        let escaped = parse_labels(r#"a="x\"y,z""#).map(|l| l.get("a").map(str::to_string));
        assert_eq!(escaped, Ok(Some("x\"y,z".to_string())));
        assert!(parse_labels("a").is_err());
        assert!(parse_labels("bad-name=1").is_err());
        assert!(parse_labels(r#"a="open"#).is_err());
    }

    #[test]
    fn every_rule_gets_a_step_even_after_a_drop() {
        let rules = parse_rules(
            "- source_labels: [job]\n  target_label: team\n  replacement: core\n- action: drop\n  source_labels: [job]\n  regex: node\n- target_label: never\n  replacement: x\n",
        );
        let rules = match rules {
            Ok(r) => r,
            Err(e) => panic!("rules should parse: {e}"),
        };
        assert_eq!(rules.len(), 3);
        let steps = debug_steps(&rules, &Labels::from_pairs([("job", "node")]));
        assert_eq!(steps.len(), 3);
        assert!(steps[0].keep);
        assert_eq!(steps[0].output.get("team"), Some("core"));
        assert!(!steps[1].keep);
        assert!(steps[1].output.is_empty());
        assert!(!steps[2].keep);
        let v = serde_json::to_value(steps_json(&steps)).unwrap_or_default();
        assert_eq!(v["steps"][0]["rule"]["action"], "replace");
        assert_eq!(v["steps"][0]["rule"]["target_label"], "team");
        assert_eq!(v["steps"][1]["rule"]["source_labels"][0], "job");
        assert_eq!(v["steps"][1]["output"], serde_json::json!({}));
    }

    #[test]
    fn rule_errors_point_into_the_pasted_text() {
        let err = parse_rules("- action: replace\n  regex: 'a(b'\n  target_label: x\n");
        match err {
            Err(DebugInputError::Rules(msg)) => {
                assert!(msg.contains("rules[0]"), "{msg}");
                assert!(!msg.contains("scrape_configs"), "{msg}");
            }
            other => panic!("expected a rules error, got {other:?}"),
        }
        assert_eq!(parse_rules("  \n"), Ok(Vec::new()));
        assert!(
            matches!(parse_rules("relabel_configs:\n- action: labeldrop\n  regex: tmp_.*\n"), Ok(r) if r.len() == 1)
        );
    }
}
