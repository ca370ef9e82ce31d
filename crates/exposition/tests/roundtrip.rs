//! Property test: random valid expositions, rendered in both formats, parse
//! back to exactly the samples they were rendered from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use proptest::prelude::*;
use tributary_exposition::{check_metrics, Format};
use tributary_model::Labels;

#[derive(Debug, Clone)]
struct GenSample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    /// Whole seconds, so that OpenMetrics' float-second timestamps are exact.
    timestamp_secs: Option<i64>,
}

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        (-1_000_000i64..1_000_000).prop_map(|v| v as f64),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
    ]
}

fn sample_strategy() -> impl Strategy<Value = GenSample> {
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
        proptest::collection::btree_map(
            "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
            "[a-z\"\\\\\n{}#, =é€]{1,10}",
            0..6,
        ),
        value_strategy(),
        // Prometheus text timestamps have no sign.
        proptest::option::of(0i64..4_000_000_000),
    )
        .prop_map(|(name, labels, value, timestamp_secs)| GenSample {
            name,
            labels: labels
                .into_iter()
                .filter(|(k, _)| k != "__name__")
                .collect(),
            value,
            timestamp_secs,
        })
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn render(samples: &[GenSample], format: Format) -> String {
    let mut out = String::new();
    for s in samples {
        out.push_str(&s.name);
        if !s.labels.is_empty() {
            let pairs: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            out.push('{');
            out.push_str(&pairs.join(","));
            out.push('}');
        }
        out.push(' ');
        out.push_str(&render_value(s.value));
        if let Some(ts) = s.timestamp_secs {
            match format {
                Format::OpenMetrics => out.push_str(&format!(" {ts}")),
                // Only text formats are rendered here.
                Format::PrometheusText | Format::Protobuf => {
                    out.push_str(&format!(" {}", ts * 1000))
                }
            }
        }
        out.push('\n');
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn expected_labels(s: &GenSample) -> Labels {
    let mut pairs = s.labels.clone();
    pairs.push(("__name__".into(), s.name.clone()));
    Labels::from_pairs(pairs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_expositions_round_trip(samples in proptest::collection::vec(sample_strategy(), 0..20)) {
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let body = render(&samples, format);
            let (parsed, _) = common::parse_all(format, body.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{format:?}: {e}\n{body}")))?;
            prop_assert_eq!(parsed.len(), samples.len());
            for (got, want) in parsed.iter().zip(&samples) {
                prop_assert_eq!(&got.labels, &expected_labels(want));
                prop_assert_eq!(got.timestamp, want.timestamp_secs.map(|s| s * 1000));
                if want.value.is_nan() {
                    prop_assert!(got.value.is_nan());
                } else {
                    prop_assert_eq!(got.value, want.value);
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let _ = common::parse_all(format, &body);
            let _ = check_metrics(&body, Some(format));
        }
    }
}
