//! The API and lifecycle endpoints, served for real on 127.0.0.1 and read
//! field by field.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tributary_model::Labels;
use tributary_web::{MetricMetadata, TargetMetadata, WebSecurity};

async fn fixture(prefix: &str, lifecycle: bool) -> Server {
    let cfg = load(CONFIG);
    let pools = pools(&cfg, |_| down(CONNECTION_REFUSED));
    start(
        Arc::new(FakeStatus::new(cfg, pools)),
        options(prefix, lifecycle),
        WebSecurity::default(),
    )
    .await
}

#[tokio::test]
async fn targets_fields_match_prometheus() {
    let s = fixture("/", false).await;
    let (code, v) = get_json(&format!("{}/api/v1/targets", s.base)).await;
    assert_eq!(code, 200);
    assert_eq!(v["status"], "success");
    let active = &v["data"]["activeTargets"];
    assert_eq!(active.as_array().map(Vec::len), Some(2), "{v}");
    let t = &active[0];
    let keys: Vec<&str> = t
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut want = vec![
        "discoveredLabels",
        "labels",
        "scrapePool",
        "scrapeUrl",
        "globalUrl",
        "lastError",
        "lastScrape",
        "lastScrapeDuration",
        "health",
        "scrapeInterval",
        "scrapeTimeout",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(
        t["labels"],
        json!({"instance": "127.0.0.1:1", "job": "down"})
    );
    assert_eq!(t["discoveredLabels"]["__address__"], "127.0.0.1:1");
    assert_eq!(t["discoveredLabels"]["__scrape_interval__"], "10s");
    assert_eq!(t["scrapePool"], "down");
    assert_eq!(t["scrapeUrl"], "http://127.0.0.1:1/metrics");
    // Localhost targets show the external URL's host, keeping their port.
    assert_eq!(t["globalUrl"], "http://agent.example:1/metrics");
    assert_eq!(t["lastError"], CONNECTION_REFUSED);
    assert_eq!(t["health"], "down");
    assert_eq!(t["scrapeInterval"], "10s");
    assert_eq!(t["scrapeTimeout"], "5s");
    assert!((t["lastScrapeDuration"].as_f64().unwrap_or(0.0) - 0.00045).abs() < 1e-9);
    let last = t["lastScrape"].as_str().unwrap_or("");
    // Go's RFC 3339 with nanoseconds: UTC, no trailing zeros in the fraction.
    assert!(last.starts_with("20") && last.ends_with('Z'), "{last}");
    if let Some((_, frac)) = last.trim_end_matches('Z').split_once('.') {
        assert!(!frac.ends_with('0') && frac.len() <= 9, "{last}");
    }

    let dropped = &v["data"]["droppedTargets"];
    assert_eq!(dropped.as_array().map(Vec::len), Some(1));
    assert_eq!(dropped[0]["discoveredLabels"]["__address__"], "127.0.0.1:2");
    assert_eq!(dropped[0]["scrapePool"], "dropper");
    assert_eq!(dropped[0]["dropReason"], "dropped by relabeling");
    assert_eq!(
        v["data"]["droppedTargetCounts"],
        json!({"down": 0, "dropper": 1})
    );
}

#[tokio::test]
async fn targets_filters_follow_prometheus() {
    let s = fixture("/", false).await;
    let url = |q: &str| format!("{}/api/v1/targets?{q}", s.base);
    let (_, v) = get_json(&url("state=dropped")).await;
    assert_eq!(v["data"]["activeTargets"], json!([]));
    assert_eq!(
        v["data"]["droppedTargets"].as_array().map(Vec::len),
        Some(1)
    );

    let (_, v) = get_json(&url("state=ACTIVE&scrapePool=down")).await;
    assert_eq!(v["data"]["activeTargets"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["data"]["activeTargets"][0]["scrapePool"], "down");
    assert_eq!(v["data"]["droppedTargets"], json!([]));
    assert_eq!(v["data"]["droppedTargetCounts"], Value::Null);

    // The pool filter does not narrow the counts.
    let (_, v) = get_json(&url("scrapePool=down")).await;
    assert_eq!(v["data"]["droppedTargets"], json!([]));
    assert_eq!(
        v["data"]["droppedTargetCounts"],
        json!({"down": 0, "dropper": 1})
    );

    let (code, v) = get_json(&url("state=bogus")).await;
    assert_eq!(code, 200);
    assert_eq!(
        v["data"],
        json!({"activeTargets": [], "droppedTargets": [], "droppedTargetCounts": null})
    );
}

#[tokio::test]
async fn status_endpoints_answer_prometheus_shapes() {
    let s = fixture("/", false).await;
    let (_, v) = get_json(&format!("{}/api/v1/scrape_pools", s.base)).await;
    assert_eq!(
        v,
        json!({"status": "success", "data": {"scrapePools": ["down", "dropper"]}})
    );

    let (_, v) = get_json(&format!("{}/api/v1/status/config", s.base)).await;
    let yaml = v["data"]["yaml"].as_str().unwrap_or("");
    assert!(yaml.contains("password: <secret>"), "{yaml}");
    assert!(!yaml.contains("secretpw"), "{yaml}");

    let (_, v) = get_json(&format!("{}/api/v1/status/flags", s.base)).await;
    assert_eq!(v["data"]["config.file"], "test.yml");

    let (_, v) = get_json(&format!("{}/api/v1/status/buildinfo", s.base)).await;
    assert_eq!(v["data"]["version"], "0.1.0");
    assert_eq!(v["data"]["revision"], "abc");
    for k in ["branch", "buildUser", "buildDate", "goVersion"] {
        assert!(v["data"][k].is_string(), "{k}");
    }

    let (_, v) = get_json(&format!("{}/api/v1/status/runtimeinfo", s.base)).await;
    let d = &v["data"];
    assert_eq!(d["reloadConfigSuccess"], true);
    let cfg_time = d["lastConfigTime"].as_str().unwrap_or("");
    assert!(
        cfg_time.ends_with('Z') && !cfg_time.contains('.'),
        "seconds precision: {cfg_time}"
    );
    for k in [
        "startTime",
        "CWD",
        "hostname",
        "serverTime",
        "GOGC",
        "GODEBUG",
        "storageRetention",
    ] {
        assert!(d[k].is_string(), "{k}: {d}");
    }
    for k in [
        "corruptionCount",
        "goroutineCount",
        "GOMAXPROCS",
        "GOMEMLIMIT",
    ] {
        assert!(d[k].is_number(), "{k}: {d}");
    }

    let (_, v) = get_json(&format!("{}/api/v1/status/walreplay", s.base)).await;
    assert_eq!(
        v,
        json!({"status": "success", "data": {"min": 0, "max": 0, "current": 0}})
    );
    s.state.set_ready(false);
    let (code, v) = get_json(&format!("{}/api/v1/status/walreplay", s.base)).await;
    assert_eq!(code, 500);
    assert_eq!(v["errorType"], "internal");
}

#[tokio::test]
async fn query_endpoints_are_unavailable_in_agent_mode() {
    let s = fixture("/", false).await;
    let c = client();
    for path in [
        "query",
        "query_range",
        "labels",
        "label/job/values",
        "series",
        "alerts",
        "rules",
        "status/tsdb",
        "admin/tsdb/snapshot",
    ] {
        for req in [
            c.get(format!("{}/api/v1/{path}", s.base)),
            c.post(format!("{}/api/v1/{path}", s.base)),
        ] {
            let (code, body) = send(req).await;
            assert_eq!(code, 422, "{path}");
            assert_eq!(
                body,
                r#"{"status":"error","errorType":"execution","error":"unavailable with Prometheus Agent"}"#,
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn probes_and_lifecycle_follow_prometheus() {
    let s = fixture("/", false).await;
    let c = client();
    assert_eq!(
        get(&format!("{}/-/healthy", s.base)).await,
        (200, "Prometheus Agent is Healthy.\n".into())
    );
    assert_eq!(
        get(&format!("{}/-/ready", s.base)).await,
        (200, "Prometheus Agent is Ready.\n".into())
    );
    let head = c
        .head(format!("{}/-/healthy", s.base))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok();
    assert_eq!(head, Some(200));
    for p in ["/-/reload", "/-/quit"] {
        assert_eq!(
            get(&format!("{}{p}", s.base)).await,
            (405, "Only POST or PUT requests allowed".into())
        );
        assert_eq!(
            send(c.post(format!("{}{p}", s.base))).await,
            (403, "Lifecycle API is not enabled.".into())
        );
        assert_eq!(
            send(c.put(format!("{}{p}", s.base))).await,
            (403, "Lifecycle API is not enabled.".into())
        );
        assert_eq!(
            send(c.delete(format!("{}{p}", s.base))).await,
            (405, "Method Not Allowed\n".into())
        );
    }
    assert_eq!(
        get(&format!("{}/nope", s.base)).await,
        (404, "404 page not found\n".into())
    );
    s.state.set_ready(false);
    let r = c.get(format!("{}/-/ready", s.base)).send().await;
    let r = match r {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        r.headers()
            .get("X-Prometheus-Stopping")
            .and_then(|v| v.to_str().ok()),
        Some("false")
    );
}

#[tokio::test]
async fn lifecycle_reload_and_quit_when_enabled() {
    let mut s = fixture("/", true).await;
    let c = client();
    let base = s.base.clone();
    let reload = tokio::spawn(async move { send(client().post(format!("{base}/-/reload"))).await });
    let req = tokio::time::timeout(Duration::from_secs(5), s.reloads.recv())
        .await
        .ok()
        .flatten();
    match req {
        Some(tx) => {
            let _ = tx.send(Err("bad yaml at line 3".into()));
        }
        None => panic!("no reload request reached the binary"),
    }
    let answer = tokio::time::timeout(Duration::from_secs(5), reload).await;
    assert!(
        matches!(answer, Ok(Ok((500, ref b))) if b == "failed to reload config: bad yaml at line 3\n"),
        "{answer:?}"
    );

    assert_eq!(
        send(c.put(format!("{}/-/quit", s.base))).await,
        (200, "Requesting termination... Goodbye!\n".into())
    );
    assert!(s.state.quit.is_cancelled());
    assert_eq!(
        send(c.post(format!("{}/-/quit", s.base))).await,
        (200, "Termination already in progress.\n".into())
    );
}

#[tokio::test]
async fn route_prefix_moves_everything() {
    let s = fixture("/agent-x/", false).await;
    let r = client().get(format!("{}/", s.base)).send().await;
    let location = r.ok().and_then(|r| {
        assert_eq!(r.status().as_u16(), 302);
        r.headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_string)
    });
    assert_eq!(location.as_deref(), Some("/agent-x/agent"));
    assert_eq!(get(&format!("{}/agent-x/-/healthy", s.base)).await.0, 200);
    assert_eq!(get(&format!("{}/-/healthy", s.base)).await.0, 404);
    let (code, page) = get(&format!("{}/agent-x/targets", s.base)).await;
    assert_eq!(code, 200);
    assert!(
        page.contains("href=\"/agent-x/service-discovery\""),
        "links carry the prefix"
    );
}

#[tokio::test]
async fn relabel_steps_use_the_jobs_rules() {
    let s = fixture("/", false).await;
    let labels = url_encode(r#"{"__address__":"127.0.0.1:2","job":"dropper"}"#);
    let (code, v) = get_json(&format!(
        "{}/api/v1/targets/relabel_steps?scrapePool=dropper&labels={labels}",
        s.base
    ))
    .await;
    assert_eq!(code, 200, "{v}");
    let steps = &v["data"]["steps"];
    assert_eq!(steps.as_array().map(Vec::len), Some(1));
    assert_eq!(steps[0]["keep"], false);
    assert_eq!(steps[0]["output"], json!({}));
    assert_eq!(
        steps[0]["rule"],
        json!({"source_labels": ["__address__"], "separator": ";", "regex": ".*:2", "replacement": "$1", "action": "drop"})
    );

    let (code, v) = get_json(&format!(
        "{}/api/v1/targets/relabel_steps?scrapePool=dropper",
        s.base
    ))
    .await;
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("no labels parameter provided"))
    );
    let (code, v) = get_json(&format!(
        "{}/api/v1/targets/relabel_steps?labels=%7B%7D",
        s.base
    ))
    .await;
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("no scrapePool parameter provided"))
    );
    let (code, v) = get_json(&format!(
        "{}/api/v1/targets/relabel_steps?scrapePool=nope&labels=%7B%7D",
        s.base
    ))
    .await;
    assert_eq!(code, 400);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("error retrieving scrape config")),
        "{v}"
    );
}

#[tokio::test]
async fn relabel_debugger_api_shows_each_step() {
    let s = fixture("/", false).await;
    let body = json!({
        "labels": "__address__=\"10.0.0.1:9100\"\n__meta_env=\"prod\"",
        "rules": "- source_labels: [__meta_env]\n  target_label: env\n- action: labeldrop\n  regex: __meta_.*\n",
    });
    let (code, text) = send(
        client()
            .post(format!("{}/api/v1/relabel_debugger", s.base))
            .body(body.to_string()),
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    let steps = &v["data"]["steps"];
    assert_eq!(
        steps[0]["output"],
        json!({"__address__": "10.0.0.1:9100", "__meta_env": "prod", "env": "prod"})
    );
    assert_eq!(
        steps[1]["output"],
        json!({"__address__": "10.0.0.1:9100", "env": "prod"})
    );
    assert_eq!(v["data"]["keep"], true);
    assert_eq!(
        v["data"]["result"],
        json!({"__address__": "10.0.0.1:9100", "env": "prod"})
    );

    let bad =
        json!({"labels": {}, "rules": "- action: replace\n  regex: '('\n  target_label: x\n"});
    let (code, text) = send(
        client()
            .post(format!("{}/api/v1/relabel_debugger", s.base))
            .body(bad.to_string()),
    )
    .await;
    assert_eq!(code, 400);
    assert!(text.contains("rules[0]"), "{text}");

    let by_job = json!({"labels": {"__address__": "127.0.0.1:3"}, "scrapePool": "dropper"});
    let (_, text) = send(
        client()
            .post(format!("{}/api/v1/relabel_debugger", s.base))
            .body(by_job.to_string()),
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(v["data"]["keep"], true, "{text}");
}

#[tokio::test]
async fn target_metadata_filters_by_target_and_metric() {
    let cfg = load(CONFIG);
    let pools = pools(&cfg, |_| down(CONNECTION_REFUSED));
    let mut fake = FakeStatus::new(cfg, pools);
    let md = |m: &str, kind: &str| MetricMetadata {
        family: m.into(),
        kind: tributary_model::MetricType::from_type_word(kind).unwrap(),
        help: format!("{m} help"),
        unit: String::new(),
    };
    fake.metadata = Some(vec![
        TargetMetadata {
            target: Labels::from_pairs([("instance", "a:1"), ("job", "x")]),
            metrics: vec![md("up_total", "counter"), md("temp", "gauge")],
        },
        TargetMetadata {
            target: Labels::from_pairs([("instance", "b:1"), ("job", "y")]),
            metrics: vec![md("temp", "gauge")],
        },
    ]);
    let s = start(Arc::new(fake), options("/", false), WebSecurity::default()).await;
    let (_, v) = get_json(&format!("{}/api/v1/targets/metadata", s.base)).await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        v["data"][0],
        json!({"target": {"instance": "a:1", "job": "x"}, "metric": "up_total", "type": "counter", "help": "up_total help", "unit": ""})
    );
    let (_, v) = get_json(&format!(
        "{}/api/v1/targets/metadata?metric=temp&match_target={}",
        s.base,
        url_encode("{job=\"y\"}")
    ))
    .await;
    assert_eq!(
        v["data"],
        json!([{"target": {"instance": "b:1", "job": "y"}, "type": "gauge", "help": "temp help", "unit": ""}])
    );
    let (code, _) = get_json(&format!("{}/api/v1/targets/metadata?limit=x", s.base)).await;
    assert_eq!(code, 400);
    let (_, v) = get_json(&format!("{}/api/v1/metadata", s.base)).await;
    assert_eq!(
        v["data"]["temp"],
        json!([{"type": "gauge", "help": "temp help", "unit": ""}])
    );
}

#[tokio::test]
async fn last_scrape_reports_the_response() {
    let cfg = load(CONFIG);
    let pools = pools(&cfg, |_| {
        let mut h = down("expected a value at line 2, column 9");
        h.last.http_status = 200;
        h.last.content_type = "text/plain".into();
        h.last.headers = [("content-type", "text/plain")].into_iter().collect();
        h.last.body_head = "ok 1\nbad_metric{\n".into();
        h.last.wire_bytes = 17;
        h
    });
    let s = start(
        Arc::new(FakeStatus::new(cfg, pools)),
        options("/", false),
        WebSecurity::default(),
    )
    .await;
    let (code, v) = get_json(&format!(
        "{}/api/v1/targets/last_scrape?scrapeUrl={}",
        s.base,
        url_encode("http://127.0.0.1:1/metrics")
    ))
    .await;
    assert_eq!(code, 200);
    assert_eq!(v["data"]["httpStatus"], 200);
    assert_eq!(
        v["data"]["headers"],
        json!([["content-type", "text/plain"]])
    );
    assert_eq!(v["data"]["parseError"], json!({"line": 2, "column": 9}));
    let (code, _) = get_json(&format!(
        "{}/api/v1/targets/last_scrape?scrapeUrl=x",
        s.base
    ))
    .await;
    assert_eq!(code, 404);
}

pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn cors_follows_web_cors_origin() {
    let s = fixture("/", false).await;
    let c = client();
    let r = c
        .get(format!("{}/api/v1/scrape_pools", s.base))
        .header("Origin", "https://grafana.example")
        .send()
        .await;
    let h = r.map(|r| r.headers().clone()).unwrap_or_default();
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    assert_eq!(h.get("vary").and_then(|v| v.to_str().ok()), Some("Origin"));

    let cfg = load(CONFIG);
    let pools = pools(&cfg, |_| down(CONNECTION_REFUSED));
    let mut opts = options("/", false);
    opts.flags
        .push(("web.cors.origin".into(), "https://.*\\.example".into()));
    let s = start(
        Arc::new(FakeStatus::new(cfg, pools)),
        opts,
        WebSecurity::default(),
    )
    .await;
    let allowed = |origin: &'static str| {
        let req = c
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/v1/targets", s.base),
            )
            .header("Origin", origin);
        async move {
            let r = req.send().await.ok()?;
            assert_eq!(r.status().as_u16(), 200);
            r.headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        }
    };
    assert_eq!(
        allowed("https://grafana.example").await.as_deref(),
        Some("https://grafana.example")
    );
    assert_eq!(allowed("https://evil.test").await, None);
}
