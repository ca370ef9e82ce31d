//! AWS Signature Version 4: the signing core shared by remote write
//! (`sigv4:`, service `aps`) and EC2 service discovery, plus the small
//! credential chain both use.
//!
//! The algorithm follows AWS's published description: a canonical request
//! (method, URI, query, sorted lower-case headers, signed-header list and
//! the payload's SHA-256), a string to sign over it with the credential
//! scope, and an HMAC chain deriving a per-day/region/service key from the
//! secret. SHA-256 and HMAC come from `ring`, already linked for TLS.
//!
//! Credentials, in order: static keys from the config; the
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`
//! environment (skipped when a profile is named in the config); the shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`,
//! section = the configured profile, `AWS_PROFILE` or `default`). STS,
//! SSO and instance-role credentials are not implemented.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use ring::{digest, hmac};

use crate::HttpClientError;

/// The service remote write signs for unless `service_name` says otherwise.
pub const DEFAULT_SERVICE: &str = "aps";

/// Headers never signed: they are rewritten by proxies or added after
/// signing (prometheus/sigv4 drops `uber-trace-id`; AWS's SDKs skip the
/// others).
const UNSIGNED_HEADERS: &[&str] = &[
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "expect",
    "transfer-encoding",
    "connection",
    "uber-trace-id",
];

/// How long credentials from the environment or shared file are reused
/// before the chain is walked again (so a rotated file is picked up).
const CREDENTIALS_REFRESH: Duration = Duration::from_secs(300);

/// Static or session credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <secret>)", self.access_key)
    }
}

/// `(YYYYMMDD'T'HHMMSS'Z', YYYYMMDD)` for a point in time, in UTC.
pub fn amz_date(at: SystemTime) -> (String, String) {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}{m:02}{d:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    (stamp, date)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Lower-case hex SHA-256, the form SigV4 uses for payload hashes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// The key derived from the secret for one day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), service.as_bytes());
    hmac_sha256(k_service.as_ref(), b"aws4_request")
        .as_ref()
        .to_vec()
}

/// One request to sign. `headers` must include `host` and `x-amz-date`
/// (and `x-amz-security-token` with session credentials); names are
/// lower-cased, values trimmed and sorted here. Repeated names are joined
/// with `,` in the order given.
pub struct Request<'a> {
    pub method: &'a str,
    /// Canonical URI (see [`canonical_uri`]).
    pub path: &'a str,
    /// Already canonical (sorted, encoded) query string, usually empty.
    pub query: &'a str,
    pub headers: Vec<(String, String)>,
    /// `sha256_hex(body)`; passed in so a large body is hashed once even
    /// when the hash is also sent as `X-Amz-Content-Sha256`.
    pub payload_sha256: &'a str,
}

/// Header values are trimmed and inner runs of spaces collapsed to one.
fn canonical_header_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for word in v.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.trim().to_string()
}

/// Sorted `(name, value)` pairs with duplicates merged.
fn canonical_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut lowered: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), canonical_header_value(v)))
        .collect();
    // Stable: repeated names keep their order before being joined.
    lowered.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(String, String)> = Vec::with_capacity(lowered.len());
    for (name, value) in lowered {
        match merged.last_mut() {
            Some((last, joined)) if *last == name => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    merged
}

/// Returns the `Authorization` header value for `req`.
pub fn authorization(
    req: &Request,
    creds: &Credentials,
    amz_date: &str,
    region: &str,
    service: &str,
) -> String {
    let headers = canonical_headers(&req.headers);
    let canonical: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical}\n{signed_headers}\n{}",
        req.method, req.path, req.query, req.payload_sha256
    );
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = signing_key(&creds.secret_key, date, region, service);
    let signature = hex(hmac_sha256(&key, string_to_sign.as_bytes()).as_ref());
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key
    )
}

/// Cleans a URL path as Go's `path.Clean` does (what prometheus/sigv4
/// sends and signs): no empty or `.` segments, `..` resolved, no trailing
/// slash, `/` for an empty path.
pub fn clean_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len().max(1));
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical URI of an already percent-encoded path: every byte other
/// than unreserved characters and `/` is encoded again, as AWS requires
/// for every service except S3.
pub fn canonical_uri(encoded_path: &str) -> String {
    let mut out = String::with_capacity(encoded_path.len());
    for b in encoded_path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why no credentials could be found.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no AWS credentials: set access_key/secret_key, the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY environment or a shared credentials file")]
    NotFound,
    #[error("AWS shared credentials file {path:?} has no usable keys in profile {profile:?}")]
    Profile { path: String, profile: String },
}

/// Finds credentials as described in the module docs. `env` reads an
/// environment variable (a parameter so tests need not mutate the process
/// environment).
pub fn resolve_credentials(
    access_key: &str,
    secret_key: Option<&str>,
    profile: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, CredentialsError> {
    if !access_key.is_empty() || secret_key.is_some_and(|s| !s.is_empty()) {
        return Ok(Credentials {
            access_key: access_key.to_string(),
            secret_key: secret_key.unwrap_or_default().to_string(),
            session_token: None,
        });
    }
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
    if profile.is_empty() {
        if let (Some(ak), Some(sk)) = (
            non_empty("AWS_ACCESS_KEY_ID"),
            non_empty("AWS_SECRET_ACCESS_KEY"),
        ) {
            return Ok(Credentials {
                access_key: ak,
                secret_key: sk,
                session_token: non_empty("AWS_SESSION_TOKEN"),
            });
        }
    }
    let path = non_empty("AWS_SHARED_CREDENTIALS_FILE")
        .or_else(|| non_empty("HOME").map(|h| format!("{h}/.aws/credentials")))
        .ok_or(CredentialsError::NotFound)?;
    let profile = if profile.is_empty() {
        non_empty("AWS_PROFILE").unwrap_or_else(|| "default".into())
    } else {
        profile.to_string()
    };
    let text = std::fs::read_to_string(&path).map_err(|_| CredentialsError::NotFound)?;
    profile_credentials(&text, &profile).ok_or(CredentialsError::Profile { path, profile })
}

/// The `key = value` pairs of one `[section]` of an INI-style AWS file,
/// keys lower-cased.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut in_section = false;
    let mut values = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == section;
            continue;
        }
        if in_section {
            if let Some((k, v)) = line.split_once('=') {
                values.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    values
}

fn ini_value(values: &[(String, String)], key: &str) -> Option<String> {
    values
        .iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.clone())
}

/// Reads one `[profile]` section of an AWS shared credentials file.
pub fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let values = ini_section(text, profile);
    Some(Credentials {
        access_key: ini_value(&values, "aws_access_key_id")?,
        secret_key: ini_value(&values, "aws_secret_access_key")?,
        session_token: ini_value(&values, "aws_session_token"),
    })
}

/// The signing region: the configured one, else `AWS_REGION`,
/// `AWS_DEFAULT_REGION`, else `region` of the profile in the shared config
/// file (`AWS_CONFIG_FILE` or `~/.aws/config`, section `[profile NAME]` or
/// `[default]`).
pub fn resolve_region(
    configured: &str,
    profile: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    if !configured.is_empty() {
        return Some(configured.to_string());
    }
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(r) = non_empty("AWS_REGION").or_else(|| non_empty("AWS_DEFAULT_REGION")) {
        return Some(r);
    }
    let path = non_empty("AWS_CONFIG_FILE")
        .or_else(|| non_empty("HOME").map(|h| format!("{h}/.aws/config")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let profile = if profile.is_empty() {
        non_empty("AWS_PROFILE").unwrap_or_else(|| "default".into())
    } else {
        profile.to_string()
    };
    let section = if profile == "default" {
        profile
    } else {
        format!("profile {profile}")
    };
    ini_value(&ini_section(&text, &section), "region")
}

/// Where the signer gets its credentials.
#[derive(Debug)]
enum CredentialSource {
    Static(Credentials),
    /// Environment / shared file, re-read every [`CREDENTIALS_REFRESH`].
    Chain {
        profile: String,
        cached: Mutex<(Credentials, Instant)>,
    },
}

/// Signs requests for one region and service (the `sigv4:` block of a
/// remote-write queue).
#[derive(Debug)]
pub struct Signer {
    region: String,
    service: String,
    credentials: CredentialSource,
}

impl Signer {
    /// Resolves region and credentials now, failing like Prometheus does
    /// when either is missing.
    pub fn from_config(cfg: &tributary_config::SigV4Config) -> Result<Self, HttpClientError> {
        Self::from_config_with_env(cfg, &|k| std::env::var(k).ok())
    }

    /// [`Signer::from_config`] with an explicit environment (tests).
    pub fn from_config_with_env(
        cfg: &tributary_config::SigV4Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, HttpClientError> {
        if !cfg.role_arn.is_empty() {
            return Err(HttpClientError::Unsupported("sigv4 role_arn (STS)"));
        }
        let region = resolve_region(&cfg.region, &cfg.profile, env).ok_or_else(|| {
            HttpClientError::SigV4(
                "region not configured in sigv4 or in default credentials chain".into(),
            )
        })?;
        let secret = cfg.secret_key.as_ref().map(|s| s.expose());
        let creds = resolve_credentials(&cfg.access_key, secret, &cfg.profile, env)
            .map_err(|e| HttpClientError::SigV4(format!("could not get SigV4 credentials: {e}")))?;
        let is_static = !cfg.access_key.is_empty();
        let credentials = if is_static {
            CredentialSource::Static(creds)
        } else {
            CredentialSource::Chain {
                profile: cfg.profile.clone(),
                cached: Mutex::new((creds, Instant::now())),
            }
        };
        let service = if cfg.service_name.is_empty() {
            DEFAULT_SERVICE.to_string()
        } else {
            cfg.service_name.clone()
        };
        Ok(Self {
            region,
            service,
            credentials,
        })
    }

    /// A signer with fixed credentials (tests, callers with their own
    /// credential logic).
    pub fn new(region: impl Into<String>, service: impl Into<String>, creds: Credentials) -> Self {
        Self {
            region: region.into(),
            service: service.into(),
            credentials: CredentialSource::Static(creds),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// Current credentials; a failed refresh keeps the previous ones (a
    /// half-written credentials file must not stop remote write).
    fn credentials(&self) -> Credentials {
        match &self.credentials {
            CredentialSource::Static(c) => c.clone(),
            CredentialSource::Chain { profile, cached } => {
                let mut guard = cached.lock().unwrap_or_else(|p| p.into_inner());
                if guard.1.elapsed() >= CREDENTIALS_REFRESH {
                    if let Ok(fresh) =
                        resolve_credentials("", None, profile, &|k| std::env::var(k).ok())
                    {
                        guard.0 = fresh;
                    }
                    guard.1 = Instant::now();
                }
                guard.0.clone()
            }
        }
    }

    /// Signs `req` in place at time `now`: cleans the URL path, then sets
    /// `X-Amz-Date`, `X-Amz-Content-Sha256`, `X-Amz-Security-Token` (with
    /// session credentials) and `Authorization` over the method, URL, the
    /// headers already on the request and the exact body bytes.
    pub fn sign(&self, req: &mut reqwest::Request, now: SystemTime) -> Result<(), HttpClientError> {
        let payload_sha256 = match req.body() {
            None => sha256_hex(b""),
            Some(body) => sha256_hex(body.as_bytes().ok_or_else(|| {
                HttpClientError::SigV4("cannot sign a streaming request body".into())
            })?),
        };
        let cleaned = clean_path(req.url().path());
        if cleaned != req.url().path() {
            req.url_mut().set_path(&cleaned);
        }
        let creds = self.credentials();
        let (stamp, _) = amz_date(now);
        let headers = req.headers_mut();
        headers.insert(HeaderName::from_static("x-amz-date"), header_value(&stamp)?);
        headers.insert(
            HeaderName::from_static("x-amz-content-sha256"),
            header_value(&payload_sha256)?,
        );
        let token_header = HeaderName::from_static("x-amz-security-token");
        match &creds.session_token {
            Some(token) => {
                let mut v = header_value(token)?;
                v.set_sensitive(true);
                headers.insert(token_header, v);
            }
            None => {
                headers.remove(token_header);
            }
        }
        let signed = signable_headers(req)?;
        let query = canonical_query(req.url());
        let path = canonical_uri(req.url().path());
        let request = Request {
            method: req.method().as_str(),
            path: &path,
            query: &query,
            headers: signed,
            payload_sha256: &payload_sha256,
        };
        let auth = authorization(&request, &creds, &stamp, &self.region, &self.service);
        let mut value = header_value(&auth)?;
        value.set_sensitive(true);
        req.headers_mut().insert(AUTHORIZATION, value);
        Ok(())
    }
}

fn header_value(v: &str) -> Result<HeaderValue, HttpClientError> {
    HeaderValue::from_str(v).map_err(|_| HttpClientError::SigV4("invalid header value".into()))
}

/// `host` (as hyper will send it: the port only when not the scheme's
/// default) plus every header on the request except [`UNSIGNED_HEADERS`].
fn signable_headers(req: &reqwest::Request) -> Result<Vec<(String, String)>, HttpClientError> {
    let url = req.url();
    let host = url
        .host_str()
        .ok_or_else(|| HttpClientError::SigV4("URL has no host".into()))?;
    let host = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut out = vec![("host".to_string(), host)];
    for (name, value) in req.headers() {
        if name == reqwest::header::HOST || UNSIGNED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = value
            .to_str()
            .map_err(|_| HttpClientError::SigV4(format!("header {name} is not ASCII")))?;
        out.push((name.as_str().to_string(), value.to_string()));
    }
    Ok(out)
}

/// Query parameters decoded, re-encoded with SigV4's rules and sorted.
fn canonical_query(url: &reqwest::Url) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (encode_query_part(&k), encode_query_part(&v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode_query_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn example_creds() -> Credentials {
        Credentials {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: SECRET.into(),
            session_token: None,
        }
    }

    fn vector(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
        let req = Request {
            method,
            path,
            query: "",
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            payload_sha256: &sha256_hex(body),
        };
        authorization(
            &req,
            &example_creds(),
            "20150830T123600Z",
            "us-east-1",
            "service",
        )
    }

    const HOST: (&str, &str) = ("Host", "example.amazonaws.com");
    const DATE: (&str, &str) = ("X-Amz-Date", "20150830T123600Z");

    #[test]
    fn derives_the_documented_signing_key() {
        // AWS documentation example: 20120215, us-east-1, iam.
        assert_eq!(
            hex(&signing_key(SECRET, "20120215", "us-east-1", "iam")),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn signs_the_get_vanilla_test_vector() {
        assert_eq!(
            vector("GET", "/", &[HOST, DATE], b""),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn signs_the_post_x_www_form_urlencoded_test_vector() {
        // AWS SigV4 test suite: a body that takes part in the signature.
        let ct = ("Content-Type", "application/x-www-form-urlencoded");
        assert_eq!(
            vector("POST", "/", &[ct, HOST, DATE], b"Param1=value1"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
        // post-vanilla: same request without body or content type.
        assert!(vector("POST", "/", &[HOST, DATE], b"").ends_with(
            "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        ));
    }

    #[test]
    fn signs_the_header_value_trim_test_vector() {
        let got = vector(
            "GET",
            "/",
            &[
                HOST,
                ("My-Header1", " value1"),
                ("My-Header2", " \"a   b   c\""),
                DATE,
            ],
            b"",
        );
        assert!(
            got.ends_with(
                "SignedHeaders=host;my-header1;my-header2;x-amz-date, \
                 Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"
            ),
            "{got}"
        );
    }

    #[test]
    fn signs_the_get_unreserved_test_vector() {
        let path = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        assert!(
            vector("GET", &canonical_uri(path), &[HOST, DATE], b"").ends_with(
                "Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"
            )
        );
    }

    #[test]
    fn cleans_paths_like_go() {
        assert_eq!(clean_path(""), "/");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("/api/v1/write/"), "/api/v1/write");
        assert_eq!(clean_path("//a/./b/../c"), "/a/c");
        assert_eq!(canonical_uri("/a%20b/c"), "/a%2520b/c");
    }

    #[test]
    fn formats_utc_dates() {
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(
            amz_date(at),
            ("20150830T123600Z".to_string(), "20150830".to_string())
        );
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(amz_date(leap).1, "20000229");
    }

    #[test]
    fn credentials_chain_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = sdef\n\n[ops]\naws_access_key_id=AKOPS\naws_secret_access_key=sops\naws_session_token=tok\n",
        )
        .unwrap();
        let path = file.to_string_lossy().into_owned();
        let env_vars = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKENV".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("senv".to_string()),
            "AWS_SESSION_TOKEN" => Some("envtok".to_string()),
            "AWS_SHARED_CREDENTIALS_FILE" => Some(path.clone()),
            _ => None,
        };
        let file_only = |k: &str| (k == "AWS_SHARED_CREDENTIALS_FILE").then(|| path.clone());

        let from_env = resolve_credentials("", None, "", &env_vars).unwrap();
        assert_eq!(from_env.access_key, "AKENV");
        assert_eq!(from_env.session_token.as_deref(), Some("envtok"));
        assert_eq!(
            resolve_credentials("", None, "", &file_only)
                .unwrap()
                .access_key,
            "AKDEF"
        );
        let ops = resolve_credentials("", None, "ops", &env_vars).unwrap();
        assert_eq!(ops.access_key, "AKOPS");
        assert_eq!(ops.session_token.as_deref(), Some("tok"));
        assert!(matches!(
            resolve_credentials("", None, "missing", &file_only),
            Err(CredentialsError::Profile { .. })
        ));
        assert!(matches!(
            resolve_credentials("", None, "", &|_| None),
            Err(CredentialsError::NotFound)
        ));
        let fixed = resolve_credentials("AKSTATIC", Some("s"), "", &env_vars).unwrap();
        assert_eq!(
            (fixed.access_key.as_str(), fixed.session_token),
            ("AKSTATIC", None)
        );
    }

    #[test]
    fn region_from_config_environment_then_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        std::fs::write(
            &file,
            "[default]\nregion = eu-north-1\n[profile ops]\nregion=ap-south-1\n",
        )
        .unwrap();
        let path = file.to_string_lossy().into_owned();
        let file_env = |k: &str| (k == "AWS_CONFIG_FILE").then(|| path.clone());
        assert_eq!(
            resolve_region("us-west-2", "", &file_env).as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            resolve_region("", "", &file_env).as_deref(),
            Some("eu-north-1")
        );
        assert_eq!(
            resolve_region("", "ops", &file_env).as_deref(),
            Some("ap-south-1")
        );
        let env = |k: &str| (k == "AWS_DEFAULT_REGION").then(|| "ca-central-1".to_string());
        assert_eq!(
            resolve_region("", "", &env).as_deref(),
            Some("ca-central-1")
        );
        assert_eq!(resolve_region("", "", &|_| None), None);
    }
}
