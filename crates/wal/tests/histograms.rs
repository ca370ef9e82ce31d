//! Native histograms, exemplars and metadata through the WAL: written in
//! the commit as Prometheus's record types 7/8, 4 and 6, read back
//! bit-exactly, deduplicated (repeated exemplar, unchanged metadata),
//! remembered across a restart and counted by `inspect`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tributary_model::{
    BucketSpan, Exemplar, HistogramCount, Labels, MetricType, NativeHistogram, ResetHint,
    SeriesRef, Storage,
};
use tributary_wal::record::{self, RecordType};
use tributary_wal::{
    inspect, AgentStorage, Position, RefExemplar, RefHistogram, RefMetadata, WalOptions, WalReader,
};

fn open(dir: &Path) -> Arc<AgentStorage> {
    let opts = WalOptions {
        compression: true,
        ..WalOptions::default()
    };
    AgentStorage::open(dir, opts, &mut Registry::default()).unwrap()
}

fn int_histogram(count: u64) -> NativeHistogram {
    NativeHistogram {
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: HistogramCount::Int(1),
        count: HistogramCount::Int(count),
        sum: 12.5,
        positive_spans: vec![
            BucketSpan {
                offset: -2,
                length: 2,
            },
            BucketSpan {
                offset: 3,
                length: 1,
            },
        ],
        positive_deltas: vec![2, -1, 3],
        negative_spans: vec![BucketSpan {
            offset: 0,
            length: 1,
        }],
        negative_deltas: vec![1],
        reset_hint: ResetHint::No,
        ..NativeHistogram::default()
    }
}

fn float_histogram() -> NativeHistogram {
    NativeHistogram {
        schema: -1,
        zero_threshold: 0.001,
        zero_count: HistogramCount::Float(0.5),
        count: HistogramCount::Float(7.25),
        sum: -3.0,
        positive_spans: vec![BucketSpan {
            offset: 1,
            length: 2,
        }],
        positive_counts: vec![1.5, 5.25],
        reset_hint: ResetHint::Gauge,
        ..NativeHistogram::default()
    }
}

#[derive(Default)]
struct Read {
    series: Vec<(SeriesRef, Labels)>,
    histograms: Vec<RefHistogram>,
    exemplars: Vec<RefExemplar>,
    metadata: Vec<RefMetadata>,
    order: Vec<RecordType>,
}

fn read_all(wal_dir: &Path) -> Read {
    let mut out = Read::default();
    let mut r = WalReader::open(wal_dir, Position::new(0, 0)).unwrap();
    while let Some(rec) = r.next_record().unwrap() {
        assert!(rec.skipped.is_none(), "unexpected damage");
        let Some(t) = record::record_type(rec.payload) else {
            continue;
        };
        out.order.push(t);
        match t {
            RecordType::Series => record::decode_series(rec.payload, &mut out.series).unwrap(),
            RecordType::HistogramSamples | RecordType::FloatHistogramSamples => {
                record::decode_histograms(rec.payload, &mut out.histograms).unwrap()
            }
            RecordType::Exemplars => {
                record::decode_exemplars(rec.payload, &mut out.exemplars).unwrap()
            }
            RecordType::Metadata => {
                record::decode_metadata(rec.payload, &mut out.metadata).unwrap()
            }
            _ => {}
        }
    }
    out
}

#[test]
fn histograms_exemplars_and_metadata_round_trip_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let lh = Labels::from_pairs([("__name__", "rpc_latency_seconds"), ("job", "j")]);
    let lf = Labels::from_pairs([("__name__", "queue_fill"), ("job", "j")]);
    let ex = Exemplar {
        labels: Labels::from_pairs([("trace_id", "abc")]),
        value: 0.25,
        t: 1_000,
    };
    {
        let s = open(dir.path());
        let mut app = s.appender();
        let rh = app.series(&lh).unwrap();
        let rf = app.series(&lf).unwrap();
        app.update_metadata(rh, MetricType::Histogram, "RPC latency.", "seconds")
            .unwrap();
        app.append_histogram(rh, 1_000, &int_histogram(9)).unwrap();
        app.append_histogram(rf, 1_000, &float_histogram()).unwrap();
        app.append_exemplar(rh, &ex).unwrap();
        app.commit().unwrap();

        // Second scrape: same exemplar and metadata again are not logged;
        // an out-of-order histogram is refused.
        let mut app = s.appender();
        app.update_metadata(rh, MetricType::Histogram, "RPC latency.", "seconds")
            .unwrap();
        app.append_exemplar(rh, &ex).unwrap();
        assert!(app.append_histogram(rh, 1_000, &int_histogram(9)).is_err());
        app.append_histogram(rh, 2_000, &NativeHistogram::stale())
            .unwrap();
        app.commit().unwrap();
        s.close().unwrap();
    }
    let read = read_all(&dir.path().join("wal"));
    assert_eq!(read.series.len(), 2);
    let rh = read.series.iter().find(|(_, l)| *l == lh).unwrap().0;
    let rf = read.series.iter().find(|(_, l)| *l == lf).unwrap().0;
    // Commit order: Series, Metadata, then the data records.
    assert_eq!(
        &read.order[..5],
        &[
            RecordType::Series,
            RecordType::Metadata,
            RecordType::HistogramSamples,
            RecordType::FloatHistogramSamples,
            RecordType::Exemplars
        ]
    );
    assert_eq!(read.metadata.len(), 1, "unchanged metadata logged once");
    assert_eq!(
        read.metadata[0],
        RefMetadata {
            series: rh,
            kind: MetricType::Histogram,
            unit: "seconds".into(),
            help: "RPC latency.".into(),
        }
    );
    assert_eq!(read.exemplars.len(), 1, "repeated exemplar logged once");
    assert_eq!(read.exemplars[0].series, rh);
    assert_eq!(read.exemplars[0].labels, ex.labels);
    assert_eq!(read.exemplars[0].v, 0.25);
    assert_eq!(read.histograms.len(), 3);
    assert_eq!(
        read.histograms[0],
        RefHistogram {
            series: rh,
            t: 1_000,
            h: int_histogram(9)
        }
    );
    assert_eq!(read.histograms[1].series, rf);
    assert_eq!(read.histograms[1].h, float_histogram());
    assert!(read.histograms[2].h.is_stale());
    assert_eq!(read.histograms[2].t, 2_000);

    // After a restart the series' metadata and watermark are known again.
    {
        let s = open(dir.path());
        let mut app = s.appender();
        let r = app.series(&lh).unwrap();
        assert_eq!(r, rh);
        app.update_metadata(r, MetricType::Histogram, "RPC latency.", "seconds")
            .unwrap();
        assert!(
            app.append_histogram(r, 2_000, &int_histogram(1)).is_err(),
            "watermark replayed from histogram records"
        );
        app.update_metadata(
            r,
            MetricType::Histogram,
            "RPC latency (new help).",
            "seconds",
        )
        .unwrap();
        app.commit().unwrap();
        s.close().unwrap();
    }
    let read = read_all(&dir.path().join("wal"));
    assert_eq!(read.metadata.len(), 2);
    assert_eq!(read.metadata[1].help, "RPC latency (new help).");

    let report = inspect(dir.path()).unwrap();
    assert_eq!(report.histogram_samples, 3);
    assert_eq!(report.exemplars, 1);
    assert_eq!(report.metadata, 2);
    assert_eq!(report.records.histograms, 3);
    assert_eq!(report.records.exemplars, 1);
    assert_eq!(report.records.metadata, 2);
    assert_eq!(report.max_time, Some(2_000));
    assert!(report.damage().next().is_none());
}

/// Native histograms a consumer had not acknowledged when forced
/// truncation deleted them are counted as dropped samples, like floats.
#[test]
fn histograms_deleted_unsent_are_counted_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 64 * 1024,
        compression: false,
        ..WalOptions::default()
    };
    let s = AgentStorage::open(dir.path(), opts, &mut Registry::default()).unwrap();
    let down = s.consumer("down").unwrap();
    let labels: Vec<Labels> = (0..20)
        .map(|i| Labels::from_pairs([("__name__", "rpc_latency_seconds"), ("i", &i.to_string())]))
        .collect();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut appended = 0u64;
    let mut t = t0;
    while s.stats().segments < 4 {
        let mut app = s.appender();
        for l in &labels {
            let r = app.series(l).unwrap();
            if t % 2 == 0 {
                app.append_histogram(r, t, &int_histogram(9)).unwrap();
            } else {
                app.append_histogram(r, t, &float_histogram()).unwrap();
            }
            appended += 1;
        }
        app.commit().unwrap();
        t += 1;
        assert!(t - t0 < 100_000, "WAL does not grow");
    }
    let stats = s.truncate_at(t0 + 5 * 3600 * 1000).unwrap();
    assert!(stats.segments_deleted >= 3, "{stats:?}");
    // Everything but the segment being written was deleted unsent.
    let mut left = Vec::new();
    let mut r = WalReader::open(s.wal_dir(), down.position()).unwrap();
    while let Some(rec) = r.next_record().unwrap() {
        if matches!(
            record::record_type(rec.payload),
            Some(RecordType::HistogramSamples | RecordType::FloatHistogramSamples)
        ) {
            record::decode_histograms(rec.payload, &mut left).unwrap();
        }
    }
    assert!(left.len() < appended as usize);
    assert_eq!(down.dropped().max_time, appended - left.len() as u64);
    assert_eq!(stats.dropped_max_time, appended - left.len() as u64);
}
