//! `tollgate report costs`: totals from the integer rollups, shown as
//! dollars and cents (and exact µ¢ in JSON and CSV).

use super::money::{format_usd, format_usd_exact};
use crate::store::report_sql::{CacheSavings, GroupBy, ReportRow};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// `7d` (the last 7 days, today included) or `YYYY-MM-DD`, as a day string.
pub fn parse_since(s: &str, today: time::Date) -> Result<String, String> {
    if let Some(n) = s.strip_suffix('d') {
        let days: i64 = n
            .parse()
            .ok()
            .filter(|d| *d >= 1)
            .ok_or_else(|| format!("--since {s:?}: expected N d (N ≥ 1) or YYYY-MM-DD"))?;
        let day = today
            .checked_sub(time::Duration::days(days - 1))
            .ok_or_else(|| format!("--since {s:?} is out of range"))?;
        return Ok(format_day(day));
    }
    parse_day(s).map(format_day)
}

pub fn parse_day(s: &str) -> Result<time::Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format).map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

pub fn format_day(d: time::Date) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    d.format(&format).unwrap_or_default()
}

/// The sum of `rows`; `None` if it overflows (it cannot below ~$92 billion).
pub fn total(rows: &[ReportRow]) -> Option<ReportRow> {
    let mut t = ReportRow {
        group: "TOTAL".into(),
        ..ReportRow::default()
    };
    for r in rows {
        t.requests = t.requests.checked_add(r.requests)?;
        t.errors = t.errors.checked_add(r.errors)?;
        t.input_tokens = t.input_tokens.checked_add(r.input_tokens)?;
        t.output_tokens = t.output_tokens.checked_add(r.output_tokens)?;
        t.cached_input_tokens = t.cached_input_tokens.checked_add(r.cached_input_tokens)?;
        t.cache_creation_input_tokens = t
            .cache_creation_input_tokens
            .checked_add(r.cache_creation_input_tokens)?;
        t.reasoning_tokens = t.reasoning_tokens.checked_add(r.reasoning_tokens)?;
        t.cost_uc = t.cost_uc.checked_add(r.cost_uc)?;
        t.unknown_cost_requests = t
            .unknown_cost_requests
            .checked_add(r.unknown_cost_requests)?;
        t.partial_cost_requests = t
            .partial_cost_requests
            .checked_add(r.partial_cost_requests)?;
    }
    Some(t)
}

pub fn render(
    format: Format,
    by: GroupBy,
    since: &str,
    until: &str,
    rows: &[ReportRow],
    savings: CacheSavings,
) -> Result<String, String> {
    let total = total(rows).ok_or("the totals overflow 64 bits")?;
    Ok(match format {
        Format::Table => {
            let mut out = table(rows, &total);
            if savings.hits > 0 {
                let _ = writeln!(
                    out,
                    "\nThe exact cache answered {} request(s) (cost 0, in COST), saving {}.",
                    thousands(savings.hits),
                    format_usd(savings.saved_uc)
                );
            }
            out
        }
        Format::Csv => csv(rows, &total),
        Format::Json => {
            let row = |r: &ReportRow| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["cost_usd"] = format_usd_exact(r.cost_uc).into();
                v
            };
            let value = serde_json::json!({
                "by": format!("{by:?}").to_lowercase(),
                "since": since,
                "until": until,
                "rows": rows.iter().map(row).collect::<Vec<_>>(),
                "total": row(&total),
                "cache": {
                    "hits": savings.hits,
                    "saved_uc": savings.saved_uc,
                    "saved_usd": format_usd_exact(savings.saved_uc),
                },
            });
            let mut s = serde_json::to_string_pretty(&value).unwrap_or_default();
            s.push('\n');
            s
        }
    })
}

fn thousands(n: i64) -> String {
    let grouped = super::money::group_thousands(&n.unsigned_abs().to_string());
    if n < 0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

fn table(rows: &[ReportRow], total: &ReportRow) -> String {
    let header = [
        "GROUP",
        "REQUESTS",
        "ERRORS",
        "INPUT",
        "CACHED",
        "OUTPUT",
        "REASONING",
        "COST",
        "UNKNOWN COST",
        "PARTIAL COST",
    ];
    let cells = |r: &ReportRow| {
        vec![
            r.group.clone(),
            thousands(r.requests),
            thousands(r.errors),
            thousands(r.input_tokens),
            thousands(r.cached_input_tokens),
            thousands(r.output_tokens),
            thousands(r.reasoning_tokens),
            format_usd(r.cost_uc),
            thousands(r.unknown_cost_requests),
            thousands(r.partial_cost_requests),
        ]
    };
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    lines.extend(rows.iter().map(cells));
    lines.push(cells(total));
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        if n == lines.len() - 1 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
        let padded: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    }
    if total.unknown_cost_requests > 0 {
        let _ = writeln!(
            out,
            "\n{} request(s) have an unknown cost (no price for their model, or no usage reported); they are not in COST.",
            total.unknown_cost_requests
        );
    }
    if total.partial_cost_requests > 0 {
        let _ = writeln!(
            out,
            "{}{} request(s) have a partial cost (a component with no price, e.g. 1-hour cache writes or web search calls); COST counts only their priced part.",
            if total.unknown_cost_requests > 0 {
                ""
            } else {
                "\n"
            },
            total.partial_cost_requests
        );
    }
    out
}

fn csv(rows: &[ReportRow], total: &ReportRow) -> String {
    let mut out = String::from(
        "group,requests,errors,input_tokens,output_tokens,cached_input_tokens,cache_creation_input_tokens,reasoning_tokens,cost_uc,cost_usd,unknown_cost_requests,partial_cost_requests\n",
    );
    for r in rows.iter().chain(std::iter::once(total)) {
        let group = if r.group.contains([',', '"', '\n']) {
            format!("\"{}\"", r.group.replace('"', "\"\""))
        } else {
            r.group.clone()
        };
        let _ = writeln!(
            out,
            "{group},{},{},{},{},{},{},{},{},{},{},{}",
            r.requests,
            r.errors,
            r.input_tokens,
            r.output_tokens,
            r.cached_input_tokens,
            r.cache_creation_input_tokens,
            r.reasoning_tokens,
            r.cost_uc,
            format_usd_exact(r.cost_uc),
            r.unknown_cost_requests,
            r.partial_cost_requests
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let today = parse_day("2026-11-23").unwrap();
        assert_eq!(parse_since("7d", today).unwrap(), "2026-11-17");
        assert_eq!(parse_since("1d", today).unwrap(), "2026-11-23");
        assert_eq!(parse_since("2026-01-02", today).unwrap(), "2026-01-02");
        assert!(parse_since("0d", today).is_err());
        assert!(parse_since("yesterday", today).is_err());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(-1000), "-1,000");
    }
}
