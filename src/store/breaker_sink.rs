//! Where the circuit breakers' state changes go: each becomes an audit
//! entry (`breaker.open`, `breaker.half_open`, `breaker.close`, actor
//! `tollgate`) carrying the `breaker_state` row it writes, committed by the
//! writer like any administrative change.

use super::access_sql::Mutation;
use super::writer::{AdminEntry, WriterHandle};
use tollgate_modules::breaker::{BreakerStore, State, Status};

pub struct BreakerSink(pub WriterHandle);

/// The audit entry of a breaker's change of state.
pub fn entry(change: &Status) -> AdminEntry {
    AdminEntry {
        actor: "tollgate".into(),
        action: match change.state {
            State::Open => "breaker.open",
            State::HalfOpen => "breaker.half_open",
            State::Closed => "breaker.close",
        }
        .into(),
        subject: format!("breaker:{}/{}", change.provider, change.model),
        detail: serde_json::json!({
            "provider": change.provider,
            "model": change.model,
            "state": change.state.as_str(),
            "failures": change.failures,
            "opened_at": change.opened_at_ms,
            "at": change.changed_at_ms,
        })
        .to_string(),
        mutation: Some(Mutation::SetBreakerState(change.clone())),
    }
}

impl BreakerStore for BreakerSink {
    fn changed(&self, change: &Status) {
        self.0.submit(entry(change));
    }
}
