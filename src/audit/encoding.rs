//! The canonical bytes behind the audit chain (spec: `docs/AUDIT.md`).
//!
//! An auditor must be able to recompute every hash from the spec alone, so
//! every byte here is fixed: a magic+version prefix, fixed-width big-endian
//! integers and length-prefixed strings. Length prefixes, never separators,
//! make the encoding injective: no content can be moved from one field into
//! its neighbour without changing the bytes. The version byte in each magic
//! lets a later format coexist with this one.

use std::fmt;

/// The `prev_hash` of the first entry.
pub const GENESIS: [u8; 32] = [0; 32];
/// Prefix of an entry's canonical bytes.
pub const ENTRY_MAGIC: &[u8] = b"TGAUDIT\x01";
/// Prefix of the bytes hashed into a record digest.
pub const RECORD_MAGIC: &[u8] = b"TGREC\x01";
/// Prefix of the bytes hashed into a detail digest.
pub const DETAIL_MAGIC: &[u8] = b"TGDETAIL\x01";
/// BLAKE3 `derive_key` context for the public id of an audit key.
pub const KEY_ID_CONTEXT: &str = "tollgate audit key id v1";

/// The hashed fields of one `audit_log` row (everything but `hash` and `detail`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub seq: i64,
    pub ts_ms: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub digest: [u8; 32],
}

/// Appends `u32 BE length ‖ bytes`.
///
/// SQLite caps a TEXT or BLOB at 2^31-1 bytes, so every stored value fits;
/// a longer one can only come from a caller bug.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("audit field longer than u32::MAX bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

pub fn canonical(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        ENTRY_MAGIC.len() + 16 + 16 + e.actor.len() + e.action.len() + e.subject.len() + 32,
    );
    out.extend_from_slice(ENTRY_MAGIC);
    out.extend_from_slice(&e.seq.to_be_bytes());
    out.extend_from_slice(&e.ts_ms.to_be_bytes());
    put_bytes(&mut out, e.actor.as_bytes());
    put_bytes(&mut out, e.action.as_bytes());
    put_bytes(&mut out, e.subject.as_bytes());
    put_bytes(&mut out, &e.digest);
    out
}

/// Whether the chain is plain BLAKE3 or BLAKE3 keyed with the audit key.
#[derive(Clone)]
pub enum ChainKey {
    Unkeyed,
    Keyed([u8; 32]),
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainKey::Unkeyed => f.write_str("Unkeyed"),
            ChainKey::Keyed(_) => f.write_str("Keyed(<redacted>)"),
        }
    }
}

impl ChainKey {
    /// Parses 64 hex digits (surrounding whitespace ignored), the form of
    /// `TOLLGATE_AUDIT_KEY` and of the key file.
    pub fn from_hex(text: &str) -> Option<ChainKey> {
        from_hex32(text.trim()).map(ChainKey::Keyed)
    }

    /// The public id stored in `audit_meta.key_id`, so a verifier can tell
    /// "wrong key" from "tampered" without the database holding the key.
    pub fn key_id(&self) -> Option<String> {
        match self {
            ChainKey::Unkeyed => None,
            ChainKey::Keyed(key) => Some(to_hex(&blake3::derive_key(KEY_ID_CONTEXT, key)[..8])),
        }
    }
}

/// `BLAKE3(prev ‖ canonical(e))`, keyed with the audit key in keyed mode.
pub fn chain_hash(key: &ChainKey, prev: &[u8; 32], e: &Entry) -> [u8; 32] {
    let mut hasher = match key {
        ChainKey::Unkeyed => blake3::Hasher::new(),
        ChainKey::Keyed(k) => blake3::Hasher::new_keyed(k),
    };
    hasher.update(prev);
    hasher.update(&canonical(e));
    *hasher.finalize().as_bytes()
}

/// One stored column value, typed as SQLite returns it.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue<'a> {
    Null,
    Integer(i64),
    /// Never used by tollgate's tables; encoded so the format is total.
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("more than u32::MAX tables or columns");
    out.extend_from_slice(&n.to_be_bytes());
}

/// BLAKE3 over named tables of named columns, in the order given.
pub fn record_digest(tables: &[(&str, &[(&str, FieldValue<'_>)])]) -> [u8; 32] {
    let mut out = Vec::new();
    out.extend_from_slice(RECORD_MAGIC);
    put_count(&mut out, tables.len());
    for (table, columns) in tables {
        put_bytes(&mut out, table.as_bytes());
        put_count(&mut out, columns.len());
        for (column, value) in columns.iter() {
            put_bytes(&mut out, column.as_bytes());
            match value {
                FieldValue::Null => out.push(0),
                FieldValue::Integer(i) => {
                    out.push(1);
                    out.extend_from_slice(&i.to_be_bytes());
                }
                FieldValue::Real(r) => {
                    out.push(2);
                    out.extend_from_slice(&r.to_bits().to_be_bytes());
                }
                FieldValue::Text(t) => {
                    out.push(3);
                    put_bytes(&mut out, t.as_bytes());
                }
                FieldValue::Blob(b) => {
                    out.push(4);
                    put_bytes(&mut out, b);
                }
            }
        }
    }
    *blake3::hash(&out).as_bytes()
}

/// The digest of a `proxy.request` entry: its `traces` row, then its `costs` row.
pub fn request_digest(
    traces: &[(&str, FieldValue<'_>)],
    costs: &[(&str, FieldValue<'_>)],
) -> [u8; 32] {
    record_digest(&[("traces", traces), ("costs", costs)])
}

/// The digest of an administrative entry: its `detail` text.
pub fn detail_digest(detail: &str) -> [u8; 32] {
    let mut out = Vec::with_capacity(DETAIL_MAGIC.len() + 4 + detail.len());
    out.extend_from_slice(DETAIL_MAGIC);
    put_bytes(&mut out, detail.as_bytes());
    *blake3::hash(&out).as_bytes()
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Exactly 64 hex digits, either case; anything else is `None`.
pub fn from_hex32(text: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Key 0x01, 0x02, ..., 0x20: the keyed test vector in docs/AUDIT.md.
    fn doc_key() -> ChainKey {
        ChainKey::Keyed(std::array::from_fn(|i| i as u8 + 1))
    }

    const DOC_DETAIL: &str = r#"{"name":"k1"}"#;

    fn doc_entry() -> Entry<'static> {
        Entry {
            seq: 1,
            ts_ms: 1_700_000_000_000,
            actor: "admin",
            action: "key.create",
            subject: "key:k1",
            digest: detail_digest(DOC_DETAIL),
        }
    }

    /// The vectors printed in docs/AUDIT.md; change both together or neither.
    #[test]
    fn doc_test_vectors() {
        let e = doc_entry();
        assert_eq!(
            to_hex(&e.digest),
            "92b56712cab21de75d057a4b1e2a322e74e95cd424c4117a422a3023cd083861"
        );
        assert_eq!(
            to_hex(&canonical(&e)),
            concat!(
                "5447415544495401",
                "0000000000000001",
                "0000018bcfe56800",
                "00000005",
                "61646d696e",
                "0000000a",
                "6b65792e637265617465",
                "00000006",
                "6b65793a6b31",
                "00000020",
                "92b56712cab21de75d057a4b1e2a322e74e95cd424c4117a422a3023cd083861"
            )
        );
        assert_eq!(
            to_hex(&chain_hash(&ChainKey::Unkeyed, &GENESIS, &e)),
            "7f6d520da0172842265c04184d83237cd9062783a44f3ea419f706854754e9b6"
        );
        assert_eq!(
            to_hex(&chain_hash(&doc_key(), &GENESIS, &e)),
            "39ad5d3380a55053c03b7dadebc91d4f4737c80c2de253f15bfc1a9b1718d5e8"
        );
        assert_eq!(doc_key().key_id().as_deref(), Some("e73c32889d027683"));
        assert_eq!(ChainKey::Unkeyed.key_id(), None);

        let traces = [
            ("id", FieldValue::Text("t1")),
            ("stream", FieldValue::Integer(0)),
            ("error_kind", FieldValue::Null),
            ("request_body", FieldValue::Blob(b"hi")),
        ];
        let costs = [
            ("trace_id", FieldValue::Text("t1")),
            ("cost_uc", FieldValue::Integer(1500)),
        ];
        let rd = request_digest(&traces, &costs);
        assert_eq!(
            to_hex(&rd),
            "bafe78c6ae3ccdfe44a06cc5a877283b716287617b702f622a3e077893176588"
        );
        let e2 = Entry {
            seq: 2,
            ts_ms: 1_700_000_000_250,
            actor: "client:k1",
            action: "proxy.request",
            subject: "trace:t1",
            digest: rd,
        };
        let h1 = chain_hash(&ChainKey::Unkeyed, &GENESIS, &e);
        assert_eq!(
            to_hex(&chain_hash(&ChainKey::Unkeyed, &h1, &e2)),
            "4ab3345d0b67af226f2d320c1f43339fe6d68c015046d135a9a0344baa26f2cb"
        );
        let k1 = chain_hash(&doc_key(), &GENESIS, &e);
        assert_eq!(
            to_hex(&chain_hash(&doc_key(), &k1, &e2)),
            "cc8dd60fc6377408ac408075de4152130b953e9f684f610f64e421b20adc2708"
        );
    }

    #[test]
    fn debug_redacts_the_key() {
        let shown = format!("{:?}", doc_key());
        assert_eq!(shown, "Keyed(<redacted>)");
        assert_eq!(format!("{:?}", ChainKey::Unkeyed), "Unkeyed");
    }

    #[test]
    fn key_from_hex() {
        let text = format!(
            "  {}\n",
            to_hex(&std::array::from_fn::<u8, 32, _>(|i| i as u8 + 1))
        );
        assert_eq!(
            ChainKey::from_hex(&text).unwrap().key_id(),
            doc_key().key_id()
        );
        assert!(ChainKey::from_hex("0102").is_none());
    }

    #[test]
    fn hex_rejects_malformed() {
        let good = "00".repeat(32);
        assert_eq!(from_hex32(&good), Some([0; 32]));
        assert_eq!(from_hex32(&"Ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(from_hex32(&good[1..]), None);
        assert_eq!(from_hex32(&format!("{good}00")), None);
        assert_eq!(from_hex32(&format!("0x{}", &good[2..])), None);
        assert_eq!(from_hex32(&format!("é{}", &good[2..])), None);
        assert_eq!(to_hex(&[0x00, 0x0f, 0xf0, 0xff]), "000ff0ff");
    }

    #[test]
    fn record_digest_tells_types_and_nesting_apart() {
        let digests = [
            record_digest(&[("t", &[("c", FieldValue::Null)])]),
            record_digest(&[("t", &[("c", FieldValue::Text(""))])]),
            record_digest(&[("t", &[("c", FieldValue::Blob(b""))])]),
            record_digest(&[("t", &[("c", FieldValue::Integer(0))])]),
            record_digest(&[("t", &[("c", FieldValue::Real(0.0))])]),
            record_digest(&[("t", &[("c", FieldValue::Real(-0.0))])]),
            record_digest(&[("t", &[])]),
            record_digest(&[("t", &[]), ("c", &[])]),
            record_digest(&[]),
        ];
        for (i, a) in digests.iter().enumerate() {
            for b in &digests[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(detail_digest(""), record_digest(&[]));
    }

    /// The inverse of `canonical`; existing proves the encoding injective.
    fn decode(mut bytes: &[u8]) -> Option<(i64, i64, String, String, String, [u8; 32])> {
        fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
            let (head, tail) = bytes.split_at_checked(n)?;
            *bytes = tail;
            Some(head)
        }
        fn field(bytes: &mut &[u8]) -> Option<Vec<u8>> {
            let len = u32::from_be_bytes(take(bytes, 4)?.try_into().ok()?);
            Some(take(bytes, len as usize)?.to_vec())
        }
        let text = |b: Vec<u8>| String::from_utf8(b).ok();
        (take(&mut bytes, 8)? == ENTRY_MAGIC).then_some(())?;
        let seq = i64::from_be_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        let ts = i64::from_be_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        let actor = text(field(&mut bytes)?)?;
        let action = text(field(&mut bytes)?)?;
        let subject = text(field(&mut bytes)?)?;
        let digest = field(&mut bytes)?.try_into().ok()?;
        bytes
            .is_empty()
            .then_some((seq, ts, actor, action, subject, digest))
    }

    fn entry_of<'a>(f: &'a (i64, i64, String, String, String, [u8; 32])) -> Entry<'a> {
        Entry {
            seq: f.0,
            ts_ms: f.1,
            actor: &f.2,
            action: &f.3,
            subject: &f.4,
            digest: f.5,
        }
    }

    proptest! {
        #[test]
        fn canonical_round_trips(
            seq in any::<i64>(), ts in any::<i64>(),
            actor in ".{0,12}", action in ".{0,12}", subject in ".{0,12}",
            digest in any::<[u8; 32]>(),
        ) {
            let fields = (seq, ts, actor, action, subject, digest);
            prop_assert_eq!(decode(&canonical(&entry_of(&fields))), Some(fields));
        }

        /// Moving bytes between actor, action and subject always changes the encoding.
        #[test]
        fn canonical_injective_over_splits(
            text in "[a-z:.]{0,24}",
            cuts in any::<[prop::sample::Index; 4]>(),
        ) {
            let split = |i: &prop::sample::Index, j: &prop::sample::Index| {
                let (a, b) = (i.index(text.len() + 1), j.index(text.len() + 1));
                (a.min(b), a.max(b))
            };
            let entry = |(a, b): (usize, usize)| Entry {
                seq: 7,
                ts_ms: 9,
                actor: &text[..a],
                action: &text[a..b],
                subject: &text[b..],
                digest: [3; 32],
            };
            let (x, y) = (split(&cuts[0], &cuts[1]), split(&cuts[2], &cuts[3]));
            prop_assert_eq!(x == y, canonical(&entry(x)) == canonical(&entry(y)));
        }

        #[test]
        fn keyed_differs_from_unkeyed(
            key in any::<[u8; 32]>(), prev in any::<[u8; 32]>(), actor in ".{0,8}", seq in 1i64..1000,
        ) {
            let e = Entry { seq, ts_ms: 1, actor: &actor, action: "a", subject: "s", digest: [0; 32] };
            prop_assert_ne!(
                chain_hash(&ChainKey::Keyed(key), &prev, &e),
                chain_hash(&ChainKey::Unkeyed, &prev, &e)
            );
        }

        #[test]
        fn hex_round_trips(bytes in any::<[u8; 32]>()) {
            prop_assert_eq!(from_hex32(&to_hex(&bytes)), Some(bytes));
            prop_assert_eq!(from_hex32(&to_hex(&bytes).to_uppercase()), Some(bytes));
        }
    }
}
