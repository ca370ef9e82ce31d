//! Hostile targets cost bounded memory and time and never delay others:
//! a gzip bomb fails its scrape with "body size limit exceeded" (the
//! decompressed body is capped while it is inflated), a slowloris target
//! times out, and a healthy target in the same job keeps its schedule.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use tributary_model::testing::MemStorage;
use tributary_scrape::{Health, ScrapeManager};

/// 256 MiB of zeros as 256 concatenated gzip members of 1 MiB each
/// (~250 KiB on the wire): cheap to build, a bomb to inflate.
fn gzip_bomb() -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = enc.finish().unwrap();
    member.repeat(256)
}

/// A scrape manager scraping `targets` every second (900 ms timeout,
/// 1 MB body limit) into memory.
fn scrape(targets: &[String]) -> (MemStorage, ScrapeManager) {
    let yaml = "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: j\n    body_size_limit: 1MB\n    static_configs: []\n";
    let cfg = tributary_config::load_str(yaml, "t.yml", std::path::Path::new(".")).unwrap();
    let storage = MemStorage::new();
    let mut m = common::new_manager(Arc::new(storage.clone()));
    common::run_job_j(&mut m, &cfg, targets, &[]);
    (storage, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bomb_and_slow_target_fail_alone() {
    let bomb = Arc::new(gzip_bomb());
    let b = bomb.clone();
    let bomb_addr = common::serve(Router::new().route(
        "/metrics",
        get(move || {
            let body = (*b).clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, "text/plain; version=0.0.4"),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    body,
                )
            }
        }),
    ))
    .await;
    let slow_addr = common::serve(Router::new().route(
        "/metrics",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "never 1\n"
        }),
    ))
    .await;
    let good_scrapes = Arc::new(AtomicU64::new(0));
    let g = good_scrapes.clone();
    let good_addr = common::serve(Router::new().route(
        "/metrics",
        get(move || {
            g.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    "good 1\n",
                )
            }
        }),
    ))
    .await;

    let (storage, mut m) = scrape(&[bomb_addr.clone(), slow_addr.clone(), good_addr.clone()]);

    // Bounded wait for both hostile targets to have failed at least once.
    let start = tokio::time::Instant::now();
    let (bomb_err, slow_err) = loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "hostile scrapes never completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let snap = m.snapshot();
        let err = |addr: &str| {
            snap[0]
                .active
                .iter()
                .find(|t| t.target.url.contains(addr))
                .filter(|t| t.health.health == Health::Down)
                .map(|t| t.health.last_error.clone())
        };
        if let (Some(b), Some(s)) = (err(&bomb_addr), err(&slow_addr)) {
            break (b, s);
        }
    };
    let before = good_scrapes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let after = good_scrapes.load(Ordering::SeqCst);
    m.stop();
    assert!(bomb_err.contains("body size limit exceeded"), "{bomb_err}");
    assert!(slow_err.contains("deadline"), "{slow_err}");
    // The healthy target kept its 1 s schedule meanwhile (≥ 2 in 3.2 s).
    assert!(
        after - before >= 2,
        "healthy target was delayed: {before} → {after}"
    );
    assert!(storage.samples_named("good").len() >= 2);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Serves `body` as a gzip'd text exposition.
async fn serve_gzip(body: Vec<u8>) -> String {
    let body = Arc::new(body);
    common::serve(Router::new().route(
        "/metrics",
        get(move || {
            let body = (*body).clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, "text/plain; version=0.0.4"),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    body,
                )
            }
        }),
    ))
    .await
}

/// Gzip bodies whose trailer cannot be trusted: a bomb whose trailer
/// claims 100 bytes still fails on the cap, a body of two gzip members is
/// scraped whole, and a corrupt CRC fails the scrape as a gzip error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_trailers_are_not_trusted() {
    let mut lying_bomb = gzip(&vec![0u8; 8 << 20]);
    let n = lying_bomb.len();
    lying_bomb[n - 4..].copy_from_slice(&100u32.to_le_bytes());
    // Members of equal length: the last trailer's size fits the first
    // member too, so only the check that it spans the body catches it.
    let two_members = [gzip(b"first_member 1\n"), gzip(b"other_member 2\n")].concat();
    let mut corrupt = gzip(b"corrupt 1\n");
    let n = corrupt.len();
    corrupt[n - 8] ^= 0xff;

    let bomb_addr = serve_gzip(lying_bomb).await;
    let multi_addr = serve_gzip(two_members).await;
    let corrupt_addr = serve_gzip(corrupt).await;

    let (storage, mut m) = scrape(&[bomb_addr.clone(), multi_addr.clone(), corrupt_addr.clone()]);

    // Bounded wait for every target to have been scraped once.
    let start = tokio::time::Instant::now();
    let (bomb, multi, corrupt) = loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "scrapes never completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let snap = m.snapshot();
        let health = |addr: &str| {
            snap[0]
                .active
                .iter()
                .find(|t| t.target.url.contains(addr))
                .filter(|t| t.health.health != Health::Unknown)
                .map(|t| (t.health.health, t.health.last_error.clone()))
        };
        if let (Some(b), Some(mm), Some(c)) = (
            health(&bomb_addr),
            health(&multi_addr),
            health(&corrupt_addr),
        ) {
            break (b, mm, c);
        }
    };
    m.stop();
    assert_eq!(bomb.0, Health::Down);
    assert!(bomb.1.contains("body size limit exceeded"), "{}", bomb.1);
    assert_eq!(multi.0, Health::Up, "{}", multi.1);
    assert!(!storage.samples_named("first_member").is_empty());
    assert!(!storage.samples_named("other_member").is_empty());
    assert_eq!(corrupt.0, Health::Down);
    assert!(corrupt.1.contains("gzip"), "{}", corrupt.1);
}
