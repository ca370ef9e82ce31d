//! Encode + snappy-compress one full batch (2000 samples, the default
//! `max_samples_per_send`) of realistic series.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tributary_model::{Labels, Timestamp};
use tributary_remote::{EncodableSample, WriteRequestEncoder, WriteRequestV2Encoder};

struct Sample {
    labels: Labels,
    t: Timestamp,
    v: f64,
}

impl EncodableSample for Sample {
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn timestamp(&self) -> Timestamp {
        self.t
    }
    fn value(&self) -> f64 {
        self.v
    }
}

fn batch() -> Vec<Sample> {
    (0..2000)
        .map(|i| Sample {
            labels: Labels::from_pairs([
                ("__name__", format!("http_requests_total_{}", i % 50)),
                ("instance", format!("10.0.{}.{}:9100", i % 7, i % 13)),
                ("job", "node".to_owned()),
                ("method", ["GET", "POST", "PUT"][i % 3].to_owned()),
                ("status", format!("{}", 200 + (i % 5))),
            ]),
            t: 1_700_000_000_000 + i as i64 * 15,
            v: i as f64 * 1.5,
        })
        .collect()
}

fn bench_encode(c: &mut Criterion) {
    let samples = batch();
    let mut enc = WriteRequestEncoder::new();
    let mut enc2 = WriteRequestV2Encoder::new();
    // Wire size per sample, printed once: what the benchmark cannot time.
    if let (Ok(v1), Ok(v2)) = (
        enc.encode(&samples).map(|b| b.len()),
        enc2.encode(&samples).map(|b| b.len()),
    ) {
        let n = samples.len() as f64;
        eprintln!(
            "wire bytes/sample (snappy): v1 {:.2}, v2 {:.2}; uncompressed v1 {:.2}, v2 {:.2}",
            v1 as f64 / n,
            v2 as f64 / n,
            enc.last_uncompressed().len() as f64 / n,
            enc2.last_uncompressed().len() as f64 / n
        );
    }
    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("encode_snappy_2000", |b| {
        b.iter(|| match enc.encode(&samples) {
            Ok(body) => body.len(),
            Err(e) => panic!("encoding failed: {e}"),
        })
    });
    g.bench_function("encode_v2_snappy_2000", |b| {
        b.iter(|| match enc2.encode(&samples) {
            Ok(body) => body.len(),
            Err(e) => panic!("encoding failed: {e}"),
        })
    });
    g.finish();
}

criterion_group!(benches, bench_encode);
criterion_main!(benches);
