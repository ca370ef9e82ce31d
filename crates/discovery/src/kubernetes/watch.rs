//! A hand-written list+watch client ("reflector") for one resource in one
//! namespace, over the shared reqwest client.
//!
//! Protocol (Kubernetes API concepts, "Efficient detection of changes"):
//! * LIST in pages of [`PAGE_SIZE`] (`limit`/`continue`), remembering the
//!   list's `resourceVersion`, and hand the whole set over as one
//!   [`Event::Relisted`] (so the consumer can drop what vanished);
//! * WATCH from that version with `allowWatchBookmarks=true` and a
//!   randomised `timeoutSeconds`; each newline-delimited event advances the
//!   remembered version (BOOKMARK events only do that), so a watch that the
//!   server ends is resumed where it stopped without a new LIST;
//! * `410 Gone` (as HTTP status or as an ERROR event) means the version was
//!   compacted away: LIST again at once;
//! * any other failure counts in `prometheus_sd_kubernetes_failures_total`
//!   and is retried with exponential backoff (1s doubling to 30s, reset by
//!   a successful request).
//!
//! Label and field selectors and the namespace are applied server-side.
//! Objects are decoded straight into the minimal views of `objects`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::objects::{List, Object};
use crate::api::encode_component;

/// Items per LIST page (client-go's default page size).
const PAGE_SIZE: usize = 500;
/// One LIST page must arrive within this.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// A LIST page or one watch event larger than this is refused.
const MAX_BODY_BYTES: usize = 64 << 20;
/// Server-side watch duration: 5 to 10 minutes, like client-go.
const MIN_WATCH_SECS: u64 = 300;
/// A watch silent this much longer than its own timeout is dead.
const WATCH_GRACE: Duration = Duration::from_secs(60);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub(crate) enum WatchError {
    #[error("{0}")]
    Request(String),
    #[error("server returned HTTP status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("resource version expired (410 Gone)")]
    Gone,
    #[error("invalid response: {0}")]
    Parse(String),
    #[error("response exceeds {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("watch stalled: no data for {0:?}")]
    Stalled(Duration),
}

/// The API server a provider talks to.
pub(crate) struct Api {
    pub client: tributary_http::HttpClient,
    /// `scheme://host[:port][/prefix]`, no trailing slash.
    pub base: String,
    /// A kubeconfig `exec` plugin supplying the bearer token.
    pub exec: Option<Arc<super::exec::ExecAuth>>,
}

/// Where a resource lives in the API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resource {
    /// `/api/v1` or `/apis/<group>/<version>`.
    pub group_version: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

pub(crate) const PODS: Resource = Resource {
    group_version: "/api/v1",
    plural: "pods",
    namespaced: true,
};
pub(crate) const NODES: Resource = Resource {
    group_version: "/api/v1",
    plural: "nodes",
    namespaced: false,
};
pub(crate) const SERVICES: Resource = Resource {
    group_version: "/api/v1",
    plural: "services",
    namespaced: true,
};
pub(crate) const ENDPOINTS: Resource = Resource {
    group_version: "/api/v1",
    plural: "endpoints",
    namespaced: true,
};
pub(crate) const REPLICASETS: Resource = Resource {
    group_version: "/apis/apps/v1",
    plural: "replicasets",
    namespaced: true,
};
pub(crate) const JOBS: Resource = Resource {
    group_version: "/apis/batch/v1",
    plural: "jobs",
    namespaced: true,
};
pub(crate) const NAMESPACES: Resource = Resource {
    group_version: "/api/v1",
    plural: "namespaces",
    namespaced: false,
};
pub(crate) const ENDPOINTSLICES: Resource = Resource {
    group_version: "/apis/discovery.k8s.io/v1",
    plural: "endpointslices",
    namespaced: true,
};
pub(crate) const INGRESSES: Resource = Resource {
    group_version: "/apis/networking.k8s.io/v1",
    plural: "ingresses",
    namespaced: true,
};

/// One list+watch: a resource, a namespace (empty = all) and selectors.
#[derive(Debug, Clone)]
pub(crate) struct WatchSpec {
    pub resource: Resource,
    pub namespace: String,
    pub label_selector: String,
    pub field_selector: String,
}

impl WatchSpec {
    fn path(&self) -> String {
        let r = &self.resource;
        if r.namespaced && !self.namespace.is_empty() {
            format!(
                "{}/namespaces/{}/{}",
                r.group_version,
                encode_component(&self.namespace),
                r.plural
            )
        } else {
            format!("{}/{}", r.group_version, r.plural)
        }
    }

    fn selector_params(&self, q: &mut Vec<(&'static str, String)>) {
        if !self.label_selector.is_empty() {
            q.push(("labelSelector", self.label_selector.clone()));
        }
        if !self.field_selector.is_empty() {
            q.push(("fieldSelector", self.field_selector.clone()));
        }
    }
}

/// What a reflector reports.
#[derive(Debug)]
pub(crate) enum Event<T> {
    /// The complete current set (after the first LIST and every re-list).
    Relisted(Vec<T>),
    Applied(T),
    Deleted(T),
}

/// Where a reflector sends its events, already wrapped for the consumer.
/// Each message carries the reflector's id, so the consumer knows which
/// list+watch (namespace scope) it came from.
pub(crate) struct Sink<T, C> {
    pub id: usize,
    pub tx: mpsc::Sender<(usize, C)>,
    pub wrap: fn(Event<T>) -> C,
}

impl<T, C> Sink<T, C> {
    /// `false` once the consumer is gone.
    async fn send(&self, event: Event<T>) -> bool {
        self.tx.send((self.id, (self.wrap)(event))).await.is_ok()
    }
}

/// What a reflector needs besides its spec.
#[derive(Clone)]
pub(crate) struct ReflectorCtx {
    pub api: Arc<Api>,
    pub cancel: CancellationToken,
    pub failures: Counter,
}

fn query(params: &[(&str, String)]) -> String {
    crate::api::query_string(params)
}

async fn get(
    api: &Api,
    url: &str,
    timeout: Option<Duration>,
) -> Result<reqwest::Response, WatchError> {
    let mut req = api
        .client
        .client()
        .get(url)
        .header("Accept", "application/json");
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    let mut req = api
        .client
        .apply_auth(req)
        .map_err(|e| WatchError::Request(e.to_string()))?;
    if let Some(exec) = &api.exec {
        let token = exec
            .token()
            .await
            .map_err(|e| WatchError::Request(e.to_string()))?;
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
    }
    let resp = req
        .send()
        .await
        .map_err(|e| WatchError::Request(e.to_string()))?;
    let status = resp.status().as_u16();
    if status == 401 {
        // The credential was revoked or expired early: the next request
        // runs the plugin again (client-go does the same on 401).
        if let Some(exec) = &api.exec {
            exec.invalidate().await;
        }
    }
    if status == 410 {
        return Err(WatchError::Gone);
    }
    if !(200..300).contains(&status) {
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(512).collect();
        return Err(WatchError::Status { status, body });
    }
    Ok(resp)
}

async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, WatchError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| WatchError::Request(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(WatchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// LISTs every page; returns the items and the list's resourceVersion.
pub(crate) async fn list_all<T: Object>(
    api: &Api,
    spec: &WatchSpec,
) -> Result<(Vec<T>, String), WatchError> {
    let mut items = Vec::new();
    let mut cont = String::new();
    loop {
        let mut q = vec![("limit", PAGE_SIZE.to_string())];
        if !cont.is_empty() {
            q.push(("continue", cont.clone()));
        }
        spec.selector_params(&mut q);
        let url = format!("{}{}{}", api.base, spec.path(), query(&q));
        let body = read_body(get(api, &url, Some(LIST_TIMEOUT)).await?).await?;
        let page: List<T> =
            serde_json::from_slice(&body).map_err(|e| WatchError::Parse(e.to_string()))?;
        items.extend(page.items);
        if page.metadata.continue_.is_empty() {
            return Ok((items, page.metadata.resource_version));
        }
        cont = page.metadata.continue_;
    }
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    object: serde_json::Value,
}

/// `metav1.Status`, as carried by ERROR events.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    code: u16,
    message: String,
}

/// What one watch line means to the reflector.
enum Line<T> {
    Changed(Event<T>, String),
    Bookmark(String),
}

fn parse_line<T: Object>(line: &[u8]) -> Result<Line<T>, WatchError> {
    let raw: RawEvent =
        serde_json::from_slice(line).map_err(|e| WatchError::Parse(e.to_string()))?;
    let decode = |v: serde_json::Value| -> Result<T, WatchError> {
        serde_json::from_value(v).map_err(|e| WatchError::Parse(e.to_string()))
    };
    match raw.type_.as_str() {
        "ADDED" | "MODIFIED" => {
            let obj = decode(raw.object)?;
            let rv = obj.meta().resource_version.clone();
            Ok(Line::Changed(Event::Applied(obj), rv))
        }
        "DELETED" => {
            let obj = decode(raw.object)?;
            let rv = obj.meta().resource_version.clone();
            Ok(Line::Changed(Event::Deleted(obj), rv))
        }
        "BOOKMARK" => {
            let rv = raw
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            Ok(Line::Bookmark(rv))
        }
        "ERROR" => {
            let status: Status = serde_json::from_value(raw.object).unwrap_or_default();
            if status.code == 410 {
                Err(WatchError::Gone)
            } else {
                Err(WatchError::Status {
                    status: status.code,
                    body: status.message,
                })
            }
        }
        other => Err(WatchError::Parse(format!(
            "unknown watch event type {other:?}"
        ))),
    }
}

/// Pseudo-random watch length in [MIN, 2·MIN) seconds; spreads reconnects
/// of many watches without a random-number dependency.
fn watch_timeout_secs() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    MIN_WATCH_SECS + nanos % MIN_WATCH_SECS
}

/// Streams one watch until the server ends it (`Ok`) or it fails. The
/// resource version is advanced in place as events arrive.
async fn watch_once<T: Object, C>(
    api: &Api,
    spec: &WatchSpec,
    rv: &mut String,
    sink: &Sink<T, C>,
) -> Result<(), WatchError> {
    let secs = watch_timeout_secs();
    let mut q = vec![
        ("watch", "true".to_string()),
        ("allowWatchBookmarks", "true".to_string()),
        ("resourceVersion", rv.clone()),
        ("timeoutSeconds", secs.to_string()),
    ];
    spec.selector_params(&mut q);
    let url = format!("{}{}{}", api.base, spec.path(), query(&q));
    let mut resp = get(api, &url, None).await?;
    let idle = Duration::from_secs(secs) + WATCH_GRACE;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::time::timeout(idle, resp.chunk())
            .await
            .map_err(|_| WatchError::Stalled(idle))?
            .map_err(|e| WatchError::Request(e.to_string()))?;
        let Some(chunk) = chunk else {
            return Ok(());
        };
        buf.extend_from_slice(&chunk);
        if !chunk.contains(&b'\n') {
            if buf.len() > MAX_BODY_BYTES {
                return Err(WatchError::TooLarge);
            }
            continue;
        }
        let mut start = 0;
        while let Some(off) = buf
            .get(start..)
            .and_then(|b| b.iter().position(|&c| c == b'\n'))
        {
            let line = buf.get(start..start + off).unwrap_or_default();
            start += off + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_line::<T>(line)? {
                Line::Changed(event, new_rv) => {
                    if !new_rv.is_empty() {
                        *rv = new_rv;
                    }
                    if !sink.send(event).await {
                        return Ok(());
                    }
                }
                Line::Bookmark(new_rv) => {
                    if !new_rv.is_empty() {
                        *rv = new_rv;
                    }
                }
            }
        }
        buf.drain(..start);
    }
}

/// Runs list+watch for `spec` until cancelled or the consumer goes away.
pub(crate) async fn reflect<T: Object, C: Send + 'static>(
    ctx: ReflectorCtx,
    spec: WatchSpec,
    sink: Sink<T, C>,
) {
    let mut backoff = BACKOFF_START;
    'relist: loop {
        let listed = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            r = list_all::<T>(&ctx.api, &spec) => r,
        };
        let mut rv = match listed {
            Ok((items, rv)) => {
                backoff = BACKOFF_START;
                if !sink.send(Event::Relisted(items)).await {
                    return;
                }
                rv
            }
            Err(e) => {
                if !failed(&ctx, &spec, &e, &mut backoff).await {
                    return;
                }
                continue 'relist;
            }
        };
        loop {
            let watched = tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                r = watch_once(&ctx.api, &spec, &mut rv, &sink) => r,
            };
            if sink.tx.is_closed() {
                return;
            }
            match watched {
                Ok(()) => backoff = BACKOFF_START,
                Err(WatchError::Gone) => {
                    tracing::debug!(
                        resource = spec.resource.plural,
                        "watch version expired; re-listing"
                    );
                    continue 'relist;
                }
                Err(e) => {
                    if !failed(&ctx, &spec, &e, &mut backoff).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Counts and logs a failure, then waits out the backoff; `false` when
/// cancelled meanwhile.
async fn failed(
    ctx: &ReflectorCtx,
    spec: &WatchSpec,
    e: &WatchError,
    backoff: &mut Duration,
) -> bool {
    ctx.failures.inc();
    tracing::warn!(
        resource = spec.resource.plural,
        namespace = %spec.namespace,
        err = %e,
        "kubernetes list/watch failed"
    );
    let wait = *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        _ = ctx.cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}
