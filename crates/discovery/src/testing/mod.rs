//! Loopback doubles of the APIs the SD providers talk to, for this crate's
//! integration tests, the binary's end-to-end tests and the
//! `fake_kube_api` example. Compiled only with the `testing` feature.
//!
//! Each double speaks the part of the real API the provider uses, with
//! responses written from the API's published reference (fixtures in
//! `tests/fixtures/`); the state behind it can be changed while a provider
//! (or a whole agent) runs against it. They bind 127.0.0.1 only.
//!
//! These are test fixtures: they panic (with a message) on setup failures
//! such as a port that cannot be bound, which is what a test wants.

pub mod consul;
pub mod dns;
pub mod docker;
pub mod ec2;
pub mod kube;

/// Reads a fixture from this crate's `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Binds a loopback listener on an ephemeral port.
pub(crate) async fn loopback_listener() -> tokio::net::TcpListener {
    match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("binding 127.0.0.1:0: {e}"),
    }
}

/// Serves `app` on `listener` in a background task; returns the address.
pub(crate) fn spawn_serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> std::net::SocketAddr {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("listener address: {e}"),
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
