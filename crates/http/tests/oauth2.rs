//! OAuth2 client credentials against real loopback token and resource
//! servers: the grant is sent as the RFC asks, the token is cached, and the
//! resource server sees `Authorization: Bearer <token>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use tributary_config::{HttpClientConfig, OAuth2, Secret, TlsConfig};
use tributary_http::{build_client, ClientOptions, HttpClientError};

#[derive(Default)]
struct Seen {
    token_requests: Vec<(HeaderMap, String)>,
    resource_auth: Vec<String>,
}

async fn servers(expires_in: u64) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(move |h: HeaderMap, body: String| {
                let s = s1.clone();
                async move {
                    let mut seen = s.lock().unwrap();
                    seen.token_requests.push((h, body));
                    let n = seen.token_requests.len();
                    format!(r#"{{"access_token":"tok-{n}","token_type":"bearer","expires_in":{expires_in}}}"#)
                }
            }),
        )
        .route(
            "/data",
            axum::routing::get(move |h: HeaderMap| {
                let s = s2.clone();
                async move {
                    let auth = h.get("authorization").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                    s.lock().unwrap().resource_auth.push(auth);
                    "ok"
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (base, seen)
}

fn config(base: &str, secret_file: Option<&std::path::Path>) -> HttpClientConfig {
    HttpClientConfig {
        oauth2: Some(OAuth2 {
            client_id: "agent one".into(),
            client_secret: Some(Secret::new("s3cr:t")),
            client_secret_file: secret_file.map(|p| p.display().to_string()),
            scopes: vec!["metrics.write".into(), "extra".into()],
            token_url: format!("{base}/token"),
            endpoint_params: vec![("audience".into(), "tributary".into())],
            tls_config: TlsConfig::default(),
            proxy_url: None,
            no_proxy: None,
            proxy_from_environment: false,
            proxy_connect_header: vec![],
        }),
        ..HttpClientConfig::default_for_remote_write()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_is_fetched_cached_and_sent() {
    let (base, seen) = servers(3600).await;
    let c = build_client(&config(&base, None), ClientOptions::default()).unwrap();
    for _ in 0..3 {
        let rb = c.client().get(format!("{base}/data"));
        let resp = c.apply_auth_async(rb).await.unwrap().send().await.unwrap();
        assert!(resp.status().is_success());
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.token_requests.len(), 1, "the token was not cached");
    let (headers, body) = &seen.token_requests[0];
    // Basic auth of the form-encoded id and secret.
    assert_eq!(
        headers.get("authorization").unwrap(),
        "Basic YWdlbnQrb25lOnMzY3IlM0F0"
    );
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    assert!(body.contains("scope=metrics.write+extra"), "{body}");
    assert!(body.contains("audience=tributary"), "{body}");
    assert_eq!(seen.resource_auth, vec!["Bearer tok-1"; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_refreshed_and_the_secret_file_is_reread() {
    // expires_in below the refresh margin: every use needs a new token.
    let (base, seen) = servers(1).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "first\n").unwrap();
    let c = build_client(&config(&base, Some(&secret)), ClientOptions::default()).unwrap();
    let rb = c.client().get(format!("{base}/data"));
    c.apply_auth_async(rb).await.unwrap().send().await.unwrap();
    std::fs::write(&secret, "second").unwrap();
    let rb = c.client().get(format!("{base}/data"));
    c.apply_auth_async(rb).await.unwrap().send().await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.resource_auth, vec!["Bearer tok-1", "Bearer tok-2"]);
    let auths: Vec<&str> = seen
        .token_requests
        .iter()
        .map(|(h, _)| h.get("authorization").unwrap().to_str().unwrap())
        .collect();
    // base64("agent+one:first") and base64("agent+one:second")
    assert_eq!(
        auths,
        vec![
            "Basic YWdlbnQrb25lOmZpcnN0",
            "Basic YWdlbnQrb25lOnNlY29uZA=="
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_path_fails_until_the_background_fetch_lands() {
    let (base, seen) = servers(3600).await;
    let c = build_client(&config(&base, None), ClientOptions::default()).unwrap();
    let first = c.apply_auth(c.client().get(format!("{base}/data")));
    assert!(matches!(first, Err(HttpClientError::OAuth2(_))));
    let mut ok = None;
    for _ in 0..100 {
        if let Ok(rb) = c.apply_auth(c.client().get(format!("{base}/data"))) {
            ok = Some(rb);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ok.expect("the background token fetch never completed")
        .send()
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().resource_auth, vec!["Bearer tok-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_is_an_oauth2_error() {
    let c = build_client(
        &config("http://127.0.0.1:1", None),
        ClientOptions::default(),
    )
    .unwrap();
    let r = c
        .apply_auth_async(c.client().get("http://127.0.0.1:1/data"))
        .await;
    assert!(
        matches!(r, Err(HttpClientError::OAuth2(ref m)) if m.contains("token request")),
        "{r:?}"
    );
}
