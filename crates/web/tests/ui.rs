//! The HTML pages over HTTP: content, filters, pagination, escaping and
//! the route prefix, checked on the markup (the browser test checks what a
//! person sees).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tributary_model::Labels;
use tributary_scrape::{ActiveTarget, PoolSnapshot};
use tributary_web::WebSecurity;

async fn demo() -> Server {
    start(
        Arc::new(demo_status()),
        options("/", false),
        WebSecurity::default(),
    )
    .await
}

fn rows(html: &str, table_id: &str) -> usize {
    html.split(&format!("id={table_id}>"))
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .map(|t| t.split_once("</thead>").map_or(t, |(_, body)| body))
        .map_or(0, |t| {
            t.matches("<tr>").count() + t.matches("<tr class=step>").count()
        })
}

#[tokio::test]
async fn every_page_renders() {
    let s = demo().await;
    for (path, needle) in [
        ("/agent", "targets up"),
        ("/targets", "10.0.0.2:9100"),
        ("/service-discovery", "Dropped by relabeling"),
        ("/config", "password: &lt;secret&gt;"),
        ("/flags", "config.file"),
        ("/status", "Runtime &amp; build information"),
        ("/remote-write", "mimir"),
        ("/relabel", "Relabel debugger"),
    ] {
        let (code, html) = get(&format!("{}{path}", s.base)).await;
        assert_eq!(code, 200, "{path}");
        assert!(html.contains(needle), "{path} lacks {needle}");
        assert!(!html.contains("hunter2"), "{path} leaks a secret");
        assert!(!html.contains("<script"), "{path} needs no JavaScript");
    }
}

#[tokio::test]
async fn targets_filter_by_health_pool_and_search() {
    let s = demo().await;
    let (_, html) = get(&format!("{}/targets?health=down", s.base)).await;
    assert_eq!(rows(&html, "targets"), 2);
    assert!(html.contains(&tributary_web_esc(DEMO_REFUSED)));
    assert!(!html.contains(">http://10.0.0.1:9100/metrics<"));
    let (_, html) = get(&format!("{}/targets?pool=api", s.base)).await;
    assert_eq!(rows(&html, "targets"), 1);
    assert!(html.contains("team=\"payments\""));
    let (_, html) = get(&format!("{}/targets?search=10.0.0.3", s.base)).await;
    assert_eq!(rows(&html, "targets"), 1);
}

fn tributary_web_esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[tokio::test]
async fn target_page_shows_the_parse_error_position() {
    let s = demo().await;
    let (code, html) = get(&format!(
        "{}/target?pool=node&url=http%3A%2F%2F10.0.0.3%3A9100%2Fmetrics",
        s.base
    ))
    .await;
    assert_eq!(code, 200);
    assert!(html.contains("line 3, column 17"));
    assert!(
        html.contains(
            "<span class=hl>http_requests_total{code=&quot;200&quot;,path=INVALID} 3</span>"
        ),
        "{html}"
    );
    assert!(html.contains("content-encoding: gzip"));
}

#[tokio::test]
async fn relabel_page_runs_rules_and_picks_targets() {
    let s = demo().await;
    let (_, html) = get(&format!(
        "{}/relabel?pool=api&address=api-dev%3A8080",
        s.base
    ))
    .await;
    assert!(
        html.contains("__address__=&quot;api-dev:8080&quot;"),
        "labels prefilled"
    );
    assert!(html.contains("action: drop"), "rules prefilled");
    assert!(html.contains("Dropped by rule 1."), "{html}");
    let labels = "a%3D1";
    let rules = "-%20target_label%3A%20b%0A%20%20replacement%3A%20two%0A";
    let (_, html) = get(&format!("{}/relabel?labels={labels}&rules={rules}", s.base)).await;
    assert!(
        html.contains("<span class='lbl add'>b=\"two\"</span>"),
        "{html}"
    );
    let (_, html) = get(&format!(
        "{}/relabel?labels=a%3D1&rules=-%20action%3A%20nope",
        s.base
    ))
    .await;
    assert!(html.contains("id=debug-error"), "{html}");
}

#[tokio::test]
async fn ten_thousand_targets_render_one_page_fast() {
    let cfg = load(CONFIG);
    let template = pools(&cfg, |_| down(CONNECTION_REFUSED));
    let one = template.first().and_then(|p| p.active.first()).cloned();
    let Some(one) = one else {
        panic!("fixture has an active target")
    };
    let active: Vec<ActiveTarget> = (0..10_000)
        .map(|i| {
            let mut t = one.clone();
            t.target.url = format!("http://10.1.{}.{}:9100/metrics", i / 250, i % 250);
            t.target.labels =
                Labels::from_pairs([("instance", t.target.url.as_str()), ("job", "big")]);
            t
        })
        .collect();
    let big = PoolSnapshot {
        job: "big".into(),
        scrape_interval: Duration::from_secs(15),
        scrape_timeout: Duration::from_secs(10),
        active,
        dropped: Vec::new(),
    };
    let s = start(
        Arc::new(FakeStatus::new(cfg, vec![big])),
        options("/", false),
        WebSecurity::default(),
    )
    .await;
    let started = Instant::now();
    let (code, html) = get(&format!("{}/targets", s.base)).await;
    let took = started.elapsed();
    assert_eq!(code, 200);
    assert_eq!(rows(&html, "targets"), 200);
    assert!(html.contains("10000 matching targets"));
    assert!(html.contains("Page 1 of 50"));
    assert!(
        html.len() < 1 << 20,
        "one page stays small: {} bytes",
        html.len()
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let (_, last) = get(&format!("{}/targets?page=50", s.base)).await;
    assert!(last.contains("http://10.1.39.249:9100/metrics"));
    assert!(last.contains("&larr; Previous"));
}
