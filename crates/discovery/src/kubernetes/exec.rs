//! kubeconfig `exec` credential plugins (client-go's
//! `plugin/pkg/client/auth/exec`, protocol `client.authentication.k8s.io`
//! `ExecCredential` v1 and v1beta1).
//!
//! The plugin is run with the configured `args` and `env` on top of the
//! agent's environment, plus `KUBERNETES_EXEC_INFO` describing the request
//! (non-interactive, as an agent has no terminal). Its stdout must be an
//! `ExecCredential` of the requested `apiVersion` whose `status` carries a
//! `token` and/or `clientCertificateData` + `clientKeyData`, optionally with
//! an `expirationTimestamp`. The credential is cached until it expires (or
//! until the API server answers 401, which makes the next request run the
//! plugin again), like client-go.
//!
//! Client certificates from a plugin are read once, when the provider
//! connects: the HTTP client's TLS identity is fixed at construction.
//! A provider restart (config reload changing the job, or agent restart)
//! picks up a new certificate; tokens are refreshed in place.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::Mutex;

/// A plugin that does not answer within this is killed and fails.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// A credential this close to its expiry is renewed before use, so a
/// request never carries a token that expires in flight.
const EXPIRY_SKEW: Duration = Duration::from_secs(10);
/// Most stdout read from a plugin (ExecCredentials are a few KiB).
const MAX_OUTPUT: usize = 1 << 20;

const V1: &str = "client.authentication.k8s.io/v1";
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec plugin: apiVersion {0:?} is not supported (want {V1} or {V1BETA1})")]
    ApiVersion(String),
    #[error("exec plugin: command is empty")]
    NoCommand,
    #[error("exec plugin {command:?}: could not run: {source}{hint}")]
    Spawn {
        command: String,
        source: std::io::Error,
        hint: String,
    },
    #[error("exec plugin {command:?}: no answer within {EXEC_TIMEOUT:?}")]
    Timeout { command: String },
    #[error("exec plugin {command:?}: exited with {status}: {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("exec plugin {command:?}: invalid ExecCredential: {message}")]
    Invalid { command: String, message: String },
}

/// `users[].user.exec` of a kubeconfig.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ExecConfig {
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub api_version: String,
    pub install_hint: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct EnvVar {
    pub name: String,
    pub value: String,
}

/// What a plugin returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Credential {
    pub token: Option<String>,
    /// PEM certificate and key, both or neither.
    pub client_cert: Option<(String, String)>,
    pub expires: Option<SystemTime>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredential {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    status: Option<ExecStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ExecStatus {
    token: String,
    client_certificate_data: String,
    client_key_data: String,
    expiration_timestamp: Option<String>,
}

/// A configured plugin and its cached credential.
pub(crate) struct ExecAuth {
    config: ExecConfig,
    /// The command, resolved against the kubeconfig's directory when it is
    /// a relative path with a separator (client-go's `ResolvePaths`).
    command: PathBuf,
    cached: Mutex<Option<Credential>>,
}

impl ExecAuth {
    pub fn new(config: ExecConfig, kubeconfig_dir: &Path) -> Result<ExecAuth, ExecError> {
        if config.api_version != V1 && config.api_version != V1BETA1 {
            return Err(ExecError::ApiVersion(config.api_version));
        }
        if config.command.is_empty() {
            return Err(ExecError::NoCommand);
        }
        let raw = Path::new(&config.command);
        let command = if raw.is_relative() && config.command.contains('/') {
            kubeconfig_dir.join(raw)
        } else {
            raw.to_path_buf()
        };
        Ok(ExecAuth {
            config,
            command,
            cached: Mutex::new(None),
        })
    }

    /// The current credential: the cached one while it is valid, else a
    /// fresh one from the plugin.
    pub async fn credential(&self) -> Result<Credential, ExecError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expires
                .is_none_or(|exp| SystemTime::now() + EXPIRY_SKEW < exp);
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self.run().await?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// The bearer token to send, if the plugin gives one.
    pub async fn token(&self) -> Result<Option<String>, ExecError> {
        Ok(self.credential().await?.token)
    }

    /// Forgets the cached credential (the server refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn run(&self) -> Result<Credential, ExecError> {
        let name = self.config.command.clone();
        let info = serde_json::json!({
            "apiVersion": self.config.api_version,
            "kind": "ExecCredential",
            "spec": {"interactive": false},
        });
        let mut cmd = tokio::process::Command::new(&self.command);
        cmd.args(&self.config.args)
            .envs(self.config.env.iter().map(|e| (&e.name, &e.value)))
            .env("KUBERNETES_EXEC_INFO", info.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| ExecError::Spawn {
            command: name.clone(),
            source,
            hint: if self.config.install_hint.is_empty() {
                String::new()
            } else {
                format!("\n{}", self.config.install_hint)
            },
        })?;
        let out = match tokio::time::timeout(EXEC_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(source)) => {
                return Err(ExecError::Spawn {
                    command: name,
                    source,
                    hint: String::new(),
                })
            }
            // Dropping the future drops the child: kill_on_drop ends it.
            Err(_) => return Err(ExecError::Timeout { command: name }),
        };
        if !out.status.success() {
            let stderr: String = String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .take(512)
                .collect();
            return Err(ExecError::Failed {
                command: name,
                status: out.status,
                stderr,
            });
        }
        let stdout = out.stdout.get(..MAX_OUTPUT).unwrap_or(&out.stdout);
        parse_credential(stdout, &self.config.api_version).map_err(|message| ExecError::Invalid {
            command: name,
            message,
        })
    }
}

/// Decodes and checks a plugin's stdout against the requested version.
pub(crate) fn parse_credential(stdout: &[u8], api_version: &str) -> Result<Credential, String> {
    let ec: ExecCredential = serde_json::from_slice(stdout).map_err(|e| e.to_string())?;
    if ec.kind != "ExecCredential" {
        return Err(format!("kind {:?}, want \"ExecCredential\"", ec.kind));
    }
    if ec.api_version != api_version {
        return Err(format!(
            "apiVersion {:?} does not match the requested {api_version:?}",
            ec.api_version
        ));
    }
    let status = ec.status.ok_or("no status")?;
    let has_cert = !status.client_certificate_data.is_empty();
    let has_key = !status.client_key_data.is_empty();
    if has_cert != has_key {
        return Err("clientCertificateData and clientKeyData must be given together".into());
    }
    if status.token.is_empty() && !has_cert {
        return Err("status has neither a token nor a client certificate".into());
    }
    let expires = match status.expiration_timestamp.as_deref() {
        None | Some("") => None,
        Some(ts) => Some(
            humantime::parse_rfc3339_weak(ts)
                .map_err(|e| format!("expirationTimestamp {ts:?}: {e}"))?,
        ),
    };
    Ok(Credential {
        token: (!status.token.is_empty()).then_some(status.token),
        client_cert: has_cert.then_some((status.client_certificate_data, status.client_key_data)),
        expires,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn credential_versions_and_fields_are_checked() {
        let ok = br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
            "status":{"token":"t","expirationTimestamp":"2030-01-02T03:04:05Z"}}"#;
        let c = parse_credential(ok, V1).unwrap();
        assert_eq!(c.token.as_deref(), Some("t"));
        assert_eq!(
            c.expires,
            Some(humantime::parse_rfc3339("2030-01-02T03:04:05Z").unwrap())
        );
        // The answer must be of the version asked for.
        assert!(parse_credential(ok, V1BETA1)
            .unwrap_err()
            .contains("does not match"));
        let half_cert =
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
            "status":{"clientCertificateData":"PEM"}}"#;
        assert!(parse_credential(half_cert, V1)
            .unwrap_err()
            .contains("together"));
        let empty = br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}}"#;
        assert!(parse_credential(empty, V1).unwrap_err().contains("neither"));
        assert!(ExecAuth::new(
            ExecConfig {
                command: "x".into(),
                api_version: "client.authentication.k8s.io/v1alpha1".into(),
                ..ExecConfig::default()
            },
            Path::new("/")
        )
        .is_err());
    }
}
