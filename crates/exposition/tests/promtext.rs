//! Upstream Prometheus text data (see the README next to the files).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use tributary_exposition::{check_metrics, Format, Parser};

const ROOT: &str = "/work/shared/conformance/promtext";

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(ROOT).join(rel)).expect("test data file")
}

fn parses(format: Format, body: &[u8]) -> Result<usize, String> {
    let mut parser = Parser::new(format, body);
    let mut builder = tributary_model::LabelsBuilder::new();
    let mut series = 0;
    loop {
        match parser.next() {
            Ok(Some(tributary_exposition::Entry::Series)) => {
                parser.labels(&mut builder).map_err(|e| e.to_string())?;
                series += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ok(series),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[test]
fn prometheus_textparse_testdata_parses() {
    for (file, format, min_series) in [
        (
            "prometheus-textparse-testdata/alltypes.237mfs.prom.txt",
            Format::PrometheusText,
            1000,
        ),
        (
            "prometheus-textparse-testdata/alltypes.237mfs.nometa.prom.txt",
            Format::PrometheusText,
            1000,
        ),
        (
            "prometheus-textparse-testdata/alltypes.5mfs.om.txt",
            Format::OpenMetrics,
            20,
        ),
        (
            "prometheus-textparse-testdata/1histogram.om.txt",
            Format::OpenMetrics,
            10,
        ),
        ("common-expfmt-testdata/text", Format::PrometheusText, 100),
    ] {
        let n = parses(format, &read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(n >= min_series, "{file}: only {n} series");
    }
}

#[test]
fn expfmt_fuzz_corpus_valid_inputs() {
    for name in [
        "from_test_parse_0",
        "from_test_parse_1",
        "from_test_parse_2",
        "from_test_parse_4",
        "minimal",
    ] {
        let body = read(&format!("common-expfmt-fuzz-corpus/{name}"));
        parses(Format::PrometheusText, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = check_metrics(&body, Some(Format::PrometheusText));
        assert!(report.is_valid(), "{name}: {:?}", report.problems);
    }
    // from_test_parse_3 holds `decoy -1 -2`: the client library accepts a
    // negative timestamp, Prometheus's scrape parser (which we follow) does
    // not, because its timestamp token is digits only.
    let err = parses(
        Format::PrometheusText,
        &read("common-expfmt-fuzz-corpus/from_test_parse_3"),
    )
    .expect_err("negative timestamp");
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn expfmt_fuzz_corpus_invalid_inputs_are_rejected_by_the_checker() {
    for i in 0..20 {
        let name = format!("from_test_parse_error_{i}");
        let body = read(&format!("common-expfmt-fuzz-corpus/{name}"));
        let report = check_metrics(&body, Some(Format::PrometheusText));
        assert!(!report.is_valid(), "{name} must be rejected");
    }
}

#[test]
fn scrape_parser_is_lenient_where_prometheus_is() {
    // Missing final newline (0), unknown escape (1), `__name__` only fails
    // at label time (4), non-float quantile/le (7, 19), repeated metadata
    // and TYPE after samples (12, 13, 14) are all accepted while scraping.
    for i in [0, 1, 7, 12, 13, 14, 19] {
        let name = format!("from_test_parse_error_{i}");
        let body = read(&format!("common-expfmt-fuzz-corpus/{name}"));
        let mut parser = Parser::new(Format::PrometheusText, &body);
        while parser
            .next()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .is_some()
        {}
    }
    for i in [2, 3, 5, 6, 8, 9, 10, 11, 15, 16, 17, 18] {
        let name = format!("from_test_parse_error_{i}");
        let body = read(&format!("common-expfmt-fuzz-corpus/{name}"));
        assert!(
            parses(Format::PrometheusText, &body).is_err(),
            "{name} must fail to parse"
        );
    }
}
