//! Signing in to the dashboard with the admin credential, and out.
//!
//! A right key starts a server-side session (`access::session`) whose random
//! id is the `tollgate_session` cookie; the key itself is never kept, shown
//! or logged. Wrong keys count against the same per-address failure budget
//! as the admin API and the proxy routes (`access/throttle.rs`), so the
//! form is no faster a way to guess.
//!
//! The cookie is `Secure` when `[ui] secure_cookie` is set or the request
//! says `X-Forwarded-Proto: https` (a client claiming that only makes its
//! own cookie stricter).

use super::html::{bare, esc};
use super::{Form, html_response, redirect};
use crate::http::Body;
use crate::state::AppState;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use std::net::IpAddr;

const TITLE: &str = "Sign in";

fn form_page(status: StatusCode, error: Option<&str>) -> Response<Body> {
    let error = error
        .map(|e| format!("<p id=\"login-error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "{error}<form id=\"login\" method=\"post\" action=\"/ui/login\">\
         <label for=\"admin_key\">Admin key</label>\
         <input id=\"admin_key\" name=\"admin_key\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">Use the admin credential (<code>tga-…</code>) shown when tollgate \
         first started, or <code>TOLLGATE_ADMIN_KEY</code>.</p>"
    );
    html_response(status, bare(TITLE, &body))
}

fn disabled_page(status: StatusCode) -> Response<Body> {
    let body = "<p id=\"login-error\" role=\"alert\">The dashboard is disabled: no admin \
                credential is configured. Set <code>TOLLGATE_ADMIN_KEY</code> (at least 32 \
                characters), or start tollgate once without it to have one created, then \
                restart.</p>";
    html_response(status, bare(TITLE, body))
}

/// `GET /ui/login` (the form) and `POST /ui/login` (the attempt).
pub fn login(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    peer: IpAddr,
    form: &Form,
) -> Response<Body> {
    let configured = state.admin.is_configured();
    match *method {
        Method::GET | Method::HEAD if !configured => return disabled_page(StatusCode::OK),
        Method::GET | Method::HEAD => return form_page(StatusCode::OK, None),
        Method::POST => {}
        _ => {
            let mut resp = form_page(StatusCode::METHOD_NOT_ALLOWED, None);
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return resp;
        }
    }
    if !configured {
        return disabled_page(StatusCode::FORBIDDEN);
    }
    // A sign-in posted from another site (login CSRF) is refused; a client
    // sending neither header (a script) may sign in.
    if super::same_origin(headers) == Some(false) {
        return form_page(
            StatusCode::FORBIDDEN,
            Some("The sign-in was not sent from this dashboard."),
        );
    }
    if let Some(secs) = state.auth.blocked_for(peer) {
        return throttled(secs);
    }
    let presented = form.get("admin_key").unwrap_or("");
    if presented.is_empty() || !state.admin.check(presented) {
        return match state.auth.failed_elsewhere(peer) {
            Some(secs) => throttled(secs),
            None => form_page(
                StatusCode::UNAUTHORIZED,
                Some("That admin key was not accepted."),
            ),
        };
    }
    let id = state.ui_sessions.create();
    tracing::info!(peer = %peer, "dashboard sign-in");
    let mut resp = redirect("/ui/");
    let cookie = format!(
        "{}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        super::COOKIE,
        state.ui_sessions.ttl().as_secs(),
        secure_attr(state, headers)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn throttled(secs: u64) -> Response<Body> {
    let mut resp = form_page(
        StatusCode::TOO_MANY_REQUESTS,
        Some(&format!(
            "Too many failed sign-ins from this address; try again in {secs} s."
        )),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// After `POST /ui/logout` ended the session: clear the cookie, back to
/// the sign-in page.
pub fn signed_out(state: &AppState, headers: &HeaderMap) -> Response<Body> {
    let mut resp = redirect("/ui/login");
    let cookie = format!(
        "{}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        super::COOKIE,
        secure_attr(state, headers)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn secure_attr(state: &AppState, headers: &HeaderMap) -> &'static str {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    if state.config.ui.secure_cookie || forwarded_https {
        "; Secure"
    } else {
        ""
    }
}
