//! What a connection is doing, for its timeouts and for shedding: requests
//! in flight, since when it has been idle, and (HTTP/1.1) since when the
//! next request head has been arriving.
//!
//! The request path only touches relaxed-ordered atomics of its own
//! connection (no lock, no allocation): the service marks a request begun,
//! the response body's guard marks it ended when the body finishes or is
//! dropped (a streamed answer is in flight until its end), and the socket
//! wrapper notes the first byte of a new head. The connection's watchdog
//! reads them when its timer fires and decides.

use crate::config::ConnectionConfig;
use crate::http::Body;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

const NONE: u64 = u64::MAX;

/// One connection's state. Times are milliseconds since the listener's
/// epoch, so that connections can be compared (the idlest is shed first).
pub struct Activity {
    epoch: Instant,
    accepted_ms: u64,
    in_flight: AtomicU32,
    /// A request head has been received (the first request is served).
    started: AtomicBool,
    http1: AtomicBool,
    idle_since_ms: AtomicU64,
    /// HTTP/1.1, nothing in flight: when the first byte of the next head
    /// arrived (`NONE`: none yet).
    head_since_ms: AtomicU64,
    shed_chosen: AtomicBool,
    shed: Notify,
}

/// What the watchdog should do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing; look again at this time (ms since the epoch).
    WaitUntil(u64),
    /// A head (the first, or a later HTTP/1.1 one) took too long: drop.
    HeaderTimeout,
    /// Nothing in flight for too long: close gracefully.
    IdleTimeout,
}

impl Activity {
    pub fn new(epoch: Instant) -> Activity {
        let accepted_ms = millis_since(epoch);
        Activity {
            epoch,
            accepted_ms,
            in_flight: AtomicU32::new(0),
            started: AtomicBool::new(false),
            http1: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(accepted_ms),
            head_since_ms: AtomicU64::new(NONE),
            shed_chosen: AtomicBool::new(false),
            shed: Notify::new(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        millis_since(self.epoch)
    }

    /// The instant `ms` after the epoch, for timers.
    pub fn instant_at(&self, ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_millis(ms))
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// A request reached the service; the guard ends it.
    pub fn begin(self: &Arc<Self>, http1: bool) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since_ms.store(NONE, Ordering::Relaxed);
        self.http1.store(http1, Ordering::Relaxed);
        self.started.store(true, Ordering::Release);
        InFlight(self.clone())
    }

    /// Since when this connection has had nothing in flight (`None`: busy).
    pub fn idle_since(&self) -> Option<u64> {
        (self.in_flight() == 0).then(|| self.idle_since_ms.load(Ordering::Acquire))
    }

    pub fn chosen_for_shedding(&self) -> bool {
        self.shed_chosen.load(Ordering::Acquire)
    }

    /// Asks the connection to close (once; it stays chosen).
    pub fn request_shed(&self) {
        self.shed_chosen.store(true, Ordering::Release);
        self.shed.notify_one();
    }

    pub async fn shed_requested(&self) {
        self.shed.notified().await
    }

    pub fn verdict(&self, limits: &ConnectionConfig, now: u64) -> Verdict {
        let header = limits.header_timeout.as_millis() as u64;
        let idle = limits.idle_timeout.as_millis() as u64;
        if !self.started() {
            let deadline = self.accepted_ms + header;
            // A first request may come and go before this deadline without
            // waking the watchdog; looking again within idle_timeout keeps
            // the idle deadline exact too.
            return if now >= deadline {
                Verdict::HeaderTimeout
            } else {
                Verdict::WaitUntil(deadline.min(now + idle))
            };
        }
        let Some(idle_since) = self.idle_since() else {
            // Busy: a request in flight is never idle. Look again later.
            return Verdict::WaitUntil(now + idle);
        };
        let head_since = self.head_since_ms.load(Ordering::Relaxed);
        let head_deadline = (head_since != NONE).then(|| head_since + header);
        if head_deadline.is_some_and(|d| now >= d) {
            return Verdict::HeaderTimeout;
        }
        let idle_deadline = idle_since + idle;
        if now >= idle_deadline {
            return Verdict::IdleTimeout;
        }
        // On HTTP/1.1 a head may start at any moment without waking the
        // watchdog; looking every header_timeout catches it exactly: the
        // deadline of a head begun since the last look is still ahead.
        let next = if self.http1.load(Ordering::Relaxed) {
            idle_deadline.min(head_deadline.unwrap_or(now + header))
        } else {
            idle_deadline
        };
        Verdict::WaitUntil(next)
    }

    fn note_read(&self) {
        if self.http1.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since_ms.load(Ordering::Relaxed) == NONE
        {
            self.head_since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// A request in flight on its connection, until dropped.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms.store(a.now_ms(), Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it ends.
pub struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl TrackedBody {
    pub fn new(inner: Body, in_flight: InFlight) -> TrackedBody {
        TrackedBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = crate::http::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The client socket, noting when bytes of a new HTTP/1.1 head arrive.
pub struct WatchedIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> WatchedIo<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> WatchedIo<S> {
        WatchedIo { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.note_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionConfig {
        ConnectionConfig {
            header_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(1000),
            h2_ping_interval: None,
            h2_ping_timeout: Duration::from_millis(100),
        }
    }

    #[test]
    fn phases() {
        let a = Arc::new(Activity::new(Instant::now()));
        let t0 = a.accepted_ms;
        assert_eq!(a.verdict(&limits(), t0), Verdict::WaitUntil(t0 + 100));
        assert_eq!(a.verdict(&limits(), t0 + 100), Verdict::HeaderTimeout);
        let guard = a.begin(true);
        assert_eq!(
            a.verdict(&limits(), t0 + 5000),
            Verdict::WaitUntil(t0 + 6000)
        );
        drop(guard);
        let idle = a.idle_since().unwrap();
        assert_eq!(a.verdict(&limits(), idle), Verdict::WaitUntil(idle + 100));
        a.head_since_ms.store(idle + 50, Ordering::Relaxed);
        assert_eq!(
            a.verdict(&limits(), idle + 100),
            Verdict::WaitUntil(idle + 150)
        );
        assert_eq!(a.verdict(&limits(), idle + 150), Verdict::HeaderTimeout);
        a.head_since_ms.store(NONE, Ordering::Relaxed);
        assert_eq!(a.verdict(&limits(), idle + 1000), Verdict::IdleTimeout);
    }
}
