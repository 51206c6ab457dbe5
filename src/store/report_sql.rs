//! Reading the daily rollups for cost reports: integer sums only.

use rusqlite::{Connection, params};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Day,
    Model,
    Provider,
    Key,
}

impl GroupBy {
    fn expr(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Model => {
                "CASE WHEN provider = '' THEN '(unrouted)' ELSE provider || '/' || model END"
            }
            GroupBy::Provider => "CASE WHEN provider = '' THEN '(unrouted)' ELSE provider END",
            GroupBy::Key => "CASE WHEN client_key_id = '' THEN '(no key)' ELSE client_key_id END",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReportRow {
    pub group: String,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_creation_input_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_uc: i64,
    pub unknown_cost_requests: i64,
    /// Requests priced in part (`cost_uc` counts their priced part).
    pub partial_cost_requests: i64,
}

/// Sums per group over days `since..=until` (`YYYY-MM-DD`, inclusive).
pub fn cost_report(
    conn: &Connection,
    by: GroupBy,
    since: &str,
    until: &str,
) -> rusqlite::Result<Vec<ReportRow>> {
    // A database not yet migrated to 0004 has no partial counts: none were recorded.
    let has_partial: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('cost_daily') WHERE name = 'partial_cost_requests'",
        [],
        |r| r.get(0),
    )?;
    let partial = if has_partial {
        "sum(partial_cost_requests)"
    } else {
        "0"
    };
    let sql = format!(
        "SELECT {g} AS grp, sum(requests), sum(errors), sum(input_tokens), sum(output_tokens),
                sum(cached_input_tokens), sum(cache_creation_input_tokens), sum(reasoning_tokens),
                sum(cost_uc), sum(unknown_cost_requests), {partial}
         FROM cost_daily WHERE day >= ?1 AND day <= ?2
         GROUP BY grp ORDER BY grp",
        g = by.expr()
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![since, until], |r| {
        Ok(ReportRow {
            group: r.get(0)?,
            requests: r.get(1)?,
            errors: r.get(2)?,
            input_tokens: r.get(3)?,
            output_tokens: r.get(4)?,
            cached_input_tokens: r.get(5)?,
            cache_creation_input_tokens: r.get(6)?,
            reasoning_tokens: r.get(7)?,
            cost_uc: r.get(8)?,
            unknown_cost_requests: r.get(9)?,
            partial_cost_requests: r.get(10)?,
        })
    })?;
    rows.collect()
}

/// Cache hits and what they saved over days `since..=until`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheSavings {
    pub hits: i64,
    /// µ¢, summed over the hits whose original cost was known.
    pub saved_uc: i64,
}

/// Read from `costs.saved_uc` (migration 0008; none before it).
pub fn cache_savings(
    conn: &Connection,
    since: &str,
    until: &str,
) -> rusqlite::Result<CacheSavings> {
    let migrated: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('costs') WHERE name = 'saved_uc'",
        [],
        |r| r.get(0),
    )?;
    if !migrated {
        return Ok(CacheSavings::default());
    }
    conn.query_row(
        "SELECT count(*), coalesce(sum(c.saved_uc), 0)
         FROM traces t JOIN costs c ON c.trace_id = t.id
         WHERE t.cache_status IN ('hit', 'semantic_hit') AND c.day >= ?1 AND c.day <= ?2",
        params![since, until],
        |r| {
            Ok(CacheSavings {
                hits: r.get(0)?,
                saved_uc: r.get(1)?,
            })
        },
    )
}
