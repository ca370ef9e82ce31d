//! A plain HTTP/1.1 GET for scrape targets that need nothing else.
//!
//! Most targets are `http://` exporters without proxy or credentials. For
//! them the general client (reqwest over hyper) costs memory that does not
//! scale with the data: hyper keeps each kept-alive connection's read
//! buffer, grown to the largest body it read (up to ~400 KiB), for as long
//! as the connection lives — at 200 targets of 250 KiB pages about 28 MiB,
//! more than the scrape caches of all their series. Here each scrape loop
//! owns one kept-alive [`TcpStream`], the response head is parsed from a
//! small pooled buffer, and the body is read straight into the scrape's
//! pooled body buffer: an idle target holds a socket and nothing else.
//!
//! Handled: `Content-Length`, `Transfer-Encoding: chunked` and
//! close-delimited bodies, keep-alive and `Connection: close`, a kept
//! connection the server closed meanwhile (the request is retried once on
//! a new connection, as for any idempotent request). A redirect is left to
//! the general client ([`Outcome::Redirect`]), which follows it as
//! configured. Everything reads under the caller's timeout and byte cap.

use std::io::Write;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tributary_http::{find_head_end, parse_chunk_size, PlainHttpUrl};

use super::{CappedWriter, FetchError, FetchedBody, ScrapeRequest};
use crate::buffers::BodyBuf;
use crate::ResponseHeaders;

/// Longest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// Headers parsed at most.
const MAX_HEADERS: usize = 64;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 << 10;
/// Most room made in a body buffer ahead of the bytes that fill it.
const MAX_RESERVE: usize = 4 << 20;

/// Where and what to ask: parsed once per scrape loop.
#[derive(Debug, Clone)]
pub struct H1Target {
    /// `host:port` to connect to.
    connect: String,
    /// The request head, ready to send.
    request: Vec<u8>,
}

impl H1Target {
    /// The target for `req`, if its URL is plain `http://` with a host.
    pub fn new(req: &ScrapeRequest) -> Option<Self> {
        let url = url::Url::parse(&req.url).ok()?;
        let PlainHttpUrl {
            connect,
            host: host_header,
            target: path,
        } = PlainHttpUrl::parse(&url)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {}\r\nAccept: {}\r\nAccept-Encoding: {}\r\nX-Prometheus-Scrape-Timeout-Seconds: {}\r\n\r\n",
            req.user_agent,
            req.accept,
            req.accept_encoding,
            super::format_seconds(req.timeout),
        );
        Some(H1Target {
            connect,
            request: request.into_bytes(),
        })
    }
}

/// What a scrape over HTTP/1.1 came to.
pub enum Outcome {
    Done(FetchedBody),
    /// A redirect: to be followed by the general client.
    Redirect,
}

/// What one fetch reads into: the response head's bytes, its headers,
/// the body, and a gzip'd body's compressed bytes until it is inflated.
pub struct Buffers<'a> {
    pub head: &'a mut Vec<u8>,
    pub headers: &'a mut ResponseHeaders,
    pub body: &'a mut BodyBuf,
    pub compressed: &'a mut Vec<u8>,
}

/// Fetches `target` into `bufs`, reusing and keeping the loop's
/// connection in `conn`.
pub async fn fetch(
    target: &H1Target,
    req: &ScrapeRequest,
    conn: &mut Option<TcpStream>,
    bufs: Buffers<'_>,
) -> Result<Outcome, FetchError> {
    if let Some(mut stream) = conn.take() {
        bufs.head.clear();
        if let Ok(Some(end)) = send_and_read_head(&mut stream, target, bufs.head).await {
            return read_response(stream, end, req, conn, bufs).await;
        }
        // The server closed the kept connection (or it broke) before
        // answering: ask again on a new one.
    }
    let mut stream = TcpStream::connect(&target.connect)
        .await
        .map_err(|e| FetchError::Http(format!("connecting to {}: {e}", target.connect)))?;
    // As reqwest: no Nagle delay on the request.
    let _ = stream.set_nodelay(true);
    bufs.head.clear();
    let end = head_end(send_and_read_head(&mut stream, target, bufs.head).await)?;
    read_response(stream, end, req, conn, bufs).await
}

/// The end of a response head that was read, or why there is none.
fn head_end(read: std::io::Result<Option<usize>>) -> Result<usize, FetchError> {
    match read {
        Ok(Some(end)) => Ok(end),
        Ok(None) => Err(FetchError::Http(
            "connection closed before a response".into(),
        )),
        Err(e) => Err(FetchError::Http(e.to_string())),
    }
}

/// Sends the request and reads until the end of the response head.
/// `Ok(None)`: the connection closed before any byte of a response.
async fn send_and_read_head(
    stream: &mut TcpStream,
    target: &H1Target,
    head: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    stream.write_all(&target.request).await?;
    read_head(stream, head).await
}

/// Reads until `head` holds a complete response head; its end.
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(end) = find_head_end(head) {
            return Ok(Some(end));
        }
        if head.len() >= MAX_HEAD {
            return Err(std::io::Error::other("response head too large"));
        }
        head.reserve(READ_CHUNK.min(MAX_HEAD));
        let n = stream.read_buf(head).await?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::other(
                "connection closed in the response head",
            ));
        }
    }
}

/// How the body is delimited.
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// What the head says.
struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
    gzip: bool,
}

/// Parses a response head, its headers into `headers`.
fn parse_head(bytes: &[u8], headers: &mut ResponseHeaders) -> Result<Head, FetchError> {
    headers.clear();
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    match resp.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(FetchError::Http("incomplete response head".into()))
        }
        Err(e) => return Err(FetchError::Http(format!("invalid response: {e}"))),
    }
    let status = resp.code.unwrap_or(0);
    let mut h = Head {
        status,
        framing: Framing::UntilClose,
        keep_alive: resp.version == Some(1),
        gzip: false,
    };
    let mut chunked = false;
    let mut length = None;
    for hd in resp.headers.iter() {
        let value = String::from_utf8_lossy(hd.value);
        let is = |name: &str| hd.name.eq_ignore_ascii_case(name);
        if is("content-length") {
            let n = value
                .trim()
                .parse::<u64>()
                .map_err(|_| FetchError::Http(format!("invalid Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(FetchError::Http(
                    "conflicting Content-Length headers".into(),
                ));
            }
            length = Some(n);
        } else if is("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if is("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    h.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    h.keep_alive = true;
                }
            }
        } else if is("content-encoding") {
            h.gzip = value.trim().eq_ignore_ascii_case("gzip");
        }
        headers.push(hd.name, hd.value);
    }
    // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
    h.framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    };
    if matches!(h.framing, Framing::UntilClose) {
        h.keep_alive = false;
    }
    Ok(h)
}

fn status_text(code: u16) -> String {
    match http::StatusCode::from_u16(code) {
        Ok(s) => s.to_string(),
        Err(_) => code.to_string(),
    }
}

async fn read_response(
    mut stream: TcpStream,
    mut end: usize,
    req: &ScrapeRequest,
    conn: &mut Option<TcpStream>,
    bufs: Buffers<'_>,
) -> Result<Outcome, FetchError> {
    let Buffers {
        head: buf,
        headers,
        body,
        compressed,
    } = bufs;
    let mut skipped = 0;
    let head = loop {
        let head = parse_head(buf.get(..end).unwrap_or_default(), headers)?;
        // An informational response (103 Early Hints, …) precedes the real
        // one on the same connection.
        if !(100..200).contains(&head.status) || head.status == 101 || skipped == 8 {
            break head;
        }
        skipped += 1;
        buf.drain(..end);
        end = head_end(read_head(&mut stream, buf).await)?;
    };
    if matches!(head.status, 301 | 302 | 303 | 307 | 308) {
        return Ok(Outcome::Redirect);
    }
    if head.status != 200 {
        return Err(FetchError::Status(status_text(head.status)));
    }
    let cap = req.body_limit;
    let chunked = matches!(head.framing, Framing::Chunked);
    let (mut writer, pre_start) = if head.gzip && !chunked {
        // The compressed bytes that came with the head stay where they were
        // read, behind it: this buffer becomes the compressed body, is read
        // on into and inflated from `end`. A gzip'd page is then never
        // copied before it is inflated.
        std::mem::swap(buf, compressed);
        buf.clear();
        (CappedWriter::after(compressed, end, cap), 0)
    } else if head.gzip {
        (CappedWriter::new(compressed, cap), end)
    } else {
        (CappedWriter::new(body.appender(), cap), end)
    };
    let wire_bytes = match head.framing {
        Framing::Length(n) => {
            let pre = buf.get(pre_start..).unwrap_or_default();
            read_length(&mut stream, pre, n, &mut writer).await?
        }
        Framing::UntilClose => {
            let pre = buf.get(pre_start..).unwrap_or_default();
            read_to_close(&mut stream, pre, &mut writer).await?
        }
        Framing::Chunked => read_chunked(&mut stream, buf, pre_start, &mut writer).await?,
    };
    let base = writer.base;
    if head.keep_alive {
        *conn = Some(stream);
    }
    if head.gzip {
        let gz = compressed.get(base..).unwrap_or_default();
        super::gzip::inflate_gzip(gz, body, cap)?;
    }
    Ok(Outcome::Done(FetchedBody {
        wire_bytes,
        status: head.status,
    }))
}

fn write_capped(w: &mut CappedWriter<'_>, data: &[u8]) -> Result<(), FetchError> {
    w.write_all(data).map_err(|_| FetchError::BodySizeLimit)
}

fn read_error(e: std::io::Error) -> FetchError {
    FetchError::Http(format!("reading the response body: {e}"))
}

/// Reads more into `buf`; an error at the end of the stream.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), FetchError> {
    buf.reserve(READ_CHUNK);
    match stream.read_buf(buf).await {
        Ok(0) => Err(FetchError::Http(
            "unexpected EOF in the response body".into(),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(read_error(e)),
    }
}

/// Reads a body of `n` bytes into `w`, which may hold its first bytes
/// already; `pre` are more of them, read with the head.
async fn read_length(
    stream: &mut TcpStream,
    pre: &[u8],
    n: u64,
    w: &mut CappedWriter<'_>,
) -> Result<u64, FetchError> {
    if n >= w.cap {
        return Err(FetchError::BodySizeLimit);
    }
    let room = usize::try_from(n.saturating_sub(w.len())).unwrap_or(usize::MAX);
    write_capped(w, pre.get(..room).unwrap_or(pre))?;
    // Bytes past the body (a server that sent more than it announced) are
    // not the body's.
    w.buf
        .truncate(usize::try_from(n).map_or(usize::MAX, |n| w.base.saturating_add(n)));
    let mut left = n.saturating_sub(w.len());
    // The rest goes straight into the body buffer, which grows as it is
    // read: a length announced under a large cap is not trusted with an
    // allocation of its size before the bytes come.
    while left > 0 {
        w.buf
            .reserve(usize::try_from(left).unwrap_or(usize::MAX).min(MAX_RESERVE));
        let before = w.buf.len();
        let got = (&mut *stream)
            .take(left)
            .read_buf(&mut *w.buf)
            .await
            .map_err(read_error)?;
        if got == 0 {
            return Err(FetchError::Http(
                "unexpected EOF in the response body".into(),
            ));
        }
        left -= (w.buf.len() - before) as u64;
    }
    Ok(n)
}

/// Reads a body delimited by the end of the connection into `w`, which
/// may hold its first bytes already; `pre` are more of them, read with
/// the head.
async fn read_to_close(
    stream: &mut TcpStream,
    pre: &[u8],
    w: &mut CappedWriter<'_>,
) -> Result<u64, FetchError> {
    write_capped(w, pre)?;
    loop {
        if w.len() >= w.cap {
            w.exceeded = true;
            return Err(FetchError::BodySizeLimit);
        }
        // Straight into the body, a bounded read at a time: at most one
        // read's worth past the cap before it is refused.
        let want = (w.cap - w.len()).min(READ_CHUNK as u64);
        w.buf.reserve(want as usize);
        let n = (&mut *stream)
            .take(want)
            .read_buf(&mut *w.buf)
            .await
            .map_err(read_error)?;
        if n == 0 {
            return Ok(w.len());
        }
    }
}

/// Decodes a chunked body: `size[;ext]\r\n data \r\n` … `0\r\n [trailers] \r\n`.
async fn read_chunked(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut pos: usize,
    w: &mut CappedWriter<'_>,
) -> Result<u64, FetchError> {
    let mut wire = 0u64;
    loop {
        // The size line.
        let line_end = loop {
            if let Some(i) = memchr::memmem::find(buf.get(pos..).unwrap_or_default(), b"\r\n") {
                break pos + i;
            }
            if buf.len() - pos > 1024 {
                return Err(FetchError::Http("invalid chunk size line".into()));
            }
            fill(stream, buf).await?;
        };
        let size = parse_chunk_size(buf.get(pos..line_end).unwrap_or_default())
            .ok_or_else(|| FetchError::Http("invalid chunk size".into()))?;
        pos = line_end + 2;
        if size == 0 {
            return skip_trailers(stream, buf, pos).await.map(|()| wire);
        }
        let mut left = size;
        while left > 0 {
            if pos >= buf.len() {
                buf.clear();
                pos = 0;
                fill(stream, buf).await?;
            }
            let take = ((buf.len() - pos) as u64).min(left) as usize;
            write_capped(w, buf.get(pos..pos + take).unwrap_or_default())?;
            pos += take;
            left -= take as u64;
            wire += take as u64;
        }
        // The CRLF after the data.
        while buf.len() < pos + 2 {
            fill(stream, buf).await?;
        }
        if buf.get(pos..pos + 2) != Some(b"\r\n") {
            return Err(FetchError::Http("invalid chunk terminator".into()));
        }
        pos += 2;
        // Keep the staging buffer small: drop what was consumed.
        if pos > READ_CHUNK {
            buf.drain(..pos);
            pos = 0;
        }
    }
}

/// Reads past the trailer section, which ends with an empty line.
async fn skip_trailers(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut pos: usize,
) -> Result<(), FetchError> {
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        if rest.starts_with(b"\r\n") {
            return Ok(());
        }
        match memchr::memmem::find(rest, b"\r\n") {
            Some(i) => pos += i + 2,
            None => {
                if rest.len() > MAX_HEAD {
                    return Err(FetchError::Http("trailers too large".into()));
                }
                fill(stream, buf).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn head_framing_and_connection() {
        let mut headers = ResponseHeaders::default();
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
            &mut headers,
        )
        .unwrap();
        assert!(matches!(h.framing, Framing::Length(5)) && h.keep_alive);
        assert_eq!(headers.content_type(), "text/plain");
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", &mut headers).unwrap();
        assert!(matches!(h.framing, Framing::Chunked) && !h.keep_alive);
        let h = parse_head(
            b"HTTP/1.0 200 OK\r\nContent-Encoding: GZIP\r\n\r\n",
            &mut headers,
        )
        .unwrap();
        assert!(matches!(h.framing, Framing::UntilClose) && !h.keep_alive && h.gzip);
        assert!(parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            &mut headers
        )
        .is_err());
        assert!(parse_head(b"garbage\r\n\r\n", &mut headers).is_err());
    }

    #[test]
    fn targets_are_plain_http_only() {
        let req = |url: &str| ScrapeRequest {
            url: url.into(),
            accept: "text/plain".into(),
            accept_encoding: "gzip",
            user_agent: "ua".into(),
            timeout: std::time::Duration::from_secs(10),
            body_limit: 1 << 20,
        };
        let t = H1Target::new(&req("http://127.0.0.1:9100/metrics?a=b")).unwrap();
        assert_eq!(t.connect, "127.0.0.1:9100");
        let head = String::from_utf8(t.request).unwrap();
        assert!(
            head.starts_with("GET /metrics?a=b HTTP/1.1\r\nHost: 127.0.0.1:9100\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n"));
        let t = H1Target::new(&req("http://[::1]/m")).unwrap();
        assert_eq!(t.connect, "[::1]:80");
        assert!(H1Target::new(&req("https://127.0.0.1:9100/metrics")).is_none());
        assert!(H1Target::new(&req("http://user:pw@127.0.0.1/m")).is_none());
    }
}
