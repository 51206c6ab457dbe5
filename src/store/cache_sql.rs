//! SQL for the exact cache (`cache_entries`, `cache_purges`; migration
//! 0008). Inserts, hit counts, eviction and purges run in the writer's
//! transactions (or a CLI's, for a purge); lookups and stats on read-only
//! connections.

use crate::trace::CacheEntry;
use rusqlite::{Connection, OptionalExtension, params};

/// A stored answer as read back for serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub body: Vec<u8>,
    pub cost_uc: Option<i64>,
    pub expires_at_ms: i64,
}

/// Stores `e` (replacing an entry with the same key: a refresh).
pub fn insert(
    conn: &Connection,
    e: &CacheEntry,
    cost_uc: Option<i64>,
    source_trace_id: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO cache_entries (key, namespace, endpoint, provider, model,
             created_at_ms, expires_at_ms, last_hit_at_ms, hits, bytes, body, cost_uc, source_trace_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, 0, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        &e.key[..],
        e.namespace,
        e.endpoint,
        e.provider,
        e.model,
        e.created_at_ms,
        e.expires_at_ms,
        e.body.len() as i64,
        &e.body[..],
        cost_uc,
        source_trace_id,
    ])
    .map(drop)
}

/// Counts `hits` hits on `key`, the newest at `last_at_ms` (the entry may be
/// gone since: then nothing). The writer counts a batch's hits per key and
/// calls this once per key, so a hot entry costs one UPDATE per batch.
pub fn record_hits(
    conn: &Connection,
    key: &[u8; 32],
    hits: u64,
    last_at_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE cache_entries SET hits = hits + ?2, last_hit_at_ms = max(last_hit_at_ms, ?3)
         WHERE key = ?1",
    )?
    .execute(params![
        &key[..],
        i64::try_from(hits).unwrap_or(i64::MAX),
        last_at_ms
    ])
    .map(drop)
}

/// Deletes expired entries, then the least recently used until the total
/// is at most `max_bytes`. Returns how many were deleted.
pub fn evict(conn: &Connection, now_ms: i64, max_bytes: u64) -> rusqlite::Result<usize> {
    let mut n = conn
        .prepare_cached("DELETE FROM cache_entries WHERE expires_at_ms <= ?1")?
        .execute([now_ms])?;
    let total: i64 = conn.query_row(
        "SELECT coalesce(sum(bytes), 0) FROM cache_entries",
        [],
        |r| r.get(0),
    )?;
    let max = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    if total > max {
        // Walk the LRU order until enough bytes are freed; delete those.
        let excess = total - max;
        let mut stmt = conn.prepare_cached(
            "SELECT key, bytes FROM cache_entries ORDER BY last_hit_at_ms, created_at_ms",
        )?;
        let mut rows = stmt.query([])?;
        let mut freed = 0i64;
        let mut doomed: Vec<Vec<u8>> = Vec::new();
        while freed < excess {
            let Some(row) = rows.next()? else { break };
            doomed.push(row.get(0)?);
            freed += row.get::<_, i64>(1)?;
        }
        drop(rows);
        let mut delete = conn.prepare_cached("DELETE FROM cache_entries WHERE key = ?1")?;
        for key in doomed {
            n += delete.execute([key])?;
        }
    }
    Ok(n)
}

/// The entry stored under `key`, unless it has expired by `now_ms`.
pub fn lookup(conn: &Connection, key: &[u8; 32], now_ms: i64) -> rusqlite::Result<Option<Stored>> {
    conn.prepare_cached(
        "SELECT body, cost_uc, expires_at_ms FROM cache_entries
         WHERE key = ?1 AND expires_at_ms > ?2",
    )?
    .query_row(params![&key[..], now_ms], |r| {
        Ok(Stored {
            body: r.get(0)?,
            cost_uc: r.get(1)?,
            expires_at_ms: r.get(2)?,
        })
    })
    .optional()
}

/// Which entries a purge removes: all, or those of a namespace and/or model.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeFilter {
    pub namespace: Option<String>,
    pub model: Option<String>,
}

const PURGE_WHERE: &str = "(?1 IS NULL OR namespace = ?1) AND (?2 IS NULL OR model = ?2)";

/// Deletes the entries `filter` selects and bumps the purge generation, so
/// running servers drop their in-memory copies. Returns how many went.
pub fn purge(conn: &Connection, filter: &PurgeFilter, at_ms: i64) -> rusqlite::Result<usize> {
    let n = conn.execute(
        &format!("DELETE FROM cache_entries WHERE {PURGE_WHERE}"),
        params![filter.namespace, filter.model],
    )?;
    conn.execute(
        "UPDATE cache_purges SET generation = generation + 1, updated_at_ms = ?1 WHERE id = 1",
        [at_ms],
    )?;
    Ok(n)
}

/// How many entries `filter` selects.
pub fn count(conn: &Connection, filter: &PurgeFilter) -> rusqlite::Result<i64> {
    conn.query_row(
        &format!("SELECT count(*) FROM cache_entries WHERE {PURGE_WHERE}"),
        params![filter.namespace, filter.model],
        |r| r.get(0),
    )
}

/// What is stored, and what the books say the cache did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The purge generation (moves with every purge).
    pub generation: i64,
    pub entries: i64,
    pub bytes: i64,
    /// Hits counted on the entries still stored.
    pub entry_hits: i64,
    /// Traces recorded as hits and as misses (refreshes count as misses),
    /// over the whole database.
    pub traced_hits: i64,
    pub traced_misses: i64,
    /// What the hits saved (µ¢), where the original cost was known.
    pub saved_uc: i64,
}

/// The generation, entries and bytes (cheap: polled every second).
pub fn totals(conn: &Connection) -> rusqlite::Result<Stats> {
    let generation = conn.query_row(
        "SELECT generation FROM cache_purges WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let (entries, bytes, entry_hits) = conn.query_row(
        "SELECT count(*), coalesce(sum(bytes), 0), coalesce(sum(hits), 0) FROM cache_entries",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(Stats {
        generation,
        entries,
        bytes,
        entry_hits,
        ..Stats::default()
    })
}

/// [`totals`] and the traced hits, misses and savings.
pub fn stats(conn: &Connection) -> rusqlite::Result<Stats> {
    let mut s = totals(conn)?;
    (s.traced_hits, s.traced_misses) = conn.query_row(
        "SELECT count(*) FILTER (WHERE cache_status IN ('hit', 'semantic_hit')),
                count(*) FILTER (WHERE cache_status IN ('miss', 'refresh'))
         FROM traces WHERE cache_status IS NOT NULL",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    s.saved_uc = conn.query_row(
        "SELECT coalesce(sum(saved_uc), 0) FROM costs WHERE saved_uc IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(k: u8, bytes: usize, model: &str) -> CacheEntry {
        CacheEntry {
            key: [k; 32],
            namespace: "ns".into(),
            endpoint: "/v1/chat/completions",
            provider: "openai".into(),
            model: model.into(),
            created_at_ms: i64::from(k),
            expires_at_ms: 1_000,
            body: Bytes::from(vec![b'x'; bytes]),
            max_total_bytes: 0,
            max_entry_bytes: 0,
            semantic: None,
        }
    }

    #[test]
    fn a_batch_of_hits_is_counted_whole_with_the_newest_time() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&mut conn).unwrap();
        insert(&conn, &entry(1, 100, "m"), Some(5), "t").unwrap();
        record_hits(&conn, &[1; 32], 3, 70).unwrap();
        record_hits(&conn, &[1; 32], 2, 60).unwrap();
        record_hits(&conn, &[9; 32], 4, 80).unwrap();
        let (hits, last): (i64, i64) = conn
            .query_row(
                "SELECT hits, last_hit_at_ms FROM cache_entries WHERE key = ?1",
                [&[1u8; 32][..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((hits, last), (5, 70));
    }

    #[test]
    fn eviction_drops_expired_then_least_recently_used() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&mut conn).unwrap();
        for k in 1..=4 {
            insert(&conn, &entry(k, 100, "m"), Some(5), "t").unwrap();
        }
        record_hits(&conn, &[1; 32], 1, 50).unwrap();
        assert_eq!(evict(&conn, 10, 250).unwrap(), 2);
        let left: Vec<u8> = conn
            .prepare("SELECT key FROM cache_entries ORDER BY key")
            .unwrap()
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|k| k.unwrap()[0])
            .collect();
        assert_eq!(left, [1, 4], "the hit one and the newest stay");
        assert!(lookup(&conn, &[1; 32], 10).unwrap().is_some());
        assert!(lookup(&conn, &[1; 32], 1_000).unwrap().is_none());
        assert_eq!(evict(&conn, 1_000, 1 << 20).unwrap(), 2);
        assert_eq!(totals(&conn).unwrap().entries, 0);
    }

    #[test]
    fn purges_select_and_move_the_generation() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&mut conn).unwrap();
        insert(&conn, &entry(1, 10, "a"), None, "t").unwrap();
        insert(&conn, &entry(2, 10, "b"), None, "t").unwrap();
        let g = totals(&conn).unwrap().generation;
        let by_model = PurgeFilter {
            model: Some("a".into()),
            ..PurgeFilter::default()
        };
        assert_eq!(count(&conn, &by_model).unwrap(), 1);
        assert_eq!(purge(&conn, &by_model, 5).unwrap(), 1);
        assert_eq!(totals(&conn).unwrap().generation, g + 1);
        assert_eq!(purge(&conn, &PurgeFilter::default(), 6).unwrap(), 1);
        assert_eq!(totals(&conn).unwrap().entries, 0);
    }
}
