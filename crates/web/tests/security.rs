//! `--web.config.file`: TLS with a generated certificate and bcrypt basic
//! auth, exercised over real connections on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tributary_web::load_web_config;

struct Fixture {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    ca_pem: String,
}

/// A self-signed certificate for 127.0.0.1/localhost, files referenced by
/// relative paths (resolved against the web config's directory).
fn fixture(extra: &str) -> Fixture {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let cert = match rcgen::generate_simple_self_signed(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
    ]) {
        Ok(c) => c,
        Err(e) => panic!("rcgen: {e}"),
    };
    let ca_pem = cert.cert.pem();
    let write = |name: &str, body: &str| {
        if let Err(e) = std::fs::write(dir.path().join(name), body) {
            panic!("write {name}: {e}");
        }
    };
    write("server.crt", &ca_pem);
    write("server.key", &cert.key_pair.serialize_pem());
    let hash = bcrypt::hash("s3cret", 4).unwrap_or_default();
    let yaml = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  alice: '{hash}'\n{extra}"
    );
    write("web.yml", &yaml);
    Fixture {
        config: dir.path().join("web.yml"),
        _dir: dir,
        ca_pem,
    }
}

fn tls_client(ca_pem: &str) -> reqwest::Client {
    let ca = match reqwest::Certificate::from_pem(ca_pem.as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("ca: {e}"),
    };
    match reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("client: {e}"),
    }
}

async fn server(web_config: &std::path::Path) -> Server {
    let security = match load_web_config(web_config) {
        Ok(s) => s,
        Err(e) => panic!("web config should load: {e}"),
    };
    assert!(security.tls_enabled() && security.basic_auth_enabled());
    let cfg = load(CONFIG);
    let pools = pools(&cfg, |_| down(CONNECTION_REFUSED));
    start(
        Arc::new(FakeStatus::new(cfg, pools)),
        options("/", false),
        security,
    )
    .await
}

#[tokio::test]
async fn tls_and_basic_auth_guard_every_endpoint() {
    let f = fixture("http_server_config:\n  headers:\n    X-Frame-Options: deny\n");
    let s = server(&f.config).await;
    assert!(s.base.starts_with("https://"));
    let c = tls_client(&f.ca_pem);

    for path in ["/-/healthy", "/api/v1/targets", "/targets", "/metrics"] {
        let r = c.get(format!("{}{path}", s.base)).send().await;
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("{path}: {e}"),
        };
        assert_eq!(r.status().as_u16(), 401, "{path}");
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Basic")
        );
    }
    let wrong = send(
        c.get(format!("{}/-/healthy", s.base))
            .basic_auth("alice", Some("nope")),
    )
    .await;
    assert_eq!(wrong.0, 401);
    let unknown = send(
        c.get(format!("{}/-/healthy", s.base))
            .basic_auth("mallory", Some("s3cret")),
    )
    .await;
    assert_eq!(unknown.0, 401);
    // Twice: the second answer comes from the cache of passed checks.
    for _ in 0..2 {
        let ok = c
            .get(format!("{}/-/healthy", s.base))
            .basic_auth("alice", Some("s3cret"))
            .send()
            .await;
        let ok = match ok {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(ok.status().as_u16(), 200);
        assert_eq!(
            ok.headers()
                .get("x-frame-options")
                .and_then(|v| v.to_str().ok()),
            Some("deny")
        );
        assert_eq!(
            ok.text().await.unwrap_or_default(),
            "Prometheus Agent is Healthy.\n"
        );
    }
}

#[tokio::test]
async fn plain_http_is_refused_on_a_tls_port() {
    let f = fixture("");
    let s = server(&f.config).await;
    let plain = s.base.replacen("https://", "http://", 1);
    let r = client().get(format!("{plain}/-/healthy")).send().await;
    assert!(r.is_err() || r.is_ok_and(|r| r.status().as_u16() != 200));
    // The server keeps serving TLS clients after the failed handshake.
    let ok = send(
        tls_client(&f.ca_pem)
            .get(format!("{}/-/healthy", s.base))
            .basic_auth("alice", Some("s3cret")),
    )
    .await;
    assert_eq!(ok.0, 200);
}

#[test]
fn broken_web_configs_are_rejected_with_the_reason() {
    let f = fixture("");
    let dir = f
        .config
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let write = |body: &str| {
        let p = dir.join("bad.yml");
        if let Err(e) = std::fs::write(&p, body) {
            panic!("{e}");
        }
        load_web_config(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(
        write("tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n")
            .contains("missing.key")
    );
    assert!(
        write("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n")
            .contains("cert_file")
    );
    assert!(write("basic_auth_users:\n  bob: not-a-hash\n").contains("bob"));
    assert!(load_web_config(&dir.join("absent.yml")).is_err());
}
