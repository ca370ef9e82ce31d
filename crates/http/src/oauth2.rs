//! OAuth 2.0 client-credentials grant (`oauth2:` in `<http_config>`).
//!
//! The token is fetched from `token_url` with `grant_type=client_credentials`
//! (plus `scope` and `endpoint_params`), the client authenticating with HTTP
//! Basic (`client_id:client_secret`, form-url-encoded as RFC 6749 §2.3.1
//! asks). It is cached until shortly before `expires_in` runs out; the
//! secret file (`client_secret_file`) is re-read at every fetch, so a rotated
//! secret is used from the next refresh on.
//!
//! Requests can be prepared two ways. [`HttpClient::apply_auth_async`]
//! awaits a fresh token when needed (remote write uses it). The synchronous
//! [`HttpClient::apply_auth`] (used where the caller cannot await) uses the
//! cached token and, when there is none or it is about to expire, starts a
//! refresh in the background and fails this one request with
//! [`HttpClientError::OAuth2`], which callers treat as retryable.
//!
//! [`HttpClient::apply_auth_async`]: crate::HttpClient::apply_auth_async
//! [`HttpClient::apply_auth`]: crate::HttpClient::apply_auth

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION};

use crate::auth::SecretSource;
use crate::HttpClientError;

/// Refresh this long before the token's announced expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Cap on a token endpoint's response body.
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

#[derive(Clone)]
struct Token {
    header: HeaderValue,
    /// `None`: the server gave no `expires_in`; valid until rejected.
    refresh_at: Option<Instant>,
}

impl Token {
    fn fresh(&self, now: Instant) -> bool {
        self.refresh_at.is_none_or(|t| now < t)
    }
}

/// A client-credentials token source shared by all clones of a client.
#[derive(Clone)]
pub(crate) struct OAuth2Source {
    inner: Arc<Inner>,
}

struct Inner {
    client_id: String,
    client_secret: Option<SecretSource>,
    scopes: Vec<String>,
    token_url: reqwest::Url,
    endpoint_params: Vec<(String, String)>,
    http: reqwest::Client,
    token: Mutex<Option<Token>>,
    /// A background refresh is in flight.
    refreshing: AtomicBool,
    /// Serialises fetches from `apply_async`.
    fetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OAuth2Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Source")
            .field("client_id", &self.inner.client_id)
            .field("token_url", &self.inner.token_url.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<f64>,
}

impl OAuth2Source {
    pub(crate) fn new(
        client_id: String,
        client_secret: Option<SecretSource>,
        scopes: Vec<String>,
        token_url: &str,
        endpoint_params: Vec<(String, String)>,
        http: reqwest::Client,
    ) -> Result<Self, HttpClientError> {
        let token_url = reqwest::Url::parse(token_url)
            .map_err(|e| HttpClientError::OAuth2(format!("invalid token_url: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client_id,
                client_secret,
                scopes,
                token_url,
                endpoint_params,
                http,
                token: Mutex::new(None),
                refreshing: AtomicBool::new(false),
                fetch: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn cached(&self) -> Option<Token> {
        self.inner
            .token
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn store(&self, token: Token) {
        match self.inner.token.lock() {
            Ok(mut t) => *t = Some(token),
            Err(p) => *p.into_inner() = Some(token),
        }
    }

    /// The `Authorization` value, fetching a new token first if needed.
    pub(crate) async fn header_async(&self) -> Result<HeaderValue, HttpClientError> {
        if let Some(t) = self.cached().filter(|t| t.fresh(Instant::now())) {
            return Ok(t.header);
        }
        let _one_fetch = self.inner.fetch.lock().await;
        // Another task may have refreshed while we waited.
        if let Some(t) = self.cached().filter(|t| t.fresh(Instant::now())) {
            return Ok(t.header);
        }
        let token = self.inner.fetch_token().await?;
        self.store(token.clone());
        Ok(token.header)
    }

    /// The cached `Authorization` value; when there is none (or it is about
    /// to expire) a background refresh is started and, without a usable
    /// token, this request fails.
    pub(crate) fn header_now(&self) -> Result<HeaderValue, HttpClientError> {
        let now = Instant::now();
        let cached = self.cached();
        if cached.as_ref().is_some_and(|t| t.fresh(now)) {
            if let Some(t) = cached {
                return Ok(t.header);
            }
        }
        self.refresh_in_background();
        Err(HttpClientError::OAuth2(
            "no OAuth2 token yet; fetching one".into(),
        ))
    }

    fn refresh_in_background(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        rt.spawn(async move {
            // A failure needs no report here: the next request finds no
            // token, fails with `OAuth2`, and its caller logs that.
            let _ = me.header_async().await;
            me.inner.refreshing.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    async fn fetch_token(&self) -> Result<Token, HttpClientError> {
        let err = |m: String| HttpClientError::OAuth2(m);
        let secret = match &self.client_secret {
            Some(s) => s.read()?,
            None => String::new(),
        };
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        let scope = self.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        for (k, v) in &self.endpoint_params {
            form.push((k, v));
        }
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(&self.client_id),
            form_encode(&secret)
        ));
        let mut auth = HeaderValue::from_str(&format!("Basic {basic}"))
            .map_err(|_| err("client credentials are not a valid header".into()))?;
        auth.set_sensitive(true);
        let started = Instant::now();
        let resp = self
            .http
            .post(self.token_url.clone())
            .header(AUTHORIZATION, auth)
            .form(&form)
            .send()
            .await
            .map_err(|e| err(format!("token request: {e}")))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| err(format!("token response: {e}")))?;
        let body = body
            .get(..MAX_TOKEN_RESPONSE.min(body.len()))
            .unwrap_or(&[]);
        if !status.is_success() {
            return Err(err(format!(
                "token endpoint returned {status}: {}",
                String::from_utf8_lossy(body.get(..256.min(body.len())).unwrap_or(&[]))
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(body)
            .map_err(|e| err(format!("token response is not valid JSON: {e}")))?;
        if parsed.access_token.is_empty() {
            return Err(err("token response has an empty access_token".into()));
        }
        // Token types are case-insensitive; "bearer" is sent as "Bearer".
        let kind = match parsed.token_type.as_deref() {
            None | Some("") => "Bearer".to_owned(),
            Some(t) if t.eq_ignore_ascii_case("bearer") => "Bearer".to_owned(),
            Some(t) => t.to_owned(),
        };
        let mut header = HeaderValue::from_str(&format!("{kind} {}", parsed.access_token))
            .map_err(|_| err("access token is not a valid header value".into()))?;
        header.set_sensitive(true);
        let refresh_at = parsed
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| started + Duration::from_secs_f64(s).saturating_sub(EXPIRY_MARGIN));
        Ok(Token { header, refresh_at })
    }
}

/// `application/x-www-form-urlencoded` escaping, as RFC 6749 §2.3.1 asks for
/// client credentials in HTTP Basic.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_of_credentials() {
        assert_eq!(form_encode("id-1.x_~"), "id-1.x_~");
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }
}
