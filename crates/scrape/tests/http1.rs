//! The scrape loops' own HTTP/1.1 connection for plain `http://` targets,
//! against raw TCP servers on 127.0.0.1 that answer exactly as written
//! here: framings (length, chunked with extensions and trailers, until
//! close), keep-alive reuse, a kept connection closed by the server,
//! informational responses, redirects (handed to the general client), the
//! byte cap, gzip'd bodies read with the head or after it, and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tributary_config::HttpClientConfig;
use tributary_scrape::fetch::{fetch, Connection, FetchError, ScrapeRequest};

const BODY: &[u8] = b"# TYPE up gauge\nup 1\nmetric_a{x=\"1\"} 2\n";

/// A server answering each request on a connection with the next of
/// `responses` (cycling), closing after each one when `close_after`.
/// Counts connections.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

fn serve(responses: Vec<Vec<u8>>, close_after: bool) -> Server {
    serve_in_pieces(responses, close_after, 7)
}

/// [`serve`], writing each response `piece` bytes at a time.
fn serve_in_pieces(responses: Vec<Vec<u8>>, close_after: bool, piece: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    std::thread::spawn(move || {
        let mut next = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            count.fetch_add(1, Ordering::SeqCst);
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            loop {
                if !read_request(&mut stream) {
                    break;
                }
                let r = &responses[next % responses.len()];
                next += 1;
                // In pieces, so the client sees partial heads and chunks.
                for piece in r.chunks(piece) {
                    if stream.write_all(piece).is_err() {
                        break;
                    }
                    let _ = stream.flush();
                }
                if close_after {
                    break;
                }
            }
        }
    });
    Server { addr, connections }
}

/// Reads one request head; false when the client closed.
fn read_request(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return false,
        }
    }
    true
}

fn request(addr: SocketAddr, path: &str, limit: u64) -> ScrapeRequest {
    ScrapeRequest {
        url: format!("http://{addr}{path}"),
        accept: "text/plain".into(),
        accept_encoding: "gzip",
        user_agent: "Prometheus/3.0.0".into(),
        timeout: Duration::from_secs(5),
        body_limit: limit,
    }
}

fn client() -> tributary_http::HttpClient {
    tributary_http::build_client(
        &HttpClientConfig::default_for_scrape(),
        tributary_http::ClientOptions::default(),
    )
    .unwrap()
}

fn length_response(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn chunked_response(body: &[u8]) -> Vec<u8> {
    let mut r =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for (i, part) in body.chunks(5).enumerate() {
        r.extend_from_slice(format!("{:x};ext={i}\r\n", part.len()).as_bytes());
        r.extend_from_slice(part);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    r
}

async fn scrape(
    c: &tributary_http::HttpClient,
    req: &ScrapeRequest,
    conn: &mut Connection,
) -> Result<Vec<u8>, FetchError> {
    let mut body = tributary_scrape::BodyBuf::default();
    fetch(c, req, conn, &mut body)
        .await
        .map(|_| body.as_slice().to_vec())
}

#[tokio::test]
async fn framings_decode_to_the_body_and_keep_alive_reuses_one_connection() {
    let server = serve(vec![length_response(BODY), chunked_response(BODY)], false);
    let (c, req) = (client(), request(server.addr, "/metrics", 1 << 20));
    let mut conn = Connection::new(&c, &req);
    for _ in 0..4 {
        assert_eq!(scrape(&c, &req, &mut conn).await.unwrap(), BODY);
    }
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "kept alive across scrapes"
    );
}

#[tokio::test]
async fn a_closed_connection_is_replaced_and_close_delimited_bodies_are_read() {
    let mut until_close = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    until_close.extend_from_slice(BODY);
    let server = serve(
        vec![length_response(BODY), until_close, chunked_response(BODY)],
        true,
    );
    let (c, req) = (client(), request(server.addr, "/metrics", 1 << 20));
    let mut conn = Connection::new(&c, &req);
    for _ in 0..3 {
        assert_eq!(scrape(&c, &req, &mut conn).await.unwrap(), BODY);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn informational_responses_are_skipped() {
    let mut r = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n".to_vec();
    r.extend_from_slice(&length_response(BODY));
    let server = serve(vec![r], false);
    let (c, req) = (client(), request(server.addr, "/metrics", 1 << 20));
    let mut conn = Connection::new(&c, &req);
    assert_eq!(scrape(&c, &req, &mut conn).await.unwrap(), BODY);
}

#[tokio::test]
async fn redirects_are_followed_by_the_general_client() {
    let target = serve(vec![chunked_response(BODY)], false);
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: http://{}/real\r\nContent-Length: 0\r\n\r\n",
        target.addr
    );
    let server = serve(vec![redirect.into_bytes()], false);
    let (c, req) = (client(), request(server.addr, "/metrics", 1 << 20));
    let mut conn = Connection::new(&c, &req);
    assert_eq!(scrape(&c, &req, &mut conn).await.unwrap(), BODY);
    assert_eq!(target.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bodies_at_the_cap_fail_whatever_the_framing() {
    for response in [length_response(BODY), chunked_response(BODY)] {
        let server = serve(vec![response], false);
        let (c, req) = (
            client(),
            request(server.addr, "/metrics", BODY.len() as u64),
        );
        let mut conn = Connection::new(&c, &req);
        let err = scrape(&c, &req, &mut conn).await.unwrap_err();
        assert!(matches!(err, FetchError::BodySizeLimit), "{err}");
    }
}

#[tokio::test]
async fn errors_name_the_status_and_malformed_responses() {
    let server = serve(
        vec![b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()],
        false,
    );
    let (c, req) = (client(), request(server.addr, "/metrics", 1 << 20));
    let mut conn = Connection::new(&c, &req);
    let err = scrape(&c, &req, &mut conn).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "server returned HTTP status 503 Service Unavailable"
    );

    let bad_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec();
    let truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec();
    for r in [bad_chunk, truncated, b"garbage\r\n\r\n".to_vec()] {
        let server = serve(vec![r], true);
        let req = request(server.addr, "/metrics", 1 << 20);
        let mut conn = Connection::new(&c, &req);
        assert!(matches!(
            scrape(&c, &req, &mut conn).await.unwrap_err(),
            FetchError::Http(_)
        ));
    }
}

/// A page of `n` distinct lines: gzip'd, larger than one read of the
/// socket (64 KiB).
fn big_page(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            format!(
                "metric_a{{x=\"{i}\",y=\"{}\"}} {}\n",
                i * 7919 % 1013,
                i * 31
            )
        })
        .collect::<String>()
        .into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// `response` with `Content-Encoding: gzip` added to its head.
fn gzip_encoded(response: Vec<u8>) -> Vec<u8> {
    let status_end = response.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let mut r = response[..status_end].to_vec();
    r.extend_from_slice(b"Content-Encoding: gzip\r\n");
    r.extend_from_slice(&response[status_end..]);
    r
}

fn until_close_response(body: &[u8]) -> Vec<u8> {
    let mut r = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn gzip_bodies_inflate_whether_read_with_the_head_or_after_it() {
    // A page that fits in the read of the head, and one that does not.
    for page in [BODY.repeat(3), big_page(20_000)] {
        let gz = gzip(&page);
        // A server that sends more bytes than it announced: they are not
        // the body's.
        let mut overlong = gzip_encoded(length_response(&gz));
        overlong.extend_from_slice(b"trailing garbage");
        let responses = [
            (gzip_encoded(length_response(&gz)), false),
            (overlong, true),
            (gzip_encoded(until_close_response(&gz)), true),
            (gzip_encoded(chunked_response(&gz)), false),
        ];
        // Whole (the body, or most of it, comes with the head) and in
        // pieces (the head comes nearly alone).
        for piece in [usize::MAX, 1000] {
            for (response, close_after) in &responses {
                let server = serve_in_pieces(vec![response.clone()], *close_after, piece);
                let (c, req) = (client(), request(server.addr, "/metrics", 1 << 24));
                let mut conn = Connection::new(&c, &req);
                // Twice: the second scrape reads into the buffers the
                // first handed back.
                for _ in 0..2 {
                    let body = scrape(&c, &req, &mut conn).await.unwrap();
                    assert!(body == page, "piece {piece}, {} bytes", body.len());
                }
            }
        }
    }
}

#[tokio::test]
async fn gzip_bodies_at_the_cap_fail_whatever_the_framing() {
    let gz = gzip(&big_page(20_000));
    for response in [
        length_response(&gz),
        until_close_response(&gz),
        chunked_response(&gz),
    ] {
        let server = serve_in_pieces(vec![gzip_encoded(response)], true, usize::MAX);
        let (c, req) = (client(), request(server.addr, "/metrics", gz.len() as u64));
        let mut conn = Connection::new(&c, &req);
        let err = scrape(&c, &req, &mut conn).await.unwrap_err();
        assert!(matches!(err, FetchError::BodySizeLimit), "{err}");
    }
}

#[tokio::test]
async fn an_announced_length_under_a_large_cap_is_not_allocated_up_front() {
    // A terabyte announced, five bytes sent: an allocation of the
    // announced size would abort the process before the EOF is seen.
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\nshort".to_vec();
    for gzip in [false, true] {
        let r = if gzip {
            gzip_encoded(r.clone())
        } else {
            r.clone()
        };
        let server = serve_in_pieces(vec![r], true, usize::MAX);
        let (c, req) = (client(), request(server.addr, "/metrics", u64::MAX));
        let mut conn = Connection::new(&c, &req);
        let err = scrape(&c, &req, &mut conn).await.unwrap_err();
        assert!(matches!(err, FetchError::Http(_)), "{err}");
    }
}
