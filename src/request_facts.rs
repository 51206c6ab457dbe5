//! What the server knows about the connection a request came on, put on
//! each request as an extension: the client's address, and a handle that
//! closes the connection. Its own room, below both the server that fills
//! it in and the proxy that reads it.

use std::sync::Arc;
use tokio::sync::Notify;

/// The client's address, put on every request as an extension (for
/// per-address limits and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

impl PeerAddr {
    /// The client's IP address, when the server put it on `req`.
    pub fn ip_of<B>(req: &http::Request<B>) -> Option<std::net::IpAddr> {
        req.extensions().get::<PeerAddr>().map(|p| p.0.ip())
    }
}

/// Closes the connection a request came on, put on every request as an
/// extension. A response past its total deadline must end even when the
/// client has stopped reading — hyper then no longer polls its body, so only
/// dropping the connection ends it. (On HTTP/2 this ends the connection's
/// other streams too.)
#[derive(Clone, Debug, Default)]
pub struct CloseConnection(Arc<Notify>);

impl CloseConnection {
    pub fn close(&self) {
        self.0.notify_one();
    }

    /// Resolves once `close` has been called (at most one waiter).
    pub async fn closed(&self) {
        self.0.notified().await;
    }
}
