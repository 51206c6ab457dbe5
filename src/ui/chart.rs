//! Charts drawn on the server as inline SVG: presentation by attributes
//! only (the pages' CSP forbids inline styles), a `<title>` per shape for
//! the browser's tooltip, heights computed in integers from µ¢.

use super::format::usd;
use super::html::esc;
use crate::ledger::report::{format_day, parse_day};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Colours of the stacked series, in order; the last is "other".
pub const PALETTE: [&str; 8] = [
    "#2463c6", "#e07b24", "#2f9e5b", "#b3261e", "#7b4bc4", "#8c6d3f", "#d4569b", "#6b7785",
];

/// `n` consecutive days starting at `since` (`YYYY-MM-DD`).
pub fn days_from(since: &str, n: usize) -> Vec<String> {
    let Ok(mut day) = parse_day(since) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(format_day(day));
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    out
}

/// One stacked series: a value per day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    pub name: String,
    pub per_day: Vec<i64>,
}

impl Series {
    /// Rows `(day, group, value)` as series over `days`, the biggest
    /// `PALETTE.len() - 1` groups each their own and the rest as "other".
    pub fn stack(days: &[String], rows: &[(String, String, i64)]) -> Vec<Series> {
        let index: BTreeMap<&str, usize> = days
            .iter()
            .enumerate()
            .map(|(i, d)| (d.as_str(), i))
            .collect();
        let mut by_group: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (day, group, value) in rows {
            let Some(&i) = index.get(day.as_str()) else {
                continue;
            };
            let slot = &mut by_group
                .entry(group.as_str())
                .or_insert_with(|| vec![0; days.len()])[i];
            *slot = slot.saturating_add(*value);
        }
        let mut groups: Vec<(&str, Vec<i64>)> = by_group.into_iter().collect();
        groups.sort_by_key(|(name, v)| {
            (
                std::cmp::Reverse(v.iter().fold(0i64, |a, b| a.saturating_add(*b))),
                *name,
            )
        });
        let own = PALETTE.len() - 1;
        let mut out: Vec<Series> = Vec::new();
        let mut other = vec![0i64; days.len()];
        for (n, (name, values)) in groups.into_iter().enumerate() {
            if n < own {
                out.push(Series {
                    name: name.to_string(),
                    per_day: values,
                });
            } else {
                for (o, v) in other.iter_mut().zip(values) {
                    *o = o.saturating_add(v);
                }
            }
        }
        if other.iter().any(|v| *v != 0) {
            out.push(Series {
                name: "other".into(),
                per_day: other,
            });
        }
        out
    }
}

const WIDTH: i64 = 900;
const HEIGHT: i64 = 240;
const LEFT: i64 = 8;
const TOP: i64 = 22;
const BOTTOM: i64 = 22;

/// A stacked bar chart of money (µ¢) per day: `svg#{id}`, then a legend.
pub fn stacked_bars(id: &str, days: &[String], series: &[Series]) -> String {
    let totals: Vec<i64> = (0..days.len())
        .map(|i| {
            series
                .iter()
                .fold(0i64, |a, s| a.saturating_add(s.per_day[i].max(0)))
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - 2 * LEFT) / (days.len().max(1) as i64);
    let bar_w = (slot * 3 / 4).max(1);
    let mut svg = String::with_capacity(4096 + days.len() * series.len() * 160);
    let _ = write!(
        svg,
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"Spend per day\">\
         <title>Spend per day (USD)</title>\
         <text x=\"{LEFT}\" y=\"14\" font-size=\"11\" fill=\"#5b6673\">max {} USD/day</text>\
         <line x1=\"{LEFT}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#d9dee4\"/>",
        usd(max),
        y0 = HEIGHT - BOTTOM,
        x1 = WIDTH - LEFT
    );
    for (i, day) in days.iter().enumerate() {
        let x = LEFT + slot * i as i64 + (slot - bar_w) / 2;
        let mut base = HEIGHT - BOTTOM;
        for (n, s) in series.iter().enumerate() {
            let v = s.per_day[i].max(0);
            if v == 0 {
                continue;
            }
            let h = ((i128::from(v) * i128::from(plot_h)) / i128::from(max)).max(1) as i64;
            base -= h;
            let _ = write!(
                svg,
                "<rect x=\"{x}\" y=\"{base}\" width=\"{bar_w}\" height=\"{h}\" fill=\"{}\">\
                 <title>{day} {}: {} USD</title></rect>",
                PALETTE[n.min(PALETTE.len() - 1)],
                esc(&s.name),
                usd(v)
            );
        }
        if i % 5 == 0 || i + 1 == days.len() {
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#5b6673\">{}</text>",
                x + bar_w / 2,
                HEIGHT - 6,
                esc(day.get(5..).unwrap_or(day))
            );
        }
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{TOP}\" width=\"{slot}\" height=\"{plot_h}\" fill=\"transparent\">\
             <title>{day}: {} USD</title></rect>",
            LEFT + slot * i as i64,
            usd(totals[i])
        );
    }
    svg.push_str("</svg><p class=\"legend\">");
    for (n, s) in series.iter().enumerate() {
        let _ = write!(
            svg,
            "<span><i class=\"swatch sw{}\"></i>{}</span>",
            n.min(PALETTE.len() - 1),
            esc(&s.name)
        );
    }
    if series.is_empty() {
        svg.push_str("<span class=\"muted\">No spend in these 30 days.</span>");
    }
    svg.push_str("</p>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_the_biggest_groups_and_the_rest_as_other() {
        let days = days_from("2026-11-29", 3);
        assert_eq!(days, ["2026-11-29", "2026-11-30", "2026-12-01"]);
        let mut rows = vec![];
        for g in 0..9 {
            rows.push(("2026-11-30".to_string(), format!("g{g}"), 10 + g as i64));
        }
        rows.push(("2025-01-01".into(), "old".into(), 999));
        let s = Series::stack(&days, &rows);
        assert_eq!(s.len(), 8);
        assert_eq!(s[0].name, "g8");
        assert_eq!(s[7].name, "other");
        assert_eq!(s[7].per_day, vec![0, 10 + 11, 0]);
        let svg = stacked_bars("spend-chart", &days, &s);
        assert!(svg.starts_with("<svg id=\"spend-chart\""));
        assert!(svg.contains("<title>2026-11-30 g8: 0.00000018 USD</title>"));
        assert!(!svg.contains("style="));
    }
}
