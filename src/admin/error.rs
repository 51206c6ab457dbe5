//! Admin API errors: `{"error": {"type", "message"}}` with a fitting status.
//! Messages never carry internal details (database errors are logged).

use crate::http::{Body, json_response};
use http::{HeaderValue, Response, StatusCode, header};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("Missing or wrong admin credential: send it as `Authorization: Bearer tga-…`.")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("The change could not be saved; see the server log.")]
    Internal,
    #[error("This method is not allowed here; allowed: {allow}.")]
    MethodNotAllowed { allow: &'static str },
    #[error("The body must be JSON of at most {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error("Too many failed authentications from this address; retry in {retry_after_secs} s.")]
    Throttled { retry_after_secs: u64 },
}

impl AdminError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AdminError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            AdminError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            AdminError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            AdminError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> AdminError {
        tracing::error!(error = %e, "admin API failure");
        AdminError::Internal
    }

    pub fn into_response(self) -> Response<Body> {
        let (status, kind) = self.status();
        let body = serde_json::json!({"error": {"type": kind, "message": self.to_string()}});
        let mut resp = json_response(status, serde_json::to_vec(&body).unwrap_or_default());
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        match self {
            AdminError::MethodNotAllowed { allow } => {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            AdminError::Throttled { retry_after_secs } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, retry_after_secs.into());
            }
            _ => {}
        }
        resp
    }
}
