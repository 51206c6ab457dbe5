//! The record of one proxied request, built up by the proxy while the request
//! runs and handed to the writer exactly once when it ends.

use bytes::Bytes;

/// Why a request did not end normally. Stored as its `as_str` in
/// `traces.error_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    BodyTooLarge,
    UnknownModel,
    WrongProtocol,
    NotFound,
    MissingProviderKey,
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamStatus,
    UpstreamStreamBroken,
    UpstreamStreamError,
    ClientDisconnected,
    ShuttingDown,
    Unauthorized,
    Forbidden,
    BodyTimeout,
    /// The response ended normally, but an event too large to inspect went
    /// by, so its usage (and cost) is unknown.
    UsageUnreadable,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::UnknownModel => "unknown_model",
            ErrorKind::WrongProtocol => "wrong_protocol",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MissingProviderKey => "missing_provider_key",
            ErrorKind::UpstreamUnreachable => "upstream_unreachable",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamStatus => "upstream_error_status",
            ErrorKind::UpstreamStreamBroken => "upstream_stream_broken",
            ErrorKind::UpstreamStreamError => "upstream_stream_error",
            ErrorKind::ClientDisconnected => "client_disconnected",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::BodyTimeout => "body_timeout",
            ErrorKind::UsageUnreadable => "usage_unreadable",
        }
    }
}

/// Token counts as the upstream reported them; `None` when not reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens, including cached and cache-write ones.
    pub input_tokens: Option<i64>,
    /// All output tokens, including reasoning ones.
    pub output_tokens: Option<i64>,
    /// Input tokens served from the provider's prompt cache.
    pub cached_input_tokens: Option<i64>,
    /// Input tokens written to the provider's prompt cache (Anthropic).
    pub cache_creation_input_tokens: Option<i64>,
    /// Reasoning tokens, already counted in `output_tokens`.
    pub reasoning_tokens: Option<i64>,
}

impl Usage {
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

#[derive(Clone, Debug)]
pub struct Trace {
    pub id: String,
    pub started_at_ms: i64,
    pub endpoint: &'static str,
    pub provider: Option<String>,
    pub model_requested: Option<String>,
    pub model_resolved: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub upstream_status: Option<u16>,
    /// The request was sent upstream (it may have been billed even without
    /// an answer).
    pub upstream_attempted: bool,
    pub error_kind: Option<ErrorKind>,
    pub error_message: Option<String>,
    pub finish_reason: Option<String>,
    pub upstream_request_id: Option<String>,
    pub total_us: i64,
    pub ttfb_us: Option<i64>,
    pub upstream_ttfb_us: Option<i64>,
    pub upstream_us: Option<i64>,
    pub usage: Usage,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub client_key_id: Option<String>,
    pub request_body: Option<Bytes>,
    pub response_body: Option<Bytes>,
}

impl Trace {
    pub fn new(endpoint: &'static str, started_at_ms: i64) -> Trace {
        Trace {
            id: uuid::Uuid::now_v7().to_string(),
            started_at_ms,
            endpoint,
            provider: None,
            model_requested: None,
            model_resolved: None,
            stream: false,
            status: 0,
            upstream_status: None,
            upstream_attempted: false,
            error_kind: None,
            error_message: None,
            finish_reason: None,
            upstream_request_id: None,
            total_us: 0,
            ttfb_us: None,
            upstream_ttfb_us: None,
            upstream_us: None,
            usage: Usage::default(),
            request_bytes: 0,
            response_bytes: 0,
            client_key_id: None,
            request_body: None,
            response_body: None,
        }
    }

    /// Records an error, keeping the first one: a later symptom (the client
    /// going away after the upstream broke) must not hide the cause.
    pub fn fail(&mut self, kind: ErrorKind, message: impl Into<String>) {
        if self.error_kind.is_none() {
            self.error_kind = Some(kind);
            self.error_message = Some(message.into());
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
