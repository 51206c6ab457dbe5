//! Shared test harness: a real tollgate (in-process, on a real socket, with a
//! real SQLite file in a temp dir) in front of the mock upstream.
#![allow(dead_code)]

mod binary;
#[allow(unused_imports)]
pub use binary::*;

use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate::App;
use tollgate::config::{Config, FileConfig};
use tollgate_mock_upstream::{MockConfig, MockUpstream};

pub const UPSTREAM_KEY: &str = "sk-upstream-test-key-0123456789";
pub const ADMIN_KEY: &str = "tga-test-admin-credential-0123456789";

pub struct Gateway {
    pub addr: std::net::SocketAddr,
    pub mock: MockUpstream,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The TOML a test gateway runs with: both providers pointing at `base_url`.
/// `extra` is whole TOML sections (or `server.`-less keys of `[server]` when
/// it starts with `max_`).
pub fn config_toml(base_url: &str, db: &std::path::Path, extra: &str) -> String {
    let (server_extra, extra) = if extra.starts_with("max_") {
        (extra, "")
    } else {
        ("", extra)
    };
    // Tests of other things run the proxy open; tests/access.rs turns keys on.
    let auth = if extra.contains("[auth]") {
        ""
    } else {
        "[auth]\nrequire_client_key = false\n"
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5
{server_extra}
[store]
path = "{db}"
[writer]
batch_max_delay_ms = 2
{auth}
{extra}
[[providers]]
name = "openai"
protocol = "openai"
base_url = "{base_url}"
api_key_env = "TEST_UPSTREAM_KEY"
models = ["gpt-4o-mini", "text-embedding-3-small"]

[[providers]]
name = "anthropic"
protocol = "anthropic"
base_url = "{base_url}"
api_key_env = "TEST_UPSTREAM_KEY"
models = ["claude-haiku-4-5"]

[aliases]
fast = "openai/gpt-4o-mini"
"#,
        db = db.display()
    )
}

pub fn test_env(name: &str) -> Option<String> {
    match name {
        "TEST_UPSTREAM_KEY" => Some(UPSTREAM_KEY.to_string()),
        "TOLLGATE_ADMIN_KEY" => Some(ADMIN_KEY.to_string()),
        _ => None,
    }
}

impl Gateway {
    pub async fn start() -> Gateway {
        Self::start_with(MockConfig::default(), "").await
    }

    /// `extra` is TOML inserted before the provider list (whole sections).
    pub async fn start_with(mock_cfg: MockConfig, extra: &str) -> Gateway {
        let mock = MockUpstream::start_with(MockConfig {
            expect_key: Some(UPSTREAM_KEY.to_string()),
            ..mock_cfg
        })
        .await;
        let base_url = mock.base_url();
        Self::start_on(mock, &base_url, extra).await
    }

    pub async fn start_on(mock: MockUpstream, base_url: &str, extra: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tollgate.db");
        let mut gw = Gateway {
            addr: "127.0.0.1:0".parse().unwrap(),
            mock,
            dir,
            db,
            shutdown: None,
            task: None,
        };
        gw.open(base_url, extra).await;
        gw
    }

    async fn open(&mut self, base_url: &str, extra: &str) {
        let config = parse_config(&config_toml(base_url, &self.db, extra));
        let app = App::open(config, &test_env).expect("gateway opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(app.serve(listener, async {
            let _ = rx.await;
        })));
        self.shutdown = Some(tx);
    }

    /// Stops the gateway and starts a new one on the same database and
    /// upstream (a restart), with `extra` as its config.
    pub async fn restart(&mut self, extra: &str) {
        self.stop().await;
        let base_url = self.mock.base_url();
        self.open(&base_url, extra).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Graceful shutdown; returns when every record is committed.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("gateway stops in time")
                .unwrap();
        }
    }

    pub fn db(&self) -> Connection {
        Connection::open_with_flags(&self.db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
    }

    /// Waits until the writer has committed `n` traces.
    pub async fn wait_traces(&self, n: i64) -> i64 {
        wait_for_traces(&self.db, n).await
    }
}

/// Waits (up to 10 s) until the database at `db` holds `n` traces; returns
/// the count it last saw. For gateways running in another process.
pub async fn wait_for_traces(db: &std::path::Path, n: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let count = trace_count(&conn);
        if count >= n || tokio::time::Instant::now() > deadline {
            return count;
        }
        drop(conn);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn parse_config(toml: &str) -> Config {
    FileConfig::parse(toml).unwrap().validate().unwrap()
}

/// Every row `sql` returns, each read into a tuple of its columns.
pub fn rows<T>(conn: &Connection, sql: &str) -> Vec<T>
where
    T: for<'a> TryFrom<&'a rusqlite::Row<'a>, Error = rusqlite::Error>,
{
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| T::try_from(r))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The first column of every row `sql` returns.
pub fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    rows::<(T,)>(conn, sql).into_iter().map(|(v,)| v).collect()
}

/// The one row `sql` returns, read into a tuple of its columns.
pub fn row<T, P>(conn: &Connection, sql: &str, params: P) -> T
where
    T: for<'a> TryFrom<&'a rusqlite::Row<'a>, Error = rusqlite::Error>,
    P: rusqlite::Params,
{
    conn.query_row(sql, params, |r| T::try_from(r)).unwrap()
}

/// The single value `sql` returns.
pub fn value<T: rusqlite::types::FromSql, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> T {
    row::<(T,), P>(conn, sql, params).0
}

pub fn trace_count(conn: &Connection) -> i64 {
    value(conn, "SELECT count(*) FROM traces", [])
}

/// One trace row as a map of column name → value, for readable asserts.
pub fn last_trace(conn: &Connection) -> serde_json::Map<String, serde_json::Value> {
    let mut stmt = conn
        .prepare("SELECT * FROM traces ORDER BY started_at_ms DESC, id DESC LIMIT 1")
        .unwrap();
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    stmt.query_row([], |row| {
        let mut map = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            let v = match row.get_ref(i)? {
                rusqlite::types::ValueRef::Null => serde_json::Value::Null,
                rusqlite::types::ValueRef::Integer(n) => n.into(),
                rusqlite::types::ValueRef::Real(f) => f.into(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                rusqlite::types::ValueRef::Blob(b) => format!("<{} bytes>", b.len()).into(),
            };
            map.insert(name.clone(), v);
        }
        Ok(map)
    })
    .unwrap()
}

/// The trace id tollgate gave a request (`x-tollgate-request-id`).
pub fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-tollgate-request-id"]
        .to_str()
        .unwrap()
        .to_string()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

pub fn chat(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
}

pub fn message(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
}

/// An admin API call with the test admin credential: (status, JSON body or
/// null).
pub async fn admin_call(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = client()
        .request(method, gw.url(&format!("/admin/v1{path}")))
        .bearer_auth(ADMIN_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// The value of one `/metrics` series (unlabelled, or with its labels in
/// `series`, e.g. `name{phase="idle"}`).
pub async fn metric(gw: &Gateway, series: &str) -> u64 {
    let text = metrics_text(gw).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// The whole `/metrics` page.
pub async fn metrics_text(gw: &Gateway) -> String {
    client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// POSTs `body` as JSON to `path` on the gateway, without credentials.
pub async fn post_json(gw: &Gateway, path: &str, body: &serde_json::Value) -> reqwest::Response {
    client().post(gw.url(path)).json(body).send().await.unwrap()
}

/// Round prices for the models the test config lists: 1 USD / M input
/// tokens (100 µ¢ a token) and 10 USD / M output (1,000 µ¢ a token). A
/// macro so that `concat!` can join it with other config.
#[macro_export]
macro_rules! test_prices {
    () => {
        r#"
[prices."openai/gpt-4o-mini"]
input = "1"
output = "10"

[prices."openai/gpt-4o"]
input = "1"
output = "10"

[prices."anthropic/claude-haiku-4-5"]
input = "1"
output = "10"
"#
    };
}

pub const TEST_PRICES: &str = test_prices!();

/// A usage for the mock to report (`x-mock-usage`), and what it costs at
/// [`TEST_PRICES`]: 10 × 100 + 100 × 1,000 µ¢.
pub const TEST_USAGE: &str = "prompt=10,completion=100";
pub const TEST_USAGE_COST_UC: i64 = 101_000;
