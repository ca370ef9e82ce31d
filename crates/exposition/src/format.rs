//! Selection of the parser from a scrape response's `Content-Type`.
//!
//! Prometheus 3.x parses the header as a media type (Go's
//! `mime.ParseMediaType`) and refuses anything it cannot parse or does not
//! know; falling back to a configured protocol is the scrape loop's
//! decision, so here every such case is a typed error.

use crate::error::UnsupportedContentType;

/// The exposition formats this crate parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text 0.0.4 / 1.0.0, with the scrape-side (lenient) rules.
    PrometheusText,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Varint-delimited `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

impl Format {
    /// Chooses the parser for a response `Content-Type` header value.
    pub fn from_content_type(content_type: &str) -> Result<Format, UnsupportedContentType> {
        let trimmed = content_type.trim();
        if trimmed.is_empty() {
            return Err(UnsupportedContentType::Empty);
        }
        let malformed = |reason| UnsupportedContentType::Malformed {
            content_type: content_type.to_owned(),
            reason,
        };
        let (media_type, params) = trimmed.split_once(';').unwrap_or((trimmed, ""));
        let media_type = media_type.trim();
        validate_media_type(media_type).map_err(malformed)?;
        validate_parameters(params).map_err(malformed)?;
        // Compared without a lowercased copy: every scrape chooses here.
        let is = |known: &str| media_type.eq_ignore_ascii_case(known);
        if is("text/plain") {
            Ok(Format::PrometheusText)
        } else if is("application/openmetrics-text") {
            Ok(Format::OpenMetrics)
        } else if is("application/vnd.google.protobuf") {
            Ok(Format::Protobuf)
        } else {
            Err(UnsupportedContentType::Unknown(content_type.to_owned()))
        }
    }
}

/// `type "/" subtype`, both non-empty RFC 2045 tokens.
fn validate_media_type(media_type: &str) -> Result<(), &'static str> {
    let (kind, subtype) = media_type.split_once('/').ok_or("no media type")?;
    if !is_token(kind) || !is_token(subtype) {
        return Err("expected token after slash");
    }
    Ok(())
}

/// `; name=value` pairs: names are tokens, values tokens or quoted strings,
/// and no name may repeat (case-insensitively), as in Go's mime package.
/// Repeats are found by looking back over the pairs before (a header has a
/// few), which needs no list of the names seen.
fn validate_parameters(params: &str) -> Result<(), &'static str> {
    let pairs = || params.split(';').map(str::trim).filter(|p| !p.is_empty());
    for (i, param) in pairs().enumerate() {
        let (name, value) = param.split_once('=').ok_or("invalid media parameter")?;
        let name = name.trim();
        let value = value.trim();
        if !is_token(name) {
            return Err("invalid media parameter");
        }
        let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
        if !quoted && !is_token(value) {
            return Err("invalid media parameter");
        }
        let mut earlier = pairs().take(i).filter_map(|p| p.split_once('='));
        if earlier.any(|(n, _)| n.trim().eq_ignore_ascii_case(name)) {
            return Err("duplicate parameter name");
        }
    }
    Ok(())
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_selection() {
        // C01 / C02
        for ct in [
            "text/plain",
            "text/plain; version=0.0.4",
            "text/plain;version=1.0.0;escaping=allow-utf-8",
            "Text/Plain; Version=0.0.4; charset=utf-8",
        ] {
            assert_eq!(
                Format::from_content_type(ct),
                Ok(Format::PrometheusText),
                "{ct}"
            );
        }
        for ct in [
            "application/openmetrics-text",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "application/openmetrics-text;version=0.0.1",
        ] {
            assert_eq!(
                Format::from_content_type(ct),
                Ok(Format::OpenMetrics),
                "{ct}"
            );
        }
        // C03
        assert_eq!(
            Format::from_content_type("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"),
            Ok(Format::Protobuf)
        );
        // C04
        assert_eq!(
            Format::from_content_type(""),
            Err(UnsupportedContentType::Empty)
        );
        // C05
        for ct in [
            "invalid/",
            "invalid/invalid/invalid",
            "/",
            "text/plain; charset=utf-8; charset=utf-8",
            "text/plain; Charset=utf-8; version=0.0.4; CHARSET=utf-8",
            "text/plain; version=0.0.4; charset",
        ] {
            assert!(
                matches!(
                    Format::from_content_type(ct),
                    Err(UnsupportedContentType::Malformed { .. })
                ),
                "{ct}"
            );
        }
        // C06
        assert!(matches!(
            Format::from_content_type("text/html"),
            Err(UnsupportedContentType::Unknown(_))
        ));
    }
}
