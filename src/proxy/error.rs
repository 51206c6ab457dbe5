//! The one place where tollgate's own errors become HTTP responses, in the
//! error shape of the protocol the client speaks. Messages say what went
//! wrong and what to do, and never carry internal details or secrets.

use super::{Body, json_response};
use crate::access::AuthError;
use crate::config::Protocol;
use crate::trace::ErrorKind;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tollgate_modules::rate_limit::{Dimension, Refusal, Status, ceil_secs};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("We could not parse the JSON body of your request: {0}")]
    InvalidJson(String),
    #[error("The request body must be a JSON object.")]
    NotAnObject,
    #[error("You must provide a model parameter.")]
    MissingModel,
    #[error("The request body is larger than this gateway's limit of {limit} bytes.")]
    BodyTooLarge { limit: usize },
    #[error("The request body could not be read.")]
    BodyRead,
    #[error("The model `{0}` does not exist or is not configured on this gateway.")]
    UnknownModel(String),
    #[error(
        "The model `{model}` is served by provider `{provider}`, which speaks the {protocol} \
         protocol; send this request to {hint} instead."
    )]
    WrongProtocol {
        model: String,
        provider: String,
        protocol: &'static str,
        hint: &'static str,
    },
    #[error("Unknown request path: {method} {path}")]
    NotFound { method: String, path: String },
    #[error(
        "Provider `{provider}` has no API key configured on this gateway (its environment \
         variable {env} is not set)."
    )]
    MissingProviderKey { provider: String, env: String },
    #[error("Could not reach upstream provider `{0}`.")]
    UpstreamUnreachable(String),
    #[error("Upstream provider `{0}` did not answer in time.")]
    UpstreamTimeout(String),
    #[error("The gateway is shutting down; retry shortly.")]
    ShuttingDown,
    #[error("{}", auth_message(.0))]
    Unauthorized(AuthError),
    #[error("This API key is not allowed to use the model `{0}`.")]
    ModelNotAllowed(String),
    #[error("Method {method} is not allowed on {path}; allowed: {allow}.")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("Missing or wrong metrics token: send it as `Authorization: Bearer <token>`.")]
    MetricsUnauthorized,
    #[error(
        "The model name is {len} bytes long, over this gateway's limit of {limit} bytes \
         (it begins `{start}`)."
    )]
    ModelNameTooLong {
        len: usize,
        limit: usize,
        start: String,
    },
    #[error("The request body did not arrive within this gateway's limit of {ms} ms.")]
    BodyTimeout { ms: u128 },
    #[error(
        "Rate limit reached for this API key: {} (limit {}). Retry after {} s.",
        .0.exceeded.as_str(), .0.limit, .0.retry_after_secs()
    )]
    RateLimited(Refusal),
    #[error("{}", .0.message())]
    BudgetExceeded(tollgate_modules::budget::BudgetRefusal),
    #[error(
        "Every upstream target of the model `{model}` is failing and temporarily skipped \
         (circuit breaker open); retry after {retry_after_secs} s."
    )]
    BreakerOpen {
        model: String,
        retry_after_secs: u64,
    },
    #[error("The header `{header}` is invalid: it {reason}.")]
    InvalidCacheHeader {
        header: &'static str,
        reason: String,
    },
    /// The messages below name the rule, never the text that matched it.
    #[error(
        "This request was refused by the gateway's guardrails: it contains data the rule \
         `{rule}` blocks. Remove it and retry."
    )]
    GuardrailBlocked { rule: String },
    #[error(
        "This request was refused by the gateway's guardrails: it matches the content rule \
         `{rule}`."
    )]
    GuardrailDenied { rule: String },
    #[error(
        "This request was refused by the gateway's guardrails: its input is about {estimated} \
         tokens, over this key's limit of {limit}."
    )]
    GuardrailTooManyTokens { limit: u64, estimated: u64 },
    #[error(
        "This request was refused by the gateway's guardrails: its text could not be checked \
         ({reason})."
    )]
    GuardrailUnscannable { reason: String },
}

fn auth_message(e: &AuthError) -> &'static str {
    match e {
        AuthError::Missing => {
            "Missing API key. Send your tollgate client key as `Authorization: Bearer tg-…` or `x-api-key: tg-…`."
        }
        AuthError::Invalid => "Incorrect API key provided.",
        AuthError::Revoked => "This API key has been revoked.",
        AuthError::Expired => "This API key has expired.",
        AuthError::Unavailable => "Keys cannot be checked right now; retry shortly.",
        AuthError::Conflicting => {
            "More than one API key sent: send exactly one, as `Authorization: Bearer tg-…` or `x-api-key: tg-…` (both only with the same key)."
        }
        AuthError::Throttled { .. } => {
            "Too many failed authentication attempts from your address; retry after the time in the Retry-After header."
        }
    }
}

impl From<tollgate_modules::pipeline::Refusal> for ProxyError {
    fn from(refusal: tollgate_modules::pipeline::Refusal) -> ProxyError {
        use tollgate_modules::pipeline::Refusal;
        match refusal {
            Refusal::RateLimited(r) => ProxyError::RateLimited(r),
            Refusal::Budget(r) => ProxyError::BudgetExceeded(r),
        }
    }
}

impl From<tollgate_modules::guardrails::Refusal> for ProxyError {
    fn from(refusal: tollgate_modules::guardrails::Refusal) -> ProxyError {
        use tollgate_modules::guardrails::Refusal;
        match refusal {
            Refusal::Blocked { rule } => ProxyError::GuardrailBlocked { rule },
            Refusal::Denied { rule } => ProxyError::GuardrailDenied { rule },
            Refusal::TooManyTokens { limit, estimated } => {
                ProxyError::GuardrailTooManyTokens { limit, estimated }
            }
            Refusal::Unscannable { reason } => ProxyError::GuardrailUnscannable { reason },
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::InvalidJson(_)
            | ProxyError::NotAnObject
            | ProxyError::MissingModel
            | ProxyError::BodyRead
            | ProxyError::WrongProtocol { .. }
            | ProxyError::ModelNameTooLong { .. }
            | ProxyError::InvalidCacheHeader { .. }
            | ProxyError::GuardrailBlocked { .. }
            | ProxyError::GuardrailDenied { .. }
            | ProxyError::GuardrailTooManyTokens { .. }
            | ProxyError::GuardrailUnscannable { .. }
            | ProxyError::Unauthorized(AuthError::Conflicting) => StatusCode::BAD_REQUEST,
            ProxyError::Unauthorized(AuthError::Throttled { .. }) | ProxyError::RateLimited(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UnknownModel(_) | ProxyError::NotFound { .. } => StatusCode::NOT_FOUND,
            ProxyError::MissingProviderKey { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ShuttingDown | ProxyError::BreakerOpen { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Unauthorized(AuthError::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            // Not retried by the official SDKs (they retry 408/409/429/5xx).
            ProxyError::BudgetExceeded(_) => StatusCode::PAYMENT_REQUIRED,
            ProxyError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::MetricsUnauthorized => StatusCode::UNAUTHORIZED,
            ProxyError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::InvalidJson(_)
            | ProxyError::NotAnObject
            | ProxyError::MissingModel
            | ProxyError::BodyRead
            | ProxyError::ModelNameTooLong { .. }
            | ProxyError::InvalidCacheHeader { .. }
            | ProxyError::Unauthorized(AuthError::Conflicting) => ErrorKind::InvalidRequest,
            ProxyError::Unauthorized(AuthError::Throttled { .. }) => ErrorKind::AuthThrottled,
            ProxyError::BodyTooLarge { .. } => ErrorKind::BodyTooLarge,
            ProxyError::UnknownModel(_) => ErrorKind::UnknownModel,
            ProxyError::WrongProtocol { .. } => ErrorKind::WrongProtocol,
            ProxyError::NotFound { .. } => ErrorKind::NotFound,
            ProxyError::MissingProviderKey { .. } => ErrorKind::MissingProviderKey,
            ProxyError::UpstreamUnreachable(_) => ErrorKind::UpstreamUnreachable,
            ProxyError::UpstreamTimeout(_) => ErrorKind::UpstreamTimeout,
            ProxyError::ShuttingDown => ErrorKind::ShuttingDown,
            ProxyError::Unauthorized(_) => ErrorKind::Unauthorized,
            ProxyError::ModelNotAllowed(_) => ErrorKind::Forbidden,
            ProxyError::MethodNotAllowed { .. } => ErrorKind::NotFound,
            ProxyError::MetricsUnauthorized => ErrorKind::Unauthorized,
            ProxyError::BodyTimeout { .. } => ErrorKind::BodyTimeout,
            ProxyError::RateLimited(_) => ErrorKind::RateLimited,
            ProxyError::BudgetExceeded(_) => ErrorKind::BudgetExceeded,
            ProxyError::BreakerOpen { .. } => ErrorKind::BreakerOpen,
            ProxyError::GuardrailBlocked { .. }
            | ProxyError::GuardrailDenied { .. }
            | ProxyError::GuardrailTooManyTokens { .. }
            | ProxyError::GuardrailUnscannable { .. } => ErrorKind::Guardrails,
        }
    }

    /// OpenAI's `(type, code)` for this error.
    fn openai_type(&self) -> (&'static str, Option<&'static str>) {
        match self {
            ProxyError::UnknownModel(_) => ("invalid_request_error", Some("model_not_found")),
            ProxyError::NotFound { .. } => ("invalid_request_error", Some("unknown_url")),
            ProxyError::BodyTooLarge { .. } => ("invalid_request_error", Some("request_too_large")),
            ProxyError::MissingProviderKey { .. } => ("server_error", Some("provider_key_missing")),
            ProxyError::UpstreamUnreachable(_) => ("server_error", Some("upstream_unreachable")),
            ProxyError::UpstreamTimeout(_) => ("server_error", Some("upstream_timeout")),
            ProxyError::ShuttingDown => ("server_error", Some("shutting_down")),
            ProxyError::BreakerOpen { .. } => ("server_error", Some("breaker_open")),
            ProxyError::Unauthorized(AuthError::Unavailable) => ("server_error", None),
            ProxyError::Unauthorized(AuthError::Conflicting) => ("invalid_request_error", None),
            ProxyError::Unauthorized(AuthError::Throttled { .. }) => {
                ("rate_limit_error", Some("auth_rate_limit_exceeded"))
            }
            ProxyError::Unauthorized(_) => ("invalid_request_error", Some("invalid_api_key")),
            ProxyError::ModelNotAllowed(_) => ("permission_error", Some("model_not_allowed")),
            ProxyError::MethodNotAllowed { .. } => {
                ("invalid_request_error", Some("method_not_allowed"))
            }
            ProxyError::MetricsUnauthorized => ("invalid_request_error", Some("invalid_api_key")),
            ProxyError::BodyTimeout { .. } => ("invalid_request_error", Some("request_timeout")),
            ProxyError::RateLimited(_) => ("rate_limit_error", Some("rate_limit_exceeded")),
            ProxyError::BudgetExceeded(r) => ("insufficient_quota", Some(r.code())),
            ProxyError::GuardrailBlocked { .. } => {
                ("invalid_request_error", Some("guardrails_blocked"))
            }
            ProxyError::GuardrailDenied { .. } => {
                ("invalid_request_error", Some("guardrails_denied"))
            }
            ProxyError::GuardrailTooManyTokens { .. } => {
                ("invalid_request_error", Some("guardrails_too_many_tokens"))
            }
            ProxyError::GuardrailUnscannable { .. } => {
                ("invalid_request_error", Some("guardrails_unscannable"))
            }
            _ => ("invalid_request_error", None),
        }
    }

    fn anthropic_type(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            s if s.is_server_error() => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The body [`ProxyError::to_response`] carries.
    pub fn body(&self, protocol: Protocol) -> bytes::Bytes {
        error_body(
            protocol,
            &self.to_string(),
            self.openai_type(),
            self.anthropic_type(),
        )
        .into()
    }

    pub fn to_response(&self, protocol: Protocol) -> Response<Body> {
        let body = error_body(
            protocol,
            &self.to_string(),
            self.openai_type(),
            self.anthropic_type(),
        );
        let mut response = json_response(self.status(), body);
        if let ProxyError::MethodNotAllowed { allow, .. } = self {
            response
                .headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
        }
        if let ProxyError::MetricsUnauthorized = self {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        if let ProxyError::Unauthorized(AuthError::Throttled { retry_after_secs }) = self {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, (*retry_after_secs).into());
        }
        if let ProxyError::BreakerOpen {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, (*retry_after_secs).into());
        }
        if let ProxyError::RateLimited(refusal) = self {
            let headers = response.headers_mut();
            headers.insert(http::header::RETRY_AFTER, refusal.retry_after_secs().into());
            rate_limit_headers(headers, &refusal.status, protocol);
        }
        response
    }
}

/// The providers' rate-limit headers for the limited dimensions: OpenAI's
/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (reset as a
/// duration such as `6m0s`), Anthropic's
/// `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` (reset as
/// an RFC 3339 time).
pub fn rate_limit_headers(headers: &mut HeaderMap, status: &Status, protocol: Protocol) {
    for (dimension, name) in [(status.requests, "requests"), (status.tokens, "tokens")] {
        let Some(Dimension {
            limit,
            remaining,
            reset,
        }) = dimension
        else {
            continue;
        };
        let secs = ceil_secs(reset);
        let (names, reset) = match protocol {
            Protocol::Openai => (
                [
                    format!("x-ratelimit-limit-{name}"),
                    format!("x-ratelimit-remaining-{name}"),
                    format!("x-ratelimit-reset-{name}"),
                ],
                match secs {
                    s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
                    s => format!("{s}s"),
                },
            ),
            Protocol::Anthropic => (
                [
                    format!("anthropic-ratelimit-{name}-limit"),
                    format!("anthropic-ratelimit-{name}-remaining"),
                    format!("anthropic-ratelimit-{name}-reset"),
                ],
                (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs as i64))
                    .replace_nanosecond(0)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_default(),
            ),
        };
        let [limit_name, remaining_name, reset_name] = names;
        for (header, value) in [
            (limit_name, limit.to_string()),
            (remaining_name, remaining.to_string()),
            (reset_name, reset),
        ] {
            if let (Ok(header), Ok(value)) = (
                http::HeaderName::try_from(header),
                HeaderValue::try_from(value),
            ) {
                headers.insert(header, value);
            }
        }
    }
}

/// An error body in `protocol`'s shape.
pub fn error_body(
    protocol: Protocol,
    message: &str,
    (openai_type, openai_code): (&str, Option<&str>),
    anthropic_type: &str,
) -> Vec<u8> {
    let value = match protocol {
        Protocol::Openai => serde_json::json!({
            "error": {"message": message, "type": openai_type, "param": null, "code": openai_code}
        }),
        Protocol::Anthropic => serde_json::json!({
            "type": "error",
            "error": {"type": anthropic_type, "message": message}
        }),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The event a stream ends with when its upstream breaks: both SDKs raise
/// an error on it instead of returning a silently truncated answer.
pub fn stream_error_event(protocol: Protocol, message: &str) -> bytes::Bytes {
    let body = error_body(
        protocol,
        message,
        ("server_error", Some("upstream_stream_broken")),
        "api_error",
    );
    let body = String::from_utf8(body).unwrap_or_default();
    match protocol {
        Protocol::Openai => format!("data: {body}\n\n").into(),
        Protocol::Anthropic => format!("event: error\ndata: {body}\n\n").into(),
    }
}

/// The event a stream ends with when tollgate refuses the rest of it (a
/// guardrail fired in the answer): `error`'s body in the protocol's shape,
/// which both SDKs raise.
pub fn stream_refusal_event(protocol: Protocol, error: &ProxyError) -> bytes::Bytes {
    let body = String::from_utf8(error.body(protocol).to_vec()).unwrap_or_default();
    match protocol {
        Protocol::Openai => format!("data: {body}\n\n").into(),
        Protocol::Anthropic => format!("event: error\ndata: {body}\n\n").into(),
    }
}

/// What the client gets instead of an upstream error body too large to
/// check for the provider key (the status stays the upstream's).
pub fn withheld_error_body(protocol: Protocol, status: u16) -> bytes::Bytes {
    let message = format!(
        "The upstream provider answered {status}; its error body was too large to pass on safely \
         and was withheld by the gateway."
    );
    error_body(
        protocol,
        &message,
        ("server_error", Some("upstream_error_withheld")),
        "api_error",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let e = ProxyError::UnknownModel("gpt-9".into());
        let openai: serde_json::Value = serde_json::from_slice(&error_body(
            Protocol::Openai,
            &e.to_string(),
            e.openai_type(),
            e.anthropic_type(),
        ))
        .unwrap();
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        assert_eq!(openai["error"]["code"], "model_not_found");
        assert!(
            openai["error"]["message"]
                .as_str()
                .unwrap()
                .contains("gpt-9")
        );
        let anthropic: serde_json::Value = serde_json::from_slice(&error_body(
            Protocol::Anthropic,
            &e.to_string(),
            e.openai_type(),
            e.anthropic_type(),
        ))
        .unwrap();
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "not_found_error");
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }
}
