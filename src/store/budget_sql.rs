//! What each client key and provider has spent, from the daily cost
//! rollup: how budgets get their spent amounts back after a restart, and
//! what a CLI process (which has no reservations) shows as spent.

use rusqlite::{Connection, params};

/// Spent (µ¢) by one key or provider: today, this month, all time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpentRow {
    pub name: String,
    pub day_uc: i64,
    pub month_uc: i64,
    pub total_uc: i64,
}

/// Everything spent, by client key and by provider (costs with no key or
/// no provider are counted only in the global row, named `""`), as of
/// `today` (`YYYY-MM-DD`, UTC). Unknown costs count as nothing here.
pub struct Spending {
    pub keys: Vec<SpentRow>,
    pub providers: Vec<SpentRow>,
    pub global: SpentRow,
}

pub fn spending(conn: &Connection, today: &str) -> rusqlite::Result<Spending> {
    let month_start = format!("{}-01", today.get(..7).unwrap_or(today));
    let sums = "coalesce(sum(CASE WHEN day = ?1 THEN cost_uc END), 0),
                coalesce(sum(CASE WHEN day >= ?2 AND day <= ?1 THEN cost_uc END), 0),
                coalesce(sum(cost_uc), 0)";
    let by = |column: &str| -> rusqlite::Result<Vec<SpentRow>> {
        let sql = format!(
            "SELECT {column}, {sums} FROM cost_daily WHERE {column} != '' GROUP BY {column}"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params![today, month_start], |r| {
            Ok(SpentRow {
                name: r.get(0)?,
                day_uc: r.get(1)?,
                month_uc: r.get(2)?,
                total_uc: r.get(3)?,
            })
        })?;
        rows.collect()
    };
    let global = conn.query_row(
        &format!("SELECT '', {sums} FROM cost_daily"),
        params![today, month_start],
        |r| {
            Ok(SpentRow {
                name: r.get(0)?,
                day_uc: r.get(1)?,
                month_uc: r.get(2)?,
                total_uc: r.get(3)?,
            })
        },
    )?;
    Ok(Spending {
        keys: by("client_key_id")?,
        providers: by("provider")?,
        global,
    })
}
