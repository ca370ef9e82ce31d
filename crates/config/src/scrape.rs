//! `scrape_configs` entries: decoding, inheritance from `global`, and the
//! checks Prometheus's `ScrapeConfig.Validate` performs. Service discovery
//! blocks live here too since they are fields of a scrape config.

use std::time::Duration;

use crate::decode::{
    boolean, child, duration, file_path, float, index, map_entries, seq, size, string, string_list,
    string_map, unsigned, Ctx, Fields,
};
use crate::global::{
    default_scrape_protocols, is_valid_label_name, resolve_escaping_scheme,
    scrape_protocol_by_name, scrape_protocols,
};
use crate::http::decode_inline;
use crate::relabel::relabel_list;
use crate::types::{
    FileSdConfig, GlobalConfig, HttpClientConfig, HttpSdConfig, ScrapeConfig, TargetGroup,
};
use crate::yaml::Node;

const FILE_SD_DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const HTTP_SD_DEFAULT_REFRESH: Duration = Duration::from_secs(60);
const SUPPORTED_SD: &[&str] = &[
    "file_sd_configs",
    "http_sd_configs",
    "dns_sd_configs",
    "consul_sd_configs",
    "docker_sd_configs",
    "ec2_sd_configs",
    "kubernetes_sd_configs",
];

/// Providers compiled out of this build: `(field, provider, cargo feature)`.
/// Their blocks are still decoded (so syntax errors are reported too), and
/// the file is refused: a configured provider must never be silently idle.
const LEFT_OUT_SD: &[(&str, &str, &str)] = &[
    #[cfg(not(feature = "sd-consul"))]
    ("consul_sd_configs", "Consul", "sd-consul"),
    #[cfg(not(feature = "sd-docker"))]
    ("docker_sd_configs", "Docker", "sd-docker"),
    #[cfg(not(feature = "sd-ec2"))]
    ("ec2_sd_configs", "EC2", "sd-ec2"),
    #[cfg(not(feature = "sd-kubernetes"))]
    ("kubernetes_sd_configs", "Kubernetes", "sd-kubernetes"),
];

/// Decodes one scrape config at `path`, applying `global` inheritance.
pub(crate) fn decode_scrape_config(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    global: &GlobalConfig,
) -> Option<ScrapeConfig> {
    let mut f = Fields::open(ctx, node, path, "config.ScrapeConfig")?;
    let job_name = f.get(ctx, "job_name", string).unwrap_or_default();
    if job_name.is_empty() {
        ctx.error(
            f.pos_of("job_name"),
            &f.path_of("job_name"),
            "job_name is empty",
        );
    }

    let scrape_interval = f
        .get(ctx, "scrape_interval", duration)
        .filter(|d| !d.is_zero())
        .unwrap_or(global.scrape_interval);
    let scrape_timeout = match f
        .get(ctx, "scrape_timeout", duration)
        .filter(|d| !d.is_zero())
    {
        Some(t) => {
            if t > scrape_interval {
                ctx.error(
                    f.pos_of("scrape_timeout"),
                    &f.path_of("scrape_timeout"),
                    format!("scrape timeout greater than scrape interval for scrape config with job name {job_name:?}"),
                );
            }
            t
        }
        None => global.scrape_timeout.min(scrape_interval),
    };

    let scrape_native_histograms = f
        .get(ctx, "scrape_native_histograms", boolean)
        .unwrap_or(global.scrape_native_histograms);
    let protocols = f
        .get(ctx, "scrape_protocols", scrape_protocols)
        .or_else(|| global.scrape_protocols.clone())
        .unwrap_or_else(|| default_scrape_protocols(scrape_native_histograms));
    let fallback_scrape_protocol = f.get(ctx, "fallback_scrape_protocol", |c, n, p| {
        let name = string(c, n, p)?;
        if name.is_empty() {
            return None;
        }
        scrape_protocol_by_name(c, n, p, &name)
    });

    let scheme = decode_scheme(ctx, &mut f);
    let metrics_path = f
        .get(ctx, "metrics_path", string)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/metrics".to_string());
    let mut params = f
        .get(ctx, "params", |c, n, p| string_map(c, n, p, string_list))
        .unwrap_or_default();
    params.sort_by(|a, b| a.0.cmp(&b.0));

    let validation = match f
        .get(ctx, "metric_name_validation_scheme", string)
        .as_deref()
    {
        None | Some("") => global.metric_name_validation_scheme.clone(),
        Some(v @ ("utf8" | "legacy")) => v.to_string(),
        Some(other) => {
            ctx.error(
                f.pos_of("metric_name_validation_scheme"),
                &f.path_of("metric_name_validation_scheme"),
                format!("unknown scrape config name validation method specified, must be either '', 'legacy' or 'utf8', got {other}"),
            );
            global.metric_name_validation_scheme.clone()
        }
    };
    let escaping_raw = f
        .get(ctx, "metric_name_escaping_scheme", string)
        .unwrap_or_default();
    let escaping = if escaping_raw.is_empty() && validation == global.metric_name_validation_scheme
    {
        global.metric_name_escaping_scheme.clone()
    } else {
        resolve_escaping_scheme(ctx, &f, &escaping_raw, &validation, "scrape config")
    };

    let inherit =
        |own: Option<u64>, global_value: u64| own.filter(|v| *v != 0).unwrap_or(global_value);
    let body_size_limit = inherit(f.get(ctx, "body_size_limit", size), global.body_size_limit);
    let sample_limit = inherit(f.get(ctx, "sample_limit", unsigned), global.sample_limit);
    let label_limit = inherit(f.get(ctx, "label_limit", unsigned), global.label_limit);
    let label_name_length_limit = inherit(
        f.get(ctx, "label_name_length_limit", unsigned),
        global.label_name_length_limit,
    );
    let label_value_length_limit = inherit(
        f.get(ctx, "label_value_length_limit", unsigned),
        global.label_value_length_limit,
    );
    let target_limit = inherit(f.get(ctx, "target_limit", unsigned), global.target_limit);
    let keep_dropped_targets = inherit(
        f.get(ctx, "keep_dropped_targets", unsigned),
        global.keep_dropped_targets,
    );

    let http_client = decode_inline(ctx, &mut f, HttpClientConfig::default_for_scrape());
    let outer_validation = ctx.name_validation;
    ctx.name_validation = crate::load::name_validation(&validation);
    let relabel_configs = relabel_list(
        ctx,
        &mut f,
        "relabel_configs",
        "empty or null target relabeling rule in scrape config",
    );
    let metric_relabel_configs = relabel_list(
        ctx,
        &mut f,
        "metric_relabel_configs",
        "empty or null metric relabeling rule in scrape config",
    );
    ctx.name_validation = outer_validation;
    let legacy = validation == "legacy";
    let check_targets = !f.has_key("relabel_configs");
    let static_configs = f
        .get(ctx, "static_configs", |c, n, p| {
            static_configs(c, n, p, check_targets, legacy)
        })
        .unwrap_or_default();
    let file_sd_configs = f
        .get(ctx, "file_sd_configs", file_sd_configs)
        .unwrap_or_default();
    let http_sd_configs = f
        .get(ctx, "http_sd_configs", http_sd_configs)
        .unwrap_or_default();
    let dns_sd_configs = f
        .get(ctx, "dns_sd_configs", crate::sd_dns::dns_sd_configs)
        .unwrap_or_default();
    let consul_sd_configs = f
        .get(
            ctx,
            "consul_sd_configs",
            crate::sd_consul::consul_sd_configs,
        )
        .unwrap_or_default();
    let docker_sd_configs = f
        .get(
            ctx,
            "docker_sd_configs",
            crate::sd_docker::docker_sd_configs,
        )
        .unwrap_or_default();
    let ec2_sd_configs = f
        .get(ctx, "ec2_sd_configs", crate::sd_ec2::ec2_sd_configs)
        .unwrap_or_default();
    let kubernetes_sd_configs = f
        .get(
            ctx,
            "kubernetes_sd_configs",
            crate::sd_kubernetes::kubernetes_sd_configs,
        )
        .unwrap_or_default();
    for (key, provider, feature) in LEFT_OUT_SD {
        if f.has_key(key) {
            ctx.error(
                f.pos_of(key),
                &f.path_of(key),
                format!(
                    "{key}: this build of Tributary leaves out {provider} discovery (cargo feature {feature})"
                ),
            );
        }
    }
    for (key, pos) in f.take_suffixed("_sd_configs", SUPPORTED_SD) {
        ctx.error(
            pos,
            &f.path_of(&key),
            format!("{key} is not supported yet by Tributary"),
        );
    }

    let cfg = ScrapeConfig {
        job_name,
        scrape_interval,
        scrape_timeout,
        scrape_protocols: protocols,
        fallback_scrape_protocol,
        metrics_path,
        scheme,
        params,
        honor_labels: f.get(ctx, "honor_labels", boolean).unwrap_or(false),
        honor_timestamps: f.get(ctx, "honor_timestamps", boolean).unwrap_or(true),
        track_timestamps_staleness: f
            .get(ctx, "track_timestamps_staleness", boolean)
            .unwrap_or(false),
        enable_compression: f.get(ctx, "enable_compression", boolean).unwrap_or(true),
        body_size_limit,
        sample_limit,
        label_limit,
        label_name_length_limit,
        label_value_length_limit,
        target_limit,
        keep_dropped_targets,
        extra_scrape_metrics: f
            .get(ctx, "extra_scrape_metrics", boolean)
            .unwrap_or(global.extra_scrape_metrics),
        scrape_native_histograms,
        always_scrape_classic_histograms: f
            .get(ctx, "always_scrape_classic_histograms", boolean)
            .unwrap_or(global.always_scrape_classic_histograms),
        convert_classic_histograms_to_nhcb: {
            let v = f.get(ctx, "convert_classic_histograms_to_nhcb", boolean);
            if let Some(v) = v {
                crate::global::reject_nhcb_conversion(ctx, &f, v);
            }
            v.unwrap_or(global.convert_classic_histograms_to_nhcb)
        },
        native_histogram_bucket_limit: f
            .get(ctx, "native_histogram_bucket_limit", unsigned)
            .unwrap_or(0),
        native_histogram_min_bucket_factor: f
            .get(ctx, "native_histogram_min_bucket_factor", float)
            .unwrap_or(0.0),
        metric_name_validation_scheme: validation,
        metric_name_escaping_scheme: escaping,
        scrape_failure_log_file: f
            .get(ctx, "scrape_failure_log_file", file_path)
            .filter(|s| !s.is_empty())
            .or_else(|| global.scrape_failure_log_file.clone()),
        http_client,
        relabel_configs,
        metric_relabel_configs,
        static_configs,
        file_sd_configs,
        http_sd_configs,
        dns_sd_configs,
        consul_sd_configs,
        docker_sd_configs,
        ec2_sd_configs,
        kubernetes_sd_configs,
    };
    f.finish(ctx);
    Some(cfg)
}

fn decode_scheme(ctx: &mut Ctx, f: &mut Fields) -> String {
    match f.get(ctx, "scheme", string).as_deref() {
        None | Some("") => "http".to_string(),
        Some(s @ ("http" | "https")) => s.to_string(),
        Some(other) => {
            ctx.error(
                f.pos_of("scheme"),
                &f.path_of("scheme"),
                format!("invalid scheme {other:?}: must be \"http\" or \"https\""),
            );
            "http".to_string()
        }
    }
}

fn static_configs(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    check_targets: bool,
    legacy: bool,
) -> Option<Vec<TargetGroup>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "targetgroup.Group") else {
            continue;
        };
        let targets = f.get(ctx, "targets", string_list).unwrap_or_default();
        if check_targets {
            for (t, target) in targets.iter().enumerate() {
                if target.contains('/') {
                    let target_path = index(&f.path_of("targets"), t);
                    ctx.error(
                        f.pos_of("targets"),
                        &target_path,
                        format!("{target:?} is not a valid hostname"),
                    );
                }
            }
        }
        let labels = f
            .get(ctx, "labels", |c, n, p| group_labels(c, n, p, legacy))
            .unwrap_or_default();
        f.finish(ctx);
        out.push(TargetGroup {
            targets,
            labels,
            source: i.to_string(),
        });
    }
    Some(out)
}

fn group_labels(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    legacy: bool,
) -> Option<Vec<(String, String)>> {
    let entries = map_entries(ctx, node, path)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let p = child(path, &e.key);
        if !is_valid_label_name(&e.key, legacy) {
            ctx.error(
                e.key_pos,
                &p,
                format!("{:?} is not a valid label name", e.key),
            );
            continue;
        }
        if let Some(v) = string(ctx, &e.value, &p) {
            out.push((e.key.clone(), v));
        }
    }
    out.sort();
    Some(out)
}

/// go's file SD accepts `dir/*.json`-style patterns: at most one `*`, in the
/// last path component, and a json/yml/yaml extension.
fn is_valid_file_sd_pattern(pattern: &str) -> bool {
    let lower_ext_ok = ["json", "yml", "yaml", "JSON", "YML", "YAML"]
        .iter()
        .any(|ext| {
            pattern
                .strip_suffix(ext)
                .is_some_and(|rest| rest.ends_with('.'))
        });
    if !lower_ext_ok {
        return false;
    }
    match pattern.find('*') {
        None => true,
        Some(star) => {
            let after = &pattern[star + 1..];
            !after.contains('*') && !after.contains('/')
        }
    }
}

fn file_sd_configs(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<FileSdConfig>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "file.SDConfig") else {
            continue;
        };
        let files = f.get(ctx, "files", string_list).unwrap_or_default();
        if files.is_empty() {
            ctx.error(
                f.pos,
                &p,
                "file service discovery config must contain at least one path name",
            );
        }
        for (n, file) in files.iter().enumerate() {
            if !is_valid_file_sd_pattern(file) {
                ctx.error(
                    f.pos_of("files"),
                    &index(&f.path_of("files"), n),
                    format!("path name {file:?} is not valid for file discovery"),
                );
            }
        }
        let refresh_interval = f
            .get(ctx, "refresh_interval", duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(FILE_SD_DEFAULT_REFRESH);
        f.finish(ctx);
        out.push(FileSdConfig {
            files: files.iter().map(|file| ctx.resolve_path(file)).collect(),
            refresh_interval,
        });
    }
    Some(out)
}

fn http_sd_configs(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<HttpSdConfig>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "http.SDConfig") else {
            continue;
        };
        let url = f.get(ctx, "url", string).unwrap_or_default();
        if let Err(message) = check_http_url(&url) {
            ctx.error(f.pos_of("url"), &f.path_of("url"), message);
        }
        let refresh_interval = f
            .get(ctx, "refresh_interval", duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(HTTP_SD_DEFAULT_REFRESH);
        let http_client = decode_inline(ctx, &mut f, HttpClientConfig::default_for_scrape());
        f.finish(ctx);
        out.push(HttpSdConfig {
            url,
            refresh_interval,
            http_client,
        });
    }
    Some(out)
}

/// The URL checks of http_sd (`URL is missing`, scheme, host).
pub(crate) fn check_http_url(url: &str) -> Result<(), &'static str> {
    if url.is_empty() {
        return Err("URL is missing");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("URL scheme must be 'http' or 'https'");
    };
    if scheme != "http" && scheme != "https" {
        return Err("URL scheme must be 'http' or 'https'");
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err("host is missing in URL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sd_patterns() {
        assert!(is_valid_file_sd_pattern("targets/*.json"));
        assert!(is_valid_file_sd_pattern("a.yml"));
        assert!(is_valid_file_sd_pattern("x/foo*.yaml"));
        assert!(!is_valid_file_sd_pattern("a.txt"));
        assert!(!is_valid_file_sd_pattern("*/a.json"));
        assert!(!is_valid_file_sd_pattern("json"));
    }

    #[test]
    fn http_urls() {
        assert!(check_http_url("http://h:1/sd").is_ok());
        assert_eq!(check_http_url(""), Err("URL is missing"));
        assert!(check_http_url("ftp://h").is_err());
        assert_eq!(check_http_url("http:///x"), Err("host is missing in URL"));
    }
}
