//! Reads an exposition on stdin and exits 0 iff it is valid.
//!
//! Usage: `check_metrics [--format=prometheus|openmetrics|protobuf]` (default: sniff).
//! Problems are printed to stderr; lint warnings do not change the exit
//! status. This is the command the OpenMetrics conformance runner drives:
//! `run-openmetrics -- target/debug/examples/check_metrics --format=openmetrics`.

use std::io::Read;
use std::process::ExitCode;

use tributary_exposition::{check_metrics, Format, Severity};

fn parse_args() -> Result<Option<Format>, String> {
    let mut format = None;
    for arg in std::env::args().skip(1) {
        format = match arg.as_str() {
            "--format=prometheus" => Some(Format::PrometheusText),
            "--format=openmetrics" => Some(Format::OpenMetrics),
            "--format=protobuf" => Some(Format::Protobuf),
            "--format=sniff" => None,
            other => return Err(format!("unknown argument {other:?}")),
        };
    }
    Ok(format)
}

fn main() -> ExitCode {
    let format = match parse_args() {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "check_metrics: {e}\nusage: check_metrics [--format=prometheus|openmetrics|sniff]"
            );
            return ExitCode::from(2);
        }
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("check_metrics: reading stdin: {e}");
        return ExitCode::from(2);
    }
    let report = check_metrics(&input, format);
    for p in &report.problems {
        let kind = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        eprintln!(
            "{kind}: {} at line {}, column {}",
            p.message, p.line, p.column
        );
    }
    if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
