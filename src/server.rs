//! The listener: accepts connections (at most `server.max_connections` at a
//! time), serves HTTP/1.1 and h2c on each, and on shutdown stops accepting
//! and lets open requests finish within the grace period.

use crate::app::AppState;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The client's address, put on every request as an extension (for
/// per-address limits and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Closes the connection a request came on, put on every request as an
/// extension. A response past its total deadline must end even when the
/// client has stopped reading — hyper then no longer polls its body, so only
/// dropping the connection ends it. (On HTTP/2 this ends the connection's
/// other streams too.)
#[derive(Clone, Debug, Default)]
pub struct CloseConnection(Arc<tokio::sync::Notify>);

impl CloseConnection {
    pub fn close(&self) {
        self.0.notify_one();
    }
}

pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) {
    let limit = Arc::new(Semaphore::new(state.config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        state
            .metrics
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        let svc_state = state.clone();
        let closer = CloseConnection::default();
        let closed = closer.clone();
        let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let state = svc_state.clone();
            req.extensions_mut().insert(PeerAddr(peer));
            req.extensions_mut().insert(closer.clone());
            async move { Ok::<_, Infallible>(crate::proxy::handle(state, req).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        let metrics_state = state.clone();
        connections.spawn(async move {
            metrics_state
                .metrics
                .connections_open
                .fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                () = closed.0.notified() => {
                    tracing::debug!("connection closed: a response ran past its deadline");
                }
            }
            metrics_state
                .metrics
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!(
        open = connections.len(),
        "stopped accepting; draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(open = connections.len(), "grace period over; closing the remaining connections");
        }
    }
    // Aborting drops each connection's request futures and bodies, which
    // records their traces as interrupted.
    connections.shutdown().await;
}
