//! The dashboard (`/ui/`) against a real socket and SQLite file: sign-in,
//! sessions, CSRF, the security headers, the overview's numbers against
//! `tollgate report costs`, the trace list's filters and keyset paging, and
//! the trace page.

mod common;

use common::*;
use reqwest::StatusCode;
use tollgate_mock_upstream::MockConfig;

/// A client that does not follow redirects (the tests look at them).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn origin(gw: &Gateway) -> String {
    format!("http://{}", gw.addr)
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn post_form(
    gw: &Gateway,
    path: &str,
    cookie: Option<&str>,
    origin_header: Option<&str>,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = http()
        .post(gw.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(o) = origin_header {
        req = req.header("origin", o);
    }
    req.send().await.unwrap()
}

/// Signs in; returns the `Cookie` header value of the session.
async fn sign_in(gw: &Gateway) -> String {
    let resp = post_form(
        gw,
        "/ui/login",
        None,
        Some(&origin(gw)),
        &[("admin_key", ADMIN_KEY)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set = resp.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

async fn get(gw: &Gateway, path: &str, cookie: &str) -> reqwest::Response {
    http()
        .get(gw.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn page(gw: &Gateway, path: &str, cookie: &str) -> String {
    let resp = get(gw, path, cookie).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    resp.text().await.unwrap()
}

/// The session's CSRF token, from the sign-out form every page has.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn pages_redirect_to_sign_in_without_a_session() {
    let gw = Gateway::start().await;
    for path in [
        "/ui/",
        "/ui/traces",
        "/ui/keys",
        "/ui/audit",
        "/ui/settings",
    ] {
        let resp = http().get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(resp.headers()["location"], "/ui/login");
    }
    let bogus = get(&gw, "/ui/", "tollgate_session=forged").await;
    assert_eq!(bogus.status(), StatusCode::SEE_OTHER);
    let json = http().get(gw.url("/ui/audit/verify")).send().await.unwrap();
    assert_eq!(json.status(), StatusCode::UNAUTHORIZED);
    let bare = http().get(gw.url("/ui")).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(bare.headers()["location"], "/ui/");

    let login = http().get(gw.url("/ui/login")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let h = login.headers().clone();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(
        h["content-security-policy"],
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         frame-ancestors 'none'"
    );
    let timing = h["server-timing"].to_str().unwrap();
    let ms = timing.strip_prefix("app;dur=").expect("app;dur=");
    assert!(ms.parse::<f64>().is_ok(), "{timing}");
    let body = login.text().await.unwrap();
    assert!(body.contains("<form id=\"login\" method=\"post\" action=\"/ui/login\">"));
    assert!(body.contains("name=\"admin_key\" type=\"password\""));
    assert!(body.contains("<title>tollgate — Sign in</title>"));
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_and_wrong_keys_are_refused_then_throttled() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        "[auth]\nrequire_client_key = false\nfailed_per_minute = 1\nfailed_burst = 2\n",
    )
    .await;
    let o = origin(&gw);
    let resp = post_form(
        &gw,
        "/ui/login",
        None,
        Some(&o),
        &[("admin_key", ADMIN_KEY)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/ui/");
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let value = set
        .strip_prefix("tollgate_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert_eq!(value.len(), 43, "256 bits in base64url: {set}");
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    for attr in ["Path=/ui", "HttpOnly", "SameSite=Strict", "Max-Age=43200"] {
        assert!(set.split("; ").any(|a| a == attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(!set.contains(ADMIN_KEY));
    let home = get(&gw, "/ui/", &format!("tollgate_session={value}")).await;
    assert_eq!(home.status(), StatusCode::OK);

    let https = http()
        .post(gw.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(form(&[("admin_key", ADMIN_KEY)]))
        .send()
        .await
        .unwrap();
    assert!(
        https.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );

    let wrong = post_form(
        &gw,
        "/ui/login",
        None,
        Some(&o),
        &[("admin_key", "tga-wrong")],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    let body = wrong.text().await.unwrap();
    assert!(body.contains("id=\"login-error\""), "{body}");
    assert!(body.contains("<form id=\"login\""));
    let mut throttled = None;
    for _ in 0..3 {
        let r = post_form(
            &gw,
            "/ui/login",
            None,
            Some(&o),
            &[("admin_key", "tga-wrong")],
        )
        .await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(r);
            break;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let throttled = throttled.expect("wrong keys are throttled");
    let secs: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs >= 1);
    // Even the right key waits out the block.
    let blocked = post_form(
        &gw,
        "/ui/login",
        None,
        Some(&o),
        &[("admin_key", ADMIN_KEY)],
    )
    .await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn mutating_posts_need_the_csrf_token_and_this_origin_and_logout_ends_the_session() {
    let gw = Gateway::start().await;
    let cookie = sign_in(&gw).await;
    let csrf = csrf_of(&page(&gw, "/ui/", &cookie).await);
    let o = origin(&gw);

    let cases: [(Option<&str>, Option<&str>); 4] = [
        (Some(&o), None),                           // no token
        (Some(&o), Some("wrong-token")),            // wrong token
        (Some("http://evil.example"), Some(&csrf)), // other origin
        (None, Some(&csrf)),                        // no Origin, no Referer
    ];
    for (origin_header, token) in cases {
        let mut pairs = vec![];
        if let Some(t) = token {
            pairs.push(("csrf", t));
        }
        let resp = post_form(&gw, "/ui/logout", Some(&cookie), origin_header, &pairs).await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "{origin_header:?} {token:?}"
        );
    }
    // The session survived all of them.
    assert_eq!(get(&gw, "/ui/", &cookie).await.status(), StatusCode::OK);

    // A Referer from this host stands in for a missing Origin.
    let by_referer = http()
        .post(gw.url("/ui/logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .header("referer", format!("{o}/ui/traces"))
        .body(form(&[("csrf", &csrf)]))
        .send()
        .await
        .unwrap();
    assert_eq!(by_referer.status(), StatusCode::SEE_OTHER);
    assert_eq!(by_referer.headers()["location"], "/ui/login");
    let cleared = by_referer.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("tollgate_session=;") && cleared.contains("Max-Age=0"));
    let after = get(&gw, "/ui/", &cookie).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "the session ended");

    // A login posted from another site is refused.
    let foreign = post_form(
        &gw,
        "/ui/login",
        None,
        Some("http://evil.example"),
        &[("admin_key", ADMIN_KEY)],
    )
    .await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_page_has_the_layout_and_assets_are_served() {
    let gw = Gateway::start().await;
    let cookie = sign_in(&gw).await;
    for (path, title) in [
        ("/ui/", "Overview"),
        ("/ui/traces", "Traces"),
        ("/ui/keys", "Keys"),
        ("/ui/audit", "Audit"),
        ("/ui/settings", "Settings"),
    ] {
        let resp = get(&gw, path, &cookie).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(resp.headers().contains_key("server-timing"));
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body = resp.text().await.unwrap();
        assert!(
            body.contains(&format!("<title>tollgate — {title}</title>")),
            "{path}"
        );
        for id in [
            "<nav id=\"nav\">",
            "id=\"nav-overview\" href=\"/ui/\"",
            "id=\"nav-traces\" href=\"/ui/traces\"",
            "id=\"nav-keys\" href=\"/ui/keys\"",
            "id=\"nav-audit\" href=\"/ui/audit\"",
            "id=\"nav-settings\" href=\"/ui/settings\"",
            "<form id=\"logout\"",
            "id=\"logout-button\"",
            "<main id=\"content\">",
        ] {
            assert!(body.contains(id), "{id} missing on {path}");
        }
        assert!(!body.contains(ADMIN_KEY));
        assert!(!body.contains("style=\""), "no inline styles on {path}");
        assert!(!body.contains("<script>"), "no inline scripts on {path}");
    }
    let missing = get(&gw, "/ui/nowhere", &cookie).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    for (name, ty) in [("app.css", "text/css"), ("app.js", "text/javascript")] {
        let resp = http()
            .get(gw.url(&format!("/ui/assets/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty)
        );
        assert!(
            resp.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age=31536000")
        );
    }
}

#[tokio::test]
async fn the_dashboard_can_be_switched_off() {
    let gw = Gateway::start_with(MockConfig::default(), "[ui]\nenabled = false\n").await;
    let resp = http().get(gw.url("/ui/login")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let secure = Gateway::start_with(MockConfig::default(), "[ui]\nsecure_cookie = true\n").await;
    let resp = post_form(
        &secure,
        "/ui/login",
        None,
        Some(&origin(&secure)),
        &[("admin_key", ADMIN_KEY)],
    )
    .await;
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );
}

/// Every `data-request-id` on a trace list page, in order.
fn row_ids(html: &str) -> Vec<String> {
    html.split("<tr data-request-id=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect()
}

/// The `a#next-page` link, if the page has one.
fn next_page(html: &str) -> Option<String> {
    let at = html.find("<a id=\"next-page\" href=\"")? + 24;
    Some(html[at..].split('"').next().unwrap().replace("&amp;", "&"))
}

/// The text of the element with `id` (no nested elements).
fn text_of(html: &str, id: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    rest[start..].split('<').next().unwrap().to_string()
}

/// Every trace list page from `first`, following `a#next-page`.
async fn all_pages(gw: &Gateway, cookie: &str, first: &str) -> Vec<Vec<String>> {
    let mut pages = vec![];
    let mut next = Some(first.to_string());
    while let Some(url) = next {
        let html = page(gw, &url, cookie).await;
        pages.push(row_ids(&html));
        next = next_page(&html);
        assert!(pages.len() < 50, "runaway paging");
    }
    pages
}

async fn new_key(gw: &Gateway, name: &str) -> (String, String) {
    let (status, body) = admin_call(
        gw,
        reqwest::Method::POST,
        "/keys",
        Some(serde_json::json!({"name": name})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["key"].as_str().unwrap().to_string(),
    )
}

/// A gateway with two client keys and a mix of traffic: key A three chats
/// and one upstream 500, key B two messages and one upstream 400.
async fn busy_gateway() -> (Gateway, [(String, String); 2]) {
    let gw = Gateway::start_with(
        MockConfig::default(),
        &format!("[auth]\nrequire_client_key = true\n[traces]\nstore_bodies = true\n{TEST_PRICES}"),
    )
    .await;
    let a = new_key(&gw, "team a").await;
    let b = new_key(&gw, "team b").await;
    let c = client();
    let mut sent = 0;
    for (key, path, body, status) in [
        (
            &a.1,
            "/v1/chat/completions",
            chat("gpt-4o-mini", false),
            None,
        ),
        (
            &a.1,
            "/v1/chat/completions",
            chat("gpt-4o-mini", true),
            None,
        ),
        (
            &a.1,
            "/v1/chat/completions",
            chat("gpt-4o-mini", false),
            None,
        ),
        (
            &a.1,
            "/v1/chat/completions",
            chat("gpt-4o-mini", false),
            Some("500"),
        ),
        (
            &b.1,
            "/v1/messages",
            message("claude-haiku-4-5", false),
            None,
        ),
        (
            &b.1,
            "/v1/messages",
            message("claude-haiku-4-5", true),
            None,
        ),
        (
            &b.1,
            "/v1/messages",
            message("claude-haiku-4-5", false),
            Some("400"),
        ),
    ] {
        let mut req = c
            .post(gw.url(path))
            .bearer_auth(key)
            .header("x-api-key", key.as_str())
            .header("anthropic-version", "2023-06-01")
            .header("x-mock-usage", TEST_USAGE)
            .json(&body);
        if let Some(s) = status {
            req = req.header("x-mock-status", s);
        }
        let resp = req.send().await.unwrap();
        let _ = resp.bytes().await;
        sent += 1;
    }
    assert_eq!(gw.wait_traces(sent).await, sent);
    (gw, [a, b])
}

#[tokio::test]
async fn overview_spends_equal_report_costs_for_each_range() {
    let (gw, _keys) = busy_gateway().await;
    // Earlier days' rollups, as the writer would have left them, so each
    // range sums different days: yesterday, 6, 7, 29, 30 and 45 days ago and
    // the first of the month.
    let today = time::OffsetDateTime::now_utc().date();
    let day = |n: i64| {
        let d = today - time::Duration::days(n);
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    };
    let first = format!("{:04}-{:02}-01", today.year(), u8::from(today.month()));
    {
        let conn = rusqlite::Connection::open(&gw.db).unwrap();
        for (n, (d, cost)) in [
            (day(1), 1_000_001i64),
            (day(6), 20_000_003),
            (day(7), 300_000_007),
            (day(29), 4_000_000_011),
            (day(30), 50_000_000_013),
            (day(45), 600_000_000_017),
            (first.clone(), 7_000_000_000_019),
        ]
        .into_iter()
        .enumerate()
        {
            conn.execute(
                "INSERT INTO cost_daily (day, provider, model, client_key_id, requests, errors,
                    input_tokens, output_tokens, cached_input_tokens, cache_creation_input_tokens,
                    reasoning_tokens, cost_uc, unknown_cost_requests)
                 VALUES (?1, 'openai', 'gpt-4o-mini', ?2, 1, 0, 0, 0, 0, 0, 0, ?3, 0)
                 ON CONFLICT DO UPDATE SET cost_uc = cost_uc + excluded.cost_uc",
                rusqlite::params![d, format!("key_hist{n}"), cost],
            )
            .unwrap();
        }
    }
    let cookie = sign_in(&gw).await;
    let html = page(&gw, "/ui/", &cookie).await;
    let today_s = day(0);
    let mut seen = std::collections::BTreeSet::new();
    for (id, since) in [
        ("spend-today", today_s.as_str()),
        ("spend-7d", "7d"),
        ("spend-30d", "30d"),
        ("spend-mtd", first.as_str()),
    ] {
        let (code, out, err) = cli(
            &gw.db,
            &["report", "costs", "--since", since, "--format", "json"],
        );
        assert_eq!(code, 0, "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let expected = report["total"]["cost_usd"].as_str().unwrap().to_string();
        assert_eq!(text_of(&html, id), expected, "#{id} vs --since {since}");
        seen.insert(expected);
    }
    assert!(seen.len() >= 3, "the ranges differ: {seen:?}");
    // Today's proxied traffic is in it: 5 successes at the test usage.
    let conn = gw.db();
    let today_uc: i64 = value(
        &conn,
        "SELECT sum(cost_uc) FROM cost_daily WHERE day = ?1",
        [&today_s],
    );
    assert!(today_uc >= 5 * TEST_USAGE_COST_UC);
    assert_eq!(text_of(&html, "requests-30d"), {
        let n: i64 = value(
            &conn,
            "SELECT sum(requests) FROM cost_daily WHERE day >= ?1",
            [day(29)],
        );
        n.to_string()
    });
    for id in [
        "error-rate-30d",
        "latency-p50",
        "latency-p95",
        "ttfb-p50",
        "ttfb-p95",
    ] {
        assert!(!text_of(&html, id).is_empty(), "#{id}");
    }
    assert!(text_of(&html, "latency-p50").ends_with(" ms"));
    for split in ["provider", "model", "key"] {
        assert!(html.contains(&format!(
            "class=\"split-{split}\" href=\"/ui/?split={split}\""
        )));
        let split_html = page(&gw, &format!("/ui/?split={split}"), &cookie).await;
        assert!(split_html.contains("<svg id=\"spend-chart\""), "{split}");
        assert!(split_html.contains("<title>"), "tooltips");
    }
    let by_key = page(&gw, "/ui/?split=key", &cookie).await;
    assert!(by_key.contains(": 0.0"), "a key's day in a tooltip");
    for id in ["top-keys", "top-models"] {
        assert!(html.contains(&format!("<table id=\"{id}\">")), "{id}");
    }
    assert!(html.contains("<code>openai/gpt-4o-mini</code>"));
    for id in ["cache", "budgets", "breakers"] {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
}

#[tokio::test]
async fn trace_list_filters_and_pages_by_keyset_without_gaps_or_duplicates() {
    let (gw, [a, b]) = busy_gateway().await;
    let cookie = sign_in(&gw).await;
    let conn = gw.db();
    let newest_first: Vec<String> = column(
        &conn,
        "SELECT id FROM traces ORDER BY started_at_ms DESC, id DESC",
    );
    assert_eq!(newest_first.len(), 7);

    let pages = all_pages(&gw, &cookie, "/ui/traces?limit=2").await;
    assert_eq!(pages.len(), 4, "{pages:?}");
    assert!(pages.iter().all(|p| p.len() <= 2));
    let flat: Vec<String> = pages.concat();
    assert_eq!(flat, newest_first, "every trace once, newest first");

    let html = page(&gw, "/ui/traces", &cookie).await;
    assert_eq!(row_ids(&html), newest_first);
    assert!(next_page(&html).is_none());
    assert!(html.contains("<form id=\"trace-filters\" method=\"get\" action=\"/ui/traces\">"));
    for name in [
        "from",
        "to",
        "key",
        "model",
        "provider",
        "status",
        "error_kind",
        "limit",
    ] {
        assert!(html.contains(&format!("name=\"{name}\"")), "{name}");
    }
    let first = &newest_first[0];
    assert!(html.contains(&format!(
        "<a class=\"trace-link\" href=\"/ui/traces/{first}\"><code>{first}</code></a>"
    )));

    let expect = |sql: &str| -> Vec<String> {
        column(
            &conn,
            &format!("SELECT id FROM traces WHERE {sql} ORDER BY started_at_ms DESC, id DESC"),
        )
    };
    let error_kinds: Vec<String> = column(
        &conn,
        "SELECT DISTINCT error_kind FROM traces WHERE error_kind IS NOT NULL",
    );
    assert!(!error_kinds.is_empty());
    let today = time::OffsetDateTime::now_utc().date();
    let fmt = |d: time::Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
    let (yesterday, today_s, tomorrow) = (
        fmt(today - time::Duration::days(1)),
        fmt(today),
        fmt(today + time::Duration::days(1)),
    );
    let mut cases: Vec<(String, Vec<String>)> = vec![
        (
            format!("key={}", a.0),
            expect(&format!("client_key_id = '{}'", a.0)),
        ),
        (
            format!("key={}", b.0),
            expect(&format!("client_key_id = '{}'", b.0)),
        ),
        (
            "model=claude-haiku-4-5".into(),
            expect("model_resolved = 'claude-haiku-4-5'"),
        ),
        ("provider=openai".into(), expect("provider = 'openai'")),
        ("status=2xx".into(), expect("status BETWEEN 200 AND 299")),
        ("status=4xx".into(), expect("status BETWEEN 400 AND 499")),
        ("status=5xx".into(), expect("status BETWEEN 500 AND 599")),
        (format!("from={today_s}"), newest_first.clone()),
        (format!("from={today_s}&to={today_s}"), newest_first.clone()),
        (format!("to={yesterday}"), vec![]),
        (format!("from={tomorrow}"), vec![]),
        (
            format!("from={today_s}T00:00&provider=anthropic&status=2xx"),
            expect("provider = 'anthropic' AND status BETWEEN 200 AND 299"),
        ),
    ];
    for kind in &error_kinds {
        cases.push((
            format!("error_kind={kind}"),
            expect(&format!("error_kind = '{kind}'")),
        ));
    }
    for (query, expected) in &cases {
        let got = all_pages(&gw, &cookie, &format!("/ui/traces?{query}&limit=1"))
            .await
            .concat();
        assert_eq!(&got, expected, "{query}");
    }
    assert_eq!(cases[0].1.len(), 4);
    assert_eq!(cases[6].1.len(), 1);

    for bad in [
        "status=6xx",
        "from=yesterday",
        "limit=0",
        "limit=201",
        "before=nonsense",
    ] {
        let resp = get(&gw, &format!("/ui/traces?{bad}"), &cookie).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(resp.text().await.unwrap().contains("id=\"form-error\""));
    }
}

#[tokio::test]
async fn trace_page_shows_the_exact_cost_the_rates_and_the_ledger_seq() {
    let (gw, _keys) = busy_gateway().await;
    let cookie = sign_in(&gw).await;
    let conn = gw.db();
    let (id, cost_uc, rate_in): (String, i64, i64) = row(
        &conn,
        "SELECT t.id, c.cost_uc, c.price_input FROM traces t JOIN costs c ON c.trace_id = t.id
         WHERE c.status = 'priced' AND t.stream = 0 ORDER BY t.started_at_ms LIMIT 1",
        [],
    );
    assert_eq!(cost_uc, TEST_USAGE_COST_UC);
    let seq: i64 = value(
        &conn,
        "SELECT seq FROM audit_log WHERE subject = ?1",
        [format!("trace:{id}")],
    );
    let html = page(&gw, &format!("/ui/traces/{id}"), &cookie).await;
    assert_eq!(text_of(&html, "trace-id"), id);
    assert!(html.contains(&format!(
        "<span class=\"usd\">{}</span> USD (<span class=\"uc\">{cost_uc}</span> µ¢)",
        tollgate::ledger::money::format_usd_exact(cost_uc)
    )));
    assert!(html.contains("<dl id=\"price\""));
    assert!(html.contains(&format!(
        "<dd data-rate=\"price_input\">{} USD / 1M tokens",
        tollgate::ledger::money::format_usd_exact(rate_in)
    )));
    assert_eq!(text_of(&html, "ledger-seq"), seq.to_string());
    assert!(text_of(&html, "chain-status").starts_with("not verified yet"));
    assert!(html.contains("<svg id=\"timing-bar\""));
    assert!(html.contains("<dl id=\"tokens\""));
    assert!(html.contains("data-tokens=\"input_tokens\">10<"));
    assert!(
        html.contains("<pre id=\"request-body\">"),
        "bodies are stored"
    );
    assert!(html.contains("<pre id=\"response-body\">"));

    let missing = get(
        &gw,
        "/ui/traces/00000000-0000-7000-8000-000000000000",
        &cookie,
    )
    .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn no_secret_reaches_any_page() {
    let (gw, [a, b]) = busy_gateway().await;
    let cookie = sign_in(&gw).await;
    let ids: Vec<String> = column(&gw.db(), "SELECT id FROM traces");
    let mut paths: Vec<String> = [
        "/ui/",
        "/ui/?split=model",
        "/ui/?split=key",
        "/ui/traces",
        "/ui/keys",
        "/ui/audit",
        "/ui/settings",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paths.extend(ids.iter().map(|id| format!("/ui/traces/{id}")));
    let login = http().get(gw.url("/ui/login")).send().await.unwrap();
    let mut bodies = vec![login.text().await.unwrap()];
    for path in &paths {
        bodies.push(page(&gw, path, &cookie).await);
    }
    for (path, body) in std::iter::once(&"/ui/login".to_string())
        .chain(&paths)
        .zip(&bodies)
    {
        for secret in [ADMIN_KEY, UPSTREAM_KEY, a.1.as_str(), b.1.as_str()] {
            assert!(!body.contains(secret), "a secret on {path}");
            // Nor a long enough piece of one.
            assert!(
                !body.contains(&secret[secret.len() - 20..]),
                "part of a secret on {path}"
            );
        }
    }
}

#[tokio::test]
async fn overview_cache_section_shows_the_saving_report_costs_shows() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        &format!("[modules.cache]\nenabled = true\n{TEST_PRICES}"),
    )
    .await;
    let cookie = sign_in(&gw).await;
    let off = page(&gw, "/ui/", &cookie).await;
    assert!(off.contains("id=\"cache-savings\""), "the module is on");
    for _ in 0..3 {
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-mock-usage", TEST_USAGE)
            .json(&chat("gpt-4o-mini", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await;
    }
    assert_eq!(gw.wait_traces(3).await, 3);
    let html = page(&gw, "/ui/", &cookie).await;
    let (code, out, err) = cli(&gw.db, &["report", "costs", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["cache"]["hits"], 2, "{report}");
    assert_eq!(
        text_of(&html, "cache-savings"),
        report["cache"]["saved_usd"].as_str().unwrap()
    );
    assert_eq!(text_of(&html, "cache-hit-ratio"), "66.67%");

    let gw_off = Gateway::start().await;
    let cookie = sign_in(&gw_off).await;
    let html = page(&gw_off, "/ui/", &cookie).await;
    assert!(html.contains("<section id=\"cache\"><h2>Cache</h2><p class=\"module-off\">off</p>"));
}

#[tokio::test]
async fn a_session_ends_after_its_ttl() {
    let gw = Gateway::start_with(MockConfig::default(), "[ui]\nsession_ttl_secs = 1\n").await;
    let resp = post_form(
        &gw,
        "/ui/login",
        None,
        Some(&origin(&gw)),
        &[("admin_key", ADMIN_KEY)],
    )
    .await;
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("; Max-Age=1"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    assert_eq!(
        get(&gw, "/ui/traces", &cookie).await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let after = get(&gw, "/ui/traces", &cookie).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()["location"], "/ui/login");
}
