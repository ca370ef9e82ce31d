//! Headers actually sent by clients built from `<http_config>`, observed by
//! a real loopback server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use tributary_config::{Authorization, BasicAuth, HeaderValues, HttpClientConfig, Secret};
use tributary_http::{build_client, ClientOptions, HttpClientError};

async fn server() -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move |h: HeaderMap| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(h);
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (url, seen)
}

async fn get(cfg: &HttpClientConfig, url: &str) {
    let c = build_client(
        cfg,
        ClientOptions {
            user_agent: "Prometheus/3.5.0".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let rb = c.apply_auth(c.client().get(url)).unwrap();
    assert!(rb.send().await.unwrap().status().is_success());
}

#[tokio::test]
async fn basic_auth_password_file_is_reread_per_request() {
    let (url, seen) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "one\n").unwrap();
    let mut cfg = HttpClientConfig::default_for_remote_write();
    cfg.basic_auth = Some(BasicAuth {
        username: "user".into(),
        username_file: None,
        password: None,
        password_file: Some(pw.to_string_lossy().into_owned()),
    });
    let c = build_client(&cfg, ClientOptions::default()).unwrap();
    c.apply_auth(c.client().get(&url))
        .unwrap()
        .send()
        .await
        .unwrap();
    std::fs::write(&pw, "two").unwrap();
    c.apply_auth(c.client().get(&url))
        .unwrap()
        .send()
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    // base64("user:one") and base64("user:two")
    assert_eq!(seen[0]["authorization"], "Basic dXNlcjpvbmU=");
    assert_eq!(seen[1]["authorization"], "Basic dXNlcjp0d28=");
}

#[tokio::test]
async fn authorization_and_http_headers_are_sent() {
    let (url, seen) = server().await;
    let mut cfg = HttpClientConfig::default_for_scrape();
    cfg.authorization = Some(Authorization {
        type_: "Bearer".into(),
        credentials: Some(Secret::new("tok")),
        credentials_file: None,
    });
    cfg.http_headers = vec![(
        "X-Scope".into(),
        HeaderValues {
            values: vec!["a".into()],
            secrets: vec![Secret::new("b")],
            files: vec![],
        },
    )];
    get(&cfg, &url).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0]["authorization"], "Bearer tok");
    assert_eq!(seen[0]["user-agent"], "Prometheus/3.5.0");
    let scopes: Vec<_> = seen[0]
        .get_all("x-scope")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(scopes, ["a", "b"]);
}

#[test]
fn unsupported_settings_are_refused_not_ignored() {
    let mut cfg = HttpClientConfig::default_for_scrape();
    cfg.tls_config.server_name = Some("example".into());
    assert!(matches!(
        build_client(&cfg, ClientOptions::default()),
        Err(HttpClientError::Unsupported(_))
    ));
}
