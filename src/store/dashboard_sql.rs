//! The dashboard's reads (`/ui/`), on the read-only pool. Money is summed
//! as integers from the same `cost_daily` rollups `tollgate report costs`
//! reads, so the overview's figures equal the report's to the µ¢. The trace
//! list pages by keyset over `(started_at_ms, id)` — no OFFSET, no COUNT —
//! with WHERE shapes the indexes of migration 0010 serve
//! (`/work/briefs/ui-queries.md` in the issue 11 notes).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

/// One day's totals from the rollups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayTotals {
    pub day: String,
    pub cost_uc: i64,
    pub requests: i64,
    pub errors: i64,
}

/// Totals per day over `since..=until` (`YYYY-MM-DD`), days with traffic only.
pub fn day_totals(conn: &Connection, since: &str, until: &str) -> rusqlite::Result<Vec<DayTotals>> {
    let mut stmt = conn.prepare_cached(
        "SELECT day, sum(cost_uc), sum(requests), sum(errors) FROM cost_daily
         WHERE day >= ?1 AND day <= ?2 GROUP BY day ORDER BY day",
    )?;
    let rows = stmt.query_map(params![since, until], |r| {
        Ok(DayTotals {
            day: r.get(0)?,
            cost_uc: r.get(1)?,
            requests: r.get(2)?,
            errors: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// What the spend chart stacks by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Provider,
    Model,
    Key,
}

impl Split {
    /// The same group names `report costs --by` prints.
    fn expr(self) -> &'static str {
        match self {
            Split::Provider => "CASE WHEN provider = '' THEN '(unrouted)' ELSE provider END",
            Split::Model => {
                "CASE WHEN provider = '' THEN '(unrouted)' ELSE provider || '/' || model END"
            }
            Split::Key => "CASE WHEN client_key_id = '' THEN '(no key)' ELSE client_key_id END",
        }
    }
}

/// `(day, group, cost_uc)` over `since..=until`.
pub fn spend_by_day(
    conn: &Connection,
    split: Split,
    since: &str,
    until: &str,
) -> rusqlite::Result<Vec<(String, String, i64)>> {
    let sql = format!(
        "SELECT day, {g} AS grp, sum(cost_uc) FROM cost_daily
         WHERE day >= ?1 AND day <= ?2 GROUP BY day, grp ORDER BY day, grp",
        g = split.expr()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![since, until], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    rows.collect()
}

/// A row of a top-N table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopRow {
    /// Key id or `provider/model` (`(no key)`, `(unrouted)` for none).
    pub group: String,
    /// The key's name, for keys that still exist.
    pub name: Option<String>,
    pub requests: i64,
    pub cost_uc: i64,
}

/// The `n` groups (`Split::Key` or `Split::Model`) with the most spend
/// over `since..=until`.
pub fn top(
    conn: &Connection,
    split: Split,
    since: &str,
    until: &str,
    n: usize,
) -> rusqlite::Result<Vec<TopRow>> {
    let sql = format!(
        "SELECT grp, k.name, requests, cost FROM (
             SELECT {g} AS grp, client_key_id AS kid, sum(requests) AS requests,
                    sum(cost_uc) AS cost
             FROM cost_daily WHERE day >= ?1 AND day <= ?2
             GROUP BY grp ORDER BY cost DESC, requests DESC, grp LIMIT ?3)
         LEFT JOIN client_keys k ON k.id = kid AND ?4
         ORDER BY cost DESC, requests DESC, grp",
        g = split.expr()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![since, until, n as i64, split == Split::Key], |r| {
        Ok(TopRow {
            group: r.get(0)?,
            name: r.get(1)?,
            requests: r.get(2)?,
            cost_uc: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Cache hits with a known saving, and the saving (µ¢), over days
/// `since..=until`: from `costs.saved_uc` alone (set only on hits), so a
/// partial index on it serves the range without touching `traces`. The
/// saving equals `report costs`' `cache.saved_uc`; hits whose original cost
/// was unknown saved nothing known and are not counted.
pub fn cache_saved(conn: &Connection, since: &str, until: &str) -> rusqlite::Result<(i64, i64)> {
    conn.prepare_cached(
        "SELECT count(*), coalesce(sum(saved_uc), 0) FROM costs
         WHERE saved_uc IS NOT NULL AND day >= ?1 AND day <= ?2",
    )?
    .query_row(params![since, until], |r| Ok((r.get(0)?, r.get(1)?)))
}

/// One trace's timings in a latency sample, with the number of traces it
/// stands for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub total_us: i64,
    pub ttfb_us: Option<i64>,
    pub weight: f64,
}

/// Windows the latency range is cut into, and traces read from each.
const WINDOWS: i64 = 96;
const PER_WINDOW: i64 = 256;

/// The timings of traces started in `from_ms..to_ms`, all of them when the
/// range holds few, else a sample: the first `PER_WINDOW` of each of
/// `WINDOWS` equal windows, each weighted by the window's traffic (estimated
/// from how long its first rows took to arrive), so a busy hour counts as
/// much as it should. Index range reads only (`traces_started_at`).
pub fn latency_sample(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
) -> rusqlite::Result<Vec<Timing>> {
    let mut stmt = conn.prepare_cached(
        "SELECT started_at_ms, total_us, ttfb_us FROM traces
         WHERE started_at_ms >= ?1 AND started_at_ms < ?2
         ORDER BY started_at_ms LIMIT ?3",
    )?;
    let span = (to_ms - from_ms).max(WINDOWS);
    let mut out = Vec::new();
    for w in 0..WINDOWS {
        let start = from_ms + span * w / WINDOWS;
        let end = from_ms + span * (w + 1) / WINDOWS;
        let rows: Vec<(i64, i64, Option<i64>)> = stmt
            .query_map(params![start, end, PER_WINDOW], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let weight = match rows.last() {
            Some((last_ms, _, _)) if rows.len() as i64 == PER_WINDOW => {
                let covered = (last_ms - start + 1).max(1) as f64;
                (end - start) as f64 / covered
            }
            _ => 1.0,
        };
        out.extend(rows.into_iter().map(|(_, total_us, ttfb_us)| Timing {
            total_us,
            ttfb_us,
            weight,
        }));
    }
    Ok(out)
}

/// The trace list's filters and page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    pub from_ms: Option<i64>,
    /// Exclusive.
    pub to_ms: Option<i64>,
    pub key: Option<String>,
    /// The resolved model (what costs and rollups name).
    pub model: Option<String>,
    pub provider: Option<String>,
    /// 2 for 2xx … 5 for 5xx.
    pub status_class: Option<i64>,
    pub error_kind: Option<String>,
    /// Rows strictly older than this `(started_at_ms, id)`.
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

/// One row of the trace list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRow {
    pub id: String,
    pub started_at_ms: i64,
    pub endpoint: String,
    pub provider: Option<String>,
    pub model_requested: Option<String>,
    pub model_resolved: Option<String>,
    pub status: i64,
    pub error_kind: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_input_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub total_us: i64,
    pub ttfb_us: Option<i64>,
    pub cache_status: Option<String>,
    /// The cost row's status (`priced`, `partial`, …); `None` without one.
    pub cost_status: Option<String>,
    pub cost_uc: Option<i64>,
}

/// Up to `limit + 1` traces matching `f`, newest first (the extra row says
/// there is a next page).
pub fn traces(conn: &Connection, f: &TraceFilter) -> rusqlite::Result<Vec<TraceRow>> {
    let (sql, args) = trace_list_query(f);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(TraceRow {
            id: r.get(0)?,
            started_at_ms: r.get(1)?,
            endpoint: r.get(2)?,
            provider: r.get(3)?,
            model_requested: r.get(4)?,
            model_resolved: r.get(5)?,
            status: r.get(6)?,
            error_kind: r.get(7)?,
            input_tokens: r.get(8)?,
            output_tokens: r.get(9)?,
            cached_input_tokens: r.get(10)?,
            reasoning_tokens: r.get(11)?,
            total_us: r.get(12)?,
            ttfb_us: r.get(13)?,
            cache_status: r.get(14)?,
            cost_status: r.get(15)?,
            cost_uc: r.get(16)?,
        })
    })?;
    rows.collect()
}

/// The SQL and arguments of [`traces`] for `f` (public so that its plans
/// can be checked against the indexes of migration 0010).
pub fn trace_list_query(f: &TraceFilter) -> (String, Vec<Value>) {
    let mut clauses: Vec<&str> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let mut text = |clauses: &mut Vec<&str>, clause, v: &Option<String>| {
        if let Some(v) = v {
            clauses.push(clause);
            args.push(Value::Text(v.clone()));
        }
    };
    text(&mut clauses, "t.client_key_id = ?", &f.key);
    text(&mut clauses, "t.model_resolved = ?", &f.model);
    text(&mut clauses, "t.provider = ?", &f.provider);
    if let Some(class) = f.status_class {
        clauses.push("t.status / 100 = ?");
        args.push(Value::Integer(class));
    }
    if let Some(kind) = &f.error_kind {
        clauses.push("t.error_kind = ?");
        args.push(Value::Text(kind.clone()));
    }
    if let Some(from) = f.from_ms {
        clauses.push("t.started_at_ms >= ?");
        args.push(Value::Integer(from));
    }
    if let Some(to) = f.to_ms {
        clauses.push("t.started_at_ms < ?");
        args.push(Value::Integer(to));
    }
    if let Some((ms, id)) = &f.before {
        clauses.push("t.started_at_ms <= ? AND (t.started_at_ms < ? OR t.id < ?)");
        args.push(Value::Integer(*ms));
        args.push(Value::Integer(*ms));
        args.push(Value::Text(id.clone()));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    args.push(Value::Integer(f.limit as i64 + 1));
    let sql = format!(
        "SELECT t.id, t.started_at_ms, t.endpoint, t.provider, t.model_requested, t.model_resolved,
                t.status, t.error_kind, t.input_tokens, t.output_tokens, t.cached_input_tokens,
                t.reasoning_tokens, t.total_us, t.ttfb_us, t.cache_status, c.status, c.cost_uc
         FROM traces t LEFT JOIN costs c ON c.trace_id = t.id
         {filter}
         ORDER BY t.started_at_ms DESC, t.id DESC
         LIMIT ?"
    );
    (sql, args)
}

/// A row as `(column, value)` pairs in table order, for pages that show
/// whatever columns the schema has.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Columns(pub Vec<(String, Value)>);

impl Columns {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn blob(&self, name: &str) -> Option<&[u8]> {
        match self.get(name)? {
            Value::Blob(b) => Some(b),
            Value::Text(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

fn one_row(conn: &Connection, sql: &str, key: &str) -> rusqlite::Result<Option<Columns>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    stmt.query_row([key], |r| {
        let mut cols = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            cols.push((name.clone(), r.get::<_, Value>(i)?));
        }
        Ok(Columns(cols))
    })
    .optional()
}

/// The trace `id`, every column.
pub fn trace(conn: &Connection, id: &str) -> rusqlite::Result<Option<Columns>> {
    one_row(conn, "SELECT * FROM traces WHERE id = ?1", id)
}

/// The cost row of trace `id` (the rates it applied included).
pub fn cost(conn: &Connection, id: &str) -> rusqlite::Result<Option<Columns>> {
    one_row(conn, "SELECT * FROM costs WHERE trace_id = ?1", id)
}

/// The audit seq of trace `id`'s ledger entry.
pub fn ledger_seq(conn: &Connection, id: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT seq FROM audit_log WHERE subject = ?1")?
        .query_row([format!("trace:{id}")], |r| r.get(0))
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE traces (id TEXT PRIMARY KEY, started_at_ms INTEGER, total_us INTEGER,
                                  ttfb_us INTEGER);
             CREATE INDEX traces_started_at ON traces (started_at_ms);",
        )
        .unwrap();
        conn
    }

    #[test]
    fn latency_is_exact_when_few_and_weighted_when_sampled() {
        let conn = db();
        for i in 0..10 {
            conn.execute(
                "INSERT INTO traces VALUES (?1, ?2, ?3, NULL)",
                params![format!("a{i}"), 1000 + i, 100 * i],
            )
            .unwrap();
        }
        let s = latency_sample(&conn, 0, 96_000).unwrap();
        assert_eq!(s.len(), 10);
        assert!(s.iter().all(|t| t.weight == 1.0));

        // 1,000 traces in one window's first tenth: it is read in part and
        // weighted up to what it holds.
        let conn = db();
        for i in 0..1000 {
            conn.execute(
                "INSERT INTO traces VALUES (?1, ?2, 5, 1)",
                params![format!("b{i}"), i / 10],
            )
            .unwrap();
        }
        let s = latency_sample(&conn, 0, 96_000).unwrap();
        assert_eq!(s.len() as i64, PER_WINDOW);
        let represented: f64 = s.iter().map(|t| t.weight).sum();
        assert!(represented > 1000.0, "{represented}");
    }
}
