//! The overview page (`GET /ui/`): spend today / 7 days / 30 days / this
//! month exactly as `tollgate report costs` totals them (integer sums of the
//! same `cost_daily` rows), requests and error rate over 30 days, latency
//! percentiles over the last 24 hours, the spend chart, the top keys and
//! models, and the cache, budget and breaker modules when they are on.

use super::chart::{self, Series};
use super::format::{int, ms, percent, usd};
use super::html::{esc, url_component};
use super::{Cx, Nav};
use crate::http::Body;
use crate::ledger::report::{format_day, parse_since};
use crate::store::dashboard_sql::{self, DayTotals, Split, Timing, TopRow};
use http::{Method, Response, StatusCode};
use std::fmt::Write;

const TOP_N: usize = 10;

pub async fn route(cx: &Cx, path: &[&str]) -> Option<Response<Body>> {
    match (&cx.method, path) {
        (&Method::GET, []) => Some(page(cx).await),
        _ => None,
    }
}

/// The days the page's figures cover, as `report costs --since` reads them.
struct Ranges {
    today: String,
    since_7d: String,
    since_30d: String,
    month_start: String,
}

impl Ranges {
    fn now() -> Ranges {
        let today = time::OffsetDateTime::now_utc().date();
        let since = |s: &str| parse_since(s, today).unwrap_or_else(|_| format_day(today));
        Ranges {
            today: format_day(today),
            since_7d: since("7d"),
            since_30d: since("30d"),
            month_start: format_day(today.replace_day(1).unwrap_or(today)),
        }
    }

    /// The earliest day any figure needs.
    fn earliest(&self) -> &str {
        self.since_30d.as_str().min(self.month_start.as_str())
    }
}

struct Data {
    days: Vec<DayTotals>,
    chart: Vec<(String, String, i64)>,
    top_keys: Vec<TopRow>,
    top_models: Vec<TopRow>,
    timings: Vec<Timing>,
    /// Hits with a known saving and the saving (µ¢), 30 days.
    savings: Option<(i64, i64)>,
}

fn split_of(cx: &Cx) -> (Split, &'static str) {
    match cx.query("split").as_deref() {
        Some("model") => (Split::Model, "model"),
        Some("key") => (Split::Key, "key"),
        _ => (Split::Provider, "provider"),
    }
}

async fn page(cx: &Cx) -> Response<Body> {
    let r = Ranges::now();
    let (split, split_name) = split_of(cx);
    let modules = cx.state.modules();
    let cache_on = modules.cache.enabled || modules.semantic_cache.enabled;
    let (earliest, since_30d, today) = (
        r.earliest().to_string(),
        r.since_30d.clone(),
        r.today.clone(),
    );
    let now_ms = crate::trace::now_ms();
    let data = cx
        .state
        .reads
        .read(move |c| {
            Ok(Data {
                days: dashboard_sql::day_totals(c, &earliest, &today)?,
                chart: dashboard_sql::spend_by_day(c, split, &since_30d, &today)?,
                top_keys: dashboard_sql::top(c, Split::Key, &since_30d, &today, TOP_N)?,
                top_models: dashboard_sql::top(c, Split::Model, &since_30d, &today, TOP_N)?,
                timings: dashboard_sql::latency_sample(c, now_ms - 86_400_000, now_ms + 1)?,
                savings: if cache_on {
                    Some(dashboard_sql::cache_saved(c, &since_30d, &today)?)
                } else {
                    None
                },
            })
        })
        .await;
    let data = match data {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard overview: reading the database failed");
            return cx.page_status(
                StatusCode::SERVICE_UNAVAILABLE,
                Nav::Overview,
                "Overview",
                "<p class=\"error\">The database could not be read; see the server log.</p>",
            );
        }
    };

    let mut out = String::new();
    spend_cards(&mut out, &r, &data.days);
    traffic_cards(&mut out, &r, &data.days, &data.timings);
    spend_chart(&mut out, &r, split_name, &data.chart);
    top_table(
        &mut out,
        "top-keys",
        "Top keys (30 days)",
        "Key",
        &data.top_keys,
        true,
    );
    top_table(
        &mut out,
        "top-models",
        "Top models (30 days)",
        "Model",
        &data.top_models,
        false,
    );
    cache_section(&mut out, cx, data.savings);
    budget_section(&mut out, cx);
    breaker_section(&mut out, cx);
    cx.page(Nav::Overview, "Overview", &out)
}

/// Σ cost over days `since..=until`, as the report's total sums it
/// (`None`: beyond 64 bits, where the report refuses too).
fn spend(days: &[DayTotals], since: &str, until: &str) -> Option<i64> {
    days.iter()
        .filter(|d| d.day.as_str() >= since && d.day.as_str() <= until)
        .try_fold(0i64, |sum, d| sum.checked_add(d.cost_uc))
}

fn card(out: &mut String, id: &str, label: &str, value: &str) {
    let _ = write!(
        out,
        "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\" id=\"{id}\">{}</div></div>",
        esc(label),
        esc(value)
    );
}

fn spend_cards(out: &mut String, r: &Ranges, days: &[DayTotals]) {
    out.push_str("<section id=\"spend\"><h2>Spend (USD)</h2><div class=\"cards\">");
    for (id, label, since) in [
        ("spend-today", "Today", &r.today),
        ("spend-7d", "Last 7 days", &r.since_7d),
        ("spend-30d", "Last 30 days", &r.since_30d),
        ("spend-mtd", "This month", &r.month_start),
    ] {
        let value = spend(days, since, &r.today).map_or("overflow".into(), usd);
        card(out, id, &format!("{label} (since {since})"), &value);
    }
    out.push_str("</div></section>");
}

/// The `p`-th percentile (0..=100) of weighted values.
fn percentile(values: &mut [(i64, f64)], p: u32) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by_key(|(v, _)| *v);
    let total: f64 = values.iter().map(|(_, w)| w).sum();
    let target = total * f64::from(p) / 100.0;
    let mut seen = 0.0;
    for (v, w) in values.iter() {
        seen += w;
        if seen >= target {
            return Some(*v);
        }
    }
    values.last().map(|(v, _)| *v)
}

fn traffic_cards(out: &mut String, r: &Ranges, days: &[DayTotals], timings: &[Timing]) {
    let in_30d = days.iter().filter(|d| d.day >= r.since_30d);
    let (requests, errors) = in_30d.fold((0i64, 0i64), |(q, e), d| {
        (q.saturating_add(d.requests), e.saturating_add(d.errors))
    });
    let mut total: Vec<(i64, f64)> = timings.iter().map(|t| (t.total_us, t.weight)).collect();
    let mut ttfb: Vec<(i64, f64)> = timings
        .iter()
        .filter_map(|t| Some((t.ttfb_us?, t.weight)))
        .collect();
    let shown = |v: Option<i64>| v.map_or("—".to_string(), ms);
    out.push_str("<section id=\"traffic\"><h2>Traffic</h2><div class=\"cards\">");
    card(out, "requests-30d", "Requests (30 days)", &int(requests));
    card(
        out,
        "error-rate-30d",
        "Error rate (30 days)",
        &percent(errors, requests),
    );
    card(
        out,
        "latency-p50",
        "Latency p50 (24 h)",
        &shown(percentile(&mut total, 50)),
    );
    card(
        out,
        "latency-p95",
        "Latency p95 (24 h)",
        &shown(percentile(&mut total, 95)),
    );
    card(
        out,
        "ttfb-p50",
        "First byte p50 (24 h)",
        &shown(percentile(&mut ttfb, 50)),
    );
    card(
        out,
        "ttfb-p95",
        "First byte p95 (24 h)",
        &shown(percentile(&mut ttfb, 95)),
    );
    out.push_str("</div>");
    let _ = write!(
        out,
        "<p class=\"muted\">Latency: request received to response finished; first byte: to the \
         first byte sent to the client; from {} of the last 24 hours' traces{}.</p></section>",
        int(timings.len() as i64),
        if timings.iter().any(|t| t.weight != 1.0) {
            " (a sample weighted by traffic)"
        } else {
            ""
        }
    );
}

fn spend_chart(out: &mut String, r: &Ranges, split: &str, rows: &[(String, String, i64)]) {
    let _ = write!(
        out,
        "<section id=\"chart\"><h2>Spend per day, last 30 days, by {split}</h2><p class=\"splits\">"
    );
    for s in ["provider", "model", "key"] {
        let current = if s == split {
            " aria-current=\"true\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<a class=\"split-{s}\" href=\"/ui/?split={s}\"{current}>by {s}</a>"
        );
    }
    out.push_str("</p>");
    let days = chart::days_from(&r.since_30d, 30);
    let series = Series::stack(&days, rows);
    out.push_str(&chart::stacked_bars("spend-chart", &days, &series));
    out.push_str("</section>");
}

fn top_table(out: &mut String, id: &str, title: &str, what: &str, rows: &[TopRow], keys: bool) {
    let _ = write!(
        out,
        "<section><h2>{title}</h2><table id=\"{id}\"><thead><tr><th>{what}</th>\
         <th class=\"num\">Requests</th><th class=\"num\">Spend (USD)</th></tr></thead><tbody>"
    );
    for row in rows {
        let label = match (&row.name, keys) {
            (Some(name), true) => format!(
                "<a href=\"/ui/traces?key={}\"><code>{}</code></a> {}",
                url_component(&row.group),
                esc(&row.group),
                esc(name)
            ),
            (None, true) if row.group.starts_with("key_") => format!(
                "<a href=\"/ui/traces?key={}\"><code>{}</code></a>",
                url_component(&row.group),
                esc(&row.group)
            ),
            _ => format!("<code>{}</code>", esc(&row.group)),
        };
        let _ = write!(
            out,
            "<tr><td>{label}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            int(row.requests),
            usd(row.cost_uc)
        );
    }
    if rows.is_empty() {
        out.push_str(
            "<tr><td colspan=\"3\" class=\"muted\">No traffic in the last 30 days.</td></tr>",
        );
    }
    out.push_str("</tbody></table></section>");
}

fn cache_section(out: &mut String, cx: &Cx, savings: Option<(i64, i64)>) {
    out.push_str("<section id=\"cache\"><h2>Cache</h2>");
    match savings {
        None => out.push_str("<p class=\"module-off\">off</p>"),
        Some((saved_hits, saved_uc)) => {
            let (hits, misses) = cx.state.cache.hits_and_misses();
            let looked_up = hits.saturating_add(misses);
            let _ = write!(
                out,
                "<dl class=\"facts\"><dt>Hit ratio (since start)</dt><dd id=\"cache-hit-ratio\">{}</dd>\
                 <dt>Hits / lookups (since start)</dt><dd>{} / {}</dd>\
                 <dt>Hits with a known saving (30 days)</dt><dd>{}</dd>\
                 <dt>Saved (30 days, USD)</dt><dd id=\"cache-savings\">{}</dd></dl>",
                percent(hits as i64, looked_up as i64),
                int(hits as i64),
                int(looked_up as i64),
                int(saved_hits),
                usd(saved_uc)
            );
        }
    }
    out.push_str("</section>");
}

fn budget_section(out: &mut String, cx: &Cx) {
    use tollgate_modules::budget::Scope;
    let modules = cx.state.modules();
    let settings = &modules.budget;
    out.push_str("<section id=\"budgets\"><h2>Budgets</h2>");
    if !settings.enabled {
        out.push_str("<p class=\"module-off\">off</p></section>");
        return;
    }
    let mut rows: Vec<(String, Scope, tollgate_modules::budget::Budget)> = Vec::new();
    if let Some(b) = settings.global() {
        rows.push(("global".into(), Scope::Global, b));
    }
    for name in settings.providers.keys() {
        if let Some(b) = settings.provider(name) {
            rows.push((format!("provider {name}"), Scope::Provider(name.clone()), b));
        }
    }
    if rows.is_empty() {
        out.push_str(
            "<p>on — no global or provider budget is set; per-key budgets are on the \
             <a href=\"/ui/keys\">Keys</a> page.</p></section>",
        );
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Budget</th><th>Window</th><th class=\"num\">Spent (USD)</th>\
         <th class=\"num\">Limit (USD)</th><th>Use</th></tr></thead><tbody>",
    );
    for (label, scope, budget) in rows {
        let (spent, _reserved) = cx.state.budgets.usage(&scope, budget.window);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td><meter min=\"0\" max=\"{}\" value=\"{}\">{}</meter></td></tr>",
            esc(&label),
            budget.window.as_str(),
            usd(spent),
            usd(budget.limit_uc),
            budget.limit_uc,
            spent.min(budget.limit_uc),
            percent(spent, budget.limit_uc)
        );
    }
    out.push_str("</tbody></table></section>");
}

fn breaker_section(out: &mut String, cx: &Cx) {
    out.push_str("<section id=\"breakers\"><h2>Circuit breakers</h2>");
    if !cx.state.modules().breaker.enabled {
        out.push_str("<p class=\"module-off\">off</p></section>");
        return;
    }
    let snapshot = cx.state.breaker.snapshot();
    if snapshot.is_empty() {
        out.push_str("<p>on — every target closed.</p></section>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Target</th><th>State</th><th class=\"num\">Failures</th>\
         <th>Opened</th></tr></thead><tbody>",
    );
    for s in snapshot {
        let _ = write!(
            out,
            "<tr><td><code>{}/{}</code></td><td class=\"breaker-{}\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&s.provider),
            esc(&s.model),
            s.state.as_str(),
            s.state.as_str(),
            s.failures,
            // A closed breaker's snapshot time is its last opening, or 0 if
            // it never opened: show only a real opening.
            s.opened_at_ms
                .map_or_else(|| "—".to_string(), super::format::time)
        );
    }
    out.push_str("</tbody></table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_sums_the_range_inclusive() {
        let d = |day: &str, cost_uc| DayTotals {
            day: day.into(),
            cost_uc,
            requests: 1,
            errors: 0,
        };
        let days = [d("2026-11-01", 5), d("2026-11-02", 7), d("2026-11-03", 11)];
        assert_eq!(spend(&days, "2026-11-02", "2026-11-03"), Some(18));
        assert_eq!(spend(&days, "2026-11-04", "2026-11-04"), Some(0));
        assert_eq!(spend(&[d("a", i64::MAX), d("b", 1)], "a", "b"), None);
    }

    #[test]
    fn weighted_percentiles() {
        let mut v = vec![(10, 1.0), (20, 1.0), (30, 1.0), (40, 1.0)];
        assert_eq!(percentile(&mut v, 50), Some(20));
        assert_eq!(percentile(&mut v, 95), Some(40));
        let mut w = vec![(10, 9.0), (1000, 1.0)];
        assert_eq!(percentile(&mut w, 50), Some(10));
        assert_eq!(percentile(&mut w, 95), Some(1000));
        assert_eq!(percentile(&mut [], 50), None);
    }
}
