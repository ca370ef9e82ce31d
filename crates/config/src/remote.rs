//! `remote_write` entries: decoding, defaults, validation and the default
//! queue name.

use crate::decode::{boolean, child, duration, map_entries, string, unsigned, Ctx, Fields};
use crate::http::{decode_inline, secret};
use crate::relabel::relabel_list;
use crate::types::{
    HttpClientConfig, MetadataConfig, QueueConfig, RemoteWriteConfig, RemoteWriteProtoMsg,
    SigV4Config,
};
use crate::yaml::Node;

/// Headers remote write refuses in `headers:` (prometheus/common's
/// `ReservedHeaders` minus Authorization, which has its own message).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
];

/// Authentication blocks we can parse but not honour yet: accepting them
/// silently would send unauthenticated requests.
const UNSUPPORTED_AUTH: &[&str] = &["azuread", "google_iam"];

/// The remote-write-only auth blocks; each excludes the others and the
/// `<http_config>` ones (basic_auth, authorization, oauth2).
const REMOTE_WRITE_AUTH: &[&str] = &["sigv4", "azuread", "google_iam"];

pub(crate) fn decode_remote_write(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
) -> Option<RemoteWriteConfig> {
    let mut f = Fields::open(ctx, node, path, "config.RemoteWriteConfig")?;
    let url = f.get(ctx, "url", string).unwrap_or_default();
    if url.is_empty() {
        ctx.error(
            f.pos_of("url"),
            &f.path_of("url"),
            "url for remote_write is empty",
        );
    } else if !(url.starts_with("http://") || url.starts_with("https://")) {
        ctx.error(
            f.pos_of("url"),
            &f.path_of("url"),
            format!("invalid remote_write url {url:?}: scheme must be http or https"),
        );
    }
    let headers = f.get(ctx, "headers", remote_headers).unwrap_or_default();
    let protobuf_message = f
        .get(ctx, "protobuf_message", |c, n, p| {
            let name = string(c, n, p)?;
            let msg = RemoteWriteProtoMsg::from_name(&name);
            if msg.is_none() {
                c.error(n.pos, p, format!("unknown remote write protobuf message {name}, supported: prometheus.WriteRequest, io.prometheus.write.v2.Request"));
            }
            msg
        })
        .unwrap_or(RemoteWriteProtoMsg::V1);
    let mut http_client = decode_inline(ctx, &mut f, HttpClientConfig::default_for_remote_write());
    http_client.sigv4 = f.get(ctx, "sigv4", sigv4_config);
    check_auth_blocks(ctx, &mut f, &http_client);
    let _ = f.get(ctx, "failed_request_logging", boolean);
    let cfg = RemoteWriteConfig {
        name: f.get(ctx, "name", string).unwrap_or_default(),
        remote_timeout: f
            .get(ctx, "remote_timeout", duration)
            .unwrap_or(std::time::Duration::from_secs(30)),
        headers,
        write_relabel_configs: relabel_list(
            ctx,
            &mut f,
            "write_relabel_configs",
            "empty or null relabeling rule in remote write config",
        ),
        send_exemplars: f.get(ctx, "send_exemplars", boolean).unwrap_or(false),
        send_native_histograms: f
            .get(ctx, "send_native_histograms", boolean)
            .unwrap_or(false),
        round_robin_dns: f.get(ctx, "round_robin_dns", boolean).unwrap_or(false),
        protobuf_message,
        http_client,
        queue_config: f.get(ctx, "queue_config", queue_config).unwrap_or_default(),
        metadata_config: f
            .get(ctx, "metadata_config", metadata_config)
            .unwrap_or_default(),
        url,
    };
    f.finish(ctx);
    Some(cfg)
}

fn remote_headers(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<(String, String)>> {
    let entries = map_entries(ctx, node, path)?;
    let mut headers = Vec::with_capacity(entries.len());
    for e in entries {
        let p = child(path, &e.key);
        if e.key.eq_ignore_ascii_case("authorization") {
            ctx.error(e.key_pos, &p, "authorization header must be changed via the basic_auth, authorization, oauth2, sigv4, azuread or google_iam parameter");
        } else if RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&e.key))
        {
            ctx.error(
                e.key_pos,
                &p,
                format!("{} is a reserved header. It must not be changed", e.key),
            );
        } else if let Some(value) = string(ctx, &e.value, &p) {
            headers.push((e.key.clone(), value));
        }
    }
    headers.sort();
    Some(headers)
}

fn check_auth_blocks(ctx: &mut Ctx, f: &mut Fields, http: &HttpClientConfig) {
    let http_auth =
        http.basic_auth.is_some() || http.authorization.is_some() || http.oauth2.is_some();
    // `sigv4` was decoded already; `take` only reports whether it was set.
    let remote_auth: Vec<&str> = REMOTE_WRITE_AUTH
        .iter()
        .copied()
        .filter(|key| f.take(key).is_some())
        .collect();
    if remote_auth.len() > 1 || (http_auth && !remote_auth.is_empty()) {
        ctx.error(
            f.pos,
            &f.path,
            "at most one of basic_auth, authorization, oauth2, sigv4, azuread or google_iam must be configured",
        );
    }
    for key in remote_auth.iter().filter(|k| UNSUPPORTED_AUTH.contains(k)) {
        ctx.error(
            f.pos_of(key),
            &f.path_of(key),
            format!("{key} is not supported yet by Tributary"),
        );
    }
}

/// `sigv4:` with prometheus/sigv4's validation. Assuming a role through STS
/// is refused rather than ignored: signing with the base credentials
/// instead would be rejected by AWS or, worse, write as the wrong principal.
fn sigv4_config(ctx: &mut Ctx, node: &Node, path: &str) -> Option<SigV4Config> {
    let mut f = Fields::open(ctx, node, path, "sigv4.SigV4Config")?;
    let cfg = SigV4Config {
        region: f.get(ctx, "region", string).unwrap_or_default(),
        access_key: f.get(ctx, "access_key", string).unwrap_or_default(),
        secret_key: f.get(ctx, "secret_key", secret).filter(|s| !s.is_empty()),
        profile: f.get(ctx, "profile", string).unwrap_or_default(),
        role_arn: f.get(ctx, "role_arn", string).unwrap_or_default(),
        external_id: f.get(ctx, "external_id", string).unwrap_or_default(),
        use_fips_sts_endpoint: f
            .get(ctx, "use_fips_sts_endpoint", boolean)
            .unwrap_or(false),
        service_name: f.get(ctx, "service_name", string).unwrap_or_default(),
    };
    if cfg.access_key.is_empty() != cfg.secret_key.is_none() {
        ctx.error(
            f.pos,
            &f.path,
            "must provide a AWS SigV4 Access key and Secret Key if credentials are specified in the SigV4 config",
        );
    }
    if !cfg.external_id.is_empty() && cfg.role_arn.is_empty() {
        ctx.error(
            f.pos_of("external_id"),
            &f.path_of("external_id"),
            "external_id can only be used with role_arn",
        );
    }
    if !cfg.role_arn.is_empty() {
        ctx.error(
            f.pos_of("role_arn"),
            &f.path_of("role_arn"),
            "sigv4 role_arn (STS AssumeRole) is not supported yet by Tributary",
        );
    }
    f.finish(ctx);
    Some(cfg)
}

fn positive_usize(ctx: &mut Ctx, node: &Node, path: &str) -> Option<usize> {
    let v = unsigned(ctx, node, path)?;
    usize::try_from(v).ok()
}

fn queue_config(ctx: &mut Ctx, node: &Node, path: &str) -> Option<QueueConfig> {
    let mut f = Fields::open(ctx, node, path, "config.QueueConfig")?;
    let d = QueueConfig::default();
    let q = QueueConfig {
        capacity: f.get(ctx, "capacity", positive_usize).unwrap_or(d.capacity),
        max_shards: f
            .get(ctx, "max_shards", positive_usize)
            .unwrap_or(d.max_shards),
        min_shards: f
            .get(ctx, "min_shards", positive_usize)
            .unwrap_or(d.min_shards),
        max_samples_per_send: f
            .get(ctx, "max_samples_per_send", positive_usize)
            .unwrap_or(d.max_samples_per_send),
        batch_send_deadline: f
            .get(ctx, "batch_send_deadline", duration)
            .unwrap_or(d.batch_send_deadline),
        min_backoff: f.get(ctx, "min_backoff", duration).unwrap_or(d.min_backoff),
        max_backoff: f.get(ctx, "max_backoff", duration).unwrap_or(d.max_backoff),
        retry_on_http_429: f.get(ctx, "retry_on_http_429", boolean).unwrap_or(false),
        sample_age_limit: f
            .get(ctx, "sample_age_limit", duration)
            .unwrap_or(d.sample_age_limit),
    };
    for (key, value) in [
        ("capacity", q.capacity),
        ("max_shards", q.max_shards),
        ("min_shards", q.min_shards),
        ("max_samples_per_send", q.max_samples_per_send),
    ] {
        if value == 0 {
            ctx.error(
                f.pos_of(key),
                &f.path_of(key),
                format!("{key} must be positive"),
            );
        }
    }
    if q.min_shards > q.max_shards {
        ctx.error(
            f.pos_of("min_shards"),
            &f.path_of("min_shards"),
            format!(
                "min_shards ({}) must not be greater than max_shards ({})",
                q.min_shards, q.max_shards
            ),
        );
    }
    if q.max_backoff < q.min_backoff {
        ctx.error(
            f.pos_of("max_backoff"),
            &f.path_of("max_backoff"),
            "max_backoff must be greater than or equal to min_backoff",
        );
    }
    if q.batch_send_deadline.is_zero() {
        ctx.error(
            f.pos_of("batch_send_deadline"),
            &f.path_of("batch_send_deadline"),
            "batch_send_deadline must be positive",
        );
    }
    f.finish(ctx);
    Some(q)
}

fn metadata_config(ctx: &mut Ctx, node: &Node, path: &str) -> Option<MetadataConfig> {
    let mut f = Fields::open(ctx, node, path, "config.MetadataConfig")?;
    let d = MetadataConfig::default();
    let m = MetadataConfig {
        send: f.get(ctx, "send", boolean).unwrap_or(d.send),
        send_interval: f
            .get(ctx, "send_interval", duration)
            .filter(|v| !v.is_zero())
            .unwrap_or(d.send_interval),
        max_samples_per_send: f
            .get(ctx, "max_samples_per_send", positive_usize)
            .unwrap_or(d.max_samples_per_send),
    };
    if m.max_samples_per_send == 0 {
        ctx.error(
            f.pos_of("max_samples_per_send"),
            &f.path_of("max_samples_per_send"),
            "max_samples_per_send must be positive",
        );
    }
    f.finish(ctx);
    Some(m)
}
