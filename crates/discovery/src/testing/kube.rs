//! A Kubernetes API server double: LIST (with `limit`/`continue`) and WATCH
//! (newline-delimited JSON events, `resourceVersion` resume, BOOKMARK
//! events when `allowWatchBookmarks=true`, `410 Gone` as an ERROR event once
//! versions are compacted) for any resource under `/api/v1/...` or
//! `/apis/<group>/<version>/...`, namespaced or cluster-wide. Objects are
//! JSON values as the API reference shows them; the double stamps
//! `metadata.resourceVersion` itself.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

#[derive(Default)]
struct Store {
    rv: u64,
    /// plural → key (ns/name) → object
    objects: HashMap<String, BTreeMap<String, Value>>,
    /// (rv, plural, namespace, type, object)
    events: Vec<(u64, String, String, String, Value)>,
    /// Watches from a version below this get 410 Gone.
    compacted: u64,
    lists: usize,
    watches: Vec<String>,
    /// How long the server keeps one watch open.
    watch_len: Duration,
    /// When set, requests without `Authorization: Bearer <this>` get 401.
    bearer: Option<String>,
    /// Every `Authorization` header value received.
    authorizations: Vec<String>,
}

/// The API server's state; clones share it.
#[derive(Clone)]
pub struct FakeKube {
    store: Arc<Mutex<Store>>,
    changed: Arc<Notify>,
}

impl Default for FakeKube {
    fn default() -> Self {
        FakeKube::new()
    }
}

/// `(namespace, "ns/name" or "name")` of an object.
fn key_of(obj: &Value) -> (String, String) {
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let key = if ns.is_empty() {
        name
    } else {
        format!("{ns}/{name}")
    };
    (ns, key)
}

impl FakeKube {
    /// An empty cluster whose watches last 700 ms (short, so tests see
    /// clients resume).
    pub fn new() -> FakeKube {
        FakeKube::with_watch_len(Duration::from_millis(700))
    }

    /// An empty cluster whose server ends each watch after `watch_len`.
    pub fn with_watch_len(watch_len: Duration) -> FakeKube {
        let store = Store {
            rv: 1000,
            watch_len,
            ..Store::default()
        };
        FakeKube {
            store: Arc::new(Mutex::new(store)),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Adds every object of the JSON array in `tests/fixtures/kubernetes/<fixture>`.
    pub fn load(&self, plural: &str, fixture: &str) {
        let text = super::fixture(&format!("kubernetes/{fixture}"));
        let items: Vec<Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{fixture}: {e}"));
        for item in items {
            self.put_quiet(plural, item);
        }
    }

    /// Adds or replaces an object without a watch event (initial state).
    pub fn put_quiet(&self, plural: &str, mut obj: Value) {
        let mut st = self.store.lock();
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let (_, key) = key_of(&obj);
        st.objects
            .entry(plural.to_string())
            .or_default()
            .insert(key, obj);
    }

    /// Adds or replaces an object and records the watch event.
    pub fn put(&self, plural: &str, mut obj: Value) {
        {
            let mut st = self.store.lock();
            st.rv += 1;
            let rv = st.rv;
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            let (ns, key) = key_of(&obj);
            let map = st.objects.entry(plural.to_string()).or_default();
            let kind = if map.contains_key(&key) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            map.insert(key, obj.clone());
            st.events
                .push((rv, plural.to_string(), ns, kind.to_string(), obj));
        }
        self.changed.notify_waiters();
    }

    /// Deletes `key` ("ns/name"); `with_event: false` models a deletion
    /// whose event was lost to compaction.
    pub fn delete(&self, plural: &str, key: &str, with_event: bool) {
        {
            let mut st = self.store.lock();
            st.rv += 1;
            let rv = st.rv;
            let removed = st.objects.get_mut(plural).and_then(|m| m.remove(key));
            if let (Some(mut obj), true) = (removed, with_event) {
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                let (ns, _) = key_of(&obj);
                st.events
                    .push((rv, plural.to_string(), ns, "DELETED".into(), obj));
            }
        }
        // A silent deletion must not even wake watches (no bookmark may
        // cover it): it models history lost to compaction.
        if with_event {
            self.changed.notify_waiters();
        }
    }

    /// Forgets history: watches from before now get 410 Gone.
    pub fn compact(&self) {
        let mut st = self.store.lock();
        st.compacted = st.rv + 1;
        st.rv += 1;
    }

    /// A stored object; panics when absent.
    pub fn obj(&self, plural: &str, key: &str) -> Value {
        let st = self.store.lock();
        match st.objects.get(plural).and_then(|m| m.get(key)) {
            Some(o) => o.clone(),
            None => panic!("no {plural} {key}"),
        }
    }

    /// LIST requests served (every page counts).
    pub fn lists(&self) -> usize {
        self.store.lock().lists
    }

    /// WATCH requests served, as `plural@resourceVersion`.
    pub fn watches(&self) -> Vec<String> {
        self.store.lock().watches.clone()
    }

    /// The current (latest) resource version.
    pub fn resource_version(&self) -> u64 {
        self.store.lock().rv
    }

    /// Requires `Authorization: Bearer <token>` from now on (`None`: any).
    pub fn require_bearer(&self, token: Option<&str>) {
        self.store.lock().bearer = token.map(String::from);
    }

    /// Every `Authorization` header value received so far.
    pub fn authorizations(&self) -> Vec<String> {
        self.store.lock().authorizations.clone()
    }

    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(handle)
            .with_state(self.clone())
    }

    /// Serves on an ephemeral loopback port; returns `http://127.0.0.1:port`.
    pub async fn serve(&self) -> String {
        let addr = super::spawn_serve(super::loopback_listener().await, self.router());
        format!("http://{addr}")
    }

    /// Serves on `addr` (a port reserved earlier).
    pub async fn serve_at(&self, addr: SocketAddr) {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => panic!("binding {addr}: {e}"),
        };
        super::spawn_serve(listener, self.router());
    }
}

/// `/api/v1[/namespaces/<ns>]/<plural>` or `/apis/<g>/<v>[/namespaces/<ns>]/<plural>`.
fn parse_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/api/v1/").or_else(|| {
        path.strip_prefix("/apis/")
            .and_then(|p| p.splitn(3, '/').nth(2))
    })?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["namespaces", ns, plural] => Some((plural.to_string(), ns.to_string())),
        [plural] => Some((plural.to_string(), String::new())),
        _ => None,
    }
}

fn in_scope(obj_ns: &str, scope: &str) -> bool {
    scope.is_empty() || obj_ns == scope
}

async fn handle(
    State(fake): State<FakeKube>,
    uri: Uri,
    headers: axum::http::HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut st = fake.store.lock();
        let allowed = st
            .bearer
            .as_ref()
            .is_none_or(|t| auth == format!("Bearer {t}"));
        st.authorizations.push(auth);
        if !allowed {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
            return (StatusCode::UNAUTHORIZED, axum::Json(status)).into_response();
        }
    }
    let Some((plural, ns)) = parse_path(uri.path()) else {
        return (StatusCode::NOT_FOUND, "no such path").into_response();
    };
    if q.get("watch").map(String::as_str) == Some("true") {
        return watch(fake, plural, ns, q).await;
    }
    let mut st = fake.store.lock();
    st.lists += 1;
    let all: Vec<&Value> = st
        .objects
        .get(&plural)
        .map(|m| {
            m.values()
                .filter(|o| in_scope(o["metadata"]["namespace"].as_str().unwrap_or(""), &ns))
                .collect()
        })
        .unwrap_or_default();
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let start: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|v| (*v).clone())
        .collect();
    let next = start + page.len();
    let cont = if next < all.len() {
        next.to_string()
    } else {
        String::new()
    };
    let body = json!({
        "kind": "List", "apiVersion": "v1",
        "metadata": {"resourceVersion": st.rv.to_string(), "continue": cont},
        "items": page,
    });
    axum::Json(body).into_response()
}

async fn watch(fake: FakeKube, plural: String, ns: String, q: HashMap<String, String>) -> Response {
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = q.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let (gone, watch_len) = {
        let mut st = fake.store.lock();
        st.watches.push(format!("{plural}@{from}"));
        (from < st.compacted, st.watch_len)
    };
    tokio::spawn(async move {
        if gone {
            let line = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "too old resource version", "reason": "Expired", "code": 410}});
            let _ = tx.send(Bytes::from(format!("{line}\n"))).await;
            return;
        }
        let deadline = tokio::time::Instant::now() + watch_len;
        let mut cursor = from;
        loop {
            let notified = fake.changed.notified();
            let (lines, rv) = {
                let st = fake.store.lock();
                let lines: Vec<(u64, String)> = st
                    .events
                    .iter()
                    .filter(|(rv, p, ons, _, _)| *rv > cursor && *p == plural && in_scope(ons, &ns))
                    .map(|(rv, _, _, ty, obj)| {
                        (*rv, json!({"type": ty, "object": obj}).to_string())
                    })
                    .collect();
                (lines, st.rv)
            };
            for (rv, line) in lines {
                cursor = rv;
                if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                    return;
                }
            }
            if bookmarks && rv > cursor {
                // A bookmark moves the client past versions it had no events for.
                let line = json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                    "metadata": {"resourceVersion": rv.to_string()}}});
                cursor = rv;
                if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Response::builder()
        .header("Content-Type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

/// A Running pod as the API returns it: `ip`, one container `app` with one
/// TCP port `metrics` on `port`, on `node`, in `namespace`, with `labels`.
pub fn pod(namespace: &str, name: &str, ip: &str, port: u16, node: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace,
            "uid": format!("uid-{namespace}-{name}"),
            "labels": labels,
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "example/app:1.0", "ports": [
                {"name": "metrics", "containerPort": port, "protocol": "TCP"}]}]
        },
        "status": {
            "phase": "Running", "podIP": ip, "hostIP": "192.168.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "containerID": format!("containerd://{name}"), "ready": true}]
        }
    })
}
