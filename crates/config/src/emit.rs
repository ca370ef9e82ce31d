//! A small block-style YAML writer and the effective-config renderer used
//! by `/api/v1/status/config` and for default remote-write names.
//!
//! Secrets are always written as `<secret>` (as Prometheus marshals
//! `config.Secret`); empty optional fields are omitted (`omitempty`).

use std::time::Duration;

use crate::relabel::relabel_yaml;
use crate::types::{
    Config, GlobalConfig, HttpClientConfig, MetadataConfig, QueueConfig, RemoteWriteConfig,
    ScrapeConfig, Secret, TlsConfig,
};
use crate::units::{format_duration, format_size};

/// A YAML value to render.
#[derive(Debug, Clone)]
pub(crate) enum Y {
    /// A string, quoted when YAML would otherwise read it differently.
    Str(String),
    /// A value written verbatim (numbers, booleans).
    Raw(String),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
}

impl Y {
    fn is_empty_collection(&self) -> bool {
        matches!(self, Y::Seq(v) if v.is_empty()) || matches!(self, Y::Map(v) if v.is_empty())
    }
}

/// Builder for mappings that drops empty optional values.
#[derive(Default)]
pub(crate) struct MapY(Vec<(String, Y)>);

impl MapY {
    pub(crate) fn put(&mut self, key: &str, value: Y) -> &mut Self {
        self.0.push((key.to_string(), value));
        self
    }
    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.put(key, Y::Str(value.to_string()))
    }
    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.str(key, v);
        }
        self
    }
    pub(crate) fn secret(&mut self, key: &str, value: Option<&Secret>) -> &mut Self {
        if value.is_some() {
            self.str(key, "<secret>");
        }
        self
    }
    pub(crate) fn raw(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.put(key, Y::Raw(value.to_string()))
    }
    pub(crate) fn nonzero(&mut self, key: &str, value: u64) -> &mut Self {
        if value != 0 {
            self.raw(key, value);
        }
        self
    }
    pub(crate) fn duration(&mut self, key: &str, value: Duration) -> &mut Self {
        self.str(key, &format_duration(value))
    }
    pub(crate) fn list(&mut self, key: &str, items: &[String]) -> &mut Self {
        if !items.is_empty() {
            self.put(
                key,
                Y::Seq(items.iter().map(|s| Y::Str(s.clone())).collect()),
            );
        }
        self
    }
    pub(crate) fn non_empty(&mut self, key: &str, value: Y) -> &mut Self {
        if !value.is_empty_collection() {
            self.put(key, value);
        }
        self
    }
    pub(crate) fn build(self) -> Y {
        Y::Map(self.0)
    }
}

fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || s.trim() != s {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    let reserved = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ".inf", "-.inf", "+.inf",
        ".nan", "<<",
    ];
    if reserved.contains(&lower.as_str()) || s.parse::<f64>().is_ok() {
        return true;
    }
    if s.starts_with("0x") || s.starts_with("0o") || s.starts_with("0b") {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control())
}

fn quote(s: &str) -> String {
    if !needs_quotes(s) {
        return s.to_string();
    }
    if !s.chars().any(|c| c.is_control()) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn scalar_text(y: &Y) -> Option<String> {
    match y {
        Y::Str(s) => Some(quote(s)),
        Y::Raw(s) => Some(s.clone()),
        Y::Seq(v) if v.is_empty() => Some("[]".into()),
        Y::Map(v) if v.is_empty() => Some("{}".into()),
        _ => None,
    }
}

/// Renders `y` (normally a mapping) as a YAML document.
pub(crate) fn render(y: &Y) -> String {
    let mut out = String::new();
    render_at(y, 0, &mut out);
    out
}

fn render_at(y: &Y, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match y {
        Y::Map(entries) => {
            for (key, value) in entries {
                out.push_str(&pad);
                out.push_str(&quote(key));
                out.push(':');
                match scalar_text(value) {
                    Some(text) => {
                        out.push(' ');
                        out.push_str(&text);
                        out.push('\n');
                    }
                    None => {
                        out.push('\n');
                        let child_indent = if matches!(value, Y::Seq(_)) {
                            indent
                        } else {
                            indent + 2
                        };
                        render_at(value, child_indent, out);
                    }
                }
            }
        }
        Y::Seq(items) => {
            for item in items {
                match scalar_text(item) {
                    Some(text) => {
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&text);
                        out.push('\n');
                    }
                    None => {
                        let mut nested = String::new();
                        render_at(item, indent + 2, &mut nested);
                        // Replace the first line's indentation with "- ".
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(nested.get(indent + 2..).unwrap_or_default());
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar_text(other).unwrap_or_default());
            out.push('\n');
        }
    }
}

fn global_yaml(g: &GlobalConfig) -> Y {
    let mut m = MapY::default();
    m.duration("scrape_interval", g.scrape_interval)
        .duration("scrape_timeout", g.scrape_timeout);
    if let Some(p) = &g.scrape_protocols {
        m.put(
            "scrape_protocols",
            Y::Seq(p.iter().map(|p| Y::Str(p.name().into())).collect()),
        );
    }
    m.duration("evaluation_interval", g.evaluation_interval);
    if !g.rule_query_offset.is_zero() {
        m.duration("rule_query_offset", g.rule_query_offset);
    }
    let labels: Vec<(String, Y)> = g
        .external_labels
        .iter()
        .map(|l| (l.name.to_string(), Y::Str(l.value.to_string())))
        .collect();
    m.non_empty("external_labels", Y::Map(labels))
        .opt_str("query_log_file", g.query_log_file.as_deref())
        .opt_str(
            "scrape_failure_log_file",
            g.scrape_failure_log_file.as_deref(),
        )
        .str(
            "metric_name_validation_scheme",
            &g.metric_name_validation_scheme,
        )
        .str(
            "metric_name_escaping_scheme",
            &g.metric_name_escaping_scheme,
        );
    if g.body_size_limit != 0 {
        m.str("body_size_limit", &format_size(g.body_size_limit));
    }
    m.nonzero("sample_limit", g.sample_limit)
        .nonzero("label_limit", g.label_limit)
        .nonzero("label_name_length_limit", g.label_name_length_limit)
        .nonzero("label_value_length_limit", g.label_value_length_limit)
        .nonzero("target_limit", g.target_limit)
        .nonzero("keep_dropped_targets", g.keep_dropped_targets)
        .raw("scrape_native_histograms", g.scrape_native_histograms)
        .raw(
            "always_scrape_classic_histograms",
            g.always_scrape_classic_histograms,
        )
        .raw(
            "convert_classic_histograms_to_nhcb",
            g.convert_classic_histograms_to_nhcb,
        )
        .raw("extra_scrape_metrics", g.extra_scrape_metrics);
    m.build()
}

fn tls_yaml(t: &TlsConfig) -> Y {
    let mut m = MapY::default();
    m.opt_str("ca", t.ca.as_deref())
        .opt_str("ca_file", t.ca_file.as_deref())
        .opt_str("cert", t.cert.as_deref())
        .opt_str("cert_file", t.cert_file.as_deref())
        .secret("key", t.key.as_ref())
        .opt_str("key_file", t.key_file.as_deref())
        .opt_str("server_name", t.server_name.as_deref())
        .raw("insecure_skip_verify", t.insecure_skip_verify)
        .str("min_version", t.min_version.name());
    if let Some(max) = t.max_version {
        m.str("max_version", max.name());
    }
    m.build()
}

fn proxy_yaml(
    m: &mut MapY,
    url: Option<&str>,
    no_proxy: Option<&str>,
    from_env: bool,
    connect: &[(String, Vec<Secret>)],
) {
    m.opt_str("proxy_url", url).opt_str("no_proxy", no_proxy);
    if from_env {
        m.raw("proxy_from_environment", true);
    }
    let headers: Vec<(String, Y)> = connect
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Y::Seq(v.iter().map(|_| Y::Str("<secret>".into())).collect()),
            )
        })
        .collect();
    m.non_empty("proxy_connect_header", Y::Map(headers));
}

/// The inlined HTTP client fields, appended to `m`.
pub(crate) fn http_client_yaml(m: &mut MapY, h: &HttpClientConfig) {
    if let Some(b) = &h.basic_auth {
        let mut bm = MapY::default();
        bm.opt_str("username", Some(&b.username))
            .opt_str("username_file", b.username_file.as_deref())
            .secret("password", b.password.as_ref())
            .opt_str("password_file", b.password_file.as_deref());
        m.put("basic_auth", bm.build());
    }
    if let Some(a) = &h.authorization {
        let mut am = MapY::default();
        am.str("type", &a.type_)
            .secret("credentials", a.credentials.as_ref())
            .opt_str("credentials_file", a.credentials_file.as_deref());
        m.put("authorization", am.build());
    }
    if let Some(o) = &h.oauth2 {
        let mut om = MapY::default();
        om.str("client_id", &o.client_id)
            .secret("client_secret", o.client_secret.as_ref())
            .opt_str("client_secret_file", o.client_secret_file.as_deref())
            .list("scopes", &o.scopes)
            .str("token_url", &o.token_url);
        let params: Vec<(String, Y)> = o
            .endpoint_params
            .iter()
            .map(|(k, v)| (k.clone(), Y::Str(v.clone())))
            .collect();
        om.non_empty("endpoint_params", Y::Map(params))
            .put("tls_config", tls_yaml(&o.tls_config));
        proxy_yaml(
            &mut om,
            o.proxy_url.as_deref(),
            o.no_proxy.as_deref(),
            o.proxy_from_environment,
            &o.proxy_connect_header,
        );
        m.put("oauth2", om.build());
    }
    m.put("tls_config", tls_yaml(&h.tls_config));
    proxy_yaml(
        m,
        h.proxy_url.as_deref(),
        h.no_proxy.as_deref(),
        h.proxy_from_environment,
        &h.proxy_connect_header,
    );
    let headers: Vec<(String, Y)> = h
        .http_headers
        .iter()
        .map(|(name, v)| {
            let mut hm = MapY::default();
            hm.list("values", &v.values);
            if !v.secrets.is_empty() {
                hm.put(
                    "secrets",
                    Y::Seq(
                        v.secrets
                            .iter()
                            .map(|_| Y::Str("<secret>".into()))
                            .collect(),
                    ),
                );
            }
            hm.list("files", &v.files);
            (name.clone(), hm.build())
        })
        .collect();
    m.non_empty("http_headers", Y::Map(headers))
        .raw("follow_redirects", h.follow_redirects)
        .raw("enable_http2", h.enable_http2);
}

fn scrape_yaml(s: &ScrapeConfig) -> Y {
    let mut m = MapY::default();
    m.str("job_name", &s.job_name)
        .raw("honor_labels", s.honor_labels)
        .raw("honor_timestamps", s.honor_timestamps)
        .raw("track_timestamps_staleness", s.track_timestamps_staleness);
    let params: Vec<(String, Y)> = s
        .params
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Y::Seq(v.iter().map(|x| Y::Str(x.clone())).collect()),
            )
        })
        .collect();
    m.non_empty("params", Y::Map(params))
        .duration("scrape_interval", s.scrape_interval)
        .duration("scrape_timeout", s.scrape_timeout)
        .put(
            "scrape_protocols",
            Y::Seq(
                s.scrape_protocols
                    .iter()
                    .map(|p| Y::Str(p.name().into()))
                    .collect(),
            ),
        );
    if let Some(p) = s.fallback_scrape_protocol {
        m.str("fallback_scrape_protocol", p.name());
    }
    m.raw("scrape_native_histograms", s.scrape_native_histograms)
        .raw(
            "always_scrape_classic_histograms",
            s.always_scrape_classic_histograms,
        )
        .raw(
            "convert_classic_histograms_to_nhcb",
            s.convert_classic_histograms_to_nhcb,
        )
        .opt_str(
            "scrape_failure_log_file",
            s.scrape_failure_log_file.as_deref(),
        )
        .str("metrics_path", &s.metrics_path)
        .str("scheme", &s.scheme)
        .raw("enable_compression", s.enable_compression);
    if s.body_size_limit != 0 {
        m.str("body_size_limit", &format_size(s.body_size_limit));
    }
    m.nonzero("sample_limit", s.sample_limit)
        .nonzero("target_limit", s.target_limit)
        .nonzero("label_limit", s.label_limit)
        .nonzero("label_name_length_limit", s.label_name_length_limit)
        .nonzero("label_value_length_limit", s.label_value_length_limit)
        .nonzero(
            "native_histogram_bucket_limit",
            s.native_histogram_bucket_limit,
        );
    if s.native_histogram_min_bucket_factor != 0.0 {
        m.raw(
            "native_histogram_min_bucket_factor",
            s.native_histogram_min_bucket_factor,
        );
    }
    m.nonzero("keep_dropped_targets", s.keep_dropped_targets)
        .str(
            "metric_name_validation_scheme",
            &s.metric_name_validation_scheme,
        )
        .str(
            "metric_name_escaping_scheme",
            &s.metric_name_escaping_scheme,
        )
        .raw("extra_scrape_metrics", s.extra_scrape_metrics);
    http_client_yaml(&mut m, &s.http_client);
    let file_sd: Vec<Y> = s
        .file_sd_configs
        .iter()
        .map(|f| {
            let mut fm = MapY::default();
            fm.list("files", &f.files)
                .duration("refresh_interval", f.refresh_interval);
            fm.build()
        })
        .collect();
    m.non_empty("file_sd_configs", Y::Seq(file_sd));
    let http_sd: Vec<Y> = s
        .http_sd_configs
        .iter()
        .map(|h| {
            let mut hm = MapY::default();
            http_client_yaml(&mut hm, &h.http_client);
            hm.str("url", &h.url)
                .duration("refresh_interval", h.refresh_interval);
            hm.build()
        })
        .collect();
    m.non_empty("http_sd_configs", Y::Seq(http_sd));
    let dns_sd = s
        .dns_sd_configs
        .iter()
        .map(crate::sd_dns::dns_sd_yaml)
        .collect();
    m.non_empty("dns_sd_configs", Y::Seq(dns_sd));
    let consul_sd = s
        .consul_sd_configs
        .iter()
        .map(crate::sd_consul::consul_sd_yaml)
        .collect();
    m.non_empty("consul_sd_configs", Y::Seq(consul_sd));
    let docker_sd = s
        .docker_sd_configs
        .iter()
        .map(crate::sd_docker::docker_sd_yaml)
        .collect();
    m.non_empty("docker_sd_configs", Y::Seq(docker_sd));
    let ec2_sd = s
        .ec2_sd_configs
        .iter()
        .map(crate::sd_ec2::ec2_sd_yaml)
        .collect();
    m.non_empty("ec2_sd_configs", Y::Seq(ec2_sd));
    let kubernetes_sd = s
        .kubernetes_sd_configs
        .iter()
        .map(crate::sd_kubernetes::kubernetes_sd_yaml)
        .collect();
    m.non_empty("kubernetes_sd_configs", Y::Seq(kubernetes_sd));
    let statics: Vec<Y> = s
        .static_configs
        .iter()
        .map(|g| {
            let mut gm = MapY::default();
            gm.put(
                "targets",
                Y::Seq(g.targets.iter().map(|t| Y::Str(t.clone())).collect()),
            );
            let labels: Vec<(String, Y)> = g
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Y::Str(v.clone())))
                .collect();
            gm.non_empty("labels", Y::Map(labels));
            gm.build()
        })
        .collect();
    m.non_empty("static_configs", Y::Seq(statics))
        .non_empty(
            "relabel_configs",
            Y::Seq(s.relabel_configs.iter().map(relabel_yaml).collect()),
        )
        .non_empty(
            "metric_relabel_configs",
            Y::Seq(s.metric_relabel_configs.iter().map(relabel_yaml).collect()),
        );
    m.build()
}

fn queue_yaml(q: &QueueConfig) -> Y {
    let mut m = MapY::default();
    m.raw("capacity", q.capacity)
        .raw("max_shards", q.max_shards)
        .raw("min_shards", q.min_shards)
        .raw("max_samples_per_send", q.max_samples_per_send)
        .duration("batch_send_deadline", q.batch_send_deadline)
        .duration("min_backoff", q.min_backoff)
        .duration("max_backoff", q.max_backoff);
    if q.retry_on_http_429 {
        m.raw("retry_on_http_429", true);
    }
    if !q.sample_age_limit.is_zero() {
        m.duration("sample_age_limit", q.sample_age_limit);
    }
    m.build()
}

fn metadata_yaml(md: &MetadataConfig) -> Y {
    let mut m = MapY::default();
    m.raw("send", md.send)
        .duration("send_interval", md.send_interval)
        .raw("max_samples_per_send", md.max_samples_per_send);
    m.build()
}

/// One remote-write entry; also the canonical form hashed for default names.
pub(crate) fn remote_write_yaml(r: &RemoteWriteConfig) -> Y {
    let mut m = MapY::default();
    m.str("url", &r.url)
        .duration("remote_timeout", r.remote_timeout);
    let headers: Vec<(String, Y)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Y::Str(v.clone())))
        .collect();
    m.non_empty("headers", Y::Map(headers))
        .non_empty(
            "write_relabel_configs",
            Y::Seq(r.write_relabel_configs.iter().map(relabel_yaml).collect()),
        )
        .opt_str("name", Some(&r.name))
        .raw("send_exemplars", r.send_exemplars)
        .raw("send_native_histograms", r.send_native_histograms);
    if r.round_robin_dns {
        m.raw("round_robin_dns", true);
    }
    m.str("protobuf_message", r.protobuf_message.name());
    http_client_yaml(&mut m, &r.http_client);
    m.put("queue_config", queue_yaml(&r.queue_config))
        .put("metadata_config", metadata_yaml(&r.metadata_config));
    // Prometheus declares `sigv4` after `metadata_config` (it is a field of
    // the remote-write entry, not of `<http_config>`).
    if let Some(s) = &r.http_client.sigv4 {
        m.put("sigv4", sigv4_yaml(s));
    }
    m.build()
}

/// `sigv4`, every field `omitempty` as in prometheus/sigv4.
fn sigv4_yaml(s: &crate::types::SigV4Config) -> Y {
    let mut m = MapY::default();
    m.opt_str("region", Some(&s.region))
        .opt_str("access_key", Some(&s.access_key))
        .secret("secret_key", s.secret_key.as_ref())
        .opt_str("profile", Some(&s.profile))
        .opt_str("role_arn", Some(&s.role_arn))
        .opt_str("external_id", Some(&s.external_id));
    if s.use_fips_sts_endpoint {
        m.raw("use_fips_sts_endpoint", true);
    }
    m.opt_str("service_name", Some(&s.service_name));
    m.build()
}

pub(crate) fn config_yaml(c: &Config) -> Y {
    let mut m = MapY::default();
    m.put("global", global_yaml(&c.global));
    let mut runtime = MapY::default();
    runtime.raw("gogc", c.runtime.gogc);
    m.put("runtime", runtime.build());
    m.non_empty(
        "scrape_configs",
        Y::Seq(c.scrape_configs.iter().map(scrape_yaml).collect()),
    )
    .non_empty(
        "remote_write",
        Y::Seq(c.remote_write.iter().map(remote_write_yaml).collect()),
    );
    if !c.storage.out_of_order_time_window.is_zero() {
        let mut tsdb = MapY::default();
        tsdb.duration(
            "out_of_order_time_window",
            c.storage.out_of_order_time_window,
        );
        let mut storage = MapY::default();
        storage.put("tsdb", tsdb.build());
        m.put("storage", storage.build());
    }
    m.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_ambiguous_scalars() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("true"), "'true'");
        assert_eq!(quote("10"), "'10'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a: b"), "'a: b'");
        assert_eq!(quote("it's"), "it's");
        assert_eq!(quote("*x"), "'*x'");
        assert_eq!(quote("line\nbreak"), "\"line\\nbreak\"");
    }

    #[test]
    fn renders_nested_block_yaml() {
        let mut inner = MapY::default();
        inner
            .str("a", "1")
            .put("b", Y::Seq(vec![Y::Str("x".into())]));
        let mut outer = MapY::default();
        outer
            .put("list", Y::Seq(vec![inner.build()]))
            .put("empty", Y::Map(vec![]));
        assert_eq!(
            render(&outer.build()),
            "list:\n- a: '1'\n  b:\n  - x\nempty: {}\n"
        );
    }
}
