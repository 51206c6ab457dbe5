//! The admin API, JSON under `/admin/v1/`, behind the admin credential.
//! Every change goes through the writer with its audit entry (actor
//! `admin`) and takes effect in this process at once. Described by the
//! OpenAPI document at `/admin/v1/openapi.json`.

pub mod changes;
pub(crate) mod error;
/// Also called by the dashboard (`ui/`), so that a change made there is
/// checked and audited exactly as through the API.
pub(crate) mod handlers;

use crate::http::{Body, full, json_response};
use crate::state::AppState;
use bytes::Bytes;
use error::AdminError;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde::Serialize;
use std::sync::Arc;

const MAX_BODY: usize = 1024 * 1024;
const OPENAPI: &str = include_str!("openapi.json");

pub async fn handle<B>(state: Arc<AppState>, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let Ok(presented) = crate::access::ClientAuth::presented(req.headers()) else {
        return AdminError::BadRequest(
            "More than one credential sent: send the admin credential once, as `Authorization: Bearer tga-…`.".into(),
        )
        .into_response();
    };
    let peer = crate::request_facts::PeerAddr::ip_of(&req).unwrap_or(crate::access::UNKNOWN_PEER);
    if let Some(retry_after_secs) = state.auth.blocked_for(peer) {
        return AdminError::Throttled { retry_after_secs }.into_response();
    }
    let presented = presented.unwrap_or("");
    if !state.admin.check(presented) {
        return match state.auth.failed_elsewhere(peer) {
            Some(retry_after_secs) => AdminError::Throttled { retry_after_secs },
            None => AdminError::Unauthorized,
        }
        .into_response();
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let segments = match segments.as_slice() {
        ["admin", "v1", rest @ ..] => rest,
        _ => &[][..],
    };
    let Some(allow) = allowed_methods(segments) else {
        return AdminError::NotFound(format!("no admin route {method} {path}")).into_response();
    };
    if !allow.split(", ").any(|m| m == method.as_str()) {
        return AdminError::MethodNotAllowed { allow }.into_response();
    }
    // Refused before reading: a client declaring a huge body must not hold
    // the connection while it sends it.
    if declared_length(&req).is_some_and(|n| n > MAX_BODY as u64) {
        return AdminError::PayloadTooLarge { limit: MAX_BODY }.into_response();
    }
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let s = &state;
    let result = match (&method, segments) {
        (&Method::GET, ["openapi.json"]) => {
            return json_response(StatusCode::OK, OPENAPI);
        }
        (&Method::GET, ["keys"]) => handlers::list_keys(s).await,
        (&Method::POST, ["keys"]) => handlers::create_key(s, &body).await,
        (&Method::POST, ["keys", id, "revoke"]) | (&Method::DELETE, ["keys", id]) => {
            handlers::revoke_key(s, id).await
        }
        (&Method::PATCH, ["keys", id]) => handlers::patch_key(s, id, &body).await,
        (&Method::GET, ["provider-keys"]) => handlers::list_provider_keys(s).await,
        (&Method::POST, ["provider-keys"]) => handlers::set_provider_key(s, &body).await,
        (&Method::DELETE, ["provider-keys", id]) => handlers::delete_provider_key(s, id).await,
        (&Method::POST, ["vault", "rotate"]) => handlers::rotate_vault(s, &body).await,
        (&Method::GET, ["aliases"]) => handlers::list_aliases(s).await,
        (&Method::PUT, ["aliases", name]) => handlers::set_alias(s, name, &body).await,
        (&Method::DELETE, ["aliases", name]) => handlers::delete_alias(s, name).await,
        (&Method::GET, ["modules"]) => handlers::list_modules(s).await,
        (&Method::GET, ["modules", name]) => handlers::get_module(s, name).await,
        (&Method::PUT, ["modules", name]) => handlers::put_module(s, name, &body).await,
        (&Method::DELETE, ["modules", name]) => handlers::reset_module(s, name).await,
        (&Method::GET, ["prices"]) => handlers::list_prices(s).await,
        (&Method::GET, ["breakers"]) => handlers::list_breakers(s).await,
        (&Method::GET, ["cache"]) => handlers::cache_stats(s).await,
        (&Method::DELETE, ["cache"]) => handlers::purge_cache(s, query.as_deref()).await,
        (&Method::PUT, ["prices", provider, model]) => {
            handlers::set_price(s, provider, model, &body).await
        }
        (&Method::DELETE, ["prices", provider, model]) => {
            handlers::delete_price(s, provider, model).await
        }
        _ => Err(AdminError::NotFound(format!(
            "no admin route {method} {path}"
        ))),
    };
    match result {
        Ok(reply) => reply.into_response(),
        Err(e) => e.into_response(),
    }
}

/// The methods each admin path answers (`Allow`); `None`: no such path.
/// Matches the dispatch in [`handle`].
fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    Some(match segments {
        ["openapi.json"] => "GET",
        ["keys"] | ["provider-keys"] => "GET, POST",
        ["keys", _, "revoke"] | ["vault", "rotate"] => "POST",
        ["keys", _] => "PATCH, DELETE",
        ["provider-keys", _] => "DELETE",
        ["aliases"] | ["prices"] | ["modules"] | ["breakers"] => "GET",
        ["modules", _] => "GET, PUT, DELETE",
        ["cache"] => "GET, DELETE",
        ["aliases", _] | ["prices", _, _] => "PUT, DELETE",
        _ => return None,
    })
}

fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn read_body<B>(req: Request<B>) -> Result<Bytes, AdminError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| {
            AdminError::BadRequest(format!("the body must be JSON of at most {MAX_BODY} bytes"))
        })
}

/// A successful answer: status and JSON.
pub struct Reply {
    status: StatusCode,
    body: Option<serde_json::Value>,
}

impl Reply {
    pub fn ok(body: impl Serialize) -> Reply {
        Reply::with(StatusCode::OK, body)
    }

    pub fn created(body: impl Serialize) -> Reply {
        Reply::with(StatusCode::CREATED, body)
    }

    pub fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
        }
    }

    /// The JSON answer, if any.
    pub fn body(&self) -> Option<&serde_json::Value> {
        self.body.as_ref()
    }

    fn with(status: StatusCode, body: impl Serialize) -> Reply {
        Reply {
            status,
            body: Some(serde_json::to_value(body).unwrap_or_default()),
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut resp = match self.body {
            Some(body) => json_response(self.status, serde_json::to_vec(&body).unwrap_or_default()),
            None => {
                let mut resp = Response::new(full(Bytes::new()));
                *resp.status_mut() = self.status;
                resp
            }
        };
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}
