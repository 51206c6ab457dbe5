//! Sending the prepared request upstream: the provider's credential in, the
//! client's credential and hop-by-hop headers out.

use super::error::ProxyError;
use super::request::Prepared;
use crate::app::AppState;
use crate::config::Protocol;
use crate::providers::Route;
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
    match (&provider.api_key, &provider.api_key_env) {
        (Some(key), _) => {
            let (name, value) = match provider.protocol {
                Protocol::Openai => (header::AUTHORIZATION, format!("Bearer {}", key.expose())),
                Protocol::Anthropic => (
                    HeaderName::from_static("x-api-key"),
                    key.expose().to_string(),
                ),
            };
            let mut value =
                HeaderValue::from_str(&value).map_err(|_| ProxyError::MissingProviderKey {
                    provider: provider.name.clone(),
                    env: provider.api_key_env.clone().unwrap_or_default(),
                })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        (None, Some(env)) => {
            return Err(ProxyError::MissingProviderKey {
                provider: provider.name.clone(),
                env: env.clone(),
            });
        }
        (None, None) => {}
    }
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
    let sent_at = Instant::now();
    trace.upstream_attempted = true;
    let request = state.client.post(url).headers(headers).body(prepared.body);
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
