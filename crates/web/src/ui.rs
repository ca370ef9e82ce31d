//! A server-rendered UI: plain HTML and one stylesheet, no JavaScript and no
//! build chain, readable on a laptop and a phone. Pages mirror Prometheus's
//! agent UI (Agent, Targets, Service discovery, Configuration, Flags,
//! Status) plus Remote write, and a per-target "last scrape" view.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tributary_model::Labels;

use crate::api::rfc3339;
use crate::server::WebState;

pub(crate) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/agent", get(agent))
        .route("/targets", get(targets))
        .route("/target", get(target))
        .route("/service-discovery", get(service_discovery))
        .route("/config", get(config))
        .route("/flags", get(flags))
        .route("/status", get(status))
        .route("/remote-write", get(remote_write))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}nav{background:#1f2937;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:1em}nav a{color:#e5e7eb;text-decoration:none}nav b{color:#fff}main{padding:1em;max-width:1200px}table{border-collapse:collapse;width:100%;font-size:.9em}td,th{border-bottom:1px solid #ddd;padding:.35em;text-align:left;vertical-align:top}.up{color:#15803d;font-weight:600}.down{color:#b91c1c;font-weight:600}.unknown{color:#6b7280}.lbl{display:inline-block;background:#eef2ff;border-radius:3px;padding:0 .3em;margin:1px;font-family:monospace;font-size:.85em}pre{background:#f3f4f6;padding:.8em;overflow:auto;font-size:.85em}input{padding:.3em}@media(max-width:700px){td,th{display:block}}";

pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'><title>{t} - Tributary</title><style>{STYLE}</style></head><body><nav><b>Tributary</b><a href=agent>Agent</a><a href=targets>Targets</a><a href=service-discovery>Service discovery</a><a href=remote-write>Remote write</a><a href=config>Configuration</a><a href=flags>Flags</a><a href=status>Status</a></nav><main><h2>{t}</h2>{body}</main></body></html>",
        t = esc(title)
    ))
}

fn labels_html(l: &Labels) -> String {
    let mut o = String::new();
    for l in l {
        let _ = write!(o, "<span class=lbl>{}=\"{}\"</span> ", esc(l.name), esc(l.value));
    }
    o
}

async fn agent(State(s): State<Arc<WebState>>) -> Html<String> {
    let pools = s.status.scrape_pools();
    let (up, total) = pools.iter().flat_map(|p| &p.active).fold((0, 0), |(u, t), a| {
        (u + usize::from(a.health.health == tributary_scrape::Health::Up), t + 1)
    });
    let body = format!(
        "<p>This Tributary instance runs in <b>agent mode</b>: it scrapes targets, keeps samples in a write-ahead log and forwards them with remote write. Querying, alerting and recording rules are not available.</p><p>Targets up: <b>{up}</b> of {total} in {} scrape pools.</p><p>Version {}.</p>",
        pools.len(),
        esc(&s.options.version)
    );
    page("Prometheus Agent", &body)
}

#[derive(Deserialize, Default)]
struct TargetFilter {
    search: Option<String>,
    health: Option<String>,
}

async fn targets(State(s): State<Arc<WebState>>, Query(f): Query<TargetFilter>) -> Html<String> {
    let search = f.search.unwrap_or_default();
    let health = f.health.unwrap_or_default();
    let mut o = format!(
        "<form><input name=search placeholder='Filter by endpoint or labels' value=\"{}\"> <select name=health><option value=''>All</option><option value=up{}>Up</option><option value=down{}>Down</option><option value=unknown{}>Unknown</option></select> <button>Filter</button></form>",
        esc(&search),
        if health == "up" { " selected" } else { "" },
        if health == "down" { " selected" } else { "" },
        if health == "unknown" { " selected" } else { "" },
    );
    for p in s.status.scrape_pools() {
        let rows: Vec<_> = p
            .active
            .iter()
            .filter(|t| health.is_empty() || t.health.health.as_str() == health)
            .filter(|t| search.is_empty() || t.target.url.contains(&search) || t.target.labels.to_string().contains(&search))
            .collect();
        let up = p.active.iter().filter(|t| t.health.health == tributary_scrape::Health::Up).count();
        let _ = write!(o, "<h3>{} ({up}/{} up)</h3><table><tr><th>Endpoint</th><th>State</th><th>Labels</th><th>Last scrape</th><th>Duration</th><th>Error</th></tr>", esc(&p.job), p.active.len());
        for t in rows {
            let h = &t.health;
            let _ = write!(
                o,
                "<tr><td><a href=\"target?url={u}\">{ue}</a></td><td class={c}>{c}</td><td>{l}</td><td>{ls}</td><td>{d:.3}s</td><td>{e}</td></tr>",
                u = esc(&url_encode(&t.target.url)),
                ue = esc(&t.target.url),
                c = h.health.as_str(),
                l = labels_html(&t.target.labels),
                ls = rfc3339(h.last_scrape),
                d = h.last_duration.as_secs_f64(),
                e = esc(&h.last_error)
            );
        }
        o.push_str("</table>");
    }
    page("Targets", &o)
}

fn url_encode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

#[derive(Deserialize)]
struct TargetQuery {
    url: String,
}

/// The last scrape of one target: what came back and why it failed.
async fn target(State(s): State<Arc<WebState>>, Query(q): Query<TargetQuery>) -> Html<String> {
    for p in s.status.scrape_pools() {
        if let Some(t) = p.active.iter().find(|t| t.target.url == q.url) {
            let h = &t.health;
            let l = &h.last;
            let mut headers = String::new();
            for (k, v) in &l.headers {
                let _ = writeln!(headers, "{}: {}", esc(k), esc(v));
            }
            let body = format!(
                "<p>Job <b>{job}</b>, state <span class={c}>{c}</span>, last scrape {ls} in {d:.3}s.</p><p>Error: <b>{err}</b></p><p>Labels: {labels}</p><p>Discovered labels: {disc}</p><h3>Response</h3><p>HTTP {st}, {ct}, {wire} bytes on the wire, {size} bytes decoded, {samples} samples, {added} new series.</p><pre>{headers}</pre><h3>First bytes of the body</h3><pre>{head}</pre>",
                job = esc(&p.job),
                c = h.health.as_str(),
                ls = rfc3339(h.last_scrape),
                d = h.last_duration.as_secs_f64(),
                err = esc(if h.last_error.is_empty() { "none" } else { &h.last_error }),
                labels = labels_html(&t.target.labels),
                disc = labels_html(&t.target.discovered),
                st = l.http_status,
                ct = esc(&l.content_type),
                wire = l.wire_bytes,
                size = l.body_bytes,
                samples = l.samples,
                added = l.series_added,
                head = esc(&l.body_head),
            );
            return page(&format!("Target {}", t.target.url), &body);
        }
    }
    page("Target", "<p>No active target with that URL.</p>")
}

async fn service_discovery(State(s): State<Arc<WebState>>) -> Html<String> {
    let mut o = String::new();
    for p in s.status.scrape_pools() {
        let _ = write!(o, "<h3>{} ({} active, {} dropped)</h3><table><tr><th>Discovered labels</th><th>Target labels</th></tr>", esc(&p.job), p.active.len(), p.dropped.len());
        for t in &p.active {
            let _ = write!(o, "<tr><td>{}</td><td>{}</td></tr>", labels_html(&t.target.discovered), labels_html(&t.target.labels));
        }
        for d in &p.dropped {
            let _ = write!(o, "<tr><td>{}</td><td><i>Dropped: {}</i></td></tr>", labels_html(&d.discovered), esc(&d.reason.to_string()));
        }
        o.push_str("</table>");
    }
    page("Service discovery", &o)
}

async fn config(State(s): State<Arc<WebState>>) -> Html<String> {
    page("Configuration", &format!("<pre>{}</pre>", esc(&s.status.config_yaml())))
}

async fn flags(State(s): State<Arc<WebState>>) -> Html<String> {
    let mut o = String::from("<table><tr><th>Flag</th><th>Value</th></tr>");
    for (k, v) in &s.options.flags {
        let _ = write!(o, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    o.push_str("</table>");
    page("Command-line flags", &o)
}

async fn status(State(s): State<Arc<WebState>>) -> Html<String> {
    let (ok, at) = s.status.reload_status();
    let o = format!(
        "<table><tr><td>Version</td><td>{}</td></tr><tr><td>Revision</td><td>{}</td></tr><tr><td>Start time</td><td>{}</td></tr><tr><td>Configuration reload</td><td>{}</td></tr><tr><td>Last successful configuration reload</td><td>{}</td></tr><tr><td>Storage path</td><td>{}</td></tr></table>",
        esc(&s.options.version),
        esc(&s.options.revision),
        rfc3339(Some(s.started)),
        if ok { "Successful" } else { "Unsuccessful" },
        rfc3339(at),
        esc(&s.options.storage_path),
    );
    page("Runtime & build information", &o)
}

async fn remote_write(State(s): State<Arc<WebState>>) -> Html<String> {
    let v = s.status.remote_status();
    let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
    page("Remote write", &format!("<pre>{}</pre>", esc(&pretty)))
}
