//! The effective, validated configuration handed to the rest of Tributary.
//!
//! All defaults and inheritance (global → job) are already applied, relative
//! file paths are resolved against the configuration directory, and every
//! type derives `PartialEq` so a reload can diff old and new per job and per
//! remote-write endpoint.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::relabel::RelabelConfig;
use crate::sd_consul::ConsulSdConfig;
use crate::sd_dns::DnsSdConfig;
use crate::sd_docker::DockerSdConfig;
use crate::sd_ec2::Ec2SdConfig;
use crate::sd_kubernetes::KubernetesSdConfig;
use tributary_model::{Labels, ScrapeProtocol};

/// A sensitive string. `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The actual value, for the code that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: GlobalConfig,
    pub scrape_configs: Vec<ScrapeConfig>,
    pub remote_write: Vec<RemoteWriteConfig>,
    pub storage: StorageConfig,
    pub runtime: RuntimeConfig,
    /// The main file first, then every file matched by `scrape_config_files`.
    pub source_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    /// Parsed and kept for `/api/v1/status/config`; inert in agent mode.
    pub evaluation_interval: Duration,
    pub rule_query_offset: Duration,
    /// After `$VAR` expansion; labels whose value expanded to "" are absent.
    pub external_labels: Labels,
    pub scrape_protocols: Option<Vec<ScrapeProtocol>>,
    pub body_size_limit: u64,
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub target_limit: u64,
    pub keep_dropped_targets: u64,
    pub scrape_native_histograms: bool,
    pub always_scrape_classic_histograms: bool,
    pub convert_classic_histograms_to_nhcb: bool,
    pub extra_scrape_metrics: bool,
    /// `utf8` or `legacy`.
    pub metric_name_validation_scheme: String,
    /// `allow-utf-8`, `underscores`, `dots` or `values`.
    pub metric_name_escaping_scheme: String,
    pub query_log_file: Option<String>,
    pub scrape_failure_log_file: Option<String>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            evaluation_interval: Duration::from_secs(60),
            rule_query_offset: Duration::ZERO,
            external_labels: Labels::empty(),
            scrape_protocols: None,
            body_size_limit: 0,
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            target_limit: 0,
            keep_dropped_targets: 0,
            scrape_native_histograms: false,
            always_scrape_classic_histograms: false,
            convert_classic_histograms_to_nhcb: false,
            extra_scrape_metrics: false,
            metric_name_validation_scheme: "utf8".into(),
            metric_name_escaping_scheme: "allow-utf-8".into(),
            query_log_file: None,
            scrape_failure_log_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub scrape_protocols: Vec<ScrapeProtocol>,
    pub fallback_scrape_protocol: Option<ScrapeProtocol>,
    pub metrics_path: String,
    pub scheme: String,
    pub params: Vec<(String, Vec<String>)>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub track_timestamps_staleness: bool,
    pub enable_compression: bool,
    pub body_size_limit: u64,
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub target_limit: u64,
    pub keep_dropped_targets: u64,
    pub extra_scrape_metrics: bool,
    pub scrape_native_histograms: bool,
    pub always_scrape_classic_histograms: bool,
    pub convert_classic_histograms_to_nhcb: bool,
    pub native_histogram_bucket_limit: u64,
    pub native_histogram_min_bucket_factor: f64,
    pub metric_name_validation_scheme: String,
    pub metric_name_escaping_scheme: String,
    pub scrape_failure_log_file: Option<String>,
    pub http_client: HttpClientConfig,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    pub static_configs: Vec<TargetGroup>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub http_sd_configs: Vec<HttpSdConfig>,
    pub dns_sd_configs: Vec<DnsSdConfig>,
    pub consul_sd_configs: Vec<ConsulSdConfig>,
    pub docker_sd_configs: Vec<DockerSdConfig>,
    pub ec2_sd_configs: Vec<Ec2SdConfig>,
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
}

/// One `static_configs` entry. `source` is the SD-style group id
/// (the index of the entry as a string, like Prometheus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSdConfig {
    /// Glob patterns, already resolved against the configuration directory.
    pub files: Vec<String>,
    pub refresh_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSdConfig {
    pub url: String,
    pub refresh_interval: Duration,
    pub http_client: HttpClientConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub username_file: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Defaults to `Bearer`.
    pub type_: String,
    pub credentials: Option<Secret>,
    pub credentials_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2 {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<String>,
    pub scopes: Vec<String>,
    pub token_url: String,
    pub endpoint_params: Vec<(String, String)>,
    pub tls_config: TlsConfig,
    pub proxy_url: Option<String>,
    pub no_proxy: Option<String>,
    pub proxy_from_environment: bool,
    pub proxy_connect_header: Vec<(String, Vec<Secret>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn from_name(name: &str) -> Option<TlsVersion> {
        match name {
            "TLS10" => Some(TlsVersion::Tls10),
            "TLS11" => Some(TlsVersion::Tls11),
            "TLS12" => Some(TlsVersion::Tls12),
            "TLS13" => Some(TlsVersion::Tls13),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls10 => "TLS10",
            TlsVersion::Tls11 => "TLS11",
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca: Option<String>,
    pub ca_file: Option<String>,
    pub cert: Option<String>,
    pub cert_file: Option<String>,
    pub key: Option<Secret>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    pub min_version: TlsVersion,
    pub max_version: Option<TlsVersion>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca: None,
            ca_file: None,
            cert: None,
            cert_file: None,
            key: None,
            key_file: None,
            server_name: None,
            insecure_skip_verify: false,
            min_version: TlsVersion::Tls12,
            max_version: None,
        }
    }
}

/// One `http_headers` entry: plain values, secret values and files whose
/// contents are sent (read at request time).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderValues {
    pub values: Vec<String>,
    pub secrets: Vec<Secret>,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpClientConfig {
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub oauth2: Option<OAuth2>,
    pub tls_config: TlsConfig,
    pub proxy_url: Option<String>,
    pub no_proxy: Option<String>,
    pub proxy_from_environment: bool,
    pub proxy_connect_header: Vec<(String, Vec<Secret>)>,
    pub http_headers: Vec<(String, HeaderValues)>,
    pub follow_redirects: bool,
    pub enable_http2: bool,
    /// AWS SigV4 request signing. Prometheus keeps `sigv4` on the
    /// remote-write entry (it is not part of common's `<http_config>`); it
    /// lives here so every client built from this config signs its
    /// requests. Only remote write decodes it; elsewhere it stays `None`.
    pub sigv4: Option<SigV4Config>,
}

/// `sigv4` (prometheus/sigv4 `SigV4Config`). Empty strings mean "not set":
/// region and credentials then come from the AWS environment and shared
/// files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SigV4Config {
    pub region: String,
    pub access_key: String,
    pub secret_key: Option<Secret>,
    pub profile: String,
    pub role_arn: String,
    pub external_id: String,
    pub use_fips_sts_endpoint: bool,
    /// Signing service name; empty means `aps` (Amazon Managed Prometheus).
    pub service_name: String,
}

impl HttpClientConfig {
    /// Defaults for scrapes and service discovery (`enable_http2: true`).
    pub fn default_for_scrape() -> Self {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            oauth2: None,
            tls_config: TlsConfig::default(),
            proxy_url: None,
            no_proxy: None,
            proxy_from_environment: false,
            proxy_connect_header: Vec::new(),
            http_headers: Vec::new(),
            follow_redirects: true,
            enable_http2: true,
            sigv4: None,
        }
    }

    /// Defaults for remote write (`enable_http2: false` since Prometheus 3.0).
    pub fn default_for_remote_write() -> Self {
        HttpClientConfig {
            enable_http2: false,
            ..Self::default_for_scrape()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteWriteProtoMsg {
    /// `prometheus.WriteRequest` (remote write 1.0).
    V1,
    /// `io.prometheus.write.v2.Request` (remote write 2.0).
    V2,
}

impl RemoteWriteProtoMsg {
    pub fn name(self) -> &'static str {
        match self {
            RemoteWriteProtoMsg::V1 => "prometheus.WriteRequest",
            RemoteWriteProtoMsg::V2 => "io.prometheus.write.v2.Request",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "prometheus.WriteRequest" => Some(RemoteWriteProtoMsg::V1),
            "io.prometheus.write.v2.Request" => Some(RemoteWriteProtoMsg::V2),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWriteConfig {
    pub url: String,
    /// Explicit name, or the 6-hex-digit hash of the entry.
    pub name: String,
    pub remote_timeout: Duration,
    pub headers: Vec<(String, String)>,
    pub write_relabel_configs: Vec<RelabelConfig>,
    pub send_exemplars: bool,
    pub send_native_histograms: bool,
    pub round_robin_dns: bool,
    pub protobuf_message: RemoteWriteProtoMsg,
    pub http_client: HttpClientConfig,
    pub queue_config: QueueConfig,
    pub metadata_config: MetadataConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub capacity: usize,
    pub max_shards: usize,
    pub min_shards: usize,
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_on_http_429: bool,
    pub sample_age_limit: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 10_000,
            max_shards: 50,
            min_shards: 1,
            max_samples_per_send: 2_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: false,
            sample_age_limit: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    pub send: bool,
    pub send_interval: Duration,
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            send: true,
            send_interval: Duration::from_secs(60),
            max_samples_per_send: 2_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageConfig {
    /// `storage.tsdb.out_of_order_time_window`; applied to the agent WAL
    /// once at startup.
    pub out_of_order_time_window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub gogc: i64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { gogc: 75 }
    }
}
