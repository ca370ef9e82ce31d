//! Feeds arbitrary bytes to the PrometheusText parser and the checker, reading
//! every accessor of every series: none of it may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_exposition::{check_metrics, Entry, Format, Parser};
use tributary_model::LabelsBuilder;

fuzz_target!(|data: &[u8]| {
    let mut parser = Parser::new(Format::PrometheusText, data);
    let mut builder = LabelsBuilder::new();
    while let Ok(Some(entry)) = parser.next() {
        if entry == Entry::Series {
            let _ = parser.series();
            let _ = parser.labels(&mut builder);
            let _ = parser.exemplar();
            let _ = parser.created_timestamp();
            let _ = parser.metric_type();
        }
    }
    let _ = check_metrics(data, Some(Format::PrometheusText));
});
