//! The audit ledger under attack: every tampering is detected by
//! `tollgate audit verify` (the real binary, on a copy of the file) and
//! located at the right entry; an untouched ledger verifies.

mod common;

use common::*;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::Command;
use tollgate_mock_upstream::MockConfig;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const KEY_HEX: &str = "8f2b0c4d6e1a3b5c7d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e";
const REQUESTS: usize = 12;

struct Ledger {
    _keys: tempfile::TempDir,
    key_file: PathBuf,
    gw: Gateway,
}

/// A keyed ledger with REQUESTS request entries and one admin entry,
/// written by a real gateway that has shut down cleanly.
async fn ledger() -> Ledger {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("audit.key");
    std::fs::write(&key_file, format!("{KEY_HEX}\n")).unwrap();
    let extra = format!(
        "[audit]\nkey_file = \"{}\"\ncheckpoint_every_entries = 5\n",
        key_file.display()
    );
    let mut gw = Gateway::start_with(MockConfig::default(), &extra).await;
    for i in 0..REQUESTS {
        let (path, body) = if i % 2 == 0 {
            ("/v1/chat/completions", chat("gpt-4o-mini", i % 4 == 0))
        } else {
            ("/v1/messages", message("claude-haiku-4-5", false))
        };
        let resp = client()
            .post(gw.url(path))
            .header("x-mock-usage", format!("prompt={},completion=7", 100 + i))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        // One request per batch keeps the ledger order equal to request order.
        assert_eq!(gw.wait_traces(i as i64 + 1).await, i as i64 + 1);
    }
    gw.stop().await;
    Ledger {
        _keys: keys,
        key_file,
        gw,
    }
}

impl Ledger {
    fn checkpoints(&self) -> PathBuf {
        let mut p = self.gw.db.clone().into_os_string();
        p.push(".checkpoints");
        p.into()
    }

    /// A consistent copy of the database to tamper with.
    fn copy(&self, name: &str) -> (PathBuf, Connection) {
        let copy = self.gw.dir.path().join(format!("{name}.db"));
        self.gw
            .db()
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        let conn = Connection::open(&copy).unwrap();
        (copy, conn)
    }

    fn verify(&self, db: &Path, extra: &[&str]) -> (bool, String) {
        let out = Command::new(BIN)
            .args(["audit", "verify", "--db"])
            .arg(db)
            .arg("--key-file")
            .arg(&self.key_file)
            .args(extra)
            .env_remove("TOLLGATE_AUDIT_KEY")
            .env_remove("TOLLGATE_CONFIG")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn expect_failure(&self, db: &Path, extra: &[&str], seq: i64, kind: &str) {
        let (ok, out) = self.verify(db, extra);
        assert!(!ok, "tampering went unnoticed:\n{out}");
        let want = format!("FAILED at seq {seq}: {kind}");
        assert!(out.contains(&want), "expected {want:?}, got:\n{out}");
    }
}

fn trace_of(conn: &Connection, seq: i64) -> String {
    let subject: String = value(conn, "SELECT subject FROM audit_log WHERE seq = ?1", [seq]);
    subject.strip_prefix("trace:").unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untouched_ledger_verifies_and_every_tampering_is_located() {
    let l = ledger().await;
    let n = REQUESTS as i64;

    let (ok, out) = l.verify(
        &l.gw.db,
        &["--checkpoints", l.checkpoints().to_str().unwrap()],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("ok: {n} entries checked, head {n}:")),
        "{out}"
    );
    let head = Command::new(BIN)
        .args(["audit", "head", "--db"])
        .arg(&l.gw.db)
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap().trim().to_string();
    assert!(out.contains(&head), "audit head {head} vs verify {out}");
    let checkpoints = std::fs::read_to_string(l.checkpoints()).unwrap();
    assert!(
        checkpoints
            .lines()
            .any(|line| line.starts_with(&format!("{head} "))),
        "{checkpoints}"
    );
    assert!(
        checkpoints.lines().any(|line| line.starts_with("5:")),
        "every 5 entries: {checkpoints}"
    );

    // A changed cost breaks the digest of its entry.
    let (db, c) = l.copy("cost");
    c.execute(
        "UPDATE costs SET cost_uc = cost_uc + 1 WHERE trace_id = ?1",
        [trace_of(&c, 3)],
    )
    .unwrap();
    l.expect_failure(&db, &[], 3, "DigestMismatch");

    // A changed token count in a trace.
    let (db, c) = l.copy("tokens");
    c.execute(
        "UPDATE traces SET output_tokens = 9999 WHERE id = ?1",
        [trace_of(&c, 4)],
    )
    .unwrap();
    l.expect_failure(&db, &[], 4, "DigestMismatch");

    // A changed actor.
    let (db, c) = l.copy("actor");
    c.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 5", [])
        .unwrap();
    l.expect_failure(&db, &[], 5, "HashMismatch");

    // A deleted middle entry.
    let (db, c) = l.copy("gap");
    c.execute("DELETE FROM audit_log WHERE seq = 6", [])
        .unwrap();
    l.expect_failure(&db, &[], 6, "Gap");

    // Two entries swapped (their contents trade places).
    let (db, c) = l.copy("swap");
    c.execute_batch(
        "UPDATE audit_log SET seq = -7 WHERE seq = 7;
         UPDATE audit_log SET seq = 7 WHERE seq = 8;
         UPDATE audit_log SET seq = 8 WHERE seq = -7;",
    )
    .unwrap();
    let (ok, out) = l.verify(&db, &[]);
    assert!(
        !ok && (out.contains("FAILED at seq 7: HashMismatch")
            || out.contains("FAILED at seq 7: Reordered")),
        "{out}"
    );

    // A forged entry inserted in the middle.
    let (db, c) = l.copy("forged");
    c.execute_batch(
        "UPDATE audit_log SET seq = -seq WHERE seq >= 9;
         UPDATE audit_log SET seq = -seq + 1 WHERE seq < 0;",
    )
    .unwrap();
    c.execute(
        "INSERT INTO audit_log (seq, ts_ms, actor, action, subject, digest, hash, detail)
         VALUES (9, 0, 'mallory', 'keys.create', 'key:evil', zeroblob(32), zeroblob(32), '{}')",
        [],
    )
    .unwrap();
    l.expect_failure(&db, &[], 9, "");

    // The last 3 entries deleted: a valid-looking chain, caught only against
    // the checkpoint written outside the database.
    let (db, c) = l.copy("truncated");
    c.execute("DELETE FROM audit_log WHERE seq > ?1", [n - 3])
        .unwrap();
    let (ok, out) = l.verify(&db, &[]);
    assert!(
        !ok,
        "the orphaned traces are noticed even without a checkpoint: {out}"
    );
    c.execute(
        "DELETE FROM costs WHERE trace_id IN (SELECT id FROM traces ORDER BY id DESC LIMIT 3)",
        [],
    )
    .unwrap();
    c.execute(
        "DELETE FROM traces WHERE id IN (SELECT id FROM traces ORDER BY id DESC LIMIT 3)",
        [],
    )
    .unwrap();
    let (ok, out) = l.verify(&db, &[]);
    assert!(
        ok,
        "without an outside anchor a clean truncation verifies: {out}"
    );
    l.expect_failure(
        &db,
        &["--checkpoints", l.checkpoints().to_str().unwrap()],
        n - 2,
        "Truncated",
    );
    l.expect_failure(&db, &["--anchor", &head], n - 2, "Truncated");
}

/// Someone who can write the file but not read the key rewrites the whole
/// chain consistently (unkeyed): caught because the ledger is keyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_the_whole_chain_without_the_key_is_caught() {
    use tollgate::audit::encoding::{ChainKey, Entry, GENESIS, chain_hash};
    let l = ledger().await;
    let head_before = {
        let out = Command::new(BIN)
            .args(["audit", "head", "--db"])
            .arg(&l.gw.db)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (db, c) = l.copy("rewritten");
    c.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", [])
        .unwrap();
    let rows: Vec<(i64, i64, String, String, String, Vec<u8>)> = rows(
        &c,
        "SELECT seq, ts_ms, actor, action, subject, digest FROM audit_log ORDER BY seq",
    );
    let mut prev = GENESIS;
    for (seq, ts_ms, actor, action, subject, digest) in rows {
        let entry = Entry {
            seq,
            ts_ms,
            actor: &actor,
            action: &action,
            subject: &subject,
            digest: digest.try_into().unwrap(),
        };
        prev = chain_hash(&ChainKey::Unkeyed, &prev, &entry);
        c.execute(
            "UPDATE audit_log SET hash = ?1 WHERE seq = ?2",
            rusqlite::params![&prev[..], seq],
        )
        .unwrap();
    }
    // Keeping the key id: the first entry no longer matches the keyed hash.
    l.expect_failure(&db, &[], 1, "HashMismatch");
    // Also dropping the key id, to pass as an unkeyed ledger: verify with
    // the key refuses it, and so does an anchor published earlier.
    c.execute("DELETE FROM audit_meta WHERE key = 'key_id'", [])
        .unwrap();
    l.expect_failure(&db, &[], 0, "WrongKey");
    let out = Command::new(BIN)
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .args(["--anchor", &head_before])
        .env_remove("TOLLGATE_AUDIT_KEY")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.contains("AnchorMismatch"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_reload_is_an_audit_entry_covering_its_detail() {
    let dir = tempfile::tempdir().unwrap();
    let mock = tollgate_mock_upstream::MockUpstream::start().await;
    let config_path = dir.path().join("tollgate.toml");
    let db = dir.path().join("t.db");
    let base = config_toml(&mock.base_url(), &db, "");
    std::fs::write(&config_path, &base).unwrap();
    let app = tollgate::App::open(parse_config(&base), &test_env).unwrap();
    let state = app.state().clone();
    std::fs::write(
        &config_path,
        format!("{base}\n[prices.\"openai/gpt-4o-mini\"]\ninput = \"0.20\"\noutput = \"0.80\"\n"),
    )
    .unwrap();
    let priced = tollgate::app::reload_prices(&state, &config_path)
        .await
        .unwrap();
    assert!(priced > 50);
    let table = state.prices.current();
    assert_eq!(
        table.get("openai", "gpt-4o-mini").unwrap().0.base.input,
        20_000_000
    );
    // A broken file leaves the table in force.
    std::fs::write(
        &config_path,
        format!("{base}\n[prices.\"openai/gpt-4o-mini\"]\ninput = \"-1\"\noutput = \"0\"\n"),
    )
    .unwrap();
    assert!(
        tollgate::app::reload_prices(&state, &config_path)
            .await
            .is_err()
    );
    assert_eq!(
        state
            .prices
            .current()
            .get("openai", "gpt-4o-mini")
            .unwrap()
            .0
            .base
            .input,
        20_000_000
    );
    drop(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    app.serve(listener, async {}).await;

    let conn = Connection::open(&db).unwrap();
    let (action, detail): (String, String) = row(
        &conn,
        "SELECT action, detail FROM audit_log WHERE seq = 1",
        [],
    );
    assert_eq!(action, "prices.reload");
    assert!(detail.contains("\"input\":\"0.20\""), "{detail}");
    conn.execute(
        "UPDATE audit_log SET detail = replace(detail, '0.20', '0.02')",
        [],
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .env_remove("TOLLGATE_AUDIT_KEY")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.contains("FAILED at seq 1: DetailMismatch"), "{out}");
}
