//! Parser throughput on generated expositions:
//! - `node_2k`: a node_exporter-like Prometheus text page of ~2,000 series
//!   (HELP/TYPE per family, 3 labels, float values);
//! - `text_50k`: the same shape with 50,000 series;
//! - `proto_native`: a protobuf page of counters, gauges and native
//!   histograms (with classic buckets, which are skipped by default).
//!
//! Each is parsed two ways: `cache_hit` reads only the raw series key,
//! timestamp and value (what a scrape costs when every series is in the
//! scrape cache) and `cold` additionally materialises the labels (a cache
//! miss for every series). Text pages also as `cache_hit_guessed`: sample
//! lines read from their end, as the scrape loop does once the cache
//! knows a target's series. Throughput is reported in bytes; the series
//! count of each body is printed so that ns/sample can be derived:
//! `ns/sample = time per iteration / samples`.
//!
//! Run: `cargo bench -p tributary-exposition --bench parse`.
//!
//! With `TRIBUTARY_BENCH_DUMP=<dir>` set, the generated bodies are also
//! written to `<dir>/node_2k.prom`, `<dir>/text_50k.prom` and
//! `<dir>/proto_native.bin`, so that another parser (e.g. Prometheus's Go
//! `textparse`) can be measured on exactly the same bytes.

use std::fmt::Write;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tributary_exposition::{Entry, Format, Parser};
use tributary_model::LabelsBuilder;

const MODES: [&str; 7] = [
    "idle", "user", "system", "iowait", "irq", "softirq", "steal",
];

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
                MODES[i % MODES.len()],
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

// ----- a minimal protobuf writer for the generated protobuf page -----------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_double(out: &mut Vec<u8>, field: u64, v: f64) {
    put_key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn label_pair(name: &str, value: &str) -> Vec<u8> {
    let mut m = Vec::new();
    put_bytes(&mut m, 1, name.as_bytes());
    put_bytes(&mut m, 2, value.as_bytes());
    m
}

fn native_histogram(seed: usize) -> Vec<u8> {
    let mut h = Vec::new();
    put_key(&mut h, 1, 0);
    put_varint(&mut h, 1000 + seed as u64);
    put_double(&mut h, 2, 123.25 + seed as f64);
    for (le, count) in [(0.1, 100u64), (1.0, 500), (10.0, 900)] {
        let mut b = Vec::new();
        put_key(&mut b, 1, 0);
        put_varint(&mut b, count);
        put_double(&mut b, 2, le);
        put_bytes(&mut h, 3, &b);
    }
    put_key(&mut h, 5, 0);
    put_varint(&mut h, zigzag(3));
    put_double(&mut h, 6, 1e-128);
    put_key(&mut h, 7, 0);
    put_varint(&mut h, 2);
    for (offset, length) in [(-4i64, 6u64), (3, 6)] {
        let mut s = Vec::new();
        put_key(&mut s, 1, 0);
        put_varint(&mut s, zigzag(offset));
        put_key(&mut s, 2, 0);
        put_varint(&mut s, length);
        put_bytes(&mut h, 12, &s);
    }
    let mut packed = Vec::new();
    for i in 0..12i64 {
        put_varint(&mut packed, zigzag((i % 5) - 2 + (seed as i64 % 3)));
    }
    put_bytes(&mut h, 13, &packed);
    h
}

fn protobuf_native_body(families: usize, per_family: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for f in 0..families {
        let kind = [0u64, 1, 4][f % 3];
        let mut fam = Vec::new();
        put_bytes(&mut fam, 1, format!("app_family_{f}_metric").as_bytes());
        put_bytes(&mut fam, 2, b"A generated metric family.");
        put_key(&mut fam, 3, 0);
        put_varint(&mut fam, kind);
        for i in 0..per_family {
            let mut m = Vec::new();
            put_bytes(
                &mut m,
                1,
                &label_pair("instance", &format!("host-{}", i % 16)),
            );
            put_bytes(&mut m, 1, &label_pair("path", &format!("/api/v1/item/{i}")));
            match kind {
                0 => {
                    let mut c = Vec::new();
                    put_double(&mut c, 1, (i * 31) as f64);
                    put_bytes(&mut m, 3, &c);
                }
                1 => {
                    let mut g = Vec::new();
                    put_double(&mut g, 1, i as f64 * 0.5);
                    put_bytes(&mut m, 2, &g);
                }
                _ => put_bytes(&mut m, 7, &native_histogram(i)),
            }
            put_bytes(&mut fam, 4, &m);
        }
        put_varint(&mut out, fam.len() as u64);
        out.extend_from_slice(&fam);
    }
    out
}

// ----- the measured loops ------------------------------------------------------

/// Parses a whole body; returns a checksum so nothing is optimised away.
fn parse(format: Format, body: &[u8], with_labels: bool) -> f64 {
    let mut parser = Parser::new(format, body);
    let mut builder = LabelsBuilder::new();
    let mut sum = 0.0;
    while let Ok(Some(entry)) = parser.next() {
        if matches!(entry, Entry::Series | Entry::Histogram) {
            let (key, _, value) = parser.series();
            sum += value + key.len() as f64;
            if with_labels && parser.labels(&mut builder).is_ok() {
                sum += builder.len() as f64;
            }
        }
    }
    sum
}

/// The cache hit as the scrape loop takes it once a target's series are
/// all known: each sample line read from its end (`Parser::guess_series`,
/// every guess taken as if the cache confirmed it), the rest parsed.
fn parse_guessing(format: Format, body: &[u8]) -> f64 {
    let mut parser = Parser::new(format, body);
    let mut sum = 0.0;
    loop {
        if let Some(g) = parser.guess_series() {
            parser.take_guessed(&g);
            sum += g.value + g.series.len() as f64;
            continue;
        }
        match parser.next() {
            Ok(Some(Entry::Series | Entry::Histogram)) => {
                let (key, _, value) = parser.series();
                sum += value + key.len() as f64;
            }
            Ok(Some(_)) => {}
            _ => return sum,
        }
    }
}

/// The cache hit as the scrape loop takes it when the cache knows the
/// length of the series it expects next (`Parser::guess_series_of_len`):
/// `lens` are the page's series lengths in order, as a first scrape of it
/// would have cached them.
fn parse_guessing_by_len(format: Format, body: &[u8], lens: &[usize]) -> f64 {
    let mut parser = Parser::new(format, body);
    let mut next = lens.iter();
    let mut expected = next.next();
    let mut sum = 0.0;
    loop {
        if let Some(g) = expected.and_then(|&len| parser.guess_series_of_len(len)) {
            parser.take_guessed(&g);
            sum += g.value + g.series.len() as f64;
            expected = next.next();
            continue;
        }
        match parser.next() {
            Ok(Some(Entry::Series | Entry::Histogram)) => {
                let (key, _, value) = parser.series();
                sum += value + key.len() as f64;
                expected = next.next();
            }
            Ok(Some(_)) => {}
            _ => return sum,
        }
    }
}

fn series_lens(format: Format, body: &[u8]) -> Vec<usize> {
    let mut parser = Parser::new(format, body);
    let mut lens = Vec::new();
    while let Ok(Some(entry)) = parser.next() {
        if matches!(entry, Entry::Series | Entry::Histogram) {
            lens.push(parser.series().0.len());
        }
    }
    lens
}

fn samples(format: Format, body: &[u8]) -> usize {
    let mut parser = Parser::new(format, body);
    let mut n = 0;
    while let Ok(Some(entry)) = parser.next() {
        n += usize::from(matches!(entry, Entry::Series | Entry::Histogram));
    }
    n
}

/// Writes `body` to `$TRIBUTARY_BENCH_DUMP/<file>` when that variable is set.
fn dump(file: &str, body: &[u8]) {
    let Some(dir) = std::env::var_os("TRIBUTARY_BENCH_DUMP") else {
        return;
    };
    let path = std::path::Path::new(&dir).join(file);
    match std::fs::write(&path, body) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

fn bench_body(c: &mut Criterion, name: &str, format: Format, body: &[u8]) {
    eprintln!(
        "{name}: {} bytes, {} samples",
        body.len(),
        samples(format, body)
    );
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("cache_hit", |b| {
        b.iter(|| parse(format, black_box(body), false))
    });
    if format == Format::PrometheusText {
        group.bench_function("cache_hit_guessed", |b| {
            b.iter(|| parse_guessing(format, black_box(body)))
        });
        let lens = series_lens(format, body);
        group.bench_function("cache_hit_guessed_by_len", |b| {
            b.iter(|| parse_guessing_by_len(format, black_box(body), &lens))
        });
    }
    group.bench_function("cold", |b| b.iter(|| parse(format, black_box(body), true)));
    group.finish();
}

fn bench(c: &mut Criterion) {
    // A real page, e.g. one of `../shared/bench`'s farm pages (gunzipped).
    if let Some(path) = std::env::var_os("TRIBUTARY_BENCH_PAGE") {
        match std::fs::read(&path) {
            Ok(page) => bench_body(c, "page", Format::PrometheusText, &page),
            Err(e) => eprintln!("{}: {e}", path.to_string_lossy()),
        }
    }
    let node = node_exporter_like_body(2_000);
    dump("node_2k.prom", node.as_bytes());
    bench_body(c, "node_2k", Format::PrometheusText, node.as_bytes());
    let big = node_exporter_like_body(50_000);
    dump("text_50k.prom", big.as_bytes());
    bench_body(c, "text_50k", Format::PrometheusText, big.as_bytes());
    let proto = protobuf_native_body(60, 50);
    dump("proto_native.bin", &proto);
    bench_body(c, "proto_native", Format::Protobuf, &proto);
}

criterion_group!(benches, bench);
criterion_main!(benches);
