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
use tollgate_modules::guardrails::{Refusal, RequestShape};

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

/// Scans `body` (already checked to be a JSON object) with the guardrails
/// of `settings`, which must be enabled. `Ok(Some(redacted))`: the body to
/// use from now on; `Ok(None)`: the body stands as it is.
pub fn inspect(
    state: &AppState,
    settings: &Arc<ModuleSettings>,
    endpoint: Endpoint,
    key_id: &str,
    body: &Bytes,
    trace: &mut Trace,
) -> Result<Option<Bytes>, ProxyError> {
    let refuse = |trace: &mut Trace, refusal: Refusal| {
        trace.add_guardrails(&fired(refused_rule(&refusal)));
        Err(ProxyError::from(refusal))
    };
    let guard = match state.guard(settings) {
        Ok(guard) => guard,
        // The reason names the operator's setting: logged when compiled,
        // not shown to the client.
        Err(_) => {
            return refuse(
                trace,
                Refusal::Unscannable {
                    reason: "the gateway's guardrail rules are not usable".into(),
                },
            );
        }
    };
    let mut value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return refuse(
                trace,
                Refusal::Unscannable {
                    reason: "the body could not be read as JSON".into(),
                },
            );
        }
    };
    let found = match guard.inspect_request(key_id, shape(endpoint), &mut value) {
        Ok(found) => found,
        Err(refusal) => return refuse(trace, refusal),
    };
    trace.add_guardrails(&found);
    if found.redacted == 0 {
        return Ok(None);
    }
    match serde_json::to_vec(&value) {
        Ok(redacted) => Ok(Some(Bytes::from(redacted))),
        Err(_) => refuse(
            trace,
            Refusal::Unscannable {
                reason: "the redacted body could not be written".into(),
            },
        ),
    }
}

/// The rule a refusal is recorded under on the trace.
fn refused_rule(refusal: &Refusal) -> &str {
    match refusal {
        Refusal::Blocked { rule } | Refusal::Denied { rule } => rule,
        Refusal::TooManyTokens { .. } => "max_input_tokens",
        Refusal::Unscannable { .. } => "unscannable",
    }
}

fn fired(rule: &str) -> Findings {
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
