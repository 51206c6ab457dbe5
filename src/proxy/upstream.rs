//! Sending the prepared request upstream: the provider's credential in, the
//! client's credential and hop-by-hop headers out.

use super::error::ProxyError;
use super::request::Prepared;
use crate::app::AppState;
use crate::config::Protocol;
use crate::providers::Route;
use crate::store::AdminEntry;
use crate::store::access_sql::Mutation;
use crate::trace::Trace;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use std::time::Instant;

pub struct UpstreamCall {
    pub response: reqwest::Response,
    pub route: Route,
    pub strip_injected_usage: bool,
    pub sent_at: Instant,
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

    // Vault keys first, spread round robin; a key the upstream refuses with
    // 401 is set aside and the request tried with the next one.
    let mut refused: Vec<String> = Vec::new();
    let mut chosen = state.vault.pick(&provider.name, &refused);
    let (response, sent_at) = loop {
        let credential = match (&chosen, &provider.api_key, &provider.api_key_env) {
            (Some(c), _, _) => Some(c.key.expose()),
            (None, Some(key), _) => Some(key.expose()),
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
        if let Some(key) = credential {
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
            set_aside(state, &provider.name, &c.id);
            refused.push(c.id);
            chosen = state.vault.pick(&provider.name, &refused);
            if chosen.is_some() {
                continue;
            }
        }
        break (response, sent_at);
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
    })
}

/// Marks a stored provider key the upstream refused, in memory at once and
/// in the database (with its audit entry) in the background.
fn set_aside(state: &AppState, provider: &str, id: &str) {
    if !state.vault.disable(id) {
        return;
    }
    tracing::warn!(
        provider,
        key_id = id,
        "the upstream refused a stored provider key (401); it is set aside"
    );
    let writer = state.writer.clone();
    let entry = AdminEntry {
        actor: "system".into(),
        action: "provider_key.disable".into(),
        subject: format!("provider_key:{id}"),
        detail:
            serde_json::json!({"id": id, "provider": provider, "reason": "upstream answered 401"})
                .to_string(),
        mutation: Some(Mutation::DisableProviderKey {
            id: id.to_string(),
            at_ms: crate::trace::now_ms(),
            reason: "upstream answered 401".into(),
        }),
    };
    // At most once per stored key (disable() said it was enabled).
    tokio::spawn(async move {
        if let Err(e) = writer.audit(entry).await {
            tracing::error!(error = %e, "could not record the disabled provider key");
        }
    });
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

/// Response headers never passed back: hop-by-hop ones, the length (hyper
/// frames the body itself, and a stripped stream is shorter) and cookies
/// set for the provider's domain.
pub const DROP_RESPONSE: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "set-cookie",
];

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
}
