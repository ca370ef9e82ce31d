//! How a provider reaches the API server, in Prometheus's order of
//! precedence (`kubernetes.New`):
//! 1. `kubeconfig_file`: the current context's cluster and user;
//! 2. `api_server`: the job's own `<http_config>`;
//! 3. otherwise in-cluster: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
//!    CA and bearer token from the service-account directory. The token
//!    is a `credentials_file`, re-read on every request, so rotated
//!    projected tokens are picked up without a restart.
//!
//! Kubeconfig support covers what static credentials need: server,
//! `certificate-authority(-data)`, `insecure-skip-tls-verify`, `token`,
//! `tokenFile`, `client-certificate(-data)`/`client-key(-data)` and
//! `username`/`password`, and `exec` credential plugins (see [`super::exec`]).
//! Legacy `auth-provider` plugins (removed from client-go) are refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use tributary_config::{Authorization, BasicAuth, HttpClientConfig, KubernetesSdConfig, Secret};

use super::exec::{ExecAuth, ExecConfig, ExecError};
use super::watch::Api;
use crate::refresh::join_host_port;

pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined")]
    NotInCluster,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not read own namespace name (empty file)")]
    EmptyNamespace,
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("{0}")]
    Client(#[from] tributary_http::HttpClientError),
    #[error("{0}")]
    Exec(#[from] ExecError),
}

impl ConnectError {
    /// Worth retrying: a credential plugin can fail transiently (network,
    /// SSO refresh); a broken kubeconfig or missing files cannot heal.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            ConnectError::Exec(
                ExecError::Spawn { .. } | ExecError::Timeout { .. } | ExecError::Failed { .. }
            )
        )
    }
}

/// A ready API handle plus the pod's own namespace (in-cluster only).
pub(crate) struct Connection {
    pub api: Api,
    pub own_namespace: Option<String>,
}

pub(crate) async fn connect(cfg: &KubernetesSdConfig) -> Result<Connection, ConnectError> {
    let (base, http) = if let Some(path) = &cfg.kubeconfig_file {
        let (base, mut http, exec) = from_kubeconfig(Path::new(path))?;
        let exec = match exec {
            Some(exec) => {
                // Run the plugin now: a client certificate it returns must
                // be part of the client being built.
                let cred = exec.credential().await?;
                if let Some((cert, key)) = cred.client_cert {
                    http.tls_config.cert = Some(cert);
                    http.tls_config.cert_file = None;
                    http.tls_config.key = Some(Secret::new(key));
                    http.tls_config.key_file = None;
                }
                Some(Arc::new(exec))
            }
            None => None,
        };
        let mut api = build(base, &http)?;
        api.exec = exec;
        return Ok(Connection {
            api,
            own_namespace: None,
        });
    } else if let Some(server) = &cfg.api_server {
        (server.clone(), cfg.http_client.clone())
    } else {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default();
        let dir = Path::new(SERVICE_ACCOUNT_DIR);
        let (base, http) = in_cluster(dir, &host, &port)?;
        let own_namespace = if cfg.namespaces.own_namespace {
            Some(read_own_namespace(dir)?)
        } else {
            None
        };
        return Ok(Connection {
            api: build(base, &http)?,
            own_namespace,
        });
    };
    Ok(Connection {
        api: build(base, &http)?,
        own_namespace: None,
    })
}

fn build(base: String, http: &HttpClientConfig) -> Result<Api, ConnectError> {
    let client = tributary_http::build_client(http, tributary_http::ClientOptions::default())?;
    Ok(Api {
        client,
        base: base.trim_end_matches('/').to_string(),
        exec: None,
    })
}

/// The in-cluster base URL and client settings from the service-account
/// directory `dir` and the service host/port variables.
pub(crate) fn in_cluster(
    dir: &Path,
    host: &str,
    port: &str,
) -> Result<(String, HttpClientConfig), ConnectError> {
    if host.is_empty() || port.is_empty() {
        return Err(ConnectError::NotInCluster);
    }
    let token = dir.join("token");
    // Fail early, like client-go, when there is no token to send.
    std::fs::metadata(&token).map_err(|source| ConnectError::Read {
        path: token.clone(),
        source,
    })?;
    let mut http = HttpClientConfig::default_for_scrape();
    http.authorization = Some(Authorization {
        type_: "Bearer".into(),
        credentials: None,
        credentials_file: Some(token.to_string_lossy().into_owned()),
    });
    http.tls_config.ca_file = Some(dir.join("ca.crt").to_string_lossy().into_owned());
    Ok((format!("https://{}", join_host_port(host, port)), http))
}

pub(crate) fn read_own_namespace(dir: &Path) -> Result<String, ConnectError> {
    let path = dir.join("namespace");
    let ns =
        std::fs::read_to_string(&path).map_err(|source| ConnectError::Read { path, source })?;
    if ns.is_empty() {
        return Err(ConnectError::EmptyNamespace);
    }
    Ok(ns)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KubeConfig {
    clusters: Vec<Named<Cluster>>,
    users: Vec<Named<User>>,
    contexts: Vec<Named<Context>>,
    #[serde(rename = "current-context")]
    current_context: String,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    #[serde(rename = "value")]
    value: T,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority: String,
    certificate_authority_data: String,
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct User {
    token: String,
    #[serde(rename = "tokenFile")]
    token_file: String,
    client_certificate: String,
    client_certificate_data: String,
    client_key: String,
    client_key_data: String,
    username: String,
    password: String,
    exec: Option<ExecConfig>,
    auth_provider: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Context {
    cluster: String,
    user: String,
}

/// The server and client settings of the kubeconfig's current context, and
/// its user's credential plugin if it has one.
pub(crate) fn from_kubeconfig(
    path: &Path,
) -> Result<(String, HttpClientConfig, Option<ExecAuth>), ConnectError> {
    let err = |message: String| ConnectError::Kubeconfig {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConnectError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let kc: KubeConfig = serde_saphyr::from_str(&text).map_err(|e| err(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let find = |what: &str, name: &str, names: Vec<&str>| -> Result<usize, ConnectError> {
        names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| err(format!("{what} {name:?} not found")))
    };
    let ctx_names = kc.contexts.iter().map(|c| c.name.as_str()).collect();
    let ctx = kc
        .contexts
        .get(find("context", &kc.current_context, ctx_names)?)
        .map(|c| &c.value)
        .ok_or_else(|| err("no current context".into()))?;
    let cluster = kc
        .clusters
        .get(find(
            "cluster",
            &ctx.cluster,
            kc.clusters.iter().map(|c| c.name.as_str()).collect(),
        )?)
        .map(|c| &c.value)
        .ok_or_else(|| err("no cluster".into()))?;
    let user_idx = kc.users.iter().position(|u| u.name == ctx.user);
    let user = user_idx.and_then(|i| kc.users.get(i)).map(|u| &u.value);
    if cluster.server.is_empty() {
        return Err(err("cluster has no server".into()));
    }

    let mut http = HttpClientConfig::default_for_scrape();
    let tls = &mut http.tls_config;
    tls.insecure_skip_verify = cluster.insecure_skip_tls_verify;
    tls.ca = decode_data(&cluster.certificate_authority_data).map_err(&err)?;
    tls.ca_file = resolve(dir, &cluster.certificate_authority);
    let mut exec = None;
    if let Some(u) = user {
        if u.auth_provider.is_some() {
            return Err(err(
                "auth-provider plugins are not supported (client-go removed them; use exec)".into(),
            ));
        }
        if let Some(e) = &u.exec {
            exec = Some(ExecAuth::new(e.clone(), dir)?);
        }
        tls.cert = decode_data(&u.client_certificate_data).map_err(&err)?;
        tls.cert_file = resolve(dir, &u.client_certificate);
        tls.key = decode_data(&u.client_key_data)
            .map_err(&err)?
            .map(Secret::new);
        tls.key_file = resolve(dir, &u.client_key);
        if !u.token.is_empty() || !u.token_file.is_empty() {
            http.authorization = Some(Authorization {
                type_: "Bearer".into(),
                credentials: (!u.token.is_empty()).then(|| Secret::new(u.token.clone())),
                credentials_file: resolve(dir, &u.token_file),
            });
        } else if !u.username.is_empty() {
            http.basic_auth = Some(BasicAuth {
                username: u.username.clone(),
                username_file: None,
                password: (!u.password.is_empty()).then(|| Secret::new(u.password.clone())),
                password_file: None,
            });
        }
    }
    Ok((cluster.server.clone(), http, exec))
}

fn resolve(dir: &Path, file: &str) -> Option<String> {
    if file.is_empty() {
        return None;
    }
    Some(dir.join(file).to_string_lossy().into_owned())
}

/// `*-data` fields hold base64 PEM.
fn decode_data(b64: &str) -> Result<Option<String>, String> {
    if b64.is_empty() {
        return Ok(None);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("invalid base64 data: {e}"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "certificate data is not PEM text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_cluster_uses_service_account_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            in_cluster(dir.path(), "", "443"),
            Err(ConnectError::NotInCluster)
        ));
        // No token file yet: refused like client-go.
        assert!(matches!(
            in_cluster(dir.path(), "10.0.0.1", "443"),
            Err(ConnectError::Read { .. })
        ));
        std::fs::write(dir.path().join("token"), "t0k3n\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("namespace"), "monitoring")
            .unwrap_or_else(|e| panic!("{e}"));
        let (base, http) =
            in_cluster(dir.path(), "fd00::1", "6443").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(base, "https://[fd00::1]:6443");
        let auth = http
            .authorization
            .unwrap_or_else(|| panic!("no authorization"));
        assert_eq!(auth.type_, "Bearer");
        assert_eq!(
            auth.credentials_file,
            Some(dir.path().join("token").to_string_lossy().into_owned())
        );
        assert_eq!(
            http.tls_config.ca_file,
            Some(dir.path().join("ca.crt").to_string_lossy().into_owned())
        );
        assert_eq!(
            read_own_namespace(dir.path()).unwrap_or_default(),
            "monitoring"
        );
    }

    #[test]
    fn kubeconfig_current_context_with_inline_data_and_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ca = base64::engine::general_purpose::STANDARD
            .encode("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: prod\nclusters:\n- name: dev\n  cluster: {{server: https://dev:6443}}\n- name: prod\n  cluster:\n    server: https://prod.example:6443\n    certificate-authority-data: {ca}\ncontexts:\n- name: dev\n  context: {{cluster: dev, user: dev}}\n- name: prod\n  context: {{cluster: prod, user: admin, namespace: x}}\nusers:\n- name: admin\n  user:\n    tokenFile: token.txt\n    client-certificate: certs/client.crt\n    client-key: certs/client.key\n"
        );
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let (server, http, exec) = from_kubeconfig(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(exec.is_none());
        assert_eq!(server, "https://prod.example:6443");
        assert!(http
            .tls_config
            .ca
            .as_deref()
            .is_some_and(|c| c.contains("BEGIN CERTIFICATE")));
        assert_eq!(
            http.tls_config.cert_file,
            Some(
                dir.path()
                    .join("certs/client.crt")
                    .to_string_lossy()
                    .into_owned()
            )
        );
        assert_eq!(
            http.tls_config.key_file,
            Some(
                dir.path()
                    .join("certs/client.key")
                    .to_string_lossy()
                    .into_owned()
            )
        );
        let auth = http.authorization.unwrap_or_else(|| panic!("no token"));
        assert_eq!(
            auth.credentials_file,
            Some(dir.path().join("token.txt").to_string_lossy().into_owned())
        );

        std::fs::write(&path, "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\nclusters:\n- name: k\n  cluster: {server: https://k}\nusers:\n- name: u\n  user:\n    auth-provider: {name: gcp}\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            from_kubeconfig(&path).is_err(),
            "auth-provider plugins must be refused"
        );
    }
}
