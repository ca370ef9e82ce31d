//! `ec2_sd_configs`: one target per EC2 instance from the EC2 query API
//! (`DescribeAvailabilityZones` once, then paginated `DescribeInstances`
//! with the configured filters), SigV4-signed, refreshed every
//! `refresh_interval`.
//!
//! Labels follow Prometheus's `discovery/aws` EC2 role (ec2.go; label list
//! in configuration.md `<ec2_sd_config>`): one group, source = the region;
//! instances with neither a private IPv4 nor an IPv6 address are skipped;
//! `__address__` is the private IP (else the default IPv6) with `port`;
//! `__meta_ec2_{region,instance_id,owner_id,private_ip,private_dns_name,
//! platform,public_ip,public_dns_name,ami,availability_zone,
//! availability_zone_id,instance_state,instance_type,instance_lifecycle,
//! architecture,vpc_id,primary_subnet_id,subnet_id,ipv6_addresses,
//! primary_ipv6_addresses,default_ipv6_address}` and
//! `__meta_ec2_tag_<key>` (sanitized). List labels are comma-joined and
//! comma-wrapped; `primary_ipv6_addresses` is positional by device index.
//!
//! Credentials, in order: `access_key`/`secret_key`; the
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`
//! environment (when no `profile` is set); the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, section
//! `profile`, `AWS_PROFILE` or `default`). Instance-role (IMDS) and STS
//! credentials are not supported yet and fail the refresh with a clear
//! error.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use roxmltree::{Document, Node};
use tokio::time::Instant;
use tributary_config::Ec2SdConfig;
use tributary_model::Labels;

use crate::api::encode_component;
use crate::group::TargetGroup;
use crate::refresh::{join_host_port, sanitize_label_name, ProviderCtx};
use tributary_http::sigv4::{self, Credentials};

const API_VERSION: &str = "2016-11-15";
/// Responses larger than this are refused rather than buffered.
const MAX_BODY_BYTES: usize = 64 << 20;
/// A bound on pagination, so a server repeating `nextToken` cannot loop us.
const MAX_PAGES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Ec2SdError {
    #[error("EC2 SD configuration requires a region")]
    NoRegion,
    #[error("no AWS credentials: set access_key/secret_key, the AWS_* environment or a shared credentials profile (instance roles are not supported yet)")]
    NoCredentials,
    #[error("invalid endpoint {0:?}")]
    Endpoint(String),
    #[error("could not create the HTTP client: {0}")]
    Client(String),
    #[error("{action}: {reason}")]
    Request {
        action: &'static str,
        reason: String,
    },
    #[error("{action}: HTTP status {status}: {code}: {message}")]
    Api {
        action: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{action}: invalid response: {reason}")]
    Parse {
        action: &'static str,
        reason: String,
    },
}

/// The EC2 endpoint and what signing needs to know about it.
struct Endpoint {
    url: String,
    /// The `Host` header value reqwest will send (default port omitted).
    host: String,
}

fn endpoint(cfg: &Ec2SdConfig, region: &str) -> Result<Endpoint, Ec2SdError> {
    let url = if cfg.endpoint.is_empty() {
        format!("https://ec2.{region}.amazonaws.com/")
    } else {
        cfg.endpoint.clone()
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Ec2SdError::Endpoint(url.clone()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || (scheme != "http" && scheme != "https") {
        return Err(Ec2SdError::Endpoint(url));
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = authority
        .strip_suffix(default_port)
        .unwrap_or(authority)
        .to_string();
    let url = format!("{scheme}://{authority}/");
    Ok(Endpoint { url, host })
}

fn resolve_region(
    cfg: &Ec2SdConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Ec2SdError> {
    if !cfg.region.is_empty() {
        return Ok(cfg.region.clone());
    }
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| env(k).filter(|v| !v.is_empty()))
        .ok_or(Ec2SdError::NoRegion)
}

/// Finds credentials as described in the module docs (the chain lives in
/// `tributary_http::sigv4`, shared with remote write).
fn resolve_credentials(
    cfg: &Ec2SdConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, Ec2SdError> {
    let secret = cfg.secret_key.as_ref().map(|s| s.expose());
    sigv4::resolve_credentials(&cfg.access_key, secret, &cfg.profile, env)
        .map_err(|_| Ec2SdError::NoCredentials)
}

/// A signed EC2 query API client for one refresh.
struct Api<'a> {
    http: &'a tributary_http::HttpClient,
    endpoint: Endpoint,
    region: String,
    creds: Credentials,
    timeout: Duration,
}

impl Api<'_> {
    /// POSTs one action and returns the parsed XML text.
    async fn call(
        &self,
        action: &'static str,
        params: &[(String, String)],
    ) -> Result<String, Ec2SdError> {
        let mut body = format!("Action={action}&Version={API_VERSION}");
        for (k, v) in params {
            body.push('&');
            body.push_str(&encode_component(k));
            body.push('=');
            body.push_str(&encode_component(v));
        }
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let (stamp, _) = sigv4::amz_date(SystemTime::now());
        let mut headers = vec![
            ("content-type".to_string(), content_type.to_string()),
            ("host".to_string(), self.endpoint.host.clone()),
            ("x-amz-date".to_string(), stamp.clone()),
        ];
        if let Some(token) = &self.creds.session_token {
            headers.push(("x-amz-security-token".to_string(), token.clone()));
        }
        let payload_sha256 = sigv4::sha256_hex(body.as_bytes());
        let request = sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: headers.clone(),
            payload_sha256: &payload_sha256,
        };
        let authorization =
            sigv4::authorization(&request, &self.creds, &stamp, &self.region, "ec2");
        let mut rb = self
            .http
            .client()
            .post(&self.endpoint.url)
            .timeout(self.timeout);
        for (name, value) in headers.iter().filter(|(n, _)| n != "host") {
            rb = rb.header(name.as_str(), value.as_str());
        }
        let request_err = |e: reqwest::Error| Ec2SdError::Request {
            action,
            reason: e.to_string(),
        };
        let mut resp = rb
            .header("Authorization", authorization)
            .body(body)
            .send()
            .await
            .map_err(request_err)?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(request_err)? {
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Ec2SdError::Parse {
                    action,
                    reason: format!("response exceeds {MAX_BODY_BYTES} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(bytes).map_err(|e| Ec2SdError::Parse {
            action,
            reason: e.to_string(),
        })?;
        if status != 200 {
            let (code, message) = api_error(&text);
            return Err(Ec2SdError::Api {
                action,
                status,
                code,
                message,
            });
        }
        Ok(text)
    }
}

fn element<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn text<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    element(node, name)
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The `<item>` children of the set element `name`.
fn items<'a, 'i>(node: Node<'a, 'i>, name: &str) -> impl Iterator<Item = Node<'a, 'i>> {
    element(node, name).into_iter().flat_map(|set| {
        set.children()
            .filter(|c| c.is_element() && c.tag_name().name() == "item")
    })
}

/// `(Code, Message)` of an EC2 error response.
fn api_error(xml: &str) -> (String, String) {
    let Ok(doc) = Document::parse(xml) else {
        return (String::new(), xml.chars().take(200).collect());
    };
    let error = doc.descendants().find(|n| n.tag_name().name() == "Error");
    match error {
        Some(e) => (
            text(e, "Code").unwrap_or_default().to_string(),
            text(e, "Message").unwrap_or_default().to_string(),
        ),
        None => (String::new(), String::new()),
    }
}

fn parse_error(action: &'static str) -> impl Fn(roxmltree::Error) -> Ec2SdError {
    move |e| Ec2SdError::Parse {
        action,
        reason: e.to_string(),
    }
}

fn availability_zones(xml: &str) -> Result<HashMap<String, String>, Ec2SdError> {
    let doc = Document::parse(xml).map_err(parse_error("DescribeAvailabilityZones"))?;
    Ok(items(doc.root_element(), "availabilityZoneInfo")
        .filter_map(|az| {
            Some((
                text(az, "zoneName")?.to_string(),
                text(az, "zoneId")?.to_string(),
            ))
        })
        .collect())
}

/// One page of instances as targets, plus the next page's token.
fn instances_page(
    xml: &str,
    region: &str,
    port: u16,
    az_ids: &HashMap<String, String>,
    out: &mut Vec<Labels>,
) -> Result<Option<String>, Ec2SdError> {
    let doc = Document::parse(xml).map_err(parse_error("DescribeInstances"))?;
    let root = doc.root_element();
    for reservation in items(root, "reservationSet") {
        let owner = text(reservation, "ownerId");
        for instance in items(reservation, "instancesSet") {
            if let Some(labels) = instance_labels(instance, owner, region, port, az_ids) {
                out.push(labels);
            }
        }
    }
    Ok(text(root, "nextToken").map(str::to_string))
}

/// `(default, primary by device index, all)` IPv6 addresses of a VPC
/// instance's interfaces.
fn ipv6_addresses(instance: Node) -> (Option<String>, Vec<String>, Vec<String>) {
    let mut primary: Vec<String> = Vec::new();
    let mut all = Vec::new();
    if text(instance, "vpcId").is_none() {
        return (None, primary, all);
    }
    for eni in items(instance, "networkInterfaceSet").filter(|e| text(*e, "subnetId").is_some()) {
        let device_index = element(eni, "attachment")
            .and_then(|a| text(a, "deviceIndex"))
            .and_then(|d| d.parse::<usize>().ok());
        for addr in items(eni, "ipv6AddressesSet") {
            let Some(ip) = text(addr, "ipv6Address") else {
                continue;
            };
            all.push(ip.to_string());
            if text(addr, "isPrimaryIpv6") != Some("true") {
                continue;
            }
            // Bounded: a device index is a small attachment slot number.
            if let Some(i) = device_index.filter(|i| *i < 1024) {
                if primary.len() <= i {
                    primary.resize(i + 1, String::new());
                }
                if let Some(slot) = primary.get_mut(i) {
                    *slot = ip.to_string();
                }
            }
        }
    }
    let default = primary
        .iter()
        .chain(all.iter())
        .find(|a| !a.is_empty())
        .cloned();
    (default, primary, all)
}

fn wrap_list(items: &[String]) -> String {
    format!(",{},", items.join(","))
}

fn instance_labels(
    instance: Node,
    owner: Option<&str>,
    region: &str,
    port: u16,
    az_ids: &HashMap<String, String>,
) -> Option<Labels> {
    let (default_v6, primary_v6, all_v6) = ipv6_addresses(instance);
    let private_ip = text(instance, "privateIpAddress");
    let address = match (private_ip, &default_v6) {
        (Some(ip), _) => join_host_port(ip, port),
        (None, Some(v6)) => join_host_port(v6, port),
        (None, None) => return None,
    };
    let mut pairs: Vec<(String, String)> = vec![
        ("__address__".into(), address),
        ("__meta_ec2_region".into(), region.into()),
    ];
    let mut put = |name: &str, value: Option<&str>| {
        if let Some(v) = value {
            pairs.push((format!("__meta_ec2_{name}"), v.to_string()));
        }
    };
    put("instance_id", text(instance, "instanceId"));
    put("owner_id", owner);
    put("default_ipv6_address", default_v6.as_deref());
    put("private_ip", private_ip);
    put("private_dns_name", text(instance, "privateDnsName"));
    put("platform", text(instance, "platform"));
    if let Some(public_ip) = text(instance, "ipAddress") {
        put("public_ip", Some(public_ip));
        put("public_dns_name", text(instance, "dnsName"));
    }
    put("ami", text(instance, "imageId"));
    if let Some(az) = element(instance, "placement").and_then(|p| text(p, "availabilityZone")) {
        put("availability_zone", Some(az));
        put("availability_zone_id", az_ids.get(az).map(String::as_str));
    }
    put(
        "instance_state",
        element(instance, "instanceState").and_then(|s| text(s, "name")),
    );
    put("instance_type", text(instance, "instanceType"));
    put("instance_lifecycle", text(instance, "instanceLifecycle"));
    put("architecture", text(instance, "architecture"));
    if let Some(vpc) = text(instance, "vpcId") {
        put("vpc_id", Some(vpc));
        put("primary_subnet_id", text(instance, "subnetId"));
        let mut subnets: Vec<String> = Vec::new();
        for eni in items(instance, "networkInterfaceSet") {
            if let Some(subnet) = text(eni, "subnetId") {
                if !subnets.iter().any(|s| s == subnet) {
                    subnets.push(subnet.to_string());
                }
            }
        }
        put("subnet_id", Some(&wrap_list(&subnets)));
    }
    if !primary_v6.is_empty() {
        put("primary_ipv6_addresses", Some(&wrap_list(&primary_v6)));
    }
    if !all_v6.is_empty() {
        put("ipv6_addresses", Some(&wrap_list(&all_v6)));
    }
    for tag in items(instance, "tagSet") {
        if let (Some(key), Some(value)) = (
            text(tag, "key"),
            element(tag, "value").and_then(|v| v.text()),
        ) {
            pairs.push((
                format!("__meta_ec2_tag_{}", sanitize_label_name(key)),
                value.to_string(),
            ));
        }
    }
    Some(Labels::from_pairs(pairs))
}

/// Filters as `Filter.N.Name` / `Filter.N.Value.M` parameters.
fn filter_params(cfg: &Ec2SdConfig) -> Vec<(String, String)> {
    let mut params = Vec::new();
    for (i, f) in cfg.filters.iter().enumerate() {
        params.push((format!("Filter.{}.Name", i + 1), f.name.clone()));
        for (j, v) in f.values.iter().enumerate() {
            params.push((format!("Filter.{}.Value.{}", i + 1, j + 1), v.clone()));
        }
    }
    params
}

/// State kept across refreshes: the zone-name → zone-ID map, fetched until
/// it succeeds once (Prometheus needs a reload to learn new zones too).
struct Ec2State {
    http: tributary_http::HttpClient,
    az_ids: Option<HashMap<String, String>>,
}

async fn refresh(state: &mut Ec2State, cfg: &Ec2SdConfig) -> Result<Vec<TargetGroup>, Ec2SdError> {
    let env = |k: &str| std::env::var(k).ok();
    let region = resolve_region(cfg, &env)?;
    let api = Api {
        http: &state.http,
        endpoint: endpoint(cfg, &region)?,
        region: region.clone(),
        creds: resolve_credentials(cfg, &env)?,
        timeout: cfg.refresh_interval,
    };
    if state.az_ids.is_none() {
        match api
            .call("DescribeAvailabilityZones", &[])
            .await
            .and_then(|x| availability_zones(&x))
        {
            Ok(map) => state.az_ids = Some(map),
            Err(e) => tracing::debug!(err = %e, "Unable to describe availability zones"),
        }
    }
    let empty = HashMap::new();
    let az_ids = state.az_ids.as_ref().unwrap_or(&empty);
    let base = filter_params(cfg);
    let mut targets = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut params = base.clone();
        if let Some(t) = &token {
            params.push(("NextToken".into(), t.clone()));
        }
        let xml = api.call("DescribeInstances", &params).await?;
        token = instances_page(&xml, &region, cfg.port, az_ids, &mut targets)?;
        if token.is_none() {
            break;
        }
    }
    Ok(vec![TargetGroup {
        source: region,
        targets,
        labels: Labels::empty(),
    }])
}

/// The provider task: refreshes every `refresh_interval` until cancelled.
pub(crate) async fn run(ctx: ProviderCtx, cfg: Ec2SdConfig) {
    let http = match tributary_http::build_client(
        &cfg.http_client,
        tributary_http::ClientOptions::default(),
    ) {
        Ok(c) => c,
        Err(e) => {
            let e = Ec2SdError::Client(e.to_string());
            ctx.count_failure();
            tracing::error!(err = %e, "Cannot start EC2 service discovery");
            let _ = ctx.report(Err(e.to_string())).await;
            return;
        }
    };
    let mut state = Ec2State { http, az_ids: None };
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            r = refresh(&mut state, &cfg) => r.map_err(|e| e.to_string()),
        };
        if !ctx.complete_refresh(started, result).await
            || !ctx.sleep_until(started + cfg.refresh_interval).await
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Ec2SdConfig {
        Ec2SdConfig {
            endpoint: String::new(),
            region: String::new(),
            access_key: String::new(),
            secret_key: None,
            profile: String::new(),
            refresh_interval: Duration::from_secs(60),
            port: 80,
            filters: Vec::new(),
            http_client: tributary_config::HttpClientConfig::default_for_scrape(),
        }
    }

    #[test]
    fn default_endpoint_and_host() {
        let e = endpoint(&cfg(), "eu-west-1").ok();
        assert_eq!(
            e.as_ref().map(|e| e.url.as_str()),
            Some("https://ec2.eu-west-1.amazonaws.com/")
        );
        assert_eq!(
            e.as_ref().map(|e| e.host.as_str()),
            Some("ec2.eu-west-1.amazonaws.com")
        );
        let mut c = cfg();
        c.endpoint = "https://vpce.example:443/x".into();
        assert_eq!(
            endpoint(&c, "r").ok().map(|e| e.host),
            Some("vpce.example".to_string())
        );
        c.endpoint = "ftp://x".into();
        assert!(endpoint(&c, "r").is_err());
    }

    #[test]
    fn region_comes_from_config_then_environment() {
        let none = |_: &str| None;
        assert!(matches!(
            resolve_region(&cfg(), &none),
            Err(Ec2SdError::NoRegion)
        ));
        let env = |k: &str| (k == "AWS_DEFAULT_REGION").then(|| "ap-south-1".to_string());
        assert_eq!(
            resolve_region(&cfg(), &env).ok().as_deref(),
            Some("ap-south-1")
        );
    }

    #[test]
    fn credentials_chain() {
        let dir = std::env::temp_dir().join(format!("tributary-ec2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let file = dir.join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = sdef\n\n[ops]\naws_access_key_id=AKOPS\naws_secret_access_key=sops\naws_session_token=tok\n",
        )
        .ok();
        let path = file.to_string_lossy().into_owned();
        let env_vars = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKENV".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("senv".to_string()),
            "AWS_SHARED_CREDENTIALS_FILE" => Some(path.clone()),
            _ => None,
        };
        let file_only = |k: &str| (k == "AWS_SHARED_CREDENTIALS_FILE").then(|| path.clone());

        let mut c = cfg();
        assert_eq!(
            resolve_credentials(&c, &env_vars)
                .ok()
                .map(|c| c.access_key),
            Some("AKENV".into())
        );
        assert_eq!(
            resolve_credentials(&c, &file_only)
                .ok()
                .map(|c| c.access_key),
            Some("AKDEF".into())
        );
        c.profile = "ops".into();
        let ops = resolve_credentials(&c, &env_vars).ok();
        assert_eq!(ops.as_ref().map(|c| c.access_key.as_str()), Some("AKOPS"));
        assert_eq!(ops.and_then(|c| c.session_token).as_deref(), Some("tok"));
        c.profile = "missing".into();
        assert!(matches!(
            resolve_credentials(&c, &file_only),
            Err(Ec2SdError::NoCredentials)
        ));
        c.access_key = "AKSTATIC".into();
        assert_eq!(
            resolve_credentials(&c, &env_vars)
                .ok()
                .map(|c| c.access_key),
            Some("AKSTATIC".into())
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn error_response_code_and_message() {
        let (code, message) = api_error(
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>nope</Message></Error></Errors></Response>",
        );
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("UnauthorizedOperation", "nope")
        );
    }
}
