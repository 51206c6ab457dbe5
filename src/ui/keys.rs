//! The Keys page (`/ui/keys`): every client key with its state, limits and
//! budget use; create (the new key shown once, on the answer page only) and
//! revoke. Both changes go through the admin API's own handlers, so they
//! are checked, committed and audited exactly as `POST /admin/v1/keys` and
//! `POST /admin/v1/keys/{id}/revoke` are.

use super::format;
use super::html::{esc, form_error};
use super::{Cx, Nav, redirect};
use crate::access::limits::budget_window;
use crate::admin::error::AdminError;
use crate::admin::handlers;
use crate::http::Body;
use crate::store::access_sql::{self, ClientKeyRow};
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value};
use std::fmt::Write;
use tollgate_modules::budget::{Scope, Window};

const TITLE: &str = "Keys";
/// The longest expiry the form offers, in days (100 years).
const MAX_EXPIRES_DAYS: u64 = 36_500;

pub async fn route(cx: &Cx, path: &[&str]) -> Option<Response<Body>> {
    Some(match (&cx.method, path) {
        (&Method::GET, ["keys"]) => list(cx, StatusCode::OK, "", &Entered::default()).await,
        (&Method::POST, ["keys"]) => create(cx).await,
        (&Method::POST, ["keys", id, "revoke"]) => revoke(cx, id).await,
        _ => return None,
    })
}

/// What the create form was sent with, shown again after a refusal.
#[derive(Default)]
struct Entered {
    name: String,
    expires_days: String,
    rpm: String,
    budget_usd: String,
}

impl Entered {
    fn from(cx: &Cx) -> Entered {
        let field = |name| cx.form.get(name).unwrap_or("").trim().to_string();
        Entered {
            name: field("name"),
            expires_days: field("expires_days"),
            rpm: field("rpm"),
            budget_usd: field("budget_usd"),
        }
    }

    /// The `POST /admin/v1/keys` body the form stands for. The limits go
    /// to the API as given (a number when it reads as one, else the text),
    /// so its checks and messages are the ones that apply.
    fn api_body(&self) -> Result<Vec<u8>, String> {
        let mut body = Map::new();
        body.insert("name".into(), Value::String(self.name.clone()));
        if !self.expires_days.is_empty() {
            body.insert(
                "expires_at".into(),
                Value::String(expiry(&self.expires_days)?),
            );
        }
        if !self.rpm.is_empty() {
            let rpm = self
                .rpm
                .parse::<u64>()
                .map_or_else(|_| Value::String(self.rpm.clone()), Value::from);
            body.insert("rpm".into(), rpm);
        }
        if !self.budget_usd.is_empty() {
            body.insert("budget_usd".into(), Value::String(self.budget_usd.clone()));
        }
        Ok(serde_json::to_vec(&Value::Object(body)).unwrap_or_default())
    }
}

/// `expires_days` from now, as the RFC 3339 time the API takes.
fn expiry(days: &str) -> Result<String, String> {
    let days = days
        .parse::<u64>()
        .ok()
        .filter(|d| (1..=MAX_EXPIRES_DAYS).contains(d))
        .ok_or_else(|| {
            format!("expires_days: must be a whole number of days from 1 to {MAX_EXPIRES_DAYS}")
        })?;
    let at = time::OffsetDateTime::now_utc() + time::Duration::days(days as i64);
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("expires_days: {e}"))
}

/// The status a refused change is shown with (its message is the error's).
fn refusal(e: &AdminError) -> StatusCode {
    match e {
        AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
        AdminError::NotFound(_) => StatusCode::NOT_FOUND,
        AdminError::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn create(cx: &Cx) -> Response<Body> {
    let entered = Entered::from(cx);
    let body = match entered.api_body() {
        Ok(body) => body,
        Err(message) => {
            return list(cx, StatusCode::BAD_REQUEST, &form_error(&message), &entered).await;
        }
    };
    let reply = match handlers::create_key(&cx.state, &body).await {
        Ok(reply) => reply,
        Err(e) => {
            let status = refusal(&e);
            return list(cx, status, &form_error(&e.to_string()), &entered).await;
        }
    };
    let created = reply.body().cloned().unwrap_or_default();
    let text = |field: &str| created[field].as_str().unwrap_or("").to_string();
    let shown = format!(
        "<section id=\"created\" class=\"notice\"><h2>Key created</h2>\
         <p>Key <span id=\"new-key-id\">{id}</span> ({name}) was created. Copy it now: \
         it is shown only this once and cannot be shown again.</p>\
         <p><code id=\"new-key\">{key}</code></p></section>",
        id = esc(&text("id")),
        name = esc(&text("name")),
        key = esc(&text("key")),
    );
    list(cx, StatusCode::OK, &shown, &Entered::default()).await
}

async fn revoke(cx: &Cx, id: &str) -> Response<Body> {
    match handlers::revoke_key(&cx.state, id).await {
        Ok(_) => redirect("/ui/keys"),
        Err(e) => {
            let status = refusal(&e);
            list(cx, status, &form_error(&e.to_string()), &Entered::default()).await
        }
    }
}

/// The page: `notice` (a created key or an error) above the list and the
/// create form.
async fn list(cx: &Cx, status: StatusCode, notice: &str, entered: &Entered) -> Response<Body> {
    let keys = match cx.state.reads.read(access_sql::client_keys).await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: cannot read the client keys");
            return cx.page_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                Nav::Keys,
                TITLE,
                "<p class=\"error\">The keys cannot be read; see the server log.</p>",
            );
        }
    };
    // As `GET /admin/v1/keys` shows it: the budget module's figures, kept
    // whether or not it is on (settled costs, and reservations in flight).
    let usage = |k: &ClientKeyRow| {
        let window = budget_window(k.limits.budget_window);
        cx.state.budgets.usage(&Scope::Key(k.id.clone()), window)
    };
    let now = crate::trace::now_ms();
    let mut rows = String::new();
    for k in keys.iter().rev() {
        row(&mut rows, cx, k, usage(k), now);
    }
    let none = if keys.is_empty() {
        "<p id=\"no-keys\" class=\"muted\">No client keys yet.</p>"
    } else {
        ""
    };
    let table = format!(
        "<table id=\"keys\"><thead><tr><th>Prefix</th><th>Name</th><th>Created</th>\
         <th>Expires</th><th>State</th><th>Limits</th><th>Budget use</th><th></th></tr>\
         </thead><tbody>{rows}</tbody></table>{none}"
    );
    let content = format!("{notice}{table}{}", create_form(cx, entered));
    cx.page_status(status, Nav::Keys, TITLE, &content)
}

/// `usage`: the key's (spent, reserved) µ¢ in its budget window.
fn row(out: &mut String, cx: &Cx, k: &ClientKeyRow, usage: (i64, i64), now: i64) {
    let state = if k.revoked_at_ms.is_some() {
        "revoked"
    } else if k.expires_at_ms.is_some_and(|t| t <= now) {
        "expired"
    } else {
        "active"
    };
    let id = esc(&k.id);
    let action = if k.revoked_at_ms.is_none() {
        format!(
            "<form class=\"revoke\" method=\"post\" action=\"/ui/keys/{id}/revoke\">{}\
             <button class=\"revoke-button\" type=\"submit\">Revoke</button></form>",
            cx.csrf_input()
        )
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "<tr data-key-id=\"{id}\"><td class=\"key-prefix\"><code>{prefix}…</code></td>\
         <td class=\"key-name\">{name}</td><td>{created}</td><td>{expires}</td>\
         <td class=\"key-state\">{state}</td><td class=\"key-limits\">{limits}</td>\
         <td class=\"key-budget\">{budget}</td><td>{action}</td></tr>",
        prefix = esc(&k.prefix),
        name = esc(&k.name),
        created = format::time(k.created_at_ms) + " UTC",
        expires = k
            .expires_at_ms
            .map_or_else(|| "never".to_string(), |t| format::time(t) + " UTC"),
        limits = limits(k),
        budget = budget_bar(k, usage),
    );
}

fn limits(k: &ClientKeyRow) -> String {
    let l = &k.limits;
    let mut parts = Vec::new();
    if let Some(rpm) = l.rpm {
        parts.push(format!("{rpm} rpm"));
    }
    if let Some(tpm) = l.tpm {
        parts.push(format!("{tpm} tpm"));
    }
    if let Some(n) = l.max_parallel {
        parts.push(format!("{n} in parallel"));
    }
    if let Some(models) = &k.models {
        parts.push(format!("models: {}", esc(&models.join(", "))));
    }
    if parts.is_empty() {
        "defaults".to_string()
    } else {
        parts.join("<br>")
    }
}

/// A `<meter>` of spent over budget with the exact figures as text, or the
/// amount spent when the key has no budget of its own.
fn budget_bar(k: &ClientKeyRow, (spent_uc, reserved_uc): (i64, i64)) -> String {
    let window = match budget_window(k.limits.budget_window) {
        Window::Day => "today",
        Window::Month => "this month",
        Window::Total => "in total",
    };
    let spent = format::usd(spent_uc);
    let reserved = if reserved_uc > 0 {
        format!(" (+{} reserved)", format::usd(reserved_uc))
    } else {
        String::new()
    };
    let Some(limit_uc) = k.limits.budget_uc else {
        return format!("<span class=\"muted\">no budget; {spent}{reserved} {window}</span>");
    };
    let limit = format::usd(limit_uc);
    // The meter's numbers are µ¢ as integers: exact, and no float is built.
    format!(
        "<meter min=\"0\" max=\"{limit_uc}\" low=\"{low}\" high=\"{high}\" optimum=\"0\" \
         value=\"{value}\" title=\"{spent} of {limit} USD\">{spent} of {limit}</meter> \
         <span class=\"budget-figures\">{spent} / {limit} USD {window}{reserved}</span>",
        low = limit_uc / 10 * 7,
        high = limit_uc / 10 * 9,
        value = spent_uc.clamp(0, limit_uc),
    )
}

fn create_form(cx: &Cx, e: &Entered) -> String {
    format!(
        "<section id=\"create\"><h2>Create a key</h2>\
         <form id=\"create-key\" method=\"post\" action=\"/ui/keys\">{csrf}\
         <label>Name <input name=\"name\" required value=\"{name}\"></label>\
         <label>Expires in (days) <input name=\"expires_days\" inputmode=\"numeric\" \
         placeholder=\"never\" value=\"{expires}\"></label>\
         <label>Requests per minute <input name=\"rpm\" inputmode=\"numeric\" \
         placeholder=\"default\" value=\"{rpm}\"></label>\
         <label>Monthly budget (USD) <input name=\"budget_usd\" inputmode=\"decimal\" \
         placeholder=\"none\" value=\"{budget}\"></label>\
         <button type=\"submit\">Create key</button></form></section>",
        csrf = cx.csrf_input(),
        name = esc(&e.name),
        expires = esc(&e.expires_days),
        rpm = esc(&e.rpm),
        budget = esc(&e.budget_usd),
    )
}
