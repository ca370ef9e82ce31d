//! The remote-write client's own HTTP/1.1 path, against raw TCP servers on
//! 127.0.0.1 that answer exactly what each test needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tributary_remote::{SendError, WriteClient, WriteClientSettings};

/// One request as the server saw it: head text and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct Server {
    addr: std::net::SocketAddr,
    accepts: Arc<AtomicUsize>,
    seen: Seen,
}

/// Serves `answer(n)` to the n-th request (0-based), closing the
/// connection after each answer when `close` is set; `None` never answers.
async fn serve(
    close: bool,
    answer: impl Fn(usize) -> Option<String> + Send + Sync + 'static,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let seen: Seen = Arc::default();
    let answer = Arc::new(answer);
    let (a, s) = (Arc::clone(&accepts), Arc::clone(&seen));
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let (s, answer) = (Arc::clone(&s), Arc::clone(&answer));
            tokio::spawn(handle(conn, close, s, answer));
        }
    });
    Server {
        addr,
        accepts,
        seen,
    }
}

async fn handle(
    mut conn: TcpStream,
    close: bool,
    seen: Seen,
    answer: Arc<impl Fn(usize) -> Option<String>>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then_some(value)
            })
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let n = {
            let mut s = seen.lock();
            s.push((head, body));
            s.len() - 1
        };
        let Some(reply) = answer(n) else {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        };
        if conn.write_all(reply.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

fn client(addr: std::net::SocketAddr, timeout: Duration) -> WriteClient {
    let http = tributary_http::build_client(
        &tributary_config::HttpClientConfig::default_for_remote_write(),
        tributary_http::ClientOptions::default(),
    )
    .unwrap();
    WriteClient::new(
        http,
        WriteClientSettings {
            url: format!("http://{addr}/push").parse().unwrap(),
            timeout,
            user_agent: "Prometheus/3.0.0 Tributary/test".into(),
            headers: vec![("X-Scope-OrgID".into(), "tenant-1".into())],
            retry_on_http_429: true,
        },
    )
    .unwrap()
}

const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";

#[tokio::test]
async fn requests_share_one_kept_alive_connection() {
    let server = serve(false, |_| Some(NO_CONTENT.into())).await;
    let c = client(server.addr, Duration::from_secs(5));
    let body = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
    for attempt in 0..4 {
        c.send(body.clone(), attempt).await.unwrap();
    }
    assert_eq!(server.accepts.load(Ordering::SeqCst), 1);
    let seen = server.seen.lock();
    assert_eq!(seen.len(), 4);
    let (head, got) = &seen[0];
    assert_eq!(got, &body[..]);
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(lines[0], "POST /push HTTP/1.1");
    for want in [
        format!("host: {}", server.addr),
        "content-encoding: snappy".into(),
        "content-type: application/x-protobuf".into(),
        "x-prometheus-remote-write-version: 0.1.0".into(),
        "user-agent: Prometheus/3.0.0 Tributary/test".into(),
        "x-scope-orgid: tenant-1".into(),
        "content-length: 200000".into(),
    ] {
        assert!(
            lines.iter().any(|l| l.eq_ignore_ascii_case(&want)),
            "{want:?} not in {lines:?}"
        );
    }
    assert!(!head.to_ascii_lowercase().contains("retry-attempt"));
    assert!(seen[2].0.contains("Retry-Attempt: 2\r\n"));
}

#[tokio::test]
async fn a_connection_the_receiver_closed_is_replaced() {
    // Closes after every answer without saying so.
    let server = serve(true, |_| Some(NO_CONTENT.into())).await;
    let c = client(server.addr, Duration::from_secs(5));
    for _ in 0..3 {
        c.send(Bytes::from_static(b"x"), 0).await.unwrap();
        // Let the close arrive before the next request is written.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.accepts.load(Ordering::SeqCst), 3);
    assert_eq!(server.seen.lock().len(), 3);
}

#[tokio::test]
async fn error_responses_carry_their_body_and_retry_after() {
    let server = serve(false, |n| {
        Some(match n {
            0 => "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nslow \r\n4\r\ndown\r\n0\r\n\r\n".into(),
            1 => "HTTP/1.1 400 Bad Request\r\nContent-Length: 21\r\n\r\nout of order sample\r\n".into(),
            2 => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy".into(),
            _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".into(),
        })
    })
    .await;
    let c = client(server.addr, Duration::from_secs(5));
    match c.send(Bytes::from_static(b"a"), 0).await {
        Err(SendError::Recoverable {
            message,
            retry_after,
        }) => {
            assert!(
                message.contains("429") && message.contains("slow down"),
                "{message}"
            );
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
        }
        other => panic!("{other:?}"),
    }
    match c.send(Bytes::from_static(b"b"), 0).await {
        Err(SendError::NonRecoverable(message)) => {
            assert!(
                message.contains("400") && message.contains("out of order sample"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    match c.send(Bytes::from_static(b"c"), 0).await {
        Err(SendError::Recoverable { message, .. }) => {
            assert!(message.contains("busy"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    c.send(Bytes::from_static(b"d"), 0).await.unwrap();
    // The chunked answer was not read to its end: that connection was not
    // kept; the others were.
    assert_eq!(server.accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn redirects_are_followed_through_the_general_client() {
    let target = serve(false, |_| Some(NO_CONTENT.into())).await;
    let location = format!("http://{}/elsewhere", target.addr);
    let first = serve(false, move |_| {
        Some(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
        ))
    })
    .await;
    let c = client(first.addr, Duration::from_secs(5));
    c.send(Bytes::from_static(b"payload"), 0).await.unwrap();
    let seen = target.seen.lock();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].0.starts_with("POST /elsewhere HTTP/1.1\r\n"));
    assert_eq!(seen[0].1, b"payload");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_as_recoverable() {
    let server = serve(false, |_| None).await;
    let c = client(server.addr, Duration::from_millis(300));
    let started = Instant::now();
    match c.send(Bytes::from_static(b"a"), 0).await {
        Err(SendError::Recoverable { message, .. }) => {
            assert!(message.contains("sending request"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}
