//! Feeds arbitrary bytes to the protobuf exposition parser and touches
//! every accessor of every entry: none may panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_exposition::{Format, Parser, ParserOptions};
use tributary_model::LabelsBuilder;

fuzz_target!(|data: &[u8]| {
    for keep_classic in [false, true] {
        let options = ParserOptions {
            keep_classic_histograms: keep_classic,
            ..ParserOptions::default()
        };
        let mut parser = Parser::with_options(Format::Protobuf, data, options);
        let mut builder = LabelsBuilder::new();
        let mut exemplars = Vec::new();
        while let Ok(Some(_)) = parser.next() {
            let _ = parser.series();
            let _ = parser.labels(&mut builder);
            let _ = parser.histogram();
            let _ = parser.created_timestamp();
            let _ = parser.metric_type();
            parser.exemplars(&mut exemplars);
            exemplars.clear();
        }
    }
    let _ = tributary_exposition::check_metrics(data, None);
});
