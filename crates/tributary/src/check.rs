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

/// `check wal DIR [--repair]`: exit 0 when the WAL is clean (or was
/// repaired), 1 when damage remains, 2 when it cannot be read.
pub fn wal(dir: &std::path::Path, repair: bool) -> ExitCode {
    let report = match tributary_wal::inspect(dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{report}");
    if report.is_clean() {
        println!("WAL is clean.");
        return ExitCode::SUCCESS;
    }
    if !repair {
        println!("WAL has damage; run again with --repair to cut it out.");
        return ExitCode::from(1);
    }
    match tributary_wal::repair(dir) {
        Ok(r) => {
            println!(
                "Repaired: {} segment(s) rewritten, {} damaged bytes cut, {} undecodable record(s) dropped, {} cursor(s) moved.",
                r.segments_rewritten.len(),
                r.bytes_cut,
                r.records_dropped,
                r.cursors_moved.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: repair failed: {e}");
            ExitCode::from(1)
        }
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
