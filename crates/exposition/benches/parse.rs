//! Parses a 2000-series node_exporter-like body, once reading only the raw
//! series keys (the scrape-cache hit path) and once materialising labels
//! (the miss path).

use std::fmt::Write;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tributary_exposition::{Entry, Format, Parser};
use tributary_model::LabelsBuilder;

fn node_exporter_like_body(series: usize) -> String {
    let mut out = String::new();
    let mut written = 0;
    let mut family = 0;
    while written < series {
        let name = format!("node_family_{family}_seconds_total");
        let _ = writeln!(out, "# HELP {name} Seconds the CPUs spent in each mode.");
        let _ = writeln!(out, "# TYPE {name} counter");
        for i in 0..40 {
            if written == series {
                break;
            }
            let _ = writeln!(
                out,
                "{name}{{cpu=\"{}\",mode=\"{}\",device=\"eth{}\"}} {}.{}e+03",
                i % 8,
                ["idle", "user", "system", "iowait", "irq"][i % 5],
                i,
                written * 7,
                i
            );
            written += 1;
        }
        family += 1;
    }
    out
}

fn parse(body: &[u8], with_labels: bool) -> f64 {
    let mut parser = Parser::new(Format::PrometheusText, body);
    let mut builder = LabelsBuilder::new();
    let mut sum = 0.0;
    while let Ok(Some(entry)) = parser.next() {
        if entry == Entry::Series {
            let (key, _, value) = parser.series();
            sum += value + key.len() as f64;
            if with_labels && parser.labels(&mut builder).is_ok() {
                sum += builder.len() as f64;
            }
        }
    }
    sum
}

fn bench(c: &mut Criterion) {
    let body = node_exporter_like_body(2000);
    let mut group = c.benchmark_group("prometheus_text_2000_series");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("series_keys_only", |b| {
        b.iter(|| parse(black_box(body.as_bytes()), false))
    });
    group.bench_function("with_labels", |b| {
        b.iter(|| parse(black_box(body.as_bytes()), true))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
