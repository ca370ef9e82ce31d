//! Relabel rules: actions, defaults, the builder and validation.
//!
//! Prometheus's validation depends on which fields a YAML rule *set*, not
//! only on their values: `keepequal` rejects an explicit `regex: (.*)` and
//! `labeldrop` rejects an explicit `source_labels: []`. The builder therefore
//! takes each field as "given or not"; the built [`RelabelConfig`] remembers
//! which were given, and [`RelabelConfig::validate`] applies Prometheus's
//! checks in Prometheus's order with its exact messages.
//!
//! Templates (`target_label`, `replacement`) are parsed against the regex
//! when the rule is built, so applying a rule does no parsing.

use std::fmt;

use crate::regex::{Regex, RegexError};
use crate::template::Template;

/// The default `separator`.
pub const DEFAULT_SEPARATOR: &str = ";";
/// The default `replacement`.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    /// All actions, in Prometheus's documentation order.
    pub const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    /// Parses an action name case-insensitively, as Prometheus's YAML does.
    pub fn parse(name: &str) -> Result<Action, RelabelError> {
        let lower = name.to_lowercase();
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == lower)
            .ok_or_else(|| RelabelError::UnknownAction(name.to_owned()))
    }

    /// The canonical (lowercase) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    /// Actions that write `target_label` and therefore require it.
    fn needs_target(self) -> bool {
        matches!(
            self,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        )
    }

    /// Actions whose target is a plain label name and that take no
    /// `replacement`.
    fn plain_target_without_replacement(self) -> bool {
        matches!(
            self,
            Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which label names are valid (Prometheus's `model.ValidationScheme`).
/// Prometheus 3 defaults to UTF-8; the config crate resolves the global
/// `metric_name_validation_scheme` and passes the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NameValidation {
    /// Any non-empty UTF-8 string.
    #[default]
    Utf8,
    /// `[a-zA-Z_][a-zA-Z0-9_]*`.
    Legacy,
}

impl NameValidation {
    pub fn is_valid_label_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => !name.is_empty(),
            NameValidation::Legacy => is_legacy_label_name(name),
        }
    }

    /// A label name that may contain `$var` / `${var}` references: in UTF-8
    /// mode any non-empty string, in legacy mode Prometheus's
    /// `^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$`.
    fn is_valid_templated_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => !name.is_empty(),
            NameValidation::Legacy => is_legacy_templated_name(name),
        }
    }
}

fn is_legacy_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The legacy target pattern reduces to: starts with `[a-zA-Z_]` or a
/// variable, then any mix of word characters and variables, where a
/// variable is `$` followed by `\w+` or `{\w+}`.
fn is_legacy_templated_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    let mut first = true;
    while let Some(&b) = bytes.get(i) {
        if b == b'$' {
            match variable_len(&bytes[i + 1..]) {
                Some(n) => i += 1 + n,
                None => return false,
            }
        } else if (first && (b.is_ascii_alphabetic() || b == b'_')) || (!first && is_word_byte(b)) {
            i += 1;
        } else {
            return false;
        }
        first = false;
    }
    !first
}

/// Length of `\w+` or `{\w+}` at the start of `s`.
fn variable_len(s: &[u8]) -> Option<usize> {
    if let Some(inner) = s.strip_prefix(b"{") {
        let n = inner.iter().take_while(|&&b| is_word_byte(b)).count();
        (n > 0 && inner.get(n) == Some(&b'}')).then_some(n + 2)
    } else {
        let n = s.iter().take_while(|&&b| is_word_byte(b)).count();
        (n > 0).then_some(n)
    }
}

/// A rule that cannot be built, with Prometheus's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelabelError {
    #[error("relabel action cannot be empty")]
    EmptyAction,
    #[error("unknown relabel action {0:?}")]
    UnknownAction(String),
    #[error(transparent)]
    Regex(#[from] RegexError),
    #[error("relabel configuration for hashmod requires non-zero modulus")]
    HashModZeroModulus,
    #[error("relabel configuration for {0} action requires 'target_label' value")]
    MissingTargetLabel(Action),
    #[error("{target:?} is invalid 'target_label' for {action} action")]
    InvalidTargetLabel { target: String, action: Action },
    #[error("'replacement' can not be set for {0} action")]
    ReplacementNotAllowed(Action),
    #[error("{replacement:?} is invalid 'replacement' for {action} action")]
    InvalidReplacement { replacement: String, action: Action },
    #[error("{0} action requires only 'source_labels' and `target_label`, and no other fields")]
    EqualActionExtraFields(Action),
    #[error("{0} action requires only 'regex', and no other fields")]
    LabelActionExtraFields(Action),
}

/// One relabel rule, ready to apply. Build it with [`RelabelConfig::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelabelConfig {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
    name_validation: NameValidation,
    source_labels_set: bool,
    regex_set: bool,
    target_template: Template,
    replacement_template: Template,
}

impl Default for RelabelConfig {
    /// Prometheus's `DefaultRelabelConfig`: replace, `;`, `(.*)`, `$1`.
    /// (It has no `target_label`, so it does not validate on its own.)
    fn default() -> Self {
        RelabelConfig::assemble(RelabelParts {
            source_labels: None,
            separator: DEFAULT_SEPARATOR.to_owned(),
            regex: None,
            modulus: 0,
            target_label: String::new(),
            replacement: DEFAULT_REPLACEMENT.to_owned(),
            action: Action::Replace,
            name_validation: NameValidation::default(),
        })
    }
}

struct RelabelParts {
    source_labels: Option<Vec<String>>,
    separator: String,
    regex: Option<Regex>,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
    name_validation: NameValidation,
}

impl RelabelConfig {
    pub fn builder() -> RelabelConfigBuilder {
        RelabelConfigBuilder::default()
    }

    fn assemble(parts: RelabelParts) -> RelabelConfig {
        let regex_set = parts.regex.is_some();
        let regex = parts.regex.unwrap_or_default();
        let target_template = Template::parse(&parts.target_label, &regex);
        let replacement_template = Template::parse(&parts.replacement, &regex);
        RelabelConfig {
            source_labels_set: parts.source_labels.is_some(),
            source_labels: parts.source_labels.unwrap_or_default(),
            separator: parts.separator,
            regex,
            modulus: parts.modulus,
            target_label: parts.target_label,
            replacement: parts.replacement,
            action: parts.action,
            name_validation: parts.name_validation,
            regex_set,
            target_template,
            replacement_template,
        }
    }

    pub fn source_labels(&self) -> &[String] {
        &self.source_labels
    }
    pub fn separator(&self) -> &str {
        &self.separator
    }
    pub fn regex(&self) -> &Regex {
        &self.regex
    }
    pub fn modulus(&self) -> u64 {
        self.modulus
    }
    pub fn target_label(&self) -> &str {
        &self.target_label
    }
    pub fn replacement(&self) -> &str {
        &self.replacement
    }
    pub fn action(&self) -> Action {
        self.action
    }
    pub fn name_validation(&self) -> NameValidation {
        self.name_validation
    }
    /// Whether `source_labels` was given (even as an empty list).
    pub fn source_labels_set(&self) -> bool {
        self.source_labels_set
    }
    /// Whether `regex` was given (even as the default `(.*)`).
    pub fn regex_set(&self) -> bool {
        self.regex_set
    }

    pub(crate) fn target_template(&self) -> &Template {
        &self.target_template
    }
    pub(crate) fn replacement_template(&self) -> &Template {
        &self.replacement_template
    }

    /// Prometheus's `relabel.Config.Validate`, check for check.
    pub fn validate(&self) -> Result<(), RelabelError> {
        let action = self.action;
        let scheme = self.name_validation;
        let target = &self.target_label;
        let invalid_target = || RelabelError::InvalidTargetLabel {
            target: target.clone(),
            action,
        };
        if self.modulus == 0 && action == Action::HashMod {
            return Err(RelabelError::HashModZeroModulus);
        }
        if action.needs_target() && target.is_empty() {
            return Err(RelabelError::MissingTargetLabel(action));
        }
        if action == Action::Replace {
            let valid = if target.contains('$') {
                scheme.is_valid_templated_name(target)
            } else {
                scheme.is_valid_label_name(target)
            };
            if !valid {
                return Err(invalid_target());
            }
        }
        if action.plain_target_without_replacement() {
            if !scheme.is_valid_label_name(target) {
                return Err(invalid_target());
            }
            if self.replacement != DEFAULT_REPLACEMENT {
                return Err(RelabelError::ReplacementNotAllowed(action));
            }
        }
        if action == Action::LabelMap && !scheme.is_valid_templated_name(&self.replacement) {
            return Err(RelabelError::InvalidReplacement {
                replacement: self.replacement.clone(),
                action,
            });
        }
        if action == Action::HashMod && !scheme.is_valid_label_name(target) {
            return Err(invalid_target());
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual)
            && (self.regex_set
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(RelabelError::EqualActionExtraFields(action));
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (self.source_labels_set
                || !target.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(RelabelError::LabelActionExtraFields(action));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum ActionInput {
    #[default]
    Unset,
    /// YAML `action:` with a null value: Prometheus reports an empty action.
    Null,
    Name(String),
    Parsed(Action),
}

/// Collects the fields of one rule as written in the config file. Fields
/// left unset take Prometheus's defaults; set fields count as "explicitly
/// given" for validation.
///
/// Mapping YAML to this builder the way Prometheus's YAML decoder does:
/// a key with a `null` value behaves like the zero value of the Go field,
/// i.e. `separator("")`, `replacement("")`, `target_label("")`,
/// `modulus(0)`, `regex("")` (an empty regex), [`Self::null_action`] for
/// `action`, and *not calling* `source_labels` for `source_labels`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelabelConfigBuilder {
    source_labels: Option<Vec<String>>,
    separator: Option<String>,
    regex: Option<String>,
    modulus: Option<u64>,
    target_label: Option<String>,
    replacement: Option<String>,
    action: ActionInput,
    name_validation: NameValidation,
}

impl RelabelConfigBuilder {
    pub fn source_labels<I, S>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.source_labels = Some(labels.into_iter().map(Into::into).collect());
        self
    }
    pub fn separator(mut self, separator: impl Into<String>) -> Self {
        self.separator = Some(separator.into());
        self
    }
    /// The pattern, unanchored as written; compiled by [`Self::build`].
    pub fn regex(mut self, pattern: impl Into<String>) -> Self {
        self.regex = Some(pattern.into());
        self
    }
    pub fn modulus(mut self, modulus: u64) -> Self {
        self.modulus = Some(modulus);
        self
    }
    pub fn target_label(mut self, target: impl Into<String>) -> Self {
        self.target_label = Some(target.into());
        self
    }
    pub fn replacement(mut self, replacement: impl Into<String>) -> Self {
        self.replacement = Some(replacement.into());
        self
    }
    /// The action name as written (case-insensitive); parsed by `build`.
    pub fn action(mut self, name: impl Into<String>) -> Self {
        self.action = ActionInput::Name(name.into());
        self
    }
    pub fn action_kind(mut self, action: Action) -> Self {
        self.action = ActionInput::Parsed(action);
        self
    }
    /// `action:` present with a null value.
    pub fn null_action(mut self) -> Self {
        self.action = ActionInput::Null;
        self
    }
    pub fn name_validation(mut self, scheme: NameValidation) -> Self {
        self.name_validation = scheme;
        self
    }

    /// Parses the action, compiles the regex, parses the templates and
    /// validates, reporting the first problem as Prometheus would.
    pub fn build(self) -> Result<RelabelConfig, RelabelError> {
        let action = match self.action {
            ActionInput::Unset => Some(Action::Replace),
            ActionInput::Null => None,
            ActionInput::Name(name) => Some(Action::parse(&name)?),
            ActionInput::Parsed(a) => Some(a),
        };
        let regex = self.regex.as_deref().map(Regex::new).transpose()?;
        let Some(action) = action else {
            return Err(RelabelError::EmptyAction);
        };
        let config = RelabelConfig::assemble(RelabelParts {
            source_labels: self.source_labels,
            separator: self
                .separator
                .unwrap_or_else(|| DEFAULT_SEPARATOR.to_owned()),
            regex,
            modulus: self.modulus.unwrap_or(0),
            target_label: self.target_label.unwrap_or_default(),
            replacement: self
                .replacement
                .unwrap_or_else(|| DEFAULT_REPLACEMENT.to_owned()),
            action,
            name_validation: self.name_validation,
        });
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_parse_is_case_insensitive() {
        assert_eq!(Action::parse("Replace"), Ok(Action::Replace));
        assert_eq!(Action::parse("KEEPEQUAL"), Ok(Action::KeepEqual));
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Ok(a));
        }
        let err = Action::parse("explode").err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some(r#"unknown relabel action "explode""#));
        let err = Action::parse("").err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some(r#"unknown relabel action """#));
    }

    #[test]
    fn defaults() {
        let c = RelabelConfig::default();
        assert_eq!(c.separator(), ";");
        assert_eq!(c.regex().as_str(), "(.*)");
        assert_eq!(c.replacement(), "$1");
        assert_eq!(c.action(), Action::Replace);
        assert_eq!(c.modulus(), 0);
        assert_eq!(c.target_label(), "");
        assert!(!c.regex_set() && !c.source_labels_set());
    }

    #[test]
    fn legacy_templated_names() {
        for ok in [
            "label",
            "label${1}",
            "${1}label",
            "${1}",
            "$1",
            "asd$2asd",
            "_${1}_",
            "foo${bar}foo",
        ] {
            assert!(is_legacy_templated_name(ok), "{ok:?} should be valid");
        }
        for bad in [
            "-label",
            "${",
            "$",
            "${}",
            "foo${",
            "-foo${1}bar-",
            "bar.foo${1}bar",
            "",
            "0${3}",
            "-${3}",
        ] {
            assert!(!is_legacy_templated_name(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn legacy_label_names() {
        assert!(is_legacy_label_name("_a9"));
        assert!(!is_legacy_label_name("9a"));
        assert!(!is_legacy_label_name("a.b"));
        assert!(!is_legacy_label_name(""));
    }
}
