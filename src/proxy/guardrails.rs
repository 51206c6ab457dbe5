//! The guardrails on the request path (`[modules.guardrails]`): after
//! routing and before the cache and the module pipeline, every text part of
//! the request is scanned by the compiled `Guard`. PII is replaced by typed
//! placeholders (`[EMAIL_1]`) — and the redacted body is what goes upstream,
//! what the cache keys and what `traces.request_body` keeps — or, in block
//! mode, refuses the request. Deny rules, the token limit and anything the
//! engine cannot scan refuse it too: the guardrails fail closed.
//!
//! What fired goes on the trace as rule names and counts; the matched text
//! goes nowhere (not in the trace, the error, or a log line).

use super::Endpoint;
use super::error::ProxyError;
use crate::http::Body;
use crate::state::AppState;
use crate::trace::{Findings, Trace};
use bytes::Bytes;
use http::{HeaderValue, Response};
use std::sync::Arc;
use tollgate_modules::ModuleSettings;
use tollgate_modules::guardrails::{Guard, Refusal, RequestShape};

/// The response header that says how many matches were redacted from the
/// request (`redacted=N`), sent only when N > 0.
pub const HEADER: &str = "x-tollgate-guardrails";

/// The engine's view of what an endpoint's body looks like.
pub fn shape(endpoint: Endpoint) -> RequestShape {
    match endpoint {
        Endpoint::ChatCompletions => RequestShape::ChatCompletions,
        Endpoint::Messages => RequestShape::Messages,
        Endpoint::Embeddings => RequestShape::Embeddings,
    }
}

/// Bodies up to this size are scanned on the request's task; larger ones
/// on the blocking pool, so a few MiB of text never stall an async worker.
const INLINE_SCAN_BYTES: usize = 128 * 1024;

/// Scans `body` (already checked to be a JSON object) with the guardrails
/// of `settings`, which must be enabled. `Ok(Some(redacted))`: the body to
/// use from now on; `Ok(None)`: the body stands as it is.
pub async fn inspect(
    state: &AppState,
    settings: &Arc<ModuleSettings>,
    endpoint: Endpoint,
    key_id: &str,
    body: &Bytes,
    trace: &mut Trace,
) -> Result<Option<Bytes>, ProxyError> {
    let scanned = match state.guard(settings) {
        // The reason names the operator's setting: logged when compiled,
        // not shown to the client.
        Err(_) => Err(unscannable("the gateway's guardrail rules are not usable")),
        Ok(guard) if body.len() <= INLINE_SCAN_BYTES => {
            // An engine panic refuses the request rather than pass it.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                scan(&guard, endpoint, key_id, body)
            }))
            .unwrap_or_else(|_| Err(unscannable("internal error")))
        }
        Ok(guard) => {
            let (key_id, body) = (key_id.to_string(), body.clone());
            tokio::task::spawn_blocking(move || scan(&guard, endpoint, &key_id, &body))
                .await
                .unwrap_or_else(|_| Err(unscannable("internal error")))
        }
    };
    match scanned {
        Ok((found, redacted)) => {
            trace.add_guardrails(&found);
            Ok(redacted)
        }
        Err(refusal) => {
            trace.add_guardrails(&refused(&refusal));
            Err(ProxyError::from(refusal))
        }
    }
}

/// What the guard found, and the redacted body when it redacted anything.
fn scan(
    guard: &Guard,
    endpoint: Endpoint,
    key_id: &str,
    body: &[u8],
) -> Result<(Findings, Option<Bytes>), Refusal> {
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| unscannable("the body could not be read as JSON"))?;
    let found = guard.inspect_request(key_id, shape(endpoint), &mut value)?;
    if found.redacted == 0 {
        return Ok((found, None));
    }
    let redacted = serde_json::to_vec(&value)
        .map_err(|_| unscannable("the redacted body could not be written"))?;
    Ok((found, Some(Bytes::from(redacted))))
}

fn unscannable(reason: &str) -> Refusal {
    Refusal::Unscannable {
        reason: reason.into(),
    }
}

/// The rule a refusal is recorded under on the trace.
/// What a refusal records on the trace: its rule (or `max_input_tokens`,
/// `unscannable`) fired once — the request's and the answer's side alike.
pub fn refused(refusal: &Refusal) -> Findings {
    let rule = match refusal {
        Refusal::Blocked { rule } | Refusal::Denied { rule } => rule.as_str(),
        Refusal::TooManyTokens { .. } => "max_input_tokens",
        Refusal::Unscannable { .. } => "unscannable",
    };
    Findings {
        redacted: 0,
        fired: [(rule.to_string(), 1)].into(),
    }
}

/// How many matches the request side redacted, from its trace.
pub fn redacted(trace: &Trace) -> u32 {
    trace.guardrails.as_ref().map_or(0, |f| f.redacted)
}

/// Puts `x-tollgate-guardrails: redacted=N` on `response` when N > 0.
pub fn report(response: &mut Response<Body>, redacted: u32) {
    if redacted > 0
        && let Ok(value) = HeaderValue::from_str(&format!("redacted={redacted}"))
    {
        response.headers_mut().insert(HEADER, value);
    }
}
