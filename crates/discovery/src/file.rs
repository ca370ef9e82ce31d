//! `file_sd_configs`: target groups from JSON or YAML files matched by globs.
//!
//! Change detection polls the matched paths' (mtime, size) once a second —
//! it works on every filesystem (NFS, overlay, ConfigMap symlink swaps) where
//! inotify does not — and every `refresh_interval` the files are re-read
//! regardless, as Prometheus does.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::group::{GroupSpec, TargetGroup};

const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What the provider saw of the files last time: used to skip re-reading
/// unchanged files between refreshes.
pub(crate) type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

#[derive(Debug, thiserror::Error)]
pub enum FileSdError {
    #[error("invalid glob {pattern:?}: {reason}")]
    Glob { pattern: String, reason: String },
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("parsing {path}: {reason}")]
    Parse { path: String, reason: String },
}

pub(crate) fn poll_interval() -> Duration {
    POLL_INTERVAL
}

/// Expands the patterns (relative ones against `base_dir`) into the sorted
/// list of matching files with their change fingerprint.
pub(crate) fn fingerprint(
    patterns: &[String],
    base_dir: &Path,
) -> Result<Fingerprint, FileSdError> {
    let mut out = Vec::new();
    for pattern in patterns {
        let full = if Path::new(pattern).is_absolute() {
            pattern.clone()
        } else {
            base_dir.join(pattern).to_string_lossy().into_owned()
        };
        let paths = glob::glob(&full).map_err(|e| FileSdError::Glob {
            pattern: pattern.clone(),
            reason: e.to_string(),
        })?;
        for path in paths.flatten() {
            let meta = std::fs::metadata(&path).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            let size = meta.map(|m| m.len()).unwrap_or(0);
            out.push((path, mtime, size));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// Reads every file of the fingerprint into target groups.
pub(crate) fn read_groups(files: &Fingerprint) -> Result<Vec<TargetGroup>, FileSdError> {
    let mut groups = Vec::new();
    for (path, _, _) in files {
        groups.extend(read_file(path)?);
    }
    Ok(groups)
}

fn read_file(path: &Path) -> Result<Vec<TargetGroup>, FileSdError> {
    let name = path.to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).map_err(|e| FileSdError::Read {
        path: name.clone(),
        reason: e.to_string(),
    })?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let specs: Vec<GroupSpec> = match ext {
        "json" => serde_json::from_str(&text).map_err(|e| e.to_string()),
        "yml" | "yaml" => {
            if text.trim().is_empty() {
                Ok(Vec::new())
            } else {
                serde_saphyr::from_str(&text).map_err(|e| e.to_string())
            }
        }
        other => Err(format!(
            "unsupported file extension {other:?} (want .json, .yml or .yaml)"
        )),
    }
    .map_err(|reason| FileSdError::Parse {
        path: name.clone(),
        reason,
    })?;
    TargetGroup::from_specs(&name, specs, ("__meta_filepath", &name)).map_err(|e| {
        FileSdError::Parse {
            path: name,
            reason: e.to_string(),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_and_yaml_with_meta_label() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"[{"targets":["h1:9100","h2:9100"],"labels":{"env":"prod"}}]"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("b.yml"), "- targets: ['h3:80']\n").unwrap();
        let fp = fingerprint(&["*.json".into(), "*.yml".into()], dir.path()).unwrap();
        let groups = read_groups(&fp).unwrap();
        assert_eq!(groups.len(), 2);
        let a = &groups[0];
        assert_eq!(a.targets.len(), 2);
        assert_eq!(a.targets[0].get("__address__"), Some("h1:9100"));
        assert_eq!(a.labels.get("env"), Some("prod"));
        let path = dir.path().join("a.json").to_string_lossy().into_owned();
        assert_eq!(a.labels.get("__meta_filepath"), Some(path.as_str()));
        assert_eq!(a.source, format!("{path}:0"));
    }

    #[test]
    fn malformed_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.json"), "[{\"targets\": 5}]").unwrap();
        let fp = fingerprint(&["*.json".into()], dir.path()).unwrap();
        let err = read_groups(&fp).unwrap_err().to_string();
        assert!(err.contains("bad.json"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x.json"),
            r#"[{"targets":["a:1"],"lables":{}}]"#,
        )
        .unwrap();
        let fp = fingerprint(&["*.json".into()], dir.path()).unwrap();
        assert!(read_groups(&fp).is_err());
    }
}
