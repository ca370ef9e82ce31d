//! The behaviour table of conformance-notes §1a–§1e, case by case.
//! X = client-library table (only where the scrape parser agrees, or where
//! `check_metrics` is the promtool equivalent), P = scrape parser,
//! O = OpenMetrics, C = content type.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{labels, om, prom};
use tributary_exposition::{check_metrics, Entry, Format, Parser, ParserOptions, NORMAL_NAN_BITS};
use tributary_model::{LabelsBuilder, MetricType};

fn prom_valid(id: &str, body: &str) -> Vec<common::Sample> {
    match prom(body) {
        Ok((s, _)) => s,
        Err(e) => panic!("{id}: expected valid, got {e}"),
    }
}

fn prom_invalid(id: &str, body: &str) {
    assert!(
        prom(body).is_err(),
        "{id}: expected a parse error for {body:?}"
    );
}

fn om_valid(id: &str, body: &str) -> Vec<common::Sample> {
    match om(body) {
        Ok((s, _)) => s,
        Err(e) => panic!("{id}: expected valid, got {e}"),
    }
}

fn om_invalid(id: &str, body: &str) {
    assert!(
        om(body).is_err(),
        "{id}: expected a parse error for {body:?}"
    );
}

fn checker_rejects_text(id: &str, body: &str) {
    let report = check_metrics(body.as_bytes(), Some(Format::PrometheusText));
    assert!(!report.is_valid(), "{id}: checker must reject {body:?}");
}

#[test]
fn x_valid_inputs() {
    assert!(prom_valid("X01", "\n\n\n").is_empty());
    let s = prom_valid("X02", "minimal_metric 1.234\n");
    assert_eq!((s[0].value, s[0].timestamp), (1.234, None));
    let s = prom_valid("X03", "another_metric -3e3 103948\n");
    assert_eq!((s[0].value, s[0].timestamp), (-3000.0, Some(103_948)));
    assert_eq!(
        prom_valid("X04", "no_labels{} 3\n")[0].labels,
        labels(&[("__name__", "no_labels")])
    );
    let (_, meta) = prom("# Even that:\n#\n").expect("X05");
    assert_eq!(meta, vec!["COMMENT # Even that:", "COMMENT #"]);
    let (_, meta) = prom("# HELP name two-line\\n doc  str\\\\ing\n").expect("X07");
    assert_eq!(meta, vec!["HELP name two-line\n doc  str\\ing"]);
    let (_, meta) = prom("# HELP name doc str\"ing 2\n").expect("X08");
    assert_eq!(meta, vec!["HELP name doc str\"ing 2"]);
    let (_, meta) = prom(" # HELP  name2  \tdoc\n  #    TYPE    name2 gauge\n").expect("X09");
    // The scrape parser drops exactly one separator byte before HELP text
    // (the client library trims all of them).
    assert_eq!(meta, vec!["HELP name2  \tdoc", "TYPE name2 gauge"]);
    let s = prom_valid("X10", "name{basename=\"base\\\"v\\\\al\\nue\"} 1\n");
    assert_eq!(s[0].labels.get("basename"), Some("base\"v\\al\nue"));
    let s = prom_valid(
        "X11",
        "name {labelname=\"val2\",basename=\"basevalue2\"} 0.23 1234567890\n",
    );
    assert_eq!((s[0].value, s[0].timestamp), (0.23, Some(1_234_567_890)));
    let s = prom_valid(
        "X12",
        "name2{labelname=\"val2\"\t,basename   =   \"basevalue2\"\t\t} +Inf 54321\n",
    );
    assert_eq!((s[0].value, s[0].timestamp), (f64::INFINITY, Some(54321)));
    assert_eq!(
        prom_valid("X13", "name2{ labelname = \"val1\" , }-Inf\n")[0].value,
        f64::NEG_INFINITY
    );
    assert!(prom_valid("X14", "# TYPE c counter\nc NaN\n")[0]
        .value
        .is_nan());
    let s = prom_valid("X16", "my_summary_sum{n1=\"val2\"} 08 15\n");
    assert_eq!((s[0].value, s[0].timestamp), (8.0, Some(15)));
    let s = prom_valid(
        "X17",
        "# TYPE s summary\ns{quantile=\".3\"} 1\ns{quantile=\"-12.34\"} 1\n",
    );
    assert_eq!(s[0].labels.get("quantile"), Some("0.3"));
    assert_eq!(s[1].labels.get("quantile"), Some("-12.34"));
    prom_valid("X18", "  my_summary{n1=\"val3\", quantile=\"0.2\"} NaN\n");
    let s = prom_valid(
        "X20",
        "# TYPE h histogram\nh_bucket{le=\"100\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.7560473e+06\nh_count 2693\n",
    );
    assert_eq!(s[0].labels.get("le"), Some("100.0"));
    assert_eq!(s[1].labels.get("le"), Some("+Inf"));
    assert_eq!(s[2].value, 1_756_047.3);
    let s = prom_valid(
        "X23",
        "# HELP \"my.noncompliant.metric\" help text\n# TYPE \"my.noncompliant.metric\" counter\n{\"my.noncompliant.metric\",\"label.name\"=\"value\"} 1\n",
    );
    assert_eq!(
        s[0].labels,
        labels(&[
            ("__name__", "my.noncompliant.metric"),
            ("label.name", "value")
        ])
    );
    let s = prom_valid(
        "X24",
        "{labelname=\"value\", \"my.noncompliant.metric\"} 1\n",
    );
    assert_eq!(s[0].labels.metric_name(), Some("my.noncompliant.metric"));
    let s = prom_valid(
        "X25",
        "{\"my\\\"noncompliant\\nmetric\\\\\", \"la\\\"bel\"=\"v\"} 1\n",
    );
    assert_eq!(
        s[0].labels.metric_name(),
        Some("my\"noncompliant\nmetric\\")
    );
    assert_eq!(s[0].labels.get("la\"bel"), Some("v"));
    let s = prom_valid("X26", "m{name=\"Björn\",cjk=\"佖佥\"} 1\n");
    assert_eq!(s[0].labels.get("name"), Some("Björn"));
}

#[test]
fn x_error_inputs() {
    // Rejected by the scrape parser itself.
    for (id, body) in [
        ("X32", "metric{label=\"\n\"} 3.14\n"),
        ("X33", "metric{@=\"bla\"} 3.14\n"),
        ("X35", "metric{label+=\"bla\"} 3.14\n"),
        ("X36", "metric{label=bla} 3.14\n"),
        ("X38", "metric{label=\"bla\"+} 3.14\n"),
        ("X39", "metric{label=\"bla\"} 3.14 2.72\n"),
        ("X40", "metric{label=\"bla\"} 3.14 2 3\n"),
        ("X41", "metric{label=\"bla\"} blubb\n"),
        ("X45", "# TYPE metric bla\n"),
        ("X46", "# TYPE met-ric\n"),
        ("X47", "@invalidmetric{label=\"bla\"} 3.14 2\n"),
        ("X48", "{label=\"bla\"} 3.14 2\n"),
        ("X50", "metric{l=\"\u{FFFD}\"} 3.14\n"),
        ("X53", "{\"one.name\",\"another.name\"} 3.14\n"),
        ("X55", "{\"metric.name\".label=\"bla\"} 3.14\n"),
        ("X60", "{} 3.14\n"),
    ] {
        if id == "X50" {
            let body = b"metric{l=\"\xbd\"} 3.14\n";
            assert!(
                Parser::new(Format::PrometheusText, body).next().is_err(),
                "X50"
            );
            continue;
        }
        prom_invalid(id, body);
    }
    for v in [
        "1_2", "0x1p-3", "0x1P-3", "0B1", "0O1", "0X1", "0x1", "0b1", "0o1",
    ] {
        prom_invalid("X51", &format!("metric {v}\n"));
    }
    // Duplicate and reserved label names fail when labels are read.
    for (id, body) in [
        ("X34", "metric{__name__=\"bla\"} 3.14\n"),
        ("X52", "metric{label=\"bla\",label=\"bla\"} 3.14\n"),
    ] {
        let mut p = Parser::new(Format::PrometheusText, body.as_bytes());
        assert_eq!(p.next(), Ok(Some(Entry::Series)), "{id}");
        assert!(p.labels(&mut LabelsBuilder::new()).is_err(), "{id}");
    }
    // Rules only the client library (promtool) enforces: the checker does.
    for (id, body) in [
        ("X30", "metric 1\nblubber 42"),
        (
            "X37",
            "# TYPE metric summary\nmetric{quantile=\"bla\"} 3.14\n",
        ),
        ("X42", "# HELP metric one\n# HELP metric two\n"),
        ("X43", "# TYPE metric counter\n# TYPE metric untyped\n"),
        ("X44", "metric 4.12\n# TYPE metric counter\n"),
        (
            "X49",
            "# TYPE metric histogram\nmetric_bucket{le=\"bla\"} 3.14\n",
        ),
    ] {
        prom(body).unwrap_or_else(|e| panic!("{id}: scrape parser must accept: {e}"));
        checker_rejects_text(id, body);
    }
}

#[test]
fn p_scrape_parser_table() {
    let (_, meta) = prom("# \tTYPE go_gc_duration_seconds summary\n").expect("P01");
    assert_eq!(meta, vec!["TYPE go_gc_duration_seconds summary"]);
    let s = prom_valid(
        "P02",
        "# TYPE s summary\ns{quantile=\"0\"} 1\ns{quantile=\"0.25\"} 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 1\ntestmetric{le=\"10\"} 1\n",
    );
    let got: Vec<_> = s
        .iter()
        .map(|x| {
            x.labels
                .get("quantile")
                .or(x.labels.get("le"))
                .unwrap_or("")
        })
        .collect();
    assert_eq!(got, vec!["0.0", "0.25", "1.0", "2.0", "+Inf", "10"]);
    assert_eq!(
        s[0].key, b"s{quantile=\"0\"}",
        "the cache key stays as written"
    );
    prom_valid("P03", "s{quantile=\"0.25\",} 1\n");
    for body in [
        "n{ quantile=\"0.9\", a=\"b\"} 1\n",
        "n{ quantile=\"1.0\", a=\"b\" } 1\n",
        "n { quantile= \"1.0\", a= \"b\", } 1\n",
        "n { quantile = \"1.0\", a = \"b\" } 1\n",
    ] {
        prom_valid("P04", body);
    }
    prom_valid("P05", "n{ quantile = \"2.0\" a = \"b\" } 1\n");
    let (_, meta) =
        prom("# Hrandom comment starting with prefix of HELP\n#\n# comment with \\n and \\\n")
            .expect("P06");
    assert_eq!(meta[2], "COMMENT # comment with \\n and \\");
    let (_, meta) = prom("# HELP nohelp1\n# HELP nohelp2 \n").expect("P07");
    assert_eq!(meta, vec!["HELP nohelp1 ", "HELP nohelp2 "]);
    prom_valid("P08", "# TYPE x counter\n# HELP x help\nx 1\n");
    let s = prom_valid(
        "P09",
        "some:aggregate:rate5m{a_b=\"c\"}\t1\ngo_goroutines 33  \t123123\n",
    );
    assert_eq!(s[1].timestamp, Some(123_123));
    prom_valid("P10", "_metric_starting_with_underscore 1\ntestmetric{_label_starting_with_underscore=\"foo\"} 1\n");
    assert_eq!(
        prom_valid("P11", "testmetric{label=\"\\\"bar\\\"\"} 1\n")[0]
            .labels
            .get("label"),
        Some("\"bar\"")
    );
    let s = prom_valid("P12", "null_byte_metric{a=\"abc\0\"} 1");
    assert_eq!(s[0].labels.get("a"), Some("abc\0"));
    prom_valid(
        "P13",
        "# HELP metric foo\0bar\na{b=\"\0ss\"} 1\na{b=\"\0\"} 1\n",
    );
    for body in [
        "a{b=\0\"ssss\"} 1\n",
        "a{b\0=\"hiih\"} 1\n",
        "a\0{b=\"x\"} 1\n",
        "a 0 1\0\n",
        "a{b=\"\0",
    ] {
        prom_invalid("P13", body);
    }
    let s = prom_valid(
        "P15",
        "{ \"go.gc_duration_seconds\", quantile = \"0\"} 4.9351e-05\n",
    );
    assert_eq!(s[0].labels.metric_name(), Some("go.gc_duration_seconds"));
    let s = prom_valid(
        "P15",
        "{\"spaces and € \\\"quotes\\\" {braces}\\n\", \"©™\\n\"=\"x\"} 1\n",
    );
    assert_eq!(
        s[0].labels.metric_name(),
        Some("spaces and € \"quotes\" {braces}\n")
    );
    assert_eq!(s[0].labels.get("©™\n"), Some("x"));
    for body in [
        "a\n",
        "a{b='c'} 1\n",
        "a{b=\n",
        "{\"a\", \"b = \"c\"}\n",
        "{\"a\",b\\nc=\"d\"} 1\n",
        "a true\n",
        "something_weird{problem=\"",
        "empty_label_name{=\"\"} 0\n",
        "{A}0\n",
        "foo 1_2\n",
        "foo 0x1p-3\n",
        "foo 0x1P-3\n",
        "foo 0 1_2\n",
        "{a=\"ok\"} 1\n",
        "# TYPE #\n",
        "# HELP #\n",
    ] {
        prom_invalid("P16", body);
    }
    assert!(
        Parser::new(Format::PrometheusText, b"a{\xff=\"foo\"} 1\n")
            .next()
            .is_err(),
        "P16 bad byte"
    );
    assert!(
        Parser::new(Format::PrometheusText, b"a{b=\"\xff\"} 1\n")
            .next()
            .is_err(),
        "P16 bad UTF-8"
    );
    for v in ["nan", "NaN", "+Inf", "-inf", "Infinity"] {
        let s = prom_valid("P17", &format!("a {v}\n"));
        if s[0].value.is_nan() {
            assert_eq!(s[0].value.to_bits(), NORMAL_NAN_BITS, "P17 canonical NaN");
        }
    }
}

#[test]
fn o_openmetrics_table() {
    assert!(om_valid("O01", "# EOF\n").is_empty());
    assert!(om_valid("O01", "# EOF").is_empty());
    for body in [
        "",
        "metric 1",
        "metric 1\n",
        "a_bucket{le=\"+Inf\"} 1 # {id=\"x\"} 1\n",
    ] {
        let err = om(body).expect_err("O02");
        assert!(err.message.contains("# EOF"), "O02: {err}");
    }
    for body in [
        "\n",
        "\n\n# EOF\n",
        " a 1\n# EOF\n",
        " # EOF\n",
        "9\n# EOF\n",
        "#  TYPE c counter\n# EOF\n",
        "#\tTYPE c counter\n# EOF\n",
        "# TYPE c  counter\n# EOF\n",
        "# TYPE c counter \n# EOF\n",
    ] {
        om_invalid("O03", body);
    }
    for body in ["# EOF\na 1\n", "# EOF\n\n", "# EOFa 1\n"] {
        om_invalid("O04", body);
    }
    om_invalid("O05", "# TYPE u untyped\n# EOF\n");
    for body in [
        "# TYPE \n# EOF\n",
        "# HELP \n# EOF\n",
        "# UNIT \n# EOF\n",
        "# TYPE m\n# EOF\n",
        "# HELP m\n# EOF\n",
        "# UNIT m\n# EOF\n",
    ] {
        om_invalid("O06", body);
    }
    let (_, meta) = om("# HELP nohelp1 \n# UNIT nounit \n# EOF\n").expect("O06");
    assert_eq!(meta, vec!["HELP nohelp1 ", "UNIT nounit ", "EOF"]);
    for body in [
        "# UNIT metric suffix\n# EOF\n",
        "# UNIT metricsuffix suffix\n# EOF\n",
        "# UNIT m suffix\n# EOF\n",
    ] {
        om_invalid("O07", body);
    }
    for body in [
        "a\t1\n# EOF\n",
        "a 1\t2\n# EOF\n",
        "a 1 2 \n# EOF\n",
        "a 1 2 #\n# EOF\n",
        "a 1 1 1\n# EOF\n",
        "a 1 1z\n# EOF\n",
    ] {
        om_invalid("O08", body);
    }
    assert_eq!(
        om_valid("O09", "go_goroutines 33 123.123\n# EOF\n")[0].timestamp,
        Some(123_123)
    );
    for ts in ["NaN", "-Inf", "Inf"] {
        om_invalid("O09", &format!("a 1 {ts}\n# EOF\n"));
        om_invalid(
            "O09",
            &format!("# TYPE a counter\na_total 1 # {{a=\"b\"}} 1 {ts}\n# EOF\n"),
        );
    }
    let (_, meta) = om("# HELP m escape \\ \\n \\\\ \\\" \\x chars\n# EOF\n").expect("O10");
    assert_eq!(meta[0], "HELP m escape \\ \n \\ \" \\x chars");
    for body in [
        "a{,b=\"c\"} 1\n# EOF\n",
        "a{b=\"c\"d=\"e\"} 1\n# EOF\n",
        "a{b=\"c\",,d=\"e\"} 1\n# EOF\n",
    ] {
        om_invalid("O11", body);
    }
}

#[test]
fn o12_exemplars() {
    let body = "# TYPE hhh histogram\nhhh_bucket{le=\"+Inf\"} 1 # {id=\"histogram-bucket-test\"} 4\nhhh_bucket{le=\"+Inf\"} 1 # {id=\"x\",xx=\"yy\"} 4 123.123\n# EOF\n";
    let mut p = Parser::new(Format::OpenMetrics, body.as_bytes());
    assert!(matches!(p.next(), Ok(Some(Entry::Type { .. }))));
    assert_eq!(p.next(), Ok(Some(Entry::Series)));
    let ex = p.exemplar().expect("exemplar");
    assert_eq!(
        (ex.labels.get("id"), ex.value, ex.timestamp),
        (Some("histogram-bucket-test"), 4.0, None)
    );
    assert_eq!(p.next(), Ok(Some(Entry::Series)));
    let ex = p.exemplar().expect("exemplar");
    assert_eq!((ex.labels.len(), ex.timestamp), (2, Some(123_123)));
    assert_eq!(
        p.series().0,
        b"hhh_bucket{le=\"+Inf\"}",
        "exemplar is not part of the key"
    );
    for ex in [
        "{aa=bb}",
        "{aa=\"bb\"}",
        "{bb}",
        "{bb, a=\"dd\"}",
        "{aa=\"bb\",,cc=\"dd\"}",
        "{aa=\"bb\"} 1_2",
        "{aa=\"bb\"} 0x1p-3",
        "{aa=\"bb\"} true",
        "{aa=\"bb\",cc=}",
    ] {
        om_invalid(
            "O12",
            &format!("# TYPE a counter\na_total 1 # {ex}\n# EOF\n"),
        );
    }
}

#[test]
fn o13_created_timestamps() {
    let body = "# TYPE foo counter\nfoo_total{a=\"1\"} 17 # {id=\"x\"} 1\nfoo_created{a=\"1\"} 1520430000.123\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\nh_created 1000\n# TYPE fizz gauge\nfizz_created 17\n# EOF\n";
    let mut p = Parser::new(Format::OpenMetrics, body.as_bytes());
    let mut created = Vec::new();
    while let Some(e) = p.next().expect("valid") {
        if e == Entry::Series {
            created.push((
                p.metric_name().into_owned(),
                p.created_timestamp(),
                p.metric_type(),
            ));
        }
    }
    assert_eq!(
        created[0],
        (
            "foo_total".into(),
            Some(1_520_430_000_123),
            MetricType::Counter
        )
    );
    assert_eq!(
        created[1],
        ("foo_created".into(), None, MetricType::Counter)
    );
    assert_eq!(
        created[2],
        ("h_bucket".into(), Some(1_000_000), MetricType::Histogram)
    );
    assert_eq!(created[5].1, None);
    // A gauge owns no `_created` series: this is an ordinary, untyped sample.
    assert_eq!(
        created[6],
        ("fizz_created".into(), None, MetricType::Unknown)
    );

    let opts = ParserOptions {
        skip_created_series: true,
        ..ParserOptions::default()
    };
    let mut p = Parser::with_options(Format::OpenMetrics, body.as_bytes(), opts);
    let mut names = Vec::new();
    while let Some(e) = p.next().expect("valid") {
        if e == Entry::Series {
            names.push(p.metric_name().into_owned());
        }
    }
    assert_eq!(
        names,
        vec!["foo_total", "h_bucket", "h_count", "h_sum", "fizz_created"]
    );
}

#[test]
fn o14_and_p02_om_types() {
    let body = "# TYPE ss stateset\nss{ss=\"foo\"} 1\n# TYPE ii info\nii_info{foo=\"bar\"} 1\n# TYPE u unknown\nu 1\n# TYPE foo counter\nfoo_total{le=\"1\"} 1\n# EOF\n";
    let s = om_valid("O14", body);
    assert_eq!(
        s[3].labels.get("le"),
        Some("1"),
        "P02: counters keep le as written"
    );
    assert!(check_metrics(body.as_bytes(), Some(Format::OpenMetrics)).is_valid());
}

#[test]
fn metric_type_follows_family_membership() {
    let body = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nother 1\n";
    let mut p = Parser::new(Format::PrometheusText, body.as_bytes());
    let mut kinds = Vec::new();
    while let Some(e) = p.next().expect("valid") {
        if e == Entry::Series {
            kinds.push(p.metric_type());
        }
    }
    assert_eq!(
        kinds,
        vec![
            MetricType::Histogram,
            MetricType::Histogram,
            MetricType::Unknown
        ]
    );
}

#[test]
fn hostile_inputs_fail_fast_without_panicking() {
    let started = std::time::Instant::now();
    // A 64 MiB line that never becomes a valid sample.
    let mut long = vec![b'a'; 64 << 20];
    long.extend_from_slice(b" x\n");
    assert!(Parser::new(Format::PrometheusText, &long).next().is_err());
    // 100k labels on one series.
    let mut many = String::from("m{");
    for i in 0..100_000 {
        many.push_str(&format!("l{i}=\"v\","));
    }
    many.push_str("} 1\n");
    let err = Parser::new(Format::PrometheusText, many.as_bytes())
        .next()
        .expect_err("too many labels");
    assert!(err.message.contains("too many labels"), "{err}");
    // NUL bytes and invalid UTF-8 in every position.
    for body in [
        &b"\0\0\0"[..],
        b"a{\0} 1\n",
        b"\xff\xfe 1\n",
        b"# HELP a \xff\n",
        b"a{b=\"\xc3\"} 1\n",
        b"{\"\xff\"} 1\n",
    ] {
        let mut p = Parser::new(Format::OpenMetrics, body);
        while let Ok(Some(_)) = p.next() {}
        let mut p = Parser::new(Format::PrometheusText, body);
        while let Ok(Some(_)) = p.next() {}
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn error_display_and_position() {
    let err = prom("ok 1\nbad{x=1} 2\n").expect_err("invalid");
    assert_eq!((err.line, err.column), (2, 7));
    assert_eq!(
        err.to_string(),
        format!("{} at line 2, column 7", err.message)
    );
}

#[test]
fn lint_warnings_do_not_invalidate() {
    let body = "# TYPE requests counter\nrequests 1\n# HELP latency_milliseconds x\n# TYPE latency_milliseconds gauge\nlatency_milliseconds 3\n";
    let report = check_metrics(body.as_bytes(), Some(Format::PrometheusText));
    assert!(report.is_valid(), "{:?}", report.problems);
    let warnings: Vec<_> = report.warnings().map(|w| w.message.clone()).collect();
    assert!(
        warnings.iter().any(|w| w.contains("no help text")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("\"_total\" suffix")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("base unit \"seconds\"")),
        "{warnings:?}"
    );
}

#[test]
fn carriage_returns_are_ordinary_bytes() {
    // Prometheus gives `\r` no special meaning: it ends up in the value
    // token (invalid float) or in comment/HELP text (kept).
    prom_invalid("CR", "a 1\r\n");
    let (_, meta) = prom("# HELP a text\r\n").expect("CR in HELP");
    assert_eq!(meta, vec!["HELP a text\r"]);
    om_invalid("CR", "a 1\r\n# EOF\n");
}

#[test]
fn series_key_is_the_raw_wire_bytes() {
    let body =
        "# TYPE x counter\n  x_total{b=\"2\", a=\"1\"} 7 1000\nx_total 8\n{\"x.y\",a=\"1\"} 9\n";
    let mut p = Parser::new(Format::PrometheusText, body.as_bytes());
    let mut keys = Vec::new();
    while let Some(e) = p.next().expect("valid") {
        if e == Entry::Series {
            let (key, ts, value) = p.series();
            keys.push((key.to_vec(), ts, value));
        }
    }
    assert_eq!(
        keys,
        vec![
            (b"x_total{b=\"2\", a=\"1\"}".to_vec(), Some(1000), 7.0),
            (b"x_total".to_vec(), None, 8.0),
            (b"{\"x.y\",a=\"1\"}".to_vec(), None, 9.0),
        ]
    );
}

#[test]
fn labels_builder_is_cleared_and_reused() {
    let mut b = LabelsBuilder::new();
    b.set("stale", "x");
    let mut p = Parser::new(Format::PrometheusText, b"m{a=\"1\",b=\"\"} 1\n");
    assert_eq!(p.next(), Ok(Some(Entry::Series)));
    p.labels(&mut b).expect("labels");
    // Empty values mean "no label", as in Prometheus.
    assert_eq!(b.labels(), labels(&[("__name__", "m"), ("a", "1")]));
}

#[test]
fn parser_stops_after_an_error() {
    let mut p = Parser::new(Format::PrometheusText, b"bad line here\nok 1\n");
    assert!(p.next().is_err());
    assert_eq!(p.next(), Ok(None));
}

#[test]
fn content_type_selection_table() {
    use tributary_exposition::UnsupportedContentType as U;
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4"),
        Ok(Format::PrometheusText)
    );
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Ok(Format::OpenMetrics)
    );
    assert_eq!(
        Format::from_content_type("application/vnd.google.protobuf"),
        Ok(Format::Protobuf)
    );
    assert_eq!(Format::from_content_type(""), Err(U::Empty));
    assert!(matches!(
        Format::from_content_type("invalid/"),
        Err(U::Malformed { .. })
    ));
    assert!(matches!(
        Format::from_content_type("text/html"),
        Err(U::Unknown(_))
    ));
}

#[test]
fn format_sniffing() {
    use tributary_exposition::sniff_format;
    assert_eq!(sniff_format(b"a 1\n# EOF\n"), Format::OpenMetrics);
    assert_eq!(sniff_format(b"a 1\n# EOFtrailing"), Format::OpenMetrics);
    assert_eq!(sniff_format(b""), Format::OpenMetrics);
    assert_eq!(sniff_format(b"a 1\n"), Format::PrometheusText);
    // A Prometheus text page that happens to end in a `# EOF` comment.
    assert_eq!(
        sniff_format(b"# TYPE x_total counter\nx_total 1\n# EOF\n"),
        Format::PrometheusText
    );
}
