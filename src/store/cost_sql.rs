//! SQL for the `costs` table (column order = table definition order; the
//! audit digest covers these values as stored).

use crate::ledger::CostRecord;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use std::sync::LazyLock;

/// The columns of record format v1: always covered by the audit digest.
pub const COLUMNS: [&str; 12] = [
    "trace_id",
    "day",
    "provider",
    "model",
    "client_key_id",
    "status",
    "cost_uc",
    "price_source",
    "price_input",
    "price_output",
    "price_cached_input",
    "price_cache_write",
];

/// Columns added by migrations 0004 and 0008, after [`COLUMNS`]: covered by the audit
/// digest only when not NULL, so rows from before keep their digests.
pub const ADDED_COLUMNS: [&str; 9] = [
    "price_cache_write_1h",
    "price_input_audio",
    "price_output_audio",
    "price_input_image",
    "price_web_search_per_1k",
    "price_tier",
    "service_tier",
    "unpriced",
    "saved_uc",
];

/// [`COLUMNS`] then [`ADDED_COLUMNS`]: every column, in table order.
pub static ALL_COLUMNS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| [&COLUMNS[..], &ADDED_COLUMNS[..]].concat());

/// The stored values of `c`, in [`ALL_COLUMNS`] order, borrowed from it.
pub fn values(c: &CostRecord) -> Vec<ValueRef<'_>> {
    let int = |n: Option<i64>| n.map_or(ValueRef::Null, ValueRef::Integer);
    fn text(s: &str) -> ValueRef<'_> {
        ValueRef::Text(s.as_bytes())
    }
    fn opt_text(s: Option<&str>) -> ValueRef<'_> {
        s.map_or(ValueRef::Null, text)
    }
    let rates = c.price.map(|p| p.0);
    let rate =
        |f: fn(&crate::ledger::prices::Rates) -> Option<i64>| int(rates.as_ref().and_then(f));
    vec![
        text(&c.trace_id),
        text(&c.day),
        text(&c.provider),
        text(&c.model),
        text(&c.client_key_id),
        text(c.status.as_str()),
        int(c.cost_uc),
        opt_text(c.price.map(|p| p.1.as_str())),
        rate(|r| Some(r.input)),
        rate(|r| Some(r.output)),
        rate(|r| r.cached_input),
        rate(|r| r.cache_write),
        rate(|r| r.cache_write_1h),
        rate(|r| r.input_audio),
        rate(|r| r.output_audio),
        rate(|r| r.input_image),
        rate(|r| r.web_search_per_1k),
        opt_text(c.price_tier.as_deref()),
        opt_text(c.service_tier.map(|t| t.as_str())),
        opt_text(c.unpriced.as_deref()),
        int(c.saved_uc),
    ]
}

pub fn insert(conn: &Connection, values: &[ValueRef<'_>]) -> rusqlite::Result<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| super::insert_sql("costs", &ALL_COLUMNS));
    super::insert_values(conn, &SQL, values)
}
