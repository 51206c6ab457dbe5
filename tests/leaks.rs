//! Planted secrets — a client key, a provider key, the master key and the
//! admin credential — never appear in the database file (WAL included), the
//! log, any API response or error, or a trace; the CLI flows that handle
//! them work against a running gateway.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use tollgate::vault::crypto::MasterKey;
use tollgate_mock_upstream::MockUpstream;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const PROVIDER_KEY: &str = "sk-planted-provider-key-7Q2xW9";
const ADMIN: &str = "tga-planted-admin-credential-K3v8";

fn cli(args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("TOLLGATE_AUDIT_KEY")
        .env("TOLLGATE_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_never_leak() {
    let mock = MockUpstream::start_expecting(PROVIDER_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tollgate.db");
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        config_toml(&mock.base_url(), &db, "[auth]\nrequire_client_key = true\n"),
    )
    .unwrap();
    let master = MasterKey::generate();
    let master_b64 = master.to_base64();
    let cfg = config.to_str().unwrap();
    let envs = [
        ("TOLLGATE_MASTER_KEY", master_b64.as_str()),
        ("TOLLGATE_ADMIN_KEY", ADMIN),
    ];
    let mut logs = String::new();

    // Issue a client key and store the provider key (from stdin), offline.
    let (ok, out, err) = cli(
        &["keys", "create", "--name", "leaky", "--config", cfg],
        &envs,
        None,
    );
    assert!(ok, "{err}");
    logs.push_str(&err);
    let client_key = out.lines().last().unwrap().trim().to_string();
    assert!(client_key.starts_with("tg-"), "{out}");
    let (ok, out, err) = cli(
        &["providers", "set-key", "openai", "--config", cfg],
        &envs,
        Some(&format!("{PROVIDER_KEY}\n")),
    );
    assert!(ok, "{err}");
    assert!(
        !out.contains(PROVIDER_KEY) && out.contains("(…2xW9)"),
        "{out}"
    );
    logs.push_str(&err);
    let (ok, out, _) = cli(&["keys", "list", "--json", "--config", cfg], &envs, None);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["name"], "leaky");
    for field in [
        "id",
        "name",
        "prefix",
        "created_at",
        "expires_at",
        "revoked_at",
    ] {
        assert!(
            listed[0].get(field).is_some(),
            "keys list --json lacks {field}"
        );
    }
    let mut responses = out;

    // Serve, with debug logging, and use everything.
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg])
        .env("TOLLGATE_LOG", "debug")
        .env("TOLLGATE_MASTER_KEY", &master_b64)
        .env("TOLLGATE_ADMIN_KEY", ADMIN)
        .env_remove("TEST_UPSTREAM_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let base = format!(
        "http://{}",
        first.trim().strip_prefix("listening on http://").unwrap()
    );
    let mut stderr = child.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let c = client();
    let record = |resp: reqwest::Response| async {
        let mut text = format!("{} {:?}\n", resp.status(), resp.headers());
        text.push_str(&resp.text().await.unwrap());
        text
    };
    let bodies = [
        ("/v1/chat/completions", chat("gpt-4o-mini", false)),
        ("/v1/chat/completions", chat("gpt-4o-mini", true)),
        (
            "/v1/embeddings",
            serde_json::json!({"model": "text-embedding-3-small", "input": "x"}),
        ),
        ("/v1/chat/completions", chat("no-such-model", false)),
    ];
    for (path, body) in &bodies {
        let resp = c
            .post(format!("{base}{path}"))
            .bearer_auth(&client_key)
            .json(body)
            .send()
            .await
            .unwrap();
        responses.push_str(&record(resp).await);
        // Near misses of the real key, and a key presented to the admin API.
        let near = format!("{}x", &client_key[..client_key.len() - 1]);
        let resp = c
            .post(format!("{base}{path}"))
            .bearer_auth(&near)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        responses.push_str(&record(resp).await);
    }
    for path in ["/keys", "/provider-keys", "/prices", "/aliases", "/nothing"] {
        let resp = c
            .get(format!("{base}/admin/v1{path}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        responses.push_str(&record(resp).await);
        let resp = c
            .get(format!("{base}/admin/v1{path}"))
            .bearer_auth(&client_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        responses.push_str(&record(resp).await);
    }
    let resp = c
        .post(format!("{base}/admin/v1/vault/rotate"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"new_master_key": "not base64!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    responses.push_str(&record(resp).await);

    // Rotate from the CLI while serving: the gateway keeps working.
    let new_master = MasterKey::generate();
    let new_file = dir.path().join("new.key");
    std::fs::write(&new_file, new_master.to_base64()).unwrap();
    let (ok, out, err) = cli(
        &[
            "vault",
            "rotate",
            "--new-key-file",
            new_file.to_str().unwrap(),
            "--config",
            cfg,
        ],
        &envs,
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains(new_master.id()), "{out}");
    logs.push_str(&err);
    let resp = c
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&client_key)
        .json(&message("claude-haiku-4-5", false))
        .send()
        .await
        .unwrap();
    responses.push_str(&record(resp).await);
    for _ in 0..3 {
        let resp = c
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&client_key)
            .json(&chat("gpt-4o-mini", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "rotation broke the running gateway");
        responses.push_str(&record(resp).await);
    }

    // SIGKILL once everything is committed: the WAL stays on disk to be
    // searched too.
    // 8 keyed requests; of the 4 near misses only the first is traced
    // (unauthenticated refusals are sampled per address, docs/AUDIT.md).
    assert_eq!(wait_for_traces(&db, 9).await, 9, "not committed");
    child.kill().unwrap();
    child.wait().unwrap();
    logs.push_str(&log_reader.join().unwrap());
    let mut disk = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(&p) {
            disk.extend_from_slice(&bytes);
        }
    }
    assert!(
        logs.contains("DEBUG") || logs.contains("INFO"),
        "logging was on"
    );
    let raw_master = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&master_b64)
            .unwrap()
    };
    for (what, secret) in [
        ("client key", client_key.as_bytes()),
        ("client key body", &client_key.as_bytes()[3..]),
        ("provider key", PROVIDER_KEY.as_bytes()),
        ("master key (base64)", master_b64.as_bytes()),
        ("master key (bytes)", raw_master.as_slice()),
        ("admin credential", ADMIN.as_bytes()),
    ] {
        let found = |hay: &[u8]| hay.windows(secret.len()).any(|w| w == secret);
        assert!(!found(&disk), "{what} is in the database files");
        assert!(!found(logs.as_bytes()), "{what} is in the log");
        assert!(!found(responses.as_bytes()), "{what} is in an API response");
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = value(&conn, "SELECT count(*) FROM traces", []);
    assert_eq!(n, 9, "one trace per keyed request, one sampled refusal");
}

/// Issue 8, finding 11: the database, its WAL and shared-memory files and
/// the audit checkpoint file are created readable by their owner only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_and_checkpoint_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let mut gw = Gateway::start().await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.wait_traces(1).await;
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", gw.db.display()));
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    gw.stop().await;
    let checkpoints = std::path::PathBuf::from(format!("{}.checkpoints", gw.db.display()));
    assert_eq!(mode(&checkpoints), 0o600);
    assert_eq!(mode(&gw.db), 0o600);
}
