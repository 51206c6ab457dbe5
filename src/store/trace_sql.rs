//! SQL for the `traces` table. The column list is in table-definition order:
//! the audit digest of a request covers these values exactly as stored.

use crate::trace::Trace;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use std::sync::LazyLock;

/// The columns of record format v1: always covered by the audit digest.
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

/// Columns added by migrations 0004, 0007, 0008 and 0011, after [`COLUMNS`]:
/// covered by the audit digest only when not NULL, so rows from before keep
/// their digests.
pub const ADDED_COLUMNS: [&str; 10] = [
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "web_search_calls",
    "service_tier",
    "attempts",
    "attempt_log",
    "cache_status",
    "guardrails",
];

/// [`COLUMNS`] then [`ADDED_COLUMNS`]: every column, in table order.
pub static ALL_COLUMNS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| [&COLUMNS[..], &ADDED_COLUMNS[..]].concat());

/// The stored values of `t`, in [`ALL_COLUMNS`] order, borrowed from it.
pub fn values(t: &Trace, store_bodies: bool) -> Vec<ValueRef<'_>> {
    fn text(s: &Option<String>) -> ValueRef<'_> {
        s.as_deref()
            .map_or(ValueRef::Null, |s| ValueRef::Text(s.as_bytes()))
    }
    let int = |n: Option<i64>| n.map_or(ValueRef::Null, ValueRef::Integer);
    fn body(b: &Option<bytes::Bytes>, keep: bool) -> ValueRef<'_> {
        match b {
            Some(b) if keep => ValueRef::Blob(b),
            _ => ValueRef::Null,
        }
    }
    vec![
        ValueRef::Text(t.id.as_bytes()),
        ValueRef::Integer(t.started_at_ms),
        ValueRef::Text(t.endpoint.as_bytes()),
        text(&t.provider),
        text(&t.model_requested),
        text(&t.model_resolved),
        ValueRef::Integer(i64::from(t.stream)),
        ValueRef::Integer(i64::from(t.status)),
        int(t.upstream_status.map(i64::from)),
        t.error_kind
            .map_or(ValueRef::Null, |k| ValueRef::Text(k.as_str().as_bytes())),
        text(&t.error_message),
        text(&t.finish_reason),
        text(&t.upstream_request_id),
        ValueRef::Integer(t.total_us),
        int(t.ttfb_us),
        int(t.upstream_ttfb_us),
        int(t.upstream_us),
        int(t.usage.input_tokens),
        int(t.usage.output_tokens),
        int(t.usage.cached_input_tokens),
        int(t.usage.cache_creation_input_tokens),
        int(t.usage.reasoning_tokens),
        ValueRef::Integer(t.request_bytes),
        ValueRef::Integer(t.response_bytes),
        text(&t.client_key_id),
        body(&t.request_body, store_bodies),
        body(&t.response_body, store_bodies),
        int(t.usage.cache_write_1h_tokens),
        int(t.usage.input_audio_tokens),
        int(t.usage.output_audio_tokens),
        int(t.usage.input_image_tokens),
        int(t.usage.web_search_calls),
        t.usage
            .service_tier
            .map_or(ValueRef::Null, |s| ValueRef::Text(s.as_str().as_bytes())),
        int(t.attempts),
        text(&t.attempt_log),
        t.cache
            .status
            .map_or(ValueRef::Null, |s| ValueRef::Text(s.as_str().as_bytes())),
        text(&t.guardrails_stored),
    ]
}

pub fn insert(conn: &Connection, values: &[ValueRef<'_>]) -> rusqlite::Result<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| super::insert_sql("traces", &ALL_COLUMNS));
    super::insert_values(conn, &SQL, values)
}
