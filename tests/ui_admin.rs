//! The dashboard's Keys, Audit and Settings pages, black-box over a real
//! socket: a key created in the form is shown once and then authenticates
//! proxied requests, a revoked one is refused, both are audited; refused
//! forms change nothing; "verify now" reports OK with the head (keyed
//! ledgers with the gateway's key), sees one consistent ledger while
//! traffic commits, and reports the first tampered entry after a byte of
//! it is changed in the file; the trace page's chain status follows it;
//! the checkpoint file downloads; a module toggle applies to the next
//! request; budget use is a meter; no page shows a secret.

mod common;

use common::*;
use reqwest::Method;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_mock_upstream::MockConfig;

const AUTH_ON: &str = "[auth]\nrequire_client_key = true\n";

/// A signed-in dashboard client (the session cookie handled by hand; no
/// redirect is followed, so a test sees each 303).
struct Ui {
    base: String,
    origin: String,
    http: reqwest::Client,
    cookie: String,
}

/// An answer: status, `Location`, body.
struct Page {
    status: u16,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Ui {
    async fn sign_in(gw: &Gateway) -> Ui {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = http
            .post(gw.url("/ui/login"))
            .form(&[("admin_key", ADMIN_KEY)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "sign-in");
        let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        assert!(cookie.starts_with("tollgate_session="), "{set_cookie}");
        Ui {
            base: gw.url(""),
            origin: format!("http://{}", gw.addr),
            http,
            cookie,
        }
    }

    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let location = headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        Page {
            status,
            location,
            headers,
            body: resp.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        Ui::page(resp).await
    }

    /// A form POST from this dashboard (its Origin) with the session's
    /// CSRF token added.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all, Some(&self.origin)).await
    }

    async fn post_raw(&self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(fields);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        Ui::page(req.send().await.unwrap()).await
    }

    /// The session's CSRF token, as a page's forms carry it.
    async fn csrf(&self) -> String {
        let page = self.get("/ui/keys").await;
        assert_eq!(page.status, 200, "{}", page.body);
        attr_after(&page.body, "name=\"csrf\"", "value").expect("a csrf field")
    }

    async fn verify_status(&self) -> Value {
        let page = self.get("/ui/audit/verify").await;
        assert_eq!(page.status, 200, "{}", page.body);
        serde_json::from_str(&page.body).unwrap()
    }

    /// Starts "verify now" and waits (up to 10 s) for its result.
    async fn verify_now(&self) -> Value {
        let started = self.post("/ui/audit/verify", &[]).await;
        assert_eq!(started.status, 303, "{}", started.body);
        assert_eq!(started.location.as_deref(), Some("/ui/audit"));
        let first = self.verify_status().await;
        assert!(
            ["running", "done"].contains(&first["state"].as_str().unwrap()),
            "{first}"
        );
        for _ in 0..1000 {
            let s = self.verify_status().await;
            if s["state"] == "done" {
                return s;
            }
            assert_eq!(s["state"], "running", "{s}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the verification did not finish");
    }
}

/// `name="…"`'s value in the first tag at or after `marker`.
fn attr_after(html: &str, marker: &str, name: &str) -> Option<String> {
    let at = html.find(marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let key = format!("{name}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(unescape(&tag[from..from + len]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The element whose opening tag contains `marker` (e.g. `id="keys"`): its
/// inner HTML.
fn inner(html: &str, marker: &str) -> Option<String> {
    let at = html.find(marker)?;
    let open = html[..at].rfind('<')?;
    let tag: String = html[open + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let content = at + html[at..].find('>')? + 1;
    let (open_tag, close_tag) = (format!("<{tag}"), format!("</{tag}>"));
    let mut depth = 1;
    let mut i = content;
    loop {
        let next_close = i + html[i..].find(&close_tag)?;
        match html[i..next_close].find(&open_tag) {
            Some(o) => {
                depth += 1;
                i += o + open_tag.len();
            }
            None => {
                depth -= 1;
                if depth == 0 {
                    return Some(html[content..next_close].to_string());
                }
                i = next_close + close_tag.len();
            }
        }
    }
}

/// The text of the element whose opening tag contains `marker`.
fn text(html: &str, marker: &str) -> Option<String> {
    let inner = inner(html, marker)?;
    let mut out = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    Some(unescape(out.trim()))
}

fn id(name: &str) -> String {
    format!("id=\"{name}\"")
}

/// The audit entries with `action`: (seq, subject, detail).
fn audit_entries(gw: &Gateway, action: &str) -> Vec<(i64, String, Option<String>)> {
    let db = gw.db();
    let mut stmt = db
        .prepare("SELECT seq, subject, detail FROM audit_log WHERE action = ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([action], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn audit_count(gw: &Gateway) -> i64 {
    value(&gw.db(), "SELECT count(*) FROM audit_log", [])
}

async fn proxied(gw: &Gateway, key: Option<&str>) -> u16 {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("gpt-4o-mini", false));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    resp.bytes().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_in_the_form_is_shown_once_authenticates_and_is_audited() {
    let gw = Gateway::start_with(MockConfig::default(), AUTH_ON).await;
    let ui = Ui::sign_in(&gw).await;
    let answer = ui
        .post(
            "/ui/keys",
            &[
                ("name", "billing-app"),
                ("expires_days", "30"),
                ("rpm", "120"),
                ("budget_usd", "12.50"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let plaintext = text(&answer.body, &id("new-key")).expect("code#new-key");
    let key_id = text(&answer.body, &id("new-key-id")).expect("#new-key-id");
    assert!(
        answer.body.contains("<code id=\"new-key\">"),
        "a code element"
    );
    assert!(plaintext.len() > 20, "{plaintext}");
    assert_eq!(
        answer.body.matches(&plaintext).count(),
        1,
        "the plaintext appears once, in code#new-key"
    );
    assert!(answer.location.is_none());
    assert_eq!(answer.headers["cache-control"], "no-store", "never cached");

    // The proxy accepts it; no key, no entry.
    assert_eq!(proxied(&gw, Some(&plaintext)).await, 200);
    assert_eq!(proxied(&gw, None).await, 401);

    // Stored with its limits and expiry, audited like the API's create.
    let (name, rpm, budget, expires): (String, Option<i64>, Option<i64>, Option<i64>) = row(
        &gw.db(),
        "SELECT name, rpm, budget_uc, expires_at_ms FROM client_keys WHERE id = ?1",
        [&key_id],
    );
    assert_eq!(
        (name.as_str(), rpm, budget),
        ("billing-app", Some(120), Some(1_250_000_000))
    );
    let days = (expires.unwrap() - now_ms()) as f64 / 86_400_000.0;
    assert!((29.9..=30.0).contains(&days), "{days}");
    let created = audit_entries(&gw, "client_key.create");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].1, format!("client_key:{key_id}"));
    let detail: Value = serde_json::from_str(created[0].2.as_deref().unwrap()).unwrap();
    assert_eq!(detail["rpm"], 120);
    assert_eq!(detail["budget_usd"], "12.50");
    assert!(!created[0].2.as_deref().unwrap().contains(&plaintext));

    // The list shows the key's row, never the plaintext.
    let list = ui.get("/ui/keys").await;
    assert_eq!(list.status, 200);
    let row_html = inner(&list.body, &format!("data-key-id=\"{key_id}\"")).expect("the key's row");
    assert_eq!(
        text(&row_html, "class=\"key-state\"").as_deref(),
        Some("active")
    );
    assert!(row_html.contains("billing-app"));
    assert!(row_html.contains("120 rpm"), "{row_html}");
    assert!(row_html.contains("<meter"), "{row_html}");
    assert!(
        !list.body.contains(&plaintext),
        "the list shows no plaintext"
    );
    assert!(!list.body.contains("id=\"new-key\""));
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_in_the_dashboard_is_refused_by_the_proxy_and_audited() {
    let gw = Gateway::start_with(MockConfig::default(), AUTH_ON).await;
    let (status, created) =
        admin_call(&gw, Method::POST, "/keys", Some(json!({"name": "old"}))).await;
    assert_eq!(status, 201, "{created}");
    let (key_id, plaintext) = (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    );
    assert_eq!(proxied(&gw, Some(&plaintext)).await, 200);

    let ui = Ui::sign_in(&gw).await;
    let list = ui.get("/ui/keys").await;
    let row_html = inner(&list.body, &format!("data-key-id=\"{key_id}\"")).unwrap();
    assert!(row_html.contains("class=\"revoke\""), "{row_html}");
    let action = attr_after(&row_html, "class=\"revoke\"", "action").unwrap();
    assert_eq!(action, format!("/ui/keys/{key_id}/revoke"));

    let done = ui.post(&action, &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/ui/keys"));
    assert_eq!(proxied(&gw, Some(&plaintext)).await, 401, "refused at once");

    let list = ui.get("/ui/keys").await;
    let row_html = inner(&list.body, &format!("data-key-id=\"{key_id}\"")).unwrap();
    assert_eq!(
        text(&row_html, "class=\"key-state\"").as_deref(),
        Some("revoked")
    );
    assert!(
        !row_html.contains("revoke-button"),
        "nothing left to revoke"
    );
    let revoked = audit_entries(&gw, "client_key.revoke");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].1, format!("client_key:{key_id}"));

    // Again: refused as the API refuses it, nothing audited.
    let again = ui.post(&action, &[]).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        text(&again.body, &id("form-error"))
            .unwrap()
            .contains("already revoked")
    );
    let unknown = ui.post("/ui/keys/nope/revoke", &[]).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(audit_entries(&gw, "client_key.revoke").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_form_says_why_with_400_and_changes_nothing() {
    let gw = Gateway::start().await;
    let ui = Ui::sign_in(&gw).await;
    let before = audit_count(&gw);
    for (fields, says) in [
        (vec![("name", "")], "non-empty name"),
        (vec![("name", "a"), ("rpm", "fast")], "rpm"),
        (vec![("name", "a"), ("rpm", "0")], "rpm"),
        (vec![("name", "a"), ("expires_days", "0")], "expires_days"),
        (
            vec![("name", "a"), ("expires_days", "soon")],
            "expires_days",
        ),
        (
            vec![("name", "a"), ("budget_usd", "1.123456789")],
            "budget_usd",
        ),
        (vec![("name", "a"), ("budget_usd", "-1")], "budget_usd"),
    ] {
        let page = ui.post("/ui/keys", &fields).await;
        assert_eq!(page.status, 400, "{fields:?}: {}", page.body);
        let error = text(&page.body, &id("form-error")).expect("#form-error");
        assert!(error.contains(says), "{fields:?}: {error}");
        assert!(!page.body.contains("id=\"new-key\""));
        // The form keeps what was typed.
        assert!(page.body.contains("id=\"create-key\""));
    }
    let keys: i64 = value(&gw.db(), "SELECT count(*) FROM client_keys", []);
    assert_eq!(keys, 0);
    assert_eq!(audit_count(&gw), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_without_the_csrf_token_or_from_another_origin_are_refused() {
    let gw = Gateway::start().await;
    let (_, created) = admin_call(&gw, Method::POST, "/keys", Some(json!({"name": "k"}))).await;
    let key_id = created["id"].as_str().unwrap().to_string();
    let ui = Ui::sign_in(&gw).await;
    let csrf = ui.csrf().await;
    let before = audit_count(&gw);
    let revoke = format!("/ui/keys/{key_id}/revoke");
    let posts: [(&str, Vec<(&str, &str)>); 4] = [
        ("/ui/keys", vec![("name", "sneaky")]),
        (&revoke, vec![]),
        ("/ui/modules/cache", vec![("enabled", "true")]),
        ("/ui/audit/verify", vec![]),
    ];
    for (path, fields) in &posts {
        let origin = ui.origin.clone();
        let mut with_token = vec![("csrf", csrf.as_str())];
        with_token.extend_from_slice(fields);
        let mut wrong_token = vec![("csrf", "not-the-token")];
        wrong_token.extend_from_slice(fields);
        for (why, form, origin) in [
            ("no token", fields.clone(), Some(origin.as_str())),
            ("wrong token", wrong_token, Some(origin.as_str())),
            (
                "other origin",
                with_token.clone(),
                Some("http://evil.example"),
            ),
            ("no origin", with_token, None),
        ] {
            let page = ui.post_raw(path, &form, origin).await;
            assert_eq!(page.status, 403, "{path} {why}: {}", page.body);
        }
    }
    assert_eq!(audit_count(&gw), before, "nothing changed");
    assert_eq!(
        ui.verify_status().await["state"],
        "idle",
        "no verification started"
    );
    let revoked: Option<i64> = value(
        &gw.db(),
        "SELECT revoked_at_ms FROM client_keys WHERE id = ?1",
        [&key_id],
    );
    assert_eq!(revoked, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_now_runs_in_the_background_and_reports_ok_with_the_head() {
    let gw = Gateway::start().await;
    for _ in 0..5 {
        assert_eq!(proxied(&gw, None).await, 200);
    }
    gw.wait_traces(5).await;

    // Signed out: the JSON endpoint answers 401, the page redirects.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = anonymous
        .get(gw.url("/ui/audit/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = anonymous.get(gw.url("/ui/audit")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303);

    let ui = Ui::sign_in(&gw).await;
    let idle = ui.verify_status().await;
    assert_eq!(idle["state"], "idle", "{idle}");
    assert_eq!(idle["ok"], Value::Null);

    let head: i64 = value(&gw.db(), "SELECT max(seq) FROM audit_log", []);
    let hash: Vec<u8> = value(
        &gw.db(),
        "SELECT hash FROM audit_log WHERE seq = ?1",
        [head],
    );
    let done = ui.verify_now().await;
    assert_eq!(done["ok"], true, "{done}");
    assert_eq!(done["head_seq"], head, "{done}");
    assert_eq!(done["checked"], head, "{done}");
    assert_eq!(done["total"], head, "{done}");
    assert_eq!(done["first_failure"], Value::Null);

    let page = ui.get("/ui/audit").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        text(&page.body, &id("verify-result")).unwrap(),
        format!("OK — verified up to seq {head}")
    );
    assert_eq!(
        text(&page.body, &id("verify-progress")).unwrap(),
        format!("{head} / {head} entries checked")
    );
    let chain_head = text(&page.body, &id("chain-head")).unwrap();
    assert!(chain_head.contains(&head.to_string()), "{chain_head}");
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    assert!(chain_head.contains(&hex), "{chain_head}");
    assert_eq!(text(&page.body, &id("keyed")).as_deref(), Some("unkeyed"));
    assert!(page.body.contains("id=\"verify-now\""));
    assert!(page.body.contains("id=\"verify-button\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_now_reports_the_first_tampered_entry() {
    let gw = Gateway::start().await;
    for _ in 0..4 {
        assert_eq!(proxied(&gw, None).await, 200);
    }
    gw.wait_traces(4).await;
    let ui = Ui::sign_in(&gw).await;
    assert_eq!(ui.verify_now().await["ok"], true);

    // No request runs now; change one byte of a middle entry's actor in
    // the live file through a connection of the test's own.
    let head: i64 = value(&gw.db(), "SELECT max(seq) FROM audit_log", []);
    let target = head - 2;
    let rw = Connection::open_with_flags(&gw.db, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
    rw.busy_timeout(Duration::from_secs(5)).unwrap();
    let changed = rw
        .execute(
            "UPDATE audit_log SET actor = actor || 'x' WHERE seq = ?1",
            [target],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(rw);

    let done = ui.verify_now().await;
    assert_eq!(done["state"], "done");
    assert_eq!(done["ok"], false, "{done}");
    assert_eq!(done["first_failure"]["seq"], target, "{done}");
    assert_eq!(done["first_failure"]["kind"], "HashMismatch", "{done}");
    assert_eq!(done["head_seq"], Value::Null);
    let page = ui.get("/ui/audit").await;
    assert_eq!(
        text(&page.body, &id("verify-result")).unwrap(),
        format!("FAILED at seq {target}: HashMismatch")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_checkpoint_file_the_download_is_404_and_the_page_says_none() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        "[audit]\ncheckpoint_every_entries = 0\ncheckpoint_interval_secs = 0\n",
    )
    .await;
    assert_eq!(proxied(&gw, None).await, 200);
    gw.wait_traces(1).await;
    let ui = Ui::sign_in(&gw).await;
    assert!(!gw.db.with_extension("db.checkpoints").exists());
    let none = ui.get("/ui/audit/checkpoint").await;
    assert_eq!(none.status, 404);
    let page = ui.get("/ui/audit").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        text(&page.body, &id("last-checkpoint")).as_deref(),
        Some("none")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_file_downloads_and_its_last_line_is_shown() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        "[audit]\ncheckpoint_every_entries = 1\n",
    )
    .await;
    let ui = Ui::sign_in(&gw).await;
    let file = gw.db.with_extension("db.checkpoints");
    assert_eq!(proxied(&gw, None).await, 200);
    gw.wait_traces(1).await;
    let head: i64 = value(&gw.db(), "SELECT max(seq) FROM audit_log", []);
    let mut content = String::new();
    for _ in 0..500 {
        content = std::fs::read_to_string(&file).unwrap_or_default();
        if content.contains(&format!("\n{head}:")) || content.starts_with(&format!("{head}:")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        content.lines().any(|l| l.starts_with(&format!("{head}:"))),
        "{content}"
    );

    let page = ui.get("/ui/audit").await;
    let last = text(&page.body, &id("last-checkpoint")).unwrap();
    assert!(last.starts_with(&format!("seq {head} at ")), "{last}");
    let link = attr_after(&page.body, &id("checkpoint-download"), "href").unwrap();
    assert_eq!(link, "/ui/audit/checkpoint");
    let download = ui.get(&link).await;
    assert_eq!(download.status, 200);
    let disposition = download.headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert_eq!(download.body, content);
}

async fn cache_header(gw: &Gateway) -> Option<String> {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let header = resp
        .headers()
        .get("x-tollgate-cache")
        .map(|v| v.to_str().unwrap().to_string());
    resp.bytes().await.unwrap();
    header
}

fn module_row(html: &str, name: &str) -> String {
    inner(html, &format!("data-module=\"{name}\"")).unwrap_or_else(|| panic!("{name} row"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_toggled_in_the_dashboard_applies_to_the_next_request() {
    let gw = Gateway::start().await;
    let ui = Ui::sign_in(&gw).await;
    assert_eq!(cache_header(&gw).await, None, "the cache is off by default");
    let page = ui.get("/ui/settings").await;
    let row_html = module_row(&page.body, "cache");
    assert_eq!(
        text(&row_html, "class=\"module-state\"").as_deref(),
        Some("off")
    );
    assert_eq!(
        attr_after(&row_html, "class=\"module-toggle\"", "action").as_deref(),
        Some("/ui/modules/cache")
    );
    assert_eq!(
        attr_after(&row_html, "name=\"enabled\"", "value").as_deref(),
        Some("true")
    );

    let on = ui.post("/ui/modules/cache", &[("enabled", "true")]).await;
    assert_eq!(on.status, 303, "{}", on.body);
    assert_eq!(on.location.as_deref(), Some("/ui/settings"));
    assert_eq!(cache_header(&gw).await.as_deref(), Some("miss"));
    assert_eq!(cache_header(&gw).await.as_deref(), Some("hit"));
    let page = ui.get("/ui/settings").await;
    let row_html = module_row(&page.body, "cache");
    assert_eq!(
        text(&row_html, "class=\"module-state\"").as_deref(),
        Some("on")
    );
    assert_eq!(
        attr_after(&row_html, "name=\"enabled\"", "value").as_deref(),
        Some("false")
    );
    let set = audit_entries(&gw, "module.set");
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].1, "module:cache");
    let detail: Value = serde_json::from_str(set[0].2.as_deref().unwrap()).unwrap();
    assert_eq!(detail["new"]["enabled"], true, "{detail}");
    assert_eq!(detail["old"]["enabled"], false, "{detail}");

    let off = ui.post("/ui/modules/cache", &[("enabled", "false")]).await;
    assert_eq!(off.status, 303);
    assert_eq!(cache_header(&gw).await, None, "off for the next request");
    let (_, view) = admin_call(&gw, Method::GET, "/modules/cache", None).await;
    assert_eq!(view["enabled"], false);

    let unknown = ui
        .post("/ui/modules/warp_drive", &[("enabled", "true")])
        .await;
    assert_eq!(unknown.status, 404);
    let bad = ui.post("/ui/modules/cache", &[("enabled", "yes")]).await;
    assert_eq!(bad.status, 400);
    assert!(text(&bad.body, &id("form-error")).is_some());
    assert_eq!(audit_entries(&gw, "module.set").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_use_is_a_meter_of_spent_over_the_budget() {
    for budget_module in [false, true] {
        let gw = Gateway::start_with(
            MockConfig::default(),
            &format!("{AUTH_ON}[modules.budget]\nenabled = {budget_module}\n{TEST_PRICES}"),
        )
        .await;
        let (_, created) = admin_call(
            &gw,
            Method::POST,
            "/keys",
            Some(json!({"name": "metered", "budget_usd": "1.50"})),
        )
        .await;
        let (key_id, plaintext) = (
            created["id"].as_str().unwrap().to_string(),
            created["key"].as_str().unwrap().to_string(),
        );
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&plaintext)
            .header("x-mock-usage", TEST_USAGE)
            .json(&chat("gpt-4o-mini", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.bytes().await.unwrap();
        gw.wait_traces(1).await;
        // The rollup is committed with the trace; the live figures once the
        // answer's trace is settled.
        let ui = Ui::sign_in(&gw).await;
        let mut row_html = String::new();
        for _ in 0..200 {
            let list = ui.get("/ui/keys").await;
            row_html = inner(&list.body, &format!("data-key-id=\"{key_id}\"")).unwrap();
            if row_html.contains(&format!("value=\"{TEST_USAGE_COST_UC}\"")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            row_html.contains(&format!(
                "max=\"150000000\" low=\"105000000\" high=\"135000000\" optimum=\"0\" value=\"{TEST_USAGE_COST_UC}\""
            )),
            "budget module {budget_module}: {row_html}"
        );
        assert!(
            row_html.contains("0.00101 / 1.50 USD this month"),
            "{row_html}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_show_stored_provider_keys_by_last4_only_and_tripped_breakers() {
    let master_dir = tempfile::tempdir().unwrap();
    let master_file = master_dir.path().join("master.key");
    std::fs::write(
        &master_file,
        tollgate::vault::crypto::MasterKey::generate().to_base64(),
    )
    .unwrap();
    let gw = Gateway::start_with(
        MockConfig::default(),
        &format!(
            "[vault]\nmaster_key_file = \"{}\"\n[modules.retry]\nenabled = false\n\
             [modules.breaker]\nfailures = 1\ncooldown_ms = 60000\n",
            master_file.display()
        ),
    )
    .await;
    let stored_key = "sk-stored-provider-key-abcdefghijklmnop-WXYZ";
    let (status, body) = admin_call(
        &gw,
        Method::POST,
        "/provider-keys",
        Some(json!({"provider": "anthropic", "key": stored_key})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    gw.mock.set_fail_status(Some(500));
    assert_eq!(proxied(&gw, None).await, 500);
    gw.mock.set_fail_status(None);

    let ui = Ui::sign_in(&gw).await;
    let page = ui.get("/ui/settings").await;
    assert_eq!(page.status, 200);
    let providers = inner(&page.body, &id("providers")).expect("table#providers");
    let anthropic = inner(&providers, "data-provider=\"anthropic\"").unwrap();
    assert!(anthropic.contains("…WXYZ"), "{anthropic}");
    assert!(
        anthropic.contains("1 stored key(s), 1 in use"),
        "{anthropic}"
    );
    let openai = inner(&providers, "data-provider=\"openai\"").unwrap();
    assert!(openai.contains("key from $TEST_UPSTREAM_KEY"), "{openai}");
    for secret in [stored_key, "abcdefghijklmnop", UPSTREAM_KEY, ADMIN_KEY] {
        assert!(!page.body.contains(secret), "{secret} shown");
    }
    let breakers = inner(&page.body, &id("breakers")).expect("table#breakers");
    let tripped = inner(&breakers, "data-target=\"openai/gpt-4o-mini\"").unwrap();
    assert_eq!(
        text(&tripped, "class=\"breaker-state\"").as_deref(),
        Some("open")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_shows_a_secret() {
    let gw = Gateway::start_with(MockConfig::default(), AUTH_ON).await;
    let (_, created) = admin_call(&gw, Method::POST, "/keys", Some(json!({"name": "app"}))).await;
    let plaintext = created["key"].as_str().unwrap().to_string();
    assert_eq!(proxied(&gw, Some(&plaintext)).await, 200);
    let ui = Ui::sign_in(&gw).await;
    assert!(!ui.cookie.contains(ADMIN_KEY));
    let done = ui.verify_now().await;
    assert_eq!(done["ok"], true);
    for path in [
        "/ui/keys",
        "/ui/audit",
        "/ui/audit/verify",
        "/ui/settings",
        "/ui/audit/checkpoint",
    ] {
        let page = ui.get(path).await;
        for secret in [plaintext.as_str(), ADMIN_KEY, UPSTREAM_KEY] {
            assert!(!page.body.contains(secret), "{path} shows a secret");
        }
        for (name, value) in &page.headers {
            let value = value.to_str().unwrap_or("");
            for secret in [plaintext.as_str(), ADMIN_KEY, UPSTREAM_KEY] {
                assert!(!value.contains(secret), "{path}: header {name}");
            }
        }
    }
}

async fn proxied_id(gw: &Gateway) -> String {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let id = request_id(&resp);
    resp.bytes().await.unwrap();
    id
}

async fn chain_status(ui: &Ui, trace: &str) -> String {
    let page = ui.get(&format!("/ui/traces/{trace}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    text(&page.body, &id("chain-status")).expect("#chain-status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_page_says_verified_only_up_to_the_last_ok_verification() {
    let gw = Gateway::start().await;
    let before = proxied_id(&gw).await;
    gw.wait_traces(1).await;
    let ui = Ui::sign_in(&gw).await;
    assert!(
        chain_status(&ui, &before)
            .await
            .starts_with("not verified yet")
    );

    let done = ui.verify_now().await;
    assert_eq!(done["ok"], true, "{done}");
    let head = done["head_seq"].as_i64().unwrap();
    let after = proxied_id(&gw).await;
    gw.wait_traces(2).await;
    assert_eq!(
        chain_status(&ui, &before).await,
        format!("verified — the chain verified up to seq {head}")
    );
    assert!(
        chain_status(&ui, &after)
            .await
            .starts_with("not verified yet")
    );

    // A failed run withdraws the claim.
    let rw = Connection::open_with_flags(&gw.db, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
    rw.busy_timeout(Duration::from_secs(5)).unwrap();
    rw.execute(
        "UPDATE audit_log SET actor = actor || 'x' WHERE seq = 1",
        [],
    )
    .unwrap();
    drop(rw);
    assert_eq!(ui.verify_now().await["ok"], false);
    assert!(
        chain_status(&ui, &before)
            .await
            .starts_with("not verified yet")
    );
}

/// While requests keep committing, every run sees the ledger as of one
/// moment: no trace committed after the last entry was read is taken for
/// one without an entry (a read outside the snapshot would report a
/// `RecordMissing` that is not there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_now_during_traffic_sees_one_consistent_ledger() {
    let gw = Gateway::start().await;
    let ui = Ui::sign_in(&gw).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, url) = (stop.clone(), gw.url("/v1/chat/completions"));
        tokio::spawn(async move {
            let http = client();
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let resp = http
                    .post(&url)
                    .json(&chat("gpt-4o-mini", false))
                    .send()
                    .await;
                resp.unwrap().bytes().await.unwrap();
                sent += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        })
    };
    for run in 0..40 {
        let done = ui.verify_now().await;
        assert_eq!(done["ok"], true, "run {run}: {done}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(traffic.await.unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_ledger_is_shown_keyed_and_verified_with_the_gateways_key() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("audit.key");
    std::fs::write(&key_file, format!("{}\n", "5a".repeat(32))).unwrap();
    let gw = Gateway::start_with(
        MockConfig::default(),
        &format!("[audit]\nkey_file = \"{}\"\n", key_file.display()),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(proxied(&gw, None).await, 200);
    }
    gw.wait_traces(3).await;
    let ui = Ui::sign_in(&gw).await;
    let page = ui.get("/ui/audit").await;
    assert_eq!(text(&page.body, &id("keyed")).as_deref(), Some("keyed"));
    assert!(
        !page.body.contains(&"5a".repeat(32)),
        "the audit key is not shown"
    );
    let done = ui.verify_now().await;
    assert_eq!(done["ok"], true, "{done}");
    let head: i64 = value(&gw.db(), "SELECT max(seq) FROM audit_log", []);
    assert_eq!(done["head_seq"], head);
}
