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
use http::{HeaderMap, HeaderName, HeaderValue, header};
use std::time::Instant;

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

pub async fn send(
    state: &AppState,
    prepared: Prepared,
    trace: &mut Trace,
) -> Result<UpstreamCall, ProxyError> {
    let provider = &prepared.route.provider;
    let mut headers = forwardable(&prepared.headers);
    // The proxy reads usage out of the body, so it must arrive uncompressed.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if provider.protocol == Protocol::Anthropic
        && !headers.contains_key("anthropic-version")
        && let Ok(v) = HeaderValue::from_str(&provider.anthropic_version)
    {
        headers.insert("anthropic-version", v);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let url = provider.url(prepared.endpoint.upstream_path());

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
            .body(prepared.body.clone());
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
    trace.status = response.status().as_u16();
    trace.upstream_status = Some(trace.status);
    trace.upstream_request_id = response
        .headers()
        .get("x-request-id")
        .or_else(|| response.headers().get("request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(UpstreamCall {
        response,
        route: prepared.route,
        strip_injected_usage: prepared.strip_injected_usage,
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
