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
    assert_eq!(h["referrer-policy"], "no-referrer");
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
}
