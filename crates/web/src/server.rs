use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use axum::Router;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tributary_scrape::PoolSnapshot;

/// A reload asked for over HTTP; the binary answers with the outcome.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// State the binary owns and the web crate reads.
pub trait StatusSource: Send + Sync + 'static {
    fn scrape_pools(&self) -> Vec<PoolSnapshot>;
    /// The effective configuration as YAML with secrets shown as `<secret>`.
    fn config_yaml(&self) -> String;
    /// Per remote-write endpoint and WAL status, as JSON (UI and API).
    fn remote_status(&self) -> serde_json::Value;
    fn reload_status(&self) -> (bool, Option<SystemTime>);
}

pub struct WebOptions {
    pub listen: String,
    pub route_prefix: String,
    pub lifecycle: bool,
    pub flags: Vec<(String, String)>,
    pub version: String,
    pub revision: String,
    pub storage_path: String,
}

pub struct WebState {
    pub options: WebOptions,
    pub ready: AtomicBool,
    pub stopping: AtomicBool,
    pub registry: Arc<prometheus_client::registry::Registry>,
    pub status: Arc<dyn StatusSource>,
    pub reload: mpsc::Sender<ReloadRequest>,
    pub quit: CancellationToken,
    pub started: SystemTime,
}

impl WebState {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// Binds and serves until `shutdown` is cancelled.
pub async fn serve(state: Arc<WebState>, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&state.options.listen).await?;
    let prefix = state.options.route_prefix.trim_end_matches('/').to_string();
    let routes = router(state.clone());
    let app = if prefix.is_empty() {
        routes
    } else {
        let target = format!("{prefix}/");
        Router::new()
            .nest(&prefix, routes)
            .route("/", get(move || async move { Redirect::to(&target) }))
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("agent") }))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/reload", any(reload))
        .route("/-/quit", any(quit))
        .merge(crate::api::routes())
        .merge(crate::ui::routes())
        .with_state(state)
}

async fn healthy() -> &'static str {
    "Prometheus Agent is Healthy.\n"
}

async fn ready(State(s): State<Arc<WebState>>) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        return (StatusCode::OK, "Prometheus Agent is Ready.\n").into_response();
    }
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    let stopping = if s.stopping.load(Ordering::SeqCst) { "true" } else { "false" };
    r.headers_mut().insert("X-Prometheus-Stopping", HeaderValue::from_static(stopping));
    r
}

fn lifecycle_check(s: &WebState, method: &Method) -> Option<Response> {
    if *method != Method::POST && *method != Method::PUT {
        return Some((StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n").into_response());
    }
    if !s.options.lifecycle {
        return Some(
            (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.").into_response(),
        );
    }
    None
}

async fn reload(State(s): State<Arc<WebState>>, method: Method) -> Response {
    if let Some(r) = lifecycle_check(&s, &method) {
        return r;
    }
    let (tx, rx) = oneshot::channel();
    if s.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("failed to reload config: {e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn quit(State(s): State<Arc<WebState>>, method: Method) -> Response {
    if let Some(r) = lifecycle_check(&s, &method) {
        return r;
    }
    if s.quit.is_cancelled() {
        return (StatusCode::OK, "Termination already in progress.\n").into_response();
    }
    s.quit.cancel();
    (StatusCode::OK, "Requesting termination... Goodbye!\n").into_response()
}
