//! `<http_config>` (prometheus/common `HTTPClientConfig`), inlined into
//! scrape configs, remote write and `http_sd_configs`.
//!
//! The fields are read out of the enclosing mapping's [`Fields`] so the
//! parent's unknown-field check still covers everything. Validation mirrors
//! common's `Validate`, with the same messages, but reports every failure.

use crate::decode::{
    boolean, child, file_path, index, map_entries, seq, string, string_list, string_map, Ctx,
    Fields,
};
use crate::types::{
    Authorization, BasicAuth, HeaderValues, HttpClientConfig, OAuth2, Secret, TlsConfig, TlsVersion,
};
use crate::yaml::Node;

pub(crate) fn secret(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Secret> {
    string(ctx, node, path).map(Secret::new)
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

fn non_empty_secret(s: Option<Secret>) -> Option<Secret> {
    s.filter(|v| !v.is_empty())
}

/// Reads the inlined HTTP client fields from `f`, starting from `defaults`.
pub(crate) fn decode_inline(
    ctx: &mut Ctx,
    f: &mut Fields,
    defaults: HttpClientConfig,
) -> HttpClientConfig {
    let mut cfg = defaults;
    cfg.basic_auth = f.get(ctx, "basic_auth", basic_auth);
    cfg.authorization = f.get(ctx, "authorization", authorization);
    cfg.oauth2 = f.get(ctx, "oauth2", oauth2);
    if let Some(tls) = f.get(ctx, "tls_config", tls_config) {
        cfg.tls_config = tls;
    }
    let proxy = decode_proxy(ctx, f);
    cfg.proxy_url = proxy.url;
    cfg.no_proxy = proxy.no_proxy;
    cfg.proxy_from_environment = proxy.from_environment;
    cfg.proxy_connect_header = proxy.connect_header;
    if let Some(h) = f.get(ctx, "http_headers", http_headers) {
        cfg.http_headers = h;
    }
    if let Some(v) = f.get(ctx, "follow_redirects", boolean) {
        cfg.follow_redirects = v;
    }
    if let Some(v) = f.get(ctx, "enable_http2", boolean) {
        cfg.enable_http2 = v;
    }
    let bearer_token = non_empty_secret(f.get(ctx, "bearer_token", secret));
    let bearer_token_file = non_empty(f.get(ctx, "bearer_token_file", file_path));
    validate_auth(ctx, f, &mut cfg, bearer_token, bearer_token_file);
    cfg
}

/// Mutual-exclusion checks of common's `HTTPClientConfig.Validate`; also
/// folds the legacy `bearer_token(_file)` into `authorization`.
fn validate_auth(
    ctx: &mut Ctx,
    f: &Fields,
    cfg: &mut HttpClientConfig,
    bearer_token: Option<Secret>,
    bearer_token_file: Option<String>,
) {
    let has_bearer = bearer_token.is_some() || bearer_token_file.is_some();
    if bearer_token.is_some() && bearer_token_file.is_some() {
        ctx.error(
            f.pos_of("bearer_token"),
            &f.path_of("bearer_token"),
            "at most one of bearer_token & bearer_token_file must be configured",
        );
    }
    if has_bearer && (cfg.basic_auth.is_some() || cfg.oauth2.is_some()) {
        ctx.error(
            f.pos_of("bearer_token"),
            &f.path,
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
        );
    }
    if cfg.authorization.is_some() {
        if has_bearer {
            ctx.error(
                f.pos_of("authorization"),
                &f.path_of("authorization"),
                "authorization is not compatible with bearer_token & bearer_token_file",
            );
        }
        if cfg.basic_auth.is_some() || cfg.oauth2.is_some() {
            ctx.error(
                f.pos_of("authorization"),
                &f.path_of("authorization"),
                "at most one of basic_auth, oauth2 & authorization must be configured",
            );
        }
    } else if has_bearer {
        cfg.authorization = Some(Authorization {
            type_: "Bearer".into(),
            credentials: bearer_token,
            credentials_file: bearer_token_file,
        });
    }
    if cfg.oauth2.is_some() && cfg.basic_auth.is_some() {
        ctx.error(
            f.pos_of("oauth2"),
            &f.path_of("oauth2"),
            "at most one of basic_auth, oauth2 & authorization must be configured",
        );
    }
}

fn basic_auth(ctx: &mut Ctx, node: &Node, path: &str) -> Option<BasicAuth> {
    let mut f = Fields::open(ctx, node, path, "config.BasicAuth")?;
    let auth = BasicAuth {
        username: f.get(ctx, "username", string).unwrap_or_default(),
        username_file: non_empty(f.get(ctx, "username_file", file_path)),
        password: non_empty_secret(f.get(ctx, "password", secret)),
        password_file: non_empty(f.get(ctx, "password_file", file_path)),
    };
    if !auth.username.is_empty() && auth.username_file.is_some() {
        ctx.error(
            f.pos,
            path,
            "at most one of basic_auth username & username_file must be configured",
        );
    }
    if auth.password.is_some() && auth.password_file.is_some() {
        ctx.error(
            f.pos,
            path,
            "at most one of basic_auth password & password_file must be configured",
        );
    }
    f.finish(ctx);
    Some(auth)
}

fn authorization(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Authorization> {
    let mut f = Fields::open(ctx, node, path, "config.Authorization")?;
    let type_raw = f.get(ctx, "type", string).unwrap_or_default();
    let type_trimmed = type_raw.trim();
    let auth = Authorization {
        type_: if type_trimmed.is_empty() {
            "Bearer".to_string()
        } else {
            type_trimmed.to_string()
        },
        credentials: non_empty_secret(f.get(ctx, "credentials", secret)),
        credentials_file: non_empty(f.get(ctx, "credentials_file", file_path)),
    };
    if auth.credentials.is_some() && auth.credentials_file.is_some() {
        ctx.error(
            f.pos,
            path,
            "at most one of authorization credentials & credentials_file must be configured",
        );
    }
    if auth.type_.eq_ignore_ascii_case("basic") {
        ctx.error(
            f.pos_of("type"),
            &f.path_of("type"),
            r#"authorization type cannot be set to "basic", use "basic_auth" instead"#,
        );
    }
    f.finish(ctx);
    Some(auth)
}

fn oauth2(ctx: &mut Ctx, node: &Node, path: &str) -> Option<OAuth2> {
    let mut f = Fields::open(ctx, node, path, "config.OAuth2")?;
    if let Some(grant) = f.get(ctx, "grant_type", string) {
        if !grant.is_empty() && grant != "client_credentials" {
            ctx.error(
                f.pos_of("grant_type"),
                &f.path_of("grant_type"),
                format!("oauth2 grant_type {grant:?} is not supported yet by Tributary"),
            );
        }
    }
    let proxy = decode_proxy(ctx, &mut f);
    let mut endpoint_params = f
        .get(ctx, "endpoint_params", |c, n, p| {
            string_map(c, n, p, string)
        })
        .unwrap_or_default();
    endpoint_params.sort();
    let cfg = OAuth2 {
        client_id: f.get(ctx, "client_id", string).unwrap_or_default(),
        client_secret: non_empty_secret(f.get(ctx, "client_secret", secret)),
        client_secret_file: non_empty(f.get(ctx, "client_secret_file", file_path)),
        scopes: f.get(ctx, "scopes", string_list).unwrap_or_default(),
        token_url: f.get(ctx, "token_url", string).unwrap_or_default(),
        endpoint_params,
        tls_config: f.get(ctx, "tls_config", tls_config).unwrap_or_default(),
        proxy_url: proxy.url,
        no_proxy: proxy.no_proxy,
        proxy_from_environment: proxy.from_environment,
        proxy_connect_header: proxy.connect_header,
    };
    if cfg.client_id.is_empty() {
        ctx.error(f.pos, path, "oauth2 client_id must be configured");
    }
    if cfg.client_secret.is_none() && cfg.client_secret_file.is_none() {
        ctx.error(
            f.pos,
            path,
            "either oauth2 client_secret or client_secret_file must be configured",
        );
    }
    if cfg.client_secret.is_some() && cfg.client_secret_file.is_some() {
        ctx.error(
            f.pos,
            path,
            "at most one of oauth2 client_secret & client_secret_file must be configured",
        );
    }
    if cfg.token_url.is_empty() {
        ctx.error(f.pos, path, "oauth2 token_url must be configured");
    }
    f.finish(ctx);
    Some(cfg)
}

fn tls_version(ctx: &mut Ctx, node: &Node, path: &str) -> Option<TlsVersion> {
    let name = string(ctx, node, path)?;
    let v = TlsVersion::from_name(&name);
    if v.is_none() {
        ctx.error(node.pos, path, format!("unknown TLS version: {name}"));
    }
    v
}

pub(crate) fn tls_config(ctx: &mut Ctx, node: &Node, path: &str) -> Option<TlsConfig> {
    let mut f = Fields::open(ctx, node, path, "config.TLSConfig")?;
    let cfg = TlsConfig {
        ca: non_empty(f.get(ctx, "ca", string)),
        ca_file: non_empty(f.get(ctx, "ca_file", file_path)),
        cert: non_empty(f.get(ctx, "cert", string)),
        cert_file: non_empty(f.get(ctx, "cert_file", file_path)),
        key: non_empty_secret(f.get(ctx, "key", secret)),
        key_file: non_empty(f.get(ctx, "key_file", file_path)),
        server_name: non_empty(f.get(ctx, "server_name", string)),
        insecure_skip_verify: f.get(ctx, "insecure_skip_verify", boolean).unwrap_or(false),
        min_version: f
            .get(ctx, "min_version", tls_version)
            .unwrap_or(TlsVersion::Tls12),
        max_version: f.get(ctx, "max_version", tls_version),
    };
    let pairs = [
        (
            cfg.ca.is_some(),
            cfg.ca_file.is_some(),
            "at most one of ca and ca_file must be configured",
        ),
        (
            cfg.cert.is_some(),
            cfg.cert_file.is_some(),
            "at most one of cert and cert_file must be configured",
        ),
        (
            cfg.key.is_some(),
            cfg.key_file.is_some(),
            "at most one of key and key_file must be configured",
        ),
    ];
    for (inline, file, message) in pairs {
        if inline && file {
            ctx.error(f.pos, path, message);
        }
    }
    let has_cert = cfg.cert.is_some() || cfg.cert_file.is_some();
    let has_key = cfg.key.is_some() || cfg.key_file.is_some();
    if has_cert && !has_key {
        ctx.error(
            f.pos,
            path,
            "exactly one of key or key_file must be configured when a client certificate is configured",
        );
    }
    if has_key && !has_cert {
        ctx.error(
            f.pos,
            path,
            "exactly one of cert or cert_file must be configured when a client key is configured",
        );
    }
    if let Some(max) = cfg.max_version {
        if max < cfg.min_version {
            ctx.error(
                f.pos_of("max_version"),
                &f.path_of("max_version"),
                "tls_config.max_version must be greater than or equal to tls_config.min_version if both are specified",
            );
        }
    }
    f.finish(ctx);
    Some(cfg)
}

struct Proxy {
    url: Option<String>,
    no_proxy: Option<String>,
    from_environment: bool,
    connect_header: Vec<(String, Vec<Secret>)>,
}

/// `ProxyConfig` fields (inlined both in the client and in `oauth2`).
fn decode_proxy(ctx: &mut Ctx, f: &mut Fields) -> Proxy {
    let url = non_empty(f.get(ctx, "proxy_url", string));
    if let Some(u) = &url {
        if !u.contains("://") {
            ctx.error(
                f.pos_of("proxy_url"),
                &f.path_of("proxy_url"),
                format!("invalid proxy_url {u:?}: missing scheme"),
            );
        }
    }
    let no_proxy = non_empty(f.get(ctx, "no_proxy", string));
    let from_environment = f
        .get(ctx, "proxy_from_environment", boolean)
        .unwrap_or(false);
    let mut connect_header = f
        .get(ctx, "proxy_connect_header", |c, n, p| {
            string_map(c, n, p, |c, n, p| {
                let items = seq(c, n, p)?;
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(secret(c, item, &index(p, i))?);
                }
                Some(out)
            })
        })
        .unwrap_or_default();
    connect_header.sort_by(|a, b| a.0.cmp(&b.0));
    let pos = f.pos;
    if from_environment && url.is_some() {
        ctx.error(
            pos,
            &f.path,
            "if proxy_from_environment is configured, proxy_url must not be configured",
        );
    }
    if from_environment && no_proxy.is_some() {
        ctx.error(
            pos,
            &f.path,
            "if proxy_from_environment is configured, no_proxy must not be configured",
        );
    }
    if url.is_none() && no_proxy.is_some() {
        ctx.error(
            pos,
            &f.path,
            "if no_proxy is configured, proxy_url must also be configured",
        );
    }
    if !connect_header.is_empty() && url.is_none() && !from_environment {
        ctx.error(
            pos,
            &f.path,
            "if proxy_connect_header is configured, proxy_url or proxy_from_environment must also be configured",
        );
    }
    Proxy {
        url,
        no_proxy,
        from_environment,
        connect_header,
    }
}

fn http_headers(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<(String, HeaderValues)>> {
    let entries = map_entries(ctx, node, path)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let p = child(path, &e.key);
        if is_reserved_client_header(&e.key) {
            ctx.error(
                e.key_pos,
                &p,
                format!("setting header {:?} is not allowed", e.key),
            );
            continue;
        }
        let Some(mut f) = Fields::open(ctx, &e.value, &p, "config.Header") else {
            continue;
        };
        let values = HeaderValues {
            values: f.get(ctx, "values", string_list).unwrap_or_default(),
            secrets: f
                .get(ctx, "secrets", |c, n, p| {
                    string_list(c, n, p).map(|v| v.into_iter().map(Secret::new).collect())
                })
                .unwrap_or_default(),
            files: f
                .get(ctx, "files", string_list)
                .unwrap_or_default()
                .into_iter()
                .map(|file| ctx.resolve_path(&file))
                .collect(),
        };
        f.finish(ctx);
        out.push((e.key.clone(), values));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Some(out)
}

/// Headers common's `http_headers` refuses to override.
fn is_reserved_client_header(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "authorization",
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
        "x-prometheus-scrape-timeout-seconds",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}
