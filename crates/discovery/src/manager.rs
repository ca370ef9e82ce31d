//! The discovery manager: one task per SD provider per job, merged into one
//! snapshot of target groups per job and sent to the scrape manager at most
//! once per `--scrape.discovery-reload-interval` (the first one at once).
//!
//! On reload, providers whose job and configuration are unchanged keep
//! running (and keep their targets); the others are cancelled and replaced.
//! A provider that fails keeps its last good target groups and is reported
//! through [`ProviderStatus`] and `prometheus_sd_*` metrics.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tributary_config::{
    Config, ConsulSdConfig, DnsSdConfig, DockerSdConfig, Ec2SdConfig, FileSdConfig, HttpSdConfig,
    KubernetesSdConfig,
};

#[cfg(feature = "sd-consul")]
use crate::consul;
#[cfg(feature = "sd-docker")]
use crate::docker;
#[cfg(feature = "sd-ec2")]
use crate::ec2;
use crate::group::TargetGroup;
#[cfg(feature = "sd-kubernetes")]
use crate::kubernetes;
use crate::metrics::DiscoveryMetrics;
use crate::refresh::ProviderCtx;
use crate::{dns, file, http};

/// Every job's target groups, as the scrape manager consumes them.
pub type DiscoveredTargets = Arc<BTreeMap<String, Vec<TargetGroup>>>;

/// A provider's configuration; equality decides whether a reload restarts it.
// One per configured SD block, compared on reload: boxing the larger
// variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
enum ProviderSpec {
    Static(Vec<TargetGroup>),
    File(FileSdConfig, PathBuf),
    Http(HttpSdConfig),
    Dns(DnsSdConfig),
    Consul(ConsulSdConfig),
    Docker(DockerSdConfig),
    Ec2(Ec2SdConfig),
    Kubernetes(KubernetesSdConfig),
}

impl ProviderSpec {
    fn mechanism(&self) -> &'static str {
        match self {
            ProviderSpec::Static(_) => "static",
            ProviderSpec::File(..) => "file",
            ProviderSpec::Http(_) => "http",
            ProviderSpec::Dns(_) => "dns",
            ProviderSpec::Consul(_) => "consul",
            ProviderSpec::Docker(_) => "docker",
            ProviderSpec::Ec2(_) => "ec2",
            ProviderSpec::Kubernetes(_) => "kubernetes",
        }
    }
}

/// What the UI shows about one provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderStatus {
    pub job: String,
    pub mechanism: &'static str,
    pub targets: usize,
    pub last_error: Option<String>,
}

struct Provider {
    id: u64,
    job: String,
    spec: ProviderSpec,
    cancel: CancellationToken,
}

#[derive(Default)]
struct State {
    /// provider id → (job, groups)
    groups: HashMap<u64, (String, Vec<TargetGroup>)>,
    errors: HashMap<u64, String>,
    dirty: bool,
    /// Until when changes are sent within [`EAGER_DEBOUNCE`] instead of on
    /// the reload tick: the moments after a (re)configuration, when the
    /// providers that answer at once (static, files, a first HTTP or API
    /// list) report.
    eager_until: Option<tokio::time::Instant>,
}

/// How long after a configuration is applied changes go out promptly.
const EAGER_WINDOW: Duration = Duration::from_secs(2);
/// During that window, a snapshot leaves this long after the last change.
const EAGER_DEBOUNCE: Duration = Duration::from_millis(100);
/// Provider id of the message that wakes the sender after a configuration
/// was applied (real providers count from 1).
const CONFIG_APPLIED: u64 = 0;

pub(crate) type Update = (u64, Result<Vec<TargetGroup>, String>);

pub struct DiscoveryManager {
    providers: Vec<Provider>,
    next_id: u64,
    state: Arc<Mutex<State>>,
    updates: mpsc::Sender<Update>,
    metrics: DiscoveryMetrics,
    shutdown: CancellationToken,
    /// Nameservers for `dns_sd_configs`; empty = the system resolver.
    dns_nameservers: Vec<std::net::SocketAddr>,
}

impl DiscoveryManager {
    /// Sends `dns_sd_configs` lookups to these servers instead of the ones
    /// in `/etc/resolv.conf` (tests, or hosts with a dedicated resolver).
    /// Applies to providers started after the call.
    pub fn set_dns_nameservers(&mut self, servers: Vec<std::net::SocketAddr>) {
        self.dns_nameservers = servers;
    }

    /// Starts the manager's sender task on the current tokio runtime.
    pub fn start(
        reload_interval: Duration,
        metrics: DiscoveryMetrics,
        shutdown: CancellationToken,
    ) -> (DiscoveryManager, watch::Receiver<DiscoveredTargets>) {
        let (tx, rx) = watch::channel(DiscoveredTargets::default());
        let (updates_tx, updates_rx) = mpsc::channel(64);
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(sender(
            state.clone(),
            updates_rx,
            tx,
            reload_interval,
            metrics.clone(),
            shutdown.clone(),
        ));
        let mgr = DiscoveryManager {
            providers: Vec::new(),
            next_id: 1,
            state,
            updates: updates_tx,
            metrics,
            shutdown,
            dns_nameservers: dns::nameservers_from_env(),
        };
        (mgr, rx)
    }

    /// Applies a (re)loaded configuration, restarting only what changed.
    pub fn apply_config(&mut self, cfg: &Config) {
        let mut desired: Vec<(String, ProviderSpec)> = Vec::new();
        for sc in &cfg.scrape_configs {
            if !sc.static_configs.is_empty() {
                let groups = sc
                    .static_configs
                    .iter()
                    .enumerate()
                    .map(|(i, g)| TargetGroup::from_static(i.to_string(), &g.targets, &g.labels))
                    .collect();
                desired.push((sc.job_name.clone(), ProviderSpec::Static(groups)));
            }
            let base = cfg
                .source_files
                .first()
                .and_then(|p| p.parent())
                .map(|p| p.to_path_buf())
                .unwrap_or_default();
            for f in &sc.file_sd_configs {
                desired.push((
                    sc.job_name.clone(),
                    ProviderSpec::File(f.clone(), base.clone()),
                ));
            }
            for h in &sc.http_sd_configs {
                desired.push((sc.job_name.clone(), ProviderSpec::Http(h.clone())));
            }
            let job = &sc.job_name;
            desired.extend(
                sc.dns_sd_configs
                    .iter()
                    .map(|c| (job.clone(), ProviderSpec::Dns(c.clone()))),
            );
            desired.extend(
                sc.consul_sd_configs
                    .iter()
                    .map(|c| (job.clone(), ProviderSpec::Consul(c.clone()))),
            );
            desired.extend(
                sc.docker_sd_configs
                    .iter()
                    .map(|c| (job.clone(), ProviderSpec::Docker(c.clone()))),
            );
            desired.extend(
                sc.ec2_sd_configs
                    .iter()
                    .map(|c| (job.clone(), ProviderSpec::Ec2(c.clone()))),
            );
            desired.extend(
                sc.kubernetes_sd_configs
                    .iter()
                    .map(|c| (job.clone(), ProviderSpec::Kubernetes(c.clone()))),
            );
        }

        let mut kept = Vec::new();
        for p in std::mem::take(&mut self.providers) {
            if let Some(pos) = desired
                .iter()
                .position(|(j, s)| *j == p.job && *s == p.spec)
            {
                desired.swap_remove(pos);
                kept.push(p);
            } else {
                p.cancel.cancel();
                let mut st = self.state.lock();
                st.groups.remove(&p.id);
                st.errors.remove(&p.id);
                st.dirty = true;
            }
        }
        self.providers = kept;
        for (job, spec) in desired {
            self.spawn(job, spec);
        }
        // An empty job still has to reach the scrape manager (so its pool exists
        // and removed jobs go away): make sure a snapshot is sent, promptly.
        let mut st = self.state.lock();
        st.eager_until = Some(tokio::time::Instant::now() + EAGER_WINDOW);
        // Full only if updates are already queued, which wake it anyway.
        let _ = self.updates.try_send((CONFIG_APPLIED, Ok(Vec::new())));
        for sc in &cfg.scrape_configs {
            if !self.providers.iter().any(|p| p.job == sc.job_name) {
                let id = self.next_id;
                self.next_id += 1;
                st.groups.insert(id, (sc.job_name.clone(), Vec::new()));
                self.providers.push(Provider {
                    id,
                    job: sc.job_name.clone(),
                    spec: ProviderSpec::Static(Vec::new()),
                    cancel: CancellationToken::new(),
                });
            }
        }
        st.dirty = true;
    }

    fn spawn(&mut self, job: String, spec: ProviderSpec) {
        let id = self.next_id;
        self.next_id += 1;
        let cancel = self.shutdown.child_token();
        match &spec {
            ProviderSpec::Static(groups) => {
                let mut st = self.state.lock();
                st.groups.insert(id, (job.clone(), groups.clone()));
                st.dirty = true;
            }
            ProviderSpec::File(cfg, base) => {
                self.state
                    .lock()
                    .groups
                    .insert(id, (job.clone(), Vec::new()));
                tokio::spawn(run_file(
                    id,
                    cfg.clone(),
                    base.clone(),
                    self.updates.clone(),
                    cancel.clone(),
                    self.metrics.clone(),
                ));
            }
            ProviderSpec::Http(cfg) => {
                self.state
                    .lock()
                    .groups
                    .insert(id, (job.clone(), Vec::new()));
                tokio::spawn(run_http(
                    id,
                    cfg.clone(),
                    self.updates.clone(),
                    cancel.clone(),
                    self.metrics.clone(),
                ));
            }
            ProviderSpec::Dns(_)
            | ProviderSpec::Consul(_)
            | ProviderSpec::Docker(_)
            | ProviderSpec::Ec2(_)
            | ProviderSpec::Kubernetes(_) => {
                self.state
                    .lock()
                    .groups
                    .insert(id, (job.clone(), Vec::new()));
                let ctx = ProviderCtx {
                    id,
                    job: job.clone(),
                    mechanism: spec.mechanism(),
                    updates: self.updates.clone(),
                    cancel: cancel.clone(),
                    metrics: self.metrics.clone(),
                };
                self.spawn_api_provider(ctx, &spec);
            }
        }
        self.providers.push(Provider {
            id,
            job,
            spec,
            cancel,
        });
    }

    /// Starts the task of a mechanism that polls a remote API.
    fn spawn_api_provider(&self, ctx: ProviderCtx, spec: &ProviderSpec) {
        match spec {
            ProviderSpec::Dns(cfg) => {
                tokio::spawn(dns::run(ctx, cfg.clone(), self.dns_nameservers.clone()));
            }
            #[cfg(feature = "sd-consul")]
            ProviderSpec::Consul(cfg) => {
                tokio::spawn(consul::run(ctx, cfg.clone()));
            }
            #[cfg(feature = "sd-docker")]
            ProviderSpec::Docker(cfg) => {
                tokio::spawn(docker::run(ctx, cfg.clone()));
            }
            #[cfg(feature = "sd-ec2")]
            ProviderSpec::Ec2(cfg) => {
                tokio::spawn(ec2::run(ctx, cfg.clone()));
            }
            #[cfg(feature = "sd-kubernetes")]
            ProviderSpec::Kubernetes(cfg) => {
                tokio::spawn(kubernetes::run(ctx, cfg.clone()));
            }
            // A mechanism compiled out of this build. The config crate
            // (features forwarded from ours) already refuses such files;
            // this only guards callers that build a `Config` by hand.
            #[cfg(not(all(
                feature = "sd-consul",
                feature = "sd-docker",
                feature = "sd-ec2",
                feature = "sd-kubernetes"
            )))]
            ProviderSpec::Consul(_)
            | ProviderSpec::Docker(_)
            | ProviderSpec::Ec2(_)
            | ProviderSpec::Kubernetes(_) => {
                let msg = format!(
                    "{}_sd_configs: this build of Tributary leaves out this discovery mechanism",
                    spec.mechanism()
                );
                tracing::error!(job = %ctx.job, "{msg}");
                ctx.count_failure();
                tokio::spawn(async move {
                    let _ = ctx.report(Err(msg)).await;
                });
            }
            ProviderSpec::Static(_) | ProviderSpec::File(..) | ProviderSpec::Http(_) => {}
        }
    }

    /// One entry per running provider, for the service-discovery page.
    pub fn status(&self) -> Vec<ProviderStatus> {
        let st = self.state.lock();
        self.providers
            .iter()
            .map(|p| ProviderStatus {
                job: p.job.clone(),
                mechanism: p.spec.mechanism(),
                targets: st
                    .groups
                    .get(&p.id)
                    .map(|(_, g)| g.iter().map(|g| g.targets.len()).sum())
                    .unwrap_or(0),
                last_error: st.errors.get(&p.id).cloned(),
            })
            .collect()
    }
}

impl Drop for DiscoveryManager {
    fn drop(&mut self) {
        for p in &self.providers {
            p.cancel.cancel();
        }
    }
}

async fn sender(
    state: Arc<Mutex<State>>,
    mut updates: mpsc::Receiver<Update>,
    tx: watch::Sender<DiscoveredTargets>,
    interval: Duration,
    metrics: DiscoveryMetrics,
    shutdown: CancellationToken,
) {
    let period = interval.max(Duration::from_millis(10));
    // Not `interval()`: its first tick completes at once and would be taken
    // before any provider has reported, leaving the first snapshot to the
    // next tick, a whole reload interval later (scrapes start 5 s late).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let eager = state
            .lock()
            .eager_until
            .is_some_and(|until| tokio::time::Instant::now() < until);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            u = updates.recv() => {
                let Some((id, result)) = u else { return };
                if id == CONFIG_APPLIED {
                    continue;
                }
                metrics.received_updates.get_or_create(&DiscoveryMetrics::scrape_label()).inc();
                let mut st = state.lock();
                match result {
                    Ok(groups) => {
                        st.errors.remove(&id);
                        if let Some(entry) = st.groups.get_mut(&id) {
                            if entry.1 != groups {
                                entry.1 = groups;
                                st.dirty = true;
                            }
                        }
                    }
                    Err(e) => { st.errors.insert(id, e); }
                }
                let failed = st.errors.len() as i64;
                metrics.failed_configs.get_or_create(&DiscoveryMetrics::scrape_label()).set(failed);
                continue;
            }
            _ = tick.tick() => {}
            _ = tokio::time::sleep(EAGER_DEBOUNCE), if eager => {}
        }
        let snapshot = {
            let mut st = state.lock();
            if !st.dirty {
                continue;
            }
            st.dirty = false;
            let mut by_job: BTreeMap<String, Vec<TargetGroup>> = BTreeMap::new();
            for (job, groups) in st.groups.values() {
                by_job
                    .entry(job.clone())
                    .or_default()
                    .extend(groups.iter().cloned());
            }
            by_job
        };
        for (job, groups) in &snapshot {
            let n: usize = groups.iter().map(|g| g.targets.len()).sum();
            metrics
                .discovered_targets
                .get_or_create(&vec![
                    ("name".into(), "scrape".into()),
                    ("config".into(), job.clone()),
                ])
                .set(n as i64);
        }
        metrics
            .updates
            .get_or_create(&DiscoveryMetrics::scrape_label())
            .inc();
        let _ = tx.send(Arc::new(snapshot));
    }
}

async fn run_file(
    id: u64,
    cfg: FileSdConfig,
    base: PathBuf,
    updates: mpsc::Sender<Update>,
    cancel: CancellationToken,
    metrics: DiscoveryMetrics,
) {
    let mut last: Option<file::Fingerprint> = None;
    let mut last_full = tokio::time::Instant::now();
    let refresh = cfg.refresh_interval;
    loop {
        let now = tokio::time::Instant::now();
        let due = last.is_none() || now.duration_since(last_full) >= refresh;
        match file::fingerprint(&cfg.files, &base) {
            Ok(fp) if due || last.as_ref() != Some(&fp) => {
                last_full = now;
                let result = file::read_groups(&fp).map_err(|e| {
                    metrics.file_read_errors.inc();
                    tracing::error!(err = %e, "Error reading file");
                    e.to_string()
                });
                // Remember the fingerprint only when the read succeeded, so a
                // half-written file is re-read on the next poll.
                last = result.as_ref().ok().map(|_| fp);
                if updates.send((id, result)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = updates.send((id, Err(e.to_string()))).await;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(file::poll_interval()) => {}
        }
    }
}

async fn run_http(
    id: u64,
    cfg: HttpSdConfig,
    updates: mpsc::Sender<Update>,
    cancel: CancellationToken,
    metrics: DiscoveryMetrics,
) {
    let client = match tributary_http::build_client(
        &cfg.http_client,
        tributary_http::ClientOptions::default(),
    ) {
        Ok(c) => c,
        Err(e) => {
            let _ = updates.send((id, Err(e.to_string()))).await;
            return;
        }
    };
    loop {
        let result = http::fetch_groups(&client, &cfg.url, cfg.refresh_interval)
            .await
            .map_err(|e| {
                metrics.http_failures.inc();
                metrics
                    .refresh_failures
                    .get_or_create(&vec![
                        ("mechanism".into(), "http".into()),
                        ("config".into(), cfg.url.clone()),
                    ])
                    .inc();
                tracing::error!(url = %cfg.url, err = %e, "Unable to refresh target groups");
                e.to_string()
            });
        if updates.send((id, result)).await.is_err() {
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(cfg.refresh_interval) => {}
        }
    }
}
