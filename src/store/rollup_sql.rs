//! Daily rollups (day × provider × model × client key), accumulated per
//! batch in memory and upserted once per group, so reports stay fast however
//! many traces there are.

use crate::ledger::{CostRecord, CostStatus};
use crate::trace::Trace;
use rusqlite::{Connection, params};

#[derive(Default)]
struct Sums {
    requests: i64,
    errors: i64,
    input: i64,
    output: i64,
    cached: i64,
    cache_write: i64,
    reasoning: i64,
    cost_uc: i64,
    unknown_cost: i64,
    partial_cost: i64,
}

/// A batch holds few groups, so a short list searched by borrowed keys
/// beats a map that needs owned keys for every record.
#[derive(Default)]
pub struct Rollup {
    groups: Vec<((String, String, String, String), Sums)>,
}

impl Rollup {
    pub fn add(&mut self, t: &Trace, c: &CostRecord) {
        let found = self.groups.iter().position(|((d, p, m, k), _)| {
            *d == c.day && *p == c.provider && *m == c.model && *k == c.client_key_id
        });
        let i = found.unwrap_or_else(|| {
            let key = (
                c.day.clone(),
                c.provider.clone(),
                c.model.clone(),
                c.client_key_id.clone(),
            );
            self.groups.push((key, Sums::default()));
            self.groups.len() - 1
        });
        let s = &mut self.groups[i].1;
        s.requests += 1;
        s.errors += i64::from(t.error_kind.is_some());
        s.input += t.usage.input_tokens.unwrap_or(0);
        s.output += t.usage.output_tokens.unwrap_or(0);
        s.cached += t.usage.cached_input_tokens.unwrap_or(0);
        s.cache_write += t.usage.cache_creation_input_tokens.unwrap_or(0);
        s.reasoning += t.usage.reasoning_tokens.unwrap_or(0);
        match c.cost_uc {
            Some(uc) => s.cost_uc += uc,
            None => s.unknown_cost += 1,
        }
        s.partial_cost += i64::from(c.status == CostStatus::Partial);
    }

    pub fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(
            "INSERT INTO cost_daily (day, provider, model, client_key_id, requests, errors,
                 input_tokens, output_tokens, cached_input_tokens, cache_creation_input_tokens,
                 reasoning_tokens, cost_uc, unknown_cost_requests, partial_cost_requests)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (day, provider, model, client_key_id) DO UPDATE SET
                 requests = requests + excluded.requests,
                 errors = errors + excluded.errors,
                 input_tokens = input_tokens + excluded.input_tokens,
                 output_tokens = output_tokens + excluded.output_tokens,
                 cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
                 cache_creation_input_tokens = cache_creation_input_tokens + excluded.cache_creation_input_tokens,
                 reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
                 cost_uc = cost_uc + excluded.cost_uc,
                 unknown_cost_requests = unknown_cost_requests + excluded.unknown_cost_requests,
                 partial_cost_requests = partial_cost_requests + excluded.partial_cost_requests",
        )?;
        for ((day, provider, model, key), s) in self.groups.drain(..) {
            stmt.execute(params![
                day,
                provider,
                model,
                key,
                s.requests,
                s.errors,
                s.input,
                s.output,
                s.cached,
                s.cache_write,
                s.reasoning,
                s.cost_uc,
                s.unknown_cost,
                s.partial_cost
            ])?;
        }
        Ok(())
    }

    pub fn clear(&mut self) {
        self.groups.clear();
    }
}
