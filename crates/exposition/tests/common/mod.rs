//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use tributary_exposition::{Entry, Format, ParseError, Parser};
use tributary_model::{Labels, LabelsBuilder};

/// One parsed series with its labels materialised.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub key: Vec<u8>,
    pub labels: Labels,
    pub value: f64,
    pub timestamp: Option<i64>,
}

/// Parses a whole body, materialising every series' labels.
pub fn parse_all(format: Format, body: &[u8]) -> Result<(Vec<Sample>, Vec<String>), ParseError> {
    let mut parser = Parser::new(format, body);
    let mut samples = Vec::new();
    let mut meta = Vec::new();
    let mut builder = LabelsBuilder::new();
    while let Some(entry) = parser.next()? {
        match entry {
            Entry::Series => {
                parser.labels(&mut builder)?;
                let (key, timestamp, value) = parser.series();
                samples.push(Sample {
                    key: key.to_vec(),
                    labels: builder.labels(),
                    value,
                    timestamp,
                });
            }
            Entry::Help { name, text } => meta.push(format!("HELP {name} {text}")),
            Entry::Type { name, kind } => meta.push(format!("TYPE {name} {}", kind.as_str())),
            Entry::Unit { name, unit } => meta.push(format!("UNIT {name} {unit}")),
            Entry::Comment(c) => meta.push(format!("COMMENT {}", String::from_utf8_lossy(c))),
            Entry::Eof => meta.push("EOF".to_owned()),
            Entry::Histogram => meta.push("HISTOGRAM".to_owned()),
        }
    }
    Ok((samples, meta))
}

pub fn prom(body: &str) -> Result<(Vec<Sample>, Vec<String>), ParseError> {
    parse_all(Format::PrometheusText, body.as_bytes())
}

pub fn om(body: &str) -> Result<(Vec<Sample>, Vec<String>), ParseError> {
    parse_all(Format::OpenMetrics, body.as_bytes())
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}
