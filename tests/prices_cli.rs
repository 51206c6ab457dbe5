//! `tollgate prices import|list` and the built-in table's staleness warning,
//! through the real binary on a real database file (issue 14, "keeping
//! prices current").
//!
//! Tests named `..._new_fields` need the price-spec fields beyond
//! input/output/cached_input/cache_write (1-hour cache writes, tiers,
//! service tiers, audio, web search), which the ledger's parser reads.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tollgate_mock_upstream::MockUpstream;

/// LiteLLM's shape: per-token USD as JSON numbers in exponent notation,
/// providers tollgate does not serve, entries not priced per token.
const LITELLM: &str = r#"{
    "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "one of https://docs.litellm.ai/docs/providers"},
    "gpt-4o": {"litellm_provider": "openai", "mode": "chat",
        "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
        "cache_read_input_token_cost": 1.25e-06,
        "input_cost_per_token_priority": 4.25e-06, "output_cost_per_token_priority": 1.7e-05,
        "cache_read_input_token_cost_priority": 2.125e-06},
    "gpt-4o-mini": {"litellm_provider": "openai", "mode": "chat",
        "input_cost_per_token": 1.5E-7, "output_cost_per_token": 5e-07,
        "cache_read_input_token_cost": 7.5e-08,
        "input_cost_per_token_priority": 2.5e-07, "output_cost_per_token_priority": 1e-06,
        "cache_read_input_token_cost_priority": 1.25e-07},
    "gpt-import-test": {"litellm_provider": "openai", "mode": "chat",
        "input_cost_per_token": 1.1e-06, "output_cost_per_token": 4.4e-06,
        "output_cost_per_reasoning_token": 4.4e-06},
    "text-embedding-import-test": {"litellm_provider": "openai", "mode": "embedding",
        "input_cost_per_token": 1.3e-08},
    "whisper-1": {"litellm_provider": "openai", "mode": "audio_transcription",
        "input_cost_per_second": 0.0001},
    "bedrock/claude-x": {"litellm_provider": "bedrock", "input_cost_per_token": 3e-06,
        "output_cost_per_token": 1.5e-05},
    "gemini-x": {"litellm_provider": "gemini", "input_cost_per_token": 1e-18}
}"#;

/// Runs the binary to completion: (exit code, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("timeout")
        .arg("20")
        .arg(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_DB")
        .env_remove("TOLLGATE_AUDIT_KEY")
        .env("TEST_UPSTREAM_KEY", UPSTREAM_KEY)
        .env("TOLLGATE_ADMIN_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(dir, args);
    assert_eq!(code, 0, "{args:?}\nstdout: {out}\nstderr: {err}");
    out
}

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("t.db")).unwrap()
}

fn overrides(dir: &Path) -> Vec<(String, String, String, String, Option<String>)> {
    rows(
        &db(dir),
        "SELECT provider, model, input, output, cached_input FROM price_overrides ORDER BY provider, model",
    )
}

fn imports(dir: &Path) -> Vec<String> {
    column(
        &db(dir),
        "SELECT detail FROM audit_log WHERE action = 'prices.import' ORDER BY seq",
    )
}

fn listed(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["prices", "list", "--format", "json", "--db", "t.db"];
    args.extend_from_slice(extra);
    let doc: Value = serde_json::from_str(&ok(dir, &args)).unwrap();
    doc["prices"].as_array().unwrap().clone()
}

fn find<'a>(list: &'a [Value], provider: &str, model: &str) -> &'a Value {
    list.iter()
        .find(|p| p["provider"] == provider && p["model"] == model)
        .unwrap_or_else(|| panic!("{provider}/{model} not listed"))
}

#[test]
fn a_litellm_file_is_imported_exactly_as_one_audited_change_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("litellm.json"), LITELLM).unwrap();

    // Dry run: the diff, and nothing written (no database even created).
    let dry = ok(
        d,
        &[
            "prices",
            "import",
            "litellm.json",
            "--db",
            "t.db",
            "--dry-run",
        ],
    );
    assert!(
        dry.contains("litellm.json (litellm): 2 added, 1 changed, 1 unchanged"),
        "{dry}"
    );
    assert!(dry.contains("dry run: nothing written"), "{dry}");
    assert!(!d.join("t.db").exists(), "a dry run created the database");

    let out = ok(d, &["prices", "import", "litellm.json", "--db", "t.db"]);
    assert!(out.contains("2 added, 1 changed, 1 unchanged"), "{out}");
    assert!(
        out.contains("+ openai/gpt-import-test  input=1.1 output=4.4"),
        "{out}"
    );
    assert!(
        out.contains("+ openai/text-embedding-import-test  input=0.013 output=0"),
        "{out}"
    );
    assert!(
        out.contains("~ openai/gpt-4o-mini  output 0.6 → 0.5"),
        "{out}"
    );
    assert!(out.contains("= openai/gpt-4o\n"), "{out}");
    assert!(
        out.contains("skipped 2 entries of providers tollgate does not serve: bedrock 1, gemini 1"),
        "{out}"
    );
    assert!(
        out.contains("whisper-1: mode \"audio_transcription\" is not proxied"),
        "{out}"
    );
    assert!(out.contains("output_cost_per_reasoning_token (1)"), "{out}");
    assert!(out.contains("audit entry"), "{out}");

    // Exact decimal strings per million tokens, never float noise.
    assert_eq!(
        overrides(d),
        vec![
            (
                "openai".into(),
                "gpt-4o-mini".into(),
                "0.15".into(),
                "0.5".into(),
                Some("0.075".into())
            ),
            (
                "openai".into(),
                "gpt-import-test".into(),
                "1.1".into(),
                "4.4".into(),
                None
            ),
            (
                "openai".into(),
                "text-embedding-import-test".into(),
                "0.013".into(),
                "0".into(),
                None
            ),
        ]
    );
    let audit = imports(d);
    assert_eq!(audit.len(), 1, "one audit entry for the whole import");
    let detail: Value = serde_json::from_str(&audit[0]).unwrap();
    assert_eq!(detail["format"], "litellm");
    assert_eq!(
        detail["added"],
        serde_json::json!([
            "openai/gpt-import-test",
            "openai/text-embedding-import-test"
        ])
    );
    assert_eq!(detail["changed"], serde_json::json!(["openai/gpt-4o-mini"]));
    assert_eq!(detail["unchanged"], 1);
    assert_eq!(detail["prices"]["openai/gpt-4o-mini"]["output"], "0.5");
    // The entry is part of a chain that verifies.
    let verified = ok(d, &["audit", "verify", "--db", "t.db"]);
    assert!(verified.starts_with("ok: 1 entries checked"), "{verified}");

    // Importing the same file again changes nothing and records nothing.
    let again = ok(d, &["prices", "import", "litellm.json", "--db", "t.db"]);
    assert!(again.contains("0 added, 0 changed, 4 unchanged"), "{again}");
    assert!(again.contains("nothing to write"), "{again}");
    assert_eq!(imports(d).len(), 1);
}

#[test]
fn a_file_with_any_bad_price_writes_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["migrate", "--db", "t.db"]);
    // One good entry, one finer than a micro-cent per 1M tokens.
    std::fs::write(
        d.join("bad.json"),
        r#"{"gpt-good": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
            "gpt-bad": {"litellm_provider": "openai", "input_cost_per_token": 1.5e-15, "output_cost_per_token": 2e-06}}"#,
    )
    .unwrap();
    let (code, out, err) = run(d, &["prices", "import", "bad.json", "--db", "t.db"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("bad.json: 1 problem(s), nothing written"),
        "{err}"
    );
    assert!(
        err.contains("gpt-bad: input_cost_per_token: 1.5e-15 is 0.0000000015 USD, finer than 8 decimal places"),
        "{err}"
    );
    // TOML: a malformed price and a key without a provider.
    std::fs::write(
        d.join("bad.toml"),
        "[prices.\"openai/gpt-good\"]\ninput = \"1\"\noutput = \"2\"\n\
         [prices.\"openai/gpt-worse\"]\ninput = \"1e-3\"\noutput = \"2\"\n\
         [prices.\"gpt-nameless\"]\ninput = \"1\"\noutput = \"2\"\n",
    )
    .unwrap();
    let (code, _, err) = run(d, &["prices", "import", "bad.toml", "--db", "t.db"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("2 problem(s), nothing written"), "{err}");
    assert!(err.contains("exponent notation"), "{err}");
    assert!(
        err.contains("\"gpt-nameless\": key must be \"provider/model\""),
        "{err}"
    );
    let (code, _, err) = run(d, &["prices", "import", "missing.toml", "--db", "t.db"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read missing.toml"), "{err}");

    assert!(overrides(d).is_empty(), "something was written");
    let entries: i64 = value(&db(d), "SELECT count(*) FROM audit_log", []);
    assert_eq!(entries, 0);
}

#[test]
fn prices_list_shows_every_layer_and_where_each_price_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("tollgate.toml"),
        "[store]\npath = \"t.db\"\n[prices.\"openai/gpt-4o\"]\ninput = \"2\"\noutput = \"9\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("mine.toml"),
        "[prices.\"openai/gpt-4o-mini\"]\ninput = \"0.20\"\noutput = \"0.80\"\n\
         [[price]]\nprovider = \"anthropic\"\nmodel = \"claude-import-test\"\ninput = \"2\"\noutput = \"10\"\ncache_write = \"2.50\"\n",
    )
    .unwrap();
    let cfg = ["--config", "tollgate.toml"];
    // Before any database exists: built-in and config.
    let before = listed(d, &cfg);
    assert_eq!(find(&before, "openai", "gpt-4o")["source"], "config");
    assert_eq!(find(&before, "openai", "gpt-4o-mini")["source"], "builtin");

    let out = ok(
        d,
        &["prices", "import", "mine.toml", "--config", "tollgate.toml"],
    );
    assert!(
        out.contains("mine.toml (toml): 1 added, 1 changed, 0 unchanged"),
        "{out}"
    );
    assert!(
        out.contains(
            "~ openai/gpt-4o-mini  input 0.15 → 0.2; output 0.6 → 0.8; -cached_input (was 0.075)"
        ),
        "{out}"
    );

    let after = listed(d, &cfg);
    let mini = find(&after, "openai", "gpt-4o-mini");
    assert_eq!(
        (
            mini["source"].as_str(),
            mini["input"].as_str(),
            mini["output"].as_str()
        ),
        (Some("database"), Some("0.20"), Some("0.80"))
    );
    assert_eq!(
        find(&after, "anthropic", "claude-import-test")["cache_write"],
        "2.50"
    );
    assert_eq!(find(&after, "openai", "gpt-4o")["source"], "config");
    let haiku = find(&after, "anthropic", "claude-haiku-4-5");
    assert_eq!(
        (haiku["source"].as_str(), haiku["input"].as_str()),
        (Some("builtin"), Some("1"))
    );

    let table = ok(
        d,
        &[
            "prices",
            "list",
            "--config",
            "tollgate.toml",
            "--model",
            "gpt-4o-mini",
        ],
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("built-in prices as of 20"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[2].split_whitespace().eq([
            "openai",
            "gpt-4o-mini",
            "database",
            "0.2",
            "0.8",
            "-",
            "-"
        ]),
        "{table}"
    );
    let (code, _, err) = run(
        d,
        &[
            "prices",
            "list",
            "--config",
            "tollgate.toml",
            "--model",
            "gpt-nope",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("no price in force for \"gpt-nope\""), "{err}");
}

fn config_file(dir: &Path, base_url: &str, extra: &str) -> PathBuf {
    let path = dir.join("tollgate.toml");
    std::fs::write(&path, config_toml(base_url, &dir.join("t.db"), extra)).unwrap();
    path
}

/// Imported prices bill requests: at start, and in a running `serve` after
/// SIGHUP, as the import's last line says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_prices_bill_requests_after_start_and_after_sighup() {
    let mock = MockUpstream::start_expecting(UPSTREAM_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = config_file(d, &mock.base_url(), "");
    let cfg = config.to_str().unwrap();
    std::fs::write(
        d.join("a.json"),
        r#"{"gpt-4o-mini": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-07, "output_cost_per_token": 1e-06}}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("b.toml"),
        "[prices.\"openai/gpt-4o-mini\"]\ninput = \"0.35\"\noutput = \"1\"\n",
    )
    .unwrap();
    ok(d, &["prices", "import", "a.json", "--config", cfg]);
    let Served { child, addr } = serve(&["--config", cfg], d, &[]);
    let ask = || {
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("x-mock-usage", "prompt=1000000,completion=0")
            .json(&chat("gpt-4o-mini", false))
            .send()
    };
    assert_eq!(ask().await.unwrap().status(), 200);
    assert_eq!(wait_for_traces(&d.join("t.db"), 1).await, 1);
    ok(d, &["prices", "import", "b.toml", "--config", cfg]);
    signal(&child, "-HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n: i64 = value(
            &db(d),
            "SELECT count(*) FROM audit_log WHERE action = 'prices.reload'",
            [],
        );
        if n == 1 {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "no prices.reload after SIGHUP");
    assert_eq!(ask().await.unwrap().status(), 200);
    let (code, err) = tokio::task::spawn_blocking(move || stop(child))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    // 1,000,000 input tokens: $0.25 imported from LiteLLM, then $0.35.
    let costs: Vec<i64> = column(&db(d), "SELECT cost_uc FROM costs ORDER BY trace_id");
    assert_eq!(costs, vec![25_000_000, 35_000_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_when_the_builtin_prices_are_older_than_the_limit() {
    let mock = MockUpstream::start_expecting(UPSTREAM_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The table is dated before any day this test runs on, so a limit of
    // one day is always exceeded and one of a century never is.
    for (limit, warned) in [(1, true), (36_500, false)] {
        let extra = format!("[ledger]\nbuiltin_prices_max_age_days = {limit}\n");
        let config = config_file(d, &mock.base_url(), &extra);
        let child = serve(&["--config", config.to_str().unwrap()], d, &[]).child;
        let (code, err) = tokio::task::spawn_blocking(move || stop(child))
            .await
            .unwrap();
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            err.contains("the built-in price table is dated"),
            warned,
            "limit {limit}: {err}"
        );
        if warned {
            assert!(err.contains("tollgate prices import"), "{err}");
        }
    }
    let config = config_file(
        d,
        &mock.base_url(),
        "[ledger]\nbuiltin_prices_max_age_days = 36501\n",
    );
    let (code, _, err) = run(d, &["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("ledger.builtin_prices_max_age_days"), "{err}");
}

/// The price-spec fields beyond the four base rates, from LiteLLM's keys
/// and from TOML, stored as overrides and listed back.
#[test]
fn a_litellm_file_with_every_billed_component_is_imported_new_fields() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("full.json"),
        r#"{
        "claude-import-test": {"litellm_provider": "anthropic", "mode": "chat",
            "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
            "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
            "cache_creation_input_token_cost_above_1hr": 6e-06,
            "input_cost_per_token_above_200k_tokens": 6e-06,
            "output_cost_per_token_above_200k_tokens": 2.25e-05,
            "search_context_cost_per_query": {"search_context_size_high": 0.01,
                "search_context_size_low": 0.01, "search_context_size_medium": 0.01}},
        "gpt-import-test": {"litellm_provider": "openai", "mode": "chat",
            "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
            "input_cost_per_token_flex": 6.25e-07, "output_cost_per_token_flex": 5e-06,
            "input_cost_per_token_priority": 2.5e-06, "output_cost_per_token_priority": 2e-05},
        "gpt-audio-import-test": {"litellm_provider": "openai", "mode": "chat",
            "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
            "input_cost_per_audio_token": 4e-05, "output_cost_per_audio_token": 8e-05}
        }"#,
    )
    .unwrap();
    let out = ok(d, &["prices", "import", "full.json", "--db", "t.db"]);
    assert!(out.contains("3 added, 0 changed, 0 unchanged"), "{out}");
    for rate in [
        "cache_write_1h=6",
        "web_search_per_1k=10",
        "tiers[>200000].input=6",
        "tiers[>200000].output=22.5",
        "service_tiers.flex.input=0.625",
        "input_audio=40",
    ] {
        assert!(out.contains(rate), "{rate}: {out}");
    }
    let list = listed(d, &[]);
    let claude = find(&list, "anthropic", "claude-import-test");
    assert_eq!(claude["source"], "database");
    assert_eq!(claude["cache_write_1h"], "6");
    assert_eq!(claude["web_search_per_1k"], "10");
    assert_eq!(claude["tiers"][0]["above_input_tokens"], 200000);
    assert_eq!(claude["tiers"][0]["output"], "22.5");
    let gpt = find(&list, "openai", "gpt-import-test");
    assert_eq!(gpt["service_tiers"]["flex"]["input"], "0.625");
    assert_eq!(gpt["service_tiers"]["priority"]["output"], "20");
    let audio = find(&list, "openai", "gpt-audio-import-test");
    assert_eq!(
        (
            audio["input_audio"].as_str(),
            audio["output_audio"].as_str()
        ),
        (Some("40"), Some("80"))
    );

    // A TOML change of a tier rate shows as that rate's change.
    std::fs::write(
        d.join("tier.toml"),
        "[prices.\"anthropic/claude-import-test\"]\ninput = \"3\"\noutput = \"15\"\n\
         cached_input = \"0.30\"\ncache_write = \"3.75\"\ncache_write_1h = \"6\"\nweb_search_per_1k = \"10\"\n\
         [[prices.\"anthropic/claude-import-test\".tiers]]\nabove_input_tokens = 200000\ninput = \"6\"\noutput = \"24\"\n",
    )
    .unwrap();
    let out = ok(d, &["prices", "import", "tier.toml", "--db", "t.db"]);
    assert!(out.contains("0 added, 1 changed, 0 unchanged"), "{out}");
    assert!(out.contains("tiers[>200000].output 22.5 → 24"), "{out}");
}
