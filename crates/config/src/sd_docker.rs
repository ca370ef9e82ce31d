//! `docker_sd_configs` (Prometheus `discovery/moby.DockerSDConfig`,
//! documented in configuration.md `<docker_sd_config>`): daemon address,
//! fallback port, host-networking host, first-network matching, container
//! list filters, refresh interval and the inlined `<http_config>`.

use std::time::Duration;

use crate::decode::{boolean, duration, index, seq, string, string_list, unsigned, Ctx, Fields};
use crate::emit::{http_client_yaml, MapY, Y};
use crate::http::decode_inline;
use crate::types::HttpClientConfig;
use crate::yaml::Node;

const DOCKER_SD_DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// One entry of `filters:` (a Docker `ContainerList` filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerFilter {
    pub name: String,
    pub values: Vec<String>,
}

/// One `docker_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerSdConfig {
    /// `unix:///var/run/docker.sock`, `tcp://host:2375`, `http(s)://…`.
    pub host: String,
    /// Port for containers that expose no TCP port (default 80).
    pub port: u16,
    pub host_networking_host: String,
    pub match_first_network: bool,
    pub filters: Vec<DockerFilter>,
    pub refresh_interval: Duration,
    pub http_client: HttpClientConfig,
}

pub(crate) fn docker_sd_configs(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
) -> Option<Vec<DockerSdConfig>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "moby.DockerSDConfig") else {
            continue;
        };
        let cfg = docker_sd_config(ctx, &mut f, &p);
        f.finish(ctx);
        out.push(cfg);
    }
    Some(out)
}

fn docker_sd_config(ctx: &mut Ctx, f: &mut Fields, path: &str) -> DockerSdConfig {
    let host = f.get(ctx, "host", string).unwrap_or_default();
    if host.is_empty() {
        ctx.error(f.pos, path, "host missing");
    }
    let port = match f.get(ctx, "port", unsigned) {
        None => 80,
        Some(p) => u16::try_from(p).unwrap_or_else(|_| {
            ctx.error(
                f.pos_of("port"),
                &f.path_of("port"),
                format!("port {p} is out of range"),
            );
            80
        }),
    };
    DockerSdConfig {
        host,
        port,
        host_networking_host: f
            .get(ctx, "host_networking_host", string)
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string()),
        match_first_network: f.get(ctx, "match_first_network", boolean).unwrap_or(true),
        filters: f.get(ctx, "filters", filters).unwrap_or_default(),
        refresh_interval: f
            .get(ctx, "refresh_interval", duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(DOCKER_SD_DEFAULT_REFRESH),
        http_client: decode_inline(ctx, f, HttpClientConfig::default_for_scrape()),
    }
}

fn filters(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<DockerFilter>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "moby.Filter") else {
            continue;
        };
        let name = f.get(ctx, "name", string).unwrap_or_default();
        let values = f.get(ctx, "values", string_list).unwrap_or_default();
        f.finish(ctx);
        out.push(DockerFilter { name, values });
    }
    Some(out)
}

pub(crate) fn docker_sd_yaml(c: &DockerSdConfig) -> Y {
    let mut m = MapY::default();
    http_client_yaml(&mut m, &c.http_client);
    m.str("host", &c.host).raw("port", c.port);
    let filters: Vec<Y> = c
        .filters
        .iter()
        .map(|flt| {
            let mut fm = MapY::default();
            fm.str("name", &flt.name).list("values", &flt.values);
            fm.build()
        })
        .collect();
    m.non_empty("filters", Y::Seq(filters));
    m.str("host_networking_host", &c.host_networking_host)
        .duration("refresh_interval", c.refresh_interval)
        .raw("match_first_network", c.match_first_network);
    m.build()
}
