//! `promtool check config`-style report.

use std::fmt::Write;
use std::path::PathBuf;

/// Checks each file and returns the promtool-like report plus whether all
/// files are valid. Errors are listed one per line after `FAILED:`.
pub fn check_config_files(paths: &[PathBuf]) -> (String, bool) {
    let mut report = String::new();
    let mut all_ok = true;
    for path in paths {
        let name = path.display();
        let _ = writeln!(report, "Checking {name}");
        match crate::load_file(path) {
            Ok(config) => {
                let _ = writeln!(
                    report,
                    "  SUCCESS: {name} is valid prometheus config file syntax"
                );
                for extra in config.source_files.iter().skip(1) {
                    let _ = writeln!(
                        report,
                        "  SUCCESS: scrape config file {} found",
                        extra.display()
                    );
                }
            }
            Err(errors) => {
                all_ok = false;
                let _ = writeln!(report, "  FAILED: parsing YAML file {name}:");
                for e in &errors.errors {
                    let _ = writeln!(report, "    {e}");
                }
            }
        }
        report.push('\n');
    }
    (report, all_ok)
}
