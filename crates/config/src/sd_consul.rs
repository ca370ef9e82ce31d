//! `consul_sd_configs` (Prometheus `discovery/consul.SDConfig`, documented in
//! configuration.md `<consul_sd_config>`): server, path prefix, token,
//! datacenter, namespace, partition, scheme, the deprecated
//! `username`/`password` pair (folded into `basic_auth` as Prometheus does),
//! service/tag/node-meta/filter selection, tag separator, stale reads,
//! refresh interval and the inlined `<http_config>`.

use std::time::Duration;

use crate::decode::{boolean, duration, index, seq, string, string_list, string_map, Ctx, Fields};
use crate::emit::{http_client_yaml, MapY, Y};
use crate::http::{decode_inline, secret};
use crate::types::{BasicAuth, HttpClientConfig, Secret};
use crate::yaml::Node;

const CONSUL_SD_DEFAULT_REFRESH: Duration = Duration::from_secs(30);

/// One `consul_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsulSdConfig {
    /// `host:port` of the Consul HTTP API (default `localhost:8500`).
    pub server: String,
    pub path_prefix: String,
    pub token: Option<Secret>,
    /// Empty means "ask the agent" (`/v1/agent/self`).
    pub datacenter: String,
    pub namespace: String,
    pub partition: String,
    pub tag_separator: String,
    /// `http` or `https`.
    pub scheme: String,
    pub allow_stale: bool,
    pub refresh_interval: Duration,
    /// Services to watch; empty watches the whole catalog.
    pub services: Vec<String>,
    /// Every watched instance must carry all of these tags.
    pub tags: Vec<String>,
    /// Sorted by key.
    pub node_meta: Vec<(String, String)>,
    /// Consul filter expression for the catalog services query.
    pub filter: String,
    /// Consul filter expression for the health service query.
    pub health_filter: String,
    pub http_client: HttpClientConfig,
}

pub(crate) fn consul_sd_configs(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
) -> Option<Vec<ConsulSdConfig>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "consul.SDConfig") else {
            continue;
        };
        let cfg = consul_sd_config(ctx, &mut f, &p);
        f.finish(ctx);
        out.push(cfg);
    }
    Some(out)
}

fn non_empty_or(value: Option<String>, default: &str) -> String {
    value
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn consul_sd_config(ctx: &mut Ctx, f: &mut Fields, path: &str) -> ConsulSdConfig {
    let server = f
        .get(ctx, "server", string)
        .unwrap_or_else(|| "localhost:8500".to_string());
    if server.trim().is_empty() {
        ctx.error(
            f.pos_of("server"),
            &f.path_of("server"),
            "consul SD configuration requires a server address",
        );
    }
    let scheme = non_empty_or(f.get(ctx, "scheme", string), "http");
    let username = f.get(ctx, "username", string).unwrap_or_default();
    let password = f.get(ctx, "password", secret).filter(|s| !s.is_empty());
    let token = f.get(ctx, "token", secret).filter(|s| !s.is_empty());
    let mut node_meta = f
        .get(ctx, "node_meta", |c, n, p| string_map(c, n, p, string))
        .unwrap_or_default();
    node_meta.sort();
    let mut http_client = decode_inline(ctx, f, HttpClientConfig::default_for_scrape());
    if !username.is_empty() || password.is_some() {
        if http_client.basic_auth.is_some() {
            ctx.error(
                f.pos,
                path,
                "at most one of consul SD configuration username and password and basic auth can be configured",
            );
        }
        http_client.basic_auth = Some(BasicAuth {
            username,
            username_file: None,
            password,
            password_file: None,
        });
    }
    if token.is_some() && (http_client.authorization.is_some() || http_client.oauth2.is_some()) {
        ctx.error(
            f.pos,
            path,
            "at most one of consul SD token, authorization, or oauth2 can be configured",
        );
    }
    ConsulSdConfig {
        server,
        path_prefix: f.get(ctx, "path_prefix", string).unwrap_or_default(),
        token,
        datacenter: f.get(ctx, "datacenter", string).unwrap_or_default(),
        namespace: f.get(ctx, "namespace", string).unwrap_or_default(),
        partition: f.get(ctx, "partition", string).unwrap_or_default(),
        tag_separator: non_empty_or(f.get(ctx, "tag_separator", string), ","),
        scheme,
        allow_stale: f.get(ctx, "allow_stale", boolean).unwrap_or(true),
        refresh_interval: f
            .get(ctx, "refresh_interval", duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(CONSUL_SD_DEFAULT_REFRESH),
        services: f.get(ctx, "services", string_list).unwrap_or_default(),
        tags: f.get(ctx, "tags", string_list).unwrap_or_default(),
        node_meta,
        filter: f.get(ctx, "filter", string).unwrap_or_default(),
        health_filter: f.get(ctx, "health_filter", string).unwrap_or_default(),
        http_client,
    }
}

pub(crate) fn consul_sd_yaml(c: &ConsulSdConfig) -> Y {
    let mut m = MapY::default();
    m.str("server", &c.server)
        .opt_str("path_prefix", Some(&c.path_prefix))
        .secret("token", c.token.as_ref())
        .opt_str("datacenter", Some(&c.datacenter))
        .opt_str("namespace", Some(&c.namespace))
        .opt_str("partition", Some(&c.partition))
        .str("tag_separator", &c.tag_separator)
        .str("scheme", &c.scheme)
        .raw("allow_stale", c.allow_stale)
        .duration("refresh_interval", c.refresh_interval)
        .list("services", &c.services)
        .list("tags", &c.tags);
    if !c.node_meta.is_empty() {
        let meta = c
            .node_meta
            .iter()
            .map(|(k, v)| (k.clone(), Y::Str(v.clone())))
            .collect();
        m.put("node_meta", Y::Map(meta));
    }
    m.opt_str("filter", Some(&c.filter))
        .opt_str("health_filter", Some(&c.health_filter));
    http_client_yaml(&mut m, &c.http_client);
    m.build()
}
