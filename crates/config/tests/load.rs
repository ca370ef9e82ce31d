//! End-to-end loading tests: real files in temp dirs, asserted messages and
//! line numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use tributary_config::{load_file, load_str, load_str_with_env, ConfigErrors, RemoteWriteProtoMsg};
use tributary_model::ScrapeProtocol;

fn load(yaml: &str) -> Result<tributary_config::Config, ConfigErrors> {
    load_str(yaml, "prometheus.yml", Path::new("/etc/prom"))
}

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => panic!("config unexpectedly valid:\n{yaml}"),
        Err(e) => e.errors.iter().map(|e| e.to_string()).collect(),
    }
}

/// Asserts one error reads `prometheus.yml:<line>:...<path>: ...<needle>...`.
fn assert_error(errs: &[String], line: u32, path: &str, needle: &str) {
    let prefix = format!("prometheus.yml:{line}:");
    assert!(
        errs.iter().any(|e| e.starts_with(&prefix)
            && e.contains(&format!(" {path}: "))
            && e.contains(needle)),
        "no error at line {line} for {path} containing {needle:?}; got:\n{}",
        errs.join("\n")
    );
}

#[test]
fn minimal_file_gets_prometheus_defaults() {
    let cfg = load("scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['localhost:9100']\n").unwrap();
    assert_eq!(cfg.global.scrape_interval, Duration::from_secs(60));
    assert_eq!(cfg.global.scrape_timeout, Duration::from_secs(10));
    assert_eq!(cfg.global.evaluation_interval, Duration::from_secs(60));
    let job = &cfg.scrape_configs[0];
    assert_eq!(job.job_name, "node");
    assert_eq!(job.scrape_interval, Duration::from_secs(60));
    assert_eq!(job.scrape_timeout, Duration::from_secs(10));
    assert_eq!(job.metrics_path, "/metrics");
    assert_eq!(job.scheme, "http");
    assert!(job.honor_timestamps && job.enable_compression && !job.honor_labels);
    assert!(job.http_client.follow_redirects && job.http_client.enable_http2);
    assert_eq!(
        job.scrape_protocols,
        vec![
            ScrapeProtocol::OpenMetricsText1_0_0,
            ScrapeProtocol::OpenMetricsText0_0_1,
            ScrapeProtocol::PrometheusText1_0_0,
            ScrapeProtocol::PrometheusText0_0_4
        ]
    );
    assert_eq!(job.static_configs[0].targets, vec!["localhost:9100"]);
    assert_eq!(job.static_configs[0].source, "0");
    assert_eq!(cfg.runtime.gogc, 75);
}

#[test]
fn empty_file_is_valid() {
    let cfg = load("").unwrap();
    assert!(cfg.scrape_configs.is_empty());
    assert_eq!(cfg.global.scrape_interval, Duration::from_secs(60));
}

#[test]
fn jobs_inherit_global_values() {
    let cfg = load(
        "global:\n  scrape_interval: 5s\n  sample_limit: 100\n  body_size_limit: 10MB\n  scrape_native_histograms: true\n\
scrape_configs:\n  - job_name: a\n  - job_name: b\n    scrape_interval: 2s\n    sample_limit: 7\n  - job_name: c\n    scrape_interval: 1m\n",
    )
    .unwrap();
    assert_eq!(
        cfg.global.scrape_timeout,
        Duration::from_secs(5),
        "min(10s, interval)"
    );
    let [a, b, c] = &cfg.scrape_configs[..] else {
        panic!()
    };
    assert_eq!(
        (a.scrape_interval, a.scrape_timeout),
        (Duration::from_secs(5), Duration::from_secs(5))
    );
    assert_eq!(
        (b.scrape_interval, b.scrape_timeout),
        (Duration::from_secs(2), Duration::from_secs(2))
    );
    assert_eq!(
        (c.scrape_interval, c.scrape_timeout),
        (Duration::from_secs(60), Duration::from_secs(5))
    );
    assert_eq!((a.sample_limit, b.sample_limit), (100, 7));
    assert_eq!(a.body_size_limit, 10 * 1024 * 1024);
    assert_eq!(a.scrape_protocols[0], ScrapeProtocol::PrometheusProto);
}

#[test]
fn scrape_errors_are_all_reported_with_lines() {
    let errs = errors(
        "global:\n  scrape_interval: 10s\n  scrape_timeout: 20s\n\
scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 6s\n\
\x20 - job_name: ''\n\
\x20 - job_name: a\n    scheme: ftp\n\
\x20 - job_name: d\n    relabel_configs:\n      - null\n    metric_relabel_configs: [~]\n\
\x20 - job_name: e\n    static_configs:\n      - targets: ['host:80/path']\n    bogus: 1\n",
    );
    assert_error(
        &errs,
        3,
        "global.scrape_timeout",
        "global scrape timeout greater than scrape interval",
    );
    assert_error(
        &errs,
        7,
        "scrape_configs[0].scrape_timeout",
        "scrape timeout greater than scrape interval for scrape config with job name \"a\"",
    );
    assert_error(&errs, 8, "scrape_configs[1].job_name", "job_name is empty");
    assert_error(
        &errs,
        9,
        "scrape_configs[2]",
        "found multiple scrape configs with job name \"a\"",
    );
    assert_error(&errs, 10, "scrape_configs[2].scheme", "invalid scheme");
    assert_error(
        &errs,
        13,
        "scrape_configs[3].relabel_configs[0]",
        "empty or null target relabeling rule in scrape config",
    );
    assert_error(
        &errs,
        14,
        "scrape_configs[3].metric_relabel_configs[0]",
        "empty or null metric relabeling rule in scrape config",
    );
    assert_error(
        &errs,
        17,
        "scrape_configs[4].static_configs[0].targets[0]",
        "is not a valid hostname",
    );
    assert_error(
        &errs,
        18,
        "scrape_configs[4].bogus",
        "field bogus not found",
    );
    assert_eq!(errs.len(), 9, "{}", errs.join("\n"));
}

#[test]
fn syntax_and_type_errors() {
    let errs = errors("global:\n  scrape_interval: 5s\n  scrape_interval: 6s\n");
    assert!(errs[0].starts_with("prometheus.yml:3:"), "{errs:?}");
    assert!(errs[0].contains("already set"), "{errs:?}");
    let errs = errors("scrape_configs:\n  - job_name: x\n    honor_labels: maybe\n    sample_limit: -1\n    scrape_interval: 10\n");
    assert_error(&errs, 3, "scrape_configs[0].honor_labels", "bool");
    assert_error(&errs, 4, "scrape_configs[0].sample_limit", "uint");
    assert_error(
        &errs,
        5,
        "scrape_configs[0].scrape_interval",
        "not a valid duration string",
    );
}

#[test]
fn unknown_top_level_field() {
    let errs = errors("global: {}\nscrape_config:\n  - job_name: x\n");
    assert_error(
        &errs,
        2,
        "scrape_config",
        "field scrape_config not found in type",
    );
}

#[test]
fn agent_mode_rejections() {
    let errs = errors(
        "alerting:\n  alertmanagers:\n    - static_configs: [{targets: ['a:1']}]\nrule_files: ['x.yml']\nremote_read:\n  - url: http://r\n",
    );
    assert_error(
        &errs,
        2,
        "alerting",
        "field alerting is not allowed in agent mode",
    );
    assert_error(
        &errs,
        4,
        "rule_files",
        "field rule_files is not allowed in agent mode",
    );
    assert_error(
        &errs,
        6,
        "remote_read",
        "field remote_read is not allowed in agent mode",
    );
    // Empty blocks are fine, as in Prometheus.
    load("alerting: {}\nrule_files: []\n").unwrap();
}

#[test]
fn unsupported_sd_is_an_error_with_line() {
    let errs = errors("scrape_configs:\n  - job_name: k\n    azure_sd_configs:\n      - subscription_id: x\n    gce_sd_configs: []\n");
    assert_error(
        &errs,
        3,
        "scrape_configs[0].azure_sd_configs",
        "azure_sd_configs is not supported yet by Tributary",
    );
    assert_error(
        &errs,
        5,
        "scrape_configs[0].gce_sd_configs",
        "gce_sd_configs is not supported yet by Tributary",
    );
}

#[test]
fn nhcb_conversion_is_refused_not_ignored() {
    let errs = errors("global:\n  convert_classic_histograms_to_nhcb: true\nscrape_configs:\n  - job_name: k\n    convert_classic_histograms_to_nhcb: true\n    static_configs: []\n");
    let msg = "convert_classic_histograms_to_nhcb: converting classic histograms to native histograms with custom buckets is not supported yet by Tributary";
    assert_error(&errs, 2, "global.convert_classic_histograms_to_nhcb", msg);
    assert_error(
        &errs,
        5,
        "scrape_configs[0].convert_classic_histograms_to_nhcb",
        msg,
    );
    let cfg = load("scrape_configs:\n  - job_name: k\n    convert_classic_histograms_to_nhcb: false\n    native_histogram_bucket_limit: 160\n    native_histogram_min_bucket_factor: 1.1\n").unwrap();
    assert_eq!(cfg.scrape_configs[0].native_histogram_bucket_limit, 160);
}

#[test]
fn file_and_http_sd() {
    let cfg = load(
        "scrape_configs:\n  - job_name: f\n    file_sd_configs:\n      - files: ['targets/*.json']\n    http_sd_configs:\n      - url: http://sd.example:8080/targets\n        refresh_interval: 30s\n        basic_auth: {username: u, password: p}\n",
    )
    .unwrap();
    let job = &cfg.scrape_configs[0];
    assert_eq!(
        job.file_sd_configs[0].files,
        vec!["/etc/prom/targets/*.json"]
    );
    assert_eq!(
        job.file_sd_configs[0].refresh_interval,
        Duration::from_secs(300)
    );
    let http = &job.http_sd_configs[0];
    assert_eq!(http.refresh_interval, Duration::from_secs(30));
    assert_eq!(
        http.http_client
            .basic_auth
            .as_ref()
            .unwrap()
            .password
            .as_ref()
            .unwrap()
            .expose(),
        "p"
    );
    let errs = errors("scrape_configs:\n  - job_name: f\n    file_sd_configs:\n      - files: ['a.txt']\n    http_sd_configs:\n      - url: ftp://x\n");
    assert_error(
        &errs,
        4,
        "scrape_configs[0].file_sd_configs[0].files[0]",
        "is not valid for file discovery",
    );
    assert_error(
        &errs,
        6,
        "scrape_configs[0].http_sd_configs[0].url",
        "URL scheme must be 'http' or 'https'",
    );
}

#[test]
fn external_labels_expand_environment() {
    let env = |name: &str| match name {
        "DC" => Some("eu-1".to_string()),
        _ => None,
    };
    let cfg = load_str_with_env(
        "global:\n  external_labels:\n    dc: ${DC}\n    host: $UNSET\n    price: '$$5'\n",
        "prometheus.yml",
        Path::new("."),
        &env,
    )
    .unwrap();
    let labels = &cfg.global.external_labels;
    assert_eq!(labels.get("dc"), Some("eu-1"));
    assert_eq!(labels.get("host"), None, "empty value is not applied");
    assert_eq!(labels.get("price"), Some("$5"));
}

#[test]
fn http_client_validation() {
    let errs = errors(
        "scrape_configs:\n  - job_name: a\n    basic_auth: {username: u, password: p}\n    authorization: {credentials: t}\n\
\x20 - job_name: b\n    oauth2: {client_id: x}\n\
\x20 - job_name: c\n    tls_config: {ca: x, ca_file: y, min_version: TLS9}\n\
\x20 - job_name: d\n    no_proxy: localhost\n    authorization: {type: Basic, credentials: z}\n",
    );
    assert_error(
        &errs,
        4,
        "scrape_configs[0].authorization",
        "at most one of basic_auth, oauth2 & authorization must be configured",
    );
    assert_error(
        &errs,
        6,
        "scrape_configs[1].oauth2",
        "either oauth2 client_secret or client_secret_file must be configured",
    );
    assert_error(
        &errs,
        6,
        "scrape_configs[1].oauth2",
        "oauth2 token_url must be configured",
    );
    assert_error(
        &errs,
        8,
        "scrape_configs[2].tls_config",
        "at most one of ca and ca_file must be configured",
    );
    assert_error(
        &errs,
        8,
        "scrape_configs[2].tls_config.min_version",
        "unknown TLS version: TLS9",
    );
    assert_error(
        &errs,
        9,
        "scrape_configs[3]",
        "if no_proxy is configured, proxy_url must also be configured",
    );
    assert_error(
        &errs,
        11,
        "scrape_configs[3].authorization.type",
        "authorization type cannot be set to \"basic\"",
    );
}

#[test]
fn remote_write_defaults_and_names() {
    let cfg =
        load("remote_write:\n  - url: http://a/push\n  - url: http://b/push\n    name: bee\n")
            .unwrap();
    let rw = &cfg.remote_write[0];
    assert_eq!(rw.remote_timeout, Duration::from_secs(30));
    assert!(
        !rw.http_client.enable_http2,
        "remote write defaults enable_http2 to false"
    );
    assert!(rw.http_client.follow_redirects);
    assert_eq!(rw.protobuf_message, RemoteWriteProtoMsg::V1);
    let q = &rw.queue_config;
    assert_eq!(
        (
            q.capacity,
            q.max_shards,
            q.min_shards,
            q.max_samples_per_send
        ),
        (10_000, 50, 1, 2_000)
    );
    assert_eq!(
        (q.batch_send_deadline, q.min_backoff, q.max_backoff),
        (
            Duration::from_secs(5),
            Duration::from_millis(30),
            Duration::from_secs(5)
        )
    );
    assert!(rw.metadata_config.send);
    assert_eq!(rw.metadata_config.send_interval, Duration::from_secs(60));
    assert_eq!(rw.name.len(), 6);
    assert!(rw.name.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(cfg.remote_write[1].name, "bee");
    // The default name is stable across loads and differs per URL.
    let again = load("remote_write:\n  - url: http://a/push\n").unwrap();
    assert_eq!(again.remote_write[0].name, rw.name);
}

#[test]
fn remote_write_errors() {
    let errs = errors(
        "remote_write:\n  - url: ''\n\
\x20 - url: http://a\n    headers:\n      Authorization: x\n      User-Agent: y\n\
\x20 - url: http://b\n    name: n\n  - url: http://c\n    name: n\n\
\x20 - url: http://d\n    sigv4: {region: eu, access_key: AK}\n\
\x20 - url: http://e\n    queue_config: {min_shards: 10, max_shards: 5, min_backoff: 1s, max_backoff: 10ms, capacity: 0}\n\
\x20 - url: http://b\n    name: n2\n  - url: http://b\n    name: n2\n",
    );
    assert_error(
        &errs,
        2,
        "remote_write[0].url",
        "url for remote_write is empty",
    );
    assert_error(
        &errs,
        5,
        "remote_write[1].headers.Authorization",
        "authorization header must be changed via the basic_auth",
    );
    assert_error(
        &errs,
        6,
        "remote_write[1].headers.User-Agent",
        "User-Agent is a reserved header. It must not be changed",
    );
    assert_error(
        &errs,
        9,
        "remote_write[3].name",
        "found multiple remote write configs with job name \"n\"",
    );
    assert_error(
        &errs,
        12,
        "remote_write[4].sigv4",
        "must provide a AWS SigV4 Access key and Secret Key",
    );
    assert_error(
        &errs,
        14,
        "remote_write[5].queue_config.min_shards",
        "must not be greater than max_shards",
    );
    assert_error(
        &errs,
        14,
        "remote_write[5].queue_config.max_backoff",
        "max_backoff must be greater than or equal to min_backoff",
    );
    assert_error(
        &errs,
        14,
        "remote_write[5].queue_config.capacity",
        "capacity must be positive",
    );
    assert_error(
        &errs,
        17,
        "remote_write[7]",
        "duplicate remote write configs are not allowed, found duplicate for URL: http://b",
    );
}

#[test]
fn storage_and_inert_blocks() {
    let cfg = load(
        "global:\n  evaluation_interval: 30s\nruntime:\n  gogc: 50\nstorage:\n  tsdb:\n    out_of_order_time_window: 10m\ntracing:\n  endpoint: x:4317\notlp:\n  promote_resource_attributes: [a]\n",
    )
    .unwrap();
    assert_eq!(
        cfg.storage.out_of_order_time_window,
        Duration::from_secs(600)
    );
    assert_eq!(cfg.runtime.gogc, 50);
    assert_eq!(cfg.global.evaluation_interval, Duration::from_secs(30));
    let errs = errors("tracing:\n  nonsense: 1\n");
    assert_error(&errs, 2, "tracing.nonsense", "not found");
}

#[test]
fn redacted_yaml_hides_secrets_and_reloads() {
    let yaml = "global:\n  external_labels: {region: eu}\nscrape_configs:\n  - job_name: s\n    basic_auth: {username: admin, password: hunter2}\n    static_configs: [{targets: ['a:1'], labels: {env: prod}}]\n\
remote_write:\n  - url: https://rw.example/api\n    authorization: {credentials: topsecret}\n    headers: {X-Scope-OrgID: tenant}\n";
    let cfg = load(yaml).unwrap();
    let out = cfg.to_redacted_yaml();
    assert!(
        !out.contains("hunter2") && !out.contains("topsecret"),
        "{out}"
    );
    assert!(out.contains("password: <secret>"), "{out}");
    assert!(out.contains("credentials: <secret>"), "{out}");
    assert!(out.contains("region: eu"), "{out}");
    assert!(out.contains("scrape_interval: 1m"), "{out}");
    // The rendered form is itself a valid config with the same structure.
    let reparsed = load(&out).unwrap();
    assert_eq!(
        reparsed.scrape_configs[0].static_configs,
        cfg.scrape_configs[0].static_configs
    );
    assert_eq!(reparsed.remote_write[0].name, cfg.remote_write[0].name);
    assert_eq!(reparsed.global, cfg.global);
    assert_eq!(
        format!("{:?}", cfg.remote_write[0].http_client.authorization),
        format!("{:?}", reparsed.remote_write[0].http_client.authorization)
    );
}

#[test]
fn scrape_config_files_are_loaded_relative_to_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(
        dir.path().join("jobs/a.yml"),
        "scrape_configs:\n  - job_name: from_a\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("jobs/b.yml"),
        "scrape_configs:\n  - job_name: main\n    scrape_timeout: 2m\n",
    )
    .unwrap();
    let main = dir.path().join("prometheus.yml");
    std::fs::write(
        &main,
        "scrape_config_files: ['jobs/*.yml']\nscrape_configs:\n  - job_name: main\n",
    )
    .unwrap();
    let errs = load_file(&main).unwrap_err();
    let text = errs.to_string();
    assert!(
        text.contains("b.yml:3:21: scrape_configs[0].scrape_timeout: scrape timeout greater"),
        "{text}"
    );
    assert!(
        text.contains(
            "b.yml:2:5: scrape_configs[0]: found multiple scrape configs with job name \"main\""
        ),
        "{text}"
    );

    std::fs::write(
        dir.path().join("jobs/b.yml"),
        "scrape_configs:\n  - job_name: from_b\n",
    )
    .unwrap();
    let cfg = load_file(&main).unwrap();
    let names: Vec<&str> = cfg
        .scrape_configs
        .iter()
        .map(|s| s.job_name.as_str())
        .collect();
    assert_eq!(names, vec!["main", "from_a", "from_b"]);
    assert_eq!(cfg.source_files.len(), 3);
}

#[test]
fn relative_credential_files_resolve_against_config_dir() {
    let cfg = load("scrape_configs:\n  - job_name: x\n    authorization: {credentials_file: token}\n    tls_config: {ca_file: /abs/ca.pem}\n").unwrap();
    let http = &cfg.scrape_configs[0].http_client;
    assert_eq!(
        http.authorization
            .as_ref()
            .unwrap()
            .credentials_file
            .as_deref(),
        Some("/etc/prom/token")
    );
    assert_eq!(http.authorization.as_ref().unwrap().type_, "Bearer");
    assert_eq!(http.tls_config.ca_file.as_deref(), Some("/abs/ca.pem"));
}

#[test]
fn check_config_reports_like_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&good, "scrape_configs: []\n").unwrap();
    std::fs::write(&bad, "rule_files: [a.yml]\n").unwrap();
    let (report, ok) = tributary_config::check_config_files(&[good.clone(), bad.clone()]);
    assert!(!ok);
    assert!(
        report.contains(&format!(
            "Checking {}\n  SUCCESS: {} is valid prometheus config file syntax",
            good.display(),
            good.display()
        )),
        "{report}"
    );
    assert!(report.contains("  FAILED:"), "{report}");
    assert!(
        report.contains("field rule_files is not allowed in agent mode"),
        "{report}"
    );
    let (_, ok) = tributary_config::check_config_files(&[good]);
    assert!(ok);
}

#[test]
fn relabel_rules_are_built_and_validated() {
    let cfg = load(
        "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - source_labels: [__address__]\n        target_label: instance\n      - action: DROP\n        regex: 'x.*'\n        source_labels: [a]\n",
    )
    .unwrap();
    let rules = &cfg.scrape_configs[0].relabel_configs;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].target_label(), "instance");
    assert_eq!(rules[1].action(), tributary_relabel::Action::Drop);
    let out = cfg.to_redacted_yaml();
    let again = load(&out).unwrap();
    assert_eq!(again.scrape_configs[0].relabel_configs, *rules, "{out}");

    let errs = errors(
        "scrape_configs:\n  - job_name: r\n    relabel_configs:\n      - action: hashmod\n        target_label: t\n      - action: explode\n",
    );
    assert_error(
        &errs,
        4,
        "scrape_configs[0].relabel_configs[0]",
        "requires non-zero modulus",
    );
    assert_error(
        &errs,
        6,
        "scrape_configs[0].relabel_configs[1]",
        "unknown relabel action",
    );
}

#[test]
fn comments_before_and_inside_the_document_are_ignored() {
    let yaml = "# generated by a tool\n# second line\nglobal: # trailing\n  scrape_interval: 7s\n# between\nscrape_configs:\n  - job_name: a # job\n    static_configs:\n      - targets: ['h:1']\n";
    let cfg = tributary_config::load_str(yaml, "c.yml", std::path::Path::new(".")).unwrap();
    assert_eq!(
        cfg.global.scrape_interval,
        std::time::Duration::from_secs(7)
    );
    assert_eq!(cfg.scrape_configs[0].job_name, "a");
}
