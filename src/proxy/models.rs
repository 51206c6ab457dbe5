//! `GET /v1/models`: the models and aliases this gateway routes, answered
//! locally in the list shape of the SDK that asks.

use super::{Body, json_response};
use crate::app::AppState;
use http::{Request, Response};
use serde_json::{Value, json};
use std::collections::HashSet;

pub fn list<B>(state: &AppState, req: &Request<B>) -> Response<Body> {
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
    for (alias, target) in router.aliases() {
        if seen.insert(alias.to_string()) {
            let owner = target.split_once('/').map(|(p, _)| p).unwrap_or(target);
            entries.push((alias.to_string(), owner.to_string()));
        }
    }
    // The Anthropic SDK sends `anthropic-version`; it expects its own shape.
    let body: Value = if req.headers().contains_key("anthropic-version") {
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
