//! `GET /v1/models`: the models and aliases this gateway routes, answered
//! locally in the list shape of the SDK that asks. It names the operator's
//! aliases, so it asks for a client key like the proxy routes do
//! (`auth.require_client_key`).

use super::error::ProxyError;
use super::{Body, json_response};
use crate::config::Protocol;
use crate::state::AppState;
use http::{Request, Response};
use serde_json::{Value, json};
use std::collections::HashSet;

pub async fn list<B>(state: &AppState, req: &Request<B>) -> Response<Body> {
    // The Anthropic SDK sends `anthropic-version`; it expects its own shape.
    let anthropic = req.headers().contains_key("anthropic-version");
    if state.config.require_client_key
        && let Err(e) = state
            .auth
            .authenticate(req.headers(), super::peer_ip(req), crate::trace::now_ms())
            .await
    {
        let protocol = if anthropic {
            Protocol::Anthropic
        } else {
            Protocol::Openai
        };
        return ProxyError::Unauthorized(e.error).to_response(protocol);
    }
    let router = state.router();
    let mut seen = HashSet::new();
    let mut entries: Vec<(String, String)> = Vec::new();
    for provider in router.providers() {
        for model in &provider.models {
            if seen.insert(model.clone()) {
                entries.push((model.clone(), provider.name.clone()));
            }
        }
    }
    for (alias, targets) in router.aliases() {
        if seen.insert(alias.to_string()) {
            let target = targets.first().map(String::as_str).unwrap_or_default();
            let owner = target.split_once('/').map(|(p, _)| p).unwrap_or(target);
            entries.push((alias.to_string(), owner.to_string()));
        }
    }
    let body: Value = if anthropic {
        let data: Vec<Value> = entries
            .iter()
            .map(|(id, _)| {
                json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"})
            })
            .collect();
        json!({
            "data": data,
            "has_more": false,
            "first_id": entries.first().map(|e| &e.0),
            "last_id": entries.last().map(|e| &e.0),
        })
    } else {
        let data: Vec<Value> = entries
            .iter()
            .map(
                |(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner}),
            )
            .collect();
        json!({"object": "list", "data": data})
    };
    json_response(
        http::StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}
