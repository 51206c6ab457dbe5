//! Streaming verification of the audit chain (algorithm: `docs/AUDIT.md`).
//!
//! No SQL here: the caller reads `audit_log` in ascending seq order and
//! answers, per request entry, whether the covered rows still hash to the
//! entry's digest. Verification stops at the first failure and names its
//! seq, because everything after a break is unverifiable, and locating the
//! break is what an operator needs.

use std::collections::VecDeque;
use std::fmt;

use super::checkpoint::Anchor;
use super::encoding::{ChainKey, Entry, GENESIS, chain_hash, detail_digest, to_hex};

/// The action of an entry covering one proxied request.
pub const REQUEST_ACTION: &str = "proxy.request";
/// A request entry's subject is this prefix followed by the trace id.
pub const TRACE_SUBJECT_PREFIX: &str = "trace:";
/// How many earlier positions a mismatching entry is tried at before the
/// failure is called a plain hash mismatch rather than a reordering.
const MOVED_WINDOW: usize = 64;

/// One `audit_log` row as read from the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub digest: Vec<u8>,
    pub hash: Vec<u8>,
    pub detail: Option<String>,
}

impl StoredEntry {
    /// The hashed fields, or `None` when the digest is not 32 bytes.
    pub fn entry(&self) -> Option<Entry<'_>> {
        Some(Entry {
            seq: self.seq,
            ts_ms: self.ts_ms,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            digest: self.digest.as_slice().try_into().ok()?,
        })
    }

    /// The trace id a `proxy.request` entry covers.
    pub fn trace_id(&self) -> Option<&str> {
        if self.action != REQUEST_ACTION {
            return None;
        }
        self.subject.strip_prefix(TRACE_SUBJECT_PREFIX)
    }
}

/// The caller's verdict on the rows a request entry covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordCheck {
    /// The `traces` and `costs` rows exist and hash to the entry's digest.
    Match,
    /// They exist but hash to something else.
    Mismatch,
    /// The `traces` or the `costs` row is gone.
    Missing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// The last entry's seq and hash; `None` for an empty ledger.
    pub head: Option<Anchor>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    HashMismatch,
    Gap,
    Reordered,
    DigestMismatch,
    RecordMissing,
    DetailMismatch,
    AnchorMismatch,
    Truncated,
    WrongKey,
    BadField,
}

impl FailureKind {
    /// The stable name printed by `tollgate audit verify`; the same as the
    /// variant's `Debug` so either formatting gives the documented output.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::HashMismatch => "HashMismatch",
            FailureKind::Gap => "Gap",
            FailureKind::Reordered => "Reordered",
            FailureKind::DigestMismatch => "DigestMismatch",
            FailureKind::RecordMissing => "RecordMissing",
            FailureKind::DetailMismatch => "DetailMismatch",
            FailureKind::AnchorMismatch => "AnchorMismatch",
            FailureKind::Truncated => "Truncated",
            FailureKind::WrongKey => "WrongKey",
            FailureKind::BadField => "BadField",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and how the chain broke. `seq` 0 means before any entry (the key).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("seq {seq}: {message}")]
pub struct Failure {
    pub seq: i64,
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    fn new(seq: i64, kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            seq,
            kind,
            message: message.into(),
        }
    }
}

#[derive(Debug)]
pub struct Verifier {
    key: ChainKey,
    /// Sorted by seq; several sources may anchor the same seq.
    anchors: Vec<Anchor>,
    last_seq: i64,
    last_anchor_ok: Option<i64>,
    /// `recent[i]` is the verified hash at `last_seq - i` (index 0 = head),
    /// ending with GENESIS once the start is within reach.
    recent: VecDeque<[u8; 32]>,
    entries: u64,
    failed: Option<Failure>,
}

impl Verifier {
    pub fn new(
        key: ChainKey,
        expected_key_id: Option<String>,
        mut anchors: Vec<Anchor>,
    ) -> Result<Verifier, Failure> {
        let wrong_key = |message: String| Err(Failure::new(0, FailureKind::WrongKey, message));
        match (key.key_id(), expected_key_id) {
            (None, None) => {}
            (Some(given), Some(stored)) if given == stored.trim().to_ascii_lowercase() => {}
            (Some(given), Some(stored)) => {
                return wrong_key(format!(
                    "the audit key given has key id {given} but the ledger was written with key id {stored}: pass the key whose id is {stored}"
                ));
            }
            (None, Some(stored)) => {
                return wrong_key(format!(
                    "the ledger is keyed (audit_meta key_id {stored}) but no audit key was given: pass it with TOLLGATE_AUDIT_KEY or --key-file"
                ));
            }
            (Some(given), None) => {
                return wrong_key(format!(
                    "an audit key (key id {given}) was given but the ledger records no key_id, so it claims to be unkeyed: verify without a key, or, if this ledger was written keyed, audit_meta was altered (as it would be by someone who recomputed the chain without the key)"
                ));
            }
        }
        anchors.sort_by_key(|a| (a.seq, a.hash));
        anchors.dedup();
        Ok(Verifier {
            key,
            anchors,
            last_seq: 0,
            last_anchor_ok: None,
            recent: VecDeque::from([GENESIS]),
            entries: 0,
            failed: None,
        })
    }

    /// Checks the next entry; `record` is asked only for verified
    /// `proxy.request` entries. After a failure every call returns it again.
    pub fn check(
        &mut self,
        e: &StoredEntry,
        record: impl FnOnce(&StoredEntry, &[u8; 32]) -> RecordCheck,
    ) -> Result<(), Failure> {
        if let Some(failure) = &self.failed {
            return Err(failure.clone());
        }
        match self.check_entry(e, record) {
            Ok(hash) => {
                self.last_seq = e.seq;
                self.recent.push_front(hash);
                self.recent.truncate(MOVED_WINDOW + 1);
                self.entries += 1;
                Ok(())
            }
            Err(failure) => {
                self.failed = Some(failure.clone());
                Err(failure)
            }
        }
    }

    fn check_entry(
        &mut self,
        e: &StoredEntry,
        record: impl FnOnce(&StoredEntry, &[u8; 32]) -> RecordCheck,
    ) -> Result<[u8; 32], Failure> {
        self.check_seq(e.seq)?;
        let fail = |kind, message: String| Err(Failure::new(e.seq, kind, message));
        let Some(entry) = e.entry() else {
            return fail(
                FailureKind::BadField,
                format!("digest is {} bytes, not 32", e.digest.len()),
            );
        };
        let Ok(stored) = <[u8; 32]>::try_from(e.hash.as_slice()) else {
            return fail(
                FailureKind::BadField,
                format!("hash is {} bytes, not 32", e.hash.len()),
            );
        };
        let computed = chain_hash(&self.key, &self.recent[0], &entry);
        if computed != stored {
            return Err(self.explain_mismatch(e, &entry, &stored, &computed));
        }
        self.check_anchors(e.seq, &stored)?;
        check_covered(e, &entry.digest, record)?;
        Ok(stored)
    }

    fn check_seq(&self, seq: i64) -> Result<(), Failure> {
        let expected = self.last_seq + 1;
        if seq == expected {
            return Ok(());
        }
        if seq < 1 {
            return Err(Failure::new(
                seq,
                FailureKind::BadField,
                format!("seq {seq} is not >= 1"),
            ));
        }
        if seq < expected {
            return Err(Failure::new(
                seq,
                FailureKind::Reordered,
                format!(
                    "seq {seq} comes after seq {}: entries must be read in ascending seq order, each seq once",
                    self.last_seq
                ),
            ));
        }
        let message = if self.last_seq == 0 {
            format!("entries before {seq} are missing: the ledger starts at seq {seq}")
        } else if seq == expected + 1 {
            format!(
                "entry {expected} is missing (between seq {} and seq {seq})",
                self.last_seq
            )
        } else {
            format!(
                "entries {expected}..={} are missing (between seq {} and seq {seq})",
                seq - 1,
                self.last_seq
            )
        };
        Err(Failure::new(expected, FailureKind::Gap, message))
    }

    /// Tells a moved entry from an altered one. `Reordered` is reported only
    /// on proof: the stored hash is exactly what this content had at an
    /// earlier verified position. A timestamp running backwards proves
    /// nothing, since request entries carry the request's start time.
    fn explain_mismatch(
        &self,
        e: &StoredEntry,
        entry: &Entry,
        stored: &[u8; 32],
        computed: &[u8; 32],
    ) -> Failure {
        for back in 1..self.recent.len() {
            let earlier = Entry {
                seq: e.seq - back as i64,
                ..*entry
            };
            if chain_hash(&self.key, &self.recent[back], &earlier) == *stored {
                return Failure::new(
                    e.seq,
                    FailureKind::Reordered,
                    format!(
                        "this entry's content and hash belong at seq {}: entries were moved",
                        earlier.seq
                    ),
                );
            }
        }
        Failure::new(
            e.seq,
            FailureKind::HashMismatch,
            format!(
                "stored hash {} but recomputed {}: this entry was altered or forged, or entries before it were rewritten",
                to_hex(stored),
                to_hex(computed)
            ),
        )
    }

    fn check_anchors(&mut self, seq: i64, hash: &[u8; 32]) -> Result<(), Failure> {
        for anchor in self.anchors.iter().filter(|a| a.seq == seq) {
            if anchor.hash != *hash {
                let since = match self.last_anchor_ok {
                    Some(ok) => format!("after seq {ok}, the last anchor that matched,"),
                    None => "at or before this seq".to_string(),
                };
                return Err(Failure::new(
                    seq,
                    FailureKind::AnchorMismatch,
                    format!(
                        "hash {} differs from the anchored {}: the chain was rewritten {since} by someone able to recompute it",
                        to_hex(hash),
                        to_hex(&anchor.hash)
                    ),
                ));
            }
            self.last_anchor_ok = Some(seq);
        }
        Ok(())
    }

    /// Ends verification: anchors beyond the last entry mean a deleted tail.
    pub fn finish(self) -> Result<Verified, Failure> {
        if let Some(failure) = self.failed {
            return Err(failure);
        }
        if let Some(beyond) = self.anchors.last().filter(|a| a.seq > self.last_seq) {
            let ends = if self.last_seq == 0 {
                "the ledger is empty".to_string()
            } else {
                format!("the ledger ends at seq {}", self.last_seq)
            };
            return Err(Failure::new(
                self.last_seq + 1,
                FailureKind::Truncated,
                format!(
                    "{ends} but a checkpoint/anchor records seq {}: entries were deleted from the end",
                    beyond.seq
                ),
            ));
        }
        Ok(Verified {
            entries: self.entries,
            head: (self.entries > 0).then(|| Anchor {
                seq: self.last_seq,
                hash: self.recent[0],
            }),
        })
    }
}

/// Checks the record an entry covers: the caller's rows for a request entry,
/// the stored detail for an administrative one.
fn check_covered(
    e: &StoredEntry,
    digest: &[u8; 32],
    record: impl FnOnce(&StoredEntry, &[u8; 32]) -> RecordCheck,
) -> Result<(), Failure> {
    let fail = |kind, message: String| Err(Failure::new(e.seq, kind, message));
    if e.action == REQUEST_ACTION {
        if e.detail.is_some() {
            return fail(
                FailureKind::DetailMismatch,
                "detail text was added to a proxy.request entry, which never carries one"
                    .to_string(),
            );
        }
        if e.trace_id().is_none() {
            return fail(
                FailureKind::BadField,
                format!("proxy.request subject {:?} is not trace:<id>", e.subject),
            );
        }
        match record(e, digest) {
            RecordCheck::Match => {}
            RecordCheck::Mismatch => {
                return fail(
                    FailureKind::DigestMismatch,
                    format!(
                        "the trace or cost row covered by this entry ({}) was changed",
                        e.subject
                    ),
                );
            }
            RecordCheck::Missing => {
                return fail(
                    FailureKind::RecordMissing,
                    format!(
                        "the trace or cost row covered by this entry ({}) was deleted",
                        e.subject
                    ),
                );
            }
        }
    } else {
        match &e.detail {
            None => {
                return fail(
                    FailureKind::DetailMismatch,
                    format!("the detail text of this {} entry was deleted", e.action),
                );
            }
            Some(detail) if detail_digest(detail) != *digest => {
                return fail(
                    FailureKind::DetailMismatch,
                    format!("the detail text of this {} entry was changed", e.action),
                );
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::checkpoint::{format_line, parse_file};
    use super::super::encoding::{FieldValue, record_digest};
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000;

    fn real_key() -> ChainKey {
        ChainKey::Keyed([0x5a; 32])
    }

    /// What the `traces`+`costs` rows of a trace hash to in these tests.
    fn rows_digest(trace: &str) -> [u8; 32] {
        record_digest(&[
            ("traces", &[("id", FieldValue::Text(trace))]),
            ("costs", &[("trace_id", FieldValue::Text(trace))]),
        ])
    }

    fn rows_intact(e: &StoredEntry, digest: &[u8; 32]) -> RecordCheck {
        if *digest == rows_digest(e.trace_id().unwrap()) {
            RecordCheck::Match
        } else {
            RecordCheck::Mismatch
        }
    }

    /// Odd seqs are admin entries with detail, even seqs proxied requests.
    fn chain(key: &ChainKey, n: i64) -> Vec<StoredEntry> {
        let mut entries: Vec<StoredEntry> = (1..=n)
            .map(|seq| {
                let (actor, action, subject, detail) = if seq % 2 == 1 {
                    let detail = format!(r#"{{"key":"k{seq}"}}"#);
                    ("admin", "key.create", format!("key:k{seq}"), Some(detail))
                } else {
                    ("client:k1", REQUEST_ACTION, format!("trace:t{seq}"), None)
                };
                let digest = match &detail {
                    Some(d) => detail_digest(d),
                    None => rows_digest(&subject[TRACE_SUBJECT_PREFIX.len()..]),
                };
                StoredEntry {
                    seq,
                    ts_ms: T0 + seq * 1000,
                    actor: actor.to_string(),
                    action: action.to_string(),
                    subject,
                    digest: digest.to_vec(),
                    hash: Vec::new(),
                    detail,
                }
            })
            .collect();
        rehash(key, &mut entries, 0);
        entries
    }

    /// Recomputes hashes from index `from` on, as a writer (or an attacker) would.
    fn rehash(key: &ChainKey, entries: &mut [StoredEntry], from: usize) {
        let mut prev = match from {
            0 => GENESIS,
            i => entries[i - 1].hash.as_slice().try_into().unwrap(),
        };
        for e in &mut entries[from..] {
            prev = chain_hash(key, &prev, &e.entry().unwrap());
            e.hash = prev.to_vec();
        }
    }

    fn verify_with(
        key: ChainKey,
        key_id: Option<String>,
        anchors: Vec<Anchor>,
        entries: &[StoredEntry],
    ) -> Result<Verified, Failure> {
        let mut v = Verifier::new(key, key_id, anchors)?;
        for e in entries {
            v.check(e, rows_intact)?;
        }
        v.finish()
    }

    fn verify(entries: &[StoredEntry], anchors: Vec<Anchor>) -> Result<Verified, Failure> {
        verify_with(real_key(), real_key().key_id(), anchors, entries)
    }

    fn head_of(entries: &[StoredEntry]) -> Anchor {
        let last = entries.last().unwrap();
        Anchor {
            seq: last.seq,
            hash: last.hash.as_slice().try_into().unwrap(),
        }
    }

    #[track_caller]
    fn assert_fails(result: Result<Verified, Failure>, seq: i64, kinds: &[FailureKind]) -> Failure {
        let failure = result.expect_err("verification should fail");
        assert_eq!(failure.seq, seq, "{failure}");
        assert!(
            kinds.contains(&failure.kind),
            "{:?}: {failure}",
            failure.kind
        );
        failure
    }

    #[test]
    fn intact_chain_verifies() {
        let entries = chain(&real_key(), 10);
        let anchors = vec![head_of(&entries[..4]), head_of(&entries)];
        let ok = verify(&entries, anchors).unwrap();
        assert_eq!(ok.entries, 10);
        assert_eq!(ok.head, Some(head_of(&entries)));

        let mut unkeyed = chain(&ChainKey::Unkeyed, 3);
        // a request entry carries its start time, which may precede the entry before it
        unkeyed[2].ts_ms = T0 - 60_000;
        rehash(&ChainKey::Unkeyed, &mut unkeyed, 2);
        let ok = verify_with(ChainKey::Unkeyed, None, vec![], &unkeyed).unwrap();
        assert_eq!(ok.head, Some(head_of(&unkeyed)));
    }

    #[test]
    fn empty_ledger() {
        let ok = verify(&[], vec![]).unwrap();
        assert_eq!(
            ok,
            Verified {
                entries: 0,
                head: None
            }
        );
        let anchor = head_of(&chain(&real_key(), 2));
        let failure = assert_fails(verify(&[], vec![anchor]), 1, &[FailureKind::Truncated]);
        assert!(failure.message.contains("empty"), "{failure}");
    }

    #[test]
    fn changed_actor_is_a_hash_mismatch_at_that_seq() {
        let mut entries = chain(&real_key(), 6);
        entries[3].actor = "someone-else".to_string();
        let failure = assert_fails(verify(&entries, vec![]), 4, &[FailureKind::HashMismatch]);
        assert!(
            failure.to_string().starts_with("seq 4: stored hash "),
            "{failure}"
        );
    }

    #[test]
    fn changed_timestamp() {
        let mut entries = chain(&real_key(), 6);
        entries[2].ts_ms += 1;
        assert_fails(verify(&entries, vec![]), 3, &[FailureKind::HashMismatch]);
        entries[2].ts_ms = T0;
        assert_fails(verify(&entries, vec![]), 3, &[FailureKind::HashMismatch]);
    }

    #[test]
    fn deleted_middle_entries_are_a_gap() {
        let mut entries = chain(&real_key(), 8);
        entries.remove(4);
        let failure = assert_fails(verify(&entries, vec![]), 5, &[FailureKind::Gap]);
        assert!(
            failure.message.starts_with("entry 5 is missing"),
            "{failure}"
        );
        entries.drain(4..6);
        let failure = assert_fails(verify(&entries, vec![]), 5, &[FailureKind::Gap]);
        assert!(
            failure.message.starts_with("entries 5..=7 are missing"),
            "{failure}"
        );
    }

    #[test]
    fn deleted_head_entries_are_a_gap_at_seq_1() {
        let mut entries = chain(&real_key(), 5);
        entries.drain(..2);
        let failure = assert_fails(verify(&entries, vec![]), 1, &[FailureKind::Gap]);
        assert!(
            failure.message.starts_with("entries before 3 are missing"),
            "{failure}"
        );
    }

    #[test]
    fn renumbering_after_a_deletion_is_caught() {
        let mut entries = chain(&real_key(), 6);
        entries.remove(2);
        for e in &mut entries[2..] {
            e.seq -= 1;
        }
        assert_fails(
            verify(&entries, vec![]),
            3,
            &[FailureKind::HashMismatch, FailureKind::Reordered],
        );
    }

    #[test]
    fn swapped_contents_fail_at_the_first_swapped_seq() {
        for (a, b) in [(2, 3), (1, 4), (0, 5)] {
            let mut entries = chain(&real_key(), 6);
            let (sa, sb) = (entries[a].seq, entries[b].seq);
            entries.swap(a, b);
            entries[a].seq = sa;
            entries[b].seq = sb;
            let kinds = [FailureKind::HashMismatch, FailureKind::Reordered];
            assert_fails(verify(&entries, vec![]), sa, &kinds);
        }
    }

    #[test]
    fn replayed_entry_is_reordered() {
        let mut entries = chain(&real_key(), 6);
        entries[4] = StoredEntry {
            seq: 5,
            ..entries[1].clone()
        };
        let failure = assert_fails(verify(&entries, vec![]), 5, &[FailureKind::Reordered]);
        assert!(failure.message.contains("belong at seq 2"), "{failure}");
    }

    #[test]
    fn out_of_order_input_is_reordered() {
        let mut entries = chain(&real_key(), 4);
        entries.push(entries[0].clone());
        assert_fails(verify(&entries, vec![]), 1, &[FailureKind::Reordered]);
        let mut entries = chain(&real_key(), 4);
        entries.insert(2, entries[1].clone());
        assert_fails(verify(&entries, vec![]), 2, &[FailureKind::Reordered]);
    }

    #[test]
    fn inserted_forged_entry_fails_at_it() {
        let mut entries = chain(&real_key(), 6);
        let mut forged = entries[2].clone();
        forged.actor = "forger".to_string();
        entries.insert(3, forged);
        for (i, e) in entries.iter_mut().enumerate() {
            e.seq = i as i64 + 1;
        }
        rehash(&ChainKey::Keyed([0xee; 32]), &mut entries, 3);
        assert_fails(verify(&entries, vec![]), 4, &[FailureKind::HashMismatch]);
    }

    #[test]
    fn forged_append_without_the_key_fails_at_it() {
        let mut entries = chain(&real_key(), 4);
        let mut forged = chain(&ChainKey::Unkeyed, 5).pop().unwrap();
        let prev: [u8; 32] = entries[3].hash.as_slice().try_into().unwrap();
        forged.hash = chain_hash(&ChainKey::Unkeyed, &prev, &forged.entry().unwrap()).to_vec();
        entries.push(forged);
        assert_fails(verify(&entries, vec![]), 5, &[FailureKind::HashMismatch]);
    }

    #[test]
    fn deleted_tail_needs_an_outside_anchor() {
        let full = chain(&real_key(), 10);
        let checkpoints = format!(
            "# checkpoints\n{}{}",
            format_line(&head_of(&full[..5]), T0 + 5_500),
            format_line(&head_of(&full), T0 + 10_500)
        );
        let anchors: Vec<Anchor> = parse_file(&checkpoints)
            .unwrap()
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        let cut = &full[..7];
        let ok = verify(cut, vec![]).unwrap();
        assert_eq!(ok.head, Some(head_of(cut)));
        let failure = assert_fails(verify(cut, anchors), 8, &[FailureKind::Truncated]);
        assert_eq!(
            failure.message,
            "the ledger ends at seq 7 but a checkpoint/anchor records seq 10: entries were deleted from the end"
        );
    }

    #[test]
    fn unkeyed_recomputation_by_an_attacker() {
        let mut entries = chain(&real_key(), 6);
        entries[2].actor = "attacker".to_string();
        rehash(&ChainKey::Unkeyed, &mut entries, 0);
        // audit_meta.key_id deleted to make the ledger look unkeyed
        let failure = assert_fails(
            verify_with(real_key(), None, vec![], &entries),
            0,
            &[FailureKind::WrongKey],
        );
        assert!(
            failure.message.contains("audit_meta was altered"),
            "{failure}"
        );
        // key_id left in place
        assert_fails(verify(&entries, vec![]), 1, &[FailureKind::HashMismatch]);
        // the attacker's chain is self-consistent; only an outside anchor catches it
        let honest = chain(&real_key(), 6);
        assert!(verify_with(ChainKey::Unkeyed, None, vec![], &entries).is_ok());
        let anchors = vec![head_of(&honest[..4])];
        assert_fails(
            verify_with(ChainKey::Unkeyed, None, anchors, &entries),
            4,
            &[FailureKind::AnchorMismatch],
        );
    }

    #[test]
    fn key_and_ledger_must_agree() {
        let entries = chain(&real_key(), 2);
        let failure = assert_fails(
            verify_with(ChainKey::Unkeyed, real_key().key_id(), vec![], &entries),
            0,
            &[FailureKind::WrongKey],
        );
        assert!(failure.message.contains("TOLLGATE_AUDIT_KEY"), "{failure}");
        let other = ChainKey::Keyed([1; 32]);
        let failure = assert_fails(
            verify_with(other.clone(), real_key().key_id(), vec![], &entries),
            0,
            &[FailureKind::WrongKey],
        );
        let wanted = real_key().key_id().unwrap();
        assert!(
            failure
                .message
                .contains(&format!("pass the key whose id is {wanted}")),
            "{failure}"
        );
        assert!(
            !format!("{failure:?}").contains("0101"),
            "key bytes must not leak"
        );
    }

    #[test]
    fn rewritten_suffix_is_an_anchor_mismatch() {
        let honest = chain(&ChainKey::Unkeyed, 10);
        let mut entries = honest.clone();
        entries[5].actor = "client:k2".to_string();
        rehash(&ChainKey::Unkeyed, &mut entries, 5);
        let anchors = vec![head_of(&honest[..3]), head_of(&honest[..8])];
        let failure = assert_fails(
            verify_with(ChainKey::Unkeyed, None, anchors, &entries),
            8,
            &[FailureKind::AnchorMismatch],
        );
        assert!(failure.message.contains("after seq 3"), "{failure}");
    }

    #[test]
    fn record_checks() {
        let entries = chain(&real_key(), 4);
        let mut calls = Vec::new();
        let mut v = Verifier::new(real_key(), real_key().key_id(), vec![]).unwrap();
        for e in &entries {
            v.check(e, |e, d| {
                calls.push(e.seq);
                rows_intact(e, d)
            })
            .unwrap();
        }
        assert_eq!(calls, [2, 4], "only proxy.request entries are looked up");
        assert_eq!(v.finish().unwrap().entries, 4);

        for (answer, kind) in [
            (RecordCheck::Mismatch, FailureKind::DigestMismatch),
            (RecordCheck::Missing, FailureKind::RecordMissing),
        ] {
            let mut v = Verifier::new(real_key(), real_key().key_id(), vec![]).unwrap();
            v.check(&entries[0], |_, _| unreachable!()).unwrap();
            let failure = v.check(&entries[1], |_, _| answer).unwrap_err();
            assert_eq!((failure.seq, failure.kind), (2, kind), "{failure}");
            assert!(failure.message.contains("trace:t2"), "{failure}");
            assert_eq!(
                v.check(&entries[2], |_, _| unreachable!()),
                Err(failure.clone()),
                "sticky"
            );
            assert_eq!(v.finish(), Err(failure));
        }
    }

    #[test]
    fn detail_tampering() {
        let mut entries = chain(&real_key(), 4);
        entries[2].detail = Some(r#"{"key":"k999"}"#.to_string());
        assert_fails(verify(&entries, vec![]), 3, &[FailureKind::DetailMismatch]);
        entries[2].detail = None;
        assert_fails(verify(&entries, vec![]), 3, &[FailureKind::DetailMismatch]);
        let mut entries = chain(&real_key(), 4);
        entries[1].detail = Some("{}".to_string());
        assert_fails(verify(&entries, vec![]), 2, &[FailureKind::DetailMismatch]);
    }

    #[test]
    fn malformed_fields() {
        let mut entries = chain(&real_key(), 3);
        entries[1].digest.pop();
        assert_fails(verify(&entries, vec![]), 2, &[FailureKind::BadField]);
        let mut entries = chain(&real_key(), 3);
        entries[2].hash.push(0);
        assert_fails(verify(&entries, vec![]), 3, &[FailureKind::BadField]);
        let mut entries = chain(&real_key(), 3);
        entries[0].seq = 0;
        assert_fails(verify(&entries, vec![]), 0, &[FailureKind::BadField]);
        let mut entries = chain(&real_key(), 3);
        entries[1].subject = "t2".to_string();
        rehash(&real_key(), &mut entries, 1);
        assert_fails(verify(&entries, vec![]), 2, &[FailureKind::BadField]);
    }

    #[test]
    fn failure_kinds_have_stable_names() {
        for kind in [
            FailureKind::HashMismatch,
            FailureKind::Gap,
            FailureKind::Reordered,
            FailureKind::DigestMismatch,
            FailureKind::RecordMissing,
            FailureKind::DetailMismatch,
            FailureKind::AnchorMismatch,
            FailureKind::Truncated,
            FailureKind::WrongKey,
            FailureKind::BadField,
        ] {
            assert_eq!(kind.to_string(), format!("{kind:?}"));
        }
    }

    #[derive(Clone, Debug)]
    enum Tamper {
        Actor,
        Action,
        Subject,
        Ts(i64),
        DigestBit(usize),
        HashBit(usize),
        Detail,
        Delete,
    }

    fn tamper() -> impl Strategy<Value = Tamper> {
        prop_oneof![
            Just(Tamper::Actor),
            Just(Tamper::Action),
            Just(Tamper::Subject),
            (-5000i64..5000)
                .prop_filter("a change", |d| *d != 0)
                .prop_map(Tamper::Ts),
            (0usize..256).prop_map(Tamper::DigestBit),
            (0usize..256).prop_map(Tamper::HashBit),
            Just(Tamper::Detail),
            Just(Tamper::Delete),
        ]
    }

    proptest! {
        /// Any single change to a keyed ledger is reported at the changed seq.
        #[test]
        fn any_tampering_is_located(n in 1i64..40, at in any::<prop::sample::Index>(), how in tamper()) {
            let mut entries = chain(&real_key(), n);
            let i = at.index(entries.len());
            let seq = entries[i].seq;
            let e = &mut entries[i];
            match how {
                Tamper::Actor => e.actor.push('x'),
                Tamper::Action => e.action.push('x'),
                Tamper::Subject => e.subject.push('x'),
                Tamper::Ts(d) => e.ts_ms += d,
                Tamper::DigestBit(b) => e.digest[b / 8] ^= 1 << (b % 8),
                Tamper::HashBit(b) => e.hash[b / 8] ^= 1 << (b % 8),
                Tamper::Detail => e.detail = Some(format!("{}x", e.detail.clone().unwrap_or_default())),
                Tamper::Delete => {
                    entries.remove(i);
                }
            }
            let anchors = vec![head_of(&chain(&real_key(), n))];
            let failure = verify(&entries, anchors).unwrap_err();
            prop_assert_eq!(failure.seq, seq, "{}", failure);
        }
    }
}
