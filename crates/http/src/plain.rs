//! Where a plain `http://` URL is reached over a connection of the
//! caller's own (the scrape loops' and the remote-write queues' HTTP/1.1
//! paths, for clients that are [`crate::HttpClient::is_plain`]).

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
}
