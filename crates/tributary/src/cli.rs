//! Command-line flags, flag for flag with `prometheus --agent` (3.x).
//!
//! Prometheus uses kingpin: `--flag=value` and `--flag value`, booleans with
//! a `--no-` negation. Server-only flags are recognised so they can be
//! rejected the way Prometheus rejects them in agent mode (exit code 3).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tributary",
    version,
    about = "Tributary: scrapes targets, keeps samples in a WAL and forwards them with remote write — a drop-in replacement for Prometheus in agent mode.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub agent: AgentFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate files, as `promtool check` does.
    #[command(subcommand)]
    Check(CheckCommand),
    /// Receive remote write on an address and print every sample that arrives
    /// (a sink for trying Tributary out and for debugging pipelines).
    Receive(ReceiveArgs),
}

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Check that configuration files are valid.
    Config {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Inspect a WAL (storage directory or its `wal` folder): segments,
    /// records, series, per-endpoint backlog and damage; `--repair` cuts the
    /// damage out. Stop the agent first.
    Wal {
        dir: PathBuf,
        #[arg(long)]
        repair: bool,
    },
    /// Check an exposition read from standard input.
    Metrics {
        /// prometheus | openmetrics | protobuf (default: guessed from the input).
        #[arg(long)]
        format: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Address to listen on (remote write endpoint is POST /api/v1/write).
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9201")]
    pub listen: String,
    /// Print at most this many samples per request (0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_per_request: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tributary_config::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct AgentFlags {
    /// Prometheus configuration file path.
    #[arg(long = "config.file", default_value = "prometheus.yml")]
    pub config_file: PathBuf,
    /// Reload the configuration when the file's checksum changes.
    #[arg(long = "config.auto-reload", action = ArgAction::SetTrue, overrides_with = "no_config_auto_reload")]
    pub config_auto_reload: bool,
    #[arg(long = "no-config.auto-reload", hide = true, action = ArgAction::SetTrue)]
    pub no_config_auto_reload: bool,
    /// How often to check the configuration file for changes.
    #[arg(long = "config.auto-reload-interval", default_value = "30s", value_parser = parse_duration)]
    pub config_auto_reload_interval: Duration,

    /// Address to listen on for UI, API, and telemetry (repeatable; the first one is used).
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    pub web_listen_address: Vec<String>,
    /// Path to a configuration file that can enable TLS or authentication (exporter-toolkit format).
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,
    #[arg(long = "web.read-timeout", default_value = "5m", value_parser = parse_duration)]
    pub web_read_timeout: Duration,
    #[arg(long = "web.max-connections", default_value_t = 512)]
    pub web_max_connections: u32,
    /// The URL under which Tributary is externally reachable.
    #[arg(long = "web.external-url")]
    pub web_external_url: Option<String>,
    /// Prefix for the internal routes of web endpoints.
    #[arg(long = "web.route-prefix")]
    pub web_route_prefix: Option<String>,
    /// Enable shutdown and reload via HTTP request.
    #[arg(long = "web.enable-lifecycle", action = ArgAction::SetTrue, overrides_with = "no_web_enable_lifecycle")]
    pub web_enable_lifecycle: bool,
    #[arg(long = "no-web.enable-lifecycle", hide = true, action = ArgAction::SetTrue)]
    pub no_web_enable_lifecycle: bool,
    #[arg(long = "web.enable-admin-api", action = ArgAction::SetTrue)]
    pub web_enable_admin_api: bool,
    #[arg(long = "web.enable-remote-write-receiver", action = ArgAction::SetTrue)]
    pub web_enable_remote_write_receiver: bool,
    #[arg(
        long = "web.page-title",
        default_value = "Prometheus Time Series Collection and Processing Server"
    )]
    pub web_page_title: String,
    #[arg(long = "web.cors.origin", default_value = ".*")]
    pub web_cors_origin: String,
    #[arg(
        long = "web.console.templates",
        default_value = "consoles",
        hide = true
    )]
    pub web_console_templates: String,
    #[arg(
        long = "web.console.libraries",
        default_value = "console_libraries",
        hide = true
    )]
    pub web_console_libraries: String,

    /// Base path for the agent's storage (the WAL lives in <path>/wal).
    #[arg(long = "storage.agent.path", default_value = "data-agent/")]
    pub storage_agent_path: PathBuf,
    /// Compress the agent WAL (snappy).
    #[arg(long = "storage.agent.wal-compression", action = ArgAction::SetTrue, default_value_t = true, overrides_with = "no_storage_agent_wal_compression")]
    pub storage_agent_wal_compression: bool,
    #[arg(long = "no-storage.agent.wal-compression", hide = true, action = ArgAction::SetTrue)]
    pub no_storage_agent_wal_compression: bool,
    #[arg(
        long = "storage.agent.wal-compression-type",
        default_value = "snappy",
        hide = true
    )]
    pub storage_agent_wal_compression_type: String,
    /// WAL segment size in bytes (0 = 128MiB); 10MiB..256MiB.
    #[arg(
        long = "storage.agent.wal-segment-size",
        default_value = "0",
        hide = true
    )]
    pub storage_agent_wal_segment_size: String,
    #[arg(long = "storage.agent.wal-truncate-frequency", default_value = "0s", hide = true, value_parser = parse_duration)]
    pub storage_agent_wal_truncate_frequency: Duration,
    /// Minimum age samples may be before being considered for deletion when the WAL is truncated.
    #[arg(long = "storage.agent.retention.min-time", default_value = "5m", value_parser = parse_duration)]
    pub storage_agent_retention_min_time: Duration,
    /// Maximum age samples may be before being forcibly deleted when the WAL is truncated.
    #[arg(long = "storage.agent.retention.max-time", default_value = "4h", value_parser = parse_duration)]
    pub storage_agent_retention_max_time: Duration,
    /// Tributary: cap on the WAL's size on disk (e.g. 2GB; 0 = no cap). The oldest data is dropped, and counted, beyond it.
    #[arg(long = "storage.agent.retention.max-size", default_value = "0")]
    pub storage_agent_retention_max_size: String,
    /// Tributary: cap on each remote-write endpoint's unsent backlog (e.g. 1GB; 0 = none). An endpoint over it skips its oldest data (counted); the others are unaffected.
    #[arg(
        long = "storage.agent.retention.max-size-per-endpoint",
        default_value = "0"
    )]
    pub storage_agent_retention_max_size_per_endpoint: String,
    /// Tributary: per-endpoint override of the backlog cap, as NAME=SIZE with the remote_write `name` (repeatable).
    #[arg(long = "storage.agent.retention.endpoint-max-size")]
    pub storage_agent_retention_endpoint_max_size: Vec<String>,
    /// Tributary: memory for commits while the disk is full (written out when space returns).
    #[arg(long = "storage.agent.wal-write-buffer-size", default_value = "64MiB")]
    pub storage_agent_wal_write_buffer_size: String,
    /// Do not create a lockfile in the data directory.
    #[arg(long = "storage.agent.no-lockfile", action = ArgAction::SetTrue)]
    pub storage_agent_no_lockfile: bool,

    /// How long to wait flushing samples on shutdown or config reload.
    #[arg(long = "storage.remote.flush-deadline", default_value = "1m", value_parser = parse_duration)]
    pub storage_remote_flush_deadline: Duration,

    #[arg(long = "scrape.adjust-timestamps", default_value_t = true, action = ArgAction::Set, hide = true)]
    pub scrape_adjust_timestamps: bool,
    #[arg(long = "scrape.timestamp-tolerance", default_value = "2ms", hide = true, value_parser = parse_duration)]
    pub scrape_timestamp_tolerance: Duration,
    #[arg(long = "scrape.discovery-reload-interval", default_value = "5s", hide = true, value_parser = parse_duration)]
    pub scrape_discovery_reload_interval: Duration,

    /// Accepted for compatibility: Tributary always runs in agent mode.
    #[arg(long = "agent", action = ArgAction::SetTrue)]
    pub agent: bool,
    /// Comma-separated feature names (`agent` is accepted and implied).
    #[arg(long = "enable-feature", value_delimiter = ',')]
    pub enable_feature: Vec<String>,

    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info", value_parser = ["debug", "info", "warn", "error"])]
    pub log_level: String,
    /// Output format of log messages: logfmt, json.
    #[arg(long = "log.format", default_value = "logfmt", value_parser = ["logfmt", "json"])]
    pub log_format: String,

    #[arg(long = "auto-gomaxprocs", hide = true, action = ArgAction::SetTrue)]
    pub auto_gomaxprocs: bool,
    #[arg(long = "auto-gomemlimit", hide = true, action = ArgAction::SetTrue)]
    pub auto_gomemlimit: bool,
}

/// Flag-name prefixes that belong to Prometheus's server mode.
const SERVER_ONLY_PREFIXES: &[&str] = &[
    "--storage.tsdb.",
    "--rules.",
    "--query.",
    "--alertmanager.",
    "--storage.remote.read-",
    "--web.search.max-limit",
    "--no-storage.tsdb.",
    "--no-rules.",
    "--no-query.",
];

/// Server-only flags present on the command line, as Prometheus lists them.
pub fn server_only_flags(args: &[String]) -> Vec<String> {
    args.iter()
        .skip(1)
        .take_while(|a| a.as_str() != "--")
        .filter(|a| SERVER_ONLY_PREFIXES.iter().any(|p| a.starts_with(p)))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect()
}

impl AgentFlags {
    pub fn lifecycle_enabled(&self) -> bool {
        self.web_enable_lifecycle && !self.no_web_enable_lifecycle
    }

    pub fn wal_compression(&self) -> bool {
        self.storage_agent_wal_compression && !self.no_storage_agent_wal_compression
    }

    pub fn auto_reload(&self) -> bool {
        (self.config_auto_reload && !self.no_config_auto_reload)
            || self
                .enable_feature
                .iter()
                .any(|f| f == "auto-reload-config")
    }

    /// `--enable-feature=created-timestamp-zero-ingestion`.
    pub fn created_timestamp_zero_ingestion(&self) -> bool {
        self.enable_feature
            .iter()
            .any(|f| f == "created-timestamp-zero-ingestion")
    }

    /// The flags and their values, for `/api/v1/status/flags`.
    pub fn as_pairs(&self) -> Vec<(String, String)> {
        let d = |d: Duration| tributary_config::format_duration(d);
        vec![
            ("agent".into(), "true".into()),
            ("config.file".into(), self.config_file.display().to_string()),
            ("config.auto-reload".into(), self.auto_reload().to_string()),
            (
                "config.auto-reload-interval".into(),
                d(self.config_auto_reload_interval),
            ),
            ("enable-feature".into(), self.enable_feature.join(",")),
            ("log.format".into(), self.log_format.clone()),
            ("log.level".into(), self.log_level.clone()),
            (
                "scrape.adjust-timestamps".into(),
                self.scrape_adjust_timestamps.to_string(),
            ),
            (
                "scrape.discovery-reload-interval".into(),
                d(self.scrape_discovery_reload_interval),
            ),
            (
                "scrape.timestamp-tolerance".into(),
                d(self.scrape_timestamp_tolerance),
            ),
            (
                "storage.agent.no-lockfile".into(),
                self.storage_agent_no_lockfile.to_string(),
            ),
            (
                "storage.agent.path".into(),
                self.storage_agent_path.display().to_string(),
            ),
            (
                "storage.agent.retention.max-time".into(),
                d(self.storage_agent_retention_max_time),
            ),
            (
                "storage.agent.retention.min-time".into(),
                d(self.storage_agent_retention_min_time),
            ),
            (
                "storage.agent.retention.max-size".into(),
                self.storage_agent_retention_max_size.clone(),
            ),
            (
                "storage.agent.wal-compression".into(),
                self.wal_compression().to_string(),
            ),
            (
                "storage.remote.flush-deadline".into(),
                d(self.storage_remote_flush_deadline),
            ),
            (
                "web.config.file".into(),
                self.web_config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("web.cors.origin".into(), self.web_cors_origin.clone()),
            (
                "web.enable-lifecycle".into(),
                self.lifecycle_enabled().to_string(),
            ),
            (
                "web.enable-remote-write-receiver".into(),
                self.web_enable_remote_write_receiver.to_string(),
            ),
            (
                "web.external-url".into(),
                self.web_external_url.clone().unwrap_or_default(),
            ),
            (
                "web.listen-address".into(),
                self.web_listen_address.join(","),
            ),
            (
                "web.max-connections".into(),
                self.web_max_connections.to_string(),
            ),
            ("web.page-title".into(), self.web_page_title.clone()),
            ("web.read-timeout".into(), d(self.web_read_timeout)),
            (
                "web.route-prefix".into(),
                self.web_route_prefix.clone().unwrap_or_else(|| "/".into()),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detects_server_only_flags() {
        let a = args(&[
            "tributary",
            "--storage.tsdb.path=x",
            "--rules.alert.for-grace-period",
            "1m",
            "--config.file=p.yml",
        ]);
        assert_eq!(
            server_only_flags(&a),
            vec!["--storage.tsdb.path", "--rules.alert.for-grace-period"]
        );
        assert!(server_only_flags(&args(&["tributary", "--config.file=p.yml"])).is_empty());
    }

    #[test]
    fn defaults_match_prometheus_agent() {
        let cli = Cli::try_parse_from(["tributary"]).unwrap();
        let f = cli.agent;
        assert_eq!(f.config_file, PathBuf::from("prometheus.yml"));
        assert_eq!(f.storage_agent_path, PathBuf::from("data-agent/"));
        assert_eq!(f.web_listen_address, vec!["0.0.0.0:9090".to_string()]);
        assert!(f.wal_compression());
        assert!(!f.lifecycle_enabled());
        assert_eq!(f.storage_agent_retention_min_time, Duration::from_secs(300));
        assert_eq!(
            f.storage_agent_retention_max_time,
            Duration::from_secs(4 * 3600)
        );
        assert_eq!(f.storage_remote_flush_deadline, Duration::from_secs(60));
        assert_eq!(f.web_read_timeout, tributary_web::DEFAULT_READ_TIMEOUT);
    }

    #[test]
    fn accepts_agent_switches_and_negations() {
        let cli = Cli::try_parse_from([
            "tributary",
            "--agent",
            "--enable-feature=agent,extra-scrape-metrics",
            "--no-storage.agent.wal-compression",
            "--web.enable-lifecycle",
        ])
        .unwrap();
        assert!(!cli.agent.wal_compression());
        assert!(cli.agent.lifecycle_enabled());
        assert_eq!(
            cli.agent.enable_feature,
            vec!["agent", "extra-scrape-metrics"]
        );
    }

    #[test]
    fn check_config_subcommand() {
        let cli = Cli::try_parse_from(["tributary", "check", "config", "a.yml", "b.yml"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Check(CheckCommand::Config { ref files })) if files.len() == 2)
        );
    }
}
