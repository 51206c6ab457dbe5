//! SQL for the `traces` table.

use crate::trace::Trace;
use rusqlite::{Connection, params};

const INSERT: &str = "INSERT INTO traces (
    id, started_at_ms, endpoint, provider, model_requested, model_resolved, stream,
    status, error_kind, error_message, finish_reason, upstream_request_id,
    total_us, ttfb_us, upstream_ttfb_us, upstream_us,
    input_tokens, output_tokens, cached_input_tokens, cache_creation_input_tokens,
    reasoning_tokens, request_bytes, response_bytes, client_key_id,
    request_body, response_body
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
          ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)";

pub fn insert(conn: &Connection, t: &Trace, store_bodies: bool) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(INSERT)?;
    let body = |b: &Option<bytes::Bytes>| -> Option<Vec<u8>> {
        if store_bodies {
            b.as_ref().map(|b| b.to_vec())
        } else {
            None
        }
    };
    stmt.execute(params![
        t.id,
        t.started_at_ms,
        t.endpoint,
        t.provider,
        t.model_requested,
        t.model_resolved,
        t.stream,
        t.status,
        t.error_kind.map(|k| k.as_str()),
        t.error_message,
        t.finish_reason,
        t.upstream_request_id,
        t.total_us,
        t.ttfb_us,
        t.upstream_ttfb_us,
        t.upstream_us,
        t.usage.input_tokens,
        t.usage.output_tokens,
        t.usage.cached_input_tokens,
        t.usage.cache_creation_input_tokens,
        t.usage.reasoning_tokens,
        t.request_bytes,
        t.response_bytes,
        t.client_key_id,
        body(&t.request_body),
        body(&t.response_body),
    ])?;
    Ok(())
}
