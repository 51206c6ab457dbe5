//! The semantic cache on the request path (`[modules.semantic_cache]`):
//! after the exact cache missed, the request's conversation is embedded by
//! tollgate's own call to the configured embeddings target, and the
//! partition's index is searched for a close enough stored answer.
//!
//! The embeddings call is tollgate's own: it is traced on its own (endpoint
//! `/v1/embeddings`, no client key) and costed like any request, through
//! the writer. It never fails the client's request: any failure is logged,
//! counted, and the request goes upstream as a miss.

use super::Endpoint;
use crate::config::Protocol;
use crate::secret::Secret;
use crate::state::AppState;
use crate::store::WriteOp;
use crate::trace::{ErrorKind, Trace, now_ms};
use http::{HeaderValue, header};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Instant;
use tollgate_modules::semantic_cache::{Settings, normalized};

/// The unit vector of `text` from the configured embeddings target, or
/// `None` (logged and counted) when it could not be had.
pub async fn embed(state: &AppState, settings: &Settings, text: &str) -> Option<Vec<f32>> {
    let started = Instant::now();
    let mut trace = Trace::new(Endpoint::Embeddings.path(), now_ms());
    trace.model_requested = Some(settings.model.clone());
    let result = call(state, settings, text, &mut trace, started).await;
    trace.total_us = started.elapsed().as_micros() as i64;
    match &result {
        Ok(_) => {}
        Err((kind, why)) => {
            state
                .semantic
                .embed_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = %why, "semantic cache: the embeddings call failed; a miss");
            if trace.status == 0 {
                trace.status = 502;
            }
            trace.fail(*kind, why.clone());
        }
    }
    // Traced only when it got as far as a target: a misconfigured model
    // is logged, not recorded as a request.
    if trace.provider.is_some()
        && let Ok(slot) = state.writer.reserve().await
    {
        slot.send(WriteOp::Trace(Box::new(trace)));
    }
    result.ok()
}

type Failure = (ErrorKind, String);

async fn call(
    state: &AppState,
    settings: &Settings,
    text: &str,
    trace: &mut Trace,
    started: Instant,
) -> Result<Vec<f32>, Failure> {
    let routes = state.router().resolve(&settings.model).ok_or_else(|| {
        (
            ErrorKind::UnknownModel,
            format!("unknown embeddings model {:?}", settings.model),
        )
    })?;
    let route = routes.primary();
    let provider = &route.provider;
    if provider.protocol != Protocol::Openai {
        return Err((
            ErrorKind::WrongProtocol,
            "the embeddings model must be served over the OpenAI protocol".into(),
        ));
    }
    trace.provider = Some(provider.name.clone());
    trace.model_resolved = Some(route.model.clone());
    let key: Option<Secret> = match state.vault.pick(&provider.name, &[]) {
        Some(chosen) => Some(chosen.key),
        None => provider.api_key.clone(),
    };
    if key.is_none() && provider.api_key_env.is_some() {
        return Err((
            ErrorKind::MissingProviderKey,
            format!("no API key for provider {}", provider.name),
        ));
    }
    let mut body = json!({"model": route.model, "input": text, "encoding_format": "float"});
    if settings.dimensions > 0 {
        body["dimensions"] = json!(settings.dimensions);
    }
    let body = serde_json::to_vec(&body).unwrap_or_default();
    trace.request_bytes = body.len() as i64;
    let mut request = state
        .client
        .post(provider.url(Endpoint::Embeddings.upstream_path()))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(key) = &key {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                (
                    ErrorKind::MissingProviderKey,
                    "the provider key is not a valid header value".to_string(),
                )
            })?;
        value.set_sensitive(true);
        request = request.header(header::AUTHORIZATION, value);
    }
    trace.upstream_attempted = true;
    let sent_at = Instant::now();
    let response = tokio::time::timeout(state.config.upstream.total_timeout, async {
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, bytes))
    })
    .await;
    trace.upstream_us = Some(sent_at.elapsed().as_micros() as i64);
    let (status, bytes) = match response {
        Err(_) => {
            return Err((
                ErrorKind::UpstreamTimeout,
                "the embeddings call did not finish in time".into(),
            ));
        }
        Ok(Err(e)) => {
            return Err((
                ErrorKind::UpstreamUnreachable,
                format!("the embeddings call failed: {}", e.without_url()),
            ));
        }
        Ok(Ok(answer)) => answer,
    };
    trace.upstream_status = Some(status.as_u16());
    trace.status = status.as_u16();
    trace.response_bytes = bytes.len() as i64;
    trace.ttfb_us = Some(started.elapsed().as_micros() as i64);
    if !status.is_success() {
        // The body may echo the key: not kept.
        return Err((
            ErrorKind::UpstreamStatus,
            format!("the embeddings call was answered {}", status.as_u16()),
        ));
    }
    let answer: Value = serde_json::from_slice(&bytes).map_err(|_| {
        (
            ErrorKind::UpstreamStatus,
            "the embeddings answer is not JSON".to_string(),
        )
    })?;
    if let Some(usage) = answer.get("usage") {
        trace.usage = crate::providers::usage::openai(usage);
    }
    let vector: Option<Vec<f32>> = answer
        .pointer("/data/0/embedding")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect());
    vector.as_deref().and_then(normalized).ok_or_else(|| {
        (
            ErrorKind::UpstreamStatus,
            "the embeddings answer has no usable vector".to_string(),
        )
    })
}
