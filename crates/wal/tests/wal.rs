//! End-to-end tests of the WAL on real files in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;
use proptest::prelude::*;
use tributary_model::{AppendError, Labels, SeriesRef, Storage};
use tributary_wal::record::{self, RecordType};
use tributary_wal::{
    load_series_before, AgentStorage, Position, RefSample, SkipReason, WalError, WalOptions,
    WalReader,
};

const SEG: u64 = 64 * 1024;

fn small_opts() -> WalOptions {
    WalOptions {
        segment_size: SEG,
        ..WalOptions::default()
    }
}

fn open(dir: &Path, opts: WalOptions) -> (Arc<AgentStorage>, Registry) {
    let mut reg = Registry::default();
    let s = AgentStorage::open(dir, opts, &mut reg).expect("open");
    (s, reg)
}

fn metrics_text(reg: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, reg).unwrap();
    out
}

fn metric_value(reg: &Registry, name: &str) -> f64 {
    let text = metrics_text(reg);
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found in\n{text}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", "m"),
        ("i", &i.to_string()),
        ("pad", "some-longer-label-value-to-fill-pages"),
    ])
}

/// Commits one sample per series for `series` series at time `t`.
fn commit_round(s: &AgentStorage, series: usize, t: i64) -> Vec<SeriesRef> {
    let mut app = s.appender();
    let mut refs = Vec::new();
    for i in 0..series {
        let r = app.series(&labels(i)).unwrap();
        app.append(r, t, value(t, i)).unwrap();
        refs.push(r);
    }
    app.commit().unwrap();
    refs
}

/// Poorly compressible values, so tests fill segments quickly.
fn value(t: i64, i: usize) -> f64 {
    let x = (t as u64 ^ ((i as u64) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 11) as f64
}

/// Commits rounds of `series` samples (timestamps from `t0`, 1 ms apart)
/// until the WAL has at least `segments` segments; returns the round count.
fn fill_segments(s: &AgentStorage, segments: usize, series: usize, t0: i64) -> i64 {
    let mut t = 0;
    while s.stats().segments < segments {
        commit_round(s, series, t0 + t);
        t += 1;
        assert!(t < 100_000, "WAL does not grow");
    }
    t
}

#[derive(Default, Debug)]
struct ReadAll {
    series: Vec<(SeriesRef, Labels)>,
    samples: Vec<RefSample>,
    skipped: Vec<tributary_wal::Skipped>,
    end: Position,
}

/// Reads from `start` to the current end.
fn read_all(wal_dir: &Path, start: Position) -> ReadAll {
    let mut r = WalReader::open(wal_dir, start).unwrap();
    let mut out = ReadAll::default();
    while let Some(rec) = r.next_record().unwrap() {
        out.end = rec.end;
        if let Some(s) = rec.skipped {
            out.skipped.push(s);
            continue;
        }
        match record::record_type(rec.payload) {
            Some(RecordType::Series) => {
                record::decode_series(rec.payload, &mut out.series).unwrap()
            }
            Some(RecordType::Samples) => {
                record::decode_samples(rec.payload, &mut out.samples).unwrap()
            }
            other => panic!("unexpected record {other:?}"),
        }
    }
    out
}

#[test]
fn round_trip_append_commit_read() {
    let dir = tempfile::tempdir().unwrap();
    let (s, reg) = open(dir.path(), WalOptions::default());
    let c = s.consumer("rw").unwrap();
    let start = c.position();
    let mut app = s.appender();
    let a = app.series(&labels(1)).unwrap();
    let b = app.series(&labels(2)).unwrap();
    assert_eq!(app.series(&labels(1)).unwrap(), a, "dedup by label set");
    assert!(b > a);
    app.append(a, 1000, 1.5).unwrap();
    app.append(b, 1000, f64::from_bits(tributary_model::STALE_NAN_BITS))
        .unwrap();
    app.commit().unwrap();
    assert!(matches!(
        app.series(&Labels::empty()),
        Err(AppendError::EmptyLabels)
    ));

    let got = read_all(s.wal_dir(), start);
    assert_eq!(got.series, vec![(a, labels(1)), (b, labels(2))]);
    assert_eq!(got.samples.len(), 2);
    assert_eq!(
        got.samples[0],
        RefSample {
            series: a,
            t: 1000,
            v: 1.5
        }
    );
    assert!(tributary_model::is_stale_nan(got.samples[1].v));
    assert_eq!(s.series_labels(a), Some(labels(1)));
    assert_eq!(
        metric_value(&reg, "prometheus_agent_samples_appended_total"),
        2.0
    );
    assert_eq!(metric_value(&reg, "prometheus_agent_active_series"), 2.0);
    assert!(
        metrics_text(&reg).contains("prometheus_agent_samples_appended_total{type=\"float\"} 2")
    );
    for name in [
        "prometheus_agent_deleted_series",
        "prometheus_agent_data_replay_duration_seconds",
        "prometheus_agent_clean_start",
        "prometheus_agent_out_of_order_samples_total",
        "prometheus_agent_corruptions_total",
        "prometheus_agent_checkpoint_creations_total",
        "prometheus_agent_checkpoint_creations_failed_total",
        "prometheus_agent_checkpoint_deletions_total",
        "prometheus_tsdb_wal_fsync_duration_seconds",
        "prometheus_tsdb_wal_page_flushes_total",
        "prometheus_tsdb_wal_completed_pages_total",
        "prometheus_tsdb_wal_truncations_total",
        "prometheus_tsdb_wal_truncations_failed_total",
        "prometheus_tsdb_wal_writes_failed_total",
        "prometheus_tsdb_wal_segment_current",
        "prometheus_tsdb_wal_storage_size_bytes",
    ] {
        assert!(metrics_text(&reg).contains(name), "missing {name}");
    }
}

#[test]
fn out_of_order_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let (s, reg) = open(
        dir.path(),
        WalOptions {
            out_of_order_window: Duration::from_millis(100),
            ..small_opts()
        },
    );
    let mut app = s.appender();
    let a = app.series(&labels(1)).unwrap();
    app.append(a, 1000, 1.0).unwrap();
    app.append(a, 950, 1.0).unwrap(); // inside the window
    assert!(matches!(
        app.append(a, 900, 1.0),
        Err(AppendError::OutOfOrder)
    ));
    assert!(matches!(
        app.append(SeriesRef(999), 1, 1.0),
        Err(AppendError::UnknownSeries(_))
    ));
    app.commit().unwrap();
    assert_eq!(
        metric_value(&reg, "prometheus_agent_out_of_order_samples_total"),
        1.0
    );
}

#[test]
fn a_batch_of_floats_is_admitted_as_appends_one_by_one_would_be() {
    let dir = tempfile::tempdir().unwrap();
    let (s, reg) = open(dir.path(), small_opts());
    let start = s.consumer("batch").unwrap().position();
    let mut app = s.appender();
    let (a, b) = (
        app.series(&labels(1)).unwrap(),
        app.series(&labels(2)).unwrap(),
    );
    app.append(a, 1000, 0.5).unwrap();
    let sample = |series, t, v| RefSample { series, t, v };
    let batch = [
        sample(a, 900, 1.0), // older than the appended one
        sample(b, 1000, 2.0),
        sample(SeriesRef(999), 1000, 3.0),
        sample(b, 1000, 4.0), // the same timestamp again, in the batch
        sample(a, 1100, 5.0),
    ];
    let mut refused = Vec::new();
    app.append_floats(&batch, &mut refused);
    let why: Vec<_> = refused.iter().map(|(i, e)| (*i, e.to_string())).collect();
    assert_eq!(
        why,
        [
            (0, AppendError::OutOfOrder.to_string()),
            (2, AppendError::UnknownSeries(SeriesRef(999)).to_string()),
            (3, AppendError::OutOfOrder.to_string()),
        ]
    );
    app.commit().unwrap();
    assert_eq!(
        metric_value(&reg, "prometheus_agent_out_of_order_samples_total"),
        2.0
    );
    let written: Vec<_> = read_all(s.wal_dir(), start)
        .samples
        .iter()
        .map(|s| (s.series, s.t, s.v))
        .collect();
    assert_eq!(written, [(a, 1000, 0.5), (b, 1000, 2.0), (a, 1100, 5.0)]);
}

#[test]
fn reader_tails_concurrent_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _reg) = open(dir.path(), small_opts());
    let start = s.consumer("tail").unwrap().position();
    let mut watch = s.commit_watch();
    let writer = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            for t in 0..300 {
                commit_round(&s, 20, t);
            }
        })
    };
    let mut r = WalReader::open(s.wal_dir(), start).unwrap();
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while samples.len() < 300 * 20 {
        assert!(
            Instant::now() < deadline,
            "timed out with {} samples",
            samples.len()
        );
        match r.next_record().unwrap() {
            Some(rec) => {
                assert!(rec.skipped.is_none());
                if record::record_type(rec.payload) == Some(RecordType::Samples) {
                    record::decode_samples(rec.payload, &mut samples).unwrap();
                }
            }
            None => {
                let _ = watch.has_changed();
                watch.mark_unchanged();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    writer.join().unwrap();
    // Every commit's samples arrive whole and in order.
    for (i, chunk) in samples.chunks(20).enumerate() {
        assert!(chunk.iter().all(|x| x.t == i as i64));
    }
    assert!(s.stats().segments >= 2, "test should cross segments");
}

#[test]
fn reader_follows_segment_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (s, reg) = open(dir.path(), small_opts());
    let start = s.consumer("c").unwrap().position();
    let rounds = fill_segments(&s, 5, 50, 0) as usize;
    let stats = s.stats();
    for entry in fs::read_dir(s.wal_dir()).unwrap() {
        let e = entry.unwrap();
        let len = e.metadata().unwrap().len();
        let name = e.file_name().into_string().unwrap();
        if name != format!("{:08}", stats.current_segment) {
            assert!(len <= SEG, "segment {name} is {len} bytes");
        }
    }
    let got = read_all(s.wal_dir(), start);
    assert_eq!(got.samples.len(), rounds * 50);
    assert!(got.skipped.is_empty());
    assert_eq!(
        metric_value(&reg, "prometheus_tsdb_wal_segment_current"),
        f64::from(stats.current_segment)
    );
}

#[test]
fn segment_size_must_be_page_multiple() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [0, 1000, 32 * 1024 + 1] {
        let r = AgentStorage::open(
            dir.path(),
            WalOptions {
                segment_size: bad,
                ..WalOptions::default()
            },
            &mut Registry::default(),
        );
        assert!(matches!(r, Err(WalError::InvalidOptions(_))), "{bad}");
    }
}

#[test]
fn restart_replays_series_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let refs = {
        let (s, reg) = open(dir.path(), small_opts());
        assert_eq!(metric_value(&reg, "prometheus_agent_clean_start"), 1.0);
        let second = AgentStorage::open(dir.path(), small_opts(), &mut Registry::default());
        assert!(matches!(second, Err(WalError::Locked(_))));
        let refs = commit_round(&s, 10, 5000);
        s.close().unwrap();
        refs
    };
    let (s, reg) = open(dir.path(), small_opts());
    assert_eq!(metric_value(&reg, "prometheus_agent_clean_start"), 1.0);
    assert_eq!(metric_value(&reg, "prometheus_agent_active_series"), 10.0);
    let mut app = s.appender();
    assert_eq!(app.series(&labels(3)).unwrap(), refs[3], "ref resumed");
    let new = app.series(&labels(100)).unwrap();
    assert!(
        new.0 > refs.iter().map(|r| r.0).max().unwrap(),
        "refs keep increasing"
    );
    assert!(matches!(
        app.append(refs[3], 5000, 1.0),
        Err(AppendError::OutOfOrder)
    ));
    app.append(refs[3], 5001, 1.0).unwrap();
    app.commit().unwrap();
}

#[test]
fn stale_lock_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("lock"), b"").unwrap();
    let (_s, reg) = open(dir.path(), small_opts());
    assert_eq!(metric_value(&reg, "prometheus_agent_clean_start"), 0.0);
    let dir2 = tempfile::tempdir().unwrap();
    let (_s2, reg2) = open(
        dir2.path(),
        WalOptions {
            no_lockfile: true,
            ..small_opts()
        },
    );
    assert_eq!(metric_value(&reg2, "prometheus_agent_clean_start"), -1.0);
    assert!(!dir2.path().join("lock").exists());
}

/// Writes `rounds` commits and returns every commit's end position.
fn write_commits(s: &AgentStorage, rounds: i64, series: usize) -> Vec<Position> {
    let mut ends = Vec::new();
    let c = s.consumer("probe").unwrap();
    let mut pos = c.position();
    for t in 0..rounds {
        commit_round(s, series, t);
        let got = read_all(s.wal_dir(), pos);
        pos = got.end;
        ends.push(pos);
    }
    s.remove_consumer("probe").unwrap();
    ends
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn torn_tail_is_cut_and_prefix_survives(cut_frac in 0.0f64..1.0) {
        let dir = tempfile::tempdir().unwrap();
        let (ends, seg_path, len) = {
            let (s, _reg) = open(dir.path(), WalOptions { segment_size: 1 << 20, ..WalOptions::default() });
            let ends = write_commits(&s, 40, 30);
            let seg = ends[0].segment;
            s.close().unwrap();
            let path = s.wal_dir().join(format!("{seg:08}"));
            let len = fs::metadata(&path).unwrap().len();
            (ends, path, len)
        };
        let cut = (len as f64 * cut_frac) as u64;
        fs::OpenOptions::new().write(true).open(&seg_path).unwrap().set_len(cut).unwrap();
        let (s, _reg) = open(dir.path(), WalOptions { segment_size: 1 << 20, ..WalOptions::default() });
        let got = read_all(s.wal_dir(), Position::new(ends[0].segment, 0));
        let complete = ends.iter().filter(|e| e.offset <= cut).count();
        prop_assert_eq!(got.samples.len(), complete * 30);
        prop_assert!(got.skipped.is_empty(), "{:?}", got.skipped);
        prop_assert!(fs::metadata(&seg_path).unwrap().len() <= cut);
        // New commits after the repair are readable too.
        let mut app = s.appender();
        let r = app.series(&labels(0)).unwrap();
        app.append(r, 1_000_000, 1.0).unwrap();
        app.commit().unwrap();
        let again = read_all(s.wal_dir(), Position::new(ends[0].segment, 0));
        prop_assert_eq!(again.samples.len(), complete * 30 + 1);
    }
}

#[test]
fn bit_flip_in_middle_segment_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let first;
    let rounds;
    {
        let (s, _reg) = open(
            dir.path(),
            WalOptions {
                compression: false,
                ..small_opts()
            },
        );
        first = s.consumer("x").unwrap().position().segment;
        rounds = fill_segments(&s, 4, 40, 0);
        s.close().unwrap();
    }
    let victim = dir.path().join("wal").join(format!("{:08}", first + 1));
    let mut bytes = fs::read(&victim).unwrap();
    bytes[40_000] ^= 0x5a;
    fs::write(&victim, &bytes).unwrap();

    let (s, reg) = open(dir.path(), small_opts());
    assert!(metric_value(&reg, "prometheus_agent_corruptions_total") >= 1.0);
    let got = read_all(s.wal_dir(), Position::new(first, 0));
    assert_eq!(got.skipped.len(), 1);
    assert_eq!(got.skipped[0].reason, SkipReason::Corruption);
    assert_eq!(got.skipped[0].from.segment, first + 1);
    let lost = rounds as usize * 40 - got.samples.len();
    assert_eq!(lost, 40, "only the damaged record is lost");
    // The last round is intact.
    assert!(got.samples.iter().filter(|x| x.t == rounds - 1).count() == 40);
}

#[test]
fn cursors_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let acked = {
        let (s, _reg) = open(dir.path(), small_opts());
        let c = s.consumer("remote-a").unwrap();
        let start = c.position();
        commit_round(&s, 5, 1);
        let mid = read_all(s.wal_dir(), start).end;
        commit_round(&s, 5, 2);
        c.ack(mid);
        c.ack(start); // never moves back
        assert_eq!(c.position(), mid);
        s.close().unwrap();
        mid
    };
    let (s, _reg) = open(dir.path(), small_opts());
    let c = s.consumer("remote-a").unwrap();
    assert_eq!(c.position(), acked);
    let rest = read_all(s.wal_dir(), c.position());
    assert_eq!(rest.samples.len(), 5);
    assert!(rest.samples.iter().all(|x| x.t == 2));
    s.remove_consumer("remote-a").unwrap();
    s.close().unwrap();
    let (s, _reg) = open(dir.path(), small_opts());
    assert!(
        s.consumer("remote-a").unwrap().position() > acked,
        "removed consumer restarts at the end"
    );
}

/// A cursor file with neither slot intact lost where the endpoints were:
/// they start at the WAL's oldest record and send it all (some of it again)
/// rather than skip to the end and lose what they had not sent. An endpoint
/// added once the configured ones exist starts at the end, as always.
#[test]
fn endpoints_of_a_damaged_cursor_file_start_at_the_oldest_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _reg) = open(dir.path(), small_opts());
        let c = s.consumer("remote-a").unwrap();
        commit_round(&s, 5, 1);
        c.ack(read_all(s.wal_dir(), c.position()).end);
        commit_round(&s, 5, 2);
        s.close().unwrap();
    }
    let cursors = dir.path().join("cursors");
    let len = fs::metadata(&cursors).unwrap().len() as usize;
    fs::write(&cursors, vec![0x5a; len]).unwrap();

    let (s, _reg) = open(dir.path(), small_opts());
    let c = s.consumer("remote-a").unwrap();
    let resent = read_all(s.wal_dir(), c.position());
    let rounds = |t| resent.samples.iter().filter(|x| x.t == t).count();
    assert_eq!((rounds(1), rounds(2)), (5, 5), "{:?}", c.position());

    s.end_cursor_recovery();
    let added = s.consumer("remote-b").unwrap();
    assert!(added.position() > c.position());
    commit_round(&s, 5, 3);
    let read = read_all(s.wal_dir(), added.position());
    assert!(read.samples.iter().all(|x| x.t == 3), "{:?}", read.samples);
    assert_eq!(read.samples.len(), 5);
}

/// The WAL directory emptied and the cursor file kept: the cursor points
/// past everything the new WAL holds, and would wait for a segment not yet
/// written; it reads the new WAL from its start instead.
#[test]
fn a_cursor_past_the_end_of_an_emptied_wal_reads_it_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let stale = {
        let (s, _reg) = open(dir.path(), small_opts());
        let c = s.consumer("remote-a").unwrap();
        fill_segments(&s, 4, 40, 0);
        let end = read_all(s.wal_dir(), c.position()).end;
        c.ack(end);
        s.close().unwrap();
        end
    };
    fs::remove_dir_all(dir.path().join("wal")).unwrap();
    let (s, _reg) = open(dir.path(), small_opts());
    let c = s.consumer("remote-a").unwrap();
    assert!(c.position() < stale, "{:?} kept", c.position());
    commit_round(&s, 5, 1);
    assert_eq!(read_all(s.wal_dir(), c.position()).samples.len(), 5);
}

/// Cursors the configuration no longer names, also those known only from
/// the cursor file, are forgotten for good.
#[test]
fn consumers_not_kept_are_forgotten_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let old_at = {
        let (s, _reg) = open(dir.path(), small_opts());
        let old = s.consumer("old-hash").unwrap();
        s.consumer("kept").unwrap();
        commit_round(&s, 5, 1);
        s.close().unwrap();
        old.position()
    };
    let (s, _reg) = open(dir.path(), small_opts());
    assert_eq!(s.retain_consumers(|n| n == "kept").unwrap(), ["old-hash"]);
    s.close().unwrap();
    let (s, _reg) = open(dir.path(), small_opts());
    assert!(
        s.consumer("old-hash").unwrap().position() > old_at,
        "a forgotten consumer starts again at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_persists_cursors_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _reg) = open(
        dir.path(),
        WalOptions {
            fsync_interval: Duration::from_millis(20),
            ..small_opts()
        },
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&s).run_maintenance(stop.clone()));
    let c = s.consumer("m").unwrap();
    commit_round(&s, 3, 1);
    let end = read_all(s.wal_dir(), c.position()).end;
    c.ack(end);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let persisted = tributary_wal::read_cursors(dir.path());
        if persisted.get("m") == Some(&end) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cursor not persisted: {persisted:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn truncation_respects_cursors_and_checkpoints_series() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        min_time: Duration::ZERO,
        ..small_opts()
    };
    let (s, reg) = open(dir.path(), opts);
    let c = s.consumer("slow").unwrap();
    let now = now_ms();
    fill_segments(&s, 5, 40, now - 100_000);
    // The consumer has read up to somewhere in the third segment.
    let first = s.stats().first_segment.unwrap();
    c.ack(Position::new(first + 2, 100));
    let st = s.truncate_at(now + 1000).unwrap();
    assert_eq!(st.segments_deleted, 2, "{st:?}");
    assert_eq!(st.checkpoint, Some(first + 1));
    assert_eq!((st.dropped_max_time, st.dropped_max_bytes), (0, 0));
    assert_eq!(s.stats().first_segment, Some(first + 2));
    assert!(s
        .wal_dir()
        .join(format!("checkpoint.{:08}", first + 1))
        .is_dir());
    assert_eq!(
        metric_value(&reg, "prometheus_agent_checkpoint_creations_total"),
        1.0
    );

    // A reader resuming at the cursor learns every label it will meet.
    let mut known = std::collections::HashMap::new();
    load_series_before(s.wal_dir(), c.position(), |r, l| {
        known.insert(r, l);
    })
    .unwrap();
    let rest = read_all(s.wal_dir(), c.position());
    for x in &rest.samples {
        assert!(known.contains_key(&x.series) || rest.series.iter().any(|(r, _)| *r == x.series));
    }
    assert_eq!(known.len(), 40);

    // Once everything is acknowledged, everything but the head can go.
    commit_round(&s, 40, now + 5000);
    c.ack(read_all(s.wal_dir(), rest.end).end);
    let st = s.truncate_at(now + 10_000).unwrap();
    assert!(st.segments_deleted >= 1);
    assert_eq!(s.stats().segments, 1);
    assert_eq!(c.dropped(), tributary_wal::DroppedCounts::default());
}

#[test]
fn byte_cap_forces_deletion_and_counts_drops() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        max_bytes: Some(3 * SEG),
        compression: false,
        ..small_opts()
    };
    let (s, reg) = open(dir.path(), opts);
    let lagging = s.consumer("lagging").unwrap();
    let start = lagging.position();
    let now = now_ms();
    let rounds = fill_segments(&s, 8, 40, now);
    let total_before = read_all(s.wal_dir(), start).samples.len() as u64;
    assert_eq!(total_before, rounds as u64 * 40);
    let st = s.truncate_at(now + rounds + 1).unwrap();
    assert!(st.segments_deleted > 0);
    let kept = read_all(
        s.wal_dir(),
        Position::new(s.stats().first_segment.unwrap(), 0),
    )
    .samples
    .len() as u64;
    assert_eq!(lagging.dropped().max_bytes, total_before - kept);
    assert_eq!(lagging.dropped().max_time, 0);
    assert_eq!(st.dropped_max_bytes, total_before - kept);
    assert!(s.stats().bytes <= 3 * SEG + SEG, "{:?}", s.stats());
    assert!(lagging.position().segment >= s.stats().first_segment.unwrap());
    let text = metrics_text(&reg);
    assert!(text.contains(&format!(
        "tributary_wal_consumer_dropped_samples_total{{consumer=\"lagging\",reason=\"max_bytes\"}} {}",
        total_before - kept
    )), "{text}");
    // A reader still at the old position sees the gap, not an error.
    let got = read_all(s.wal_dir(), start);
    assert_eq!(
        got.skipped.first().map(|x| x.reason),
        Some(SkipReason::SegmentsDeleted)
    );
    assert_eq!(got.samples.len() as u64, kept);
}

#[test]
fn max_time_deletes_unsent_data() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _reg) = open(dir.path(), small_opts());
    let c = s.consumer("down").unwrap();
    let now = now_ms();
    let rounds = fill_segments(&s, 4, 40, now);
    // A reader's per-series map, as a remote-write queue keeps one.
    let mut per_series = tributary_model::RefMap::new();
    for r in 1..=40u64 {
        per_series.insert(tributary_model::SeriesRef(r), ());
    }
    // Nothing is old enough yet: the consumer pins everything.
    assert_eq!(s.truncate_at(now + 1000).unwrap().segments_deleted, 0);
    assert_eq!(s.series_gc_generation(), 0);
    let st = s.truncate_at(now + 5 * 3600 * 1000).unwrap();
    assert!(st.segments_deleted >= 3);
    assert_eq!(c.dropped().max_time, rounds as u64 * 40);
    assert_eq!(st.series_removed, 40);
    assert_eq!(s.stats().active_series, 0);
    // Readers learn that series were collected and can drop theirs.
    assert_eq!(s.series_gc_generation(), 1);
    s.retain_live(&mut per_series);
    assert!(per_series.is_empty());
}

#[test]
fn garbage_or_zeros_after_the_last_record_are_cut() {
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    for garbage in [vec![0u8; 5000], noise] {
        let dir = tempfile::tempdir().unwrap();
        let (seg, good_len) = {
            let (s, _reg) = open(dir.path(), WalOptions::default());
            let seg = s.consumer("c").unwrap().position().segment;
            for t in 0..10 {
                commit_round(&s, 10, t);
            }
            s.close().unwrap();
            let path = s.wal_dir().join(format!("{seg:08}"));
            (seg, fs::metadata(path).unwrap().len())
        };
        let path = dir.path().join("wal").join(format!("{seg:08}"));
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, &garbage).unwrap();
        drop(f);
        let (s, reg) = open(dir.path(), WalOptions::default());
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
        assert_eq!(
            metric_value(&reg, "prometheus_agent_corruptions_total"),
            1.0
        );
        let got = read_all(s.wal_dir(), Position::new(seg, 0));
        assert_eq!(got.samples.len(), 100);
        assert!(got.skipped.is_empty());
    }
}

#[test]
fn byte_cap_shrinks_oversized_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        max_bytes: Some(256 * 1024),
        ..WalOptions::default()
    };
    let (s, _reg) = open(dir.path(), opts);
    fill_segments(&s, 3, 40, 0);
    let first = s.stats().first_segment.unwrap();
    let len = fs::metadata(s.wal_dir().join(format!("{first:08}")))
        .unwrap()
        .len();
    assert!(
        len <= 64 * 1024,
        "segment of {len} bytes under a 256 KiB cap"
    );
}

#[test]
fn consumer_byte_cap_skips_only_that_consumers_oldest_data() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 2 * SEG;
    let mut opts = small_opts();
    opts.consumer_max_bytes.insert("slow".into(), cap);
    let (s, reg) = open(dir.path(), opts);
    let slow = s.consumer("slow").unwrap();
    let fast = s.consumer("fast").unwrap();
    let start = slow.position();
    let rounds = fill_segments(&s, 6, 40, now_ms());
    let total = rounds as u64 * 40;
    // The fast consumer has sent everything.
    let all = read_all(s.wal_dir(), start);
    assert_eq!(all.samples.len() as u64, total);
    fast.ack(all.end);

    s.maintain_now();
    let moved = slow.position();
    assert!(moved > start && moved.offset == 0, "slow cursor at {moved}");
    let backlog = s
        .stats()
        .consumers
        .iter()
        .find(|c| c.name == "slow")
        .unwrap()
        .backlog_bytes;
    assert!(backlog <= cap, "backlog {backlog} over the cap {cap}");
    // Exactly the skipped samples are counted, under their own reason.
    let kept = read_all(s.wal_dir(), moved).samples.len() as u64;
    let dropped = slow.dropped();
    assert_eq!(dropped.consumer_max_bytes + kept, total);
    assert_eq!((dropped.max_bytes, dropped.max_time), (0, 0));
    assert_eq!(fast.dropped().consumer_max_bytes, 0);
    assert_eq!(fast.position(), all.end);
    assert!(metrics_text(&reg).contains("tributary_wal_consumer_dropped_samples_total{consumer=\"slow\",reason=\"consumer_max_bytes\"}"));

    // Nobody needs the skipped segments now: regular truncation reclaims them.
    let st = s.truncate_at(now_ms() + 600_000).unwrap();
    assert!(st.segments_deleted >= 1);
    assert_eq!(st.dropped_max_bytes + st.dropped_max_time, 0);
    assert!(s.stats().first_segment.unwrap() >= moved.segment);
    // A second pass under the cap changes nothing.
    s.maintain_now();
    assert_eq!(
        slow.dropped().consumer_max_bytes,
        dropped.consumer_max_bytes
    );
}

/// A cursor file that is there but cannot be read stops the start with an
/// error naming it, rather than starting every endpoint at the WAL's end
/// (which would skip what they had not sent).
#[test]
fn an_unreadable_cursor_file_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("cursors")).unwrap();
    let err = AgentStorage::open(dir.path(), small_opts(), &mut Registry::default())
        .err()
        .expect("open must fail");
    let text = err.to_string();
    assert!(
        text.contains("read cursor file") && text.contains("cursors"),
        "{text}"
    );
    fs::remove_dir(dir.path().join("cursors")).unwrap();
    assert!(AgentStorage::open(dir.path(), small_opts(), &mut Registry::default()).is_ok());
}
