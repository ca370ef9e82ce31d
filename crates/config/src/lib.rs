//! `prometheus.yml` for Tributary's agent mode.
//!
//! Design:
//! * `yaml` turns the source into a tree of nodes that keep raw scalar text
//!   and 1-based positions (parser: serde-saphyr's `granit_parser`; duplicate
//!   keys, anchors, merge keys handled there).
//! * `decode` walks the tree with an error collector: each field is decoded
//!   independently, so one load reports *every* problem, each with file,
//!   line:column and the field path (`scrape_configs[1].scrape_timeout`).
//!   Unknown fields are errors, as with Prometheus's strict unmarshal.
//! * `global`, `scrape`, `http`, `remote`, `relabel` mirror Prometheus's
//!   config types, applying its defaults and inheritance and its validation
//!   messages. Agent-mode rejections (`alerting`, `rule_files`,
//!   `remote_read`) and every unsupported `<x>_sd_configs` are errors, never
//!   silently ignored. The supported SD blocks beyond file/http live in
//!   `sd_dns`, `sd_consul`, `sd_docker`, `sd_ec2` and `sd_kubernetes`.
//! * `types` holds the effective configuration the rest of Tributary uses;
//!   `emit` renders it back as YAML with secrets masked.
//!
//! Syntax errors stop parsing (there is no tree to walk); everything after
//! that is collected.

mod check;
mod decode;
mod emit;
mod error;
mod global;
mod http;
mod load;
mod relabel;
mod remote;
mod scrape;
mod sd_consul;
mod sd_dns;
mod sd_docker;
mod sd_ec2;
mod sd_kubernetes;
mod types;
mod units;
mod yaml;

use std::path::Path;

pub use check::check_config_files;
pub use error::{ConfigError, ConfigErrors, Position};
pub use load::{LoadOptions, PROTO_FIRST_SCRAPE_PROTOCOLS};
pub use relabel::{NameValidation, RelabelConfig};
pub use sd_consul::ConsulSdConfig;
pub use sd_dns::{DnsRecordType, DnsSdConfig};
pub use sd_docker::{DockerFilter, DockerSdConfig};
pub use sd_ec2::{Ec2Filter, Ec2SdConfig};
pub use sd_kubernetes::{
    KubernetesAttachMetadata, KubernetesNamespaces, KubernetesRole, KubernetesSdConfig,
    KubernetesSelector,
};
pub use types::{
    Authorization, BasicAuth, Config, FileSdConfig, GlobalConfig, HeaderValues, HttpClientConfig,
    HttpSdConfig, MetadataConfig, OAuth2, QueueConfig, RemoteWriteConfig, RemoteWriteProtoMsg,
    RuntimeConfig, ScrapeConfig, Secret, SigV4Config, StorageConfig, TargetGroup, TlsConfig,
    TlsVersion,
};
pub use units::{format_duration, format_size, parse_duration, parse_size, UnitError};

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads and validates a configuration file. Relative paths inside it
/// (credential files, `scrape_config_files`, file SD globs) are resolved
/// against the file's directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    load::load_file_with_env(path, &process_env)
}

/// Like [`load_file`], with defaults changed by feature flags.
pub fn load_file_with_options(path: &Path, options: &LoadOptions) -> Result<Config, ConfigErrors> {
    load::load_file_with_options(path, &process_env, options)
}

/// Loads a configuration from text. `file_name` is used in error messages
/// and `base_dir` resolves relative paths.
pub fn load_str(yaml: &str, file_name: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    load::load_with_env(yaml, file_name, base_dir, &process_env)
}

/// Like [`load_str`] with an explicit environment for `external_labels`
/// expansion (tests, or callers that snapshot the environment).
pub fn load_str_with_env(
    yaml: &str,
    file_name: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    load::load_with_env(yaml, file_name, base_dir, env)
}

impl Config {
    /// The effective configuration as YAML for `/api/v1/status/config`;
    /// every secret is written as `<secret>`.
    pub fn to_redacted_yaml(&self) -> String {
        emit::render(&emit::config_yaml(self))
    }

    /// The scrape config of `job_name`, if any.
    pub fn scrape_config(&self, job_name: &str) -> Option<&ScrapeConfig> {
        self.scrape_configs.iter().find(|s| s.job_name == job_name)
    }
}
