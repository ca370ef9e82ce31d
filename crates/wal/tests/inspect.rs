//! `inspect` and `repair` on real WAL directories: counts match what was
//! written, damage is located, and repair cuts exactly the damaged record
//! while keeping consumer cursors on the same logical record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tributary_model::{Labels, Storage};
use tributary_wal::record::{self, RecordType};
use tributary_wal::{
    inspect, repair, AgentStorage, Position, RefSample, WalError, WalOptions, WalReader,
};

const SERIES: usize = 40;

fn opts() -> WalOptions {
    WalOptions {
        segment_size: 64 * 1024,
        compression: false,
        ..WalOptions::default()
    }
}

fn open(dir: &Path) -> Arc<AgentStorage> {
    AgentStorage::open(dir, opts(), &mut Registry::default()).unwrap()
}

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", "m"),
        ("i", &i.to_string()),
        ("pad", "a-longer-label-value-to-fill-pages"),
    ])
}

/// Commits `rounds` rounds of one sample per series (t = round index).
fn write_rounds(s: &AgentStorage, rounds: i64) {
    for t in 0..rounds {
        let mut app = s.appender();
        for i in 0..SERIES {
            let r = app.series(&labels(i)).unwrap();
            let v = ((t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64) as f64;
            app.append(r, t, v).unwrap();
        }
        app.commit().unwrap();
    }
}

fn samples_from(wal_dir: &Path, start: Position) -> (Vec<RefSample>, usize) {
    let mut r = WalReader::open(wal_dir, start).unwrap();
    let (mut out, mut skipped) = (Vec::new(), 0);
    while let Some(rec) = r.next_record().unwrap() {
        if rec.skipped.is_some() {
            skipped += 1;
        } else if record::record_type(rec.payload) == Some(RecordType::Samples) {
            record::decode_samples(rec.payload, &mut out).unwrap();
        }
    }
    (out, skipped)
}

#[test]
fn inspect_names_a_damaged_cursor_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.consumer("rw").unwrap();
    write_rounds(&s, 2);
    s.close().unwrap();
    drop(s);
    let healthy = inspect(dir.path()).unwrap();
    assert!(!healthy.cursors_damaged);
    assert!(!healthy.to_string().contains("cursor file damaged"));

    let cursors = dir.path().join("cursors");
    let len = fs::metadata(&cursors).unwrap().len() as usize;
    fs::write(&cursors, vec![0xa5; len]).unwrap();
    let report = inspect(dir.path()).unwrap();
    assert!(report.cursors_damaged);
    assert!(report.consumers.is_empty());
    let text = report.to_string();
    assert!(
        text.contains("consumer cursor file damaged: at the next start every endpoint sends the WAL from its oldest record"),
        "{text}"
    );
}

#[test]
fn inspect_counts_records_series_samples_and_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let c = s.consumer("rw").unwrap();
    write_rounds(&s, 200);
    // Acknowledge the first 10 rounds.
    let mut r = WalReader::open(s.wal_dir(), c.position()).unwrap();
    let mut rounds_seen = 0;
    while rounds_seen < 10 {
        let rec = r.next_record().unwrap().unwrap();
        if record::record_type(rec.payload) == Some(RecordType::Samples) {
            rounds_seen += 1;
            c.ack(rec.end);
        }
    }
    s.close().unwrap();
    drop(s);

    let report = inspect(dir.path()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.series, SERIES as u64);
    assert_eq!(report.samples, 200 * SERIES as u64);
    assert_eq!(report.records.samples, 200);
    assert_eq!(report.records.series, 1);
    assert_eq!((report.min_time, report.max_time), (Some(0), Some(199)));
    assert!(report.segments.len() >= 2, "{report}");
    let rw = report.consumers.iter().find(|c| c.name == "rw").unwrap();
    assert_eq!(rw.backlog_samples, 190 * SERIES as u64);
    assert!(rw.backlog_bytes > 0);
    // Also accepts the wal directory itself.
    let again = inspect(&dir.path().join("wal")).unwrap();
    assert_eq!(again.samples, report.samples);
    let text = report.to_string();
    assert!(text.contains("consumer \"rw\""), "{text}");
    assert!(text.contains("no corruption found"), "{text}");
}

#[test]
fn repair_cuts_only_the_damaged_record_and_keeps_cursors_on_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let first;
    {
        let s = open(dir.path());
        let c = s.consumer("rw").unwrap();
        first = c.position().segment;
        write_rounds(&s, 400);
        assert!(s.stats().segments >= 3);
        // A cursor in the middle of the damaged segment, past the damage.
        let mut r = WalReader::open(s.wal_dir(), Position::new(first + 1, 0)).unwrap();
        let mut ends = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            if rec.end.segment != first + 1 {
                break;
            }
            ends.push(rec.end);
        }
        c.ack(ends[ends.len() - 2]);
        s.close().unwrap();
    }
    let victim = dir.path().join("wal").join(format!("{:08}", first + 1));
    let mut bytes = fs::read(&victim).unwrap();
    bytes[20_000] ^= 0x5a;
    fs::write(&victim, &bytes).unwrap();

    let before = inspect(dir.path()).unwrap();
    let damage: Vec<_> = before.damage().cloned().collect();
    assert_eq!(damage.len(), 1, "{before}");
    assert_eq!(damage[0].segment, first + 1);
    assert!(
        damage[0].from <= 20_000 && damage[0].to > 20_000,
        "{damage:?}"
    );
    let rw_before = before
        .consumers
        .iter()
        .find(|c| c.name == "rw")
        .unwrap()
        .clone();
    assert!(before.to_string().contains("CORRUPT segment"));

    let report = repair(dir.path()).unwrap();
    assert_eq!(report.segments_rewritten, vec![first + 1]);
    assert_eq!(report.bytes_cut, damage[0].to - damage[0].from);
    assert_eq!(report.cursors_moved.len(), 1, "{report:?}");

    let after = inspect(dir.path()).unwrap();
    assert!(after.is_clean(), "{after}");
    // Exactly one round (one Samples record) was lost, nothing else.
    assert_eq!(after.samples, before.samples);
    assert_eq!(after.samples, 399 * SERIES as u64);
    let rw_after = after.consumers.iter().find(|c| c.name == "rw").unwrap();
    assert_eq!(
        rw_after.backlog_samples, rw_before.backlog_samples,
        "cursor moved to a different record"
    );

    // The agent opens it without finding corruption, and the reader sees
    // every remaining round from the start without gaps.
    let mut reg = Registry::default();
    let s = AgentStorage::open(dir.path(), opts(), &mut reg).unwrap();
    let (got, skipped) = samples_from(s.wal_dir(), Position::new(first, 0));
    assert_eq!(skipped, 0);
    assert_eq!(got.len(), 399 * SERIES);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("prometheus_agent_corruptions_total 0"),
        "{text}"
    );
}

#[test]
fn repair_cuts_a_torn_tail_and_refuses_a_locked_directory() {
    let dir = tempfile::tempdir().unwrap();
    let seg;
    {
        let s = open(dir.path());
        seg = s.consumer("rw").unwrap().position().segment;
        write_rounds(&s, 5);
        s.close().unwrap();
    }
    let path = dir.path().join("wal").join(format!("{seg:08}"));
    let good = fs::metadata(&path).unwrap().len();
    // Remove the empty segment the close left behind, so `seg` is newest,
    // then tear its last record.
    for entry in fs::read_dir(dir.path().join("wal")).unwrap().flatten() {
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > seg))
        {
            fs::remove_file(entry.path()).unwrap();
        }
    }
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(good - 100)
        .unwrap();

    let found = inspect(dir.path()).unwrap();
    let damage: Vec<_> = found.damage().cloned().collect();
    assert_eq!(damage.len(), 1, "{found}");
    assert_eq!(damage[0].to, good - 100);
    assert_eq!(found.samples, 4 * SERIES as u64);

    let report = repair(dir.path()).unwrap();
    assert_eq!(report.segments_rewritten, vec![seg]);
    assert!(report.cursors_moved.is_empty());
    assert_eq!(fs::metadata(&path).unwrap().len(), damage[0].from);
    let after = inspect(dir.path()).unwrap();
    assert!(after.is_clean(), "{after}");
    assert_eq!(after.samples, 4 * SERIES as u64);

    // While an agent holds the lock, repair refuses.
    let _agent = open(dir.path());
    assert!(matches!(repair(dir.path()), Err(WalError::Locked(_))));
}
