//! SQL for the `traces` table. The column list is in table-definition order:
//! the audit digest of a request covers these values exactly as stored.

use crate::trace::Trace;
use rusqlite::Connection;
use rusqlite::types::Value;
use std::sync::LazyLock;

pub const COLUMNS: [&str; 27] = [
    "id",
    "started_at_ms",
    "endpoint",
    "provider",
    "model_requested",
    "model_resolved",
    "stream",
    "status",
    "upstream_status",
    "error_kind",
    "error_message",
    "finish_reason",
    "upstream_request_id",
    "total_us",
    "ttfb_us",
    "upstream_ttfb_us",
    "upstream_us",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "request_bytes",
    "response_bytes",
    "client_key_id",
    "request_body",
    "response_body",
];

/// The stored values of `t`, in [`COLUMNS`] order.
pub fn values(t: &Trace, store_bodies: bool) -> Vec<Value> {
    let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::Text);
    let int = |n: Option<i64>| n.map_or(Value::Null, Value::Integer);
    let body = |b: &Option<bytes::Bytes>| match b {
        Some(b) if store_bodies => Value::Blob(b.to_vec()),
        _ => Value::Null,
    };
    vec![
        Value::Text(t.id.clone()),
        Value::Integer(t.started_at_ms),
        Value::Text(t.endpoint.to_string()),
        text(&t.provider),
        text(&t.model_requested),
        text(&t.model_resolved),
        Value::Integer(i64::from(t.stream)),
        Value::Integer(i64::from(t.status)),
        int(t.upstream_status.map(i64::from)),
        t.error_kind
            .map_or(Value::Null, |k| Value::Text(k.as_str().to_string())),
        text(&t.error_message),
        text(&t.finish_reason),
        text(&t.upstream_request_id),
        Value::Integer(t.total_us),
        int(t.ttfb_us),
        int(t.upstream_ttfb_us),
        int(t.upstream_us),
        int(t.usage.input_tokens),
        int(t.usage.output_tokens),
        int(t.usage.cached_input_tokens),
        int(t.usage.cache_creation_input_tokens),
        int(t.usage.reasoning_tokens),
        Value::Integer(t.request_bytes),
        Value::Integer(t.response_bytes),
        text(&t.client_key_id),
        body(&t.request_body),
        body(&t.response_body),
    ]
}

pub fn insert(conn: &Connection, values: &[Value]) -> rusqlite::Result<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| super::insert_sql("traces", &COLUMNS));
    conn.prepare_cached(&SQL)?
        .execute(rusqlite::params_from_iter(values.iter()))?;
    Ok(())
}
