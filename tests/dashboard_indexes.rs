//! The dashboard's reads are indexed (migration 0010): every trace-list
//! filter walks an index in keyset order, and the trace page finds its cost
//! row and ledger entry by key, on the database a running tollgate wrote.
//! Without these indexes the plans SCAN `traces` or `audit_log`, which at
//! ten million rows is seconds per page (benches/dashboard.sh). The trace
//! list is checked through the dashboard's own query builder, first pages
//! and later (keyset cursor) pages: a cursor written as an OR alone gave no
//! bound and read every trace (34 s a page at 10M).

mod common;

use common::*;
use rusqlite::Connection;
use rusqlite::types::Value;
use tollgate::store::dashboard_sql::{self, TraceFilter};
use tollgate_mock_upstream::MockConfig;

/// The `detail` lines of the plan SQLite picks for `sql` with `args`.
fn plan(conn: &Connection, sql: &str, args: &[Value]) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn assert_searches(conn: &Connection, sql: &str, args: &[Value], table: &str, index: &str) {
    let plan = plan(conn, sql, args);
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
    // An OR answered by several index searches yields unordered rows: all
    // of them are read and sorted before the first is returned. Only rows
    // of one millisecond may be sorted (RIGHT PART OF ORDER BY).
    assert!(
        !plan
            .iter()
            .any(|l| l == "MULTI-INDEX OR" || l == "USE TEMP B-TREE FOR ORDER BY"),
        "{sql}\nreads every match before the first row: {plan:#?}"
    );
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

    // The dashboard's own trace-list query, first page and a later page
    // (keyset cursor), for every filter.
    let page = |f: TraceFilter| TraceFilter { limit: 50, ..f };
    let filters = [
        (TraceFilter::default(), None),
        (
            TraceFilter {
                key: Some("key_1".into()),
                ..TraceFilter::default()
            },
            Some("traces_key_time"),
        ),
        (
            TraceFilter {
                model: Some("gpt-4o-mini".into()),
                ..TraceFilter::default()
            },
            Some("traces_model_time"),
        ),
        (
            TraceFilter {
                provider: Some("openai".into()),
                ..TraceFilter::default()
            },
            Some("traces_provider_time"),
        ),
        (
            TraceFilter {
                status_class: Some(5),
                ..TraceFilter::default()
            },
            Some("traces_status_class_time"),
        ),
        (
            TraceFilter {
                error_kind: Some("upstream_timeout".into()),
                ..TraceFilter::default()
            },
            Some("traces_error_kind_time"),
        ),
        (
            TraceFilter {
                from_ms: Some(1),
                to_ms: Some(2),
                ..TraceFilter::default()
            },
            Some("traces_started_at"),
        ),
    ];
    for (filter, index) in filters {
        let later = TraceFilter {
            before: Some((9_999_999_999_999, "ffffffff".into())),
            ..filter.clone()
        };
        for (f, index) in [
            // Unfiltered, the first page walks the whole index newest first
            // (SCAN … USING INDEX, stopped by LIMIT); any bound is a SEARCH.
            (filter, index),
            (later, index.or(Some("traces_started_at"))),
        ] {
            let (sql, args) = dashboard_sql::trace_list_query(&page(f));
            match index {
                Some(index) => assert_searches(&db, &sql, &args, "t", index),
                None => assert!(
                    plan(&db, &sql, &args)
                        .iter()
                        .any(|l| l == "SCAN t USING INDEX traces_started_at"),
                    "{sql}"
                ),
            }
        }
    }

    let id: String = value(&db, "SELECT id FROM traces LIMIT 1", []);
    let seq_sql = format!("SELECT seq FROM audit_log WHERE subject = 'trace:{id}'");
    assert_searches(&db, &seq_sql, &[], "audit_log", "audit_log_subject");
    let seq: i64 = value(&db, &seq_sql, []);
    assert!(seq >= 1);
    assert_searches(
        &db,
        &format!("SELECT cost_uc FROM costs WHERE trace_id = '{id}'"),
        &[],
        "costs",
        "sqlite_autoindex_costs_1",
    );
    assert_searches(
        &db,
        "SELECT count(*), coalesce(sum(saved_uc), 0) FROM costs
         WHERE saved_uc IS NOT NULL AND day >= '2026-01-01' AND day <= '2026-01-31'",
        &[],
        "costs",
        "costs_saved_by_day",
    );
}
