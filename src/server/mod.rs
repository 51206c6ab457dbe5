//! The listeners: accept connections (at most `server.max_connections` at a
//! time), serve HTTP/1.1 and h2c on each, and on shutdown stop accepting and
//! let open requests finish within the grace period.
//!
//! Every phase of a connection is bounded, so that sockets which send
//! nothing (or only the HTTP/2 preface) cannot hold the connection cap:
//! each connection has a watchdog ([`activity`]) that drops it when its
//! first request head (protocol detection included), or a later HTTP/1.1
//! head, takes longer than `header_timeout`, and closes it gracefully when
//! nothing has been in flight for `idle_timeout`. HTTP/2 peers are pinged.
//! At the cap, the connection idle longest is asked to close ([`shed`])
//! rather than making the new one wait.

mod activity;
mod shed;

use crate::config::ConnectionConfig;
use crate::counters::{ConnectionError, Metrics};
pub use crate::request_facts::{CloseConnection, PeerAddr};
use crate::state::AppState;
use activity::{Activity, TrackedBody, Verdict, WatchedIo};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routes {
    /// Everything: the proxy, the admin API, health (and `/metrics` unless
    /// it has its own listener).
    Main,
    /// Only `/metrics` (`metrics.listen`).
    MetricsOnly,
}

/// At the cap with every connection busy: how often to look again for one
/// that has become idle.
const SHED_RETRY: Duration = Duration::from_secs(1);

/// Connections the metrics-only listener serves at once.
const METRICS_MAX_CONNECTIONS: usize = 64;

pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
    routes: Routes,
) {
    let cap = match routes {
        Routes::Main => state.config.max_connections,
        Routes::MetricsOnly => METRICS_MAX_CONNECTIONS,
    };
    let limit = Arc::new(Semaphore::new(cap));
    let registry = Arc::new(shed::Registry::default());
    let epoch = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let builder = builder(&state.config.connections);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
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
        let permit = loop {
            if let Ok(p) = limit.clone().try_acquire_owned() {
                break Some(p);
            }
            // At the cap: make room by closing the connection idle longest;
            // when all are busy, wait for one to end (or to become idle).
            if registry.shed_idlest() {
                state
                    .metrics
                    .connections_shed
                    .fetch_add(1, Ordering::Relaxed);
            }
            tokio::select! {
                () = &mut shutdown => break None,
                permit = limit.clone().acquire_owned() => break permit.ok(),
                () = tokio::time::sleep(SHED_RETRY) => {}
            }
        };
        let Some(permit) = permit else { break };
        let _ = stream.set_nodelay(true);
        state
            .metrics
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(epoch));
        let registration = registry.register(activity.clone());
        let svc_state = state.clone();
        let svc_activity = activity.clone();
        let closer = CloseConnection::default();
        let svc_closer = closer.clone();
        let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let state = svc_state.clone();
            let in_flight = svc_activity.begin(req.version() < http::Version::HTTP_2);
            req.extensions_mut().insert(PeerAddr(peer));
            req.extensions_mut().insert(svc_closer.clone());
            async move {
                let response = match routes {
                    Routes::Main => crate::router::handle(state, req).await,
                    Routes::MetricsOnly => crate::metrics::serve_request(&state, &req),
                };
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, in_flight)))
            }
        });
        let io = TokioIo::new(WatchedIo::new(stream, activity.clone()));
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn_state = state.clone();
        let stopped = stopped.clone();
        connections.spawn(async move {
            let metrics = &conn_state.metrics;
            metrics.connections_open.fetch_add(1, Ordering::Relaxed);
            let limits = &conn_state.config.connections;
            let ending = watch_connection(
                conn,
                auto::UpgradeableConnection::graceful_shutdown,
                &activity,
                limits,
                stopped,
                &closer,
            )
            .await;
            count(metrics, ending);
            metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(registration);
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!(
        open = connections.len(),
        "stopped accepting; draining in-flight requests"
    );
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = drained => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(open = connections.len(), "grace period over; closing the remaining connections");
        }
    }
    // Aborting drops each connection's request futures and bodies, which
    // records their traces as interrupted.
    connections.shutdown().await;
}

fn builder(limits: &ConnectionConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog bounds heads; hyper's own timer would also run while
        // a keep-alive connection waits, cutting it at the header timeout.
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_ping_interval)
        .keep_alive_timeout(limits.h2_ping_timeout);
    builder
}

/// How a connection ended.
#[derive(Debug)]
enum Ending {
    /// By the client or the protocol; `Err` when hyper reported an error.
    Closed(Result<(), crate::http::BoxError>),
    /// The watchdog dropped it: a head took too long.
    HeaderTimeout,
    /// Closed for being idle (gracefully, or dropped when that stalled).
    Idle,
    /// Closed to make room at the cap.
    Shed,
    /// Closed because the server is shutting down.
    Shutdown,
    /// Dropped because a response on it ran past its total deadline.
    Deadline,
}

/// Drives `conn` to its end, closing it when a phase takes too long, when
/// it is shed, or at shutdown.
async fn watch_connection<C>(
    conn: C,
    graceful_shutdown: fn(Pin<&mut C>),
    activity: &Activity,
    limits: &ConnectionConfig,
    mut stopped: watch::Receiver<bool>,
    closer: &CloseConnection,
) -> Ending
where
    C: Future<Output = Result<(), crate::http::BoxError>>,
{
    tokio::pin!(conn);
    let first_deadline = match activity.verdict(limits, activity.now_ms()) {
        Verdict::WaitUntil(t) => t,
        _ => activity.now_ms(),
    };
    let timer = tokio::time::sleep_until(activity.instant_at(first_deadline));
    tokio::pin!(timer);
    // Once closing was asked for: why, and since when.
    let mut closing: Option<(Ending, u64)> = None;
    let header_ms = limits.header_timeout.as_millis() as u64;
    loop {
        let reason = tokio::select! {
            biased;
            result = conn.as_mut() => {
                return match closing {
                    Some((reason, _)) => reason,
                    None => Ending::Closed(result),
                };
            }
            () = &mut timer => {
                let now = activity.now_ms();
                if let Some((_, since)) = &closing {
                    // A graceful close that stalls with nothing in flight
                    // (a peer that never reads our GOAWAY or FIN) is cut.
                    if activity.in_flight() == 0 && now >= since + header_ms {
                        return closing.map(|(reason, _)| reason).unwrap_or(Ending::Idle);
                    }
                    timer.as_mut().reset(activity.instant_at(now + header_ms));
                    continue;
                }
                match activity.verdict(limits, now) {
                    Verdict::WaitUntil(t) => {
                        timer.as_mut().reset(activity.instant_at(t));
                        continue;
                    }
                    Verdict::HeaderTimeout => return Ending::HeaderTimeout,
                    Verdict::IdleTimeout => Ending::Idle,
                }
            }
            () = activity.shed_requested(), if closing.is_none() => {
                // Nothing asked on it yet: nothing to let finish.
                if !activity.started() {
                    return Ending::Shed;
                }
                Ending::Shed
            }
            _ = stopped.changed(), if closing.is_none() => Ending::Shutdown,
            // A response ran past its deadline; its trace is recorded.
            () = closer.closed() => return Ending::Deadline,
        };
        graceful_shutdown(conn.as_mut());
        let now = activity.now_ms();
        closing = Some((reason, now));
        timer.as_mut().reset(activity.instant_at(now + header_ms));
    }
}

fn count(metrics: &Metrics, ending: Ending) {
    let counter = match ending {
        Ending::Closed(Ok(())) | Ending::Shutdown | Ending::Shed | Ending::Deadline => return,
        Ending::HeaderTimeout => &metrics.connections_timed_out_header,
        Ending::Idle => &metrics.connections_timed_out_idle,
        Ending::Closed(Err(e)) => {
            tracing::debug!(error = %e, "connection ended with an error");
            metrics.connection_error(ConnectionError::classify(&*e))
        }
    };
    counter.fetch_add(1, Ordering::Relaxed);
}
