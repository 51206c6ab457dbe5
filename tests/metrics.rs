//! `/metrics`, black-box: the page is valid Prometheus text (checked by
//! `promtool check metrics` where installed — `.ci/run` installs it — and
//! by a strict parser here), and its per-request series count every traced
//! request exactly once: after a mix of successes, streams, a cache hit,
//! upstream 4xx and 5xx, an unroutable model, a refused key, and rate-limit,
//! budget and breaker refusals, the requests per label set, the tokens per
//! kind and the micro-cents per model equal what the SQLite file holds, and
//! the histograms counted each request. Model labels stay bounded (names a
//! client makes up are `other`); client key labels appear only when
//! configured.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tollgate_mock_upstream::MockConfig;

const AUTH_ON: &str = "[auth]\nrequire_client_key = true\n";

/// Models the test config lists or prices: the only model label values
/// besides `other` and `none`.
const KNOWN_MODELS: [&str; 4] = [
    "gpt-4o-mini",
    "gpt-4o",
    "claude-haiku-4-5",
    "text-embedding-3-small",
];

fn config(extra: &str) -> String {
    // No retries: a 5xx is one attempt, answered at once.
    format!(
        "{AUTH_ON}[modules.retry]\nenabled = false\n[modules.cache]\nenabled = true\n{extra}\n{TEST_PRICES}"
    )
}

async fn create_key(gw: &Gateway, body: Value) -> (String, String) {
    let (status, key) = admin_call(gw, reqwest::Method::POST, "/keys", Some(body)).await;
    assert_eq!(status, 201, "{key}");
    (
        key["id"].as_str().unwrap().to_string(),
        key["key"].as_str().unwrap().to_string(),
    )
}

/// A chat or messages body whose text makes it a cache key of its own.
fn body(path: &str, model: &str, stream: bool, text: &str) -> Value {
    let mut b = if path == "/v1/messages" {
        message(model, stream)
    } else {
        chat(model, stream)
    };
    b["messages"][0]["content"] = json!(text);
    b
}

/// Sends one request and reads its whole body; returns the status.
async fn send(gw: &Gateway, key: &str, path: &str, body: &Value, headers: &[(&str, &str)]) -> u16 {
    let mut req = client().post(gw.url(path)).bearer_auth(key).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    resp.bytes().await.unwrap();
    status
}

/// One sample of the page: its name, labels and value text.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: String,
}

impl Sample {
    fn u64(&self) -> u64 {
        self.value
            .parse()
            .unwrap_or_else(|_| panic!("{} is not an integer: {self:?}", self.value))
    }

    fn label(&self, name: &str) -> &str {
        self.labels
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no label {name} on {self:?}"))
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses the text format strictly: every line is a HELP or TYPE comment or
/// a sample `name{label="value",...} number` of a family typed before it.
fn parse(text: &str) -> Vec<Sample> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(valid_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                typed.insert(name.into(), kind.into()).is_none(),
                "twice: {line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (name, rest) = line.split_at(line.find(['{', ' ']).expect(line));
        assert!(valid_name(name), "{line}");
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "untyped sample: {line}");
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(mut inner) = rest.strip_prefix('{') {
            while !inner.starts_with('}') {
                let (key, after) = inner.split_once("=\"").expect(line);
                assert!(valid_name(key), "{line}");
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().expect(line) {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().expect(line).1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (_, c) => value.push(c),
                    }
                };
                labels.insert(key.to_string(), value);
                inner = &after[end + 1..];
                inner = inner.strip_prefix(',').unwrap_or(inner);
            }
            rest = &inner[1..];
        }
        let value = rest.strip_prefix(' ').expect(line);
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "{line}"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value: value.to_string(),
        });
    }
    samples
}

/// `promtool check metrics` on the page, where promtool is installed
/// (required under CI, where `.ci/run` installs it).
fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("promtool not run ({e}); the page was checked by this test's parser only");
            return;
        }
        Err(e) => panic!("promtool is needed under CI (.ci/run installs it): {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn series<'a>(samples: &'a [Sample], name: &str) -> impl Iterator<Item = &'a Sample> {
    let name = name.to_string();
    samples.iter().filter(move |s| s.name == name)
}

fn total(samples: &[Sample], name: &str) -> u64 {
    series(samples, name).map(Sample::u64).sum()
}

fn one(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    let found: Vec<&Sample> = series(samples, name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].u64()
}

/// The page once it counts `n` requests (the writer records them just after
/// their commit, which `wait_traces` sees first).
async fn page_counting(gw: &Gateway, n: u64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics_text(gw).await;
        let counted = total(&parse(&text), "tollgate_requests_total");
        if counted >= n || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The model label tollgate gives a trace's resolved model.
fn model_label(model: Option<String>) -> String {
    match model {
        None => "none".into(),
        Some(m) if KNOWN_MODELS.contains(&m.as_str()) => m,
        Some(_) => "other".into(),
    }
}

fn provider_label(provider: Option<String>) -> String {
    provider
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "none".into())
}

/// One request of the mix: key, path, model, stream, text (distinct: its
/// own cache key), headers, and the status it gets.
type Mixed<'a> = (
    &'a str,
    &'a str,
    &'a str,
    bool,
    &'a str,
    &'a [(&'a str, &'a str)],
    u16,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_parses_and_counts_every_request_once_with_the_databases_sums() {
    // A breaker opens at the first failure.
    let mut gw = Gateway::start_with(
        MockConfig::default(),
        &config("[modules.breaker]\nfailures = 1\n"),
    )
    .await;
    let (_, key) = create_key(&gw, json!({"name": "a"})).await;
    let (_, limited) = create_key(&gw, json!({"name": "b", "rpm": 1})).await;
    let (_, broke) = create_key(
        &gw,
        json!({"name": "c", "budget_usd": "0.00000001", "budget_window": "total"}),
    )
    .await;
    const CHAT: &str = "/v1/chat/completions";
    const MESSAGES: &str = "/v1/messages";
    const USAGE: (&str, &str) = ("x-mock-usage", TEST_USAGE);
    #[rustfmt::skip]
    let requests: &[Mixed] = &[
        (&key, CHAT, "gpt-4o-mini", false, "one", &[USAGE], 200),
        (&key, CHAT, "gpt-4o-mini", true, "two", &[USAGE], 200),
        (&key, CHAT, "gpt-4o-mini", false, "three",
            &[("x-mock-usage", "prompt=7,completion=9,cached=2,reasoning=5")], 200),
        (&key, MESSAGES, "claude-haiku-4-5", true, "four",
            &[("x-mock-usage", "prompt=20,completion=30,cached=3,cache_write=4")], 200),
        // The first request again: a cache hit.
        (&key, CHAT, "gpt-4o-mini", false, "one", &[USAGE], 200),
        (&key, CHAT, "gpt-4o-mini", false, "4xx", &[("x-mock-status", "400")], 400),
        // A 5xx opens gpt-4o's breaker: the next request to it is refused.
        (&key, CHAT, "openai/gpt-4o", false, "5xx", &[("x-mock-status", "503")], 503),
        (&key, CHAT, "openai/gpt-4o", false, "breaker", &[USAGE], 503),
        // Names a client makes up, passed through to the provider: one label.
        (&key, CHAT, "openai/made-up-model-1", false, "m1", &[USAGE], 200),
        (&key, CHAT, "openai/made-up-model-2", false, "m2", &[USAGE], 200),
        (&key, CHAT, "no-such-model", false, "x", &[], 404),
        ("tg-wrong-key", CHAT, "gpt-4o-mini", false, "y", &[], 401),
        (&limited, CHAT, "gpt-4o-mini", false, "rpm-1", &[USAGE], 200),
        (&limited, CHAT, "gpt-4o-mini", false, "rpm-2", &[USAGE], 429),
        (&broke, CHAT, "gpt-4o-mini", false, "budget", &[USAGE], 402),
    ];
    for (key, path, model, stream, text, headers, status) in requests {
        let b = body(path, model, *stream, text);
        assert_eq!(send(&gw, key, path, &b, headers).await, *status, "{text}");
    }
    let n = requests.len() as i64;
    assert_eq!(gw.wait_traces(n).await, n);

    let text = page_counting(&gw, n as u64).await;
    if let Some(path) = std::env::var_os("TOLLGATE_DUMP_METRICS") {
        std::fs::write(path, &text).unwrap();
    }
    promtool_check(&text);
    let page = parse(&text);
    gw.stop().await;
    let db = gw.db();

    // Requests: per label set exactly as many as the traces.
    let mut want: BTreeMap<(String, String, String, String), u64> = BTreeMap::new();
    let traces: Vec<(String, Option<String>, Option<String>, i64)> = rows(
        &db,
        "SELECT endpoint, provider, model_resolved, status FROM traces",
    );
    for (endpoint, provider, model, status) in traces {
        let labels = (
            endpoint,
            provider_label(provider),
            model_label(model),
            format!("{}xx", status / 100),
        );
        *want.entry(labels).or_default() += 1;
    }
    let mut got = BTreeMap::new();
    for s in series(&page, "tollgate_requests_total") {
        assert_eq!(s.labels.len(), 4, "no key label unless configured: {s:?}");
        let labels = (
            s.label("endpoint").to_string(),
            s.label("provider").to_string(),
            s.label("model").to_string(),
            s.label("status_class").to_string(),
        );
        assert!(got.insert(labels, s.u64()).is_none());
    }
    assert_eq!(got, want);
    assert_eq!(total(&page, "tollgate_requests_total"), n as u64);
    let other = [
        ("provider", "openai"),
        ("model", "other"),
        ("status_class", "2xx"),
    ];
    assert_eq!(one(&page, "tollgate_requests_total", &other), 2);
    assert!(
        !text.contains("made-up-model"),
        "client-chosen names stay out"
    );
    let unrouted = [
        ("provider", "none"),
        ("model", "none"),
        ("status_class", "4xx"),
    ];
    assert_eq!(one(&page, "tollgate_requests_total", &unrouted), 2);

    // Tokens per provider, model and kind: the traces' sums.
    let kinds = [
        ("input", "input_tokens"),
        ("output", "output_tokens"),
        ("cached_input", "cached_input_tokens"),
        ("cache_creation", "cache_creation_input_tokens"),
        ("reasoning", "reasoning_tokens"),
    ];
    let mut want = BTreeMap::new();
    for (kind, column) in kinds {
        let sums: Vec<(Option<String>, Option<String>, i64)> = rows(
            &db,
            &format!(
                "SELECT provider, model_resolved, sum({column}) FROM traces \
                 WHERE {column} IS NOT NULL GROUP BY 1, 2"
            ),
        );
        for (provider, model, sum) in sums {
            let labels = (
                provider_label(provider),
                model_label(model),
                kind.to_string(),
            );
            *want.entry(labels).or_insert(0u64) += sum as u64;
        }
    }
    let got: BTreeMap<_, _> = series(&page, "tollgate_tokens_total")
        .map(|s| {
            let labels = (
                s.label("provider").to_string(),
                s.label("model").to_string(),
                s.label("kind").to_string(),
            );
            (labels, s.u64())
        })
        .collect();
    assert_eq!(got, want);
    let cache_writes = [("model", "claude-haiku-4-5"), ("kind", "cache_creation")];
    assert_eq!(one(&page, "tollgate_tokens_total", &cache_writes), 4);
    assert_eq!(
        one(
            &page,
            "tollgate_tokens_total",
            &[("model", "gpt-4o-mini"), ("kind", "reasoning")]
        ),
        5
    );

    // Micro-cents per provider and model: the costs' integer sums.
    let sums: Vec<(String, String, i64)> = rows(
        &db,
        "SELECT provider, model, sum(cost_uc) FROM costs WHERE cost_uc IS NOT NULL GROUP BY 1, 2",
    );
    let mut want = BTreeMap::new();
    for (provider, model, sum) in sums {
        let model = (!model.is_empty()).then_some(model);
        let labels = (provider_label(Some(provider)), model_label(model));
        *want.entry(labels).or_insert(0u64) += sum as u64;
    }
    let got: BTreeMap<_, _> = series(&page, "tollgate_cost_microcents_total")
        .map(|s| {
            let labels = (
                s.label("provider").to_string(),
                s.label("model").to_string(),
            );
            (labels, s.u64())
        })
        .collect();
    assert_eq!(got, want);
    let priced: i64 = value(&db, "SELECT sum(cost_uc) FROM costs", []);
    assert!(priced >= 3 * TEST_USAGE_COST_UC, "{priced}");
    assert_eq!(
        total(&page, "tollgate_cost_microcents_total"),
        priced as u64
    );

    // Histograms: one observation per request (time to first byte and
    // upstream time where the trace has them).
    let count = |sql: &str| value::<i64, _>(&db, sql, []) as u64;
    for (histogram, traced) in [
        (
            "tollgate_request_duration_seconds",
            count("SELECT count(*) FROM traces"),
        ),
        (
            "tollgate_ttfb_seconds",
            count("SELECT count(ttfb_us) FROM traces"),
        ),
        (
            "tollgate_upstream_duration_seconds",
            count("SELECT count(upstream_us) FROM traces"),
        ),
    ] {
        assert!(traced > 0, "{histogram}");
        assert_eq!(
            total(&page, &format!("{histogram}_count")),
            traced,
            "{histogram}"
        );
        let inf: u64 = series(&page, &format!("{histogram}_bucket"))
            .filter(|s| s.label("le") == "+Inf")
            .map(Sample::u64)
            .sum();
        assert_eq!(inf, traced, "{histogram}");
    }

    // Modules and the cache.
    for module in ["rate_limit", "budget", "breaker"] {
        let refusals = one(
            &page,
            "tollgate_module_refusals_total",
            &[("module", module)],
        );
        assert_eq!(refusals, 1, "{module}");
    }
    let open = [("provider", "openai"), ("model", "gpt-4o")];
    assert_eq!(one(&page, "tollgate_breaker_state", &open), 2);
    assert_eq!(one(&page, "tollgate_cache_hits_total", &[]), 1);

    // The writer: one batch-size and one commit-time observation per
    // committed transaction, holding at least every request record.
    let batches = one(&page, "tollgate_writer_batches_committed_total", &[]);
    assert_eq!(total(&page, "tollgate_writer_batch_size_count"), batches);
    assert_eq!(
        total(&page, "tollgate_writer_commit_duration_seconds_count"),
        batches
    );
    let records = one(&page, "tollgate_writer_records_committed_total", &[]);
    assert_eq!(records, n as u64);
    let entries: f64 = series(&page, "tollgate_writer_batch_size_sum")
        .map(|s| s.value.parse::<f64>().unwrap())
        .sum();
    assert!(
        entries >= records as f64 + 2.0,
        "records and the two key creations: {entries}"
    );
    one(&page, "tollgate_writer_queue_depth", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_key_labels_only_when_configured() {
    let mut gw = Gateway::start_with(
        MockConfig::default(),
        &config("[metrics]\nper_key_labels = true\n"),
    )
    .await;
    let (id_a, key_a) = create_key(&gw, json!({"name": "a"})).await;
    let (id_b, key_b) = create_key(&gw, json!({"name": "b"})).await;
    let path = "/v1/chat/completions";
    let usage = [("x-mock-usage", TEST_USAGE)];
    for (key, text) in [(&key_a, "1"), (&key_a, "2"), (&key_b, "3")] {
        let b = body(path, "gpt-4o-mini", false, text);
        assert_eq!(send(&gw, key, path, &b, &usage).await, 200);
    }
    assert_eq!(gw.wait_traces(3).await, 3);
    let text = page_counting(&gw, 3).await;
    promtool_check(&text);
    let page = parse(&text);
    gw.stop().await;
    for (id, requests) in [(&id_a, 2), (&id_b, 1)] {
        let key = [("client_key", id.as_str()), ("model", "gpt-4o-mini")];
        assert_eq!(one(&page, "tollgate_requests_total", &key), requests);
        assert_eq!(
            one(&page, "tollgate_cost_microcents_total", &key),
            requests * TEST_USAGE_COST_UC as u64
        );
        let output = [("client_key", id.as_str()), ("kind", "output")];
        assert_eq!(one(&page, "tollgate_tokens_total", &output), requests * 100);
    }
    // Latency is per model only, whatever the keys.
    for s in series(&page, "tollgate_request_duration_seconds_count") {
        assert!(!s.labels.contains_key("client_key"), "{s:?}");
    }
}
