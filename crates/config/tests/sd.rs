//! `dns_sd_configs`, `consul_sd_configs` and `docker_sd_configs`: Prometheus's
//! defaults, validation messages (with line and field path) and the
//! redacted YAML rendering.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use tributary_config::{load_str, Config, ConfigErrors, DnsRecordType};

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    load_str(yaml, "prometheus.yml", Path::new("/etc/prometheus"))
}

fn loaded(yaml: &str) -> Config {
    load(yaml).unwrap_or_else(|e| panic!("config does not load: {e}"))
}

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => panic!("config unexpectedly valid:\n{yaml}"),
        Err(e) => e.errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn has_error(errs: &[String], line: u32, needle: &str) -> bool {
    errs.iter()
        .any(|e| e.starts_with(&format!("prometheus.yml:{line}:")) && e.contains(needle))
}

#[test]
fn dns_defaults_and_types() {
    let cfg = loaded(
        "scrape_configs:\n  - job_name: d\n    dns_sd_configs:\n      - names: [_x._tcp.example.com]\n      - names: [a.example.com]\n        type: aaaa\n        port: 9100\n        refresh_interval: 5s\n",
    );
    let sd = &cfg.scrape_configs[0].dns_sd_configs;
    assert_eq!(sd.len(), 2);
    assert_eq!(sd[0].record_type, DnsRecordType::Srv);
    assert_eq!(sd[0].refresh_interval, Duration::from_secs(30));
    assert_eq!(sd[0].port, 0);
    assert_eq!(sd[1].record_type, DnsRecordType::Aaaa);
    assert_eq!(sd[1].port, 9100);
    assert_eq!(sd[1].refresh_interval, Duration::from_secs(5));
}

#[test]
fn dns_validation_messages() {
    let errs = errors(
        "scrape_configs:\n  - job_name: d\n    dns_sd_configs:\n      - names: []\n      - names: [x]\n        type: MX\n      - names: [x]\n        type: TXT\n        port: 1\n",
    );
    assert!(
        has_error(
            &errs,
            4,
            "DNS-SD config must contain at least one SRV record name"
        ),
        "{errs:?}"
    );
    assert!(
        has_error(
            &errs,
            5,
            "a port is required in DNS-SD configs for all record types except SRV"
        ),
        "{errs:?}"
    );
    assert!(
        has_error(
            &errs,
            8,
            "scrape_configs[0].dns_sd_configs[2].type: invalid DNS-SD records type TXT"
        ),
        "{errs:?}"
    );
}

#[test]
fn consul_defaults_and_legacy_basic_auth() {
    let cfg = loaded(
        "scrape_configs:\n  - job_name: c\n    consul_sd_configs:\n      - {}\n      - server: consul:8500\n        username: u\n        password: p\n        services: [web]\n        node_meta: {zone: b, rack: a}\n        allow_stale: false\n",
    );
    let sd = &cfg.scrape_configs[0].consul_sd_configs;
    assert_eq!(sd[0].server, "localhost:8500");
    assert_eq!(sd[0].scheme, "http");
    assert_eq!(sd[0].tag_separator, ",");
    assert!(sd[0].allow_stale);
    assert_eq!(sd[0].refresh_interval, Duration::from_secs(30));
    let auth = sd[1]
        .http_client
        .basic_auth
        .as_ref()
        .map(|b| b.username.as_str());
    assert_eq!(auth, Some("u"));
    assert_eq!(
        sd[1].node_meta,
        vec![("rack".into(), "a".into()), ("zone".into(), "b".into())]
    );
    assert!(!sd[1].allow_stale);
    let yaml = cfg.to_redacted_yaml();
    assert!(yaml.contains("consul_sd_configs:"), "{yaml}");
    assert!(yaml.contains("password: <secret>"), "{yaml}");
    assert!(!yaml.contains("password: p\n"), "{yaml}");
}

#[test]
fn consul_validation_messages() {
    let errs = errors(
        "scrape_configs:\n  - job_name: c\n    consul_sd_configs:\n      - server: ''\n      - username: u\n        basic_auth: {username: v}\n      - token: t\n        authorization: {credentials: x}\n      - servr: x\n",
    );
    assert!(
        has_error(
            &errs,
            4,
            "consul SD configuration requires a server address"
        ),
        "{errs:?}"
    );
    assert!(
        has_error(
            &errs,
            5,
            "at most one of consul SD configuration username and password and basic auth"
        ),
        "{errs:?}"
    );
    assert!(
        has_error(
            &errs,
            7,
            "at most one of consul SD token, authorization, or oauth2 can be configured"
        ),
        "{errs:?}"
    );
    assert!(
        has_error(&errs, 9, "field servr not found in type consul.SDConfig"),
        "{errs:?}"
    );
}

#[test]
fn docker_defaults_filters_and_validation() {
    let cfg = loaded(
        "scrape_configs:\n  - job_name: k\n    docker_sd_configs:\n      - host: unix:///var/run/docker.sock\n        filters:\n          - name: label\n            values: [a=b]\n",
    );
    let sd = &cfg.scrape_configs[0].docker_sd_configs[0];
    assert_eq!(sd.port, 80);
    assert_eq!(sd.host_networking_host, "localhost");
    assert!(sd.match_first_network);
    assert_eq!(sd.refresh_interval, Duration::from_secs(60));
    assert_eq!(sd.filters[0].name, "label");
    assert_eq!(sd.filters[0].values, vec!["a=b".to_string()]);
    assert!(cfg
        .to_redacted_yaml()
        .contains("host: unix:///var/run/docker.sock"));

    let errs =
        errors("scrape_configs:\n  - job_name: k\n    docker_sd_configs:\n      - port: 70000\n");
    assert!(has_error(&errs, 4, "host missing"), "{errs:?}");
    assert!(
        has_error(&errs, 4, "port 70000 is out of range"),
        "{errs:?}"
    );
}

#[test]
fn ec2_defaults_and_validation() {
    let cfg = loaded(
        "scrape_configs:\n  - job_name: e\n    ec2_sd_configs:\n      - region: eu-west-1\n        secret_key: abc\n        filters:\n          - name: tag:env\n            values: [prod]\n",
    );
    let sd = &cfg.scrape_configs[0].ec2_sd_configs[0];
    assert_eq!(sd.region, "eu-west-1");
    assert_eq!(sd.port, 80);
    assert_eq!(sd.refresh_interval, Duration::from_secs(60));
    assert_eq!(sd.filters[0].name, "tag:env");
    let yaml = cfg.to_redacted_yaml();
    assert!(yaml.contains("secret_key: <secret>"), "{yaml}");
    assert!(!yaml.contains("abc"), "{yaml}");

    let errs = errors(
        "scrape_configs:\n  - job_name: e\n    ec2_sd_configs:\n      - role_arn: arn:aws:iam::1:role/x\n        filters:\n          - name: a\n            values: []\n",
    );
    assert!(
        has_error(&errs, 4, "role_arn is not supported yet by Tributary"),
        "{errs:?}"
    );
    assert!(
        has_error(
            &errs,
            6,
            "EC2 SD configuration filter values cannot be empty"
        ),
        "{errs:?}"
    );
}

#[test]
fn other_mechanisms_are_still_rejected() {
    let errs =
        errors("scrape_configs:\n  - job_name: k\n    gce_sd_configs:\n      - project: x\n");
    assert!(
        has_error(&errs, 3, "gce_sd_configs is not supported yet by Tributary"),
        "{errs:?}"
    );
}

#[test]
fn kubernetes_sd_fields_and_validation() {
    let cfg = load(
        "scrape_configs:\n  - job_name: k\n    kubernetes_sd_configs:\n      - role: endpoints\n        api_server: https://k8s.example:6443/\n        bearer_token: abc\n        namespaces:\n          names: [a, b]\n        selectors:\n          - role: pod\n            label: app in (web, api),!legacy\n            field: spec.nodeName=n1\n        attach_metadata: {node: true, namespace: true}\n",
    )
    .unwrap();
    let sd = &cfg.scrape_configs[0].kubernetes_sd_configs[0];
    assert_eq!(sd.role, tributary_config::KubernetesRole::Endpoints);
    assert_eq!(sd.api_server.as_deref(), Some("https://k8s.example:6443"));
    assert_eq!(sd.namespaces.names, vec!["a", "b"]);
    assert_eq!(
        sd.selector_for(tributary_config::KubernetesRole::Pod),
        ("app in (web, api),!legacy", "spec.nodeName=n1")
    );
    assert!(sd.attach_metadata.node && sd.attach_metadata.namespace);
    assert!(!sd.attach_metadata.deployment && !sd.attach_metadata.cronjob);
    // Prometheus 3.11's pod-controller metadata switches.
    let cfg = load("scrape_configs:\n  - job_name: k\n    kubernetes_sd_configs:\n      - role: pod\n        attach_metadata: {deployment: true, job: true, cronjob: true}\n").unwrap();
    let am = cfg.scrape_configs[0].kubernetes_sd_configs[0].attach_metadata;
    assert!(am.deployment && am.job && am.cronjob && !am.node && !am.namespace);

    let cases = [
        ("kubernetes_sd_configs:\n      - api_server: http://x\n", "role missing"),
        ("kubernetes_sd_configs:\n      - role: deployment\n", "unknown Kubernetes SD role \"deployment\""),
        ("kubernetes_sd_configs:\n      - role: pod\n        bearer_token: x\n", "please provide the 'api_server' URL explicitly"),
        ("kubernetes_sd_configs:\n      - role: pod\n        api_server: http://x\n        kubeconfig_file: /k\n", "cannot use 'kubeconfig_file' and 'api_server' simultaneously"),
        ("kubernetes_sd_configs:\n      - role: pod\n        kubeconfig_file: /k\n        bearer_token: x\n", "together with 'kubeconfig_file'"),
        ("kubernetes_sd_configs:\n      - role: pod\n        api_server: http://x\n        namespaces: {own_namespace: true}\n", "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously"),
        ("kubernetes_sd_configs:\n      - role: service\n        selectors: [{role: pod}]\n", "service role supports only service selectors"),
        ("kubernetes_sd_configs:\n      - role: pod\n        selectors: [{role: pod}, {role: pod}]\n", "duplicated selector role: pod"),
        ("kubernetes_sd_configs:\n      - role: pod\n        selectors: [{role: pod, field: spec.nodeName}]\n", "can't understand"),
        ("kubernetes_sd_configs:\n      - role: pod\n        selectors: [{role: pod, label: 'app in web'}]\n", "unable to parse requirement"),
        ("kubernetes_sd_configs:\n      - role: pod\n        attach_metadata: {deployment: yes please}\n", "attach_metadata.deployment"),
    ];
    for (block, want) in cases {
        let yaml = format!("scrape_configs:\n  - job_name: k\n    {block}");
        let err = match load(&yaml) {
            Ok(_) => panic!("accepted: {block}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{block}: {err}");
    }
    // In-cluster default: no api_server, no kubeconfig; own_namespace allowed.
    let cfg = load("scrape_configs:\n  - job_name: k\n    kubernetes_sd_configs:\n      - role: pod\n        namespaces: {own_namespace: true}\n").unwrap();
    let sd = &cfg.scrape_configs[0].kubernetes_sd_configs[0];
    assert!(sd.api_server.is_none() && sd.kubeconfig_file.is_none() && sd.namespaces.own_namespace);
}
