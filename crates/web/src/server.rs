//! The HTTP server: routing (with `--web.route-prefix`), the probe and
//! lifecycle endpoints, and the optional TLS/basic-auth layer from
//! `--web.config.file`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tributary_config::Config;
use tributary_scrape::PoolSnapshot;

use crate::security::WebSecurity;
use crate::status::{RemoteWriteStatus, TargetMetadata};

/// A reload asked for over HTTP; the binary answers with the outcome.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// State the binary owns and the web crate reads.
///
/// Methods added after the first version have default implementations so
/// an older implementor keeps compiling; the binary should override them.
pub trait StatusSource: Send + Sync + 'static {
    fn scrape_pools(&self) -> Vec<PoolSnapshot>;
    /// The effective configuration as YAML with secrets shown as `<secret>`.
    fn config_yaml(&self) -> String;
    /// Per remote-write endpoint and WAL status, as free-form JSON. Shown
    /// only when [`StatusSource::remote_write_status`] is not provided.
    fn remote_status(&self) -> serde_json::Value;
    fn reload_status(&self) -> (bool, Option<SystemTime>);

    /// The loaded configuration (relabel steps and the relabel debugger
    /// read each job's `relabel_configs`). The default re-reads
    /// [`StatusSource::config_yaml`], which works for every config whose
    /// redacted form still loads; the binary should return its own copy.
    fn config(&self) -> Option<Arc<Config>> {
        let yaml = self.config_yaml();
        tributary_config::load_str(&yaml, "<loaded configuration>", std::path::Path::new("."))
            .ok()
            .map(Arc::new)
    }

    /// Typed remote-write and WAL status for the UI and
    /// `/api/v1/status/remote_write`. `None` falls back to `remote_status()`.
    fn remote_write_status(&self) -> Option<RemoteWriteStatus> {
        None
    }

    /// Per-target metric metadata for `/api/v1/targets/metadata`; `None`
    /// when the scrape layer does not keep it.
    fn target_metadata(&self) -> Option<Vec<TargetMetadata>> {
        None
    }
}

pub struct WebOptions {
    pub listen: String,
    pub route_prefix: String,
    pub lifecycle: bool,
    pub flags: Vec<(String, String)>,
    pub version: String,
    pub revision: String,
    pub storage_path: String,
    /// `--web.read-timeout`: how long a client may take to send a request's
    /// headers (Go's server bounds the whole request read; hyper bounds the
    /// headers, which is what a stalled client holds a connection with).
    pub read_timeout: Duration,
}

impl WebOptions {
    /// The value of a command-line flag as shown on the flags page.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The route prefix without a trailing slash ("" for the root), the
    /// form every link and route is built from.
    pub fn prefix(&self) -> &str {
        self.route_prefix.trim_end_matches('/')
    }
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

/// Binds and serves plain HTTP until `shutdown` is cancelled.
pub async fn serve(state: Arc<WebState>, shutdown: CancellationToken) -> std::io::Result<()> {
    serve_with_security(state, WebSecurity::default(), shutdown).await
}

/// Binds and serves until `shutdown` is cancelled, with the TLS and basic
/// auth settings of a `--web.config.file` (see [`crate::load_web_config`]).
pub async fn serve_with_security(
    state: Arc<WebState>,
    security: WebSecurity,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&state.options.listen).await?;
    serve_on(listener, state, security, shutdown).await
}

/// Serves on an already bound listener (tests bind 127.0.0.1:0 first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<WebState>,
    security: WebSecurity,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let read_timeout = state.options.read_timeout;
    let app = crate::security::protect(app(state), &security);
    let server = crate::connections::Http1Server {
        app,
        tls: security.tls_acceptor(),
        read_timeout,
    };
    server.serve(listener, shutdown).await;
    Ok(())
}

/// The whole application, mounted under the route prefix.
pub fn app(state: Arc<WebState>) -> Router {
    let prefix = state.options.prefix().to_string();
    let routes = router(state);
    if prefix.is_empty() {
        return routes.fallback(not_found);
    }
    let home = format!("{prefix}/agent");
    Router::new()
        .nest(&prefix, routes)
        .route("/", get(move || async move { found(&home) }))
        .fallback(not_found)
}

fn router(state: Arc<WebState>) -> Router {
    let home = format!("{}/agent", state.options.prefix());
    let cors = state
        .options
        .flag("web.cors.origin")
        .unwrap_or(".*")
        .to_string();
    Router::new()
        .route("/", get(move || async move { found(&home) }))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/version", get(crate::api::version))
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/reload", any(reload))
        .route("/-/quit", any(quit))
        .merge(crate::api::routes(&cors))
        .merge(crate::ui::routes())
        .fallback(not_found)
        .with_state(state)
}

/// Go's `http.Redirect` with 302, as Prometheus answers `/`.
fn found(location: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn text(code: StatusCode, body: &'static str) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Go's `http.NotFound` body.
async fn not_found() -> Response {
    let mut r = text(StatusCode::NOT_FOUND, "404 page not found\n");
    r.headers_mut().insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn healthy(method: Method) -> Response {
    if method == Method::HEAD {
        return text(StatusCode::OK, "");
    }
    text(StatusCode::OK, "Prometheus Agent is Healthy.\n")
}

async fn ready(State(s): State<Arc<WebState>>, method: Method) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        let body = if method == Method::HEAD {
            ""
        } else {
            "Prometheus Agent is Ready.\n"
        };
        return text(StatusCode::OK, body);
    }
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    let stopping = if s.stopping.load(Ordering::SeqCst) {
        "true"
    } else {
        "false"
    };
    r.headers_mut()
        .insert("X-Prometheus-Stopping", HeaderValue::from_static(stopping));
    r
}

/// Prometheus's order: GET is refused with its own message before the
/// lifecycle flag is looked at; other methods get the router's 405.
fn lifecycle_check(s: &WebState, method: &Method) -> Option<Response> {
    if *method == Method::GET {
        return Some(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only POST or PUT requests allowed",
        ));
    }
    if *method != Method::POST && *method != Method::PUT {
        return Some(text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n"));
    }
    if !s.options.lifecycle {
        return Some(text(StatusCode::FORBIDDEN, "Lifecycle API is not enabled."));
    }
    None
}

async fn reload(State(s): State<Arc<WebState>>, method: Method) -> Response {
    if let Some(r) = lifecycle_check(&s, &method) {
        return r;
    }
    let (tx, rx) = oneshot::channel();
    if s.reload.send(tx).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match rx.await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => {
            let mut r = Response::new(Body::from(format!("failed to reload config: {e}\n")));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    }
}

async fn quit(State(s): State<Arc<WebState>>, method: Method) -> Response {
    if let Some(r) = lifecycle_check(&s, &method) {
        return r;
    }
    if s.quit.is_cancelled() {
        return text(StatusCode::OK, "Termination already in progress.\n");
    }
    s.quit.cancel();
    text(StatusCode::OK, "Requesting termination... Goodbye!\n")
}
