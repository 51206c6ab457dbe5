//! The Settings page (`/ui/settings`): each provider's key status (stored
//! keys by their last four characters only), every module with an on/off
//! toggle, and the circuit breakers that have tripped. A toggle is
//! `PUT /admin/v1/modules/{name}` with `{"enabled": …}` — the same handler,
//! so the same validation and audit entry — and applies to the next
//! request.

use super::format;
use super::html::{esc, form_error};
use super::{Cx, Nav, redirect};
use crate::admin::handlers;
use crate::http::Body;
use crate::module_settings;
use crate::store::access_sql::{self, ProviderKeyRow};
use http::{Method, Response, StatusCode};
use serde_json::Value;
use std::fmt::Write;

const TITLE: &str = "Settings";

pub async fn route(cx: &Cx, path: &[&str]) -> Option<Response<Body>> {
    Some(match (&cx.method, path) {
        (&Method::GET, ["settings"]) => page(cx, StatusCode::OK, "").await,
        (&Method::POST, ["modules", name]) => toggle(cx, name).await,
        _ => return None,
    })
}

async fn toggle(cx: &Cx, name: &str) -> Response<Body> {
    if module_settings::known(name).is_err() {
        return cx.not_found();
    }
    let enabled = match cx.form.get("enabled") {
        Some("true") => true,
        Some("false") => false,
        _ => {
            let error = form_error("enabled must be true or false");
            return page(cx, StatusCode::BAD_REQUEST, &error).await;
        }
    };
    let patch = serde_json::json!({ "enabled": enabled }).to_string();
    match handlers::put_module(&cx.state, name, patch.as_bytes()).await {
        Ok(_) => redirect("/ui/settings"),
        Err(e) => {
            let status = match e {
                crate::admin::error::AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            page(cx, status, &form_error(&e.to_string())).await
        }
    }
}

async fn page(cx: &Cx, status: StatusCode, notice: &str) -> Response<Body> {
    let read = cx
        .state
        .reads
        .read(|conn| {
            Ok((
                access_sql::provider_keys(conn)?,
                access_sql::module_overrides(conn)?,
            ))
        })
        .await;
    let (stored_keys, overrides) = match read {
        Ok(read) => read,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: cannot read the settings");
            return cx.page_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                Nav::Settings,
                TITLE,
                "<p class=\"error\">The settings cannot be read; see the server log.</p>",
            );
        }
    };
    let modules = module_settings::views(&cx.state.modules(), &overrides);
    let breakers = match handlers::list_breakers(&cx.state).await {
        Ok(reply) => reply
            .body()
            .map(|b| b["breakers"].clone())
            .unwrap_or_default(),
        Err(_) => Value::Null,
    };
    let content = format!(
        "{notice}{}{}{}",
        providers(cx, &stored_keys),
        modules_table(cx, &modules),
        breakers_table(&breakers),
    );
    cx.page_status(status, Nav::Settings, TITLE, &content)
}

fn providers(cx: &Cx, stored: &[ProviderKeyRow]) -> String {
    let mut rows = String::new();
    for p in cx.state.router().providers() {
        let mine: Vec<&ProviderKeyRow> = stored.iter().filter(|k| k.provider == p.name).collect();
        let active = mine.iter().filter(|k| k.disabled_at_ms.is_none()).count();
        let status = match (mine.len(), &p.api_key, &p.api_key_env) {
            (0, Some(_), Some(env)) => format!("key from ${}", esc(env)),
            (0, Some(_), None) => "key from the environment".to_string(),
            (0, None, Some(env)) => format!("no key (${} is not set)", esc(env)),
            (0, None, None) => "no key".to_string(),
            (n, _, _) => format!("{n} stored key(s), {active} in use"),
        };
        let mut keys = String::new();
        for k in &mine {
            let state = match k.disabled_at_ms {
                None => "in use".to_string(),
                Some(at) => format!("set aside {} UTC", format::time(at)),
            };
            let _ = write!(
                keys,
                "<li data-provider-key-id=\"{id}\"><code class=\"last4\">…{last4}</code> \
                 <span class=\"key-state\">{state}</span></li>",
                id = esc(&k.id),
                last4 = esc(&k.last4),
            );
        }
        if mine.is_empty() {
            keys.push_str("<li class=\"muted\">none</li>");
        }
        let _ = write!(
            rows,
            "<tr data-provider=\"{name}\"><td>{name}</td><td>{protocol}</td>\
             <td class=\"key-status\">{status}</td><td><ul class=\"stored-keys\">{keys}</ul></td></tr>",
            name = esc(&p.name),
            protocol = p.protocol.as_str(),
        );
    }
    format!(
        "<section id=\"providers-section\"><h2>Providers</h2><table id=\"providers\"><thead>\
         <tr><th>Provider</th><th>Protocol</th><th>Key status</th><th>Stored keys</th></tr>\
         </thead><tbody>{rows}</tbody></table></section>"
    )
}

fn modules_table(cx: &Cx, views: &[Value]) -> String {
    let mut rows = String::new();
    for view in views {
        let name = view["name"].as_str().unwrap_or("");
        let on = view["enabled"].as_bool().unwrap_or(false);
        let source = match view["source"].as_str() {
            Some("database") => "changed at runtime",
            _ => "config file",
        };
        let _ = write!(
            rows,
            "<tr data-module=\"{name}\"><td class=\"module-name\">{name}</td>\
             <td class=\"module-state\">{state}</td><td class=\"module-source\">{source}</td>\
             <td><form class=\"module-toggle\" method=\"post\" action=\"/ui/modules/{name}\">{csrf}\
             <input type=\"hidden\" name=\"enabled\" value=\"{next}\">\
             <button class=\"toggle-button\" type=\"submit\">{label}</button></form></td></tr>",
            name = esc(name),
            state = if on { "on" } else { "off" },
            csrf = cx.csrf_input(),
            next = !on,
            label = if on { "Turn off" } else { "Turn on" },
        );
    }
    format!(
        "<section id=\"modules-section\"><h2>Modules</h2><table id=\"modules\"><thead>\
         <tr><th>Module</th><th>State</th><th>Settings from</th><th></th></tr></thead>\
         <tbody>{rows}</tbody></table></section>"
    )
}

/// The breakers `GET /admin/v1/breakers` lists; omitted when there are none.
fn breakers_table(list: &Value) -> String {
    let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return "<section id=\"breakers-section\"><h2>Circuit breakers</h2>\
                <p id=\"no-breakers\" class=\"muted\">No breaker has tripped.</p></section>"
            .to_string();
    }
    let time = |v: &Value| {
        v.as_i64()
            .map_or_else(String::new, |ms| format::time(ms) + " UTC")
    };
    let mut rows = String::new();
    for b in list {
        let text = |field: &str| esc(b[field].as_str().unwrap_or(""));
        let _ = write!(
            rows,
            "<tr data-target=\"{provider}/{model}\"><td>{provider}</td><td>{model}</td>\
             <td class=\"breaker-state\">{state}</td><td>{failures}</td><td>{opened}</td>\
             <td>{probe}</td></tr>",
            provider = text("provider"),
            model = text("model"),
            state = text("state"),
            failures = b["failures"].as_u64().unwrap_or(0),
            opened = time(&b["opened_at"]),
            probe = time(&b["probe_after"]),
        );
    }
    format!(
        "<section id=\"breakers-section\"><h2>Circuit breakers</h2><table id=\"breakers\"><thead>\
         <tr><th>Provider</th><th>Model</th><th>State</th><th>Failures</th><th>Opened</th>\
         <th>Probe after</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )
}
