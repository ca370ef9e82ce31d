//! `/api/v1`: the endpoints Prometheus serves in agent mode, with the same
//! JSON (field names, order of targets, Go time and duration formats), the
//! query endpoints answering 422 as Prometheus does, and Tributary's
//! additions: `targets/last_scrape`, `relabel_debugger` and
//! `status/remote_write`.
//!
//! 2.x/3.x differences follow 3.x: dropped targets carry `scrapePool`,
//! `droppedTargetCounts` is present (`null` when dropped targets are not
//! asked for), runtimeinfo has `hostname`, `serverTime` and `GOMEMLIMIT`.
//! Tributary adds `dropReason` to dropped targets.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::ser::SerializeMap;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tributary_model::Labels;
use tributary_scrape::{ActiveTarget, PoolSnapshot};

use crate::relabel_debug::{self, DebugInputError};
use crate::server::{WebOptions, WebState};
use crate::status::{go_time, go_time_or_zero, go_time_seconds};

pub(crate) fn routes(cors_origin: &str) -> Router<Arc<WebState>> {
    let cors = Arc::new(Cors::new(cors_origin));
    let mut r = Router::new()
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/targets/metadata", get(targets_metadata))
        .route("/api/v1/targets/relabel_steps", get(relabel_steps))
        .route("/api/v1/targets/last_scrape", get(last_scrape))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/scrape_pools", get(scrape_pools))
        .route("/api/v1/relabel_debugger", post(relabel_debugger))
        .route("/api/v1/status/config", get(status_config))
        .route("/api/v1/status/flags", get(status_flags))
        .route("/api/v1/status/buildinfo", get(status_buildinfo))
        .route("/api/v1/status/runtimeinfo", get(status_runtimeinfo))
        .route("/api/v1/status/walreplay", get(status_walreplay))
        .route("/api/v1/status/remote_write", get(status_remote_write));
    for path in [
        "/api/v1/query",
        "/api/v1/query_range",
        "/api/v1/query_exemplars",
        "/api/v1/format_query",
        "/api/v1/parse_query",
        "/api/v1/labels",
        "/api/v1/label/{name}/values",
        "/api/v1/series",
        "/api/v1/alertmanagers",
        "/api/v1/status/tsdb",
        "/api/v1/status/tsdb/blocks",
        "/api/v1/alerts",
        "/api/v1/rules",
        "/api/v1/admin/tsdb/{op}",
    ] {
        r = r.route(path, any(unavailable));
    }
    r.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let cors = cors.clone();
            async move { cors.apply(req, next).await }
        },
    ))
}

/// `--web.cors.origin` on API answers, as Prometheus's `SetCORS`: every
/// answer varies on Origin; with an Origin header the CORS headers are set
/// and the origin is allowed when the (anchored) regex matches; the
/// default `.*` allows `*`. OPTIONS is answered for every API path.
struct Cors {
    allow_any: bool,
    origin: Option<regex::Regex>,
}

impl Cors {
    fn new(pattern: &str) -> Cors {
        let allow_any = pattern == ".*";
        let origin = regex::Regex::new(&format!("^(?:{pattern})$")).ok();
        if origin.is_none() {
            tracing::warn!(
                pattern,
                "invalid --web.cors.origin, cross-origin requests are refused"
            );
        }
        Cors { allow_any, origin }
    }

    async fn apply(&self, req: Request, next: Next) -> Response {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(str::to_string);
        let mut res = if req.method() == Method::OPTIONS {
            Json(json!({"status": "success"})).into_response()
        } else {
            next.run(req).await
        };
        let h = res.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = origin else { return res };
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Accept, Authorization, Content-Type, Origin"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Date"),
        );
        if self.allow_any {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else if self.origin.as_ref().is_some_and(|re| re.is_match(&origin)) {
            if let Ok(v) = HeaderValue::from_str(&origin) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            }
        }
        res
    }
}

/// Query parameters in request order; Go's `Query().Get` takes the first.
type Params = Query<Vec<(String, String)>>;

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Prometheus's response envelope, fields in its order.
#[derive(Serialize)]
struct Envelope<T: Serialize> {
    status: &'static str,
    data: T,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'a str,
    error: &'a str,
}

fn success<T: Serialize>(data: T) -> Response {
    Json(Envelope {
        status: "success",
        data,
    })
    .into_response()
}

fn error(code: StatusCode, kind: &str, msg: &str) -> Response {
    (
        code,
        Json(ErrorBody {
            status: "error",
            error_type: kind,
            error: msg,
        }),
    )
        .into_response()
}

fn bad_data(msg: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_data", msg)
}

async fn unavailable() -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "execution",
        "unavailable with Prometheus Agent",
    )
}

/// Labels as a JSON object (sorted by name, as Prometheus writes them),
/// serialized straight from the label set.
pub struct LabelsJson<'a>(pub &'a Labels);

impl Serialize for LabelsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in self.0 {
            m.serialize_entry(l.name, l.value)?;
        }
        m.end()
    }
}

pub(crate) fn labels_json(l: &Labels) -> Value {
    let mut m = Map::new();
    for l in l {
        m.insert(l.name.to_string(), Value::String(l.value.to_string()));
    }
    Value::Object(m)
}

/// How a target's URL looks from outside, as Prometheus's `globalUrl`:
/// a localhost target gets the external URL's host (and, when it is this
/// very process, its scheme and port too).
pub(crate) struct GlobalUrl {
    listen_port: String,
    scheme: String,
    /// External host, with port when the external URL has one.
    host: String,
}

impl GlobalUrl {
    pub(crate) fn from_options(o: &WebOptions) -> GlobalUrl {
        let listen_port = o
            .listen
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
        let external = o.flag("web.external-url").filter(|u| !u.is_empty());
        let (scheme, host) = match external.and_then(|u| u.split_once("://")) {
            Some((scheme, rest)) => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                (scheme.to_string(), host.to_string())
            }
            // Prometheus's default external URL: http://<hostname>:<port>/.
            None => ("http".to_string(), format!("{}:{listen_port}", hostname())),
        };
        GlobalUrl {
            listen_port,
            scheme,
            host,
        }
    }

    pub(crate) fn rewrite(&self, url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_string();
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (host, port) = split_host_port(authority);
        if !matches!(host, "127.0.0.1" | "localhost" | "::1") {
            return url.to_string();
        }
        if port == self.listen_port {
            return format!("{}://{}{tail}", self.scheme, self.host);
        }
        let (ext_host, _) = split_host_port(&self.host);
        let ext_host = if ext_host.contains(':') {
            format!("[{ext_host}]")
        } else {
            ext_host.to_string()
        };
        match port {
            "" => format!("{scheme}://{ext_host}{tail}"),
            p => format!("{scheme}://{ext_host}:{p}{tail}"),
        }
    }
}

/// `host:port`, `[v6]:port`, `host` → (host without brackets, port or "").
fn split_host_port(authority: &str) -> (&str, &str) {
    if let Some(v6) = authority.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':').unwrap_or("")),
            None => (authority, ""),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p),
        _ => (authority, ""),
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// One `activeTargets` entry, fields in Prometheus's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiTarget<'a> {
    discovered_labels: LabelsJson<'a>,
    labels: LabelsJson<'a>,
    scrape_pool: &'a str,
    scrape_url: &'a str,
    global_url: String,
    last_error: &'a str,
    last_scrape: String,
    last_scrape_duration: f64,
    health: &'static str,
    scrape_interval: &'a str,
    scrape_timeout: &'a str,
}

fn api_target<'a>(
    pool: &'a PoolSnapshot,
    t: &'a ActiveTarget,
    global: &GlobalUrl,
) -> ApiTarget<'a> {
    let h = &t.health;
    let internal = &t.target.internal;
    ApiTarget {
        discovered_labels: LabelsJson(&t.target.discovered),
        labels: LabelsJson(&t.target.labels),
        scrape_pool: &pool.job,
        scrape_url: &t.target.url,
        global_url: global.rewrite(&t.target.url),
        last_error: &h.last_error,
        last_scrape: go_time_or_zero(h.last_scrape),
        last_scrape_duration: h.last_duration.as_secs_f64(),
        health: h.health.as_str(),
        // The label values as relabeling left them, as Prometheus shows.
        scrape_interval: internal.get("__scrape_interval__").unwrap_or(""),
        scrape_timeout: internal.get("__scrape_timeout__").unwrap_or(""),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiDroppedTarget<'a> {
    discovered_labels: LabelsJson<'a>,
    scrape_pool: &'a str,
    /// Tributary's addition: why relabeling or validation dropped it.
    drop_reason: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetDiscovery<'a> {
    active_targets: Vec<ApiTarget<'a>>,
    dropped_targets: Vec<ApiDroppedTarget<'a>>,
    dropped_target_counts: Option<BTreeMap<&'a str, usize>>,
}

async fn targets(State(s): State<Arc<WebState>>, Query(q): Params) -> Response {
    let pools = s.status.scrape_pools();
    let state = param(&q, "state").unwrap_or("").to_lowercase();
    let pool_filter = param(&q, "scrapePool").filter(|p| !p.is_empty());
    let show_active = matches!(state.as_str(), "" | "any" | "active");
    let show_dropped = matches!(state.as_str(), "" | "any" | "dropped");
    let global = GlobalUrl::from_options(&s.options);
    let wanted = |p: &&PoolSnapshot| pool_filter.is_none_or(|f| f == p.job);
    let mut res = TargetDiscovery {
        active_targets: Vec::new(),
        dropped_targets: Vec::new(),
        dropped_target_counts: None,
    };
    if show_active {
        for p in pools.iter().filter(wanted) {
            res.active_targets
                .extend(p.active.iter().map(|t| api_target(p, t, &global)));
        }
    }
    if show_dropped {
        for p in pools.iter().filter(wanted) {
            res.dropped_targets
                .extend(p.dropped.iter().map(|d| ApiDroppedTarget {
                    discovered_labels: LabelsJson(&d.discovered),
                    scrape_pool: &p.job,
                    drop_reason: d.reason.to_string(),
                }));
        }
        // Counts cover every pool, whatever the scrapePool filter (as Prometheus).
        res.dropped_target_counts = Some(
            pools
                .iter()
                .map(|p| (p.job.as_str(), p.dropped.len()))
                .collect(),
        );
    }
    success(res)
}

async fn scrape_pools(State(s): State<Arc<WebState>>) -> Response {
    let mut pools: Vec<String> = s.status.scrape_pools().into_iter().map(|p| p.job).collect();
    pools.sort();
    success(json!({ "scrapePools": pools }))
}

/// `match_target` is a selector of `name="value"` equality matchers; the
/// regex and negative matchers of PromQL are not supported here.
fn target_matches(target: &Labels, selector: &Labels) -> bool {
    selector
        .iter()
        .all(|m| target.get(m.name).unwrap_or("") == m.value)
}

async fn targets_metadata(State(s): State<Arc<WebState>>, Query(q): Params) -> Response {
    let limit = match param(&q, "limit").filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => return bad_data("limit must be a number"),
        },
    };
    let selector = match param(&q, "match_target").filter(|m| !m.is_empty()) {
        None => Labels::default(),
        Some(m) => match relabel_debug::parse_labels(m) {
            Ok(l) => l,
            Err(e) => return bad_data(&format!("invalid parameter \"match_target\": {e}")),
        },
    };
    let metric = param(&q, "metric").unwrap_or("");
    let Some(all) = s.status.target_metadata() else {
        return success(json!([]));
    };
    let mut out = Vec::new();
    for t in all.iter().filter(|t| target_matches(&t.target, &selector)) {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        for m in t
            .metrics
            .iter()
            .filter(|m| metric.is_empty() || m.family == metric)
        {
            let mut row = json!({"target": labels_json(&t.target), "type": m.kind.as_str(), "help": m.help, "unit": m.unit});
            if metric.is_empty() {
                row["metric"] = json!(m.family);
            }
            out.push(row);
        }
    }
    success(Value::Array(out))
}

/// `/api/v1/metadata`: metadata per metric name over all targets, each
/// distinct (type, help, unit) once.
async fn metadata(State(s): State<Arc<WebState>>, Query(q): Params) -> Response {
    let metric = param(&q, "metric").unwrap_or("");
    let mut by_name: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let all = s.status.target_metadata().unwrap_or_default();
    for m in all.iter().flat_map(|t| &t.metrics) {
        if !metric.is_empty() && m.family != metric {
            continue;
        }
        let row = json!({"type": m.kind.as_str(), "help": m.help, "unit": m.unit});
        let rows = by_name.entry(m.family.as_str()).or_default();
        if !rows.contains(&row) {
            rows.push(row);
        }
    }
    success(json!(by_name))
}

async fn relabel_steps(State(s): State<Arc<WebState>>, Query(q): Params) -> Response {
    let Some(pool) = param(&q, "scrapePool").filter(|p| !p.is_empty()) else {
        return bad_data("no scrapePool parameter provided");
    };
    let Some(labels) = param(&q, "labels").filter(|l| !l.is_empty()) else {
        return bad_data("no labels parameter provided");
    };
    let labels = match serde_json::from_str::<Map<String, Value>>(labels)
        .map_err(|e| e.to_string())
        .and_then(|m| relabel_debug::labels_from_json(&m).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => return bad_data(&format!("error parsing labels: {e}")),
    };
    let rules = match job_rules(&s, pool) {
        Ok(r) => r,
        Err(e) => return bad_data(&format!("error retrieving scrape config: {e}")),
    };
    success(relabel_debug::steps_json(&relabel_debug::debug_steps(
        &rules, &labels,
    )))
}

/// A job's `relabel_configs` from the loaded configuration.
pub(crate) fn job_rules(
    s: &WebState,
    job: &str,
) -> Result<Vec<tributary_relabel::RelabelConfig>, String> {
    let cfg = s
        .status
        .config()
        .ok_or_else(|| "configuration not available".to_string())?;
    cfg.scrape_configs
        .iter()
        .find(|c| c.job_name == job)
        .map(|c| c.relabel_configs.clone())
        .ok_or_else(|| format!("scrape pool {job:?} not found"))
}

/// Tributary's relabel debugger: `{"labels": {...} | "text", "rules":
/// "<yaml>"}` or `{"labels": ..., "scrapePool": "job"}` to use a job's
/// rules. Answers Prometheus's `steps` plus the input and the outcome.
async fn relabel_debugger(State(s): State<Arc<WebState>>, body: axum::body::Bytes) -> Response {
    let req: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_data(&format!("request body must be a JSON object: {e}")),
    };
    let labels = match req.get("labels") {
        Some(Value::Object(m)) => relabel_debug::labels_from_json(m),
        Some(Value::String(text)) => relabel_debug::parse_labels(text),
        _ => Err(DebugInputError::Labels(
            "\"labels\" must be an object or a string".into(),
        )),
    };
    let labels = match labels {
        Ok(l) => l,
        Err(e) => return bad_data(&e.to_string()),
    };
    let rules = match (req.get("rules"), req.get("scrapePool")) {
        (Some(Value::String(yaml)), _) => {
            relabel_debug::parse_rules(yaml).map_err(|e| e.to_string())
        }
        (None, Some(Value::String(job))) => job_rules(&s, job),
        _ => Err("either \"rules\" (YAML text) or \"scrapePool\" is required".to_string()),
    };
    let rules = match rules {
        Ok(r) => r,
        Err(e) => return bad_data(&e),
    };
    let steps = relabel_debug::debug_steps(&rules, &labels);
    success(relabel_debug::debugger_json(&labels, &steps))
}

/// Tributary's addition: the last response of a target, for debugging.
async fn last_scrape(State(s): State<Arc<WebState>>, Query(q): Params) -> Response {
    let Some(url) = param(&q, "scrapeUrl") else {
        return bad_data("no scrapeUrl parameter provided");
    };
    for p in s.status.scrape_pools() {
        if let Some(t) = p.active.iter().find(|t| t.target.url == url) {
            return success(last_scrape_json(&p, t));
        }
    }
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no active target with that scrapeUrl",
    )
}

fn last_scrape_json(p: &PoolSnapshot, t: &ActiveTarget) -> Value {
    let h = &t.health;
    let l = &h.last;
    let headers: Vec<Value> = l.headers.iter().map(|(k, v)| json!([k, v])).collect();
    json!({
        "scrapePool": p.job,
        "scrapeUrl": t.target.url,
        "health": h.health.as_str(),
        "lastError": h.last_error,
        "lastScrape": go_time_or_zero(h.last_scrape),
        "lastScrapeDuration": h.last_duration.as_secs_f64(),
        "httpStatus": l.http_status,
        "contentType": l.content_type,
        "headers": headers,
        "wireBytes": l.wire_bytes,
        "bodyBytes": l.body_bytes,
        "bodyHead": l.body_head,
        "samples": l.samples,
        "seriesAdded": l.series_added,
        "parseError": crate::ui::parse_error_position(&h.last_error).map(|(line, col)| json!({"line": line, "column": col})),
    })
}

async fn status_config(State(s): State<Arc<WebState>>) -> Response {
    success(json!({ "yaml": s.status.config_yaml() }))
}

async fn status_flags(State(s): State<Arc<WebState>>) -> Response {
    let m: BTreeMap<&str, &str> = s
        .options
        .flags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    success(json!(m))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo<'a> {
    version: &'a str,
    revision: &'a str,
    branch: &'a str,
    build_user: &'a str,
    build_date: &'a str,
    go_version: &'a str,
}

fn build_info(o: &WebOptions) -> BuildInfo<'_> {
    BuildInfo {
        version: &o.version,
        revision: &o.revision,
        branch: "",
        build_user: "",
        build_date: "",
        go_version: "",
    }
}

async fn status_buildinfo(State(s): State<Arc<WebState>>) -> Response {
    success(build_info(&s.options))
}

/// `/version`: the build info without the API envelope.
pub(crate) async fn version(State(s): State<Arc<WebState>>) -> Response {
    Json(build_info(&s.options)).into_response()
}

/// Prometheus 3.x `RuntimeInfo`, fields in its order.
#[derive(Serialize)]
struct RuntimeInfo {
    #[serde(rename = "startTime")]
    start_time: String,
    #[serde(rename = "CWD")]
    cwd: String,
    hostname: String,
    #[serde(rename = "serverTime")]
    server_time: String,
    #[serde(rename = "reloadConfigSuccess")]
    reload_config_success: bool,
    #[serde(rename = "lastConfigTime")]
    last_config_time: String,
    #[serde(rename = "corruptionCount")]
    corruption_count: i64,
    #[serde(rename = "goroutineCount")]
    goroutine_count: usize,
    #[serde(rename = "GOMAXPROCS")]
    gomaxprocs: usize,
    #[serde(rename = "GOMEMLIMIT")]
    gomemlimit: i64,
    #[serde(rename = "GOGC")]
    gogc: String,
    #[serde(rename = "GODEBUG")]
    godebug: String,
    #[serde(rename = "storageRetention")]
    storage_retention: String,
}

async fn status_runtimeinfo(State(s): State<Arc<WebState>>) -> Response {
    let (ok, at) = s.status.reload_status();
    // The closest analogue of a goroutine count: live tokio tasks.
    let tasks = tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks());
    success(RuntimeInfo {
        start_time: go_time(s.started),
        cwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        hostname: hostname(),
        server_time: go_time(SystemTime::now()),
        reload_config_success: ok,
        last_config_time: go_time_seconds(at),
        corruption_count: 0,
        goroutine_count: tasks,
        gomaxprocs: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        gomemlimit: i64::MAX,
        gogc: String::new(),
        godebug: String::new(),
        storage_retention: String::new(),
    })
}

#[derive(Serialize)]
struct WalReplay {
    min: i64,
    max: i64,
    current: i64,
}

/// The agent WAL is replayed before the server reports ready; until then
/// Prometheus answers its storage's "not ready" error.
async fn status_walreplay(State(s): State<Arc<WebState>>) -> Response {
    if !s.ready.load(Ordering::SeqCst) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "TSDB not ready",
        );
    }
    success(WalReplay {
        min: 0,
        max: 0,
        current: 0,
    })
}

async fn status_remote_write(State(s): State<Arc<WebState>>) -> Response {
    match s.status.remote_write_status() {
        Some(typed) => success(serde_json::to_value(typed).unwrap_or(Value::Null)),
        None => success(s.status.remote_status()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(listen: &str, external: &str) -> GlobalUrl {
        let o = WebOptions {
            listen: listen.into(),
            route_prefix: "/".into(),
            lifecycle: false,
            flags: vec![("web.external-url".into(), external.into())],
            version: String::new(),
            revision: String::new(),
            storage_path: String::new(),
            read_timeout: crate::DEFAULT_READ_TIMEOUT,
        };
        GlobalUrl::from_options(&o)
    }

    #[test]
    fn global_url_rewrites_only_localhost() {
        let g = global("0.0.0.0:9090", "https://prom.example:443/agent");
        assert_eq!(
            g.rewrite("http://127.0.0.1:9100/metrics"),
            "http://prom.example:9100/metrics"
        );
        assert_eq!(
            g.rewrite("http://localhost:9090/metrics"),
            "https://prom.example:443/metrics"
        );
        assert_eq!(
            g.rewrite("http://[::1]:9100/m?x=1"),
            "http://prom.example:9100/m?x=1"
        );
        assert_eq!(
            g.rewrite("http://10.1.2.3:9100/metrics"),
            "http://10.1.2.3:9100/metrics"
        );
    }

    #[test]
    fn host_port_split_handles_ipv6() {
        assert_eq!(split_host_port("[::1]:80"), ("::1", "80"));
        assert_eq!(split_host_port("a:1"), ("a", "1"));
        assert_eq!(split_host_port("a"), ("a", ""));
    }
}
