//! Top-level loading: the root mapping, agent-mode rejections,
//! `scrape_config_files`, cross-entry checks and default remote-write names.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::decode::{index, seq, string_list, Ctx, Fields};
use crate::emit::{remote_write_yaml, render};
use crate::error::{ConfigError, ConfigErrors, Position};
use crate::global::decode_global;
use crate::remote::decode_remote_write;
use crate::scrape::decode_scrape_config;
use crate::types::{
    Config, GlobalConfig, RemoteWriteConfig, RuntimeConfig, ScrapeConfig, StorageConfig,
};
use crate::yaml::{parse, Node};
use tributary_model::ScrapeProtocol;

/// Process-wide switches that change configuration defaults, as some of
/// Prometheus's `--enable-feature` flags do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `created-timestamp-zero-ingestion`: when `global.scrape_protocols`
    /// is not set, it defaults to [`PROTO_FIRST_SCRAPE_PROTOCOLS`]
    /// (Prometheus's `DefaultProtoFirstScrapeProtocols`).
    pub proto_first_scrape_protocols: bool,
}

/// Prometheus's `DefaultProtoFirstScrapeProtocols`.
pub const PROTO_FIRST_SCRAPE_PROTOCOLS: [ScrapeProtocol; 5] = [
    ScrapeProtocol::PrometheusProto,
    ScrapeProtocol::OpenMetricsText1_0_0,
    ScrapeProtocol::OpenMetricsText0_0_1,
    ScrapeProtocol::PrometheusText1_0_0,
    ScrapeProtocol::PrometheusText0_0_4,
];

/// Environment lookup used for `external_labels` expansion.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn load_with_env(
    yaml: &str,
    file_name: &str,
    base_dir: &Path,
    env: EnvLookup,
) -> Result<Config, ConfigErrors> {
    load_with_options(yaml, file_name, base_dir, env, &LoadOptions::default())
}

pub(crate) fn load_with_options(
    yaml: &str,
    file_name: &str,
    base_dir: &Path,
    env: EnvLookup,
    options: &LoadOptions,
) -> Result<Config, ConfigErrors> {
    let root = parse_root(yaml, file_name)?;
    let mut ctx = Ctx::new(file_name, base_dir);
    let config = decode_root(&mut ctx, &root, env, options);
    if ctx.errors.is_empty() {
        Ok(config)
    } else {
        ctx.errors.sort_by_key(|e| e.position);
        Err(ConfigErrors { errors: ctx.errors })
    }
}

fn parse_root(yaml: &str, file_name: &str) -> Result<Node, ConfigErrors> {
    parse(yaml).map_err(|e| {
        ConfigErrors::single(ConfigError {
            file: file_name.to_string(),
            position: e.pos,
            path: String::new(),
            message: e.message,
        })
    })
}

fn decode_root(ctx: &mut Ctx, root: &Node, env: EnvLookup, options: &LoadOptions) -> Config {
    let mut config = Config {
        global: GlobalConfig::default(),
        scrape_configs: Vec::new(),
        remote_write: Vec::new(),
        storage: StorageConfig::default(),
        runtime: RuntimeConfig::default(),
        source_files: Vec::new(),
    };
    let Some(mut f) = Fields::open(ctx, root, "", "config.plain") else {
        return config;
    };
    config.global = decode_global(ctx, f.take("global"), env);
    if options.proto_first_scrape_protocols && config.global.scrape_protocols.is_none() {
        // Set on the global section (as Prometheus changes its global
        // default), so every job without its own list inherits it.
        config.global.scrape_protocols = Some(PROTO_FIRST_SCRAPE_PROTOCOLS.to_vec());
    }
    ctx.name_validation = name_validation(&config.global.metric_name_validation_scheme);
    reject_agent_only(ctx, &mut f);
    if let Some(node) = f.take("runtime") {
        config.runtime = decode_runtime(ctx, node);
    }
    if let Some(node) = f.take("storage") {
        config.storage = decode_storage(ctx, node);
    }
    for (key, allowed) in INERT_BLOCKS {
        if let Some(node) = f.take(key) {
            inert_block(ctx, node, key, allowed);
        }
    }
    let mut origins: Vec<ConfigError> = Vec::new();
    config.scrape_configs =
        decode_scrape_list(ctx, &mut f, "scrape_configs", &config.global, &mut origins);
    let scrape_files = f
        .get(ctx, "scrape_config_files", string_list)
        .unwrap_or_default();
    let scrape_files_pos = f.pos_of("scrape_config_files");
    config.remote_write = decode_remote_list(ctx, &mut f);
    f.finish(ctx);

    let mut extra_sources = Vec::new();
    load_scrape_config_files(
        ctx,
        &scrape_files,
        scrape_files_pos,
        &config.global,
        &mut config.scrape_configs,
        &mut origins,
        &mut extra_sources,
    );
    check_unique_job_names(ctx, &config.scrape_configs, &origins);
    config.source_files = extra_sources;
    config
}

/// Blocks accepted for compatibility but without effect in agent mode:
/// their keys are checked, their values are not interpreted.
const INERT_BLOCKS: &[(&str, &[&str])] = &[
    (
        "tracing",
        &[
            "client_type",
            "endpoint",
            "sampling_fraction",
            "insecure",
            "headers",
            "compression",
            "timeout",
            "tls_config",
        ],
    ),
    (
        "otlp",
        &[
            "promote_resource_attributes",
            "ignore_resource_attributes",
            "promote_all_resource_attributes",
            "translation_strategy",
            "keep_identifying_resource_attributes",
            "convert_histograms_to_nhcb",
            "promote_scope_metadata",
        ],
    ),
];

fn inert_block(ctx: &mut Ctx, node: &Node, path: &str, allowed: &[&str]) {
    if let Some(mut f) = Fields::open(ctx, node, path, "config") {
        f.accept(allowed);
        f.finish(ctx);
    }
}

fn reject_agent_only(ctx: &mut Ctx, f: &mut Fields) {
    if let Some(node) = f.take("alerting") {
        if let Some(mut a) = Fields::open(ctx, node, "alerting", "config.AlertingConfig") {
            let has_content = ["alertmanagers", "alert_relabel_configs"]
                .iter()
                .any(|k| a.take(k).is_some_and(|n| !is_empty_seq(n)));
            if has_content {
                ctx.error(
                    node.pos,
                    "alerting",
                    "field alerting is not allowed in agent mode",
                );
            }
            a.finish(ctx);
        }
    }
    for key in ["rule_files", "remote_read"] {
        if let Some(node) = f.take(key) {
            if !is_empty_seq(node) {
                ctx.error(
                    f.pos_of(key),
                    key,
                    format!("field {key} is not allowed in agent mode"),
                );
            }
        }
    }
}

fn is_empty_seq(node: &Node) -> bool {
    matches!(&node.value, crate::yaml::Value::Seq(items) if items.is_empty()) || node.is_null()
}

fn decode_runtime(ctx: &mut Ctx, node: &Node) -> RuntimeConfig {
    let mut rt = RuntimeConfig::default();
    if let Some(mut f) = Fields::open(ctx, node, "runtime", "config.RuntimeConfig") {
        if let Some(v) = f.get(ctx, "gogc", crate::decode::integer) {
            rt.gogc = v;
        }
        f.finish(ctx);
    }
    rt
}

fn decode_storage(ctx: &mut Ctx, node: &Node) -> StorageConfig {
    let mut storage = StorageConfig::default();
    let Some(mut f) = Fields::open(ctx, node, "storage", "config.StorageConfig") else {
        return storage;
    };
    if let Some(tsdb) = f.take("tsdb") {
        if let Some(mut t) = Fields::open(ctx, tsdb, "storage.tsdb", "config.TSDBConfig") {
            if let Some(v) = t.get(ctx, "out_of_order_time_window", crate::decode::duration) {
                storage.out_of_order_time_window = v;
            }
            // Server-side retention knobs: accepted, inert in agent mode.
            t.accept(&["retention", "stale_series_compaction_threshold"]);
            t.finish(ctx);
        }
    }
    if let Some(ex) = f.take("exemplars") {
        inert_block(ctx, ex, "storage.exemplars", &["max_exemplars"]);
    }
    f.finish(ctx);
    storage
}

fn decode_scrape_list(
    ctx: &mut Ctx,
    f: &mut Fields,
    key: &str,
    global: &GlobalConfig,
    origins: &mut Vec<ConfigError>,
) -> Vec<ScrapeConfig> {
    let Some(node) = f.take(key) else {
        return Vec::new();
    };
    let path = f.path_of(key);
    let Some(items) = seq(ctx, node, &path) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(&path, i);
        if item.is_null() {
            ctx.error(item.pos, &p, "empty or null scrape config section");
            continue;
        }
        if let Some(cfg) = decode_scrape_config(ctx, item, &p, global) {
            origins.push(ctx.located(item.pos, &p));
            out.push(cfg);
        }
    }
    out
}

fn decode_remote_list(ctx: &mut Ctx, f: &mut Fields) -> Vec<RemoteWriteConfig> {
    let Some(node) = f.take("remote_write") else {
        return Vec::new();
    };
    let path = f.path_of("remote_write");
    let Some(items) = seq(ctx, node, &path) else {
        return Vec::new();
    };
    let mut out: Vec<RemoteWriteConfig> = Vec::with_capacity(items.len());
    let mut hashes: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(&path, i);
        if item.is_null() {
            ctx.error(item.pos, &p, "empty or null remote write config section");
            continue;
        }
        let Some(mut cfg) = decode_remote_write(ctx, item, &p) else {
            continue;
        };
        let hash = config_hash(&cfg);
        if hashes.contains(&hash) {
            ctx.error(
                item.pos,
                &p,
                format!(
                    "duplicate remote write configs are not allowed, found duplicate for URL: {}",
                    cfg.url
                ),
            );
        }
        if cfg.name.is_empty() {
            cfg.name = hash.get(..6).unwrap_or_default().to_string();
        } else if out.iter().any(|o| o.name == cfg.name) {
            ctx.error(
                item.pos,
                &crate::decode::child(&p, "name"),
                format!(
                    "found multiple remote write configs with job name {:?}",
                    cfg.name
                ),
            );
        }
        hashes.push(hash);
        out.push(cfg);
    }
    out
}

/// MD5 over the canonical YAML of the entry (secrets masked), the way
/// Prometheus names unnamed queues.
fn config_hash(cfg: &RemoteWriteConfig) -> String {
    let digest = Md5::digest(render(&remote_write_yaml(cfg)).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `origins[i]` locates `jobs[i]` (file, position, path) for the message.
fn check_unique_job_names(ctx: &mut Ctx, jobs: &[ScrapeConfig], origins: &[ConfigError]) {
    for (i, (job, origin)) in jobs.iter().zip(origins).enumerate() {
        if job.job_name.is_empty() {
            continue;
        }
        if jobs.iter().take(i).any(|j| j.job_name == job.job_name) {
            let mut e = origin.clone();
            e.message = format!(
                "found multiple scrape configs with job name {:?}",
                job.job_name
            );
            ctx.errors.push(e);
        }
    }
}

/// Loads every file matching the `scrape_config_files` globs (relative to
/// the configuration directory); each holds only `scrape_configs:`.
fn load_scrape_config_files(
    ctx: &mut Ctx,
    patterns: &[String],
    pos: Position,
    global: &GlobalConfig,
    jobs: &mut Vec<ScrapeConfig>,
    origins: &mut Vec<ConfigError>,
    sources: &mut Vec<PathBuf>,
) {
    for (i, pattern) in patterns.iter().enumerate() {
        let path = index("scrape_config_files", i);
        let resolved = ctx.resolve_path(pattern);
        let matches = match glob::glob(&resolved) {
            Ok(paths) => paths,
            Err(e) => {
                ctx.error(
                    pos,
                    &path,
                    format!("invalid scrape config file path {pattern:?}: {e}"),
                );
                continue;
            }
        };
        let mut files: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
        files.sort();
        for file in files {
            load_one_scrape_file(ctx, &file, global, jobs, origins);
            sources.push(file);
        }
    }
}

fn load_one_scrape_file(
    ctx: &mut Ctx,
    file: &Path,
    global: &GlobalConfig,
    jobs: &mut Vec<ScrapeConfig>,
    origins: &mut Vec<ConfigError>,
) {
    let name = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            ctx.errors.push(ConfigError {
                file: name,
                position: Position::default(),
                path: String::new(),
                message: format!("error reading scrape config file: {e}"),
            });
            return;
        }
    };
    let root = match parse_root(&text, &name) {
        Ok(r) => r,
        Err(e) => {
            ctx.errors.extend(e.errors);
            return;
        }
    };
    let base_dir = ctx.base_dir;
    let mut sub = Ctx::new(&name, base_dir);
    sub.name_validation = name_validation(&global.metric_name_validation_scheme);
    if let Some(mut f) = Fields::open(&mut sub, &root, "", "config.ScrapeConfigs") {
        let loaded = decode_scrape_list(&mut sub, &mut f, "scrape_configs", global, origins);
        f.finish(&mut sub);
        jobs.extend(loaded);
    }
    ctx.errors.extend(sub.errors);
}

/// Reads and loads a file; the configuration directory is the file's.
pub(crate) fn load_file_with_env(path: &Path, env: EnvLookup) -> Result<Config, ConfigErrors> {
    load_file_with_options(path, env, &LoadOptions::default())
}

pub(crate) fn load_file_with_options(
    path: &Path,
    env: EnvLookup,
    options: &LoadOptions,
) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(ConfigError {
            file: name.clone(),
            position: Position::default(),
            path: String::new(),
            message: format!("cannot read config file: {e}"),
        })
    })?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut config = load_with_options(&text, &name, base_dir, env, options)?;
    config.source_files.insert(0, path.to_path_buf());
    Ok(config)
}

pub(crate) fn name_validation(scheme: &str) -> crate::relabel::NameValidation {
    if scheme == "legacy" {
        crate::relabel::NameValidation::Legacy
    } else {
        crate::relabel::NameValidation::Utf8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, proto_first: bool) -> Config {
        let options = LoadOptions {
            proto_first_scrape_protocols: proto_first,
        };
        load_with_options(yaml, "t.yml", Path::new("."), &|_| None, &options).unwrap()
    }

    /// `created-timestamp-zero-ingestion` changes only the default: the
    /// global list becomes protobuf-first and jobs without their own list
    /// inherit it; explicit lists (global or per job) stay.
    #[test]
    fn proto_first_default_applies_only_when_unset() {
        let yaml = "scrape_configs:\n  - job_name: a\n  - job_name: b\n    scrape_protocols: [PrometheusText0.0.4]\n";
        let on = load(yaml, true);
        assert_eq!(
            on.global.scrape_protocols.as_deref(),
            Some(&PROTO_FIRST_SCRAPE_PROTOCOLS[..])
        );
        assert_eq!(
            on.scrape_configs[0].scrape_protocols,
            PROTO_FIRST_SCRAPE_PROTOCOLS
        );
        assert_eq!(
            on.scrape_configs[1].scrape_protocols,
            [ScrapeProtocol::PrometheusText0_0_4]
        );
        let off = load(yaml, false);
        assert_eq!(off.global.scrape_protocols, None);
        assert_eq!(
            off.scrape_configs[0].scrape_protocols[0],
            ScrapeProtocol::OpenMetricsText1_0_0
        );

        let explicit = "global:\n  scrape_protocols: [OpenMetricsText1.0.0]\nscrape_configs:\n  - job_name: a\n";
        let on = load(explicit, true);
        assert_eq!(
            on.scrape_configs[0].scrape_protocols,
            [ScrapeProtocol::OpenMetricsText1_0_0]
        );
    }
}
