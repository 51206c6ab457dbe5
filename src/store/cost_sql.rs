//! SQL for the `costs` table (column order = table definition order; the
//! audit digest covers these values as stored).

use crate::ledger::CostRecord;
use rusqlite::Connection;
use rusqlite::types::Value;
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

pub fn values(c: &CostRecord) -> Vec<Value> {
    let int = |n: Option<i64>| n.map_or(Value::Null, Value::Integer);
    let price = c.price.map(|p| p.0);
    vec![
        Value::Text(c.trace_id.clone()),
        Value::Text(c.day.clone()),
        Value::Text(c.provider.clone()),
        Value::Text(c.model.clone()),
        Value::Text(c.client_key_id.clone()),
        Value::Text(c.status.as_str().to_string()),
        int(c.cost_uc),
        c.price
            .map_or(Value::Null, |p| Value::Text(p.1.as_str().to_string())),
        int(price.map(|p| p.input)),
        int(price.map(|p| p.output)),
        int(price.and_then(|p| p.cached_input)),
        int(price.and_then(|p| p.cache_write)),
    ]
}

pub fn insert(conn: &Connection, values: &[Value]) -> rusqlite::Result<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| super::insert_sql("costs", &COLUMNS));
    conn.prepare_cached(&SQL)?
        .execute(rusqlite::params_from_iter(values.iter()))?;
    Ok(())
}
