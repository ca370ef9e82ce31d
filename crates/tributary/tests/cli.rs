//! The binary's command line behaves like Prometheus's in agent mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::tributary_bin;

#[test]
fn server_only_flags_are_rejected_with_exit_code_3() {
    let out = Command::new(tributary_bin())
        .args([
            "--storage.tsdb.path=/tmp/x",
            "--rules.alert.for-grace-period=1m",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("The following flag(s) can not be used in agent mode: [\"--storage.tsdb.path\" \"--rules.alert.for-grace-period\"]"), "{err}");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = Command::new(tributary_bin())
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn invalid_config_exits_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 10s\nscrape_configs:\n  - job_name: a\n    scrape_timeout: 1m\n    static_configs:\n      - targets: ['x:1']\n").unwrap();
    let out = Command::new(tributary_bin())
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.agent.path={}",
            dir.path().join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yml:5"), "{err}");
    assert!(err.contains("scrape_timeout"), "{err}");
}

#[test]
fn check_config_reports_success_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['x:1']\n",
    )
    .unwrap();
    let out = Command::new(tributary_bin())
        .args(["check", "config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "scrape_configs:\n  - job_name: a\n    bogus_field: 1\n",
    )
    .unwrap();
    let out = Command::new(tributary_bin())
        .args(["check", "config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus_field"), "{err}");
}

#[test]
fn check_metrics_validates_stdin() {
    use std::io::Write;
    let mut child = Command::new(tributary_bin())
        .args(["check", "metrics", "--format=prometheus"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"ok_metric{a=\"b\"} 1\nbroken{ 2\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains('2'),
        "line number expected"
    );
}

#[test]
fn check_wal_reports_a_clean_wal_and_finds_damage() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    // A WAL written by the agent itself.
    let target = common::TestTarget::start("text/plain; version=0.0.4", |n| format!("m {n}\n"));
    let cfg = format!("global:\n  scrape_interval: 200ms\n  scrape_timeout: 100ms\nscrape_configs:\n  - job_name: w\n    static_configs:\n      - targets: [\"{}\"]\n", target.addr);
    let mut agent = common::start_tributary(dir.path(), &cfg, common::free_port(), &[]);
    common::wait_for(std::time::Duration::from_secs(10), || {
        (target.scrapes.load(std::sync::atomic::Ordering::SeqCst) >= 5).then_some(())
    });
    agent.terminate();
    let data = dir.path().join("data");
    let out = Command::new(tributary_bin())
        .args(["check", "wal"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("clean"), "{text}");

    // Flip bytes in the middle of the first segment: damage is found, then repaired.
    let seg = data.join("wal").join("00000000");
    let len = std::fs::metadata(&seg).unwrap().len();
    assert!(len > 200, "segment too small: {len}");
    let mut f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.seek(SeekFrom::Start(60)).unwrap();
    f.write_all(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
    drop(f);
    let out = Command::new(tributary_bin())
        .args(["check", "wal"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(tributary_bin())
        .args(["check", "wal", "--repair"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(tributary_bin())
        .args(["check", "wal"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "still damaged after repair: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The "Max open files" soft and hard limits of a process, from
/// `/proc/PID/limits`.
fn open_files_limits(pid: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap().to_string(),
        fields.next().unwrap().to_string(),
    )
}

/// Go lifts Prometheus's soft open-file limit to the hard one; the agent
/// does the same, so a host's thousand targets fit under a shell's or a
/// service's soft limit of 1,024, and logs the limits as Prometheus does.
#[test]
fn the_open_file_soft_limit_is_raised_to_the_hard_limit() {
    let (_, hard) = open_files_limits("self");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.yml");
    std::fs::write(
        &cfg,
        "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
    )
    .unwrap();
    let port = common::free_port();
    // The agent starts with a soft limit of 256 under the test's hard limit.
    let agent = common::Proc::spawn(
        "tributary",
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -Sn 256 && exec \"$0\" \"$@\"")
            .arg(tributary_bin())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.agent.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        &dir.path().join("agent.log"),
    );
    let mut agent = common::wait_ready(agent, &format!("http://127.0.0.1:{port}/-/ready"));
    let pid = agent.child.id().to_string();
    assert_eq!(open_files_limits(&pid), (hard.clone(), hard.clone()));
    let log = agent.log_text();
    assert!(
        log.contains(&format!("fd_limits=\"(soft={hard}, hard={hard})\"")),
        "{log}"
    );
    agent.terminate();
}
