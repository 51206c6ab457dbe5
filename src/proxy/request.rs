//! Reading and checking the client's request, and choosing its route.

use super::Endpoint;
use super::admission::{self, Governed};
use super::cache;
use super::error::ProxyError;
use super::guardrails;
use crate::access::{ClientKey, model_allowed};
use crate::config::Protocol;
use crate::providers::{Route, Routes};
use crate::state::AppState;
use crate::trace::{MAX_MODEL_BYTES, Trace, truncated};
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A request ready to go upstream.
pub struct Prepared {
    pub endpoint: Endpoint,
    /// The targets, in the order they are tried (the key may use each).
    pub routes: Routes,
    pub headers: HeaderMap,
    /// The body for the primary target.
    pub body: Bytes,
    /// The client's body, and the model it named: another target's body is
    /// this one with that target's model (see [`Prepared::body_for`]).
    pub original: Bytes,
    pub requested: String,
    /// tollgate asked for stream usage the client did not ask for, and must
    /// remove it from what the client sees.
    pub strip_injected_usage: bool,
    /// The modules' holds on the request; they ride on the trace until it
    /// is settled.
    pub governed: Option<Governed>,
}

/// What a checked and routed request goes on to.
pub enum Ready {
    /// Upstream.
    Forward(Box<Prepared>),
    /// Answered from the exact cache.
    Cached(cache::Hit),
}

/// The members of the client's body tollgate reads.
#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// Read leniently (any JSON value): a malformed one is the upstream's
    /// to refuse, and counts here as absent.
    #[serde(default)]
    max_tokens: Option<Value>,
    #[serde(default)]
    max_completion_tokens: Option<Value>,
}

impl Meta<'_> {
    /// The output cap the request names (`max_completion_tokens`, else
    /// `max_tokens`), when it is a whole number.
    fn output_cap(&self) -> Option<u64> {
        [&self.max_completion_tokens, &self.max_tokens]
            .into_iter()
            .find_map(|v| v.as_ref().and_then(Value::as_u64))
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

pub async fn prepare<B>(
    state: &AppState,
    req: Request<B>,
    endpoint: Endpoint,
    key: Option<&ClientKey>,
    trace: &mut Trace,
) -> Result<Ready, ProxyError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let limit = state.config.max_body_bytes;
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    // A client sending its body slowly must not hold the connection and a
    // writer slot indefinitely.
    let timeout = state.config.body_timeout;
    let received = match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(ProxyError::BodyTooLarge { limit }),
        Ok(Err(_)) => return Err(ProxyError::BodyRead),
        Err(_) => {
            return Err(ProxyError::BodyTimeout {
                ms: timeout.as_millis(),
            });
        }
    };
    trace.request_bytes = received.len() as i64;
    let settings = state.modules();
    let guarded = settings.guardrails.enabled;
    // With the guardrails on, the body is stored only once they passed it
    // (redacted), never as received.
    if state.config.store_bodies && !guarded {
        trace.request_body = Some(received.clone());
    }

    let first = received.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_none() {
        return Err(ProxyError::InvalidJson("the body is empty".into()));
    }
    if first != Some(&b'{') {
        return Err(ProxyError::NotAnObject);
    }
    let meta: Meta<'_> =
        serde_json::from_slice(&received).map_err(|e| ProxyError::InvalidJson(e.to_string()))?;
    let requested = match meta.model.as_deref() {
        Some(m) if m.len() > MAX_MODEL_BYTES => {
            trace.model_requested = Some(truncated(m, MAX_MODEL_BYTES).to_string());
            return Err(ProxyError::ModelNameTooLong {
                len: m.len(),
                limit: MAX_MODEL_BYTES,
                start: truncated(m, 32).to_string(),
            });
        }
        Some(m) if !m.is_empty() => m,
        _ => return Err(ProxyError::MissingModel),
    };
    let stream = endpoint != Endpoint::Embeddings && meta.stream == Some(true);
    trace.model_requested = Some(requested.to_string());
    trace.stream = stream;

    let router = state.router();
    let routes = router
        .resolve(requested)
        .ok_or_else(|| ProxyError::UnknownModel(requested.to_string()))?;
    trace.provider = Some(routes.primary().provider.name.clone());
    trace.model_resolved = Some(routes.primary().model.clone());
    let routes = match key {
        Some(key) => routes
            .filtered(|r| model_allowed(key, &router, r))
            .ok_or_else(|| ProxyError::ModelNotAllowed(requested.to_string()))?,
        None => routes,
    };
    let route = routes.primary();
    trace.provider = Some(route.provider.name.clone());
    trace.model_resolved = Some(route.model.clone());
    if route.provider.protocol != endpoint.protocol() {
        return Err(ProxyError::WrongProtocol {
            model: requested.to_string(),
            provider: route.provider.name.clone(),
            protocol: route.provider.protocol.as_str(),
            hint: match route.provider.protocol {
                Protocol::Openai => "/v1/chat/completions",
                Protocol::Anthropic => "/v1/messages",
            },
        });
    }

    // Before the cache: a redacted request is looked up and stored, and
    // goes upstream, in its redacted form only.
    let key_id = key.map_or(admission::ANONYMOUS_KEY, |k| k.id.as_str());
    let body = if guarded {
        let checked =
            guardrails::inspect(state, &settings, endpoint, key_id, &received, trace).await?;
        let body = checked.unwrap_or_else(|| received.clone());
        if state.config.store_bodies {
            trace.request_body = Some(body.clone());
        }
        body
    } else {
        received.clone()
    };

    let include_usage = meta.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true);
    // Before the pipeline: a hit goes nowhere and costs nothing.
    let asked = cache::Asked {
        endpoint,
        key_id,
        route,
        headers: &parts.headers,
        body: &body,
        stream,
        include_usage,
    };
    if let Some(hit) = cache::consult(state, asked, trace).await? {
        return Ok(Ready::Cached(hit));
    }

    let output_cap = match endpoint {
        Endpoint::Embeddings => Some(0),
        _ => meta.output_cap(),
    };
    let governed = admission::admit(state, endpoint, key, &routes, output_cap, body.len())?;

    let inject_usage = endpoint == Endpoint::ChatCompletions && stream && !include_usage;
    let requested = requested.to_string();
    let original = body.clone();
    let body = body_for(&original, &requested, route, inject_usage)?;
    Ok(Ready::Forward(Box::new(Prepared {
        endpoint,
        routes,
        headers: parts.headers,
        body,
        original,
        requested,
        strip_injected_usage: inject_usage,
        governed,
    })))
}

impl Prepared {
    /// The body to send to `route`: the client's, with the target's model
    /// name (and the usage request tollgate adds).
    pub fn body_for(&self, route: &Route) -> Result<Bytes, ProxyError> {
        if route.provider.name == self.routes.primary().provider.name
            && route.model == self.routes.primary().model
        {
            return Ok(self.body.clone());
        }
        body_for(
            &self.original,
            &self.requested,
            route,
            self.strip_injected_usage,
        )
    }
}

fn body_for(
    original: &Bytes,
    requested: &str,
    route: &Route,
    inject_usage: bool,
) -> Result<Bytes, ProxyError> {
    let rename = route.model != requested;
    if rename || inject_usage {
        rewrite(
            original,
            rename.then_some(route.model.as_str()),
            inject_usage,
        )
    } else {
        Ok(original.clone())
    }
}

/// Re-serialises the body with the upstream's model name and/or
/// `stream_options.include_usage = true`, keeping every other member and
/// their order.
fn rewrite(body: &[u8], model: Option<&str>, include_usage: bool) -> Result<Bytes, ProxyError> {
    let mut map: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| ProxyError::InvalidJson(e.to_string()))?;
    if let Some(model) = model {
        map.insert("model".into(), Value::String(model.into()));
    }
    if include_usage {
        let options = map
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Value::Object(o) = options {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    serde_json::to_vec(&map)
        .map(Bytes::from)
        .map_err(|e| ProxyError::InvalidJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_keeps_order_and_other_members() {
        let body = br#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"stream":true,"temperature":0.5}"#;
        let out = rewrite(body, Some("gpt-4o-mini"), true).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"temperature":0.5,"stream_options":{"include_usage":true}}"#
        );
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
        let out = rewrite(body, None, true).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true,"x":1}}"#
        );
    }
}
