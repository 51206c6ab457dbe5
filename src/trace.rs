//! The record of one proxied request, built up by the proxy while the request
//! runs and handed to the writer exactly once when it ends.
//!
//! Every text a trace keeps that a client or an upstream chose is bounded
//! ([`Trace::bound_strings`]) before it is stored, so no request can grow the
//! database by more than a few KiB.

use bytes::Bytes;
pub use tollgate_modules::guardrails::Findings;

/// The longest model name a request may carry (and any trace may store).
pub const MAX_MODEL_BYTES: usize = 256;
/// The longest error message a trace stores.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 512;
/// The longest other upstream-chosen text a trace stores (request id,
/// finish reason).
pub const MAX_UPSTREAM_TEXT_BYTES: usize = 256;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncated(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

fn bound(s: &mut Option<String>, max: usize) {
    if let Some(s) = s {
        s.truncate(s.floor_char_boundary(max));
    }
}

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
    AuthThrottled,
    BodyTimeout,
    /// The response ended normally, but an event too large to inspect went
    /// by, so its usage (and cost) is unknown.
    UsageUnreadable,
    /// Refused by the key's rate limits (`[modules.rate_limit]`).
    RateLimited,
    /// Refused by a budget, or by the unknown-price policy under one
    /// (`[modules.budget]`).
    BudgetExceeded,
    /// Every target's circuit breaker is open (`[modules.breaker]`).
    BreakerOpen,
    /// Refused by the guardrails (`[modules.guardrails]`): a PII rule in
    /// block mode, a deny rule, the input token limit, or text it could
    /// not scan.
    Guardrails,
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
            ErrorKind::AuthThrottled => "auth_throttled",
            ErrorKind::BodyTimeout => "body_timeout",
            ErrorKind::UsageUnreadable => "usage_unreadable",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::BreakerOpen => "breaker_open",
            ErrorKind::Guardrails => "guardrails",
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
    /// Of `cache_creation_input_tokens`: writes with a 1-hour TTL
    /// (Anthropic `cache_creation.ephemeral_1h_input_tokens`); the rest of
    /// the cache writes have the 5-minute TTL.
    pub cache_write_1h_tokens: Option<i64>,
    /// Audio tokens, already counted in `input_tokens` / `output_tokens`.
    pub input_audio_tokens: Option<i64>,
    pub output_audio_tokens: Option<i64>,
    /// Image input tokens where reported separately, already counted in
    /// `input_tokens`.
    pub input_image_tokens: Option<i64>,
    /// Server-side web search calls, billed per call on top of tokens.
    pub web_search_calls: Option<i64>,
    /// The service tier the provider reports it served the request on.
    pub service_tier: Option<ServiceTier>,
}

/// A provider's service tier, as reported in the response (which may differ
/// from the one requested). Prices differ per tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceTier {
    /// OpenAI `default`, Anthropic `standard`.
    Default,
    Flex,
    Priority,
    Scale,
    Batch,
    /// A tier tollgate does not know: never priced as `Default`.
    Other,
}

impl ServiceTier {
    /// From a provider's reported name (`"auto"` is not a served tier).
    pub fn parse(name: &str) -> Option<ServiceTier> {
        Some(match name {
            "default" | "standard" => ServiceTier::Default,
            "flex" => ServiceTier::Flex,
            "priority" => ServiceTier::Priority,
            "scale" => ServiceTier::Scale,
            "batch" => ServiceTier::Batch,
            "" | "auto" => return None,
            _ => ServiceTier::Other,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceTier::Default => "default",
            ServiceTier::Flex => "flex",
            ServiceTier::Priority => "priority",
            ServiceTier::Scale => "scale",
            ServiceTier::Batch => "batch",
            ServiceTier::Other => "other",
        }
    }
}

impl Usage {
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

/// How the exact cache (`[modules.cache]`) treated a request; stored as
/// its `as_str` in `traces.cache_status` (NULL: the module was off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from the cache: nothing went upstream.
    Hit,
    /// Looked up, not found: sent upstream, the answer stored if it qualifies.
    Miss,
    /// Neither looked up nor stored (asked by the client, or not cacheable).
    Skip,
    /// Not looked up (asked by the client); the answer replaces the entry.
    Refresh,
    /// Answered from the stored answer to a similar conversation in the
    /// same partition (`[modules.semantic_cache]`): nothing went upstream
    /// but tollgate's own embeddings call, traced apart.
    SemanticHit,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Skip => "skip",
            CacheStatus::Refresh => "refresh",
            CacheStatus::SemanticHit => "semantic_hit",
        }
    }

    /// Answered from the cache (exact or semantic): no charge, the saving kept.
    pub fn is_hit(self) -> bool {
        matches!(self, CacheStatus::Hit | CacheStatus::SemanticHit)
    }
}

/// The semantic cache's part of an answer to store: its partition and the
/// unit vector of its conversation (`[modules.semantic_cache]`).
#[derive(Clone, Debug)]
pub struct SemanticVector {
    pub partition: [u8; 32],
    pub vector: std::sync::Arc<[f32]>,
}

/// An answer to store in the exact cache, riding on the trace of the request
/// that got it: the writer inserts it with the trace (so it knows the
/// answer's cost) if the request completed with a 2xx.
#[derive(Clone, Debug)]
pub struct CacheEntry {
    pub key: [u8; 32],
    pub namespace: String,
    pub endpoint: &'static str,
    /// The target the key was computed for: stored only if it answered.
    pub provider: String,
    pub model: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// The final message (the upstream's JSON body).
    pub body: Bytes,
    /// `[modules.cache] max_bytes` when the request ran: the writer evicts
    /// down to it after inserting.
    pub max_total_bytes: u64,
    /// `[modules.cache] max_entry_bytes` when the request ran: a larger
    /// answer is not stored.
    pub max_entry_bytes: u64,
    /// Stored with the entry when the semantic cache embedded the request.
    pub semantic: Option<SemanticVector>,
}

/// The exact cache's part of a trace.
#[derive(Clone, Debug, Default)]
pub struct CacheNote {
    pub status: Option<CacheStatus>,
    /// A hit: the entry's key (its hit count goes up) and what the original
    /// answer cost (µ¢; `None` when unknown), recorded as the saving.
    pub hit_key: Option<[u8; 32]>,
    pub saved_uc: Option<i64>,
    /// A miss or refresh whose answer is to be stored.
    pub store: Option<Box<CacheEntry>>,
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
    /// Upstream attempts made (retries and fallbacks included).
    pub attempts: Option<i64>,
    /// Every attempt, as JSON, when there was more than one or a target was
    /// skipped (see migration 0007).
    pub attempt_log: Option<String>,
    /// What the exact cache did (migration 0008).
    pub cache: CacheNote,
    /// What the guardrails found on the request and its response: rule
    /// names and counts, never the matched text (migration 0011). `None`
    /// (and an empty `fired`) is stored as NULL.
    pub guardrails: Option<Findings>,
    /// `guardrails.fired` as the JSON text stored in `traces.guardrails`,
    /// rendered by [`Trace::bound_strings`] just before the trace is stored.
    pub guardrails_stored: Option<String>,
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
            attempts: None,
            attempt_log: None,
            cache: CacheNote::default(),
            guardrails: None,
            guardrails_stored: None,
        }
    }

    /// Records an error, keeping the first one: a later symptom (the client
    /// going away after the upstream broke) must not hide the cause.
    pub fn fail(&mut self, kind: ErrorKind, message: impl Into<String>) {
        if self.error_kind.is_none() {
            self.error_kind = Some(kind);
            let mut message = message.into();
            message.truncate(message.floor_char_boundary(MAX_ERROR_MESSAGE_BYTES));
            self.error_message = Some(message);
        }
    }

    /// Adds what a guardrails pass found (the request side, then the
    /// response side); nothing when it found nothing.
    pub fn add_guardrails(&mut self, found: &Findings) {
        if found.is_empty() {
            return;
        }
        self.guardrails
            .get_or_insert_with(Findings::default)
            .merge(found);
    }

    /// The answer to store in the exact cache, if this request completed
    /// with a 2xx from the target its cache key names and the answer fits.
    /// The one rule for the writer (the database) and the proxy (memory).
    pub fn cache_storable(&self) -> Option<&CacheEntry> {
        let entry = self.cache.store.as_deref()?;
        let complete = (200..300).contains(&self.status)
            && self.error_kind.is_none()
            && !entry.body.is_empty()
            && entry.body.len() as u64 <= entry.max_entry_bytes
            && self.provider.as_deref() == Some(entry.provider.as_str())
            && self.model_resolved.as_deref() == Some(entry.model.as_str());
        complete.then_some(entry)
    }

    /// Cuts every client- or upstream-chosen text to its bound. The proxy
    /// refuses overlong model names up front; this is the store's guarantee.
    pub fn bound_strings(&mut self) {
        bound(&mut self.provider, MAX_MODEL_BYTES);
        bound(&mut self.model_requested, MAX_MODEL_BYTES);
        bound(&mut self.model_resolved, MAX_MODEL_BYTES);
        bound(&mut self.error_message, MAX_ERROR_MESSAGE_BYTES);
        bound(&mut self.finish_reason, MAX_UPSTREAM_TEXT_BYTES);
        bound(&mut self.upstream_request_id, MAX_UPSTREAM_TEXT_BYTES);
        // Rule names come from the engine's fixed set, so this is bounded.
        self.guardrails_stored = self
            .guardrails
            .as_ref()
            .filter(|f| !f.fired.is_empty())
            .and_then(|f| serde_json::to_string(&f.fired).ok());
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cut_on_char_boundaries() {
        let mut t = Trace::new("/v1/chat/completions", 0);
        t.fail(ErrorKind::InvalidRequest, "é".repeat(1000));
        assert_eq!(t.error_message.as_deref(), Some("é".repeat(256).as_str()));
        t.model_requested = Some(format!("a{}", "é".repeat(200)));
        t.upstream_request_id = Some("x".repeat(10_000));
        t.bound_strings();
        assert_eq!(t.model_requested.as_ref().unwrap().len(), 255);
        assert_eq!(t.upstream_request_id.as_ref().unwrap().len(), 256);
        assert_eq!(truncated("abc", 2), "ab");
    }
}
