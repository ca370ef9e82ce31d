//! Targets discovered from files and HTTP SD appear, change and disappear
//! under a running agent, and the scraped series follow: new targets'
//! series arrive, removed targets' series get staleness markers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

fn series_of(seen: &Arc<Mutex<Seen>>, key: &str) -> bool {
    seen.lock().unwrap().series.contains(key)
}

fn stale(seen: &Arc<Mutex<Seen>>, key: &str) -> bool {
    seen.lock().unwrap().stale.contains(key)
}

fn config(job_block: &str, rw: u16) -> String {
    format!("global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n{job_block}remote_write:\n  - url: http://127.0.0.1:{rw}/api/v1/write\n    queue_config:\n      batch_send_deadline: 200ms\n")
}

#[test]
fn file_sd_targets_appear_change_and_disappear() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestTarget::start("text/plain; version=0.0.4", |_| "sd_metric 1\n".into());
    let b = TestTarget::start("text/plain; version=0.0.4", |_| "sd_metric 2\n".into());
    let sd = dir.path().join("targets.json");
    let write = |targets: &[&TestTarget], label: &str| {
        let list: Vec<String> = targets.iter().map(|t| format!("\"{}\"", t.addr)).collect();
        let tmp = dir.path().join("targets.json.tmp");
        std::fs::write(
            &tmp,
            format!(
                "[{{\"targets\": [{}], \"labels\": {{\"rack\": \"{label}\"}}}}]",
                list.join(",")
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, &sd).unwrap();
    };
    write(&[&a], "r1");
    let (_sink, rw, seen) = start_sink(dir.path(), "file-sd".into());
    let job = format!("  - job_name: files\n    file_sd_configs:\n      - files: [\"{}\"]\n        refresh_interval: 1m\n", sd.display());
    let _agent = start_tributary(
        dir.path(),
        &config(&job, rw),
        free_port(),
        &["--scrape.discovery-reload-interval=200ms"],
    );

    let key_a1 = format!(
        "sd_metric{{instance=\"{}\",job=\"files\",rack=\"r1\"}}",
        a.addr
    );
    assert!(
        wait_for(Duration::from_secs(20), || series_of(&seen, &key_a1)
            .then_some(()))
        .is_some(),
        "target A never scraped"
    );

    // Change: A's label changes (a new series), B appears.
    write(&[&a, &b], "r2");
    let key_a2 = format!(
        "sd_metric{{instance=\"{}\",job=\"files\",rack=\"r2\"}}",
        a.addr
    );
    let key_b2 = format!(
        "sd_metric{{instance=\"{}\",job=\"files\",rack=\"r2\"}}",
        b.addr
    );
    assert!(
        wait_for(Duration::from_secs(20), || (series_of(&seen, &key_a2)
            && series_of(&seen, &key_b2))
        .then_some(()))
        .is_some(),
        "changed targets not followed"
    );
    // The old label set's target was removed from discovery: its series go stale.
    assert!(
        wait_for(Duration::from_secs(20), || stale(&seen, &key_a1)
            .then_some(()))
        .is_some(),
        "no staleness marker for the replaced target"
    );

    // Disappear: B leaves; its series (and up) go stale, A's do not.
    write(&[&a], "r2");
    let up_b2 = format!("up{{instance=\"{}\",job=\"files\",rack=\"r2\"}}", b.addr);
    assert!(
        wait_for(Duration::from_secs(20), || (stale(&seen, &key_b2)
            && stale(&seen, &up_b2))
        .then_some(()))
        .is_some(),
        "no staleness markers for the removed target"
    );
    assert!(
        !stale(&seen, &key_a2),
        "a target still discovered was marked stale"
    );
}

/// A tiny HTTP SD server whose answer the test can change.
fn start_http_sd(body: Arc<Mutex<String>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let text = body.lock().unwrap().clone();
            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
        }
    });
    addr
}

#[test]
fn http_sd_targets_appear_and_disappear() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestTarget::start("text/plain; version=0.0.4", |_| "http_sd_metric 1\n".into());
    let body = Arc::new(Mutex::new(format!(
        "[{{\"targets\": [\"{}\"], \"labels\": {{\"src\": \"http\"}}}}]",
        a.addr
    )));
    let sd = start_http_sd(body.clone());
    let (_sink, rw, seen) = start_sink(dir.path(), "http-sd".into());
    let job = format!("  - job_name: web\n    http_sd_configs:\n      - url: http://{sd}/targets\n        refresh_interval: 1s\n");
    let _agent = start_tributary(
        dir.path(),
        &config(&job, rw),
        free_port(),
        &["--scrape.discovery-reload-interval=200ms"],
    );
    let key = format!(
        "http_sd_metric{{instance=\"{}\",job=\"web\",src=\"http\"}}",
        a.addr
    );
    assert!(
        wait_for(Duration::from_secs(20), || series_of(&seen, &key)
            .then_some(()))
        .is_some(),
        "HTTP SD target never scraped"
    );
    *body.lock().unwrap() = "[]".into();
    assert!(
        wait_for(Duration::from_secs(20), || stale(&seen, &key).then_some(())).is_some(),
        "no staleness marker after the target left HTTP SD"
    );
}
