//! A key's limits as the CLI and the admin API change them: each field is
//! set, cleared or left alone, and checked the same way for both, so a
//! refused change names its field and stores nothing.

use crate::ledger::money::format_usd_exact;
use crate::ledger::prices::parse_usd_per_million;
use crate::store::access_sql::{BudgetWindow, KeyLimits};
use serde_json::{Map, Value, json};
use tollgate_modules::budget::Window;

/// What a change does to one field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Edit<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T: Copy> Edit<T> {
    fn over(self, old: Option<T>) -> Option<T> {
        match self {
            Edit::Keep => old,
            Edit::Clear => None,
            Edit::Set(v) => Some(v),
        }
    }
}

/// A change to some of a key's limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitsEdit {
    pub rpm: Edit<u32>,
    pub tpm: Edit<u64>,
    pub max_parallel: Edit<u32>,
    pub budget_uc: Edit<i64>,
    pub budget_window: Edit<BudgetWindow>,
}

/// The text that clears a field on the command line (`--rpm none`).
pub const CLEAR: &str = "none";

/// The limit fields of an admin API body, by name.
pub const FIELDS: [&str; 5] = ["rpm", "tpm", "max_parallel", "budget_usd", "budget_window"];

/// The command line's limit flags, as given (`None`: flag absent).
#[derive(Clone, Debug, Default)]
pub struct LimitFlags {
    pub rpm: Option<String>,
    pub tpm: Option<String>,
    pub max_parallel: Option<String>,
    pub budget_usd: Option<String>,
    pub budget_window: Option<String>,
}

impl LimitsEdit {
    pub fn is_empty(&self) -> bool {
        *self == LimitsEdit::default()
    }

    /// From command-line flags: a flag sets its field, `none` clears it.
    pub fn from_flags(f: &LimitFlags) -> Result<LimitsEdit, String> {
        fn text<T>(
            v: &Option<String>,
            parse: impl Fn(&str) -> Result<T, String>,
        ) -> Result<Edit<T>, String> {
            match v.as_deref() {
                None => Ok(Edit::Keep),
                Some(CLEAR) => Ok(Edit::Clear),
                Some(s) => parse(s).map(Edit::Set),
            }
        }
        Ok(LimitsEdit {
            rpm: text(&f.rpm, |s| count(s, u32::MAX.into()).map(|n| n as u32))
                .map_err(|e| format!("--rpm: {e}"))?,
            tpm: text(&f.tpm, |s| count(s, i64::MAX as u64)).map_err(|e| format!("--tpm: {e}"))?,
            max_parallel: text(&f.max_parallel, |s| {
                count(s, u32::MAX.into()).map(|n| n as u32)
            })
            .map_err(|e| format!("--max-parallel: {e}"))?,
            budget_uc: text(&f.budget_usd, budget).map_err(|e| format!("--budget-usd: {e}"))?,
            budget_window: text(&f.budget_window, window)
                .map_err(|e| format!("--budget-window: {e}"))?,
        })
    }

    /// Takes the limit fields out of an admin API body: an absent field is
    /// left alone, `null` clears it. Other members stay in `body`.
    pub fn take_from_json(body: &mut Map<String, Value>) -> Result<LimitsEdit, String> {
        fn field<T>(
            body: &mut Map<String, Value>,
            name: &str,
            parse: impl Fn(&Value) -> Result<T, String>,
        ) -> Result<Edit<T>, String> {
            match body.remove(name) {
                None => Ok(Edit::Keep),
                Some(Value::Null) => Ok(Edit::Clear),
                Some(v) => parse(&v).map(Edit::Set).map_err(|e| format!("{name}: {e}")),
            }
        }
        let number = |max: u64| {
            move |v: &Value| match v.as_u64() {
                Some(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("must be a whole number from 1 to {max}, or null")),
            }
        };
        let string = |v: &Value| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| "must be a string, or null".to_string())
        };
        Ok(LimitsEdit {
            rpm: field(body, "rpm", |v| {
                number(u32::MAX.into())(v).map(|n| n as u32)
            })?,
            tpm: field(body, "tpm", number(i64::MAX as u64))?,
            max_parallel: field(body, "max_parallel", |v| {
                number(u32::MAX.into())(v).map(|n| n as u32)
            })?,
            budget_uc: field(body, "budget_usd", |v| {
                string(v)
                    .map_err(|_| {
                        "must be a decimal string of USD (e.g. \"12.50\"), or null".to_string()
                    })
                    .and_then(|s| budget(&s))
            })?,
            budget_window: field(body, "budget_window", |v| {
                string(v).and_then(|s| window(&s))
            })?,
        })
    }

    /// `old` with this change made, if the result is consistent.
    pub fn apply(&self, old: KeyLimits) -> Result<KeyLimits, String> {
        let new = KeyLimits {
            rpm: self.rpm.over(old.rpm),
            tpm: self.tpm.over(old.tpm),
            max_parallel: self.max_parallel.over(old.max_parallel),
            budget_uc: self.budget_uc.over(old.budget_uc),
            budget_window: self.budget_window.over(old.budget_window),
        };
        if new.budget_window.is_some() && new.budget_uc.is_none() {
            return Err(
                "budget_window (--budget-window) needs a budget: set budget_usd (--budget-usd), \
                 or clear the window too"
                    .into(),
            );
        }
        Ok(new)
    }
}

/// A limit count: digits only, from 1 to `max`.
fn count(s: &str, max: u64) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) && (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a whole number from 1 to {max} (or `{CLEAR}` to clear)"
        )),
    }
}

/// A budget in USD, exactly: a decimal string of at most 8 places, in µ¢.
pub fn budget(s: &str) -> Result<i64, String> {
    parse_usd_per_million(s).map_err(|e| e.to_string())
}

fn window(s: &str) -> Result<BudgetWindow, String> {
    BudgetWindow::from_name(s)
        .ok_or_else(|| format!("{s:?} is not a budget window: day, month or total"))
}

/// The limits as shown and audited: the budget in µ¢ and as exact USD.
pub fn limits_json(l: &KeyLimits) -> Value {
    json!({
        "rpm": l.rpm,
        "tpm": l.tpm,
        "max_parallel": l.max_parallel,
        "budget_uc": l.budget_uc,
        "budget_usd": l.budget_uc.map(format_usd_exact),
        "budget_window": l.budget_window.map(BudgetWindow::as_str),
    })
}

/// The window a key's budget (and its spent amount) counts in: its own, or
/// the calendar month when it names none.
pub fn budget_window(w: Option<BudgetWindow>) -> Window {
    match w {
        Some(BudgetWindow::Day) => Window::Day,
        Some(BudgetWindow::Month) | None => Window::Month,
        Some(BudgetWindow::Total) => Window::Total,
    }
}

/// What a key has spent and holds reserved in its budget window, as shown
/// next to its limits. `from` says where the numbers come from: `"live"`
/// (the serving process: settled requests and reservations in flight) or
/// `"recorded"` (the costs committed to the database; reservations of a
/// running server are not visible there, so `reserved` is 0).
pub fn spent_json(l: &KeyLimits, spent_uc: i64, reserved_uc: i64, from: &str) -> Value {
    json!({
        "spent_window": budget_window(l.budget_window).as_str(),
        "spent_uc": spent_uc,
        "spent_usd": format_usd_exact(spent_uc),
        "reserved_uc": reserved_uc,
        "reserved_usd": format_usd_exact(reserved_uc),
        "spent_from": from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_sets_none_clears_absent_keeps() {
        let old = KeyLimits {
            rpm: Some(5),
            tpm: Some(7),
            ..KeyLimits::default()
        };
        let edit = LimitsEdit::from_flags(&LimitFlags {
            rpm: Some("none".into()),
            budget_usd: Some("1.5".into()),
            budget_window: Some("day".into()),
            ..LimitFlags::default()
        })
        .unwrap();
        let new = edit.apply(old).unwrap();
        assert_eq!(new.rpm, None);
        assert_eq!(new.tpm, Some(7));
        assert_eq!(new.budget_uc, Some(150_000_000));
        assert_eq!(new.budget_window, Some(BudgetWindow::Day));
    }

    #[test]
    fn refusals_name_the_field() {
        for (flags, field) in [
            (
                LimitFlags {
                    rpm: Some("-1".into()),
                    ..Default::default()
                },
                "--rpm",
            ),
            (
                LimitFlags {
                    tpm: Some("+3".into()),
                    ..Default::default()
                },
                "--tpm",
            ),
            (
                LimitFlags {
                    max_parallel: Some("0".into()),
                    ..Default::default()
                },
                "--max-parallel",
            ),
            (
                LimitFlags {
                    budget_usd: Some("0.000000001".into()),
                    ..Default::default()
                },
                "--budget-usd",
            ),
            (
                LimitFlags {
                    budget_window: Some("week".into()),
                    ..Default::default()
                },
                "--budget-window",
            ),
        ] {
            let err = LimitsEdit::from_flags(&flags).unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
