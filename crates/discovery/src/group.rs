use serde::Deserialize;
use tributary_model::Labels;

/// A set of targets sharing common labels, as an SD mechanism reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// Identifies the group within its provider (`file.json:0`, the HTTP SD
    /// URL and index, the static config index): a later group with the same
    /// source replaces this one.
    pub source: String,
    /// One label set per target, each with at least `__address__`.
    pub targets: Vec<Labels>,
    /// Labels common to every target of the group.
    pub labels: Labels,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetGroupError {
    #[error("{0}")]
    Syntax(String),
    #[error("\"{0}\" is not a valid label name")]
    InvalidLabelName(String),
    #[error("target group {index}: target {target:?} is not a valid host:port")]
    InvalidTarget { index: usize, target: String },
}

/// The JSON/YAML shape shared by file_sd and http_sd.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupSpec {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

pub(crate) fn valid_label_name(name: &str) -> bool {
    // Prometheus 3.x accepts any UTF-8 label name that is not empty.
    !name.is_empty()
}

impl TargetGroup {
    /// Builds a group from a static `targets:`/`labels:` pair.
    pub fn from_static(
        source: String,
        targets: &[String],
        labels: &[(String, String)],
    ) -> TargetGroup {
        TargetGroup {
            source,
            targets: targets
                .iter()
                .map(|t| Labels::from_pairs([("__address__", t.as_str())]))
                .collect(),
            labels: Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        }
    }

    /// Converts file/HTTP SD specs, adding the mechanism's meta label
    /// (`__meta_filepath`, `__meta_url`) to every group.
    pub(crate) fn from_specs(
        source_prefix: &str,
        specs: Vec<GroupSpec>,
        meta: (&str, &str),
    ) -> Result<Vec<TargetGroup>, TargetGroupError> {
        let mut groups = Vec::with_capacity(specs.len());
        for (index, spec) in specs.into_iter().enumerate() {
            let mut pairs: Vec<(String, String)> = Vec::new();
            for (k, v) in spec.labels.unwrap_or_default() {
                if !valid_label_name(&k) {
                    return Err(TargetGroupError::InvalidLabelName(k));
                }
                pairs.push((k, v));
            }
            pairs.push((meta.0.to_string(), meta.1.to_string()));
            let mut targets = Vec::with_capacity(spec.targets.len());
            for t in spec.targets {
                if t.contains('/') {
                    return Err(TargetGroupError::InvalidTarget { index, target: t });
                }
                targets.push(Labels::from_pairs([("__address__", t.as_str())]));
            }
            groups.push(TargetGroup {
                source: format!("{source_prefix}:{index}"),
                targets,
                labels: Labels::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            });
        }
        Ok(groups)
    }
}
