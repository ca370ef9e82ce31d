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
        let mut parts = trimmed.split(';');
        let media_type = parts.next().unwrap_or_default().trim();
        validate_media_type(media_type).map_err(malformed)?;
        validate_parameters(parts).map_err(malformed)?;
        match media_type.to_ascii_lowercase().as_str() {
            "text/plain" => Ok(Format::PrometheusText),
            "application/openmetrics-text" => Ok(Format::OpenMetrics),
            "application/vnd.google.protobuf" => Ok(Format::Protobuf),
            _ => Err(UnsupportedContentType::Unknown(content_type.to_owned())),
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
fn validate_parameters<'a>(params: impl Iterator<Item = &'a str>) -> Result<(), &'static str> {
    let mut seen: Vec<String> = Vec::new();
    for param in params {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
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
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err("duplicate parameter name");
        }
        seen.push(lower);
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
