//! The operator dashboard under `/ui/` (contract: issue 11's UI contract):
//! server-rendered HTML behind a sign-in with the admin credential, static
//! assets compiled in, charts as inline SVG. Reads go through the read-only
//! pool (`state.reads`, queries in `store/dashboard_sql.rs`); changes reuse
//! the admin API's audited changes.
//!
//! # Writing a page (the API of this room)
//!
//! Each area has its own file with one entry point,
//! `pub async fn route(cx: &Cx, path: &[&str]) -> Option<Response<Body>>`:
//! `path` is the URL path after `/ui/`, split on `/` (e.g. `["keys", id,
//! "revoke"]`); match on `(&cx.method, path)` and return `None` for a path
//! the file does not know (→ the 404 page). [`handle`] calls it only for a
//! signed-in session, so a handler never checks the session itself.
//!
//! * **The session and its CSRF token:** `cx.session.csrf`; a form's hidden
//!   field is [`html::csrf_input`]`(&cx.session.csrf)` (or [`Cx::csrf_input`]).
//! * **CSRF on a POST is already checked** before `route` is called: every
//!   POST except `/ui/login` must carry `csrf` (the session's token) and an
//!   `Origin` (or, without one, a `Referer`) naming this host, else 403 —
//!   see [`csrf_ok`]. A handler may rely on it.
//! * **The form body** (`application/x-www-form-urlencoded`, at most 64 KiB)
//!   is parsed into `cx.form`: `cx.form.get("name") -> Option<&str>`.
//!   Query parameters: `cx.query("name")`, `cx.query_pairs()`.
//! * **Render** with [`Cx::page`]`(Nav::Keys, "Keys", &content_html)` (200)
//!   or [`Cx::page_status`]; the layout adds `<title>tollgate — Keys</title>`,
//!   `nav#nav` with the sign-out form and `main#content` with an `<h1>`.
//!   Escape every value with [`html::esc`] (text and attributes).
//! * **Redirect** after a POST with [`redirect`]`("/ui/keys")` (303).
//!   **JSON** with [`json`]; the 404 page with [`Cx::not_found`].
//! * JSON endpoints answer 401 rather than redirect when signed out: list
//!   them in [`is_json_endpoint`].
//! * Shared state: `cx.state` (the `AppState`), the client's address `cx.peer`.
//!
//! Every response from here carries the security headers and
//! `Server-Timing: app;dur=<ms>` (added by [`handle`]); HTML is
//! `Cache-Control: no-store`.

mod assets;
mod audit;
mod chart;
mod format;
pub mod html;
mod keys;
mod overview;
mod settings;
mod sign_in;
mod traces;

use crate::access::UiSession;
use crate::http::{Body, full, json_response};
use crate::state::AppState;
use bytes::Bytes;
pub use html::Nav;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// The largest form body accepted.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// The session cookie's name.
pub const COOKIE: &str = "tollgate_session";

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; frame-ancestors 'none'";

/// What a page handler gets: the request's facts and the signed-in session.
pub struct Cx {
    pub state: Arc<AppState>,
    pub method: Method,
    pub headers: HeaderMap,
    /// The client's address.
    pub peer: IpAddr,
    pub session: UiSession,
    /// The POST body's fields (empty for GET).
    pub form: Form,
    query: Option<String>,
}

impl Cx {
    /// The first value of query parameter `name`, decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// All query parameters, decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default()
    }

    /// The hidden `csrf` input for a form of this session.
    pub fn csrf_input(&self) -> String {
        html::csrf_input(&self.session.csrf)
    }

    /// A 200 page in the layout.
    pub fn page(&self, nav: Nav, title: &str, content: &str) -> Response<Body> {
        self.page_status(StatusCode::OK, nav, title, content)
    }

    /// A page in the layout with `status`.
    pub fn page_status(
        &self,
        status: StatusCode,
        nav: Nav,
        title: &str,
        content: &str,
    ) -> Response<Body> {
        html_response(
            status,
            html::layout(title, nav, &self.session.csrf, content),
        )
    }

    /// The 404 page.
    pub fn not_found(&self) -> Response<Body> {
        self.page_status(
            StatusCode::NOT_FOUND,
            Nav::None,
            "Not found",
            "<p id=\"not-found\">There is no such page.</p>",
        )
    }
}

/// A parsed `application/x-www-form-urlencoded` body.
#[derive(Default, Debug)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A complete HTML response.
pub fn html_response(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// `303 See Other` to `location` (a path under `/ui/`).
pub fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A JSON response.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    json_response(status, serde_json::to_vec(body).unwrap_or_default())
}

/// The endpoints that answer JSON (401 when signed out, not a redirect).
pub fn is_json_endpoint(method: &Method, path: &[&str]) -> bool {
    matches!((method, path), (&Method::GET, ["audit", "verify"]))
}

/// Whether a POST may change something: it carries the session's CSRF
/// token in `csrf`, and its `Origin` (or `Referer` when there is no
/// `Origin`) is this host.
pub fn csrf_ok(headers: &HeaderMap, session: &UiSession, form: &Form) -> bool {
    let token_ok = form
        .get("csrf")
        .is_some_and(|t| crate::access::session::same_secret(t, &session.csrf));
    token_ok && same_origin(headers) == Some(true)
}

/// `Some(true)`: the request's `Origin` (or `Referer`) names this host —
/// its `Host`, or the `X-Forwarded-Host` a reverse proxy in front set (a
/// cross-site form cannot set either); `Some(false)`: another, or an opaque
/// origin; `None`: neither header.
pub(crate) fn same_origin(headers: &HeaderMap) -> Option<bool> {
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))?;
    let authority = source.to_str().ok().and_then(|s| {
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))?;
        Some(rest.split(['/', '?', '#']).next().unwrap_or(""))
    });
    let Some(authority) = authority.filter(|a| !a.is_empty()) else {
        return Some(false);
    };
    let names_us = |name: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split(',').next())
            .is_some_and(|h| authority.eq_ignore_ascii_case(h.trim()))
    };
    Some(names_us("host") || names_us("x-forwarded-host"))
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

pub async fn handle<B>(state: Arc<AppState>, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut resp = dispatch(state, req).await;
    let h = resp.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    // Not `no-referrer`: under it browsers send `Origin: null` with every
    // form POST, which the CSRF check must refuse. `same-origin` still keeps
    // dashboard URLs out of any Referer sent to another site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        h.insert("server-timing", v);
    }
    resp
}

async fn dispatch<B>(state: Arc<AppState>, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let full_path = req.uri().path().to_string();
    if full_path == "/ui" {
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        resp.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/ui/"));
        return resp;
    }
    let path: Vec<&str> = full_path
        .strip_prefix("/ui/")
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = req.method().clone();
    if let (&Method::GET | &Method::HEAD, ["assets", name]) = (&method, path.as_slice()) {
        return match assets::serve(name) {
            Some(resp) => resp,
            None => plain(StatusCode::NOT_FOUND, "no such asset"),
        };
    }
    let peer = crate::request_facts::PeerAddr::ip_of(&req).unwrap_or(crate::access::UNKNOWN_PEER);
    let query = req.uri().query().map(str::to_string);
    let (mut parts, body) = req.into_parts();
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        // HTTP/2 carries the host in the URI's authority, not in `Host`.
        parts.headers.insert(header::HOST, v);
    }
    let form = if method == Method::POST {
        match Limited::new(body, MAX_FORM_BYTES).collect().await {
            Ok(c) => Form::parse(&c.to_bytes()),
            Err(_) => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the form must be at most 64 KiB",
                );
            }
        }
    } else {
        Form::default()
    };
    if path.as_slice() == ["login"] {
        return sign_in::login(&state, &method, &parts.headers, peer, &form);
    }
    let cookie = session_cookie(&parts.headers);
    let Some(session) = cookie.as_deref().and_then(|c| state.ui_sessions.get(c)) else {
        return if is_json_endpoint(&method, &path) {
            json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "sign in first"}),
            )
        } else {
            redirect("/ui/login")
        };
    };
    let cx = Cx {
        state,
        method,
        headers: parts.headers,
        peer,
        session,
        form,
        query,
    };
    if cx.method == Method::POST && !csrf_ok(&cx.headers, &cx.session, &cx.form) {
        return cx.page_status(
            StatusCode::FORBIDDEN,
            Nav::None,
            "Forbidden",
            "<p id=\"csrf-error\" class=\"error\">The form was not sent from this dashboard \
             (missing or wrong CSRF token or origin). Reload the page and try again.</p>",
        );
    }
    let answer = match path.as_slice() {
        ["logout"] if cx.method == Method::POST => {
            if let Some(c) = cookie.as_deref() {
                cx.state.ui_sessions.remove(c);
            }
            Some(sign_in::signed_out(&cx.state, &cx.headers))
        }
        [] | ["overview"] => overview::route(&cx, &path).await,
        ["traces", ..] => traces::route(&cx, &path).await,
        ["keys", ..] => keys::route(&cx, &path).await,
        ["audit", ..] => audit::route(&cx, &path).await,
        ["settings", ..] | ["modules", ..] => settings::route(&cx, &path).await,
        _ => None,
    };
    answer.unwrap_or_else(|| cx.not_found())
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_name_the_host() {
        let ok = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(same_origin(&ok), Some(true));
        let referer = headers(&[
            ("host", "gw.example"),
            ("referer", "https://gw.example/ui/keys?x=1"),
        ]);
        assert_eq!(same_origin(&referer), Some(true));
        let other = headers(&[("host", "gw.example"), ("origin", "https://evil.example")]);
        assert_eq!(same_origin(&other), Some(false));
        let opaque = headers(&[("host", "gw.example"), ("origin", "null")]);
        assert_eq!(same_origin(&opaque), Some(false));
        let proxied = headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "gw.example"),
            ("origin", "https://gw.example"),
        ]);
        assert_eq!(same_origin(&proxied), Some(true));
        let prefix = headers(&[("host", "gw.example"), ("origin", "http://gw.example.evil")]);
        assert_eq!(same_origin(&prefix), Some(false));
        assert_eq!(same_origin(&headers(&[("host", "gw.example")])), None);
    }

    #[test]
    fn csrf_needs_token_and_origin() {
        let s = UiSession { csrf: "tok".into() };
        let h = headers(&[("host", "h"), ("origin", "http://h")]);
        assert!(csrf_ok(&h, &s, &Form::parse(b"csrf=tok&x=1")));
        assert!(!csrf_ok(&h, &s, &Form::parse(b"csrf=tok2")));
        assert!(!csrf_ok(&h, &s, &Form::parse(b"x=1")));
        assert!(!csrf_ok(
            &headers(&[("host", "h")]),
            &s,
            &Form::parse(b"csrf=tok")
        ));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; tollgate_session=abc; b=2")]);
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
        assert_eq!(session_cookie(&headers(&[("cookie", "x=1")])), None);
    }
}
