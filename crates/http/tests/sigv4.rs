//! SigV4 on the wire: a loopback receiver records what arrived and the test
//! recomputes the signature from the received method, path, headers and
//! body, so host/port, path cleaning and body hashing are all checked
//! against what the server actually saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use tributary_config::{HttpClientConfig, Secret, SigV4Config};
use tributary_http::sigv4::{self, Credentials, Signer};
use tributary_http::{build_client, AuthStep, ClientOptions, HttpClient, HttpClientError};

#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

async fn receiver() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(Seen {
                    method,
                    uri,
                    headers,
                    body,
                });
                "ok"
            }
        },
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (base, seen)
}

fn static_sigv4() -> SigV4Config {
    SigV4Config {
        region: "eu-west-1".into(),
        access_key: "AKIDTEST".into(),
        secret_key: Some(Secret::new("secret/key+TEST")),
        ..SigV4Config::default()
    }
}

/// Splits `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
fn auth_parts(header: &str) -> (String, Vec<String>, String) {
    let rest = header
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .expect("algorithm prefix");
    let mut credential = String::new();
    let mut signed = Vec::new();
    let mut signature = String::new();
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').expect("key=value");
        match k {
            "Credential" => credential = v.to_string(),
            "SignedHeaders" => signed = v.split(';').map(str::to_string).collect(),
            "Signature" => signature = v.to_string(),
            other => panic!("unexpected part {other}"),
        }
    }
    (credential, signed, signature)
}

/// Recomputes the Authorization header from what the server received.
fn expected_authorization(seen: &Seen, creds: &Credentials, region: &str) -> String {
    let auth = seen.headers["authorization"].to_str().unwrap();
    let (_, signed, _) = auth_parts(auth);
    let headers: Vec<(String, String)> = signed
        .iter()
        .map(|name| {
            let values: Vec<&str> = seen
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert!(!values.is_empty(), "signed header {name} did not arrive");
            (name.clone(), values.join(","))
        })
        .collect();
    let stamp = seen.headers["x-amz-date"].to_str().unwrap();
    let body_hash = sigv4::sha256_hex(&seen.body);
    let path = sigv4::canonical_uri(seen.uri.path());
    let request = sigv4::Request {
        method: seen.method.as_str(),
        path: &path,
        query: seen.uri.query().unwrap_or(""),
        headers,
        payload_sha256: &body_hash,
    };
    sigv4::authorization(&request, creds, stamp, region, "aps")
}

async fn post(client: &HttpClient, url: &str, body: &'static [u8]) -> reqwest::StatusCode {
    let rb = client
        .client()
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(Duration::from_secs(10))
        .body(Bytes::from_static(body));
    let rb = client.apply_auth_async(rb).await.unwrap();
    rb.send().await.unwrap().status()
}

#[tokio::test]
async fn remote_write_request_is_signed_over_the_exact_body() {
    let (base, seen) = receiver().await;
    let cfg = HttpClientConfig {
        sigv4: Some(static_sigv4()),
        ..HttpClientConfig::default_for_remote_write()
    };
    let client = build_client(&cfg, ClientOptions::default()).unwrap();
    let before = SystemTime::now();
    // Duplicate and trailing slashes are cleaned before signing and sending.
    let status = post(
        &client,
        &format!("{base}/workspaces//ws-1/api/v1/remote_write/"),
        b"\x00snappy\xffbody",
    )
    .await;
    assert!(status.is_success());

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let got = &seen[0];
    assert_eq!(got.uri.path(), "/workspaces/ws-1/api/v1/remote_write");
    assert_eq!(got.body.as_ref(), b"\x00snappy\xffbody");
    assert_eq!(
        got.headers["x-amz-content-sha256"].to_str().unwrap(),
        sigv4::sha256_hex(b"\x00snappy\xffbody")
    );
    assert!(got.headers.get("x-amz-security-token").is_none());

    let auth = got.headers["authorization"].to_str().unwrap();
    let (credential, signed, signature) = auth_parts(auth);
    let (_, day) = sigv4::amz_date(before);
    assert_eq!(
        credential,
        format!("AKIDTEST/{day}/eu-west-1/aps/aws4_request")
    );
    for required in [
        "content-encoding",
        "content-type",
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-prometheus-remote-write-version",
    ] {
        assert!(
            signed.iter().any(|s| s == required),
            "{required} not signed: {auth}"
        );
    }
    assert!(!signed.iter().any(|s| s == "user-agent"));
    assert_eq!(signature.len(), 64);

    let creds = Credentials {
        access_key: "AKIDTEST".into(),
        secret_key: "secret/key+TEST".into(),
        session_token: None,
    };
    assert_eq!(auth, expected_authorization(got, &creds, "eu-west-1"));
    // And a wrong secret does not verify: the check can fail.
    let wrong = Credentials {
        secret_key: "other".into(),
        ..creds
    };
    assert_ne!(auth, expected_authorization(got, &wrong, "eu-west-1"));
}

#[tokio::test]
async fn session_token_is_sent_and_signed() {
    let (base, seen) = receiver().await;
    let creds = Credentials {
        access_key: "ASIATEST".into(),
        secret_key: "s".into(),
        session_token: Some("token/with+chars".into()),
    };
    let signer = Signer::new("us-east-2", "aps", creds.clone());
    let client = HttpClient::from_parts(
        reqwest::Client::new(),
        AuthStep::default().with_sigv4(signer),
    );
    assert!(
        post(&client, &format!("{base}/api/v1/write?x=1&a=b"), b"payload")
            .await
            .is_success()
    );
    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(
        got.headers["x-amz-security-token"].to_str().unwrap(),
        "token/with+chars"
    );
    let auth = got.headers["authorization"].to_str().unwrap();
    assert!(auth.contains("x-amz-security-token"), "{auth}");
    // Query parameters are sorted in the canonical request.
    let mut sorted = got.clone();
    sorted.uri = "/api/v1/write?a=b&x=1".parse().unwrap();
    assert_eq!(auth, expected_authorization(&sorted, &creds, "us-east-2"));
}

#[test]
fn credentials_come_from_the_environment_then_the_shared_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        "[default]\naws_access_key_id=AKFILE\naws_secret_access_key=sfile\n",
    )
    .unwrap();
    let path = file.to_string_lossy().into_owned();
    let cfg = SigV4Config {
        region: "eu-west-1".into(),
        ..SigV4Config::default()
    };
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AKENV".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("senv".to_string()),
        "AWS_SHARED_CREDENTIALS_FILE" => Some(path.clone()),
        _ => None,
    };
    assert!(Signer::from_config_with_env(&cfg, &env).is_ok());
    let file_only = |k: &str| (k == "AWS_SHARED_CREDENTIALS_FILE").then(|| path.clone());
    assert!(Signer::from_config_with_env(&cfg, &file_only).is_ok());

    let none = |_: &str| None;
    let err = Signer::from_config_with_env(&cfg, &none).unwrap_err();
    assert!(
        matches!(&err, HttpClientError::SigV4(m) if m.contains("could not get SigV4 credentials")),
        "{err}"
    );
    let no_region = SigV4Config {
        region: String::new(),
        ..static_sigv4()
    };
    let err = Signer::from_config_with_env(&no_region, &none).unwrap_err();
    assert!(err.to_string().contains("region not configured"), "{err}");
    let with_region_env = |k: &str| (k == "AWS_REGION").then(|| "sa-east-1".to_string());
    let signer = Signer::from_config_with_env(&no_region, &with_region_env).unwrap();
    assert_eq!((signer.region(), signer.service()), ("sa-east-1", "aps"));
}
