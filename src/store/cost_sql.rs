//! SQL for the `costs` table (column order = table definition order; the
//! audit digest covers these values as stored).

use crate::ledger::CostRecord;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use std::sync::LazyLock;

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

pub fn values(c: &CostRecord) -> Vec<ValueRef<'_>> {
    let int = |n: Option<i64>| n.map_or(ValueRef::Null, ValueRef::Integer);
    fn text(s: &str) -> ValueRef<'_> {
        ValueRef::Text(s.as_bytes())
    }
    let price = c.price.map(|p| p.0);
    vec![
        text(&c.trace_id),
        text(&c.day),
        text(&c.provider),
        text(&c.model),
        text(&c.client_key_id),
        text(c.status.as_str()),
        int(c.cost_uc),
        c.price.map_or(ValueRef::Null, |p| text(p.1.as_str())),
        int(price.map(|p| p.input)),
        int(price.map(|p| p.output)),
        int(price.and_then(|p| p.cached_input)),
        int(price.and_then(|p| p.cache_write)),
    ]
}

pub fn insert(conn: &Connection, values: &[ValueRef<'_>]) -> rusqlite::Result<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| super::insert_sql("costs", &COLUMNS));
    super::insert_values(conn, &SQL, values)
}
