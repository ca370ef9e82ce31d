//! `ec2_sd_configs` (Prometheus `discovery/aws` EC2 `SDConfig`, documented
//! in configuration.md `<ec2_sd_config>`): region, endpoint, static keys or
//! a shared-credentials profile, refresh interval, port, DescribeInstances
//! filters and the inlined `<http_config>`.
//!
//! Differences from Prometheus, all reported rather than ignored:
//! `role_arn` (STS AssumeRole) is rejected as not supported yet; an empty
//! `region` is resolved at run time from `AWS_REGION`/`AWS_DEFAULT_REGION`
//! (Prometheus asks the instance metadata service at load time).

use std::time::Duration;

use crate::decode::{duration, index, seq, string, string_list, unsigned, Ctx, Fields};
use crate::emit::{http_client_yaml, MapY, Y};
use crate::http::{decode_inline, secret};
use crate::types::{HttpClientConfig, Secret};
use crate::yaml::Node;

const EC2_SD_DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// One DescribeInstances filter (`Filter.N.Name` / `Filter.N.Value.M`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// One `ec2_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Ec2SdConfig {
    /// Overrides `https://ec2.<region>.amazonaws.com`.
    pub endpoint: String,
    /// Empty: taken from the environment at run time.
    pub region: String,
    pub access_key: String,
    pub secret_key: Option<Secret>,
    pub profile: String,
    pub refresh_interval: Duration,
    pub port: u16,
    pub filters: Vec<Ec2Filter>,
    pub http_client: HttpClientConfig,
}

pub(crate) fn ec2_sd_configs(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<Ec2SdConfig>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "aws.EC2SDConfig") else {
            continue;
        };
        let cfg = ec2_sd_config(ctx, &mut f);
        f.finish(ctx);
        out.push(cfg);
    }
    Some(out)
}

fn ec2_sd_config(ctx: &mut Ctx, f: &mut Fields) -> Ec2SdConfig {
    if f.get(ctx, "role_arn", string)
        .is_some_and(|r| !r.is_empty())
    {
        ctx.error(
            f.pos_of("role_arn"),
            &f.path_of("role_arn"),
            "role_arn is not supported yet by Tributary",
        );
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
    Ec2SdConfig {
        endpoint: f.get(ctx, "endpoint", string).unwrap_or_default(),
        region: f.get(ctx, "region", string).unwrap_or_default(),
        access_key: f.get(ctx, "access_key", string).unwrap_or_default(),
        secret_key: f.get(ctx, "secret_key", secret).filter(|s| !s.is_empty()),
        profile: f.get(ctx, "profile", string).unwrap_or_default(),
        refresh_interval: f
            .get(ctx, "refresh_interval", duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(EC2_SD_DEFAULT_REFRESH),
        port,
        filters: f.get(ctx, "filters", filters).unwrap_or_default(),
        http_client: decode_inline(ctx, f, HttpClientConfig::default_for_scrape()),
    }
}

fn filters(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<Ec2Filter>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "aws.EC2Filter") else {
            continue;
        };
        let name = f.get(ctx, "name", string).unwrap_or_default();
        let values = f.get(ctx, "values", string_list).unwrap_or_default();
        if values.is_empty() {
            ctx.error(
                f.pos,
                &p,
                "EC2 SD configuration filter values cannot be empty",
            );
        }
        f.finish(ctx);
        out.push(Ec2Filter { name, values });
    }
    Some(out)
}

pub(crate) fn ec2_sd_yaml(c: &Ec2SdConfig) -> Y {
    let mut m = MapY::default();
    m.opt_str("endpoint", Some(&c.endpoint))
        .opt_str("region", Some(&c.region))
        .opt_str("access_key", Some(&c.access_key))
        .secret("secret_key", c.secret_key.as_ref())
        .opt_str("profile", Some(&c.profile))
        .duration("refresh_interval", c.refresh_interval)
        .raw("port", c.port);
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
    http_client_yaml(&mut m, &c.http_client);
    m.build()
}
