//! Per-request authentication and configured headers.
//!
//! Built once from the config; applied to every request. Secrets that come
//! from files are read at request time (not cached) so a rotated token is
//! picked up by the next request, matching Prometheus's `*_file` semantics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::RequestBuilder;

use crate::HttpClientError;

/// Where a secret value comes from.
#[derive(Clone, Debug)]
pub enum SecretSource {
    Inline(String),
    /// Re-read on every request; surrounding whitespace is trimmed.
    File(PathBuf),
}

impl SecretSource {
    pub(crate) fn read(&self) -> Result<String, HttpClientError> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .map_err(|source| HttpClientError::ReadSecret {
                    path: p.clone(),
                    source,
                }),
        }
    }
}

/// One configured header (`http_headers`): all values are sent, in order.
#[derive(Clone, Debug)]
pub struct HeaderSource {
    pub name: HeaderName,
    pub values: Vec<SecretSource>,
}

/// The authentication applied to each request.
#[derive(Clone, Debug, Default)]
pub struct AuthStep {
    pub(crate) authorization: Option<Authorization>,
    pub(crate) headers: Vec<HeaderSource>,
    /// Replaces `authorization` when set.
    pub(crate) oauth2: Option<crate::oauth2::OAuth2Source>,
    /// AWS SigV4; runs after everything else because it signs the final
    /// headers and body.
    pub(crate) sigv4: Option<Arc<crate::sigv4::Signer>>,
}

#[derive(Clone, Debug)]
pub(crate) enum Authorization {
    Basic {
        username: SecretSource,
        password: Option<SecretSource>,
    },
    Credentials {
        scheme: String,
        credentials: SecretSource,
    },
}

impl AuthStep {
    /// Basic auth with optional password.
    pub fn basic(username: SecretSource, password: Option<SecretSource>) -> Self {
        Self {
            authorization: Some(Authorization::Basic { username, password }),
            headers: Vec::new(),
            oauth2: None,
            sigv4: None,
        }
    }

    /// `Authorization: <scheme> <credentials>`.
    pub fn credentials(scheme: impl Into<String>, credentials: SecretSource) -> Self {
        Self {
            authorization: Some(Authorization::Credentials {
                scheme: scheme.into(),
                credentials,
            }),
            headers: Vec::new(),
            oauth2: None,
            sigv4: None,
        }
    }

    /// Adds nothing to a request.
    pub fn is_empty(&self) -> bool {
        self.authorization.is_none()
            && self.headers.is_empty()
            && self.oauth2.is_none()
            && self.sigv4.is_none()
    }

    pub fn with_header(mut self, header: HeaderSource) -> Self {
        self.headers.push(header);
        self
    }

    /// Signs every request with AWS SigV4 (`sigv4:` of remote write).
    pub fn with_sigv4(mut self, signer: crate::sigv4::Signer) -> Self {
        self.sigv4 = Some(Arc::new(signer));
        self
    }

    /// Adds the configured headers and the `Authorization` header. With
    /// OAuth2 this uses the cached token (see [`crate::oauth2`]); with SigV4
    /// the request (including its body, which must already be set and
    /// buffered) is signed.
    pub fn apply(&self, rb: RequestBuilder) -> Result<RequestBuilder, HttpClientError> {
        let mut rb = self.apply_headers(rb)?;
        if let Some(o) = &self.oauth2 {
            rb = rb.header(AUTHORIZATION, o.header_now()?);
        }
        self.apply_sigv4(rb)
    }

    /// Like [`AuthStep::apply`], but waits for an OAuth2 token if needed.
    pub async fn apply_async(&self, rb: RequestBuilder) -> Result<RequestBuilder, HttpClientError> {
        let mut rb = self.apply_headers(rb)?;
        if let Some(o) = &self.oauth2 {
            rb = rb.header(AUTHORIZATION, o.header_async().await?);
        }
        self.apply_sigv4(rb)
    }

    /// Builds the request to sign it, then hands it back as a builder so
    /// callers keep their `rb.send()` flow.
    fn apply_sigv4(&self, rb: RequestBuilder) -> Result<RequestBuilder, HttpClientError> {
        let Some(signer) = &self.sigv4 else {
            return Ok(rb);
        };
        let (client, request) = rb.build_split();
        let mut request = request?;
        signer.sign(&mut request, SystemTime::now())?;
        Ok(RequestBuilder::from_parts(client, request))
    }

    fn apply_headers(&self, mut rb: RequestBuilder) -> Result<RequestBuilder, HttpClientError> {
        for h in &self.headers {
            for v in &h.values {
                let value = header_value(&v.read()?, h.name.as_str())?;
                rb = rb.header(h.name.clone(), value);
            }
        }
        if let Some(auth) = &self.authorization {
            rb = rb.header(AUTHORIZATION, authorization_value(auth)?);
        }
        Ok(rb)
    }
}

fn header_value(v: &str, name: &str) -> Result<HeaderValue, HttpClientError> {
    HeaderValue::from_str(v).map_err(|_| HttpClientError::InvalidHeaderValue(name.to_owned()))
}

fn authorization_value(auth: &Authorization) -> Result<HeaderValue, HttpClientError> {
    let text = match auth {
        Authorization::Basic { username, password } => {
            let user = username.read()?;
            let pass = match password {
                Some(p) => p.read()?,
                None => String::new(),
            };
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            format!("Basic {encoded}")
        }
        Authorization::Credentials {
            scheme,
            credentials,
        } => format!("{scheme} {}", credentials.read()?),
    };
    let mut value = header_value(&text, AUTHORIZATION.as_str())?;
    value.set_sensitive(true);
    Ok(value)
}
