//! Durable delivery, end to end with the real binary: a SIGKILL during a
//! remote-write outage loses nothing, a dead endpoint does not hold back a
//! healthy one, the byte cap drops the oldest data and counts every
//! sample it dropped, and a WAL that filled its disk frees it once the
//! remote is back. The receiver is the real Prometheus (2.42, Debian).
//!
//! The target serves `dur_seq` = n on its n-th scrape and remembers when it
//! served each one, so "what was scraped" is exact and can be compared with
//! the values Prometheus stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// When each scrape `n` (1-based) was served.
type ServeLog = Arc<Mutex<Vec<Instant>>>;

/// A target serving `dur_seq n` plus `extra` series `dur_fill{i}` whose
/// values differ per series and scrape (so the WAL does not compress them
/// away).
fn seq_target(extra: usize) -> (TestTarget, ServeLog) {
    let log: ServeLog = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let t = TestTarget::start("text/plain; version=0.0.4", move |n| {
        let mut body = format!("# TYPE dur_seq gauge\ndur_seq {n}\n");
        for i in 0..extra {
            body.push_str(&format!(
                "dur_fill{{i=\"{i}\"}} {}\n",
                n as f64 * 1.000_37 + i as f64 * 7.13
            ));
        }
        l.lock().unwrap().push(Instant::now());
        body
    });
    (t, log)
}

/// Scrape numbers served before `before`.
fn served_before(log: &ServeLog, before: Instant) -> BTreeSet<u64> {
    log.lock()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, at)| **at < before)
        .map(|(i, _)| i as u64 + 1)
        .collect()
}

fn config(target: &str, remotes: &[(&str, u16)]) -> String {
    config_every(target, remotes, "1s", "800ms")
}

fn config_every(target: &str, remotes: &[(&str, u16)], interval: &str, timeout: &str) -> String {
    let mut c = format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {timeout}\nscrape_configs:\n  - job_name: dur\n    static_configs:\n      - targets: [\"{target}\"]\nremote_write:\n"
    );
    for (name, port) in remotes {
        c.push_str(&format!(
            "  - url: http://127.0.0.1:{port}/api/v1/write\n    name: {name}\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n"
        ));
    }
    c
}

/// Every `dur_seq` value Prometheus stored in the last hour.
fn stored_seqs(prom_port: u16) -> BTreeSet<u64> {
    let Some(r) = prom_query(prom_port, "dur_seq[1h]") else {
        return BTreeSet::new();
    };
    let mut out = BTreeSet::new();
    for series in r.as_array().into_iter().flatten() {
        for v in series["values"].as_array().into_iter().flatten() {
            if let Some(n) = v[1].as_str().and_then(|s| s.parse::<f64>().ok()) {
                out.insert(n as u64);
            }
        }
    }
    out
}

/// Waits until Prometheus holds every value of `expected`; returns what is
/// still missing at the deadline.
fn wait_delivered(prom_port: u16, expected: &BTreeSet<u64>, limit: Duration) -> Vec<u64> {
    let mut missing = Vec::new();
    let done = wait_for(limit, || {
        let got = stored_seqs(prom_port);
        missing = expected.difference(&got).copied().collect();
        missing.is_empty().then_some(())
    });
    if done.is_some() {
        Vec::new()
    } else {
        missing
    }
}

/// The sum of every sample of `name` in the agent's /metrics whose labels
/// contain `label_filter`.
fn agent_metric(port: u16, name: &str, label_filter: &str) -> Option<f64> {
    let (status, body) = http_get(
        &format!("http://127.0.0.1:{port}/metrics"),
        Duration::from_secs(5),
    )?;
    if status != 200 {
        return None;
    }
    let mut sum = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = series.split('{').next().unwrap_or("");
        if metric == name && series.contains(label_filter) {
            *sum.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    sum
}

/// (segment, offset) of a consumer's durable cursor, as persisted in
/// `<storage>/cursors` (stored about every second).
fn cursor(data_dir: &std::path::Path, name: &str) -> Option<(u64, u64)> {
    let c = tributary_wal::read_cursors(data_dir).remove(name)?;
    Some((u64::from(c.segment), c.offset))
}

fn wait_scrapes(log: &ServeLog, n: usize, limit: Duration) {
    let reached = wait_for(limit, || (log.lock().unwrap().len() >= n).then_some(()));
    assert!(reached.is_some(), "target was not scraped {n} times");
}

#[test]
fn sigkill_during_an_outage_then_restart_loses_nothing() {
    sigkill_during_an_outage_then_restart(|_| {});
}

/// The cursor file's both slots damaged while the agent was down (a bad
/// disk block): where the endpoint was is lost, so it starts again from
/// the WAL's oldest record rather than its end.
#[test]
fn a_damaged_cursor_file_costs_no_scrape_across_a_restart() {
    sigkill_during_an_outage_then_restart(|dir| {
        let cursors = dir.join("data").join("cursors");
        let len = std::fs::metadata(&cursors).expect("a cursor file").len();
        std::fs::write(&cursors, vec![0u8; len as usize]).unwrap();
    });
}

/// Scrapes pile up in the WAL with the receiver down, the agent is killed,
/// `between` runs on its storage directory, and the restarted agent must
/// deliver every scrape committed before the kill and every one after.
fn sigkill_during_an_outage_then_restart(between: impl Fn(&std::path::Path)) {
    let dir = tempfile::tempdir().unwrap();
    let (target, log) = seq_target(0);
    let rw_port = free_port();
    let cfg = config(&target.addr, &[("rw", rw_port)]);

    // The receiver is down: everything scraped piles up in the WAL.
    let mut agent = start_tributary(dir.path(), &cfg, free_port(), &[]);
    wait_scrapes(&log, 6, Duration::from_secs(30));
    // A scrape served in the last moments before the kill may not have been
    // committed yet; everything older must survive.
    let killed_at = Instant::now();
    agent.sigkill();
    let must_survive = served_before(&log, killed_at - Duration::from_millis(500));
    assert!(must_survive.len() >= 5);

    between(dir.path());
    let before_restart = log.lock().unwrap().len();
    let _agent = start_tributary(dir.path(), &cfg, free_port(), &[]);
    wait_scrapes(&log, before_restart + 3, Duration::from_secs(30));
    let _prom = start_prometheus(dir.path(), rw_port);
    // Let a few scrapes happen with the receiver up, then demand all of them.
    let served = log.lock().unwrap().len();
    wait_scrapes(&log, served + 2, Duration::from_secs(30));
    let after_restart: BTreeSet<u64> = served_before(&log, Instant::now())
        .into_iter()
        .filter(|n| *n as usize > before_restart)
        .collect();
    let mut expected = must_survive.clone();
    expected.extend(after_restart.iter().copied());

    let missing = wait_delivered(rw_port, &expected, Duration::from_secs(60));
    assert!(
        missing.is_empty(),
        "scrapes lost across SIGKILL + outage: {missing:?} (expected {} values)",
        expected.len()
    );
}

#[test]
fn a_dead_endpoint_does_not_hold_back_a_healthy_one() {
    let dir = tempfile::tempdir().unwrap();
    let (target, log) = seq_target(0);
    let prom_port = free_port();
    let dead_port = free_port();
    let _prom = start_prometheus(dir.path(), prom_port);
    let port = free_port();
    let _agent = start_tributary(
        dir.path(),
        &config(&target.addr, &[("healthy", prom_port), ("dead", dead_port)]),
        port,
        &[],
    );

    let data = dir.path().join("data");
    wait_scrapes(&log, 4, Duration::from_secs(30));
    let first_healthy = wait_for(Duration::from_secs(20), || {
        cursor(&data, "healthy").filter(|c| c.1 > 0)
    })
    .expect("healthy cursor never moved");
    let dead_start = cursor(&data, "dead").expect("dead endpoint has a cursor");

    let served = log.lock().unwrap().len();
    wait_scrapes(&log, served + 4, Duration::from_secs(30));
    // Everything served up to a second ago is already in Prometheus (or
    // arrives within a few batch deadlines): the dead queue's retries do not
    // delay it.
    let expected = served_before(&log, Instant::now() - Duration::from_secs(1));
    let missing = wait_delivered(prom_port, &expected, Duration::from_secs(10));
    assert!(missing.is_empty(), "healthy endpoint missing {missing:?}");

    let healthy_later = wait_for(Duration::from_secs(10), || {
        cursor(&data, "healthy").filter(|c| *c > first_healthy)
    })
    .expect("healthy cursor stopped advancing while the other endpoint is down");
    let dead_now = cursor(&data, "dead").unwrap();
    assert_eq!(
        dead_now, dead_start,
        "the dead endpoint's cursor moved without deliveries"
    );
    assert!(
        healthy_later > dead_now,
        "healthy {healthy_later:?} vs dead {dead_now:?}"
    );
    let failed = agent_metric(
        port,
        "prometheus_remote_storage_samples_failed_total",
        "remote_name=\"dead\"",
    )
    .unwrap_or(0.0)
        + agent_metric(
            port,
            "prometheus_remote_storage_samples_retried_total",
            "remote_name=\"dead\"",
        )
        .unwrap_or(0.0);
    assert!(
        failed > 0.0,
        "the dead endpoint reported no failed or retried samples"
    );
}

#[test]
fn byte_cap_drops_the_oldest_data_and_counts_every_dropped_sample() {
    const EXTRA: usize = 8000;
    // dur_seq + dur_fill + the 5 synthetic series, per scrape.
    const PER_SCRAPE: f64 = (EXTRA + 1 + 5) as f64;
    let cap: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (target, log) = seq_target(EXTRA);
    let rw_port = free_port();
    let port = free_port();
    let _agent = start_tributary(
        dir.path(),
        &config_every(&target.addr, &[("capped", rw_port)], "500ms", "400ms"),
        port,
        &["--storage.agent.retention.max-size=1MiB"],
    );

    // The endpoint is down; the WAL hits the cap and the oldest segments go.
    // Wait for far more than the queue can hold in memory (the segment its
    // reader has open plus `capacity`): samples already read may still be
    // delivered, so the counter is an upper bound on what is lost.
    let dropped = wait_for(Duration::from_secs(120), || {
        agent_metric(
            port,
            "tributary_wal_consumer_dropped_samples_total",
            "reason=\"max_bytes\"",
        )
        .filter(|v| *v >= 20.0 * PER_SCRAPE)
    })
    .expect("the byte cap never dropped anything");
    assert_eq!(
        dropped % PER_SCRAPE,
        0.0,
        "dropped {dropped} is not whole scrapes of {PER_SCRAPE} samples"
    );
    let size = agent_metric(port, "prometheus_tsdb_wal_storage_size_bytes", "").unwrap();
    // The cap is enforced every second, so allow about a second of growth.
    assert!(
        size <= (cap + cap / 2) as f64,
        "WAL is {size} bytes under a {cap} byte cap"
    );

    // Bring the endpoint up: the newest data arrives, and whatever never
    // arrives was counted as dropped.
    let _prom = start_prometheus(dir.path(), rw_port);
    let recent = served_before(&log, Instant::now());
    let newest: BTreeSet<u64> = recent.iter().rev().take(2).copied().collect();
    let missing = wait_delivered(rw_port, &newest, Duration::from_secs(60));
    assert!(
        missing.is_empty(),
        "newest scrapes {missing:?} never arrived"
    );
    let stored = stored_seqs(rw_port);
    let lost = recent.iter().filter(|n| !stored.contains(n)).count() as f64;
    let dropped_total = agent_metric(
        port,
        "tributary_wal_consumer_dropped_samples_total",
        "consumer=\"capped\"",
    )
    .unwrap();
    assert!(
        lost > 0.0,
        "the cap dropped {dropped_total} samples but every scrape arrived"
    );
    assert!(
        lost * PER_SCRAPE <= dropped_total,
        "{lost} scrapes never arrived but only {dropped_total} samples were counted as dropped"
    );
}

/// Flips one byte in the data of the first record that starts past the
/// middle of `segment` (all records of a small WAL are single FULL
/// fragments: 7-byte header, then data), so only that record's CRC fails.
/// Returns the damaged record's offset.
fn flip_byte_in_a_middle_record(segment: &std::path::Path) -> usize {
    let mut bytes = std::fs::read(segment).unwrap();
    let mut off = 0usize;
    while off + 7 <= bytes.len() {
        let len = u16::from_be_bytes([bytes[off + 1], bytes[off + 2]]) as usize;
        assert_eq!(bytes[off] & 0x07, 1, "expected FULL fragments only");
        if off >= bytes.len() / 2 {
            bytes[off + 7 + len / 2] ^= 0x55;
            std::fs::write(segment, &bytes).unwrap();
            return off;
        }
        off += 7 + len;
    }
    panic!("no record past the middle of {}", segment.display());
}

#[test]
fn a_corrupted_record_costs_exactly_one_scrape_and_the_agent_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let (target, log) = seq_target(0);
    let rw_port = free_port();
    let cfg = config_every(&target.addr, &[("rw", rw_port)], "500ms", "400ms");

    // Outage: scrapes pile up in the WAL; then a clean stop.
    let mut agent = start_tributary(dir.path(), &cfg, free_port(), &[]);
    wait_scrapes(&log, 16, Duration::from_secs(30));
    agent.terminate();
    let served_first_run = served_before(&log, Instant::now());

    let wal = dir.path().join("data").join("wal");
    let segment = std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
        .map(|e| e.path())
        .max()
        .expect("a non-empty WAL segment");
    flip_byte_in_a_middle_record(&segment);

    let port = free_port();
    let _agent = start_tributary(dir.path(), &cfg, port, &[]);
    let corruptions = agent_metric(port, "prometheus_agent_corruptions_total", "").unwrap_or(0.0);
    assert_eq!(
        corruptions, 1.0,
        "the flipped record was not detected exactly once"
    );
    let _prom = start_prometheus(dir.path(), rw_port);
    let served = log.lock().unwrap().len();
    wait_scrapes(&log, served + 3, Duration::from_secs(30));
    let expected = served_before(&log, Instant::now() - Duration::from_millis(500));
    // Everything but one scrape of the first run arrives, and the agent
    // keeps scraping and delivering after the damage.
    let mut missing = Vec::new();
    wait_for(Duration::from_secs(60), || {
        let got = stored_seqs(rw_port);
        missing = expected.difference(&got).copied().collect::<Vec<_>>();
        (missing.len() <= 1).then_some(())
    });
    assert_eq!(
        missing.len(),
        1,
        "expected exactly one lost scrape, missing {missing:?}"
    );
    assert!(
        served_first_run.contains(&missing[0]),
        "the lost scrape {} is not from before the damage",
        missing[0]
    );
}

/// Whether a child may mount a tmpfs in a mount namespace of its own (as
/// root, or through an unprivileged user namespace).
fn can_mount_tmpfs(at: &std::path::Path) -> bool {
    std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=1m probe \"$0\""])
        .arg(at)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Free bytes of the filesystem holding `path`, as `df` reports them.
fn available_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// Writes zeros into `path` until it holds `len` bytes or the disk is full.
fn fill(path: &std::path::Path, len: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
}

/// The agent's data directory is on a 16 MiB tmpfs (in a mount namespace of
/// its own, so nothing outlives the agent). With the remote down, once the
/// WAL holds 2 MiB the test fills the rest of the disk but for 256 KiB; the
/// WAL runs out of space, and commits wait in memory. When the remote comes
/// back, the consumed segments can only be deleted after a checkpoint has
/// been written, for which there is no room but the space the checkpoint
/// reserve held: every scrape must still arrive, scrapes after the
/// recovery included, and the reserve must be taken again.
#[test]
fn a_wal_that_filled_its_disk_frees_it_once_the_remote_is_back() {
    const EXTRA: usize = 5000;
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if !can_mount_tmpfs(&mnt) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to run `unshare -rm` and mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs in a mount namespace here");
        return;
    }
    let (target, log) = seq_target(EXTRA);
    let rw_port = free_port();
    let port = free_port();
    let cfg = dir.path().join("tributary.yml");
    std::fs::write(
        &cfg,
        config_every(&target.addr, &[("rw", rw_port)], "500ms", "400ms"),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "-rm",
        "sh",
        "-c",
        "mount -t tmpfs -o size=16m tributary-disk \"$0\" && exec \"$@\"",
    ])
    .arg(&mnt)
    .arg(tributary_bin())
    .arg(format!("--config.file={}", cfg.display()))
    .arg(format!(
        "--storage.agent.path={}",
        mnt.join("data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .args([
        "--storage.agent.wal-truncate-frequency=2s",
        "--storage.agent.retention.min-time=1s",
    ]);
    let agent = Proc::spawn("tributary", &mut cmd, &dir.path().join("agent.log"));
    let agent = wait_ready(agent, &format!("http://127.0.0.1:{port}/-/ready"));
    // The disk as the agent sees it.
    let disk =
        std::path::PathBuf::from(format!("/proc/{}/root{}", agent.child.id(), mnt.display()));
    let metric = |name: &str| agent_metric(port, name, "").unwrap_or(0.0);
    let reserve = metric("tributary_wal_checkpoint_reserve_bytes");
    assert!(reserve >= 1_048_576.0, "reserve of {reserve} bytes");
    assert!(disk.join("data/checkpoint.reserve").exists());

    // What the recovery frees must exceed what waits in memory until then.
    let grown = wait_for(Duration::from_secs(60), || {
        Some(metric("prometheus_tsdb_wal_storage_size_bytes")).filter(|v| *v >= 2_097_152.0)
    });
    assert!(grown.is_some(), "the WAL did not grow to 2 MiB");
    let free = available_bytes(&disk);
    fill(&disk.join("filler"), free.saturating_sub(256 << 10));
    let full = wait_for(Duration::from_secs(30), || {
        Some(metric("prometheus_tsdb_wal_writes_failed_total")).filter(|v| *v > 0.0)
    });
    assert!(full.is_some(), "the WAL never ran out of space");
    let buffered = wait_for(Duration::from_secs(30), || {
        Some(metric("tributary_wal_write_buffer_bytes")).filter(|v| *v > 0.0)
    });
    assert!(buffered.is_some(), "no commit waited for the disk");

    let _prom = start_prometheus(dir.path(), rw_port);
    let recovered = wait_for(Duration::from_secs(60), || {
        (metric("tributary_wal_write_buffer_bytes") == 0.0).then_some(())
    });
    assert!(
        recovered.is_some(),
        "commits still wait for the disk: {}",
        agent.log_text()
    );
    // Scrapes after the recovery are written and delivered too.
    let served = log.lock().unwrap().len();
    wait_scrapes(&log, served + 3, Duration::from_secs(30));
    let expected = served_before(&log, Instant::now() - Duration::from_millis(500));
    let missing = wait_delivered(rw_port, &expected, Duration::from_secs(60));
    assert!(
        missing.is_empty(),
        "{} of {} scrapes never arrived: {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(
        metric("tributary_wal_write_buffer_dropped_samples_total"),
        0.0
    );
    assert!(metric("prometheus_agent_checkpoint_creations_total") > 0.0);
    let retaken = wait_for(Duration::from_secs(30), || {
        Some(metric("tributary_wal_checkpoint_reserve_bytes")).filter(|v| *v >= 1_048_576.0)
    });
    assert!(retaken.is_some(), "the reserve was not taken again");
    assert!(disk.join("data/checkpoint.reserve").exists());
}
