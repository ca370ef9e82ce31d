//! `tributary check …`: promtool-style validation commands.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// `check config FILE...`: exit 0 when every file is valid, 1 otherwise.
pub fn config(files: &[PathBuf]) -> ExitCode {
    let (report, ok) = tributary_config::check_config_files(files);
    if ok {
        print!("{report}");
        ExitCode::SUCCESS
    } else {
        eprint!("{report}");
        ExitCode::from(1)
    }
}

/// `check metrics`: reads an exposition on stdin; exit 0 when valid.
pub fn metrics(format: Option<&str>) -> ExitCode {
    let format = match format {
        None => None,
        Some("prometheus") | Some("text") => Some(tributary_exposition::Format::PrometheusText),
        Some("openmetrics") => Some(tributary_exposition::Format::OpenMetrics),
        Some("protobuf") => Some(tributary_exposition::Format::Protobuf),
        Some(other) => {
            eprintln!("error: unknown format {other:?} (want prometheus, openmetrics or protobuf)");
            return ExitCode::from(2);
        }
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("error reading standard input: {e}");
        return ExitCode::from(2);
    }
    let report = tributary_exposition::check_metrics(&input, format);
    for p in &report.problems {
        eprintln!("{}:{}: {:?}: {}", p.line, p.column, p.severity, p.message);
    }
    if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
