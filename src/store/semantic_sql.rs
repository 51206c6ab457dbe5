//! SQL for the semantic cache (`semantic_entries`, migration 0009): a
//! vector is inserted by the writer with its exact-cache entry and goes
//! with it (foreign key, `ON DELETE CASCADE`); all are read back at start
//! to rebuild the in-memory index.

use crate::trace::{CacheEntry, SemanticVector};
use rusqlite::{Connection, params};

/// Stores the vector of `entry` (which must have just been inserted).
pub fn insert(conn: &Connection, entry: &CacheEntry, v: &SemanticVector) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO semantic_entries
             (cache_key, partition, dims, vector, created_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        &entry.key[..],
        &v.partition[..],
        v.vector.len() as i64,
        to_blob(&v.vector),
        entry.created_at_ms,
        entry.expires_at_ms,
    ])
    .map(drop)
}

/// One stored vector, as loaded into the index.
pub struct Loaded {
    pub partition: [u8; 32],
    pub cache_key: [u8; 32],
    pub vector: Vec<f32>,
    pub expires_at_ms: i64,
}

/// Every unexpired vector whose exact entry is still stored, oldest first.
pub fn load(conn: &Connection, now_ms: i64) -> rusqlite::Result<Vec<Loaded>> {
    let mut stmt = conn.prepare(
        "SELECT s.partition, s.cache_key, s.vector, s.expires_at_ms
         FROM semantic_entries s JOIN cache_entries c ON c.key = s.cache_key
         WHERE s.expires_at_ms > ?1 AND c.expires_at_ms > ?1
         ORDER BY s.created_at_ms",
    )?;
    let rows = stmt.query_map([now_ms], |r| {
        let partition: Vec<u8> = r.get(0)?;
        let key: Vec<u8> = r.get(1)?;
        let vector: Vec<u8> = r.get(2)?;
        Ok((partition, key, vector, r.get::<_, i64>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (partition, key, vector, expires_at_ms) = row?;
        let (Ok(partition), Ok(cache_key)) = (partition.try_into(), key.try_into()) else {
            continue;
        };
        out.push(Loaded {
            partition,
            cache_key,
            vector: from_blob(&vector),
            expires_at_ms,
        });
    }
    Ok(out)
}

/// f32s as little-endian bytes.
pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn vectors_go_with_their_entries_and_the_trace_status_is_allowed() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        super::super::migrate(&mut conn).unwrap();
        let entry = CacheEntry {
            key: [7; 32],
            namespace: "ns".into(),
            endpoint: "/v1/chat/completions",
            provider: "openai".into(),
            model: "m".into(),
            created_at_ms: 1,
            expires_at_ms: 1_000,
            body: Bytes::from_static(b"{}"),
            max_total_bytes: 0,
            max_entry_bytes: 0,
            semantic: None,
        };
        let v = SemanticVector {
            partition: [9; 32],
            vector: vec![0.6f32, -0.8].into(),
        };
        super::super::cache_sql::insert(&conn, &entry, Some(3), "t").unwrap();
        insert(&conn, &entry, &v).unwrap();
        let loaded = load(&conn, 10).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].vector, vec![0.6f32, -0.8]);
        assert_eq!(loaded[0].partition, [9; 32]);
        assert!(load(&conn, 1_000).unwrap().is_empty());
        // Purged with its entry.
        super::super::cache_sql::purge(&conn, &Default::default(), 5).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM semantic_entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        // The widened CHECK: 'semantic_hit' allowed, others still refused.
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'traces'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.contains("'refresh', 'semantic_hit')"), "{sql}");
    }
}
