//! Side by side with the real thing: the same configuration served by
//! Prometheus (`prometheus --enable-feature=agent`, Debian's 2.42) and by
//! this crate, compared answer by answer.
//!
//! Needs the `prometheus` binary (`PROMETHEUS_BIN`, default
//! /usr/bin/prometheus). Without it the test prints a notice and passes,
//! except under CI (`CI` set), where a missing oracle is a failure.
//!
//! Known, intended differences (Prometheus 3.x is the spec; 2.42 is the
//! oracle at hand): dropped targets carry `scrapePool` (3.x) and
//! `dropReason` (Tributary); `droppedTargetCounts` (3.x); runtimeinfo adds
//! `hostname`, `serverTime`, `GOMEMLIMIT` (3.x); discovered labels may hold
//! 3.x's extra `__scrape_*__` defaults. Everything else must match.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tributary_web::WebSecurity;

struct Oracle {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn oracle_binary() -> Option<PathBuf> {
    let path = PathBuf::from(
        std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "/usr/bin/prometheus".into()),
    );
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: CI must install Debian's prometheus package for the API comparison",
            path.display()
        );
    }
    eprintln!(
        "NOTICE: skipping the Prometheus comparison, {} is not installed",
        path.display()
    );
    None
}

fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

async fn start_oracle(bin: &PathBuf) -> Oracle {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let cfg = dir.path().join("prometheus.yml");
    if let Err(e) = std::fs::write(&cfg, CONFIG) {
        panic!("write config: {e}");
    }
    let port = free_port();
    let child = Command::new(bin)
        .arg("--enable-feature=agent")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--storage.agent.path={}",
            dir.path().join("data").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => panic!("starting prometheus: {e}"),
    };
    Oracle {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// Waits (bounded) until every active target has been scraped once.
async fn wait_for_scrapes(base: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Ok(r) = client().get(format!("{base}/api/v1/targets")).send().await {
            if let Ok(v) = serde_json::from_str::<Value>(&r.text().await.unwrap_or_default()) {
                let active = v["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if active.len() == 2
                    && active
                        .iter()
                        .all(|t| t["lastScrape"] != "0001-01-01T00:00:00Z")
                {
                    return v;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape its targets in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn by_url<'a>(targets: &'a Value, url: &str) -> &'a Value {
    targets
        .as_array()
        .and_then(|a| a.iter().find(|t| t["scrapeUrl"] == url))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_prometheus_agent() {
    let Some(bin) = oracle_binary() else { return };
    let prom = start_oracle(&bin).await;
    let theirs = wait_for_scrapes(&prom.base).await;

    let cfg = load(CONFIG);
    let pools = pools(&cfg, |_| down(CONNECTION_REFUSED));
    let mut opts = options("/", false);
    opts.flags.retain(|(k, _)| k != "web.external-url");
    opts.listen = "127.0.0.1:9090".into();
    let ours_srv = start(
        Arc::new(FakeStatus::new(cfg, pools)),
        opts,
        WebSecurity::default(),
    )
    .await;
    let (code, ours) = get_json(&format!("{}/api/v1/targets", ours_srv.base)).await;
    assert_eq!(code, 200);

    // Active targets: same keys, same values where the data is the same.
    let (ta, oa) = (
        &theirs["data"]["activeTargets"],
        &ours["data"]["activeTargets"],
    );
    for url in ["http://127.0.0.1:1/metrics", "http://127.0.0.1:3/metrics"] {
        let (t, o) = (by_url(ta, url), by_url(oa, url));
        assert_eq!(keys(t), keys(o), "{url}");
        for field in [
            "labels",
            "scrapePool",
            "scrapeUrl",
            "globalUrl",
            "health",
            "scrapeInterval",
            "scrapeTimeout",
        ] {
            assert_eq!(t[field], o[field], "{url} {field}");
        }
        assert_eq!(
            t["lastError"].as_str().is_some_and(str::is_empty),
            o["lastError"].as_str().is_some_and(str::is_empty)
        );
        for (k, v) in t["discoveredLabels"].as_object().into_iter().flatten() {
            assert_eq!(&o["discoveredLabels"][k], v, "{url} discoveredLabels.{k}");
        }
    }
    // Dropped targets: 2.42's fields are a subset of ours.
    let (td, od) = (
        &theirs["data"]["droppedTargets"],
        &ours["data"]["droppedTargets"],
    );
    assert_eq!(td.as_array().map(Vec::len), od.as_array().map(Vec::len));
    assert!(keys(&td[0]).is_subset(&keys(&od[0])));
    assert_eq!(
        td[0]["discoveredLabels"]["__address__"],
        od[0]["discoveredLabels"]["__address__"]
    );

    // Filters.
    for q in [
        "state=dropped",
        "state=active&scrapePool=down",
        "state=bogus",
        "scrapePool=dropper",
    ] {
        let (_, t) = get_json(&format!("{}/api/v1/targets?{q}", prom.base)).await;
        let (_, o) = get_json(&format!("{}/api/v1/targets?{q}", ours_srv.base)).await;
        let count = |v: &Value, k: &str| v["data"][k].as_array().map(Vec::len);
        assert_eq!(
            count(&t, "activeTargets"),
            count(&o, "activeTargets"),
            "{q}"
        );
        assert_eq!(
            count(&t, "droppedTargets"),
            count(&o, "droppedTargets"),
            "{q}"
        );
    }

    // Identical answers.
    for path in ["/api/v1/scrape_pools", "/api/v1/status/walreplay"] {
        assert_eq!(
            get(&format!("{}{path}", prom.base)).await,
            get(&format!("{}{path}", ours_srv.base)).await,
            "{path}"
        );
    }
    for path in [
        "/api/v1/query?query=up",
        "/api/v1/query_range",
        "/api/v1/labels",
        "/api/v1/label/job/values",
        "/api/v1/series",
        "/api/v1/rules",
        "/api/v1/alerts",
    ] {
        assert_eq!(
            get(&format!("{}{path}", prom.base)).await,
            get(&format!("{}{path}", ours_srv.base)).await,
            "{path}"
        );
    }
    let c = client();
    for path in [
        "/-/healthy",
        "/-/ready",
        "/-/reload",
        "/-/quit",
        "/no/such/page",
    ] {
        for method in ["GET", "POST", "PUT", "DELETE"] {
            let m = match reqwest::Method::from_bytes(method.as_bytes()) {
                Ok(m) => m,
                Err(e) => panic!("{e}"),
            };
            if matches!(path, "/-/healthy" | "/-/ready") && method != "GET" {
                continue;
            }
            let t = send(c.request(m.clone(), format!("{}{path}", prom.base))).await;
            let o = send(c.request(m, format!("{}{path}", ours_srv.base))).await;
            assert_eq!(t, o, "{method} {path}");
        }
    }

    // Key sets of the status endpoints.
    for path in ["/api/v1/status/buildinfo", "/api/v1/status/runtimeinfo"] {
        let (_, t) = get_json(&format!("{}{path}", prom.base)).await;
        let (_, o) = get_json(&format!("{}{path}", ours_srv.base)).await;
        assert!(
            keys(&t["data"]).is_subset(&keys(&o["data"])),
            "{path}: {t} vs {o}"
        );
    }
    // Secrets: both redact the remote-write password.
    for base in [&prom.base, &ours_srv.base] {
        let (_, v) = get_json(&format!("{base}/api/v1/status/config")).await;
        let yaml = v["data"]["yaml"].as_str().unwrap_or("");
        assert!(
            yaml.contains("password: <secret>") && !yaml.contains("secretpw"),
            "{base}: {yaml}"
        );
    }
}
