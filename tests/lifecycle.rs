//! The real `tollgate` binary: start-up, shutdown on SIGTERM, restarts, and
//! databases it must refuse.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tollgate_mock_upstream::MockUpstream;

/// A mock upstream, and a temp dir holding a config that points at it.
async fn mock_and_config() -> (MockUpstream, tempfile::TempDir, std::path::PathBuf) {
    let mock = MockUpstream::start_expecting(UPSTREAM_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.toml");
    std::fs::write(
        &path,
        config_toml(&mock.base_url(), &dir.path().join("tollgate.db"), ""),
    )
    .unwrap();
    (mock, dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_loses_no_trace() {
    let (_mock, dir, config) = mock_and_config().await;
    let served = serve(&["--config", config.to_str().unwrap()], dir.path(), &[]);
    let base = format!("http://{}", served.addr);

    const QUICK: usize = 30;
    const SLOW: usize = 6;
    for i in 0..QUICK {
        let (path, body) = match i % 3 {
            0 => ("/v1/chat/completions", chat("gpt-4o-mini", i % 2 == 0)),
            1 => ("/v1/messages", message("claude-haiku-4-5", i % 2 == 0)),
            _ => (
                "/v1/embeddings",
                serde_json::json!({"model": "text-embedding-3-small", "input": "x"}),
            ),
        };
        let resp = client()
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    // Streams still running when the signal arrives must be allowed to end.
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let resp = client()
            .post(format!("{base}/v1/chat/completions"))
            .header("x-mock-chunk-delay-ms", "100")
            .header("x-mock-words", "8")
            .json(&chat("gpt-4o-mini", true))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        slow.push(tokio::spawn(resp.bytes()));
    }
    sigterm(&served.child);
    for s in slow {
        let text = String::from_utf8(s.await.unwrap().unwrap().to_vec()).unwrap();
        assert!(
            text.ends_with("data: [DONE]\n\n"),
            "stream cut by shutdown: {text}"
        );
    }
    let (code, stderr) = tokio::task::spawn_blocking(move || wait_exit(served.child))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let db = rusqlite::Connection::open(dir.path().join("tollgate.db")).unwrap();
    assert_eq!(trace_count(&db), (QUICK + SLOW) as i64);
    let errors: i64 = value(
        &db,
        "SELECT count(*) FROM traces WHERE error_kind IS NOT NULL",
        [],
    );
    assert_eq!(errors, 0);
    assert!(
        !stderr.contains(UPSTREAM_KEY),
        "the provider key reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_an_existing_database_keeps_and_adds_records() {
    let (_mock, dir, config) = mock_and_config().await;
    for round in 1..=2 {
        let served = serve(&["--config", config.to_str().unwrap()], dir.path(), &[]);
        for _ in 0..3 {
            let resp = client()
                .post(format!("http://{}/v1/chat/completions", served.addr))
                .json(&chat("gpt-4o-mini", false))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
        sigterm(&served.child);
        let (code, stderr) = tokio::task::spawn_blocking(move || wait_exit(served.child))
            .await
            .unwrap();
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            stderr.contains("applied migrations"),
            round == 1,
            "{stderr}"
        );
        let db = rusqlite::Connection::open(dir.path().join("tollgate.db")).unwrap();
        assert_eq!(trace_count(&db), 3 * round);
    }
}

#[test]
fn serve_runs_on_embedded_defaults_without_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&[], dir.path(), &[("TOLLGATE_LISTEN", "127.0.0.1:0")]);
    assert!(served.addr.starts_with("127.0.0.1:"));
    let health = reqwest::blocking_get(&format!("http://{}/healthz", served.addr));
    assert_eq!(health, 200);
    assert!(
        dir.path().join("tollgate.db").exists(),
        "default database ./tollgate.db"
    );
    sigterm(&served.child);
    assert_eq!(wait_exit(served.child).0, 0);
}

/// A supervisor may send SIGTERM the moment it reads "listening on": the
/// handlers are installed before that line, so the process drains and exits
/// 0 rather than dying of the signal. Before they were installed ahead of
/// the line this was a race (it showed as exit -1 in tests/prices_cli.rs
/// under a loaded suite); here it is tried five times in a row.
#[test]
fn sigterm_right_after_the_listening_line_drains_and_exits_0() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let served = serve(&[], dir.path(), &[("TOLLGATE_LISTEN", "127.0.0.1:0")]);
        sigterm(&served.child);
        let (code, err) = wait_exit(served.child);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("shutdown complete"), "{err}");
    }
}

/// A tiny blocking GET so the sync test needs no runtime.
mod reqwest {
    pub fn blocking_get(url: &str) -> u16 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().status().as_u16() })
    }
}

/// Runs a command that must exit by itself; a `serve` that would start after
/// all is stopped by a 20 s timeout and reported as such.
fn run(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new("timeout")
        .arg("20")
        .arg(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_DB")
        .env_remove("TOLLGATE_LISTEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_newer_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("future.db");
    {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        db.execute_batch("CREATE TABLE from_the_future (x); PRAGMA user_version = 999;")
            .unwrap();
    }
    let digest = |p: &std::path::Path| blake3::hash(&std::fs::read(p).unwrap());
    let before = digest(&db_path);
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0", "--db", "future.db"],
        vec!["migrate", "--db", "future.db"],
    ] {
        let (code, _, stderr) = run(&args, dir.path());
        assert_eq!(code, 4, "{args:?}: {stderr}");
        assert!(
            stderr.contains("schema is version 999, newer than this tollgate supports"),
            "{stderr}"
        );
    }
    assert_eq!(
        digest(&db_path),
        before,
        "the refused database was modified"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.db"), vec![0x42u8; 8192]).unwrap();
    let (code, _, stderr) = run(
        &["serve", "--listen", "127.0.0.1:0", "--db", "junk.db"],
        dir.path(),
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("junk.db") && stderr.contains("not a database"),
        "{stderr}"
    );
}

#[test]
fn migrate_creates_the_schema_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(&["migrate", "--db", "m.db"], dir.path());
    assert_eq!(code, 0, "{err}");
    let version = tollgate::store::SCHEMA_VERSION;
    assert!(
        out.contains(&format!("schema version {version} ({version} migration")),
        "{out}"
    );
    let (code, out, _) = run(&["migrate", "--db", "m.db"], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("0 migrations applied"), "{out}");
    let db = rusqlite::Connection::open(dir.path().join("m.db")).unwrap();
    let mode: String = value(&db, "PRAGMA journal_mode", []);
    assert_eq!(mode, "wal");
    assert_eq!(trace_count(&db), 0);
}

#[test]
fn bad_config_and_version() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nlisten = \"nowhere\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["serve", "--config", "bad.toml"], dir.path());
    assert_eq!(code, 3);
    assert!(err.contains("server.listen"), "{err}");
    std::fs::write(
        dir.path().join("typo.toml"),
        "[server]\nlisen = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["serve", "--config", "typo.toml"], dir.path());
    assert_eq!(code, 3);
    assert!(err.contains("lisen"), "{err}");
    let (code, out, _) = run(&["--version"], dir.path());
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("tollgate {}", env!("CARGO_PKG_VERSION"))
    );
}

/// SIGKILL cannot drain: what was committed survives, the file stays
/// consistent and its ledger verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_a_consistent_file_and_a_valid_ledger() {
    let (_mock, dir, config) = mock_and_config().await;
    let mut served = serve(&["--config", config.to_str().unwrap()], dir.path(), &[]);
    for _ in 0..25 {
        let resp = client()
            .post(format!("http://{}/v1/chat/completions", served.addr))
            .json(&chat("gpt-4o-mini", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let db = dir.path().join("tollgate.db");
    assert_eq!(wait_for_traces(&db, 25).await, 25, "not committed");
    signal(&served.child, "-KILL");
    served.child.wait().unwrap();

    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = value(&conn, "PRAGMA integrity_check", []);
    assert_eq!(check, "ok");
    assert_eq!(trace_count(&conn), 25);
    drop(conn);
    let (code, out, err) = run(
        &["audit", "verify", "--db", db.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: 25 entries checked"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_prices_without_a_restart() {
    let (_mock, dir, config) = mock_and_config().await;
    let served = serve(&["--config", config.to_str().unwrap()], dir.path(), &[]);
    let base = format!("http://{}", served.addr);
    let ask = || {
        client()
            .post(format!("{base}/v1/chat/completions"))
            .header("x-mock-usage", "prompt=1000000,completion=0")
            .json(&chat("gpt-4o-mini", false))
            .send()
    };
    assert_eq!(ask().await.unwrap().status(), 200);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[prices.\"openai/gpt-4o-mini\"]\ninput = \"0.25\"\noutput = \"1\"\n");
    std::fs::write(&config, text).unwrap();
    signal(&served.child, "-HUP");
    let db = dir.path().join("tollgate.db");
    let mut reloaded = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let conn = rusqlite::Connection::open(&db).unwrap();
        let n: i64 = value(
            &conn,
            "SELECT count(*) FROM audit_log WHERE action = 'prices.reload'",
            [],
        );
        if n == 1 {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "no prices.reload audit entry after SIGHUP");
    assert_eq!(ask().await.unwrap().status(), 200);
    sigterm(&served.child);
    let (code, stderr) = tokio::task::spawn_blocking(move || wait_exit(served.child))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    // 1,000,000 input tokens: $0.15 before the reload, $0.25 after.
    let costs: Vec<i64> = column(&conn, "SELECT cost_uc FROM costs ORDER BY trace_id");
    assert_eq!(costs, vec![15_000_000, 25_000_000]);
}

/// Without TOLLGATE_ADMIN_KEY, the first `serve` creates the admin
/// credential, shows it once, and stores only its hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_creates_and_shows_the_admin_credential_once() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--db", "t.db"])
            .current_dir(dir.path())
            .env_remove("TOLLGATE_ADMIN_KEY")
            .env_remove("TOLLGATE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap()
            .to_string();
        (child, out, addr)
    };
    let (child, mut out, addr) = start();
    let mut notice = String::new();
    out.read_line(&mut notice).unwrap();
    assert!(notice.contains("shown only now"), "{notice}");
    let mut admin = String::new();
    out.read_line(&mut admin).unwrap();
    let admin = admin.trim().to_string();
    assert!(admin.starts_with("tga-"), "{admin}");
    let list = |addr: String, cred: String| async move {
        client()
            .get(format!("http://{addr}/admin/v1/keys"))
            .bearer_auth(cred)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(list(addr.clone(), admin.clone()).await, 200);
    sigterm(&child);
    assert_eq!(wait_exit(child).0, 0);

    let db = std::fs::read(dir.path().join("t.db")).unwrap();
    assert!(
        !db.windows(admin.len()).any(|w| w == admin.as_bytes()),
        "plaintext admin credential on disk"
    );
    // The second run shows nothing and accepts the stored credential.
    let (child, mut out, addr) = start();
    assert_eq!(list(addr.clone(), admin.clone()).await, 200);
    assert_eq!(list(addr, "tga-wrong".into()).await, 401);
    sigterm(&child);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(!rest.contains("tga-"), "shown again: {rest}");
    assert_eq!(wait_exit(child).0, 0);
}

/// Issue 8, finding 13: a model name carrying a newline and a fake log line
/// is logged escaped, so it cannot forge a line in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_cannot_be_forged_through_a_model_name() {
    let (_mock, dir, config) = mock_and_config().await;
    let served = serve(
        &["--config", config.to_str().unwrap()],
        dir.path(),
        &[("TOLLGATE_LOG", "info")],
    );
    let forged = "1999-01-01T00:00:00.000000Z  WARN tollgate: FORGED admin login";
    let resp = client()
        .post(format!("http://{}/v1/chat/completions", served.addr))
        .json(&chat(&format!("openai/unpriced-x\n{forged}"), false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for_traces(&dir.path().join("tollgate.db"), 1).await;
    sigterm(&served.child);
    let (code, err) = wait_exit(served.child);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("unpriced-x\\n1999-01-01"),
        "the unpriced model is logged, escaped: {err}"
    );
    assert!(
        !err.lines().any(|l| l.starts_with("1999-01-01")),
        "a forged log line: {err}"
    );
}

/// Issue 8, finding 17: a short TOLLGATE_ADMIN_KEY is a configuration
/// error at start (exit 3), named in the message.
#[test]
fn a_short_admin_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--db", "t.db"])
        .current_dir(dir.path())
        .env_remove("TOLLGATE_CONFIG")
        .env("TOLLGATE_ADMIN_KEY", "tga-admin-123")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, err) = wait_exit(child);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("TOLLGATE_ADMIN_KEY is 13 characters long; it must have at least 32"),
        "{err}"
    );
    assert!(!err.contains("tga-admin-123"), "the key is echoed: {err}");
}

/// Issue 8, finding 17: names stored before control characters were
/// refused are printed escaped by `tollgate keys list`, never as raw
/// terminal escape sequences.
#[test]
fn keys_list_escapes_control_characters_in_stored_names() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--db")
            .arg(&db)
            .env_remove("TOLLGATE_CONFIG")
            .env_remove("TOLLGATE_AUDIT_KEY")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let refused = Command::new(BIN)
        .args(["keys", "create", "--name", "bad\u{1b}[2J", "--db"])
        .arg(&db)
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_AUDIT_KEY")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    run(&["keys", "create", "--name", "placeholder"]);
    let name = "ops\u{1b}]0;pwned\u{7}\u{1b}[2J";
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE client_keys SET name = ?1", [name])
        .unwrap();
    let listed = run(&["keys", "list"]);
    assert!(
        !listed.contains('\u{1b}') && !listed.contains('\u{7}'),
        "{listed:?}"
    );
    assert!(
        listed.contains(r"ops\u{1b}]0;pwned\u{7}\u{1b}[2J"),
        "{listed}"
    );
}
