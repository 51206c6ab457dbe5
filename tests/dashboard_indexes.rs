//! The dashboard's reads are indexed (migration 0010): every trace-list
//! filter walks an index in keyset order, and the trace page finds its cost
//! row and ledger entry by key, on the database a running tollgate wrote.
//! Without these indexes the plans SCAN `traces` or `audit_log`, which at
//! ten million rows is seconds per page (benches/dashboard.sh).

mod common;

use common::*;
use rusqlite::Connection;
use tollgate_mock_upstream::MockConfig;

/// The `detail` lines of the plan SQLite picks for `sql`.
fn plan(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn assert_searches(conn: &Connection, sql: &str, table: &str, index: &str) {
    let plan = plan(conn, sql);
    assert!(
        plan.iter()
            .any(|l| l.starts_with(&format!("SEARCH {table} USING"))
                && l.contains(&format!("INDEX {index} "))),
        "{sql}\nexpected a SEARCH of {table} using {index}, got {plan:#?}"
    );
    assert!(
        !plan.iter().any(|l| l.starts_with("SCAN ")),
        "{sql}\nscans a table: {plan:#?}"
    );
}

/// The keyset-paginated trace list: filter, cursor, newest first.
fn trace_list(filter: &str) -> String {
    format!(
        "SELECT t.id, t.started_at_ms, c.cost_uc FROM traces t
         LEFT JOIN costs c ON c.trace_id = t.id
         WHERE {filter}
           AND (t.started_at_ms < 9999999999999
                OR (t.started_at_ms = 9999999999999 AND t.id < 'ffffffff'))
         ORDER BY t.started_at_ms DESC, t.id DESC LIMIT 51"
    )
}

#[tokio::test]
async fn trace_filters_and_the_trace_page_read_through_indexes() {
    let gw = Gateway::start_with(MockConfig::default(), "").await;
    for (model, stream) in [
        ("gpt-4o-mini", false),
        ("gpt-4o-mini", true),
        ("nope", false),
    ] {
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat(model, stream))
            .send()
            .await
            .unwrap();
    }
    gw.wait_traces(3).await;
    let db = gw.db();

    for (filter, index) in [
        ("t.client_key_id = 'key_1'", "traces_key_time"),
        ("t.model_resolved = 'gpt-4o-mini'", "traces_model_time"),
        ("t.provider = 'openai'", "traces_provider_time"),
        ("t.status / 100 = 5", "traces_status_class_time"),
        (
            "t.error_kind = 'upstream_timeout'",
            "traces_error_kind_time",
        ),
        (
            "t.started_at_ms >= 1 AND t.started_at_ms < 2",
            "traces_started_at",
        ),
    ] {
        assert_searches(&db, &trace_list(filter), "t", index);
    }

    let id: String = value(&db, "SELECT id FROM traces LIMIT 1", []);
    let seq_sql = format!("SELECT seq FROM audit_log WHERE subject = 'trace:{id}'");
    assert_searches(&db, &seq_sql, "audit_log", "audit_log_subject");
    let seq: i64 = value(&db, &seq_sql, []);
    assert!(seq >= 1);
    assert_searches(
        &db,
        &format!("SELECT cost_uc FROM costs WHERE trace_id = '{id}'"),
        "costs",
        "sqlite_autoindex_costs_1",
    );
    assert_searches(
        &db,
        "SELECT count(*), coalesce(sum(saved_uc), 0) FROM costs
         WHERE saved_uc IS NOT NULL AND day >= '2026-01-01' AND day <= '2026-01-31'",
        "costs",
        "costs_saved_by_day",
    );
}
