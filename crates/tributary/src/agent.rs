//! The agent's lifecycle: load the config, open the WAL, start remote
//! write, discovery, scraping and the web server, then serve reloads
//! (SIGHUP, `/-/reload`, auto-reload) until SIGTERM/SIGINT/`/-/quit`, and
//! shut down in the order that loses nothing: scraping stops first, remote
//! write flushes within the deadline, the WAL is closed last.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tributary_config::{Config, LoadOptions};
use tributary_discovery::{DiscoveryManager, DiscoveryMetrics};
use tributary_remote::RemoteStorage;
use tributary_scrape::{PoolSnapshot, ScrapeManager, ScrapeMetrics};
use tributary_wal::{AgentStorage, WalOptions};
use tributary_web::{
    ReloadRequest, RemoteEndpointStatus, RemoteWriteStatus, StatusSource, WalStatus, WebOptions,
    WebState,
};

use crate::cli::AgentFlags;
use crate::limits::FdLimits;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// glibc's own starting value for both its mmap and trim thresholds, kept
/// instead of letting them rise to the largest block freed (up to 32 MiB):
/// see `tributary_alloc`. Scrape bodies are pooled and remote-write
/// requests stay below it, so few blocks are mapped per use (at 400k
/// series `strace -c` counted 47 mmap/munmap pairs in 20 s).
const MALLOC_THRESHOLD: usize = 128 * 1024;

/// How often the free pages inside malloc's arenas go back to the kernel.
/// Each scrape interval's short-lived buffers free pages again. At 400k
/// series this and the thresholds saved 6.4 MiB for 1.7–3.7 % more CPU
/// (docs/performance-history.md).
const MALLOC_TRIM_EVERY: Duration = Duration::from_secs(10);

/// Hands the allocator's free pages back every [`MALLOC_TRIM_EVERY`] until
/// shutdown (off the runtime's workers: a trim takes each arena's lock).
async fn trim_allocator(shutdown: CancellationToken) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + MALLOC_TRIM_EVERY,
        MALLOC_TRIM_EVERY,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let _ = tokio::task::spawn_blocking(tributary_alloc::trim).await;
    }
}

/// What remote-write receivers see as our User-Agent. Receivers key
/// behaviour off the `Prometheus/` prefix, so Tributary keeps it.
fn user_agent() -> String {
    format!("Prometheus/3.0.0 Tributary/{VERSION}")
}

pub fn main(flags: AgentFlags) -> ExitCode {
    crate::logging::init(&flags.log_level, &flags.log_format);
    // Before the runtime's threads start allocating: the settings are
    // process-wide and govern the blocks allocated after them.
    if !tributary_alloc::tuned_by_environment() {
        tributary_alloc::pin_thresholds(MALLOC_THRESHOLD, MALLOC_THRESHOLD);
    }
    let fd_limits = crate::limits::raise_open_files();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2),
        )
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(err = %e, "Failed to start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(flags, fd_limits)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(err = format!("{e:#}"), "Fatal error");
            ExitCode::FAILURE
        }
    }
}

/// Gauges describing the last configuration reload.
#[derive(Clone, Default)]
struct ReloadMetrics {
    success: Gauge,
    success_ts: Gauge<f64, std::sync::atomic::AtomicU64>,
}

struct Status {
    scrape: Arc<Mutex<ScrapeManager>>,
    remote: Arc<tokio::sync::Mutex<RemoteStorage>>,
    wal: Arc<AgentStorage>,
    config: Mutex<Arc<Config>>,
    reload: Mutex<(bool, Option<SystemTime>)>,
    byte_cap: Option<u64>,
}

impl StatusSource for Status {
    fn scrape_pools(&self) -> Vec<PoolSnapshot> {
        self.scrape.lock().snapshot()
    }

    fn config_yaml(&self) -> String {
        self.config.lock().to_redacted_yaml()
    }

    /// The typed status below, as JSON: one rendering, not two.
    fn remote_status(&self) -> serde_json::Value {
        serde_json::to_value(self.remote_write_status()).unwrap_or_default()
    }

    fn reload_status(&self) -> (bool, Option<SystemTime>) {
        *self.reload.lock()
    }

    fn config(&self) -> Option<Arc<Config>> {
        Some(self.config.lock().clone())
    }

    fn target_metadata(&self) -> Option<Vec<tributary_web::TargetMetadata>> {
        Some(self.scrape.lock().target_metadata())
    }

    fn remote_write_status(&self) -> Option<RemoteWriteStatus> {
        let cfg = self.config.lock().clone();
        let queues = self.remote.try_lock().ok()?.status();
        let wal = self.wal.stats();
        let endpoints = queues
            .into_iter()
            .map(|q| RemoteEndpointStatus {
                max_shards: cfg
                    .remote_write
                    .iter()
                    .find(|r| r.name == q.name)
                    .map(|r| r.queue_config.max_shards)
                    .unwrap_or(0),
                wal_backlog_bytes: wal
                    .consumers
                    .iter()
                    .find(|c| c.name == q.name)
                    .map(|c| c.backlog_bytes),
                name: q.name,
                url: q.url,
                shards: q.shards,
                desired_shards: q.desired_shards,
                pending_samples: q.pending_samples,
                highest_sent_timestamp_ms: q.highest_sent_timestamp_ms,
                highest_wal_timestamp_ms: q.highest_read_timestamp_ms,
                samples_sent_total: q.samples_sent_total,
                samples_failed_total: q.samples_failed_total,
                samples_retried_total: q.samples_retried_total,
                last_send: q.last_send,
                last_error: q.last_error,
            })
            .collect();
        Some(RemoteWriteStatus {
            endpoints,
            wal: WalStatus {
                segments: wal.segments,
                first_segment: wal.first_segment,
                current_segment: wal.current_segment,
                bytes: wal.bytes,
                byte_cap: self.byte_cap,
                active_series: wal.active_series,
            },
        })
    }
}

fn load_config(path: &Path, options: &LoadOptions) -> anyhow::Result<Config> {
    tributary_config::load_file_with_options(path, options).map_err(|e| anyhow::anyhow!("{e}"))
}

fn wal_options(flags: &AgentFlags) -> anyhow::Result<WalOptions> {
    let mut o = WalOptions {
        compression: flags.wal_compression(),
        min_time: flags.storage_agent_retention_min_time,
        max_time: flags.storage_agent_retention_max_time,
        ..WalOptions::default()
    };
    if !flags.storage_agent_wal_truncate_frequency.is_zero() {
        o.truncate_frequency = flags.storage_agent_wal_truncate_frequency;
    }
    let segment = tributary_config::parse_size(&flags.storage_agent_wal_segment_size)
        .map_err(|e| anyhow::anyhow!("invalid --storage.agent.wal-segment-size: {e}"))?;
    if segment != 0 {
        if !(10 << 20..=256 << 20).contains(&segment) {
            anyhow::bail!(
                "flag 'storage.agent.wal-segment-size' must be set between 10MB and 256MB"
            );
        }
        o.segment_size = segment;
    }
    let cap = tributary_config::parse_size(&flags.storage_agent_retention_max_size)
        .map_err(|e| anyhow::anyhow!("invalid --storage.agent.retention.max-size: {e}"))?;
    o.max_bytes = (cap > 0).then_some(cap);
    o.no_lockfile = flags.storage_agent_no_lockfile;
    let size = |flag: &str, v: &str| {
        tributary_config::parse_size(v).map_err(|e| anyhow::anyhow!("invalid --{flag}: {e}"))
    };
    let per_endpoint = size(
        "storage.agent.retention.max-size-per-endpoint",
        &flags.storage_agent_retention_max_size_per_endpoint,
    )?;
    o.max_bytes_per_consumer = (per_endpoint > 0).then_some(per_endpoint);
    for spec in &flags.storage_agent_retention_endpoint_max_size {
        let Some((name, v)) = spec.split_once('=') else {
            anyhow::bail!(
                "invalid --storage.agent.retention.endpoint-max-size={spec:?}: want NAME=SIZE"
            );
        };
        o.consumer_max_bytes.insert(
            name.to_string(),
            size("storage.agent.retention.endpoint-max-size", v)?,
        );
    }
    o.write_buffer_bytes = size(
        "storage.agent.wal-write-buffer-size",
        &flags.storage_agent_wal_write_buffer_size,
    )? as usize;
    // Prometheus: min > max → max = min; max < truncate frequency → raised.
    if o.min_time > o.max_time {
        o.max_time = o.min_time;
    }
    if o.max_time < o.truncate_frequency {
        o.max_time = o.truncate_frequency;
    }
    Ok(o)
}

/// Applies a configuration to every component; reports every failure.
async fn apply(
    cfg: &Arc<Config>,
    scrape: &Arc<Mutex<ScrapeManager>>,
    discovery: &Mutex<DiscoveryManager>,
    remote: &tokio::sync::Mutex<RemoteStorage>,
) -> Result<(), String> {
    let mut errors = Vec::new();
    if let Err(es) = remote
        .lock()
        .await
        .apply_config(&cfg.remote_write, &cfg.global.external_labels)
        .await
    {
        errors.extend(es.into_iter().map(|e| e.to_string()));
    }
    if let Err(es) = scrape.lock().apply_config(cfg) {
        errors.extend(es.into_iter().map(|e| e.to_string()));
    }
    discovery.lock().apply_config(cfg);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

async fn run(flags: AgentFlags, fd_limits: FdLimits) -> anyhow::Result<ExitCode> {
    tracing::info!(
        mode = "agent",
        version = VERSION,
        "Starting Tributary (Prometheus Agent mode)"
    );
    tracing::info!(fd_limits = %fd_limits, "operational information");
    let ct_zero = flags.created_timestamp_zero_ingestion();
    let load_options = LoadOptions {
        proto_first_scrape_protocols: ct_zero,
    };
    if ct_zero {
        tracing::info!(
            "Experimental created timestamp zero ingestion enabled. OpenMetrics 1.0 parsing will parse <metric>_created metrics as created timestamps instead of normal samples. Changed default scrape_protocols to prefer PrometheusProto format."
        );
    }
    let config = match load_config(&flags.config_file, &load_options) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(file = %flags.config_file.display(), err = format!("{e:#}"), "Error loading config (--config.file={})", flags.config_file.display());
            return Ok(ExitCode::from(2));
        }
    };
    let shutdown = CancellationToken::new();
    let mut registry = Registry::default();
    // A gauge family with one child (prometheus-client's `Info` would add
    // an `_info` suffix, and dashboards query `prometheus_build_info`).
    let build_info =
        prometheus_client::metrics::family::Family::<Vec<(&'static str, String)>, Gauge>::default();
    build_info
        .get_or_create(&vec![
            ("branch", String::new()),
            ("goarch", std::env::consts::ARCH.to_string()),
            ("goos", std::env::consts::OS.to_string()),
            ("goversion", String::new()),
            ("revision", String::new()),
            ("tags", "tributary".to_string()),
            ("version", VERSION.to_string()),
        ])
        .set(1);
    registry.register(
        "prometheus_build_info",
        "A metric with a constant '1' value labeled by version, revision, branch, goversion from which prometheus was built, and the goos and goarch for the build",
        build_info,
    );
    let reload_metrics = ReloadMetrics::default();
    registry.register(
        "prometheus_config_last_reload_successful",
        "Whether the last configuration reload attempt was successful",
        reload_metrics.success.clone(),
    );
    registry.register(
        "prometheus_config_last_reload_success_timestamp_seconds",
        "Timestamp of the last successful configuration reload",
        reload_metrics.success_ts.clone(),
    );
    let ready_gauge = Gauge::<i64>::default();
    registry.register("prometheus_ready", "Whether Prometheus startup was fully completed and the server is ready for normal operation", ready_gauge.clone());

    let wal_opts = wal_options(&flags)?;
    let byte_cap = wal_opts.max_bytes;
    let security = match &flags.web_config_file {
        Some(path) => tributary_web::load_web_config(path)
            .with_context(|| format!("loading --web.config.file={}", path.display()))?,
        None => Default::default(),
    };
    let wal = AgentStorage::open(&flags.storage_agent_path, wal_opts, &mut registry)
        .with_context(|| format!("opening storage at {}", flags.storage_agent_path.display()))?;
    let maintenance = tokio::spawn(wal.clone().run_maintenance(shutdown.child_token()));
    tokio::spawn(trim_allocator(shutdown.child_token()));

    let remote = Arc::new(tokio::sync::Mutex::new(RemoteStorage::new(
        wal.clone(),
        &mut registry,
        user_agent(),
    )));
    let scrape_metrics = ScrapeMetrics::new(&mut registry);
    let scrape = Arc::new(Mutex::new(ScrapeManager::new(
        wal.clone() as Arc<dyn tributary_model::Storage>,
        user_agent(),
        flags.scrape_adjust_timestamps,
        flags.scrape_timestamp_tolerance,
        scrape_metrics,
        shutdown.child_token(),
    )));
    scrape.lock().set_created_timestamp_zero_ingestion(ct_zero);
    let (discovery, mut targets_rx) = DiscoveryManager::start(
        flags.scrape_discovery_reload_interval,
        DiscoveryMetrics::new(&mut registry),
        shutdown.child_token(),
    );
    let discovery = Mutex::new(discovery);

    let status = Arc::new(Status {
        scrape: scrape.clone(),
        remote: remote.clone(),
        wal: wal.clone(),
        config: Mutex::new(config.clone()),
        reload: Mutex::new((false, None)),
        byte_cap,
    });
    let record_reload = |ok: bool| {
        reload_metrics.success.set(i64::from(ok));
        let now = SystemTime::now();
        if ok {
            reload_metrics.success_ts.set(
                now.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            );
        }
        let mut r = status.reload.lock();
        r.0 = ok;
        if ok {
            r.1 = Some(now);
        }
    };

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let quit = CancellationToken::new();
    let web = Arc::new(WebState {
        options: WebOptions {
            listen: flags
                .web_listen_address
                .first()
                .cloned()
                .unwrap_or_else(|| "0.0.0.0:9090".into()),
            route_prefix: route_prefix(&flags),
            lifecycle: flags.lifecycle_enabled(),
            flags: flags.as_pairs(),
            version: VERSION.to_string(),
            revision: String::new(),
            storage_path: flags.storage_agent_path.display().to_string(),
            read_timeout: flags.web_read_timeout,
        },
        ready: Default::default(),
        stopping: Default::default(),
        registry: Arc::new(registry),
        status: status.clone(),
        reload: reload_tx,
        quit: quit.clone(),
        started: SystemTime::now(),
    });
    let web_shutdown = CancellationToken::new();
    let listener_check = tokio::net::TcpListener::bind(&web.options.listen).await;
    drop(listener_check.with_context(|| format!("listening on {}", web.options.listen))?);
    let web_task = tokio::spawn(tributary_web::serve_with_security(
        web.clone(),
        security,
        web_shutdown.clone(),
    ));

    // First configuration.
    let applied = apply(&config, &scrape, &discovery, &remote).await;
    if let Err(e) = &applied {
        tracing::error!(err = %e, "Error applying configuration");
    }
    record_reload(applied.is_ok());
    tracing::info!(filename = %flags.config_file.display(), "Completed loading of configuration file");
    web.set_ready(true);
    ready_gauge.set(1);
    tracing::info!("Server is ready to receive web requests.");

    // Targets from discovery flow to the scrape manager.
    let sync_scrape = scrape.clone();
    let sync_shutdown = shutdown.clone();
    let sync_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = sync_shutdown.cancelled() => return,
                changed = targets_rx.changed() => {
                    if changed.is_err() { return; }
                    let t = targets_rx.borrow_and_update().clone();
                    sync_scrape.lock().sync(t);
                }
            }
        }
    });

    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut auto_reload = tokio::time::interval(
        flags
            .config_auto_reload_interval
            .max(Duration::from_secs(1)),
    );
    let mut last_checksum = file_checksum(&flags.config_file);
    let current = Mutex::new(config);

    let do_reload = |reason: &'static str| {
        let path = flags.config_file.clone();
        let scrape = scrape.clone();
        let remote = remote.clone();
        let status = status.clone();
        let discovery = &discovery;
        let current = &current;
        let record_reload = &record_reload;
        async move {
            tracing::info!(filename = %path.display(), reason, "Loading configuration file");
            let cfg = match load_config(&path, &load_options) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    tracing::error!(filename = %path.display(), err = format!("{e:#}"), "Error reloading config, keeping the old configuration");
                    record_reload(false);
                    return Err(format!("{e:#}"));
                }
            };
            let r = apply(&cfg, &scrape, discovery, &remote).await;
            *status.config.lock() = cfg.clone();
            *current.lock() = cfg;
            record_reload(r.is_ok());
            match &r {
                Ok(()) => {
                    tracing::info!(filename = %path.display(), "Completed loading of configuration file")
                }
                Err(e) => tracing::error!(err = %e, "Error applying configuration"),
            }
            r
        }
    };

    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::warn!("Received an OS signal, exiting gracefully..."); break; }
            _ = sigterm.recv() => { tracing::warn!("Received an OS signal, exiting gracefully..."); break; }
            _ = quit.cancelled() => { tracing::warn!("Received termination request via web service, exiting gracefully..."); break; }
            _ = sighup.recv() => { let _ = do_reload("SIGHUP").await; }
            req = reload_rx.recv() => {
                if let Some(req) = req {
                    let _ = req.send(do_reload("web").await);
                }
            }
            _ = auto_reload.tick(), if flags.auto_reload() => {
                let sum = file_checksum(&flags.config_file);
                if sum != last_checksum {
                    last_checksum = sum;
                    let _ = do_reload("auto-reload").await;
                }
            }
        }
    }

    // Shutdown: stop producing, flush, then close the WAL.
    web.stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    web.set_ready(false);
    ready_gauge.set(0);
    shutdown.cancel();
    // Scrapes in flight finish and commit (bounded by the longest scrape
    // timeout Prometheus allows by default, 10 s) before the queues flush.
    let drained = scrape.lock().stop_and_drain(Duration::from_secs(10));
    drained.await;
    let _ = sync_task.await;
    tracing::info!("Scrape manager stopped");
    remote
        .lock()
        .await
        .stop(flags.storage_remote_flush_deadline)
        .await;
    tracing::info!("Remote storage stopped");
    let _ = maintenance.await;
    if let Err(e) = wal.close() {
        tracing::error!(err = %e, "Error closing the WAL");
    }
    web_shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), web_task).await;
    tracing::info!("See you next time!");
    Ok(ExitCode::SUCCESS)
}

fn route_prefix(flags: &AgentFlags) -> String {
    let from_url = flags.web_external_url.as_deref().and_then(url_path);
    let p = flags
        .web_route_prefix
        .clone()
        .or(from_url)
        .unwrap_or_else(|| "/".into());
    if p.starts_with('/') {
        p
    } else {
        format!("/{p}")
    }
}

fn url_path(u: &str) -> Option<String> {
    let after_scheme = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
    after_scheme
        .find('/')
        .map(|i| after_scheme[i..].to_string())
}

fn file_checksum(path: &Path) -> u64 {
    std::fs::read(path)
        .map(|b| xxhash_rust::xxh3::xxh3_64(&b))
        .unwrap_or(0)
}
