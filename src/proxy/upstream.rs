//! Sending the prepared request upstream: the provider's credential in, the
//! client's credential and hop-by-hop headers out; and which of the
//! upstream's response headers the client may see.

use super::error::ProxyError;
use super::key_recheck as recheck;
use super::request::Prepared;
use crate::config::Protocol;
use crate::providers::Route;
use crate::secret::Secret;
use crate::state::AppState;
use crate::trace::Trace;
use crate::trace::now_ms;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use std::time::{Duration, Instant};
use tollgate_modules::retry::retryable_status;

pub struct UpstreamCall {
    pub response: reqwest::Response,
    pub route: Route,
    pub strip_injected_usage: bool,
    pub sent_at: Instant,
    /// The provider key the answer came back for: an error body must not
    /// show it to the client.
    pub credential: Option<Secret>,
}

/// Request headers never forwarded: hop-by-hop ones, ones the HTTP client
/// sets itself, the client's credentials (tollgate's, not the provider's),
/// and account selectors that belong with the provider key.
const DROP_REQUEST: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "accept-encoding",
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "openai-organization",
    "openai-project",
];

/// How one attempt ended, for the trace's attempt log.
enum Ended {
    Status(u16),
    Error(&'static str),
    Skipped,
}

/// One attempt, as the trace's attempt log records it.
struct Attempt<'r> {
    route: &'r Route,
    ended: Ended,
    /// `None`: skipped without a request.
    took: Option<Duration>,
    outcome: &'static str,
}

/// The attempts of one request; serialised only when the trace keeps the
/// log (more than one attempt, or a target skipped).
#[derive(Default)]
struct Attempts<'r> {
    log: Vec<Attempt<'r>>,
}

impl<'r> Attempts<'r> {
    fn push(
        &mut self,
        route: &'r Route,
        ended: Ended,
        took: Option<Duration>,
        outcome: &'static str,
    ) {
        self.log.push(Attempt {
            route,
            ended,
            took,
            outcome,
        });
    }

    fn record(self, trace: &mut Trace) {
        let made = self.log.iter().filter(|a| a.took.is_some()).count() as i64;
        let skipped = self.log.iter().any(|a| a.took.is_none());
        trace.attempts = (made > 0).then_some(made);
        if made <= 1 && !skipped {
            return;
        }
        let entries: Vec<serde_json::Value> = self
            .log
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut entry = serde_json::json!({
                    "n": i + 1,
                    "provider": a.route.provider.name,
                    "model": a.route.model,
                });
                match a.ended {
                    Ended::Status(s) => entry["status"] = s.into(),
                    Ended::Error(e) => entry["error"] = e.into(),
                    Ended::Skipped => entry["error"] = "breaker_open".into(),
                }
                if let Some(took) = a.took {
                    entry["duration_us"] = (took.as_micros() as i64).into();
                }
                entry["outcome"] = a.outcome.into();
                entry
            })
            .collect();
        trace.attempt_log = Some(serde_json::Value::Array(entries).to_string());
    }
}

/// Sends the request to its targets in turn until one answers: each target
/// is tried up to `[modules.retry]`'s attempts (with backoff) while its
/// breaker lets requests through, then the next (`[modules.fallback]`). A
/// connect error, a timeout before the first byte, 429 and 5xx are failures
/// worth another attempt; anything else is the answer. The decision is made
/// here, on the response head, before any byte reaches the client: once the
/// answer is handed to the body nothing is retried. When every attempt
/// failed, the last failure is the answer (an upstream error passes through
/// as before); when no target was tried because every breaker is open, the
/// client gets 503 `breaker_open`.
pub async fn send(
    state: &AppState,
    prepared: Prepared,
    trace: &mut Trace,
) -> Result<UpstreamCall, ProxyError> {
    let modules = state.modules();
    let headers = base_headers(&prepared.headers);
    let targets = prepared.routes.iter().take(if modules.fallback.enabled {
        usize::MAX
    } else {
        1
    });
    let per_target = modules.retry.attempts_per_target();
    let mut attempts = Attempts::default();
    let mut last: Option<Result<UpstreamCall, ProxyError>> = None;
    let mut attempted = false;
    'targets: for route in targets {
        let body = prepared.body_for(route)?;
        for n in 0..per_target {
            if !state.breaker.admit(
                &modules.breaker,
                &route.provider.name,
                &route.model,
                now_ms(),
            ) {
                attempts.push(route, Ended::Skipped, None, "skipped");
                continue 'targets;
            }
            if n > 0 {
                let asked = match &last {
                    Some(Ok(call)) => retry_after(call.response.headers()),
                    _ => None,
                };
                tokio::time::sleep(modules.retry.backoff(n as u32, jitter(), asked)).await;
            }
            let started = Instant::now();
            let path = prepared.endpoint.upstream_path();
            let result = attempt(state, route, path, &headers, body.clone(), trace).await;
            attempted |= trace.upstream_attempted;
            let (ended, failed) = match &result {
                Ok(call) => {
                    let status = call.response.status().as_u16();
                    (Ended::Status(status), retryable_status(status))
                }
                Err(ProxyError::UpstreamTimeout(_)) => (Ended::Error("timeout"), true),
                Err(ProxyError::UpstreamUnreachable(_)) => (Ended::Error("unreachable"), true),
                // Not the upstream's failure (no key for this provider):
                // no retry, no breaker count; the next target may do.
                Err(_) => {
                    attempts.push(
                        route,
                        Ended::Error("missing_provider_key"),
                        Some(started.elapsed()),
                        "failed",
                    );
                    last = Some(result);
                    continue 'targets;
                }
            };
            // A 429 is the provider limiting this account, not failing: it is
            // retried, but tells the breaker nothing.
            if !matches!(ended, Ended::Status(429)) {
                state.breaker.record(
                    &modules.breaker,
                    &route.provider.name,
                    &route.model,
                    !failed,
                    now_ms(),
                );
            }
            if !failed {
                attempts.push(route, ended, Some(started.elapsed()), "answered");
                attempts.record(trace);
                return finish(result, route, prepared.strip_injected_usage, trace);
            }
            attempts.push(route, ended, Some(started.elapsed()), "failed");
            last = Some(result);
            trace.provider = Some(route.provider.name.clone());
            trace.model_resolved = Some(route.model.clone());
        }
    }
    attempts.record(trace);
    trace.upstream_attempted = attempted;
    match last {
        Some(Ok(call)) => {
            let route = call.route.clone();
            finish(Ok(call), &route, prepared.strip_injected_usage, trace)
        }
        Some(Err(e)) => Err(e),
        None => Err(ProxyError::BreakerOpen {
            model: prepared.requested.clone(),
            retry_after_secs: modules.breaker.cooldown_ms.div_ceil(1000).max(1),
        }),
    }
}

/// The answer's route and status on the trace.
fn finish(
    result: Result<UpstreamCall, ProxyError>,
    route: &Route,
    strip_injected_usage: bool,
    trace: &mut Trace,
) -> Result<UpstreamCall, ProxyError> {
    let mut call = result?;
    call.strip_injected_usage = strip_injected_usage;
    trace.provider = Some(route.provider.name.clone());
    trace.model_resolved = Some(route.model.clone());
    let response = &call.response;
    trace.status = response.status().as_u16();
    trace.upstream_status = Some(trace.status);
    trace.upstream_request_id = response
        .headers()
        .get("x-request-id")
        .or_else(|| response.headers().get("request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(call)
}

/// The pause an upstream asked for: `retry-after-ms`, else `retry-after`
/// in whole seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    number("retry-after-ms")
        .map(Duration::from_millis)
        .or_else(|| number("retry-after").map(Duration::from_secs))
}

/// A uniform draw in [0, 1) for the backoff's jitter.
fn jitter() -> f64 {
    (getrandom::u64().unwrap_or(0) >> 11) as f64 / (1u64 << 53) as f64
}

/// The headers every attempt sends, before the credential.
fn base_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut headers = forwardable(incoming);
    // The proxy reads usage out of the body, so it must arrive uncompressed.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// One attempt at one target: its credential in, sent, the response head
/// awaited (up to `upstream.first_byte_timeout`).
async fn attempt(
    state: &AppState,
    route: &Route,
    path: &'static str,
    headers: &HeaderMap,
    body: bytes::Bytes,
    trace: &mut Trace,
) -> Result<UpstreamCall, ProxyError> {
    let provider = &route.provider;
    let mut headers = headers.clone();
    if provider.protocol == Protocol::Anthropic
        && !headers.contains_key("anthropic-version")
        && let Ok(v) = HeaderValue::from_str(&provider.anthropic_version)
    {
        headers.insert("anthropic-version", v);
    }
    let url = provider.url(path);

    // Vault keys first, spread round robin; after a 401 the request is
    // tried with the next one, and the refused key is probed (and set aside
    // only if the probe is refused too).
    recheck::retest_due(state, provider);
    let mut refused: Vec<String> = Vec::new();
    let mut chosen = state.vault.pick(&provider.name, &refused);
    let (response, sent_at, credential) = loop {
        let credential = match (&chosen, &provider.api_key, &provider.api_key_env) {
            (Some(c), _, _) => Some(c.key.clone()),
            (None, Some(key), _) => Some(key.clone()),
            (None, None, Some(env)) => {
                return Err(ProxyError::MissingProviderKey {
                    provider: provider.name.clone(),
                    env: if state.vault.has_keys(&provider.name) {
                        format!("{env}, and every stored key was refused by the upstream")
                    } else {
                        env.clone()
                    },
                });
            }
            (None, None, None) => None,
        };
        let mut attempt = headers.clone();
        if let Some(key) = credential.as_ref().map(Secret::expose) {
            let (name, value) = match provider.protocol {
                Protocol::Openai => (header::AUTHORIZATION, format!("Bearer {key}")),
                Protocol::Anthropic => (HeaderName::from_static("x-api-key"), key.to_string()),
            };
            let mut value =
                HeaderValue::from_str(&value).map_err(|_| ProxyError::MissingProviderKey {
                    provider: provider.name.clone(),
                    env: "a key with characters not allowed in a header".into(),
                })?;
            value.set_sensitive(true);
            attempt.insert(name, value);
        }
        let sent_at = Instant::now();
        trace.upstream_attempted = true;
        let request = state
            .client
            .post(url.clone())
            .headers(attempt)
            .body(body.clone());
        let response = match tokio::time::timeout(
            state.config.upstream.first_byte_timeout,
            request.send(),
        )
        .await
        {
            Err(_) => return Err(ProxyError::UpstreamTimeout(provider.name.clone())),
            Ok(Err(e)) if e.is_timeout() => {
                return Err(ProxyError::UpstreamTimeout(provider.name.clone()));
            }
            Ok(Err(e)) => {
                if e.is_connect() {
                    trace.upstream_attempted = false;
                }
                tracing::warn!(provider = %provider.name, error = %e, "upstream request failed");
                return Err(ProxyError::UpstreamUnreachable(provider.name.clone()));
            }
            Ok(Ok(response)) => response,
        };
        if response.status() == http::StatusCode::UNAUTHORIZED
            && let Some(c) = chosen.take()
        {
            recheck::confirm_refusal(state, provider, &c.id);
            refused.push(c.id);
            chosen = state.vault.pick(&provider.name, &refused);
            if chosen.is_some() {
                continue;
            }
        }
        break (response, sent_at, credential);
    };
    Ok(UpstreamCall {
        response,
        route: route.clone(),
        strip_injected_usage: false,
        sent_at,
        credential,
    })
}

fn forwardable(incoming: &HeaderMap) -> HeaderMap {
    let listed_in_connection: Vec<String> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        let n = name.as_str();
        if DROP_REQUEST.contains(&n) || listed_in_connection.iter().any(|c| c == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Upstream response headers the client gets; every other one stays here.
/// Kept: the content headers, the provider's request id (clients log it for
/// support), retry advice and rate-limit state (SDKs back off on them),
/// OpenAI's processing time and API version, and a redirect's target. Not
/// kept: anything naming the operator's provider account
/// (`openai-organization`, `openai-project`, `anthropic-organization-id`),
/// cookies, hop-by-hop headers, the length (hyper frames the body itself,
/// and a stripped stream or a redacted error body is shorter), and whatever
/// else an upstream or its CDN adds.
const PASS_RESPONSE: &[&str] = &[
    "content-type",
    "content-encoding",
    "cache-control",
    "location",
    "x-request-id",
    "request-id",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "openai-processing-ms",
    "openai-version",
];
const PASS_RESPONSE_PREFIXES: &[&str] = &["x-ratelimit-", "anthropic-ratelimit-"];

/// Whether the client may see the upstream response header `name`
/// (lowercase, as `http` keeps names).
pub fn passes_to_client(name: &str) -> bool {
    PASS_RESPONSE.contains(&name) || PASS_RESPONSE_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_and_hop_by_hop_headers_are_not_forwarded() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer tg-client".parse().unwrap());
        h.insert("x-api-key", "tg-client".parse().unwrap());
        h.insert("connection", "keep-alive, x-custom".parse().unwrap());
        h.insert("x-custom", "1".parse().unwrap());
        h.insert("anthropic-beta", "tools".parse().unwrap());
        h.insert("user-agent", "sdk".parse().unwrap());
        let out = forwardable(&h);
        assert_eq!(
            out.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["anthropic-beta", "user-agent"]
        );
    }

    #[test]
    fn account_headers_do_not_pass_back() {
        for name in [
            "x-request-id",
            "x-ratelimit-remaining-tokens",
            "anthropic-ratelimit-requests-reset",
            "retry-after",
        ] {
            assert!(passes_to_client(name), "{name}");
        }
        for name in [
            "openai-organization",
            "openai-project",
            "anthropic-organization-id",
            "set-cookie",
            "content-length",
            "connection",
            "cf-ray",
        ] {
            assert!(!passes_to_client(name), "{name}");
        }
    }
}
