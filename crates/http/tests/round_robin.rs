//! `round_robin_dns`: one name resolving to three loopback addresses; new
//! connections must spread over all of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tributary_config::HttpClientConfig;
use tributary_http::{build_client, ClientOptions};

/// Binds 127.0.0.1..=3 on one shared port; each server counts its hits.
async fn three_servers() -> (u16, Vec<Arc<AtomicUsize>>) {
    for _ in 0..20 {
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for last in 2..=3u8 {
            match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, last], port))).await {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() < 3 {
            continue; // port taken on another address: try a new one
        }
        let mut counters = Vec::new();
        for l in listeners {
            let hits = Arc::new(AtomicUsize::new(0));
            let h = hits.clone();
            let app = axum::Router::new().route(
                "/",
                axum::routing::post(move || {
                    h.fetch_add(1, Ordering::SeqCst);
                    async { "ok" }
                }),
            );
            tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            });
            counters.push(hits);
        }
        return (port, counters);
    }
    panic!("no port free on 127.0.0.1-3");
}

async fn hits_per_server(round_robin_dns: bool) -> Vec<usize> {
    let (port, counters) = three_servers().await;
    let ips: Vec<IpAddr> = (1..=3u8).map(|i| IpAddr::from([127, 0, 0, i])).collect();
    let client = build_client(
        &HttpClientConfig::default_for_remote_write(),
        ClientOptions {
            round_robin_dns,
            static_hosts: vec![("receiver.test".into(), ips)],
            ..ClientOptions::default()
        },
    )
    .unwrap();
    for _ in 0..6 {
        // `Connection: close` forces a new connection, hence a new lookup.
        let resp = client
            .client()
            .post(format!("http://receiver.test:{port}/"))
            .header("Connection", "close")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    counters.iter().map(|c| c.load(Ordering::SeqCst)).collect()
}

#[tokio::test]
async fn new_connections_rotate_through_resolved_addresses() {
    assert_eq!(hits_per_server(true).await, vec![2, 2, 2]);
}

#[tokio::test]
async fn without_round_robin_the_first_address_gets_everything() {
    assert_eq!(hits_per_server(false).await, vec![6, 0, 0]);
}
