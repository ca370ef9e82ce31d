//! A server-rendered UI: plain HTML forms and one inline stylesheet, no
//! JavaScript and no build chain, readable on a laptop and a phone. Pages
//! mirror Prometheus's agent UI (Agent, Targets, Service discovery,
//! Configuration, Flags, Status) plus Remote write, a per-target "last
//! scrape" view and the relabel debugger.
//!
//! Large installations: the targets and service-discovery pages filter on
//! the server and render one page of rows at a time ([`PAGE_SIZE`]), so
//! 10,000 targets cost one pass over the snapshot and a bounded page of
//! HTML. Every link carries the route prefix.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use tributary_model::Labels;
use tributary_relabel::RelabelConfig;
use tributary_scrape::{ActiveTarget, Health, PoolSnapshot};

use crate::relabel_debug;
use crate::server::WebState;
use crate::status::{go_time_or_zero, RemoteWriteStatus};

/// Rows per page on the targets and service-discovery pages.
pub const PAGE_SIZE: usize = 200;

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
        .route("/relabel", get(relabel))
}

type Params = Query<Vec<(String, String)>>;

fn param<'a>(q: &'a [(String, String)], name: &str) -> &'a str {
    q.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

const STYLE: &str = "*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:0;color:#1f2937;background:#fff}\
nav{background:#1f2937;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:.4em 1.1em;align-items:center}nav a{color:#d1d5db;text-decoration:none}nav a.on{color:#fff;font-weight:600;border-bottom:2px solid #60a5fa}nav b{color:#fff;margin-right:.5em}\
main{padding:1em;max-width:1400px}h2{margin:.2em 0 .6em}h3{margin:1.2em 0 .4em}\
table{border-collapse:collapse;width:100%;font-size:.9em}td,th{border-bottom:1px solid #e5e7eb;padding:.35em .4em;text-align:left;vertical-align:top}th{background:#f9fafb}\
.up{color:#15803d;font-weight:600}.down{color:#b91c1c;font-weight:600}.unknown{color:#6b7280;font-weight:600}.err{color:#b91c1c;word-break:break-word}\
.lbl{display:inline-block;background:#eef2ff;border-radius:3px;padding:0 .3em;margin:1px;font-family:ui-monospace,monospace;font-size:.85em;word-break:break-all}\
.add{background:#dcfce7}.del{background:#fee2e2;text-decoration:line-through}.chg{background:#fef9c3}\
pre{background:#f3f4f6;padding:.8em;overflow:auto;font-size:.85em;max-width:100%}pre .hl{background:#fecaca;display:block}\
form.f{display:flex;flex-wrap:wrap;gap:.5em;margin-bottom:1em}input,select,textarea,button{font:inherit;padding:.35em}textarea{width:100%;font-family:ui-monospace,monospace;font-size:.85em}\
.cards{display:flex;flex-wrap:wrap;gap:.8em}a.card{text-decoration:none;color:inherit}.card{border:1px solid #e5e7eb;border-radius:6px;padding:.6em 1em;min-width:9em}.card b{display:block;font-size:1.5em}\
.muted{color:#6b7280}.pager{margin:.8em 0}.pager a{margin-right:1em}\
@media(max-width:700px){table.r thead{display:none}table.r tr{display:block;border-bottom:2px solid #d1d5db;padding:.3em 0}table.r td{display:block;border:0;padding:.15em .3em}table.r td[data-h]:before{content:attr(data-h) ': ';font-weight:600;color:#6b7280}}";

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

pub(crate) fn url_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

const NAV: [(&str, &str); 9] = [
    ("agent", "Agent"),
    ("targets", "Targets"),
    ("service-discovery", "Service discovery"),
    ("remote-write", "Remote write"),
    ("relabel", "Relabel debugger"),
    ("config", "Configuration"),
    ("flags", "Flags"),
    ("status", "Runtime & build info"),
    ("metrics", "Metrics"),
];

fn page(s: &WebState, current: &str, title: &str, body: &str) -> Html<String> {
    let prefix = s.options.prefix();
    let mut nav = String::new();
    for (path, name) in NAV {
        let class = if path == current { " class=on" } else { "" };
        let _ = write!(nav, "<a{class} href=\"{}/{path}\">{name}</a>", esc(prefix));
    }
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'><title>{t} - Tributary</title><style>{STYLE}</style></head><body><nav><b>Tributary agent</b>{nav}</nav><main><h2>{t}</h2>{body}</main></body></html>",
        t = esc(title)
    ))
}

fn labels_html(l: &Labels) -> String {
    let mut o = String::new();
    for l in l {
        let _ = write!(
            o,
            "<span class=lbl>{}=\"{}\"</span> ",
            esc(l.name),
            esc(l.value)
        );
    }
    o
}

/// Labels of `after` marked against `before`: added, changed, removed.
fn labels_diff_html(before: &Labels, after: &Labels) -> String {
    let mut o = String::new();
    for l in after {
        let class = match before.get(l.name) {
            None => " add",
            Some(v) if v != l.value => " chg",
            Some(_) => "",
        };
        let _ = write!(
            o,
            "<span class='lbl{class}'>{}=\"{}\"</span> ",
            esc(l.name),
            esc(l.value)
        );
    }
    for l in before.iter().filter(|l| !after.has(l.name)) {
        let _ = write!(
            o,
            "<span class='lbl del'>{}=\"{}\"</span> ",
            esc(l.name),
            esc(l.value)
        );
    }
    o
}

fn ago(t: Option<SystemTime>) -> String {
    let Some(t) = t else { return "never".into() };
    match SystemTime::now().duration_since(t) {
        Ok(d) => format!("{} ago", short_duration(d)),
        Err(_) => "just now".into(),
    }
}

fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..=119 => format!("{s}s"),
        120..=7199 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

fn health_counts(pools: &[PoolSnapshot]) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for t in pools.iter().flat_map(|p| &p.active) {
        match t.health.health {
            Health::Up => c.0 += 1,
            Health::Down => c.1 += 1,
            Health::Unknown => c.2 += 1,
        }
    }
    c
}

async fn agent(State(s): State<Arc<WebState>>) -> Html<String> {
    let pools = s.status.scrape_pools();
    let (up, down, unknown) = health_counts(&pools);
    let dropped: usize = pools.iter().map(|p| p.dropped.len()).sum();
    let (reload_ok, reload_at) = s.status.reload_status();
    let p = esc(s.options.prefix());
    let mut o = String::from("<p>This instance runs in <b>agent mode</b>: it scrapes targets, keeps samples in a write-ahead log and forwards them with remote write. Querying, alerting and recording rules are not available.</p><div class=cards>");
    let _ = write!(
        o,
        "<a class=card href=\"{p}/targets?health=up\"><b class=up>{up}</b>targets up</a>"
    );
    let _ = write!(
        o,
        "<a class=card href=\"{p}/targets?health=down\"><b class=down>{down}</b>targets down</a>"
    );
    let _ = write!(o, "<a class=card href=\"{p}/targets?health=unknown\"><b class=unknown>{unknown}</b>not scraped yet</a>");
    let _ = write!(
        o,
        "<a class=card href=\"{p}/service-discovery\"><b>{dropped}</b>dropped by relabeling</a>"
    );
    let _ = write!(
        o,
        "<div class=card><b>{}</b>scrape pools</div></div>",
        pools.len()
    );
    let _ = write!(
        o,
        "<h3>Configuration</h3><p>Last reload {} at {}.</p>",
        if reload_ok {
            "<span class=up>succeeded</span>"
        } else {
            "<span class=down>failed; the previous configuration is still running</span>"
        },
        esc(&go_time_or_zero(reload_at))
    );
    if let Some(rw) = s.status.remote_write_status() {
        o.push_str("<h3>Remote write</h3>");
        o.push_str(&remote_table(&rw));
    }
    let _ = write!(o, "<p class=muted>Version {}.</p>", esc(&s.options.version));
    page(&s, "agent", "Agent", &o)
}

struct TargetFilter<'a> {
    search: &'a str,
    health: &'a str,
    pool: &'a str,
}

impl TargetFilter<'_> {
    fn matches(&self, pool: &str, t: &ActiveTarget) -> bool {
        if !self.pool.is_empty() && self.pool != pool {
            return false;
        }
        if !self.health.is_empty() && self.health != t.health.health.as_str() {
            return false;
        }
        self.search.is_empty()
            || t.target.url.contains(self.search)
            || t.target.labels.iter().any(|l| {
                l.value.contains(self.search)
                    || format!("{}=\"{}\"", l.name, l.value).contains(self.search)
            })
    }
}

fn page_number(q: &[(String, String)]) -> usize {
    param(q, "page").parse::<usize>().unwrap_or(1).max(1)
}

/// "Previous/next" links keeping the other query parameters.
fn pager(base: &str, q: &[(String, String)], page: usize, total: usize) -> String {
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    if pages <= 1 {
        return String::new();
    }
    let keep: String = q
        .iter()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| format!("{}={}&", url_encode(k), url_encode(v)))
        .collect();
    let mut o = format!("<div class=pager>Page {page} of {pages}. ");
    if page > 1 {
        let _ = write!(
            o,
            "<a href=\"{}?{}page={}\">&larr; Previous</a>",
            esc(base),
            esc(&keep),
            page - 1
        );
    }
    if page < pages {
        let _ = write!(
            o,
            "<a href=\"{}?{}page={}\">Next &rarr;</a>",
            esc(base),
            esc(&keep),
            page + 1
        );
    }
    o.push_str("</div>");
    o
}

fn select(name: &str, current: &str, options: &[(String, String)]) -> String {
    let mut o = format!("<select name={name} aria-label={name}>");
    for (value, label) in options {
        let sel = if value == current { " selected" } else { "" };
        let _ = write!(
            o,
            "<option value=\"{}\"{sel}>{}</option>",
            esc(value),
            esc(label)
        );
    }
    o.push_str("</select>");
    o
}

async fn targets(State(s): State<Arc<WebState>>, Query(q): Params) -> Html<String> {
    let pools = s.status.scrape_pools();
    let filter = TargetFilter {
        search: param(&q, "search"),
        health: param(&q, "health"),
        pool: param(&q, "pool"),
    };
    let prefix = s.options.prefix();
    let mut pool_options = vec![(String::new(), "All pools".to_string())];
    pool_options.extend(pools.iter().map(|p| (p.job.clone(), p.job.clone())));
    let health_options: Vec<(String, String)> = [
        ("", "Any health"),
        ("up", "Up"),
        ("down", "Down"),
        ("unknown", "Unknown"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut o = format!(
        "<form class=f method=get action=\"{p}/targets\"><input name=search placeholder='Filter by endpoint or label' value=\"{}\" aria-label=search> {} {} <button>Filter</button></form>",
        esc(filter.search),
        select("health", filter.health, &health_options),
        select("pool", filter.pool, &pool_options),
        p = esc(prefix),
    );
    // Per-pool summary, then one page of matching rows.
    o.push_str("<table class=r><thead><tr><th>Scrape pool</th><th>Up</th><th>Down</th><th>Unknown</th></tr></thead>");
    for p in &pools {
        let (up, down, unknown) = health_counts(std::slice::from_ref(p));
        let _ = write!(
            o,
            "<tr><td data-h=Pool><a href=\"{}/targets?pool={}\">{}</a></td><td data-h=Up class=up>{up}</td><td data-h=Down class=down>{down}</td><td data-h=Unknown class=unknown>{unknown}</td></tr>",
            esc(prefix),
            esc(&url_encode(&p.job)),
            esc(&p.job)
        );
    }
    o.push_str("</table>");
    let matching: Vec<(&PoolSnapshot, &ActiveTarget)> = pools
        .iter()
        .flat_map(|p| p.active.iter().map(move |t| (p, t)))
        .filter(|(p, t)| filter.matches(&p.job, t))
        .collect();
    let page_no = page_number(&q);
    let _ = write!(
        o,
        "<h3 id=matching>{} matching targets</h3>",
        matching.len()
    );
    o.push_str("<table class=r id=targets><thead><tr><th>Endpoint</th><th>Pool</th><th>State</th><th>Labels</th><th>Last scrape</th><th>Duration</th><th>Error</th></tr></thead><tbody>");
    for (p, t) in matching
        .iter()
        .skip((page_no - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
    {
        let h = &t.health;
        let _ = write!(
            o,
            "<tr><td data-h=Endpoint><a href=\"{pre}/target?pool={pool_q}&amp;url={u}\">{ue}</a></td><td data-h=Pool>{pool}</td><td data-h=State class={c}>{c}</td><td data-h=Labels>{l}</td><td data-h='Last scrape'>{ls}</td><td data-h=Duration>{d:.3}s</td><td data-h=Error class=err>{e}</td></tr>",
            pre = esc(prefix),
            pool_q = esc(&url_encode(&p.job)),
            pool = esc(&p.job),
            u = esc(&url_encode(&t.target.url)),
            ue = esc(&t.target.url),
            c = h.health.as_str(),
            l = labels_html(&t.target.labels),
            ls = ago(h.last_scrape),
            d = h.last_duration.as_secs_f64(),
            e = esc(&h.last_error)
        );
    }
    o.push_str("</tbody></table>");
    o.push_str(&pager(
        &format!("{prefix}/targets"),
        &q,
        page_no,
        matching.len(),
    ));
    page(&s, "targets", "Targets", &o)
}

/// `… at line 3, column 7` in a parse error → (3, 7).
pub(crate) fn parse_error_position(err: &str) -> Option<(usize, usize)> {
    let (_, rest) = err.rsplit_once("at line ")?;
    let (line, rest) = rest.split_once(", column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

/// The body's first bytes with the line of a parse error highlighted.
fn body_head_html(head: &str, error_line: Option<usize>) -> String {
    let mut o = String::with_capacity(head.len() + 64);
    for (i, line) in head.lines().enumerate() {
        if Some(i + 1) == error_line {
            let _ = write!(o, "<span class=hl>{}</span>", esc(line));
        } else {
            o.push_str(&esc(line));
            o.push('\n');
        }
    }
    o
}

/// The last scrape of one target: what came back and why it failed.
async fn target(State(s): State<Arc<WebState>>, Query(q): Params) -> Html<String> {
    let url = param(&q, "url");
    let pool = param(&q, "pool");
    let pools = s.status.scrape_pools();
    let found = pools
        .iter()
        .filter(|p| pool.is_empty() || p.job == pool)
        .find_map(|p| {
            p.active
                .iter()
                .find(|t| t.target.url == url)
                .map(|t| (p, t))
        });
    let Some((p, t)) = found else {
        return page(&s, "targets", "Target", "<p>No active target with that URL. It may have been removed by a reload or by service discovery.</p>");
    };
    let h = &t.health;
    let l = &h.last;
    let prefix = esc(s.options.prefix());
    let position = parse_error_position(&h.last_error);
    let mut headers = String::new();
    for (k, v) in l.headers.iter() {
        let _ = writeln!(headers, "{}: {}", esc(k), esc(v));
    }
    let error = if h.last_error.is_empty() {
        "<span class=muted>none</span>".to_string()
    } else {
        format!(
            "<span class=err id=last-error>{}</span>",
            esc(&h.last_error)
        )
    };
    let position_html = position.map_or_else(String::new, |(line, col)| {
        format!("<p>Parse error at <b>line {line}, column {col}</b> (highlighted below).</p>")
    });
    let body = format!(
        "<table class=r><tr><td>Scrape pool</td><td>{job}</td></tr><tr><td>Health</td><td class={c} id=health>{c}</td></tr><tr><td>Last scrape</td><td>{ls} ({ago}), took {d:.3}s</td></tr><tr><td>Interval / timeout</td><td>{iv} / {to}</td></tr><tr><td>Last error</td><td>{error}</td></tr><tr><td>Labels</td><td>{labels}</td></tr><tr><td>Discovered labels</td><td>{disc}</td></tr></table>\
<p><a href=\"{prefix}/relabel?pool={pool_q}&amp;url={url_q}\">Debug this target's relabeling</a></p>\
<h3>Response</h3><table class=r><tr><td>HTTP status</td><td>{st}</td></tr><tr><td>Content-Type</td><td>{ct}</td></tr><tr><td>Size</td><td>{wire} bytes on the wire, {size} bytes decoded</td></tr><tr><td>Samples</td><td>{samples} scraped, {added} new series</td></tr></table><h3>Headers</h3><pre>{headers}</pre><h3>First bytes of the body</h3>{position_html}<pre id=body-head>{head}</pre>",
        job = esc(&p.job),
        c = h.health.as_str(),
        ls = esc(&go_time_or_zero(h.last_scrape)),
        ago = ago(h.last_scrape),
        d = h.last_duration.as_secs_f64(),
        iv = esc(t.target.internal.get("__scrape_interval__").unwrap_or("")),
        to = esc(t.target.internal.get("__scrape_timeout__").unwrap_or("")),
        labels = labels_html(&t.target.labels),
        disc = labels_html(&t.target.discovered),
        pool_q = esc(&url_encode(&p.job)),
        url_q = esc(&url_encode(&t.target.url)),
        st = if l.http_status == 0 { "no response".to_string() } else { l.http_status.to_string() },
        ct = esc(&l.content_type),
        wire = l.wire_bytes,
        size = l.body_bytes,
        samples = l.samples,
        added = l.series_added,
        head = body_head_html(&l.body_head, position.map(|(line, _)| line)),
    );
    page(&s, "targets", &format!("Target {}", t.target.url), &body)
}

async fn service_discovery(State(s): State<Arc<WebState>>, Query(q): Params) -> Html<String> {
    let pools = s.status.scrape_pools();
    let prefix = s.options.prefix();
    let pool_filter = param(&q, "pool");
    let show = param(&q, "show");
    let mut pool_options = vec![(String::new(), "All pools".to_string())];
    pool_options.extend(pools.iter().map(|p| (p.job.clone(), p.job.clone())));
    let show_options: Vec<(String, String)> = [
        ("", "Active and dropped"),
        ("active", "Active only"),
        ("dropped", "Dropped only"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut o = format!(
        "<form class=f method=get action=\"{}/service-discovery\">{} {} <button>Show</button></form><table class=r><thead><tr><th>Scrape pool</th><th>Active</th><th>Dropped</th></tr></thead>",
        esc(prefix),
        select("pool", pool_filter, &pool_options),
        select("show", show, &show_options)
    );
    for p in &pools {
        let _ = write!(
            o,
            "<tr><td data-h=Pool><a href=\"{}/service-discovery?pool={}\">{}</a></td><td data-h=Active>{}</td><td data-h=Dropped>{}</td></tr>",
            esc(prefix),
            esc(&url_encode(&p.job)),
            esc(&p.job),
            p.active.len(),
            p.dropped.len()
        );
    }
    o.push_str("</table>");
    // Rows: (pool, discovered, Ok(target labels) | Err(drop reason)).
    let mut rows: Vec<(&str, &Labels, Result<&Labels, String>)> = Vec::new();
    for p in pools
        .iter()
        .filter(|p| pool_filter.is_empty() || p.job == pool_filter)
    {
        if show != "dropped" {
            rows.extend(
                p.active
                    .iter()
                    .map(|t| (p.job.as_str(), &t.target.discovered, Ok(&t.target.labels))),
            );
        }
        if show != "active" {
            rows.extend(
                p.dropped
                    .iter()
                    .map(|d| (p.job.as_str(), &d.discovered, Err(d.reason.to_string()))),
            );
        }
    }
    let page_no = page_number(&q);
    o.push_str("<h3>Discovered vs. target labels</h3><table class=r id=sd><thead><tr><th>Pool</th><th>Discovered labels</th><th>Target labels</th><th></th></tr></thead><tbody>");
    for (job, discovered, outcome) in rows.iter().skip((page_no - 1) * PAGE_SIZE).take(PAGE_SIZE) {
        let result = match outcome {
            Ok(labels) => labels_html(labels),
            Err(reason) => drop_reason_html(reason),
        };
        let address = discovered.get("__address__").unwrap_or("");
        let _ = write!(
            o,
            "<tr><td data-h=Pool>{}</td><td data-h=Discovered>{}</td><td data-h=Target>{result}</td><td><a href=\"{}/relabel?pool={}&amp;address={}\">relabel steps</a></td></tr>",
            esc(job),
            labels_html(discovered),
            esc(prefix),
            esc(&url_encode(job)),
            esc(&url_encode(address)),
        );
    }
    o.push_str("</tbody></table>");
    o.push_str(&pager(
        &format!("{prefix}/service-discovery"),
        &q,
        page_no,
        rows.len(),
    ));
    page(&s, "service-discovery", "Service discovery", &o)
}

/// "Dropped by relabeling", or "Dropped: <why>" for validation failures.
fn drop_reason_html(reason: &str) -> String {
    match reason.strip_prefix("dropped ") {
        Some(rest) => format!("<span class=down>Dropped {}</span>", esc(rest)),
        None => format!("<span class=down>Dropped: {}</span>", esc(reason)),
    }
}

async fn config(State(s): State<Arc<WebState>>) -> Html<String> {
    page(
        &s,
        "config",
        "Configuration",
        &format!("<pre id=config>{}</pre>", esc(&s.status.config_yaml())),
    )
}

async fn flags(State(s): State<Arc<WebState>>) -> Html<String> {
    let mut o = String::from("<table class=r><thead><tr><th>Flag</th><th>Value</th></tr></thead>");
    let mut flags = s.options.flags.clone();
    flags.sort();
    for (k, v) in &flags {
        let _ = write!(
            o,
            "<tr><td data-h=Flag>{}</td><td data-h=Value>{}</td></tr>",
            esc(k),
            esc(v)
        );
    }
    o.push_str("</table>");
    page(&s, "flags", "Command-line flags", &o)
}

async fn status(State(s): State<Arc<WebState>>) -> Html<String> {
    let (ok, at) = s.status.reload_status();
    let rows = [
        ("Version", esc(&s.options.version)),
        ("Revision", esc(&s.options.revision)),
        ("Start time", esc(&go_time_or_zero(Some(s.started)))),
        (
            "Working directory",
            esc(&std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default()),
        ),
        ("Hostname", esc(&crate::api::hostname())),
        (
            "Configuration reload",
            if ok {
                "<span class=up>Successful</span>".into()
            } else {
                "<span class=down>Unsuccessful</span>".into()
            },
        ),
        (
            "Last successful configuration reload",
            esc(&go_time_or_zero(at)),
        ),
        ("WAL directory", esc(&s.options.storage_path)),
        (
            "Lifecycle API",
            if s.options.lifecycle {
                "enabled".into()
            } else {
                "disabled".into()
            },
        ),
        (
            "CPUs available",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .to_string(),
        ),
    ];
    let mut o = String::from("<table class=r>");
    for (k, v) in rows {
        let _ = write!(o, "<tr><td>{k}</td><td>{v}</td></tr>");
    }
    o.push_str("</table>");
    page(&s, "status", "Runtime & build information", &o)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(unit).unwrap_or(&"B"))
    }
}

fn remote_table(rw: &RemoteWriteStatus) -> String {
    let mut o = String::from("<table class=r id=remote><thead><tr><th>Endpoint</th><th>Shards</th><th>Pending samples</th><th>Lag</th><th>Sent / failed / retried</th><th>WAL backlog</th><th>Last send</th><th>Last error</th></tr></thead>");
    for e in &rw.endpoints {
        let _ = write!(
            o,
            "<tr><td data-h=Endpoint><b>{name}</b><br><span class=muted>{url}</span></td><td data-h=Shards>{sh} (desired {ds:.1}, max {mx})</td><td data-h=Pending>{pend}</td><td data-h=Lag>{lag}</td><td data-h=Samples>{sent} / <span class={fc}>{failed}</span> / {retried}</td><td data-h='WAL backlog'>{backlog}</td><td data-h='Last send'>{last}</td><td data-h='Last error' class=err>{err}</td></tr>",
            name = esc(&e.name),
            url = esc(&e.url),
            sh = e.shards,
            ds = e.desired_shards,
            mx = e.max_shards,
            pend = e.pending_samples,
            lag = e.lag().map_or_else(|| "nothing sent yet".to_string(), short_duration),
            sent = e.samples_sent_total,
            fc = if e.samples_failed_total > 0 { "down" } else { "muted" },
            failed = e.samples_failed_total,
            retried = e.samples_retried_total,
            backlog = e.wal_backlog_bytes.map_or_else(|| "-".to_string(), bytes),
            last = ago(e.last_send),
            err = esc(e.last_error.as_deref().unwrap_or("")),
        );
    }
    o.push_str("</table>");
    o
}

fn wal_table(rw: &RemoteWriteStatus) -> String {
    let w = &rw.wal;
    let cap = w.byte_cap.map_or_else(|| "unbounded".to_string(), bytes);
    let used = w.byte_cap.filter(|c| *c > 0).map_or_else(String::new, |c| {
        format!(" ({:.0}% of cap)", w.bytes as f64 * 100.0 / c as f64)
    });
    format!(
        "<h3>Write-ahead log</h3><table class=r id=wal><tr><td>Size on disk</td><td>{}{used}</td></tr><tr><td>Byte cap</td><td>{cap}</td></tr><tr><td>Segments</td><td>{} (first {}, current {})</td></tr><tr><td>Active series</td><td>{}</td></tr></table>",
        bytes(w.bytes),
        w.segments,
        w.first_segment.map_or_else(|| "-".to_string(), |s| s.to_string()),
        w.current_segment,
        w.active_series
    )
}

async fn remote_write(State(s): State<Arc<WebState>>) -> Html<String> {
    let body = match s.status.remote_write_status() {
        Some(rw) if rw.endpoints.is_empty() => format!(
            "<p>No remote_write endpoints are configured.</p>{}",
            wal_table(&rw)
        ),
        Some(rw) => format!("{}{}", remote_table(&rw), wal_table(&rw)),
        None => {
            let pretty =
                serde_json::to_string_pretty(&s.status.remote_status()).unwrap_or_default();
            format!("<pre id=remote-json>{}</pre>", esc(&pretty))
        }
    };
    page(&s, "remote-write", "Remote write", &body)
}

/// A rule as YAML the debugger's textarea shows and parses back.
fn rule_yaml(rule: &RelabelConfig) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut o = String::new();
    let _ = writeln!(o, "- action: {}", rule.action().as_str());
    if !rule.source_labels().is_empty() {
        let names: Vec<String> = rule.source_labels().iter().map(|n| q(n)).collect();
        let _ = writeln!(o, "  source_labels: [{}]", names.join(", "));
    }
    if rule.separator() != tributary_relabel::DEFAULT_SEPARATOR {
        let _ = writeln!(o, "  separator: {}", q(rule.separator()));
    }
    if !rule.regex().is_default_pattern() {
        let _ = writeln!(o, "  regex: {}", q(rule.regex().as_str()));
    }
    if rule.modulus() != 0 {
        let _ = writeln!(o, "  modulus: {}", rule.modulus());
    }
    if !rule.target_label().is_empty() {
        let _ = writeln!(o, "  target_label: {}", q(rule.target_label()));
    }
    if rule.replacement() != tributary_relabel::DEFAULT_REPLACEMENT {
        let _ = writeln!(o, "  replacement: {}", q(rule.replacement()));
    }
    o
}

fn labels_text(l: &Labels) -> String {
    let mut o = String::new();
    for l in l {
        let _ = writeln!(
            o,
            "{}={}",
            l.name,
            serde_json::to_string(l.value).unwrap_or_default()
        );
    }
    o
}

/// Fills the debugger from a picked target: its discovered labels and its
/// job's rules (found by scrape URL for active targets, by address for
/// dropped ones).
fn picked_target(s: &WebState, pool: &str, url: &str, address: &str) -> Option<Labels> {
    let pools = s.status.scrape_pools();
    let p = pools.iter().find(|p| p.job == pool)?;
    if !url.is_empty() {
        return p
            .active
            .iter()
            .find(|t| t.target.url == url)
            .map(|t| t.target.discovered.clone());
    }
    let by_address = |l: &Labels| l.get("__address__") == Some(address);
    p.active
        .iter()
        .map(|t| &t.target.discovered)
        .chain(p.dropped.iter().map(|d| &d.discovered))
        .find(|l| by_address(l))
        .cloned()
}

async fn relabel(State(s): State<Arc<WebState>>, Query(q): Params) -> Html<String> {
    let pool = param(&q, "pool");
    let mut labels_input = param(&q, "labels").to_string();
    let mut rules_input = param(&q, "rules").to_string();
    let mut notes = String::new();
    if !pool.is_empty() {
        if labels_input.trim().is_empty() {
            match picked_target(&s, pool, param(&q, "url"), param(&q, "address")) {
                Some(l) => labels_input = labels_text(&l),
                None if !param(&q, "url").is_empty() || !param(&q, "address").is_empty() => {
                    notes.push_str("<p class=err>That target is no longer known.</p>")
                }
                None => {}
            }
        }
        if rules_input.trim().is_empty() {
            match crate::api::job_rules(&s, pool) {
                Ok(rules) => rules_input = rules.iter().map(rule_yaml).collect(),
                Err(e) => {
                    let _ = write!(notes, "<p class=err>{}</p>", esc(&e));
                }
            }
        }
    }
    let pools = s.status.scrape_pools();
    let mut pool_options = vec![(String::new(), "(paste rules below)".to_string())];
    pool_options.extend(
        pools
            .iter()
            .map(|p| (p.job.clone(), format!("rules of job {}", p.job))),
    );
    let mut o = format!(
        "<p>Paste a label set and relabel rules (or pick a job to load its <code>relabel_configs</code>) to see the labels after each rule.</p>{notes}\
<form method=get action=\"{p}/relabel\" id=debugger><p>{sel}</p><label>Labels (<code>name=\"value\"</code> per line, a selector or JSON)<textarea name=labels rows=6>{labels}</textarea></label><label>Rules (YAML list)<textarea name=rules rows=10>{rules}</textarea></label><p><button>Run</button></p></form>",
        p = esc(s.options.prefix()),
        sel = select("pool", pool, &pool_options),
        labels = esc(&labels_input),
        rules = esc(&rules_input),
    );
    if !labels_input.trim().is_empty() || !rules_input.trim().is_empty() {
        o.push_str(&debugger_result(&labels_input, &rules_input));
    }
    page(&s, "relabel", "Relabel debugger", &o)
}

fn debugger_result(labels_input: &str, rules_input: &str) -> String {
    let labels = match relabel_debug::parse_labels(labels_input) {
        Ok(l) => l,
        Err(e) => {
            return format!(
                "<pre class=err id=debug-error>{}</pre>",
                esc(&e.to_string())
            )
        }
    };
    let rules = match relabel_debug::parse_rules(rules_input) {
        Ok(r) => r,
        Err(e) => {
            return format!(
                "<pre class=err id=debug-error>{}</pre>",
                esc(&e.to_string())
            )
        }
    };
    let steps = relabel_debug::debug_steps(&rules, &labels);
    let mut o = format!("<h3>Steps</h3><table class=r id=steps><thead><tr><th>#</th><th>Rule</th><th>Labels after the rule</th></tr></thead><tr><td>0</td><td>input</td><td>{}</td></tr>", labels_html(&labels));
    let mut before = labels.clone();
    let mut dropped_at = None;
    for (i, step) in steps.iter().enumerate() {
        let outcome = if step.keep && step.output == before {
            format!(
                "<span class=muted>no change</span> {}",
                labels_html(&step.output)
            )
        } else if step.keep {
            labels_diff_html(&before, &step.output)
        } else if dropped_at.is_none() {
            dropped_at = Some(i + 1);
            "<span class=down>dropped</span>".to_string()
        } else {
            "<span class=muted>not run (already dropped)</span>".to_string()
        };
        let _ = write!(
            o,
            "<tr class=step><td>{}</td><td><pre>{}</pre></td><td>{outcome}</td></tr>",
            i + 1,
            esc(&rule_yaml(&step.rule))
        );
        if step.keep {
            before = step.output.clone();
        }
    }
    o.push_str("</table>");
    match dropped_at {
        Some(n) => {
            let _ = write!(o, "<p id=verdict class=down>Dropped by rule {n}.</p>");
        }
        None => {
            let _ = write!(
                o,
                "<p id=verdict class=up>Kept, with labels {}</p>",
                labels_html(&before)
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_position_reads_the_parser_message() {
        assert_eq!(
            parse_error_position("expected value at line 3, column 17"),
            Some((3, 17))
        );
        assert_eq!(parse_error_position("connection refused"), None);
    }

    #[test]
    fn escaping_and_encoding() {
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        assert_eq!(
            url_encode("http://a:1/m?x=1"),
            "http%3A%2F%2Fa%3A1%2Fm%3Fx%3D1"
        );
    }

    #[test]
    fn rule_yaml_round_trips_through_the_loader() {
        let yaml = "- source_labels: [a, b]\n  separator: '-'\n  regex: 'x(.*)'\n  target_label: t\n  replacement: '$1!'\n- action: hashmod\n  source_labels: [a]\n  modulus: 4\n  target_label: shard\n";
        let rules = relabel_debug::parse_rules(yaml).unwrap_or_default();
        assert_eq!(rules.len(), 2);
        let again: String = rules.iter().map(rule_yaml).collect();
        assert_eq!(
            relabel_debug::parse_rules(&again).unwrap_or_default(),
            rules
        );
    }
}
