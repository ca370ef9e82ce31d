//! The connection layer under the endpoints, against a real server on
//! 127.0.0.1: HTTP/1.1 only, stalled and idle clients cut off after
//! `--web.read-timeout`, and a shutdown that does not wait on idle clients.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tributary_web::WebSecurity;

async fn fixture(read_timeout: Duration) -> Server {
    let cfg = load(CONFIG);
    let pools = pools(&cfg, |_| down(CONNECTION_REFUSED));
    let mut opts = options("/", false);
    opts.read_timeout = read_timeout;
    start(
        Arc::new(FakeStatus::new(cfg, pools)),
        opts,
        WebSecurity::default(),
    )
    .await
}

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// Prometheus's Go server does not speak cleartext HTTP/2 (h2c); neither
/// does this one, while HTTP/1.1 on the same port works.
#[tokio::test]
async fn cleartext_http2_is_not_served() {
    let s = fixture(tributary_web::DEFAULT_READ_TIMEOUT).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build();
    let h2 = match h2 {
        Ok(c) => c,
        Err(e) => panic!("client: {e}"),
    };
    let r = h2.get(format!("{}/-/healthy", s.base)).send().await;
    assert!(
        r.as_ref().is_err() || r.as_ref().is_ok_and(|r| r.status().as_u16() != 200),
        "HTTP/2 with prior knowledge was served: {r:?}"
    );
    assert_eq!(get(&format!("{}/-/healthy", s.base)).await.0, 200);
}

/// Sends `request` on a new connection and reads until the server closes
/// it: what it answered, or `None` if the connection was still open after
/// 20 s.
async fn answer_until_closed(s: &Server, request: &[u8]) -> Option<Vec<u8>> {
    let mut conn = match tokio::net::TcpStream::connect(addr(s)).await {
        Ok(c) => c,
        Err(e) => panic!("connect: {e}"),
    };
    if let Err(e) = conn.write_all(request).await {
        panic!("write: {e}");
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| seen)
}

/// A client that starts a request and never finishes its headers is cut
/// off after `--web.read-timeout`, as Go's `ReadTimeout` does.
#[tokio::test]
async fn a_stalled_request_is_cut_off_after_the_read_timeout() {
    let s = fixture(Duration::from_secs(1)).await;
    let answer = answer_until_closed(&s, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n").await;
    assert!(
        answer.is_some(),
        "the stalled connection was still open after 20 s"
    );
    // Other clients were served all along.
    assert_eq!(get(&format!("{}/-/healthy", s.base)).await.0, 200);
}

/// A keep-alive connection left idle after its response is closed after
/// `--web.read-timeout` too (Go's idle timeout defaults to the read timeout).
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_read_timeout() {
    let s = fixture(Duration::from_secs(1)).await;
    let answer = answer_until_closed(&s, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let Some(answer) = answer else {
        panic!("the idle connection was still open after 20 s");
    };
    let head = String::from_utf8_lossy(&answer);
    assert!(head.starts_with("HTTP/1.1 200"), "response: {head:?}");
    assert!(!head.to_ascii_lowercase().contains("connection: close"));
}

/// Shutdown stops accepting at once and closes idle keep-alive
/// connections instead of waiting for their clients to go away.
#[tokio::test]
async fn shutdown_closes_idle_connections_and_stops_accepting() {
    let mut s = fixture(tributary_web::DEFAULT_READ_TIMEOUT).await;
    let c = client();
    // A pooled keep-alive connection stays open after this request.
    assert_eq!(send(c.get(format!("{}/-/healthy", s.base))).await.0, 200);
    let mut idle = match tokio::net::TcpStream::connect(addr(&s)).await {
        Ok(c) => c,
        Err(e) => panic!("connect: {e}"),
    };
    s.shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), &mut s.task).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "server still running 10 s after shutdown: {ended:?}"
    );
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection not closed: {closed:?}"
    );
    let refused = tokio::net::TcpStream::connect(addr(&s)).await;
    assert!(refused.is_err(), "still accepting after shutdown");
}
