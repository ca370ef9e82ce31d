//! `/api/v1`: the endpoints Prometheus serves in agent mode, same JSON.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tributary_model::Labels;
use tributary_scrape::{ActiveTarget, PoolSnapshot};

use crate::server::WebState;

pub(crate) fn routes() -> Router<Arc<WebState>> {
    let mut r = Router::new()
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/scrape_pools", get(scrape_pools))
        .route("/api/v1/targets/last_scrape", get(last_scrape))
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
    r
}

fn success(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

fn error(code: StatusCode, kind: &str, msg: &str) -> Response {
    (code, Json(json!({"status": "error", "errorType": kind, "error": msg}))).into_response()
}

async fn unavailable() -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, "execution", "unavailable with Prometheus Agent")
}

pub(crate) fn labels_json(l: &Labels) -> Value {
    let mut m = Map::new();
    for l in l {
        m.insert(l.name.to_string(), Value::String(l.value.to_string()));
    }
    Value::Object(m)
}

pub(crate) fn rfc3339(t: Option<SystemTime>) -> String {
    match t {
        Some(t) => humantime::format_rfc3339_nanos(t).to_string(),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}

fn go_duration(d: Duration) -> String {
    // Prometheus prints these as model.Duration strings (1m, 10s, 1m30s).
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [("y", 365 * 86_400_000u64), ("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{}", rest / size, unit));
            rest %= size;
        }
    }
    out
}

#[derive(Deserialize, Default)]
struct TargetsQuery {
    state: Option<String>,
    #[serde(rename = "scrapePool")]
    scrape_pool: Option<String>,
}

fn active_json(pool: &PoolSnapshot, t: &ActiveTarget) -> Value {
    let h = &t.health;
    json!({
        "discoveredLabels": labels_json(&t.target.discovered),
        "labels": labels_json(&t.target.labels),
        "scrapePool": pool.job,
        "scrapeUrl": t.target.url,
        "globalUrl": t.target.url,
        "lastError": h.last_error,
        "lastScrape": rfc3339(h.last_scrape),
        "lastScrapeDuration": h.last_duration.as_secs_f64(),
        "health": h.health.as_str(),
        "scrapeInterval": go_duration(t.target.interval),
        "scrapeTimeout": go_duration(t.target.timeout),
    })
}

async fn targets(State(s): State<Arc<WebState>>, Query(q): Query<TargetsQuery>) -> Response {
    let pools = s.status.scrape_pools();
    let state = q.state.unwrap_or_else(|| "any".into()).to_lowercase();
    let want_active = state == "any" || state == "active";
    let want_dropped = state == "any" || state == "dropped";
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    let mut dropped_counts = BTreeMap::new();
    for p in &pools {
        if q.scrape_pool.as_ref().is_some_and(|sp| *sp != p.job) {
            continue;
        }
        if want_active {
            active.extend(p.active.iter().map(|t| active_json(p, t)));
        }
        if want_dropped {
            dropped.extend(p.dropped.iter().map(|d| {
                json!({
                    "discoveredLabels": labels_json(&d.discovered),
                    "scrapePool": p.job,
                    "dropReason": d.reason.to_string(),
                })
            }));
        }
        dropped_counts.insert(p.job.clone(), p.dropped.len());
    }
    let mut data = json!({"activeTargets": active, "droppedTargets": dropped});
    if want_dropped {
        data["droppedTargetCounts"] = json!(dropped_counts);
    }
    success(data)
}

async fn scrape_pools(State(s): State<Arc<WebState>>) -> Response {
    let pools: Vec<String> = s.status.scrape_pools().into_iter().map(|p| p.job).collect();
    success(json!({ "scrapePools": pools }))
}

#[derive(Deserialize)]
struct LastScrapeQuery {
    #[serde(rename = "scrapeUrl")]
    scrape_url: String,
}

/// Tributary's addition: the last response of a target, for debugging.
async fn last_scrape(State(s): State<Arc<WebState>>, Query(q): Query<LastScrapeQuery>) -> Response {
    for p in s.status.scrape_pools() {
        for t in &p.active {
            if t.target.url != q.scrape_url {
                continue;
            }
            let h = &t.health;
            let l = &h.last;
            return success(json!({
                "scrapePool": p.job,
                "scrapeUrl": t.target.url,
                "health": h.health.as_str(),
                "lastError": h.last_error,
                "lastScrape": rfc3339(h.last_scrape),
                "lastScrapeDuration": h.last_duration.as_secs_f64(),
                "httpStatus": l.http_status,
                "contentType": l.content_type,
                "headers": l.headers,
                "wireBytes": l.wire_bytes,
                "bodyBytes": l.body_bytes,
                "bodyHead": l.body_head,
                "samples": l.samples,
                "seriesAdded": l.series_added,
            }));
        }
    }
    error(StatusCode::NOT_FOUND, "not_found", "no active target with that scrapeUrl")
}

async fn status_config(State(s): State<Arc<WebState>>) -> Response {
    success(json!({ "yaml": s.status.config_yaml() }))
}

async fn status_flags(State(s): State<Arc<WebState>>) -> Response {
    let m: BTreeMap<&str, &str> = s.options.flags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    success(json!(m))
}

async fn status_buildinfo(State(s): State<Arc<WebState>>) -> Response {
    success(json!({
        "version": s.options.version,
        "revision": s.options.revision,
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

async fn status_runtimeinfo(State(s): State<Arc<WebState>>) -> Response {
    let (ok, at) = s.status.reload_status();
    let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
    success(json!({
        "startTime": rfc3339(Some(s.started)),
        "CWD": cwd,
        "hostname": std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default(),
        "serverTime": rfc3339(Some(SystemTime::now())),
        "reloadConfigSuccess": ok,
        "lastConfigTime": rfc3339(at),
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "GOMEMLIMIT": i64::MAX,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": "",
    }))
}

async fn status_walreplay(State(s): State<Arc<WebState>>) -> Response {
    let done = s.ready.load(std::sync::atomic::Ordering::SeqCst);
    success(json!({"min": 0, "max": 0, "current": if done { 0 } else { -1 }}))
}

async fn status_remote_write(State(s): State<Arc<WebState>>) -> Response {
    success(s.status.remote_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_prometheus() {
        assert_eq!(go_duration(Duration::from_secs(60)), "1m");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(800)), "800ms");
    }
}
