//! The trace list (`GET /ui/traces`) and one trace (`GET /ui/traces/<id>`).
//!
//! The list filters by time, key, model, provider, status class and error
//! kind and pages newest first by keyset: `before` is the last row's
//! `(started_at_ms, id)` as `<ms>.<id>` — no OFFSET, no COUNT, so every page
//! costs the same however deep. The trace page shows the timing, tokens,
//! cost with the rates the cost row applied, the trace's audit seq and
//! whether a verification run has covered it.

use super::format::{int, ms, time, usd};
use super::html::{esc, url_component};
use super::{Cx, Nav};
use crate::http::Body;
use crate::store::dashboard_sql::{self, Columns, TraceFilter, TraceRow};
use http::{Method, Response, StatusCode};
use std::fmt::Write;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;
/// Longest filter value accepted (model names are bounded the same).
const MAX_VALUE_BYTES: usize = crate::trace::MAX_MODEL_BYTES;
/// Stored bodies are shown up to this many bytes.
const MAX_BODY_SHOWN: usize = 256 * 1024;

pub async fn route(cx: &Cx, path: &[&str]) -> Option<Response<Body>> {
    match (&cx.method, path) {
        (&Method::GET, ["traces"]) => Some(list(cx).await),
        (&Method::GET, ["traces", id]) => Some(one(cx, id).await),
        _ => None,
    }
}

/// The filter names the form and the links carry, in order.
const FILTERS: [&str; 7] = [
    "from",
    "to",
    "key",
    "model",
    "provider",
    "status",
    "error_kind",
];

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]` (UTC) as Unix ms: the start of
/// that day or minute, and (for `to`) the end of it.
fn parse_time(s: &str, end: bool) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a time (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)");
    if let Ok(day) = crate::ledger::report::parse_day(s) {
        let start = day.midnight().assume_utc().unix_timestamp() * 1000;
        return Ok(if end { start + 86_400_000 } else { start });
    }
    let (date, clock) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let day = crate::ledger::report::parse_day(date).map_err(|_| bad())?;
    let parts: Vec<&str> = clock.split(':').collect();
    let num = |p: &str, max: i64| -> Result<i64, String> {
        p.parse::<i64>()
            .ok()
            .filter(|n| (0..=max).contains(n) && p.len() == 2)
            .ok_or_else(bad)
    };
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (num(h, 23)?, num(m, 59)?, None),
        [h, m, s] => (num(h, 23)?, num(m, 59)?, Some(num(s, 59)?)),
        _ => return Err(bad()),
    };
    let start = day.midnight().assume_utc().unix_timestamp() * 1000
        + h * 3_600_000
        + m * 60_000
        + sec.unwrap_or(0) * 1000;
    Ok(match (end, sec) {
        (false, _) => start,
        (true, None) => start + 60_000,
        (true, Some(_)) => start + 1000,
    })
}

/// The filters and page asked for, or what is wrong with them.
fn filter_of(cx: &Cx) -> Result<TraceFilter, String> {
    let value = |name: &str| -> Result<Option<String>, String> {
        match cx.query(name).map(|v| v.trim().to_string()) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) if v.len() > MAX_VALUE_BYTES => {
                Err(format!("{name} must be at most {MAX_VALUE_BYTES} bytes"))
            }
            Some(v) => Ok(Some(v)),
        }
    };
    let status_class = match value("status")?.as_deref() {
        None => None,
        Some(s) => Some(match s.to_ascii_lowercase().as_str() {
            "2xx" => 2,
            "3xx" => 3,
            "4xx" => 4,
            "5xx" => 5,
            _ => return Err(format!("status {s:?}: expected 2xx, 3xx, 4xx or 5xx")),
        }),
    };
    let before = match value("before")? {
        None => None,
        Some(c) => Some(
            c.split_once('.')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())))
                .filter(|(_, id)| !id.is_empty())
                .ok_or("before: not a cursor from this page")?,
        ),
    };
    let limit = match value("limit")? {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or(format!("limit must be between 1 and {MAX_LIMIT}"))?,
    };
    Ok(TraceFilter {
        from_ms: value("from")?.map(|s| parse_time(&s, false)).transpose()?,
        to_ms: value("to")?.map(|s| parse_time(&s, true)).transpose()?,
        key: value("key")?,
        model: value("model")?,
        provider: value("provider")?,
        status_class,
        error_kind: value("error_kind")?,
        before,
        limit,
    })
}

fn filter_form(cx: &Cx) -> String {
    let mut out = String::from("<form id=\"trace-filters\" method=\"get\" action=\"/ui/traces\">");
    for (name, label, hint) in [
        ("from", "From (UTC)", "YYYY-MM-DD[THH:MM]"),
        ("to", "To (UTC)", "YYYY-MM-DD[THH:MM]"),
        ("key", "Key id", "key_…"),
        ("model", "Model", "resolved model"),
        ("provider", "Provider", "openai"),
        ("status", "Status", "2xx|3xx|4xx|5xx"),
        ("error_kind", "Error kind", "upstream_error"),
        ("limit", "Rows", "50"),
    ] {
        let value = cx.query(name).unwrap_or_default();
        let list = if name == "status" {
            " list=\"status-classes\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<label>{label}<input type=\"text\" name=\"{name}\" value=\"{}\" placeholder=\"{}\"{list}></label>",
            esc(&value),
            esc(hint)
        );
    }
    out.push_str(
        "<datalist id=\"status-classes\"><option value=\"2xx\"><option value=\"3xx\">\
         <option value=\"4xx\"><option value=\"5xx\"></datalist>\
         <button type=\"submit\">Filter</button> <a href=\"/ui/traces\">clear</a></form>",
    );
    out
}

/// The query string of this list with `before` set to `cursor`.
fn next_link(cx: &Cx, cursor: &str) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for name in FILTERS.iter().chain(&["limit"]) {
        if let Some(v) = cx.query(name).filter(|v| !v.trim().is_empty()) {
            q.append_pair(name, &v);
        }
    }
    q.append_pair("before", cursor);
    format!("/ui/traces?{}", q.finish())
}

fn model_cell(r: &TraceRow) -> String {
    let provider = r.provider.as_deref().unwrap_or("—");
    match (&r.model_resolved, &r.model_requested) {
        (Some(m), Some(asked)) if m != asked => {
            format!(
                "{}/{} <span class=\"muted\">({})</span>",
                esc(provider),
                esc(m),
                esc(asked)
            )
        }
        (Some(m), _) => format!("{}/{}", esc(provider), esc(m)),
        (None, Some(asked)) => format!(
            "{} <span class=\"muted\">({})</span>",
            esc(provider),
            esc(asked)
        ),
        (None, None) => esc(provider),
    }
}

/// The cost as the cost row has it: exact USD, or why there is none.
fn cost_cell(status: Option<&str>, cost_uc: Option<i64>) -> String {
    match (status, cost_uc) {
        (Some("partial"), Some(uc)) => format!("{} (partial)", usd(uc)),
        (_, Some(uc)) => usd(uc),
        (Some(s), None) => s.replace('_', " "),
        (None, None) => "—".into(),
    }
}

fn tokens_cell(r: &TraceRow) -> String {
    match (r.input_tokens, r.output_tokens) {
        (None, None) => "—".into(),
        (i, o) => format!(
            "{} / {}",
            i.map_or("—".into(), int),
            o.map_or("—".into(), int)
        ),
    }
}

async fn list(cx: &Cx) -> Response<Body> {
    let mut out = filter_form(cx);
    let filter = match filter_of(cx) {
        Ok(f) => f,
        Err(e) => {
            let _ = write!(out, "<p id=\"form-error\" class=\"error\">{}</p>", esc(&e));
            return cx.page_status(StatusCode::BAD_REQUEST, Nav::Traces, "Traces", &out);
        }
    };
    let limit = filter.limit;
    let rows = match cx
        .state
        .reads
        .read(move |c| dashboard_sql::traces(c, &filter))
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard traces: reading the database failed");
            out.push_str(
                "<p class=\"error\">The database could not be read; see the server log.</p>",
            );
            return cx.page_status(StatusCode::SERVICE_UNAVAILABLE, Nav::Traces, "Traces", &out);
        }
    };
    let more = rows.len() > limit;
    let shown = &rows[..rows.len().min(limit)];
    out.push_str(
        "<table id=\"traces\"><thead><tr><th>Request id</th><th>Time (UTC)</th><th>Endpoint</th>\
         <th>Provider/model</th><th class=\"num\">Status</th><th>Error kind</th>\
         <th class=\"num\">Tokens in / out</th><th class=\"num\">Cost (USD)</th>\
         <th class=\"num\">Latency</th></tr></thead><tbody>",
    );
    for r in shown {
        let _ = write!(
            out,
            "<tr data-request-id=\"{id}\"><td><a class=\"trace-link\" href=\"/ui/traces/{idu}\"><code>{id}</code></a></td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            time(r.started_at_ms),
            esc(&r.endpoint),
            model_cell(r),
            r.status,
            esc(r.error_kind.as_deref().unwrap_or("")),
            tokens_cell(r),
            cost_cell(r.cost_status.as_deref(), r.cost_uc),
            ms(r.total_us),
            id = esc(&r.id),
            idu = url_component(&r.id),
        );
    }
    if shown.is_empty() {
        out.push_str("<tr><td colspan=\"9\" class=\"muted\">No traces match.</td></tr>");
    }
    out.push_str("</tbody></table>");
    if let (true, Some(last)) = (more, shown.last()) {
        let cursor = format!("{}.{}", last.started_at_ms, last.id);
        let _ = write!(
            out,
            "<p><a id=\"next-page\" href=\"{}\">Older traces →</a></p>",
            esc(&next_link(cx, &cursor))
        );
    }
    cx.page(Nav::Traces, "Traces", &out)
}

struct One {
    trace: Columns,
    cost: Option<Columns>,
    seq: Option<i64>,
}

async fn one(cx: &Cx, id: &str) -> Response<Body> {
    if id.is_empty() || id.len() > 64 {
        return cx.not_found();
    }
    let key = id.to_string();
    let found = cx
        .state
        .reads
        .read(move |c| {
            let Some(trace) = dashboard_sql::trace(c, &key)? else {
                return Ok(None);
            };
            Ok(Some(One {
                trace,
                cost: dashboard_sql::cost(c, &key)?,
                seq: dashboard_sql::ledger_seq(c, &key)?,
            }))
        })
        .await;
    let one = match found {
        Ok(Some(one)) => one,
        Ok(None) => return cx.not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard trace: reading the database failed");
            return cx.page_status(
                StatusCode::SERVICE_UNAVAILABLE,
                Nav::Traces,
                "Trace",
                "<p class=\"error\">The database could not be read; see the server log.</p>",
            );
        }
    };
    let verified = super::audit::verified_up_to(&cx.state);
    let page = render_one(&one, verified);
    cx.page(Nav::Traces, "Trace", &page)
}

fn opt_text(c: &Columns, name: &str) -> String {
    c.text(name).map_or("—".into(), esc)
}

fn render_one(one: &One, verified_up_to: Option<i64>) -> String {
    let t = &one.trace;
    let mut out = String::new();
    let id = t.text("id").unwrap_or_default();
    let _ = write!(
        out,
        "<dl class=\"facts\"><dt>Request id</dt><dd><code id=\"trace-id\">{}</code></dd>\
         <dt>Started (UTC)</dt><dd>{}</dd><dt>Endpoint</dt><dd>{}</dd>\
         <dt>Provider</dt><dd>{}</dd><dt>Model asked / served</dt><dd>{} / {}</dd>\
         <dt>Stream</dt><dd>{}</dd><dt>Status</dt><dd id=\"status\">{}</dd>\
         <dt>Upstream status</dt><dd>{}</dd><dt>Error kind</dt><dd>{}</dd>\
         <dt>Error</dt><dd>{}</dd><dt>Finish reason</dt><dd>{}</dd>\
         <dt>Client key</dt><dd>{}</dd><dt>Cache</dt><dd>{}</dd>\
         <dt>Upstream request id</dt><dd>{}</dd></dl>",
        esc(id),
        t.int("started_at_ms").map_or("—".into(), time),
        opt_text(t, "endpoint"),
        opt_text(t, "provider"),
        opt_text(t, "model_requested"),
        opt_text(t, "model_resolved"),
        if t.int("stream") == Some(1) {
            "yes"
        } else {
            "no"
        },
        t.int("status").map_or("—".into(), |s| s.to_string()),
        t.int("upstream_status")
            .map_or("—".into(), |s| s.to_string()),
        opt_text(t, "error_kind"),
        opt_text(t, "error_message"),
        opt_text(t, "finish_reason"),
        t.text("client_key_id").map_or("—".into(), |k| format!(
            "<a href=\"/ui/traces?key={}\"><code>{}</code></a>",
            url_component(k),
            esc(k)
        )),
        opt_text(t, "cache_status"),
        opt_text(t, "upstream_request_id"),
    );
    timing(&mut out, t);
    tokens(&mut out, t);
    cost(&mut out, one.cost.as_ref());
    ledger(&mut out, one.seq, verified_up_to);
    attempts(&mut out, t);
    for (col, id, label) in [
        ("request_body", "request-body", "Request body"),
        ("response_body", "response-body", "Response body"),
    ] {
        if let Some(body) = t.blob(col) {
            let shown = &body[..body.len().min(MAX_BODY_SHOWN)];
            let _ = write!(
                out,
                "<h2>{label}</h2><pre id=\"{id}\">{}{}</pre>",
                esc(&String::from_utf8_lossy(shown)),
                if shown.len() < body.len() {
                    "\n… (truncated)"
                } else {
                    ""
                }
            );
        }
    }
    out
}

/// `svg#timing-bar`: received → upstream first byte → first byte to the
/// client → end. The upstream's start is not recorded, so it is placed at
/// `total − upstream` (the upstream's body ends with the response).
fn timing(out: &mut String, t: &Columns) {
    let total = t.int("total_us").unwrap_or(0).max(0);
    let ttfb = t.int("ttfb_us").map(|v| v.clamp(0, total));
    let upstream_first = match (t.int("upstream_us"), t.int("upstream_ttfb_us")) {
        (Some(up), Some(first)) => {
            Some(((total - up).max(0) + first).clamp(0, ttfb.unwrap_or(total)))
        }
        _ => None,
    };
    let marks: Vec<(&str, i64)> = [
        upstream_first.map(|v| ("received → upstream first byte", v)),
        ttfb.map(|v| ("→ first byte to client", v)),
        Some(("→ end", total)),
    ]
    .into_iter()
    .flatten()
    .collect();
    const W: i64 = 600;
    let scale = total.max(1);
    let colours = ["#2463c6", "#e07b24", "#2f9e5b"];
    let _ = write!(
        out,
        "<h2>Timing</h2><svg id=\"timing-bar\" xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {W} 28\" width=\"{W}\" height=\"28\" role=\"img\" aria-label=\"Timing\">"
    );
    let mut from = 0i64;
    for (n, (label, at)) in marks.iter().enumerate() {
        let x = from * W / scale;
        let w = ((at - from) * W / scale).max(1);
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"4\" width=\"{w}\" height=\"20\" fill=\"{}\"><title>{}: {} (at {})</title></rect>",
            colours[n % 3],
            esc(label),
            ms(at - from),
            ms(*at)
        );
        from = *at;
    }
    out.push_str("</svg><dl class=\"facts\">");
    for (label, col) in [
        ("Total", "total_us"),
        ("First byte to client", "ttfb_us"),
        ("Upstream first byte (from its request)", "upstream_ttfb_us"),
        ("Upstream total", "upstream_us"),
    ] {
        let _ = write!(
            out,
            "<dt>{label}</dt><dd>{}</dd>",
            t.int(col).map_or("—".into(), ms)
        );
    }
    out.push_str("</dl>");
}

fn tokens(out: &mut String, t: &Columns) {
    out.push_str("<h2>Tokens</h2><dl id=\"tokens\" class=\"facts\">");
    for (label, col) in [
        ("Input", "input_tokens"),
        ("Output", "output_tokens"),
        ("Cached input", "cached_input_tokens"),
        ("Cache writes", "cache_creation_input_tokens"),
        ("Cache writes (1 h)", "cache_write_1h_tokens"),
        ("Reasoning", "reasoning_tokens"),
        ("Input audio", "input_audio_tokens"),
        ("Output audio", "output_audio_tokens"),
        ("Input image", "input_image_tokens"),
        ("Web search calls", "web_search_calls"),
    ] {
        if let Some(n) = t.int(col) {
            let _ = write!(
                out,
                "<dt>{label}</dt><dd data-tokens=\"{col}\">{}</dd>",
                int(n)
            );
        }
    }
    let _ = write!(
        out,
        "<dt>Service tier</dt><dd>{}</dd><dt>Bytes in / out</dt><dd>{} / {}</dd></dl>",
        opt_text(t, "service_tier"),
        t.int("request_bytes").map_or("—".into(), int),
        t.int("response_bytes").map_or("—".into(), int)
    );
}

fn cost(out: &mut String, cost: Option<&Columns>) {
    out.push_str("<h2>Cost</h2>");
    let Some(c) = cost else {
        out.push_str("<p id=\"cost\">No cost row.</p><p id=\"price\">—</p>");
        return;
    };
    let status = c.text("status").unwrap_or("");
    match c.int("cost_uc") {
        Some(uc) => {
            let _ = write!(
                out,
                "<p id=\"cost\"><span class=\"usd\">{}</span> USD (<span class=\"uc\">{}</span> µ¢) — {}</p>",
                usd(uc),
                uc,
                esc(status)
            );
        }
        None => {
            let _ = write!(out, "<p id=\"cost\">unknown — {}</p>", esc(status));
        }
    }
    if let Some(saved) = c.int("saved_uc") {
        let _ = write!(
            out,
            "<p id=\"saved\">Saved by the cache: {} USD ({saved} µ¢)</p>",
            usd(saved)
        );
    }
    out.push_str("<dl id=\"price\" class=\"facts\">");
    let _ = write!(
        out,
        "<dt>Price source</dt><dd>{}</dd>",
        opt_text(c, "price_source")
    );
    for (label, col, unit) in [
        ("Input", "price_input", "1M tokens"),
        ("Output", "price_output", "1M tokens"),
        ("Cached input", "price_cached_input", "1M tokens"),
        ("Cache write", "price_cache_write", "1M tokens"),
        ("Cache write (1 h)", "price_cache_write_1h", "1M tokens"),
        ("Input audio", "price_input_audio", "1M tokens"),
        ("Output audio", "price_output_audio", "1M tokens"),
        ("Input image", "price_input_image", "1M tokens"),
        ("Web search", "price_web_search_per_1k", "1,000 calls"),
    ] {
        if let Some(rate) = c.int(col) {
            let _ = write!(
                out,
                "<dt>{label}</dt><dd data-rate=\"{col}\">{} USD / {unit} ({} µ¢)</dd>",
                usd(rate),
                int(rate)
            );
        }
    }
    for (label, col) in [
        ("Long-context tier", "price_tier"),
        ("Service tier", "service_tier"),
        ("Unpriced", "unpriced"),
    ] {
        if let Some(v) = c.text(col) {
            let _ = write!(out, "<dt>{label}</dt><dd>{}</dd>", esc(v));
        }
    }
    out.push_str("</dl>");
}

fn ledger(out: &mut String, seq: Option<i64>, verified_up_to: Option<i64>) {
    out.push_str("<h2>Ledger</h2><dl class=\"facts\">");
    match seq {
        Some(seq) => {
            let status = match verified_up_to {
                Some(v) if v >= seq => format!(
                    "<dd id=\"chain-status\" class=\"ok\">verified — the chain verified up to seq {v}</dd>"
                ),
                _ => "<dd id=\"chain-status\">not verified yet; run verify on the \
                      <a href=\"/ui/audit\">Audit</a> page</dd>"
                    .to_string(),
            };
            let _ = write!(
                out,
                "<dt>Audit seq</dt><dd id=\"ledger-seq\">{seq}</dd><dt>Chain</dt>{status}"
            );
        }
        None => out.push_str(
            "<dt>Audit seq</dt><dd id=\"ledger-seq\">none</dd><dt>Chain</dt>\
             <dd id=\"chain-status\">no ledger entry for this trace</dd>",
        ),
    }
    out.push_str("</dl>");
}

fn attempts(out: &mut String, t: &Columns) {
    let Some(log) = t.text("attempt_log") else {
        return;
    };
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_str::<serde_json::Value>(log)
    else {
        let _ = write!(
            out,
            "<h2>Attempts</h2><pre id=\"attempts\">{}</pre>",
            esc(log)
        );
        return;
    };
    out.push_str(
        "<h2>Attempts</h2><table id=\"attempts\"><thead><tr><th>#</th><th>Target</th>\
         <th>Status / error</th><th class=\"num\">Duration</th><th>Outcome</th></tr></thead><tbody>",
    );
    let s = |v: &serde_json::Value, k: &str| match &v[k] {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for e in &entries {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}/{}</td><td>{}{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&s(e, "n")),
            esc(&s(e, "provider")),
            esc(&s(e, "model")),
            esc(&s(e, "status")),
            esc(&s(e, "error")),
            e["duration_us"].as_i64().map_or(String::new(), ms),
            esc(&s(e, "outcome"))
        );
    }
    out.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_filters() {
        assert_eq!(parse_time("1970-01-02", false), Ok(86_400_000));
        assert_eq!(parse_time("1970-01-02", true), Ok(2 * 86_400_000));
        assert_eq!(parse_time("1970-01-01T01:02", false), Ok(3_720_000));
        assert_eq!(parse_time("1970-01-01T01:02", true), Ok(3_780_000));
        assert_eq!(parse_time("1970-01-01T00:00:05", true), Ok(6_000));
        assert!(parse_time("1970-01-01T24:00", false).is_err());
        assert!(parse_time("yesterday", false).is_err());
        assert!(parse_time("1970-01-01T1:2", false).is_err());
    }

    #[test]
    fn costs_show_exactly_or_say_why_not() {
        assert_eq!(cost_cell(Some("priced"), Some(123)), "0.00000123");
        assert_eq!(
            cost_cell(Some("partial"), Some(100_000_000)),
            "1.00 (partial)"
        );
        assert_eq!(cost_cell(Some("unknown_price"), None), "unknown price");
        assert_eq!(cost_cell(None, None), "—");
    }
}
