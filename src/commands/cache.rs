//! `tollgate cache stats|purge`: the exact cache, read and purged in the
//! database directly. A purge commits with its audit entry (`cache.purge`)
//! and moves the purge generation, so a running server drops its in-memory
//! copies within a second (it polls it).

use super::{EXIT_DATABASE, Failure, actor, commit};
use crate::admin::changes;
use crate::audit::encoding::ChainKey;
use crate::ledger::money::format_usd;
use crate::store::cache_sql::{self, PurgeFilter};
use rusqlite::Connection;

fn db_error(e: rusqlite::Error) -> Failure {
    (EXIT_DATABASE, format!("cannot read the cache: {e}"))
}

pub fn stats(conn: &Connection, json: bool) -> Result<String, Failure> {
    let s = cache_sql::stats(conn).map_err(db_error)?;
    if json {
        let v = changes::cache_stats_json(&s);
        return Ok(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n");
    }
    let looked_up = s.traced_hits + s.traced_misses;
    let ratio = if looked_up > 0 {
        // Per mille, in integers: 1 decimal of a percentage.
        let pm = s.traced_hits * 1000 / looked_up;
        format!("{}.{}%", pm / 10, pm % 10)
    } else {
        "-".into()
    };
    Ok(format!(
        "entries    {}\nbytes      {}\nhits       {}\nmisses     {}\nhit ratio  {ratio}\nsaved      {}\n",
        s.entries,
        s.bytes,
        s.traced_hits,
        s.traced_misses,
        format_usd(s.saved_uc),
    ))
}

pub fn purge(
    conn: &mut Connection,
    key: &ChainKey,
    namespace: Option<String>,
    model: Option<String>,
) -> Result<String, Failure> {
    let filter = PurgeFilter { namespace, model };
    let entries = cache_sql::count(conn, &filter).map_err(db_error)?;
    commit(conn, key, changes::purge_cache(&actor(), &filter, entries))?;
    Ok(format!(
        "purged {entries} cache entries; a running gateway stops serving them within a second\n"
    ))
}
