//! The router: one place that says which code answers which method and
//! path — the proxy routes, `/v1/models`, `/healthz`, `/metrics`, the
//! admin API and the dashboard (`/ui`) — and answers 404/405 (with
//! `Allow`) for the rest, in the client's protocol shape. It sits above every room it dispatches to, so
//! none of them imports another to reach a sibling.

use crate::config::Protocol;
use crate::http::{Body, json_response, without_body};
use crate::proxy::Endpoint;
use crate::proxy::error::ProxyError;
use crate::state::AppState;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use std::sync::Arc;

pub async fn handle<B>(state: Arc<AppState>, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if req.uri().path().split('/').nth(1) == Some("admin") {
        return crate::admin::handle(state, req).await;
    }
    if state.config.ui.enabled && req.uri().path().split('/').nth(1) == Some("ui") {
        return crate::ui::handle(state, req).await;
    }
    let metrics_here = state.config.metrics.listen.is_none();
    let endpoint = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/chat/completions") => Endpoint::ChatCompletions,
        (&Method::POST, "/v1/embeddings") => Endpoint::Embeddings,
        (&Method::POST, "/v1/messages") => Endpoint::Messages,
        (&Method::GET, "/v1/models") => return crate::proxy::models::list(&state, &req).await,
        (&Method::GET, "/healthz") => return health(&state).await,
        (&Method::HEAD, "/healthz") => return without_body(health(&state).await),
        (&Method::GET, "/metrics") if metrics_here => {
            return crate::metrics::authorized(&state, &req);
        }
        (method, path) => {
            let protocol = client_protocol(path, req.headers());
            let (method, path) = (method.to_string(), path.to_string());
            return match allowed_methods(&path, metrics_here) {
                Some(allow) => ProxyError::MethodNotAllowed {
                    method,
                    path,
                    allow,
                },
                None => ProxyError::NotFound { method, path },
            }
            .to_response(protocol);
        }
    };
    crate::proxy::forward(state, req, endpoint).await
}

/// The protocol a request that matched no route most likely speaks, for
/// the shape of its error.
fn client_protocol(path: &str, headers: &http::HeaderMap) -> Protocol {
    if path.starts_with("/v1/messages") || headers.contains_key("anthropic-version") {
        Protocol::Anthropic
    } else {
        Protocol::Openai
    }
}

/// The `Allow` header of a known path (outside the admin API).
fn allowed_methods(path: &str, metrics_here: bool) -> Option<&'static str> {
    match path {
        "/v1/chat/completions" | "/v1/embeddings" | "/v1/messages" => Some("POST"),
        "/v1/models" => Some("GET"),
        "/healthz" => Some("GET, HEAD"),
        "/metrics" if metrics_here => Some("GET"),
        _ => None,
    }
}

async fn health(state: &AppState) -> Response<Body> {
    let ok = state
        .reads
        .read(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
        .await
        .is_ok();
    let (status, body) = if ok {
        (StatusCode::OK, &br#"{"status":"ok"}"#[..])
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            &br#"{"status":"database unavailable"}"#[..],
        )
    };
    json_response(status, body)
}
