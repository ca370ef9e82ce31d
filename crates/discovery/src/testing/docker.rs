//! A Docker Engine API double: `ContainerList` (`/containers/json`, the
//! body set by the test) and `NetworkList` (`/networks`, from the
//! `docker_networks.json` fixture), over TCP or a Unix socket.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use parking_lot::Mutex;

#[derive(Default)]
pub struct Daemon {
    /// The `/containers/json` answer.
    pub containers: String,
    /// When set, `/containers/json` answers 500.
    pub fail: bool,
    /// The last `filters` query parameter seen.
    pub last_filters: Option<String>,
}

pub type Shared = Arc<Mutex<Daemon>>;

async fn containers(
    State(d): State<Shared>,
    Query(q): Query<Vec<(String, String)>>,
) -> impl IntoResponse {
    let mut d = d.lock();
    d.last_filters = q.into_iter().find(|(k, _)| k == "filters").map(|(_, v)| v);
    if d.fail {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"message":"daemon down"}"#.to_string(),
        );
    }
    (StatusCode::OK, d.containers.clone())
}

async fn networks() -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        super::fixture("docker_networks.json"),
    )
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/containers/json", get(containers))
        .route("/networks", get(networks))
        .with_state(state)
}

/// Serves on an ephemeral loopback port; returns `tcp://127.0.0.1:port`.
pub async fn serve_tcp(state: Shared) -> String {
    let addr = super::spawn_serve(super::loopback_listener().await, router(state));
    format!("tcp://{addr}")
}

/// One running container on the `bridge` network (`n1` in the networks
/// fixture) at `ip`, publishing `private_port` on `public_ip:public_port`.
pub fn container(
    id: &str,
    name: &str,
    ip: &str,
    private_port: u16,
    public_ip: &str,
    public_port: u16,
    labels: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "Id": id, "Names": [format!("/{name}")], "Image": "example/app:1.0",
        "Ports": [{"IP": public_ip, "PrivatePort": private_port, "PublicPort": public_port, "Type": "tcp"}],
        "Labels": labels,
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {"Networks": {"bridge": {"NetworkID": "n1", "IPAddress": ip}}}
    })
}
