//! Remote-write 1.0 POSTs over plain HTTP/1.1 connections of our own.
//!
//! Most endpoints are `http://` receivers on the same network without
//! proxy or credentials. Through the general client (reqwest over hyper)
//! every request parsed its URL again, went through the redirect and
//! timeout layers and the connection pool, and was handed to a
//! separate connection task and back: in a profile at 400k series, more
//! CPU than the write into the socket itself. Here a request is one
//! vectored write of a pre-rendered head and the body, then the response
//! head is read and parsed in the same task. Connections are kept alive
//! in a small pool shared by the shards.
//!
//! A redirect is left to the general client ([`Reply::Redirect`]), which
//! follows it as configured; so is remote write 2.0. A kept connection
//! that the receiver closed meanwhile is replaced once, as the general
//! client does.

use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tributary_http::{find_head_end, parse_chunk_size, PlainHttpUrl};

/// Longest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// Headers parsed at most.
const MAX_HEADERS: usize = 64;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4 << 10;
/// Idle connections kept at most (one per shard sending at once).
const MAX_IDLE: usize = 64;
/// An idle connection older than this is closed rather than used, as the
/// general client's pool does: a middlebox may have dropped it silently,
/// and a request on it would wait out the whole remote timeout.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What the receiver answered.
#[derive(Debug)]
pub(crate) enum Reply {
    Response {
        status: u16,
        retry_after: Option<String>,
        /// The start of the body (error responses explain themselves here).
        body: Vec<u8>,
    },
    /// A 3xx: to be sent again through the general client.
    Redirect,
}

/// One endpoint reached over plain HTTP/1.1.
#[derive(Debug)]
pub(crate) struct H1Endpoint {
    /// `host:port` to connect to.
    connect: String,
    /// The request head up to (not including) `Content-Length`.
    head: Vec<u8>,
    /// Kept-alive connections and when each went idle, newest last.
    idle: Mutex<Vec<(TcpStream, Instant)>>,
}

impl H1Endpoint {
    /// The endpoint for `url` if it is plain `http://` with a host;
    /// `headers` are sent in this order.
    pub fn new(url: &Url, headers: &[(&str, &[u8])]) -> Option<H1Endpoint> {
        let PlainHttpUrl {
            connect,
            host,
            target,
        } = PlainHttpUrl::parse(url)?;
        let mut head = format!("POST {target} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
        for (name, value) in headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        Some(H1Endpoint {
            connect,
            head,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// POSTs `body`; `attempt` > 0 adds `Retry-Attempt`. The caller bounds
    /// the time it may take.
    pub async fn post(&self, body: &Bytes, attempt: u32) -> io::Result<Reply> {
        // Written on the stack: two decimal numbers fit many times over.
        const TAIL: usize = 96;
        let mut tail = [0u8; TAIL];
        let mut w = &mut tail[..];
        let _ = io::Write::write_fmt(&mut w, format_args!("Content-Length: {}\r\n", body.len()));
        if attempt > 0 {
            let _ = io::Write::write_fmt(&mut w, format_args!("Retry-Attempt: {attempt}\r\n"));
        }
        let _ = io::Write::write_all(&mut w, b"\r\n");
        let used = TAIL - w.len();
        let parts = [self.head.as_slice(), &tail[..used], body];
        let kept = self.take_idle();
        if let Some(mut stream) = kept {
            match exchange(&mut stream, &parts).await {
                Ok((reply, reusable)) => {
                    self.keep(stream, reusable);
                    return Ok(reply);
                }
                // Closed by the receiver while idle: ask on a new one.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof || is_reset(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let mut stream = TcpStream::connect(&self.connect).await?;
        // As the general client: no Nagle delay on the request.
        let _ = stream.set_nodelay(true);
        let (reply, reusable) = exchange(&mut stream, &parts).await?;
        self.keep(stream, reusable);
        Ok(reply)
    }

    /// The most recently idle connection, after closing those idle for
    /// longer than [`IDLE_TIMEOUT`].
    fn take_idle(&self) -> Option<TcpStream> {
        let mut idle = self.idle.lock();
        idle.retain(|(_, since)| since.elapsed() < IDLE_TIMEOUT);
        idle.pop().map(|(stream, _)| stream)
    }

    fn keep(&self, stream: TcpStream, reusable: bool) {
        let mut idle = self.idle.lock();
        if reusable && idle.len() < MAX_IDLE {
            idle.push((stream, Instant::now()));
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Sends the request and reads the response; whether the connection can
/// carry another request.
async fn exchange(stream: &mut TcpStream, parts: &[&[u8]; 3]) -> io::Result<(Reply, bool)> {
    write_all_vectored(stream, parts).await?;
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        let end = read_head(stream, &mut buf).await?;
        let head = parse_head(buf.get(..end).unwrap_or_default())?;
        buf.drain(..end);
        // An interim response (100 Continue) precedes the real one.
        if (100..200).contains(&head.status) {
            continue;
        }
        if (300..400).contains(&head.status) && head.status != 304 {
            return Ok((Reply::Redirect, false));
        }
        let (body, complete) = read_body(stream, &head, buf).await?;
        let reply = Reply::Response {
            status: head.status,
            retry_after: head.retry_after,
            body,
        };
        return Ok((reply, complete && head.keep_alive));
    }
}

async fn write_all_vectored(stream: &mut TcpStream, parts: &[&[u8]; 3]) -> io::Result<()> {
    let mut skip: usize = 0;
    loop {
        let mut slices = [IoSlice::new(&[]); 3];
        let (mut n, mut left) = (0, skip);
        for p in parts {
            if left >= p.len() {
                left -= p.len();
                continue;
            }
            slices[n] = IoSlice::new(p.get(left..).unwrap_or_default());
            n += 1;
            left = 0;
        }
        if n == 0 {
            return Ok(());
        }
        let n = stream.write_vectored(&slices[..n]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        skip += n;
    }
}

/// Reads until `buf` holds a whole response head; its length.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        if let Some(end) = find_head_end(buf) {
            return Ok(end);
        }
        if buf.len() >= MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
        buf.reserve(READ_CHUNK);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete response",
            ));
        }
    }
}

struct Head {
    status: u16,
    retry_after: Option<String>,
    length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
}

fn parse_head(bytes: &[u8]) -> io::Result<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    match resp.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete response head".into())),
        Err(e) => return Err(bad(format!("invalid response head: {e}"))),
    }
    let mut head = Head {
        status: resp.code.unwrap_or(0),
        retry_after: None,
        length: None,
        chunked: false,
        keep_alive: resp.version == Some(1),
    };
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            head.length = Some(
                value
                    .parse()
                    .map_err(|_| bad(format!("invalid Content-Length {value:?}")))?,
            );
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            if value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
            {
                head.keep_alive = false;
            }
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            head.retry_after = Some(value.to_owned());
        }
    }
    Ok(head)
}

/// Reads the body after `head` (`buf` holds what was read past the head),
/// keeping its first [`crate::client::MAX_ERROR_BODY`] bytes; whether it
/// was read to its end, leaving the connection at the next response.
async fn read_body(
    stream: &mut TcpStream,
    head: &Head,
    mut buf: Vec<u8>,
) -> io::Result<(Vec<u8>, bool)> {
    let keep = crate::client::MAX_ERROR_BODY;
    if head.status == 204 || head.status == 304 {
        return Ok((Vec::new(), buf.is_empty()));
    }
    if head.chunked {
        // Only the start is wanted; the connection is not reused.
        let mut body = Vec::new();
        decode_chunks(&buf, &mut body, keep);
        return Ok((body, false));
    }
    let Some(length) = head.length else {
        // Delimited by the end of the connection: read up to what is kept.
        while buf.len() < keep {
            buf.reserve(READ_CHUNK);
            if stream.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        buf.truncate(keep);
        return Ok((buf, false));
    };
    let mut seen = buf.len() as u64;
    if seen > length {
        // More than the body: the receiver pipelined garbage.
        buf.truncate(keep);
        return Ok((buf, false));
    }
    let mut body = buf;
    body.truncate(keep);
    let mut scratch = [0u8; READ_CHUNK];
    while seen < length {
        let want = usize::try_from(length - seen)
            .unwrap_or(usize::MAX)
            .min(scratch.len());
        let n = stream.read(&mut scratch[..want]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the response body",
            ));
        }
        let room = keep.saturating_sub(body.len()).min(n);
        body.extend_from_slice(&scratch[..room]);
        seen += n as u64;
    }
    Ok((body, true))
}

/// Appends the data of the chunks in `raw` to `out`, up to `keep` bytes.
fn decode_chunks(mut raw: &[u8], out: &mut Vec<u8>, keep: usize) {
    while out.len() < keep {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let Some(size) = parse_chunk_size(&raw[..eol]).and_then(|n| usize::try_from(n).ok()) else {
            return;
        };
        if size == 0 {
            return;
        }
        let data = raw.get(eol + 2..).unwrap_or_default();
        let take = size.min(data.len()).min(keep - out.len());
        out.extend_from_slice(&data[..take]);
        match data.get(size + 2..) {
            Some(rest) => raw = rest,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn heads_and_chunks() {
        let h = parse_head(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.status, 429);
        assert_eq!(h.retry_after.as_deref(), Some("7"));
        assert_eq!(h.length, Some(5));
        assert!(h.keep_alive && !h.chunked);
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert!(h.chunked && !h.keep_alive);
        assert!(
            !parse_head(b"HTTP/1.0 204 No Content\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());

        let mut out = Vec::new();
        decode_chunks(b"5;ext=1\r\nhello\r\n3\r\n an\r\n0\r\n\r\n", &mut out, 100);
        assert_eq!(out, b"hello an");
        out.clear();
        decode_chunks(b"5\r\nhello\r\n3\r\n an\r\n0\r\n\r\n", &mut out, 4);
        assert_eq!(out, b"hell");
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_closed_not_used() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let e = H1Endpoint::new(&Url::parse(&format!("http://{addr}/w")).unwrap(), &[]).unwrap();
        let stale = TcpStream::connect(addr).await.unwrap();
        let fresh = TcpStream::connect(addr).await.unwrap();
        let fresh_port = fresh.local_addr().unwrap().port();
        let long_ago = Instant::now()
            .checked_sub(IDLE_TIMEOUT + Duration::from_secs(1))
            .unwrap();
        e.idle.lock().push((stale, long_ago));
        e.idle.lock().push((fresh, Instant::now()));
        let taken = e.take_idle().unwrap();
        assert_eq!(taken.local_addr().unwrap().port(), fresh_port);
        assert!(e.take_idle().is_none());
    }

    #[test]
    fn the_head_is_rendered_once_for_plain_http_urls_only() {
        let u = |s: &str| Url::parse(s).unwrap();
        let e =
            H1Endpoint::new(&u("http://127.0.0.1:9201/api/v1/write?x=1"), &[("A", b"b")]).unwrap();
        assert_eq!(e.connect, "127.0.0.1:9201");
        assert_eq!(
            e.head,
            b"POST /api/v1/write?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9201\r\nA: b\r\n"
        );
        assert!(H1Endpoint::new(&u("https://127.0.0.1/w"), &[]).is_none());
    }
}
