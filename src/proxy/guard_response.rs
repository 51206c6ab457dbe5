//! Guardrails on the answer (`[modules.guardrails]`, response side): decides
//! whether an upstream's 2xx answer is checked, and how.
//!
//! * A JSON answer is read whole first (at most `scan_limit_bytes`, within
//!   the response deadline), checked with `Guard::inspect_response`, and
//!   sent re-serialized with its own `content-length` — or replaced by a
//!   provider-shaped 400 when a rule refuses it or it cannot be scanned
//!   (too large, not JSON): fail closed. The watch still reads the
//!   upstream's own bytes, so usage and cost are those of the real answer.
//! * A stream goes through [`GuardStream`] after the watch (usage is read
//!   before it): text is held back at most `LOOK_BEHIND` bytes per choice or
//!   block; a refusal ends the stream with an error event.
//!
//! Embeddings answers carry no text and are not checked.

use super::BoxError;
use super::cache::Hit;
use super::error::ProxyError;
use super::guardrails::refused;
use crate::config::Protocol;
use crate::providers::guard_stream::GuardStream;
use crate::state::AppState;
use crate::trace::Trace;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use std::sync::Arc;
use tollgate_modules::guardrails::{Action, Findings, Guard, Refusal, ResponseShape};

pub type Upstream = BoxStream<'static, Result<Bytes, BoxError>>;

/// A response to be checked: the compiled rules in force for the request
/// and its client key.
pub struct Plan {
    guard: Arc<Guard>,
    key_id: String,
    scan_limit: usize,
}

/// How the answer is checked while it goes to the client.
pub enum Stage {
    Stream(Box<GuardStream>),
    /// A JSON answer checked whole beforehand: what the client gets once the
    /// upstream body has ended (`None`: nothing — the read broke off).
    Json(Option<Bytes>),
}

/// Whether the answer to this request is checked: guardrails on, a 2xx
/// chat or messages answer, and a response-side rule that can fire. An
/// error: the rules in force do not compile, so the answer cannot be
/// checked and is refused.
pub fn plan(state: &AppState, trace: &Trace, success: bool) -> Option<Result<Plan, Refusal>> {
    if !success || trace.endpoint == super::Endpoint::Embeddings.path() {
        return None;
    }
    let modules = state.modules();
    if !modules.guardrails.enabled {
        return None;
    }
    let guard = match state.guard(&modules) {
        Ok(guard) => guard,
        Err(_) => {
            return Some(Err(Refusal::Unscannable {
                reason: "the guardrails settings in force do not compile".into(),
            }));
        }
    };
    let settings = guard.settings();
    let key_id = trace
        .client_key_id
        .clone()
        .unwrap_or_else(|| super::admission::ANONYMOUS_KEY.to_string());
    let key_rules = settings
        .keys
        .get(&key_id)
        .is_some_and(|k| !k.deny.is_empty() || !k.deny_literals.is_empty());
    let active = settings.response_pii_action != Action::Off
        || (settings.deny_on.response()
            && (!settings.deny.is_empty() || !settings.deny_literals.is_empty() || key_rules));
    let scan_limit = usize::try_from(settings.scan_limit_bytes).unwrap_or(usize::MAX);
    active.then_some(Ok(Plan {
        scan_limit,
        guard,
        key_id,
    }))
}

impl Plan {
    pub fn stream(&self, protocol: Protocol) -> Stage {
        Stage::Stream(Box::new(GuardStream::new(
            protocol,
            self.guard.clone(),
            &self.key_id,
            self.scan_limit,
        )))
    }
}

/// A JSON answer read and checked before its head goes to the client.
pub struct CheckedJson {
    /// The upstream's bytes as read, then what ended the read (for the watch).
    pub upstream: Upstream,
    pub stage: Stage,
    /// The refusal to answer instead of the body.
    pub refused: Option<ProxyError>,
    pub findings: Findings,
}

/// Reads the whole JSON answer (until `until`, at most the scan limit) and
/// checks it.
pub async fn check_json(
    plan: &Plan,
    protocol: Protocol,
    mut upstream: Upstream,
    until: tokio::time::Instant,
) -> CheckedJson {
    let mut buf = BytesMut::new();
    let broke = |buf: BytesMut, rest: Upstream| CheckedJson {
        upstream: Box::pin(stream::iter([Ok(buf.freeze())]).chain(rest)),
        stage: Stage::Json(None),
        refused: None,
        findings: Findings::default(),
    };
    loop {
        match tokio::time::timeout_at(until, upstream.next()).await {
            // The body's own deadline ends it, as any late body.
            Err(_) => return broke(buf, Box::pin(stream::pending())),
            Ok(Some(Err(e))) => return broke(buf, Box::pin(stream::iter([Err(e)]))),
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => {
                buf.extend_from_slice(&chunk);
                if buf.len() > plan.scan_limit {
                    let refusal = Refusal::Unscannable {
                        reason: "the answer is larger than the scan limit".into(),
                    };
                    return CheckedJson {
                        upstream: Box::pin(stream::iter([Ok(buf.freeze())])),
                        stage: Stage::Json(None),
                        findings: refused(&refusal),
                        refused: Some(ProxyError::from(refusal)),
                    };
                }
            }
        }
    }
    let body = buf.freeze();
    let checked = if body.len() <= INLINE_SCAN_BYTES {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inspect_json(plan, protocol, &body)
        }))
        .unwrap_or_else(|_| Err(internal_error()))
    } else {
        let (guard, key_id, whole) = (plan.guard.clone(), plan.key_id.clone(), body.clone());
        tokio::task::spawn_blocking(move || inspect(&guard, &key_id, protocol, &whole))
            .await
            .unwrap_or_else(|_| Err(internal_error()))
    };
    let (stage, refusal, findings) = match checked {
        Ok((redacted, findings)) => (Stage::Json(Some(redacted)), None, findings),
        Err(refusal) => (
            Stage::Json(None),
            Some(ProxyError::from(refusal.clone())),
            refused(&refusal),
        ),
    };
    CheckedJson {
        upstream: Box::pin(stream::iter([Ok(body)])),
        stage,
        refused: refusal,
        findings,
    }
}

/// Answers up to this size are checked on the response's task; larger ones
/// on the blocking pool, so a few MiB of text never stall an async worker.
const INLINE_SCAN_BYTES: usize = 128 * 1024;

fn internal_error() -> Refusal {
    Refusal::Unscannable {
        reason: "internal error".into(),
    }
}

/// A cache hit under the rules in force (its answer may have been stored
/// before they were): redacted in place, or the refusal to answer instead.
pub fn check_hit(
    state: &AppState,
    trace: &mut Trace,
    protocol: Protocol,
    hit: &mut Hit,
) -> Result<(), ProxyError> {
    let Some(plan) = plan(state, trace, true) else {
        return Ok(());
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(refusal) => {
            trace.add_guardrails(&refused(&refusal));
            return Err(ProxyError::from(refusal));
        }
    };
    let body = hit.body_mut().clone();
    let checked = if hit.is_stream() {
        let mut stream =
            GuardStream::new(protocol, plan.guard.clone(), &plan.key_id, plan.scan_limit);
        let mut out = Vec::new();
        let fed = stream
            .feed(&body, &mut out)
            .and_then(|()| stream.finish(&mut out));
        trace.add_guardrails(&stream.findings());
        fed.map(|()| Bytes::from(out.concat()))
    } else {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inspect_json(&plan, protocol, &body)
        }))
        .unwrap_or_else(|_| Err(internal_error()))
        .map(|(redacted, findings)| {
            trace.add_guardrails(&findings);
            redacted
        })
    };
    match checked {
        Ok(body) => {
            *hit.body_mut() = body;
            Ok(())
        }
        Err(refusal) => {
            trace.add_guardrails(&refused(&refusal));
            Err(ProxyError::from(refusal))
        }
    }
}

fn inspect_json(
    plan: &Plan,
    protocol: Protocol,
    body: &[u8],
) -> Result<(Bytes, Findings), Refusal> {
    inspect(&plan.guard, &plan.key_id, protocol, body)
}

fn inspect(
    guard: &Guard,
    key_id: &str,
    protocol: Protocol,
    body: &[u8],
) -> Result<(Bytes, Findings), Refusal> {
    let unscannable = || Refusal::Unscannable {
        reason: "the answer is not a JSON object".into(),
    };
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|_| unscannable())?;
    if !value.is_object() {
        return Err(unscannable());
    }
    let shape = match protocol {
        Protocol::Openai => ResponseShape::ChatCompletions,
        Protocol::Anthropic => ResponseShape::Messages,
    };
    let findings = guard.inspect_response(key_id, shape, &mut value)?;
    // Log probabilities spell the text out token by token: they cannot be
    // redacted with it, so they do not pass.
    let mut dropped_logprobs = false;
    if let Some(choices) = value
        .get_mut("choices")
        .and_then(serde_json::Value::as_array_mut)
    {
        for choice in choices {
            if choice.get("logprobs").is_some_and(|l| !l.is_null()) {
                choice["logprobs"] = serde_json::Value::Null;
                dropped_logprobs = true;
            }
        }
    }
    if findings.redacted == 0 && !dropped_logprobs {
        // Nothing changed: the upstream's bytes as they were.
        return Ok((Bytes::copy_from_slice(body), findings));
    }
    let redacted = serde_json::to_vec(&value).map_err(|_| unscannable())?;
    Ok((Bytes::from(redacted), findings))
}
