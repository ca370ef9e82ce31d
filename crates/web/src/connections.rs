//! Accepting connections and serving HTTP/1.1 on each, plain or over TLS.
//!
//! Every connection gets its own task, and a TLS handshake runs in it under
//! a deadline, so one slow client cannot stall accepts or other clients.
//!
//! The server speaks HTTP/1.1 only (TLS offers ALPN `http/1.1`), as
//! Prometheus's does without TLS. So hyper's HTTP/1 connection is driven
//! directly rather than through `axum::serve`, whose protocol-sniffing
//! builder would also answer HTTP/2 with prior knowledge on plain ports,
//! which Prometheus does not, and link h2's server into the binary. Plain
//! and TLS streams are boxed so the connection code exists once.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before accepting again after the listener itself
/// failed (out of file descriptors, most likely), doubling while it keeps
/// failing, as Go's server does: the loop neither spins nor floods the log.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// `--web.read-timeout`'s default, Prometheus's.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Serves `app` over plain HTTP/1.1 on `listener` until `shutdown` is
/// cancelled, with `--web.read-timeout`'s default (`tributary receive`).
pub async fn serve_plain(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let server = Http1Server {
        app,
        tls: None,
        read_timeout: DEFAULT_READ_TIMEOUT,
    };
    server.serve(listener, shutdown).await;
}

/// What every connection is served with.
#[derive(Clone)]
pub(crate) struct Http1Server {
    pub app: Router,
    pub tls: Option<TlsAcceptor>,
    /// How long a client may take to send a request's headers, idle
    /// keep-alive or stalled mid-request (`--web.read-timeout`).
    pub read_timeout: Duration,
}

impl Http1Server {
    /// Serves every connection `listener` accepts until `shutdown` is
    /// cancelled, then stops accepting, asks each open connection to close
    /// after its current response, and returns once all have.
    pub(crate) async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        // Every connection task holds a sender; the channel closes when the
        // last of them has ended.
        let (open, mut all_closed) = mpsc::channel::<()>(1);
        let mut backoff = ACCEPT_BACKOFF_FIRST;
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    backoff = ACCEPT_BACKOFF_FIRST;
                    let conn = Connection {
                        server: self.clone(),
                        shutdown: shutdown.clone(),
                        _open: open.clone(),
                    };
                    tokio::spawn(conn.run(stream));
                }
                Err(e) if is_peer_error(&e) => {}
                Err(e) => {
                    tracing::warn!(err = %e, retry_in = ?backoff, "accepting a web connection failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
        drop(listener);
        drop(open);
        let _ = all_closed.recv().await;
    }
}

/// A peer that gave up between connecting and being accepted: nothing is
/// wrong with the listener.
fn is_peer_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}

struct Connection {
    server: Http1Server,
    shutdown: CancellationToken,
    _open: mpsc::Sender<()>,
}

impl Connection {
    async fn run(self, tcp: TcpStream) {
        let stream: Box<dyn Stream> = match self.server.tls.clone() {
            None => Box::new(tcp),
            Some(acceptor) => match self.handshake(tcp, acceptor).await {
                Some(tls) => tls,
                None => return,
            },
        };
        let service = TowerToHyperService::new(self.server.app);
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            // Zero means none, as with Go's server.
            .header_read_timeout(
                (!self.server.read_timeout.is_zero()).then_some(self.server.read_timeout),
            )
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(err = %e, "web connection ended with an error");
                }
                return;
            }
            _ = self.shutdown.cancelled() => {}
        }
        // Finish the response in flight, if any, then close.
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }

    async fn handshake(&self, tcp: TcpStream, acceptor: TlsAcceptor) -> Option<Box<dyn Stream>> {
        let peer = tcp.peer_addr().ok();
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
        let done = tokio::select! {
            _ = self.shutdown.cancelled() => return None,
            done = handshake => done,
        };
        match done {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) => {
                tracing::debug!(?peer, err = %e, "TLS handshake error");
                None
            }
            Err(_) => {
                tracing::debug!(?peer, "TLS handshake timed out");
                None
            }
        }
    }
}
