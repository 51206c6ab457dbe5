//! A 401 from the upstream does not prove a stored key is dead: what a client
//! sends (forwarded headers, content) can make some upstreams answer 401. So
//! a refused key is set aside only when a cheap authenticated probe of the
//! same key — `GET {base_url}/models`, which both protocols serve — is
//! refused too. A key set aside that way is probed again after
//! `upstream.key_retest_secs` (when a request next uses its provider) and
//! used again if the upstream accepts it. Both changes are audited with the
//! reason. Probes run off the request path; at most one per key at a time.

use crate::config::Protocol;
use crate::providers::Provider;
use crate::state::AppState;
use crate::store::access_sql::Mutation;
use crate::store::{AdminEntry, WriterHandle};
use crate::trace::now_ms;
use crate::vault::KeyCheck;
use http::{HeaderValue, header};
use std::sync::Arc;
use std::time::Duration;

/// A probe waits at most this long for the upstream's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

const DISABLE_REASON: &str = "upstream answered 401 to a request and to a GET /models probe";
const ENABLE_REASON: &str = "a GET /models probe was accepted after the key was set aside";

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Refused,
    /// Anything else (another status, no answer): proves nothing.
    Unknown,
}

/// Everything a probe task needs, owned: it must not keep the whole state
/// (and with it the writer) alive.
struct Prober {
    client: reqwest::Client,
    writer: WriterHandle,
    provider: Arc<Provider>,
    retest_ms: i64,
    timeout: Duration,
}

impl Prober {
    fn new(state: &AppState, provider: &Arc<Provider>) -> Prober {
        Prober {
            client: state.client.clone(),
            writer: state.writer.clone(),
            provider: provider.clone(),
            retest_ms: state.config.upstream.key_retest.as_millis() as i64,
            timeout: PROBE_TIMEOUT.min(state.config.upstream.first_byte_timeout),
        }
    }

    async fn probe(&self, check: &KeyCheck) -> Verdict {
        let Ok(url) = reqwest::Url::parse(&format!("{}/models", self.provider.base_url)) else {
            return Verdict::Unknown;
        };
        let key = check.key().expose();
        let (name, value) = match self.provider.protocol {
            Protocol::Openai => (header::AUTHORIZATION.as_str(), format!("Bearer {key}")),
            Protocol::Anthropic => ("x-api-key", key.to_string()),
        };
        let Ok(mut value) = HeaderValue::from_str(&value) else {
            return Verdict::Unknown;
        };
        value.set_sensitive(true);
        let mut request = self.client.get(url).header(name, value);
        if self.provider.protocol == Protocol::Anthropic {
            request = request.header("anthropic-version", &self.provider.anthropic_version);
        }
        match tokio::time::timeout(self.timeout, request.send()).await {
            Ok(Ok(r)) if r.status().is_success() => Verdict::Accepted,
            Ok(Ok(r)) if r.status() == http::StatusCode::UNAUTHORIZED => Verdict::Refused,
            _ => Verdict::Unknown,
        }
    }

    async fn record(&self, check: &KeyCheck, enable: bool) {
        let (id, provider) = (check.id().to_string(), self.provider.name.clone());
        let (action, reason, mutation) = if enable {
            (
                "provider_key.enable",
                ENABLE_REASON,
                Mutation::EnableProviderKey { id: id.clone() },
            )
        } else {
            (
                "provider_key.disable",
                DISABLE_REASON,
                Mutation::DisableProviderKey {
                    id: id.clone(),
                    at_ms: now_ms(),
                    reason: DISABLE_REASON.into(),
                },
            )
        };
        let entry = AdminEntry {
            actor: "system".into(),
            action: action.into(),
            subject: format!("provider_key:{id}"),
            detail: serde_json::json!({"id": id, "provider": provider, "reason": reason})
                .to_string(),
            mutation: Some(mutation),
        };
        if let Err(e) = self.writer.audit(entry).await {
            tracing::error!(error = %e, key_id = %id, action, "could not record the provider key change");
        }
    }
}

/// The upstream answered 401 to a request sent with stored key `id`: probe
/// the key in the background and set it aside only if the probe is refused
/// too.
pub fn confirm_refusal(state: &AppState, provider: &Arc<Provider>, id: &str) {
    let Some(check) = state.vault.claim_check(id) else {
        return;
    };
    let prober = Prober::new(state, provider);
    tokio::spawn(async move {
        let verdict = prober.probe(&check).await;
        if verdict != Verdict::Refused {
            tracing::info!(
                provider = %prober.provider.name,
                key_id = check.id(),
                ?verdict,
                "a stored provider key got 401 on a request but not on a probe; it stays in use"
            );
            return;
        }
        if check.set_aside(now_ms() + prober.retest_ms) {
            tracing::warn!(
                provider = %prober.provider.name,
                key_id = check.id(),
                "the upstream refused a stored provider key (401 to a request and to a probe); it is set aside"
            );
            prober.record(&check, false).await;
        }
    });
}

/// Probes, in the background, every key of `provider` this process set
/// aside whose re-test is due; a key the upstream accepts is used again.
pub fn retest_due(state: &AppState, provider: &Arc<Provider>) {
    let due = state.vault.due_for_retest(&provider.name, now_ms());
    if due.is_empty() {
        return;
    }
    let prober = Prober::new(state, provider);
    tokio::spawn(async move {
        for check in due {
            if prober.probe(&check).await != Verdict::Accepted {
                check.postpone(now_ms() + prober.retest_ms);
                continue;
            }
            if check.restore() {
                tracing::info!(
                    provider = %prober.provider.name,
                    key_id = check.id(),
                    "a stored provider key set aside earlier was accepted by a probe; it is used again"
                );
                prober.record(&check, true).await;
            }
        }
    });
}
