//! A Consul HTTP API double: blocking queries (`index`/`wait`, answered as
//! soon as the catalog's index moves past the client's, capped at 5 s) for
//! `/v1/agent/self`, `/v1/catalog/services` and `/v1/health/service/<name>`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use parking_lot::Mutex;
use tokio::sync::watch;

/// service → (tags, `/v1/health/service/<name>` JSON array)
pub type Services = BTreeMap<String, (Vec<String>, String)>;

/// The catalog behind the double; share it with `Arc`.
pub struct Catalog {
    services: Mutex<Services>,
    index: watch::Sender<u64>,
    /// Query strings and tokens the server saw.
    seen: Mutex<Vec<(String, Option<String>)>>,
    /// When set, health queries answer 500.
    fail_health: AtomicBool,
}

impl Catalog {
    pub fn new(services: Services) -> Arc<Catalog> {
        let (index, _) = watch::channel(1);
        Arc::new(Catalog {
            services: Mutex::new(services),
            index,
            seen: Mutex::new(Vec::new()),
            fail_health: AtomicBool::new(false),
        })
    }

    /// Changes the catalog and bumps its index (waking blocked queries).
    pub fn update(&self, f: impl FnOnce(&mut Services)) {
        f(&mut self.services.lock());
        self.index.send_modify(|i| *i += 1);
    }

    /// `(query string, X-Consul-Token)` of every catalog/health request.
    pub fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().clone()
    }

    pub fn set_fail_health(&self, fail: bool) {
        self.fail_health.store(fail, Ordering::SeqCst);
    }

    /// Serves on an ephemeral loopback port; returns `127.0.0.1:port`.
    pub async fn serve(self: &Arc<Self>) -> String {
        let app = Router::new()
            .route("/v1/agent/self", get(agent_self))
            .route("/v1/catalog/services", get(catalog_services))
            .route("/v1/health/service/{name}", get(health_service))
            .with_state(self.clone());
        super::spawn_serve(super::loopback_listener().await, app).to_string()
    }
}

/// One `/v1/health/service` entry: a node at `node_addr` running
/// `service` (`id`) on `addr:port` with `tags`, all checks passing.
pub fn health_entry(
    node: &str,
    node_addr: &str,
    service: &str,
    id: &str,
    addr: &str,
    port: u16,
    tags: &[&str],
) -> serde_json::Value {
    serde_json::json!({
        "Node": {"ID": node, "Node": node, "Address": node_addr, "Datacenter": "dc1",
                 "TaggedAddresses": {}, "Meta": {}},
        "Service": {"ID": id, "Service": service, "Tags": tags, "Address": addr,
                    "Meta": {}, "Port": port},
        "Checks": [{"Node": node, "CheckID": "serfHealth", "Status": "passing"}]
    })
}

type Shared = Arc<Catalog>;

/// Blocks while the client's `index` is current, like Consul does (the
/// wait is capped so a test cannot hang on it).
async fn block(c: &Catalog, q: &[(String, String)]) -> u64 {
    let wanted: u64 = q
        .iter()
        .find(|(k, _)| k == "index")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut rx = c.index.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|i| *i > wanted)).await;
    let current = *rx.borrow();
    current
}

fn record(c: &Catalog, q: &[(String, String)], headers: &HeaderMap) {
    let query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let token = headers
        .get("X-Consul-Token")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    c.seen.lock().push((query, token));
}

async fn agent_self() -> impl IntoResponse {
    axum::Json(
        serde_json::json!({"Config": {"Datacenter": "dc1", "NodeName": "node-1"}, "Member": {}}),
    )
}

async fn catalog_services(
    State(c): State<Shared>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    record(&c, &q, &headers);
    let index = block(&c, &q).await;
    let body: BTreeMap<String, Vec<String>> = c
        .services
        .lock()
        .iter()
        .map(|(k, (tags, _))| (k.clone(), tags.clone()))
        .collect();
    ([("X-Consul-Index", index.to_string())], axum::Json(body))
}

async fn health_service(
    State(c): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    record(&c, &q, &headers);
    let index = block(&c, &q).await;
    if c.fail_health.load(Ordering::SeqCst) {
        let headers = [
            ("X-Consul-Index", index.to_string()),
            ("Content-Type", "text/plain".to_string()),
        ];
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            headers,
            "rpc error: no leader".to_string(),
        );
    }
    let body = c
        .services
        .lock()
        .get(&name)
        .map(|(_, e)| e.clone())
        .unwrap_or_else(|| "[]".into());
    let headers = [
        ("X-Consul-Index", index.to_string()),
        ("Content-Type", "application/json".to_string()),
    ];
    (StatusCode::OK, headers, body)
}
