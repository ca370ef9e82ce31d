//! A real web server on 127.0.0.1:0 backed by a fake [`StatusSource`]
//! whose targets are built from a real configuration by the scrape crate's
//! own target builder, so labels and URLs are what the agent would show.

#![allow(dead_code)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tributary_config::Config;
use tributary_model::Labels;
use tributary_scrape::target::{build_target, discovered_labels};
use tributary_scrape::{ActiveTarget, PoolSnapshot, TargetHealth};
use tributary_web::{
    ReloadRequest, RemoteWriteStatus, StatusSource, TargetMetadata, WebOptions, WebSecurity,
    WebState,
};

pub const CONFIG: &str = r#"global:
  scrape_interval: 5s
scrape_configs:
  - job_name: down
    scrape_interval: 10s
    static_configs:
      - targets: ['127.0.0.1:1']
    relabel_configs:
      - source_labels: [__address__]
        regex: '127.0.0.1:1'
        action: keep
  - job_name: dropper
    static_configs:
      - targets: ['127.0.0.1:2', '127.0.0.1:3']
    relabel_configs:
      - source_labels: [__address__]
        regex: '.*:2'
        action: drop
remote_write:
  - url: http://127.0.0.1:1/write
    basic_auth: {username: u, password: secretpw}
"#;

pub const CONNECTION_REFUSED: &str =
    "Get \"http://127.0.0.1:1/metrics\": dial tcp 127.0.0.1:1: connect: connection refused";

pub fn load(yaml: &str) -> Config {
    match tributary_config::load_str(yaml, "test.yml", std::path::Path::new(".")) {
        Ok(c) => c,
        Err(e) => panic!("test config must load: {e}"),
    }
}

/// Every static target of `cfg` through relabeling, as the scrape manager
/// would hold them; `health` decides each active target's health.
pub fn pools(cfg: &Config, health: impl Fn(&str) -> TargetHealth) -> Vec<PoolSnapshot> {
    let mut out = Vec::new();
    for sc in &cfg.scrape_configs {
        let mut pool = PoolSnapshot {
            job: sc.job_name.clone(),
            scrape_interval: sc.scrape_interval,
            scrape_timeout: sc.scrape_timeout,
            active: Vec::new(),
            dropped: Vec::new(),
        };
        for group in &sc.static_configs {
            let group_labels =
                Labels::from_pairs(group.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            for addr in &group.targets {
                let t = Labels::from_pairs([("__address__", addr.as_str())]);
                match build_target(discovered_labels(&t, &group_labels, sc), sc) {
                    Ok(target) => {
                        let h = health(&target.url);
                        pool.active.push(ActiveTarget { target, health: h });
                    }
                    Err(d) => pool.dropped.push(d),
                }
            }
        }
        out.push(pool);
    }
    out
}

pub fn down(err: &str) -> TargetHealth {
    TargetHealth {
        health: tributary_scrape::Health::Down,
        last_error: err.to_string(),
        last_scrape: Some(SystemTime::now() - Duration::from_secs(3)),
        last_duration: Duration::from_micros(450),
        ..Default::default()
    }
}

pub struct FakeStatus {
    pub pools: Mutex<Vec<PoolSnapshot>>,
    pub config: Option<Arc<Config>>,
    pub yaml: String,
    pub remote: Option<RemoteWriteStatus>,
    pub metadata: Option<Vec<TargetMetadata>>,
    pub reload: Mutex<(bool, Option<SystemTime>)>,
}

impl FakeStatus {
    pub fn new(cfg: Config, pools: Vec<PoolSnapshot>) -> FakeStatus {
        FakeStatus {
            yaml: cfg.to_redacted_yaml(),
            config: Some(Arc::new(cfg)),
            pools: Mutex::new(pools),
            remote: None,
            metadata: None,
            reload: Mutex::new((true, Some(SystemTime::now()))),
        }
    }
}

impl StatusSource for FakeStatus {
    fn scrape_pools(&self) -> Vec<PoolSnapshot> {
        self.pools.lock().clone()
    }
    fn config_yaml(&self) -> String {
        self.yaml.clone()
    }
    fn remote_status(&self) -> serde_json::Value {
        serde_json::json!({"queues": []})
    }
    fn reload_status(&self) -> (bool, Option<SystemTime>) {
        *self.reload.lock()
    }
    fn config(&self) -> Option<Arc<Config>> {
        self.config.clone()
    }
    fn remote_write_status(&self) -> Option<RemoteWriteStatus> {
        self.remote.clone()
    }
    fn target_metadata(&self) -> Option<Vec<TargetMetadata>> {
        self.metadata.clone()
    }
}

pub struct Server {
    pub base: String,
    pub state: Arc<WebState>,
    pub reloads: mpsc::Receiver<ReloadRequest>,
    pub shutdown: CancellationToken,
    /// The server's task: ends once shut down and every connection closed.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn options(prefix: &str, lifecycle: bool) -> WebOptions {
    WebOptions {
        listen: "127.0.0.1:0".into(),
        route_prefix: prefix.into(),
        lifecycle,
        flags: vec![
            (
                "web.external-url".into(),
                "http://agent.example:9090/".into(),
            ),
            ("config.file".into(), "test.yml".into()),
        ],
        version: "0.1.0".into(),
        revision: "abc".into(),
        storage_path: "data-agent/".into(),
        read_timeout: tributary_web::DEFAULT_READ_TIMEOUT,
    }
}

pub async fn start(
    status: Arc<dyn StatusSource>,
    opts: WebOptions,
    security: WebSecurity,
) -> Server {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("local_addr: {e}"),
    };
    let (tx, reloads) = mpsc::channel(4);
    let state = Arc::new(WebState {
        options: opts,
        ready: AtomicBool::new(true),
        stopping: AtomicBool::new(false),
        registry: Arc::new(prometheus_client::registry::Registry::default()),
        status,
        reload: tx,
        quit: CancellationToken::new(),
        started: SystemTime::now(),
    });
    let shutdown = CancellationToken::new();
    let scheme = if security.tls_enabled() {
        "https"
    } else {
        "http"
    };
    let task = tokio::spawn(tributary_web::serve_on(
        listener,
        state.clone(),
        security,
        shutdown.clone(),
    ));
    Server {
        base: format!("{scheme}://{addr}"),
        state,
        reloads,
        shutdown,
        task,
    }
}

pub fn client() -> reqwest::Client {
    match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("client: {e}"),
    }
}

/// GET → (status, body text).
pub async fn get(url: &str) -> (u16, String) {
    send(client().get(url)).await
}

pub async fn send(req: reqwest::RequestBuilder) -> (u16, String) {
    match req.send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            (code, r.text().await.unwrap_or_default())
        }
        Err(e) => panic!("request failed: {e}"),
    }
}

pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let (code, body) = get(url).await;
    match serde_json::from_str(&body) {
        Ok(v) => (code, v),
        Err(e) => panic!("{url}: not JSON ({e}): {body}"),
    }
}

/// A small but realistic agent for UI tests and screenshots.
pub const DEMO_CONFIG: &str = r#"global:
  scrape_interval: 15s
  external_labels: {cluster: eu-1}
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['10.0.0.1:9100', '10.0.0.2:9100', '10.0.0.3:9100']
        labels: {env: prod}
  - job_name: api
    scrape_interval: 30s
    static_configs:
      - targets: ['api-1:8080']
        labels: {env: prod}
      - targets: ['api-dev:8080']
        labels: {env: dev}
    relabel_configs:
      - source_labels: [env]
        regex: dev
        action: drop
      - target_label: team
        replacement: payments
  - job_name: blackbox
    metrics_path: /probe
    params: {module: [http_2xx]}
    static_configs:
      - targets: ['localhost:9115']
remote_write:
  - url: https://mimir.example/api/v1/push
    name: mimir
    basic_auth: {username: agent, password: hunter2}
"#;

pub const DEMO_REFUSED: &str =
    "Get \"http://10.0.0.2:9100/metrics\": dial tcp 10.0.0.2:9100: connect: connection refused";
pub const DEMO_PARSE_ERROR: &str = "expected label value, got \"INVALID\" at line 3, column 17";

pub fn demo_health(url: &str) -> TargetHealth {
    use tributary_scrape::{Health, LastScrape};
    let ok_body = "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.42\nnode_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 51234.5\n";
    let mut h = TargetHealth {
        health: Health::Up,
        last_error: String::new(),
        last_scrape: Some(SystemTime::now() - Duration::from_secs(4)),
        last_duration: Duration::from_millis(23),
        last: LastScrape {
            http_status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8".into(),
            headers: [
                ("content-type", "text/plain; version=0.0.4; charset=utf-8"),
                ("content-encoding", "gzip"),
            ]
            .into_iter()
            .collect(),
            wire_bytes: 3_512,
            body_bytes: 18_230,
            body_head: ok_body.into(),
            samples: 412,
            series_added: 0,
        },
    };
    if url.contains("10.0.0.2") {
        h.health = Health::Down;
        h.last_error = DEMO_REFUSED.into();
        h.last = LastScrape::default();
        h.last_duration = Duration::from_micros(800);
    } else if url.contains("10.0.0.3") {
        h.health = Health::Down;
        h.last_error = DEMO_PARSE_ERROR.into();
        h.last.body_head =
            "# TYPE up gauge\nup 1\nhttp_requests_total{code=\"200\",path=INVALID} 3\n".into();
        h.last.samples = 1;
    } else if url.contains("9115") {
        h = TargetHealth::default();
    }
    h
}

pub fn demo_status() -> FakeStatus {
    use tributary_web::{RemoteEndpointStatus, WalStatus};
    let cfg = load(DEMO_CONFIG);
    let pools = pools(&cfg, demo_health);
    let mut fake = FakeStatus::new(cfg, pools);
    let now_ms = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    fake.remote = Some(RemoteWriteStatus {
        endpoints: vec![RemoteEndpointStatus {
            name: "mimir".into(),
            url: "https://mimir.example/api/v1/push".into(),
            shards: 2,
            desired_shards: 1.6,
            max_shards: 50,
            pending_samples: 830,
            highest_sent_timestamp_ms: now_ms - 2_500,
            highest_wal_timestamp_ms: now_ms,
            samples_sent_total: 1_204_332,
            samples_failed_total: 12,
            samples_retried_total: 340,
            last_send: Some(SystemTime::now() - Duration::from_secs(1)),
            last_error: Some("server returned HTTP status 429 Too Many Requests".into()),
            wal_backlog_bytes: Some(96_000),
        }],
        wal: WalStatus {
            segments: 3,
            first_segment: Some(12),
            current_segment: 14,
            bytes: 48 << 20,
            byte_cap: Some(512 << 20),
            active_series: 5_120,
        },
    });
    fake
}
