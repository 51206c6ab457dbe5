//! `semantic_cache`: answers a request from a stored answer to a *similar*
//! earlier request — the same in every way except the wording of its
//! conversation. The exact cache keeps the answers; this module decides
//! which one a request may be served from.
//!
//! Correctness first: a request is only ever compared with entries of its
//! own **partition** — the namespace, endpoint, resolved provider and model,
//! every request member other than the conversation (sampling parameters,
//! tools, response format, unknown members…) and the system prompt. Only the
//! conversation's text is embedded; only within a partition does closeness
//! of that text decide. [`Index::search`] scans nothing but the partition's
//! own vectors, so a hit across partitions cannot happen by construction.
//!
//! The index is in memory: per partition one contiguous `Vec<f32>` of unit
//! vectors (and their int8 codes), searched by brute force — the codes
//! first, then the exact vectors of the few candidates (fine up to ~100k
//! entries a partition; docs/CACHE.md says what 1M would need), bounded by
//! `max_entries` a partition (oldest out).

use crate::invalid::Invalid;
use serde_json::Value;
use std::collections::HashMap;

/// `[modules.semantic_cache]`. Off by default; it also needs the exact
/// cache (`[modules.cache]`), which stores the answers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    /// The embeddings target (`provider/model`, or a model or alias the
    /// routing table knows), called by tollgate itself.
    pub model: String,
    /// The `dimensions` asked of the embeddings model (0: its default).
    pub dimensions: u32,
    /// The least cosine similarity of a hit, in (0, 1].
    pub threshold: f64,
    /// The most entries kept per partition; beyond, the oldest go.
    pub max_entries: usize,
    /// A conversation longer than this (bytes of text) is not embedded: the
    /// request skips the semantic cache.
    pub max_text_bytes: usize,
}

// `threshold` is checked to be a finite number: equality is total.
impl Eq for Settings {}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            model: "openai/text-embedding-3-small".into(),
            dimensions: 0,
            threshold: 0.95,
            max_entries: 100_000,
            max_text_bytes: 32 * 1024,
        }
    }
}

impl Settings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.model.trim().is_empty() {
            return Err(Invalid::new("model", "must name an embeddings model"));
        }
        if self.dimensions > 16_384 {
            return Err(Invalid::new("dimensions", "must be at most 16384"));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(Invalid::new(
                "threshold",
                "must be a number above 0 and at most 1",
            ));
        }
        if !(1..=10_000_000).contains(&self.max_entries) {
            return Err(Invalid::new(
                "max_entries",
                "must be between 1 and 10000000",
            ));
        }
        if !(1..=1024 * 1024).contains(&self.max_text_bytes) {
            return Err(Invalid::new(
                "max_text_bytes",
                "must be between 1 and 1048576",
            ));
        }
        Ok(())
    }
}

/// A partition's id: BLAKE3 of its canonical description.
pub type Partition = [u8; 32];

/// Version tag, first in the partition's encoding.
pub const PARTITION_VERSION: &str = "tollgate.semantic.v1";

/// The top-level members that are not part of the partition: the
/// conversation (embedded instead), the framing, and `model` (replaced by
/// the resolved model).
pub const CONVERSATION_MEMBERS: [&str; 5] =
    ["messages", "system", "stream", "stream_options", "model"];

/// What a request is, for the semantic cache.
pub struct Asked<'a> {
    pub namespace: &'a str,
    pub endpoint: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    /// The client's body (a JSON object).
    pub body: &'a Value,
}

/// A request the semantic cache can take: its partition and the text to
/// embed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub partition: Partition,
    pub text: String,
}

/// Why a request is not looked up semantically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unfit {
    /// Not a conversation (embeddings), or no text in it.
    NoText,
    /// A part other than text (an image, a tool call or result…).
    NotText,
    /// Longer than `max_text_bytes`.
    TooLong,
}

/// The partition and text of a chat or messages request, or why it has none.
pub fn prompt(asked: &Asked<'_>, max_text_bytes: usize) -> Result<Prompt, Unfit> {
    let Value::Object(body) = asked.body else {
        return Err(Unfit::NoText);
    };
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or(Unfit::NoText)?;
    let mut system: Vec<&str> = Vec::new();
    // Anthropic's top-level `system`: a string or text blocks.
    if let Some(s) = body.get("system") {
        texts_of(s, &mut system)?;
    }
    let mut said: Vec<String> = Vec::new();
    for m in messages {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or(Unfit::NotText)?;
        let content = m.get("content").ok_or(Unfit::NotText)?;
        // Members other than role and content (tool_calls, name…) count
        // only through exact equality: such a request is not embedded.
        if m.as_object()
            .is_some_and(|o| o.keys().any(|k| k != "role" && k != "content"))
        {
            return Err(Unfit::NotText);
        }
        match role {
            "system" | "developer" => {
                // The role counts too: the same words as system or developer
                // instructions are different partitions.
                system.push(role);
                texts_of(content, &mut system)?;
            }
            "user" | "assistant" => {
                let mut parts = Vec::new();
                texts_of(content, &mut parts)?;
                said.push(format!("{role}: {}", parts.join("\n")));
            }
            _ => return Err(Unfit::NotText),
        }
    }
    let text = said.join("\n");
    if text.trim().is_empty() {
        return Err(Unfit::NoText);
    }
    if text.len() > max_text_bytes {
        return Err(Unfit::TooLong);
    }
    let system_hash = blake3::hash(
        serde_json::to_string(&system)
            .unwrap_or_default()
            .as_bytes(),
    );
    let mut rest = serde_json::Map::new();
    for (k, v) in body {
        if !CONVERSATION_MEMBERS.contains(&k.as_str()) {
            rest.insert(k.clone(), v.clone());
        }
    }
    let encoded = crate::cache::canonical(&crate::cache::KeyInput {
        namespace: asked.namespace,
        endpoint: asked.endpoint,
        provider: asked.provider,
        model: asked.model,
        body: &Value::Object(rest),
    });
    let mut hasher = blake3::Hasher::new();
    for part in [
        PARTITION_VERSION.as_bytes(),
        &encoded,
        system_hash.as_bytes(),
    ] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Ok(Prompt {
        partition: *hasher.finalize().as_bytes(),
        text,
    })
}

/// The text of a message content: a string, or text blocks only.
fn texts_of<'a>(content: &'a Value, out: &mut Vec<&'a str>) -> Result<(), Unfit> {
    match content {
        Value::String(s) => out.push(s),
        Value::Array(parts) => {
            for part in parts {
                let is_text = part.get("type").and_then(Value::as_str) == Some("text");
                // Any other member (cache_control, citations…) may change the
                // answer: not embedded.
                let only_text = part
                    .as_object()
                    .is_some_and(|o| o.keys().all(|k| k == "type" || k == "text"));
                match part.get("text").and_then(Value::as_str) {
                    Some(t) if is_text && only_text => out.push(t),
                    _ => return Err(Unfit::NotText),
                }
            }
        }
        _ => return Err(Unfit::NotText),
    }
    Ok(())
}

/// `v` scaled to unit length (`None` for an empty, zero or non-finite one).
pub fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    (!v.is_empty() && norm.is_finite() && norm > 0.0).then(|| v.iter().map(|x| x / norm).collect())
}

/// A vector quantized to int8 for the first pass of a search: `codes[i] ×
/// step ≈ v[i]`, with the L1 norm of the quantized vector for the error
/// bound (see [`Index::search`]).
struct Quantized {
    codes: Vec<i8>,
    step: f32,
    l1: f32,
}

fn quantize(v: &[f32]) -> Quantized {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let step = if max > 0.0 { max / 127.0 } else { 1.0 };
    let codes: Vec<i8> = v
        .iter()
        .map(|x| (x / step).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let l1 = codes.iter().map(|&c| f32::from(c).abs()).sum::<f32>() * step;
    Quantized { codes, step, l1 }
}

/// One partition's entries: vectors side by side in one buffer (and their
/// int8 codes in another).
#[derive(Default)]
struct Shelf {
    dims: usize,
    vectors: Vec<f32>,
    codes: Vec<i8>,
    /// Per entry: the quantization step and the L1 norm of the codes × step.
    steps: Vec<f32>,
    l1s: Vec<f32>,
    keys: Vec<[u8; 32]>,
    expires_at_ms: Vec<i64>,
}

impl Shelf {
    fn len(&self) -> usize {
        self.keys.len()
    }

    /// Drops entries `range` (indexes).
    fn drop_range(&mut self, range: std::ops::Range<usize>) {
        let d = self.dims;
        self.vectors.drain(range.start * d..range.end * d);
        self.codes.drain(range.start * d..range.end * d);
        self.steps.drain(range.clone());
        self.l1s.drain(range.clone());
        self.keys.drain(range.clone());
        self.expires_at_ms.drain(range);
    }
}

/// A match: the exact-cache key of the entry and its similarity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Found {
    pub key: [u8; 32],
    pub similarity: f32,
}

/// The in-memory index: partition → its entries.
#[derive(Default)]
pub struct Index {
    shelves: HashMap<Partition, Shelf>,
}

/// Bytes of index memory per entry of `dims` dimensions (the vector, its
/// int8 codes, step and norm, the key, the expiry).
pub fn bytes_per_entry(dims: usize) -> usize {
    dims * 4 + dims + 4 + 4 + 32 + 8
}

/// Covers f32 rounding in the first pass's bound.
const BOUND_EPSILON: f32 = 1e-3;

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Adds an entry (a unit vector) to `partition`, replacing one with the
    /// same key; beyond `max_entries` the oldest go. A vector of another
    /// length than the partition's (the embeddings model changed) starts
    /// the partition afresh.
    pub fn insert(
        &mut self,
        partition: Partition,
        key: [u8; 32],
        vector: &[f32],
        expires_at_ms: i64,
        max_entries: usize,
    ) {
        if vector.is_empty() {
            return;
        }
        let shelf = self.shelves.entry(partition).or_default();
        if shelf.dims != vector.len() {
            *shelf = Shelf {
                dims: vector.len(),
                ..Shelf::default()
            };
        }
        if let Some(i) = shelf.keys.iter().position(|k| *k == key) {
            shelf.drop_range(i..i + 1);
        }
        let max = max_entries.max(1);
        if shelf.len() >= max {
            // Oldest first, in one drain.
            let excess = shelf.len() + 1 - max;
            shelf.drop_range(0..excess);
        }
        let q = quantize(vector);
        shelf.vectors.extend_from_slice(vector);
        shelf.codes.extend_from_slice(&q.codes);
        shelf.steps.push(q.step);
        shelf.l1s.push(q.l1);
        shelf.keys.push(key);
        shelf.expires_at_ms.push(expires_at_ms);
    }

    /// The closest unexpired entry of `partition` with a similarity of at
    /// least `threshold` to the unit vector `query`. Only the partition's
    /// own vectors are looked at.
    ///
    /// Two passes: the int8 codes are scanned (a quarter of the memory
    /// traffic of the f32 vectors), and only entries whose approximate
    /// similarity plus its error bound reaches the threshold are checked
    /// with their f32 vectors. With `a`, `b` the vectors and `â`, `b̂` their
    /// quantized forms (steps `sa`, `sb`), `|a·b − â·b̂| ≤ sa/2·‖b‖₁ +
    /// sb/2·‖â‖₁`, so no entry at or above the threshold is skipped: the
    /// result is the exact one.
    pub fn search(
        &self,
        partition: &Partition,
        query: &[f32],
        threshold: f32,
        now_ms: i64,
    ) -> Option<Found> {
        let shelf = self.shelves.get(partition)?;
        if shelf.dims != query.len() || shelf.dims == 0 {
            return None;
        }
        let q = quantize(query);
        let query_l1: f32 = query.iter().map(|x| x.abs()).sum();
        let mut best: Option<Found> = None;
        for (i, codes) in shelf.codes.chunks_exact(shelf.dims).enumerate() {
            let step = shelf.steps[i];
            let approx = dot_i8(codes, &q.codes) as f32 * step * q.step;
            let bound = step / 2.0 * query_l1 + q.step / 2.0 * shelf.l1s[i] + BOUND_EPSILON;
            if approx + bound < threshold || shelf.expires_at_ms[i] <= now_ms {
                continue;
            }
            let v = &shelf.vectors[i * shelf.dims..(i + 1) * shelf.dims];
            let similarity = dot(v, query);
            if similarity >= threshold && best.is_none_or(|b| similarity > b.similarity) {
                best = Some(Found {
                    key: shelf.keys[i],
                    similarity,
                });
            }
        }
        best
    }

    /// Forgets the entry of `key` in `partition` (its answer is gone).
    pub fn remove(&mut self, partition: &Partition, key: &[u8; 32]) {
        if let Some(shelf) = self.shelves.get_mut(partition)
            && let Some(i) = shelf.keys.iter().position(|k| k == key)
        {
            shelf.drop_range(i..i + 1);
        }
    }

    /// Forgets everything (after a purge).
    pub fn clear(&mut self) {
        self.shelves.clear();
    }

    /// Entries held, over all partitions.
    pub fn len(&self) -> usize {
        self.shelves.values().map(Shelf::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums: the compiler vectorises this.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    // 16 lanes of i16 products summed into i32: vectorised, exact (|a·b| ≤
    // 127² × dims fits in i32 for any dims allowed).
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..16 {
            acc[j] += i32::from(i16::from(x[j]) * i16::from(y[j]));
        }
    }
    let mut sum: i32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += i32::from(*x) * i32::from(*y);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn asked<'a>(body: &'a Value, namespace: &'a str, model: &'a str) -> Asked<'a> {
        Asked {
            namespace,
            endpoint: "/v1/chat/completions",
            provider: "openai",
            model,
            body,
        }
    }

    fn chat(system: &str, user: &str) -> Value {
        json!({"model": "fast", "temperature": 0.2, "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]})
    }

    fn p(body: &Value) -> Prompt {
        prompt(&asked(body, "ck_a", "gpt-4o-mini"), 1 << 15).unwrap()
    }

    #[test]
    fn the_partition_is_everything_but_the_conversation() {
        let a = p(&chat("be terse", "what is rust"));
        // Wording, framing and the model alias do not change the partition.
        let mut b = chat("be terse", "What is Rust?");
        b["stream"] = json!(true);
        b["model"] = json!("other");
        assert_eq!(a.partition, p(&b).partition);
        assert_ne!(a.text, p(&b).text);
        // Everything else does.
        assert_ne!(
            a.partition,
            p(&chat("be verbose", "what is rust")).partition
        );
        let mut t = chat("be terse", "what is rust");
        t["temperature"] = json!(0.3);
        assert_ne!(a.partition, p(&t).partition);
        let body = chat("be terse", "what is rust");
        for other in [
            prompt(&asked(&body, "ck_b", "gpt-4o-mini"), 1 << 15),
            prompt(&asked(&body, "ck_a", "gpt-4o"), 1 << 15),
            prompt(
                &Asked {
                    endpoint: "/v1/messages",
                    ..asked(&body, "ck_a", "gpt-4o-mini")
                },
                1 << 15,
            ),
        ] {
            assert_ne!(a.partition, other.unwrap().partition);
        }
        // The system prompt's role counts; a developer message is a system prompt.
        let dev = json!({"model": "m", "temperature": 0.2, "messages": [
            {"role": "developer", "content": "be terse"},
            {"role": "user", "content": "what is rust"}]});
        assert_ne!(a.partition, p(&dev).partition);
        assert_eq!(a.text, p(&dev).text);
        // Anthropic's top-level system.
        let anth = |s: &str| {
            json!({"model": "m", "system": s, "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
        };
        assert_ne!(p(&anth("a")).partition, p(&anth("b")).partition);
        assert_eq!(p(&anth("a")).text, "user: hi");
    }

    #[test]
    fn only_plain_text_conversations_are_embedded() {
        let image = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:x"}}]}]});
        let tool = json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "1", "content": "x"}]});
        let calls = json!({"model": "m", "messages": [{"role": "assistant", "content": null,
            "tool_calls": []}]});
        for body in [image, tool, calls] {
            assert_eq!(
                prompt(&asked(&body, "a", "m"), 1 << 15),
                Err(Unfit::NotText)
            );
        }
        let embeddings = json!({"model": "m", "input": "hi"});
        assert_eq!(
            prompt(&asked(&embeddings, "a", "m"), 1 << 15),
            Err(Unfit::NoText)
        );
        let long = chat("s", &"x".repeat(100));
        assert_eq!(prompt(&asked(&long, "a", "m"), 50), Err(Unfit::TooLong));
    }

    fn unit(seed: u32, dims: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dims)
            .map(|i| ((seed.wrapping_mul(2654435761) ^ (i as u32 * 40503)) % 1000) as f32 - 500.0)
            .collect();
        normalized(&v).unwrap()
    }

    #[test]
    fn search_finds_the_closest_above_the_threshold_within_the_partition_only() {
        let mut index = Index::new();
        let (pa, pb) = ([1u8; 32], [2u8; 32]);
        for i in 0..200u32 {
            index.insert(pa, [i as u8; 32], &unit(i, 64), 1_000, 1_000);
        }
        // The exact same vectors in every other partition find nothing.
        for i in 0..200u32 {
            assert_eq!(index.search(&pb, &unit(i, 64), 0.01, 0), None);
            let found = index.search(&pa, &unit(i, 64), 0.99, 0).unwrap();
            assert_eq!(found.key, [i as u8; 32]);
        }
        // Expired entries are not served.
        assert_eq!(index.search(&pa, &unit(3, 64), 0.99, 1_000), None);
        // Another length (another model) is never compared.
        assert_eq!(index.search(&pa, &unit(3, 32), 0.0, 0), None);
        index.remove(&pa, &[3u8; 32]);
        assert_ne!(
            index.search(&pa, &unit(3, 64), 0.0, 0).map(|f| f.key),
            Some([3u8; 32])
        );
    }

    #[test]
    fn the_two_pass_search_finds_what_a_full_scan_finds() {
        // Near-duplicates of a few bases, so that many entries are close to
        // the threshold; the result must be the exact best.
        let dims = 48;
        let mut index = Index::new();
        let mut all = Vec::new();
        for i in 0..400u32 {
            let base = unit(i % 5, dims);
            let noise = unit(1000 + i, dims);
            let v = normalized(
                &base
                    .iter()
                    .zip(&noise)
                    .map(|(b, n)| b + n * (i % 40) as f32 / 100.0)
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            index.insert([0; 32], key, &v, 1_000, 10_000);
            all.push(v);
        }
        // Thresholds right at entries' similarities: an entry whose
        // approximate similarity is below its exact one must still be found.
        let mut cases: Vec<(f32, u32)> = Vec::new();
        for qi in 0..5u32 {
            let q = unit(qi, dims);
            for t in [0.9f32, 0.95, 0.99, 0.999] {
                cases.push((t, qi));
            }
            for v in all.iter().step_by(7) {
                cases.push((dot(v, &q), qi));
            }
        }
        for (t, qi) in cases {
            let q = unit(qi, dims);
            // The best similarity (ties: any of the tied entries).
            let expected = all
                .iter()
                .map(|v| dot(v, &q))
                .filter(|s| *s >= t)
                .max_by(f32::total_cmp);
            let found = index.search(&[0; 32], &q, t, 0);
            assert_eq!(
                found.map(|f| f.similarity),
                expected,
                "threshold {t}, query {qi}"
            );
            if let Some(f) = found {
                let i = u32::from_le_bytes(f.key[..4].try_into().unwrap()) as usize;
                assert_eq!(dot(&all[i], &q), f.similarity);
            }
        }
    }

    #[test]
    fn partitions_are_bounded_oldest_out() {
        let mut index = Index::new();
        for i in 0..10u32 {
            index.insert([0; 32], [i as u8; 32], &unit(i, 8), 1_000, 4);
        }
        assert_eq!(index.len(), 4);
        assert!(index.search(&[0; 32], &unit(0, 8), 0.999, 0).is_none());
        assert_eq!(
            index.search(&[0; 32], &unit(9, 8), 0.999, 0).unwrap().key,
            [9; 32]
        );
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(Settings::default().validate(), Ok(()));
        assert!(!Settings::default().enabled);
        let bad = |s: Settings| s.validate().unwrap_err().field;
        for t in [0.0, 1.5, f64::NAN] {
            assert_eq!(
                bad(Settings {
                    threshold: t,
                    ..Settings::default()
                }),
                "threshold"
            );
        }
        assert_eq!(
            bad(Settings {
                max_entries: 0,
                ..Settings::default()
            }),
            "max_entries"
        );
    }
}
