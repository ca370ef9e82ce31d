//! The protobuf exposition parser: entries, series naming, native
//! histograms, exemplars, created timestamps, hostile input, and the
//! upstream protobuf test data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::PathBuf;

use proptest::prelude::*;
use tributary_exposition::testing::{delimited, put_varint, Msg};
use tributary_exposition::{check_metrics, Entry, Format, ParseError, Parser, ParserOptions};
use tributary_model::{BucketSpan, HistogramCount, Labels, LabelsBuilder, MetricType, ResetHint};

// ----- a tiny protobuf encoder for building test bodies ---------------------

fn label(name: &str, value: &str) -> Msg {
    Msg::default().str(1, name).str(2, value)
}

fn timestamp(seconds: i64, nanos: i32) -> Msg {
    Msg::default()
        .varint(1, seconds as u64)
        .varint(2, nanos as u64)
}

fn span(offset: i32, length: u32) -> Msg {
    Msg::default()
        .sint(1, i64::from(offset))
        .varint(2, u64::from(length))
}

fn family(name: &str, kind: u64, metrics: Vec<Msg>) -> Msg {
    let mut f = Msg::default()
        .str(1, name)
        .str(2, "help text")
        .varint(3, kind);
    for m in metrics {
        f = f.msg(4, m);
    }
    f
}

fn body(families: &[Msg]) -> Vec<u8> {
    delimited(families)
}

// ----- helpers ---------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Got {
    key: Vec<u8>,
    labels: Labels,
    value: f64,
    timestamp: Option<i64>,
    histogram: bool,
}

fn parse_with(options: ParserOptions, body: &[u8]) -> Result<(Vec<Got>, Vec<String>), ParseError> {
    let mut parser = Parser::with_options(Format::Protobuf, body, options);
    let mut out = Vec::new();
    let mut meta = Vec::new();
    let mut builder = LabelsBuilder::new();
    while let Some(entry) = parser.next()? {
        match entry {
            Entry::Series | Entry::Histogram => {
                parser.labels(&mut builder)?;
                let (key, timestamp, value) = parser.series();
                out.push(Got {
                    key: key.to_vec(),
                    labels: builder.labels(),
                    value,
                    timestamp,
                    histogram: entry == Entry::Histogram,
                });
            }
            Entry::Help { name, text } => meta.push(format!("HELP {name} {text}")),
            Entry::Type { name, kind } => meta.push(format!("TYPE {name} {}", kind.as_str())),
            Entry::Unit { name, unit } => meta.push(format!("UNIT {name} {unit}")),
            other => meta.push(format!("{other:?}")),
        }
    }
    Ok((out, meta))
}

fn parse(body: &[u8]) -> Result<(Vec<Got>, Vec<String>), ParseError> {
    parse_with(ParserOptions::default(), body)
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn names_and_values(got: &[Got]) -> Vec<(String, f64)> {
    got.iter()
        .map(|g| (g.labels.to_string(), g.value))
        .collect()
}

// ----- behaviour ---------------------------------------------------------------

#[test]
fn content_type_selects_protobuf() {
    assert_eq!(
        Format::from_content_type(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
        ),
        Ok(Format::Protobuf)
    );
}

#[test]
fn counter_gauge_untyped_with_metadata_timestamps_and_created() {
    let counter = Msg::default()
        .msg(1, label("path", "/a"))
        .msg(1, label("code", "200"))
        .msg(
            3,
            Msg::default()
                .double(1, 42.0)
                .msg(
                    2,
                    Msg::default()
                        .msg(1, label("trace_id", "abc"))
                        .double(2, 0.5)
                        .msg(3, timestamp(1_700_000_000, 250_000_000)),
                )
                .msg(3, timestamp(1_600_000_000, 5_000_000)),
        )
        .varint(6, 1_234_567);
    let gauge = Msg::default().msg(2, Msg::default().double(1, -1.5));
    let untyped = Msg::default().msg(5, Msg::default().double(1, f64::INFINITY));
    let b = body(&[
        family("requests_total", 0, vec![counter]),
        family("temperature_celsius", 1, vec![gauge]).str(5, "celsius"),
        family("thing", 3, vec![untyped]),
    ]);
    let mut parser = Parser::new(Format::Protobuf, &b);
    let mut builder = LabelsBuilder::new();
    assert_eq!(
        parser.next().unwrap(),
        Some(Entry::Help {
            name: "requests_total".into(),
            text: "help text".into()
        })
    );
    assert_eq!(
        parser.next().unwrap(),
        Some(Entry::Type {
            name: "requests_total".into(),
            kind: MetricType::Counter
        })
    );
    assert_eq!(parser.next().unwrap(), Some(Entry::Series));
    let (_, ts, value) = parser.series();
    assert_eq!((ts, value), (Some(1_234_567), 42.0));
    parser.labels(&mut builder).unwrap();
    assert_eq!(
        builder.labels(),
        l(&[
            ("__name__", "requests_total"),
            ("path", "/a"),
            ("code", "200")
        ])
    );
    assert_eq!(parser.metric_type(), MetricType::Counter);
    assert_eq!(parser.created_timestamp(), Some(1_600_000_000_005));
    let ex = parser.exemplar().expect("counter exemplar");
    assert_eq!(ex.labels, l(&[("trace_id", "abc")]));
    assert_eq!((ex.value, ex.timestamp), (0.5, Some(1_700_000_000_250)));

    let (rest, meta) = {
        // Continue with a fresh parse of the whole body for the others.
        parse(&b).unwrap()
    };
    assert_eq!(
        meta,
        vec![
            "HELP requests_total help text",
            "TYPE requests_total counter",
            "HELP temperature_celsius help text",
            "UNIT temperature_celsius celsius",
            "TYPE temperature_celsius gauge",
            "HELP thing help text",
            "TYPE thing unknown",
        ]
    );
    assert_eq!(rest[1].labels, l(&[("__name__", "temperature_celsius")]));
    assert_eq!((rest[1].value, rest[1].timestamp), (-1.5, None));
    assert_eq!(rest[2].value, f64::INFINITY);
}

#[test]
fn summary_series_and_quantile_labels() {
    let summary = Msg::default().msg(1, label("job", "x")).msg(
        4,
        Msg::default()
            .varint(1, 10)
            .double(2, 3.5)
            .msg(3, Msg::default().double(1, 0.5).double(2, 1.0))
            .msg(3, Msg::default().double(1, 1.0).double(2, 2.0))
            .msg(4, timestamp(100, 0)),
    );
    let (got, _) = parse(&body(&[family("rpc_seconds", 2, vec![summary])])).unwrap();
    assert_eq!(
        names_and_values(&got),
        vec![
            (
                r#"{__name__="rpc_seconds_count", job="x"}"#.to_owned(),
                10.0
            ),
            (r#"{__name__="rpc_seconds_sum", job="x"}"#.to_owned(), 3.5),
            (
                r#"{__name__="rpc_seconds", job="x", quantile="0.5"}"#.to_owned(),
                1.0
            ),
            (
                r#"{__name__="rpc_seconds", job="x", quantile="1.0"}"#.to_owned(),
                2.0
            ),
        ]
    );
    // Every series has its own cache key.
    let mut keys: Vec<_> = got.iter().map(|g| g.key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 4);
}

#[test]
fn classic_histogram_adds_missing_inf_bucket_and_formats_le() {
    let bucket = |le: f64, count: u64| Msg::default().double(2, le).varint(1, count);
    let without_inf = Msg::default().msg(
        7,
        Msg::default()
            .varint(1, 7)
            .double(2, 12.5)
            .msg(3, bucket(0.25, 1))
            .msg(3, bucket(1.0, 3))
            .msg(3, bucket(1e6, 5)),
    );
    let (got, _) = parse(&body(&[family("lat", 4, vec![without_inf])])).unwrap();
    assert_eq!(
        names_and_values(&got),
        vec![
            (r#"{__name__="lat_count"}"#.to_owned(), 7.0),
            (r#"{__name__="lat_sum"}"#.to_owned(), 12.5),
            (r#"{__name__="lat_bucket", le="0.25"}"#.to_owned(), 1.0),
            (r#"{__name__="lat_bucket", le="1.0"}"#.to_owned(), 3.0),
            (r#"{__name__="lat_bucket", le="1e+06"}"#.to_owned(), 5.0),
            (r#"{__name__="lat_bucket", le="+Inf"}"#.to_owned(), 7.0),
        ]
    );
    // An explicit +Inf bucket is not doubled, and buckets after it are not
    // served; float counts win over integer ones.
    let with_inf = Msg::default().msg(
        7,
        Msg::default()
            .varint(1, 2)
            .double(4, 2.5)
            .msg(3, bucket(f64::INFINITY, 2).double(4, 2.5))
            .msg(3, bucket(9.0, 9)),
    );
    let (got, _) = parse(&body(&[family("g", 5, vec![with_inf])])).unwrap();
    assert_eq!(
        names_and_values(&got),
        vec![
            (r#"{__name__="g_count"}"#.to_owned(), 2.5),
            (r#"{__name__="g_sum"}"#.to_owned(), 0.0),
            (r#"{__name__="g_bucket", le="+Inf"}"#.to_owned(), 2.5),
        ]
    );
    // No buckets at all: still a +Inf bucket.
    let empty = Msg::default().msg(7, Msg::default().varint(1, 0));
    let (got, _) = parse(&body(&[family("e", 4, vec![empty])])).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].labels.get("le"), Some("+Inf"));
}

#[test]
fn bucket_exemplars_belong_to_their_bucket_series() {
    let ex = Msg::default().msg(1, label("id", "1")).double(2, 0.3);
    let h = Msg::default().msg(
        7,
        Msg::default()
            .varint(1, 1)
            .msg(3, Msg::default().double(2, 0.5).varint(1, 1).msg(3, ex)),
    );
    let b = body(&[family("h", 4, vec![h])]);
    let mut parser = Parser::new(Format::Protobuf, &b);
    let mut with_exemplar = Vec::new();
    while let Some(entry) = parser.next().unwrap() {
        if entry == Entry::Series {
            if let Some(e) = parser.exemplar() {
                with_exemplar.push((parser.metric_name().into_owned(), e.value));
            }
        }
    }
    assert_eq!(with_exemplar, vec![("h_bucket".to_owned(), 0.3)]);
}

fn native_histogram_message() -> Msg {
    let ex = |v: f64, ts: Option<i64>| {
        let m = Msg::default().msg(1, label("trace", "t")).double(2, v);
        match ts {
            Some(s) => m.msg(3, timestamp(s, 0)),
            None => m,
        }
    };
    Msg::default().msg(1, label("svc", "api")).msg(
        7,
        Msg::default()
            .varint(1, 5)
            .double(2, 9.0)
            .sint(5, 3)
            .double(6, 0.001)
            .varint(7, 1)
            .msg(12, span(-1, 3))
            .msg(12, span(2, 2))
            // Packed deltas: absolute counts 1, 0, 2, 2, 0.
            .bytes(13, &{
                let mut packed = Vec::new();
                for d in [1i64, -1, 2, 0, -2] {
                    put_varint(&mut packed, ((d << 1) ^ (d >> 63)) as u64);
                }
                packed
            })
            .msg(9, span(0, 1))
            .sint(10, 1)
            .msg(3, Msg::default().double(2, 1.0).varint(1, 4))
            .msg(16, ex(0.1, Some(10)))
            .msg(16, ex(0.2, None))
            .msg(15, timestamp(50, 0)),
    )
}

#[test]
fn native_histogram_is_one_entry_compacted() {
    let b = body(&[family(
        "rpc_duration_seconds",
        4,
        vec![native_histogram_message()],
    )]);
    let mut parser = Parser::new(Format::Protobuf, &b);
    let mut entries = Vec::new();
    while let Some(entry) = parser.next().unwrap() {
        entries.push(entry.clone());
        if entry == Entry::Histogram {
            let h = parser.histogram().expect("histogram").clone();
            assert_eq!(h.schema, 3);
            assert_eq!(h.zero_threshold, 0.001);
            assert_eq!(h.count, HistogramCount::Int(5));
            assert_eq!(h.zero_count, HistogramCount::Int(1));
            assert_eq!(h.sum, 9.0);
            assert_eq!(h.reset_hint, ResetHint::Unknown);
            // Buckets at -1 (1), 1 (2), 4 (2): empty ones dropped.
            assert_eq!(
                h.positive_spans,
                vec![
                    BucketSpan {
                        offset: -1,
                        length: 1
                    },
                    BucketSpan {
                        offset: 1,
                        length: 1
                    },
                    BucketSpan {
                        offset: 2,
                        length: 1
                    }
                ]
            );
            assert_eq!(h.positive_deltas, vec![1, 1, 0]);
            assert_eq!(
                h.negative_spans,
                vec![BucketSpan {
                    offset: 0,
                    length: 1
                }]
            );
            assert_eq!(h.negative_deltas, vec![1]);
            assert!(h.positive_counts.is_empty() && !h.is_float());
            let mut builder = LabelsBuilder::new();
            parser.labels(&mut builder).unwrap();
            assert_eq!(
                builder.labels(),
                l(&[("__name__", "rpc_duration_seconds"), ("svc", "api")])
            );
            assert_eq!(parser.created_timestamp(), Some(50_000));
            // Only the timestamped exemplar is kept.
            let mut exemplars = Vec::new();
            parser.exemplars(&mut exemplars);
            assert_eq!(exemplars.len(), 1);
            assert_eq!(exemplars[0].value, 0.1);
        }
    }
    assert_eq!(
        entries,
        vec![
            Entry::Help {
                name: "rpc_duration_seconds".into(),
                text: "help text".into()
            },
            Entry::Type {
                name: "rpc_duration_seconds".into(),
                kind: MetricType::Histogram
            },
            Entry::Histogram
        ]
    );
}

#[test]
fn classic_series_follow_native_histogram_when_asked() {
    let b = body(&[family("rpc", 4, vec![native_histogram_message()])]);
    let options = ParserOptions {
        keep_classic_histograms: true,
        ..ParserOptions::default()
    };
    let (got, _) = parse_with(options, &b).unwrap();
    let kinds: Vec<_> = got
        .iter()
        .map(|g| (g.histogram, g.labels.metric_name().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (true, "rpc".to_owned()),
            (false, "rpc_count".to_owned()),
            (false, "rpc_sum".to_owned()),
            (false, "rpc_bucket".to_owned()),
            (false, "rpc_bucket".to_owned()),
        ]
    );
    assert_eq!(got[3].labels.get("le"), Some("1.0"));
    assert_eq!((got[4].labels.get("le"), got[4].value), (Some("+Inf"), 5.0));
}

#[test]
fn float_gauge_and_empty_native_histograms() {
    let float = Msg::default().msg(
        7,
        Msg::default()
            .double(4, 3.5)
            .double(8, 0.5)
            .msg(12, span(0, 2))
            .double(14, 0.0)
            .double(14, 3.0),
    );
    let no_op = Msg::default().msg(7, Msg::default().msg(12, span(0, 0)));
    let b = body(&[family("f", 5, vec![float]), family("n", 4, vec![no_op])]);
    let mut parser = Parser::new(Format::Protobuf, &b);
    let mut seen = Vec::new();
    while let Some(entry) = parser.next().unwrap() {
        if entry == Entry::Histogram {
            seen.push(parser.histogram().unwrap().clone());
        }
    }
    assert_eq!(seen.len(), 2);
    assert!(seen[0].is_float());
    assert_eq!(seen[0].count, HistogramCount::Float(3.5));
    assert_eq!(seen[0].zero_count, HistogramCount::Float(0.5));
    assert_eq!(
        seen[0].positive_spans,
        vec![BucketSpan {
            offset: 1,
            length: 1
        }]
    );
    assert_eq!(seen[0].positive_counts, vec![3.0]);
    assert_eq!(seen[0].reset_hint, ResetHint::Gauge);
    assert!(seen[1].positive_spans.is_empty());
    assert_eq!(seen[1].count, HistogramCount::Int(0));
}

#[test]
fn empty_families_are_skipped_and_unknown_fields_ignored() {
    let b = body(&[
        Msg::default().str(1, "").varint(3, 99),
        family(
            "x",
            1,
            vec![Msg::default().msg(2, Msg::default().double(1, 1.0))],
        )
        .varint(99, 1),
    ]);
    let (got, meta) = parse(&b).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(meta.len(), 2);
}

#[test]
fn same_series_same_key_and_le_spellings_normalised() {
    let bucket = |le: f64| {
        Msg::default().msg(
            7,
            Msg::default().msg(3, Msg::default().double(2, le).varint(1, 1)),
        )
    };
    let b = body(&[family(
        "h",
        4,
        vec![bucket(1.0), bucket(1.0), bucket(-0.0), bucket(0.0)],
    )]);
    let (got, _) = parse(&b).unwrap();
    let bucket_keys: Vec<_> = got
        .iter()
        .filter(|g| g.labels.get("le").is_some_and(|le| le != "+Inf"))
        .map(|g| (g.key.clone(), g.labels.get("le").unwrap_or("").to_owned()))
        .collect();
    assert_eq!(bucket_keys.len(), 4);
    assert_eq!(bucket_keys[0], bucket_keys[1]);
    assert_eq!(bucket_keys[2], bucket_keys[3]);
    assert_eq!(bucket_keys[2].1, "0.0");
    assert_ne!(bucket_keys[0].0, bucket_keys[2].0);
}

fn parse_error(b: &[u8]) -> String {
    match parse(b) {
        Ok(_) => panic!("accepted {b:?}"),
        Err(e) => e.message,
    }
}

#[test]
fn bad_input_is_a_parse_error() {
    let gauge = |labels: Vec<Msg>| {
        let mut m = Msg::default();
        for lbl in labels {
            m = m.msg(1, lbl);
        }
        m.msg(2, Msg::default().double(1, 1.0))
    };
    let good = body(&[family("ok", 1, vec![gauge(vec![label("a", "b")])])]);
    // Truncated varint prefix and truncated bodies at every length.
    assert!(parse_error(&[0x80]).contains("varint"));
    for cut in 1..good.len() {
        assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
    }
    // A length prefix longer than five bytes / larger than the body.
    assert!(parse(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x0a]).is_err());
    assert!(parse_error(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a]).contains("exceeds"));
    // Invalid UTF-8 in a label value, a label name, the metric name.
    let bad_value = Msg::default().str(1, "a").bytes(2, &[0xff, 0xfe]);
    assert!(
        parse_error(&body(&[family("m", 1, vec![gauge(vec![bad_value])])])).contains("label value")
    );
    let bad_name = Msg::default().bytes(1, &[0xc3]).str(2, "v");
    assert!(
        parse_error(&body(&[family("m", 1, vec![gauge(vec![bad_name])])])).contains("label name")
    );
    let bad_family = Msg::default().bytes(1, &[0xe2, 0x82]).msg(4, gauge(vec![]));
    assert!(parse(&body(&[bad_family])).is_err());
    // Empty metric name, empty label name, unknown type.
    assert!(parse_error(&body(&[family("", 1, vec![gauge(vec![])])])).contains("metric name"));
    assert!(parse(&body(&[family("m", 1, vec![gauge(vec![label("", "v")])])])).is_err());
    assert!(
        parse_error(&body(&[family("m", 7, vec![gauge(vec![])])])).contains("unknown metric type")
    );
    // Wrong wire type for a known field.
    let wrong = Msg::default().varint(2, 5);
    assert!(parse_error(&body(&[family("m", 1, vec![wrong])])).contains("wire type"));
    // A unit that is not a suffix of the name.
    let with_unit = family("m_seconds", 1, vec![gauge(vec![])]).str(5, "bytes");
    assert!(parse_error(&body(&[with_unit])).contains("unit"));
    let counter_unit = family("m_seconds_total", 0, vec![gauge(vec![])]).str(5, "seconds");
    assert!(parse(&body(&[counter_unit])).is_ok());
    // Too many labels.
    let many: Vec<Msg> = (0..20).map(|i| label(&format!("l{i}"), "v")).collect();
    let options = ParserOptions {
        max_labels_per_series: 10,
        ..ParserOptions::default()
    };
    assert!(parse_with(options, &body(&[family("m", 1, vec![gauge(many)])])).is_err());
    // A repeated label name fails when labels are requested, as does one
    // that clashes with `le`.
    let dup = gauge(vec![label("a", "1"), label("a", "2")]);
    assert!(parse_error(&body(&[family("m", 1, vec![dup])])).contains("not unique"));
    let le = Msg::default()
        .msg(1, label("le", "x"))
        .msg(7, Msg::default());
    assert!(parse_error(&body(&[family("h", 4, vec![le])])).contains("not unique"));
}

#[test]
fn errors_are_located_by_family_and_offset() {
    let good = family(
        "a",
        1,
        vec![Msg::default().msg(2, Msg::default().double(1, 1.0))],
    );
    let mut b = body(&[good.clone(), good]);
    let second = b.len() / 2;
    b.extend_from_slice(&[0x05, 0x0a]);
    let e = parse(&b).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert_eq!(e.column, b.len() - 2 + 1, "{e} (second at {second})");
}

// ----- upstream test data -----------------------------------------------------

const ROOT: &str = "/work/shared/conformance/promtext/common-expfmt-testdata";

fn read(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(ROOT).join(name)).expect("test data file")
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

fn sorted_samples(got: Vec<(Labels, f64)>) -> Vec<(String, u64)> {
    let mut v: Vec<_> = got
        .into_iter()
        .map(|(labels, value)| (labels.to_string(), value.to_bits()))
        .collect();
    v.sort();
    v
}

#[test]
fn upstream_protobuf_matches_its_text_twin() {
    let proto = read("protobuf");
    assert_eq!(gunzip(&read("protobuf.gz")), proto);
    let text = read("text");
    assert_eq!(gunzip(&read("text.gz")), text);
    let (from_proto, _) = parse(&proto).unwrap();
    let (from_text, _) = common::parse_all(Format::PrometheusText, &text).unwrap();
    assert!(from_proto.len() > 100, "{}", from_proto.len());
    let proto_samples = sorted_samples(
        from_proto
            .into_iter()
            .map(|g| (g.labels, g.value))
            .collect(),
    );
    let text_samples = sorted_samples(from_text.into_iter().map(|s| (s.labels, s.value)).collect());
    assert_eq!(proto_samples, text_samples);
    assert!(check_metrics(&proto, None).is_valid());
    assert_eq!(check_metrics(&proto, None).format, Format::Protobuf);
}

#[test]
fn upstream_multimessage_parses() {
    let (got, meta) = parse(&read("protobuf-multimessage")).unwrap();
    assert_eq!(got.len(), 6);
    assert!(meta.contains(&"TYPE swap_free gauge".to_owned()));
    assert_eq!(
        got[0].labels,
        l(&[("__name__", "swap_free"), ("host", "omsk")])
    );
    let report = check_metrics(&read("protobuf-multimessage"), Some(Format::Protobuf));
    assert!(report.is_valid(), "{:?}", report.problems);
}

#[test]
fn text_is_not_sniffed_as_protobuf() {
    for body in [&b"#\n# TYPE x gauge\nx 1\n"[..], b"a\n", b"x 1\n"] {
        assert_ne!(check_metrics(body, None).format, Format::Protobuf);
    }
    let truncated = read("protobuf");
    let report = check_metrics(&truncated[..truncated.len() - 3], Some(Format::Protobuf));
    assert!(!report.is_valid());
}

// ----- hostile input never panics -------------------------------------------

fn drain(format: Format, data: &[u8]) {
    let mut parser = Parser::new(format, data);
    let mut builder = LabelsBuilder::new();
    let mut exemplars = Vec::new();
    // Every entry consumes input, so this ends; the bound is a backstop.
    for _ in 0..100_000 {
        match parser.next() {
            Ok(Some(_)) => {
                let _ = parser.series();
                let _ = parser.labels(&mut builder);
                let _ = parser.histogram();
                let _ = parser.created_timestamp();
                parser.exemplars(&mut exemplars);
                exemplars.clear();
            }
            _ => return,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        drain(Format::Protobuf, &data);
    }

    #[test]
    fn mutated_valid_bodies_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut data = body(&[
            family("rpc", 4, vec![native_histogram_message()]),
            family("s", 2, vec![Msg::default().msg(4, Msg::default().msg(3, Msg::default().double(1, 0.5)))]),
        ]);
        for (at, byte) in flips {
            let len = data.len();
            data[at % len] = byte;
        }
        drain(Format::Protobuf, &data);
    }
}
