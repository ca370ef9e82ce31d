//! Runs the upstream OpenMetrics parser conformance cases in-process
//! against `check_metrics` (the same verdict the example binary gives).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tributary_exposition::{check_metrics, Format};

const CASES: &str = "/work/shared/conformance/openmetrics";

#[test]
fn openmetrics_conformance_suite_passes_completely() {
    let mut entries: Vec<_> = std::fs::read_dir(CASES)
        .expect("conformance cases folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("test.json").is_file())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 211, "expected the full upstream case set");
    let mut failures = Vec::new();
    for case in &entries {
        let (should_parse, input) = load_case(case);
        for format in [Some(Format::OpenMetrics), None] {
            let report = check_metrics(&input, format);
            if report.is_valid() != should_parse {
                failures.push(format!(
                    "{} (format {format:?}): expected valid={should_parse}, problems: {:?}",
                    case.display(),
                    report.problems
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn load_case(case: &Path) -> (bool, Vec<u8>) {
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join("test.json")).expect("test.json"))
            .expect("json");
    assert_eq!(spec["type"], "text");
    let file = spec["file"].as_str().unwrap_or("metrics");
    let input = std::fs::read(case.join(file)).expect("case input");
    (spec["shouldParse"].as_bool().unwrap_or(false), input)
}
