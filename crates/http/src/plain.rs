//! What the scrape loops' and the remote-write queues' own HTTP/1.1 paths
//! share (for clients that are [`crate::HttpClient::is_plain`]): where a
//! plain `http://` URL is reached, and the framing of a response.

use reqwest::Url;

/// A plain `http://` URL taken apart for an HTTP/1.1 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainHttpUrl {
    /// `host:port` to connect to (an IPv6 address in brackets).
    pub connect: String,
    /// The `Host` header: the port only when the URL names one.
    pub host: String,
    /// The request target: path and query.
    pub target: String,
}

impl PlainHttpUrl {
    /// `None` unless `url` is `http://` with a host and no credentials.
    pub fn parse(url: &Url) -> Option<PlainHttpUrl> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        // IPv6 addresses come in brackets, as both uses need them.
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        Some(PlainHttpUrl {
            connect: format!("{host}:{port}"),
            host: match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            },
            target: match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            },
        })
    }
}

/// The end of the response head at the start of `buf` (just past its
/// blank line), once `buf` holds all of it.
///
/// Scans for line feeds rather than through `memchr::memmem::find`, which
/// builds a searcher on every call: for a head of a few lines that setup
/// was most of the work, once per scrape and per remote-write response.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf)
        .find(|&i| i >= 3 && buf.get(i - 3..=i) == Some(&b"\r\n\r\n"[..]))
        .map(|i| i + 1)
}

/// The size on a chunk's size line (without its CRLF; extensions after
/// `;` ignored); `None` when it is not a hexadecimal number that fits.
pub fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let text = std::str::from_utf8(digits).unwrap_or_default().trim();
    if text.is_empty() || text.len() > 15 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(s: &str) -> Option<PlainHttpUrl> {
        PlainHttpUrl::parse(&Url::parse(s).unwrap())
    }

    #[test]
    fn plain_urls_and_the_rest() {
        assert_eq!(
            parse("http://127.0.0.1:9100/metrics?a=b"),
            Some(PlainHttpUrl {
                connect: "127.0.0.1:9100".into(),
                host: "127.0.0.1:9100".into(),
                target: "/metrics?a=b".into(),
            })
        );
        let v6 = parse("http://[::1]/m").unwrap();
        assert_eq!(
            (v6.connect.as_str(), v6.host.as_str()),
            ("[::1]:80", "[::1]")
        );
        assert_eq!(parse("http://example.com").unwrap().target, "/");
        assert!(parse("https://127.0.0.1/m").is_none());
        assert!(parse("http://user:pw@127.0.0.1/m").is_none());
        assert!(parse("http://user@127.0.0.1/m").is_none());
    }

    #[test]
    fn response_framing() {
        assert_eq!(
            find_head_end(b"HTTP/1.1 204 No Content\r\n\r\nrest"),
            Some(27)
        );
        assert_eq!(find_head_end(b"HTTP/1.1 204 No Content\r\n"), None);
        assert_eq!(find_head_end(b"\r\n\r\n"), Some(4));
        assert_eq!(find_head_end(b"\n\n\r\n\n\r\n\r\nx\r\n\r\n"), Some(9));
        assert_eq!(find_head_end(b"A: b\n\r\n\r\r\n"), None);
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"FF;name=value"), Some(255));
        assert!(parse_chunk_size(b"").is_none());
        assert!(parse_chunk_size(b"xyz").is_none());
        assert!(parse_chunk_size(b"fffffffffffffffffff").is_none());
    }
}
