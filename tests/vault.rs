//! The provider-key vault: keys stored sealed, used for upstream calls,
//! set aside on a 401 confirmed by a probe, rotated live, and refused loudly when the master key
//! is wrong or a ciphertext was tampered with or moved.

mod common;

use common::*;
use serde_json::json;
use std::path::PathBuf;
use tollgate::vault::crypto::MasterKey;
use tollgate_mock_upstream::MockUpstream;

const VAULT_KEY: &str = "sk-vault-stored-key-a1b2c3d4e5f6";

struct Setup {
    _keys: tempfile::TempDir,
    master_file: PathBuf,
    master_b64: String,
}

fn master() -> Setup {
    let keys = tempfile::tempdir().unwrap();
    let master_file = keys.path().join("master.key");
    let master_b64 = MasterKey::generate().to_base64();
    std::fs::write(&master_file, &master_b64).unwrap();
    Setup {
        _keys: keys,
        master_file,
        master_b64,
    }
}

fn vault_extra(file: &std::path::Path) -> String {
    format!("[vault]\nmaster_key_file = \"{}\"\n", file.display())
}

/// A gateway whose mock accepts only VAULT_KEY (the environment holds
/// another key), so a success proves the stored key was used.
async fn gateway(setup: &Setup) -> Gateway {
    let mock = MockUpstream::start_expecting(VAULT_KEY).await;
    let base = mock.base_url();
    Gateway::start_on(mock, &base, &vault_extra(&setup.master_file)).await
}

async fn ask(gw: &Gateway) -> u16 {
    client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_keys_are_used_sealed_and_a_refused_key_is_set_aside() {
    let setup = master();
    let mut gw = gateway(&setup).await;
    assert_eq!(
        ask(&gw).await,
        401,
        "the environment key is not the upstream's"
    );
    let (s, bad) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/provider-keys",
        Some(json!({"provider": "openai", "key": "sk-revoked-upstream-key"})),
    )
    .await;
    assert_eq!(s, 201, "{bad}");
    let (s, good) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/provider-keys",
        Some(json!({"provider": "openai", "key": VAULT_KEY})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(good["last4"], "e5f6");
    assert!(!good.to_string().contains(VAULT_KEY));
    for _ in 0..6 {
        assert_eq!(ask(&gw).await, 200);
    }
    // The refusal is confirmed by a probe in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let list = loop {
        let (_, list) = admin_call(&gw, reqwest::Method::GET, "/provider-keys", None).await;
        let bad_row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == bad["id"])
            .unwrap()
            .clone();
        if bad_row["disabled_at"].is_i64() || std::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let bad_row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == bad["id"])
        .unwrap();
    assert!(bad_row["disabled_at"].is_i64(), "{list}");
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == good["id"])
            .unwrap()["disabled_at"]
            .is_null()
    );
    let (s, _) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/provider-keys",
        Some(json!({"provider": "nope", "key": "x"})),
    )
    .await;
    assert_eq!(s, 400);
    gw.stop().await;

    let db = gw.db();
    let blobs: Vec<Vec<u8>> = column(&db, "SELECT ciphertext FROM provider_keys");
    assert_eq!(blobs.len(), 2);
    let file = std::fs::read(&gw.db).unwrap();
    assert!(
        !file
            .windows(VAULT_KEY.len())
            .any(|w| w == VAULT_KEY.as_bytes()),
        "plaintext provider key on disk"
    );
    let disabled: Vec<String> = column(
        &db,
        "SELECT detail FROM audit_log WHERE action = 'provider_key.disable'",
    );
    assert_eq!(disabled.len(), 1);
    assert!(
        disabled[0].contains("401 to a request and to a GET /models probe"),
        "{}",
        disabled[0]
    );
}

/// Finding 8: a 401 the request itself caused (here forced by the client)
/// does not disable the stored key: a probe of the key is accepted, so the
/// next request uses it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_caused_by_the_request_does_not_set_the_stored_key_aside() {
    let setup = master();
    let mut gw = gateway(&setup).await;
    let (s, _) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/provider-keys",
        Some(json!({"provider": "openai", "key": VAULT_KEY})),
    )
    .await;
    assert_eq!(s, 201);
    let forced = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-status", "401")
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), 401);
    // Let the probe (if any) run and its outcome be committed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !gw
        .mock
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path == "/v1/models")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        ask(&gw).await,
        200,
        "the stored key was set aside after a client-caused 401"
    );
    let probe = gw
        .mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/models")
        .expect("the refused key was probed");
    assert_eq!(
        probe.header("authorization"),
        Some(format!("Bearer {VAULT_KEY}").as_str())
    );
    gw.stop().await;
    let disabled: i64 = value(
        &gw.db(),
        "SELECT count(*) FROM audit_log WHERE action = 'provider_key.disable'",
        [],
    );
    assert_eq!(disabled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_retires_the_old_master() {
    let setup = master();
    let mut gw = gateway(&setup).await;
    let (s, _) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/provider-keys",
        Some(json!({"provider": "openai", "key": VAULT_KEY})),
    )
    .await;
    assert_eq!(s, 201);
    let url = gw.url("/v1/chat/completions");
    let load: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..25 {
                    let resp = client()
                        .post(&url)
                        .header("x-mock-words", "3")
                        .json(&chat("gpt-4o-mini", true))
                        .send()
                        .await
                        .unwrap();
                    statuses.push(resp.status().as_u16());
                    assert!(resp.text().await.unwrap().ends_with("[DONE]\n\n"));
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let new_master = MasterKey::generate();
    let (s, rotated) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/vault/rotate",
        Some(json!({"new_master_key": new_master.to_base64()})),
    )
    .await;
    assert_eq!(s, 200, "{rotated}");
    assert_eq!(rotated["rotated"], 1);
    assert_eq!(rotated["master_key_id"], new_master.id());
    for task in load {
        assert!(task.await.unwrap().iter().all(|s| *s == 200));
    }
    // Keys added after the rotation are sealed with the new master key.
    let (s, added) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/provider-keys",
        Some(json!({"provider": "anthropic", "key": "sk-ant-later"})),
    )
    .await;
    assert_eq!(
        (s, added["master_key_id"].as_str()),
        (201, Some(new_master.id()))
    );
    gw.stop().await;

    let config = parse_config(&config_toml(
        "http://127.0.0.1:9/v1",
        &gw.db,
        &vault_extra(&setup.master_file),
    ));
    let err = tollgate::App::open(config.clone(), &test_env)
        .err()
        .expect("the old master key no longer opens the vault");
    let msg = err.to_string();
    assert!(
        msg.contains("is not the one that sealed") && !msg.contains(&setup.master_b64),
        "{msg}"
    );
    std::fs::write(&setup.master_file, new_master.to_base64()).unwrap();
    assert!(tollgate::App::open(config, &test_env).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_or_a_tampered_or_moved_ciphertext_refuses_to_start() {
    let setup = master();
    let mut gw = gateway(&setup).await;
    for (provider, key) in [("openai", VAULT_KEY), ("anthropic", "sk-ant-second-key")] {
        let (s, _) = admin_call(
            &gw,
            reqwest::Method::POST,
            "/provider-keys",
            Some(json!({"provider": provider, "key": key})),
        )
        .await;
        assert_eq!(s, 201);
    }
    gw.stop().await;
    let config = |file: &std::path::Path, db: &std::path::Path| {
        parse_config(&config_toml(
            "http://127.0.0.1:9/v1",
            db,
            &vault_extra(file),
        ))
    };
    let digest = |p: &std::path::Path| blake3::hash(&std::fs::read(p).unwrap());

    // No master key at all.
    let none = tollgate::App::open(
        parse_config(&config_toml("http://127.0.0.1:9/v1", &gw.db, "")),
        &test_env,
    )
    .err()
    .unwrap();
    assert!(
        none.to_string().contains("no master key is configured"),
        "{none}"
    );

    // A wrong master key: refused, and the file is left as it was.
    let before = digest(&gw.db);
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), MasterKey::generate().to_base64()).unwrap();
    let err = tollgate::App::open(config(wrong.path(), &gw.db), &test_env)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("is not the one that sealed"),
        "{err}"
    );
    assert_eq!(digest(&gw.db), before);

    // An altered ciphertext (its bytes rotated by one).
    let tampered = gw.dir.path().join("tampered.db");
    gw.db()
        .execute("VACUUM INTO ?1", [tampered.to_str().unwrap()])
        .unwrap();
    rusqlite::Connection::open(&tampered)
        .unwrap()
        .execute(
            "UPDATE provider_keys SET ciphertext = CAST(substr(ciphertext, 2) || substr(ciphertext, 1, 1) AS BLOB) WHERE provider = 'openai'",
            [],
        )
        .unwrap();
    let err = tollgate::App::open(config(&setup.master_file, &tampered), &test_env)
        .err()
        .unwrap();
    assert!(err.to_string().contains("failed to decrypt"), "{err}");

    // A ciphertext copied onto another row.
    let moved = gw.dir.path().join("moved.db");
    gw.db()
        .execute("VACUUM INTO ?1", [moved.to_str().unwrap()])
        .unwrap();
    rusqlite::Connection::open(&moved)
        .unwrap()
        .execute_batch(
            "UPDATE provider_keys SET (nonce, ciphertext) =
               (SELECT nonce, ciphertext FROM provider_keys WHERE provider = 'openai')
             WHERE provider = 'anthropic';",
        )
        .unwrap();
    let err = tollgate::App::open(config(&setup.master_file, &moved), &test_env)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("failed to decrypt") && err.to_string().contains("anthropic"),
        "{err}"
    );

    // The right key still opens the untouched file.
    assert!(tollgate::App::open(config(&setup.master_file, &gw.db), &test_env).is_ok());
}
