//! The process's counters, read only by `/metrics` (`metrics/` renders
//! them): the connection counters below, plain atomics bumped wherever
//! something happens, and the per-request series the writer records
//! ([`requests`]). Below every room, so any of them can count.

pub mod requests;

use std::sync::atomic::AtomicU64;

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_timed_out_header: AtomicU64,
    pub connections_timed_out_idle: AtomicU64,
    pub connections_shed: AtomicU64,
    connection_errors: [AtomicU64; ConnectionError::ALL.len()],
}

/// Why hyper ended a connection with an error (the client got a 400/431
/// from hyper, or nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionError {
    /// Malformed request line, headers or framing (hyper answered 400).
    Malformed,
    /// A head larger than hyper's buffer (hyper answered 431).
    HeadTooLarge,
    /// An HTTP/2 peer that did not answer our ping in time.
    PingTimeout,
    /// Anything else: HTTP/2 protocol errors, resets, I/O errors.
    Other,
}

impl ConnectionError {
    pub const ALL: [ConnectionError; 4] = [
        ConnectionError::Malformed,
        ConnectionError::HeadTooLarge,
        ConnectionError::PingTimeout,
        ConnectionError::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ConnectionError::Malformed => "malformed",
            ConnectionError::HeadTooLarge => "head_too_large",
            ConnectionError::PingTimeout => "ping_timeout",
            ConnectionError::Other => "other",
        }
    }

    pub fn classify(e: &(dyn std::error::Error + 'static)) -> ConnectionError {
        match e.downcast_ref::<hyper::Error>() {
            Some(h) if h.is_parse_too_large() => ConnectionError::HeadTooLarge,
            Some(h) if h.is_parse() => ConnectionError::Malformed,
            Some(h) if h.is_timeout() => ConnectionError::PingTimeout,
            _ => ConnectionError::Other,
        }
    }
}

impl Metrics {
    pub fn connection_error(&self, kind: ConnectionError) -> &AtomicU64 {
        &self.connection_errors[kind as usize]
    }
}
