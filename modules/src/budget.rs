//! Budgets that cannot be overspent: reserve the worst case at admission,
//! settle to the actual cost when the request ends.
//!
//! A budget caps what a *scope* — one client key, one provider, or
//! everything (global) — may spend in a *window*: the UTC calendar day, the
//! UTC calendar month, or in total. A request is admitted only when, for
//! every scope it falls in that has a budget, `spent + reserved + worst_case
//! ≤ budget`; the check and the reservation happen under one lock, so
//! concurrent requests cannot all pass the same check and overspend together
//! (LiteLLM's check-then-increment can). When the request ends its
//! [`Hold`] is settled with the actual cost, which replaces the reservation;
//! a hold dropped unsettled (failure, client gone) releases it.
//!
//! Spent is tracked for every key and provider in all three windows, with or
//! without a budget, so a budget set at runtime is right at once. The store
//! of reservations is behind [`Reservations`] so that a shared store could
//! serve a fleet of gateways; [`InMemory`] is the single-process one. Spent
//! survives a restart because the caller reloads it ([`Reservations::load`])
//! from the costs it recorded.
//!
//! All amounts are integer micro-cents (µ¢, 10^-8 USD).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;

/// Micro-cents in one US dollar.
pub const UC_PER_USD: i64 = 100_000_000;

/// The window a budget is spent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    /// The UTC calendar day.
    Day,
    /// The UTC calendar month.
    Month,
    /// The scope's whole life.
    Total,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Month => "month",
            Window::Total => "total",
        }
    }
}

/// Whose spending a budget caps.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// A client key, by id.
    Key(String),
    /// A provider, by name.
    Provider(String),
    Global,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Key(_) => f.write_str("this API key"),
            Scope::Provider(name) => write!(f, "provider `{name}`"),
            Scope::Global => f.write_str("this gateway (global)"),
        }
    }
}

/// A budget: at most `limit_uc` spent per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub limit_uc: i64,
    pub window: Window,
}

/// One scope a request falls in, with its budget if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scoped {
    pub scope: Scope,
    pub budget: Option<Budget>,
}

/// The UTC calendar day and month a moment falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    /// Days since 1970-01-01.
    pub day: i64,
    /// `year * 12 + month - 1`.
    pub month: i64,
}

impl Period {
    /// The period of a Unix time in milliseconds.
    pub fn of_ms(ms: i64) -> Period {
        let day = ms.div_euclid(86_400_000);
        let (year, month, _) = civil_from_days(day);
        Period {
            day,
            month: year * 12 + i64::from(month) - 1,
        }
    }

    /// The current period by the system clock.
    pub fn now() -> Period {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Period::of_ms(ms)
    }
}

/// `(year, month 1–12, day 1–31)` of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What a scope has spent (in the day and month it was last seen in, and in
/// total) and holds reserved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spent {
    pub period: Option<Period>,
    pub day_uc: i64,
    pub month_uc: i64,
    pub total_uc: i64,
    pub reserved_uc: i64,
}

impl Spent {
    /// Starts a new day / month when `now` is later than the one counted.
    fn roll(&mut self, now: Period) {
        match self.period {
            Some(p) if p >= now => return,
            Some(p) => {
                if p.day != now.day {
                    self.day_uc = 0;
                }
                if p.month != now.month {
                    self.month_uc = 0;
                }
            }
            None => {}
        }
        self.period = Some(now);
    }

    /// Spent in `window` (after [`Spent::roll`]).
    pub fn in_window(&self, window: Window) -> i64 {
        match window {
            Window::Day => self.day_uc,
            Window::Month => self.month_uc,
            Window::Total => self.total_uc,
        }
    }

    /// Adds a cost incurred by a request admitted in `admitted`: it counts
    /// in the day and month of its admission only while they are current
    /// (as the daily cost rollup dates a request by its start).
    fn add(&mut self, uc: i64, admitted: Period) {
        self.total_uc = self.total_uc.saturating_add(uc);
        if let Some(p) = self.period {
            if p.month == admitted.month {
                self.month_uc = self.month_uc.saturating_add(uc);
            }
            if p.day == admitted.day {
                self.day_uc = self.day_uc.saturating_add(uc);
            }
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub scope: Scope,
    pub budget: Budget,
    pub spent_uc: i64,
    pub reserved_uc: i64,
    /// The request's worst-case cost.
    pub requested_uc: i64,
}

/// Where reservations and spent amounts are kept. Implementations must make
/// [`Reservations::reserve`] atomic: the check of every budget and the
/// reservation on every scope as one step.
pub trait Reservations: Send + Sync + std::fmt::Debug {
    /// Reserves `amount_uc` on every scope if every budget has room for it;
    /// otherwise reserves nothing and says which budget refused.
    fn reserve(&self, scopes: &[Scoped], amount_uc: i64, now: Period) -> Result<(), Refusal>;

    /// Takes `reserved_uc` off every scope's reservation and adds
    /// `spent_uc` (incurred by a request admitted in `admitted`) to its spent.
    fn settle(
        &self,
        scopes: &[Scope],
        reserved_uc: i64,
        spent_uc: i64,
        admitted: Period,
        now: Period,
    );

    /// Sets a scope's spent amounts (loaded from recorded costs at start).
    fn load(&self, scope: Scope, day_uc: i64, month_uc: i64, total_uc: i64, now: Period);

    /// A scope's spent amounts and reservation as of `now`.
    fn spent(&self, scope: &Scope, now: Period) -> Spent;

    /// Everything reserved now, across keys.
    fn reserved_total(&self) -> i64;
}

/// Reservations in this process's memory, under one mutex.
#[derive(Debug, Default)]
pub struct InMemory {
    scopes: Mutex<HashMap<Scope, Spent>>,
}

impl InMemory {
    fn lock(&self) -> MutexGuard<'_, HashMap<Scope, Spent>> {
        self.scopes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Reservations for InMemory {
    fn reserve(&self, scopes: &[Scoped], amount_uc: i64, now: Period) -> Result<(), Refusal> {
        let mut all = self.lock();
        for s in scopes {
            let spent = all.entry(s.scope.clone()).or_default();
            spent.roll(now);
            if let Some(budget) = s.budget {
                let used = spent.in_window(budget.window);
                let after = used
                    .saturating_add(spent.reserved_uc)
                    .saturating_add(amount_uc);
                if after > budget.limit_uc {
                    return Err(Refusal {
                        scope: s.scope.clone(),
                        budget,
                        spent_uc: used,
                        reserved_uc: spent.reserved_uc,
                        requested_uc: amount_uc,
                    });
                }
            }
        }
        for s in scopes {
            if let Some(spent) = all.get_mut(&s.scope) {
                spent.reserved_uc = spent.reserved_uc.saturating_add(amount_uc);
            }
        }
        Ok(())
    }

    fn settle(
        &self,
        scopes: &[Scope],
        reserved_uc: i64,
        spent_uc: i64,
        admitted: Period,
        now: Period,
    ) {
        let now = now.max(admitted);
        let mut all = self.lock();
        for scope in scopes {
            let spent = all.entry(scope.clone()).or_default();
            spent.roll(now);
            spent.reserved_uc = spent.reserved_uc.saturating_sub(reserved_uc).max(0);
            spent.add(spent_uc, admitted);
        }
    }

    fn load(&self, scope: Scope, day_uc: i64, month_uc: i64, total_uc: i64, now: Period) {
        let mut all = self.lock();
        let spent = all.entry(scope).or_default();
        spent.roll(now);
        spent.day_uc = day_uc;
        spent.month_uc = month_uc;
        spent.total_uc = total_uc;
    }

    fn spent(&self, scope: &Scope, now: Period) -> Spent {
        let mut s = self.lock().get(scope).copied().unwrap_or_default();
        s.roll(now);
        s
    }

    fn reserved_total(&self) -> i64 {
        self.lock()
            .iter()
            .filter(|(scope, _)| matches!(scope, Scope::Global))
            .map(|(_, s)| s.reserved_uc)
            .sum()
    }
}

/// The budgets shared by all requests.
#[derive(Debug, Clone)]
pub struct Budgets {
    store: Arc<dyn Reservations>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets::new(Arc::new(InMemory::default()))
    }
}

impl Budgets {
    pub fn new(store: Arc<dyn Reservations>) -> Budgets {
        Budgets { store }
    }

    /// Admits a request falling in `scopes` whose cost is at most
    /// `worst_case_uc`, reserving that much on each scope until the hold
    /// is settled or dropped.
    pub fn admit(&self, scopes: Vec<Scoped>, worst_case_uc: i64) -> Result<Hold, Refusal> {
        self.admit_at(scopes, worst_case_uc, Period::now())
    }

    pub fn admit_at(
        &self,
        scopes: Vec<Scoped>,
        worst_case_uc: i64,
        now: Period,
    ) -> Result<Hold, Refusal> {
        let worst_case_uc = worst_case_uc.max(0);
        self.store.reserve(&scopes, worst_case_uc, now)?;
        Ok(Hold {
            store: self.store.clone(),
            scopes: scopes.into_iter().map(|s| s.scope).collect(),
            reserved_uc: worst_case_uc,
            admitted: now,
            settled: false,
        })
    }

    /// Sets a scope's spent amounts, as recorded before this process started.
    pub fn load(&self, scope: Scope, day_uc: i64, month_uc: i64, total_uc: i64) {
        self.store
            .load(scope, day_uc, month_uc, total_uc, Period::now());
    }

    /// `(spent, reserved)` of a scope in `window`, now.
    pub fn usage(&self, scope: &Scope, window: Window) -> (i64, i64) {
        self.usage_at(scope, window, Period::now())
    }

    pub fn usage_at(&self, scope: &Scope, window: Window, now: Period) -> (i64, i64) {
        let s = self.store.spent(scope, now);
        (s.in_window(window), s.reserved_uc)
    }

    /// Everything reserved by requests in flight.
    pub fn reserved_total(&self) -> i64 {
        self.store.reserved_total()
    }
}

/// An admitted request's reservation. Settle it with the actual cost;
/// dropping it unsettled releases the reservation and spends nothing.
#[derive(Debug)]
pub struct Hold {
    store: Arc<dyn Reservations>,
    scopes: Vec<Scope>,
    reserved_uc: i64,
    admitted: Period,
    settled: bool,
}

impl Hold {
    /// The worst case reserved.
    pub fn reserved_uc(&self) -> i64 {
        self.reserved_uc
    }

    /// Replaces the reservation by the actual cost.
    pub fn settle(self, actual_uc: i64) {
        self.settle_at(actual_uc, Period::now());
    }

    /// Replaces the reservation by the actual cost, charged to every scope
    /// but the providers other than `answered_by` (targets not used for the
    /// answer are only released).
    pub fn settle_to(mut self, actual_uc: i64, answered_by: Option<&str>) {
        let now = Period::now();
        let (charged, released): (Vec<Scope>, Vec<Scope>) = std::mem::take(&mut self.scopes)
            .into_iter()
            .partition(|s| match s {
                Scope::Provider(p) => answered_by.is_none_or(|a| a == p),
                _ => true,
            });
        self.settled = true;
        let (reserved, admitted) = (self.reserved_uc, self.admitted);
        self.store
            .settle(&charged, reserved, actual_uc.max(0), admitted, now);
        if !released.is_empty() {
            self.store.settle(&released, reserved, 0, admitted, now);
        }
    }

    pub fn settle_at(mut self, actual_uc: i64, now: Period) {
        self.settled = true;
        self.store.settle(
            &self.scopes,
            self.reserved_uc,
            actual_uc.max(0),
            self.admitted,
            now,
        );
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.settled {
            let now = Period::now();
            self.store
                .settle(&self.scopes, self.reserved_uc, 0, self.admitted, now);
        }
    }
}

/// What to do when a request under a budget names a model with no price.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownPrice {
    /// Refuse it: its cost could not be bounded.
    #[default]
    Refuse,
    /// Reserve (and, when its cost stays unknown, spend) at the fallback price.
    Fallback,
}

/// A provider's budget in `[modules.budget.providers]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderBudget {
    /// USD, as an exact decimal string.
    pub usd: String,
    #[serde(default = "default_window")]
    pub window: Window,
}

fn default_window() -> Window {
    Window::Month
}

/// `[modules.budget]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    /// USD for all traffic, as an exact decimal string; absent: none.
    pub global_usd: Option<String>,
    pub global_window: Window,
    /// Provider name → its budget.
    pub providers: BTreeMap<String, ProviderBudget>,
    /// The output tokens assumed when a request names no `max_tokens`.
    pub default_max_tokens: u64,
    pub unknown_price: UnknownPrice,
    /// USD per million tokens, used with `unknown_price = "fallback"`.
    pub fallback_input_usd_per_million: Option<String>,
    pub fallback_output_usd_per_million: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            global_usd: None,
            global_window: Window::Month,
            providers: BTreeMap::new(),
            default_max_tokens: 4096,
            unknown_price: UnknownPrice::Refuse,
            fallback_input_usd_per_million: None,
            fallback_output_usd_per_million: None,
        }
    }
}

/// The most output tokens a request may be assumed to produce.
pub const MAX_DEFAULT_MAX_TOKENS: u64 = 100_000_000;

impl Settings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(usd) = &self.global_usd {
            parse_usd(usd).map_err(|e| Invalid::new("global_usd", e))?;
        }
        for (name, p) in &self.providers {
            parse_usd(&p.usd).map_err(|e| Invalid::new("providers", format!("{name}: {e}")))?;
        }
        if self.default_max_tokens > MAX_DEFAULT_MAX_TOKENS {
            return Err(Invalid::new(
                "default_max_tokens",
                format!("must be between 0 and {MAX_DEFAULT_MAX_TOKENS}"),
            ));
        }
        for (field, v) in [
            (
                "fallback_input_usd_per_million",
                &self.fallback_input_usd_per_million,
            ),
            (
                "fallback_output_usd_per_million",
                &self.fallback_output_usd_per_million,
            ),
        ] {
            match v {
                Some(s) => {
                    parse_usd(s).map_err(|e| Invalid::new(field, e))?;
                }
                None if self.unknown_price == UnknownPrice::Fallback => {
                    return Err(Invalid::new(
                        field,
                        "must be set when unknown_price = \"fallback\"",
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The global budget (validated settings parse).
    pub fn global(&self) -> Option<Budget> {
        let limit_uc = parse_usd(self.global_usd.as_deref()?).ok()?;
        Some(Budget {
            limit_uc,
            window: self.global_window,
        })
    }

    /// `provider`'s budget.
    pub fn provider(&self, provider: &str) -> Option<Budget> {
        let p = self.providers.get(provider)?;
        Some(Budget {
            limit_uc: parse_usd(&p.usd).ok()?,
            window: p.window,
        })
    }

    /// The fallback `(input, output)` rates in µ¢ per million tokens, when
    /// the policy is to use them.
    pub fn fallback_rates(&self) -> Option<(i64, i64)> {
        if self.unknown_price != UnknownPrice::Fallback {
            return None;
        }
        let input = parse_usd(self.fallback_input_usd_per_million.as_deref()?).ok()?;
        let output = parse_usd(self.fallback_output_usd_per_million.as_deref()?).ok()?;
        Some((input, output))
    }
}

/// An exact non-negative decimal string of USD (at most 8 places) in µ¢:
/// `"12.50"` → 1,250,000,000. No floats, signs, exponents or spaces.
pub fn parse_usd(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a decimal string of USD such as \"12.50\"");
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || (s.contains('.') && frac.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if frac.len() > 8 {
        return Err(format!("{s:?} has more than 8 decimal places"));
    }
    let padded = format!("{whole}{frac:0<8}");
    padded
        .bytes()
        .try_fold(0i64, |acc, d| {
            acc.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        })
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The exact USD of an amount in µ¢: `150_000_000` → `"1.50"`,
/// `123` → `"0.00000123"`.
pub fn format_usd_exact(uc: i64) -> String {
    let sign = if uc < 0 { "-" } else { "" };
    let abs = uc.unsigned_abs();
    let per = UC_PER_USD.unsigned_abs();
    let frac = format!("{:08}", abs % per);
    let kept = frac.trim_end_matches('0').len().max(2);
    format!("{sign}{}.{}", abs / per, &frac[..kept])
}

/// The worst-case cost of `tokens` at `uc_per_million`, rounded up to a
/// whole µ¢ (saturating).
pub fn worst_case_uc(parts: &[(u64, i64)]) -> i64 {
    let total: i128 = parts
        .iter()
        .map(|&(tokens, rate)| i128::from(tokens) * i128::from(rate.max(0)))
        .sum();
    let uc = (total + 999_999) / 1_000_000;
    i64::try_from(uc).unwrap_or(i64::MAX)
}

/// Why the budget module refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BudgetRefusal {
    /// A budget has no room for the request's worst case.
    Exceeded(Refusal),
    /// A target has no price, so the request's cost cannot be bounded, and
    /// the policy (`unknown_price = "refuse"`) is to refuse.
    UnknownPrice { model: String, scope: Scope },
}

fn window_name(w: Window) -> &'static str {
    match w {
        Window::Day => "daily (UTC day)",
        Window::Month => "monthly (UTC calendar month)",
        Window::Total => "total",
    }
}

impl BudgetRefusal {
    /// The client-facing message: the scope and window, and for the
    /// client's own key the amounts; never a secret or a key id.
    pub fn message(&self) -> String {
        match self {
            BudgetRefusal::Exceeded(r) => {
                let window = window_name(r.budget.window);
                let amounts = match r.scope {
                    Scope::Key(_) => format!(
                        " (budget ${}, spent ${}, reserved by requests in flight ${}; this \
                         request could cost up to ${})",
                        format_usd_exact(r.budget.limit_uc),
                        format_usd_exact(r.spent_uc),
                        format_usd_exact(r.reserved_uc),
                        format_usd_exact(r.requested_uc),
                    ),
                    _ => String::new(),
                };
                format!(
                    "Budget exceeded: the {window} budget of {} has no room for this \
                     request{amounts}.",
                    r.scope
                )
            }
            BudgetRefusal::UnknownPrice { model, scope } => format!(
                "The model `{model}` has no price on this gateway, so its cost cannot be \
                 bounded under the budget of {scope}; the request is refused."
            ),
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            BudgetRefusal::Exceeded(_) => "budget_exceeded",
            BudgetRefusal::UnknownPrice { .. } => "budget_price_unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Period = Period { day: 100, month: 3 };

    fn key(id: &str, limit_uc: Option<i64>, window: Window) -> Scoped {
        Scoped {
            scope: Scope::Key(id.into()),
            budget: limit_uc.map(|limit_uc| Budget { limit_uc, window }),
        }
    }

    #[test]
    fn reserve_refuse_settle_release() {
        let b = Budgets::default();
        let k = || vec![key("k", Some(100), Window::Total)];
        let a = b.admit_at(k(), 60, P).unwrap();
        let r = b.admit_at(k(), 50, P).unwrap_err();
        assert_eq!((r.spent_uc, r.reserved_uc, r.requested_uc), (0, 60, 50));
        // Refused: nothing reserved by it.
        assert_eq!(b.usage(&Scope::Key("k".into()), Window::Total), (0, 60));
        a.settle(30);
        assert_eq!(b.usage(&Scope::Key("k".into()), Window::Total), (30, 0));
        let c = b.admit_at(k(), 70, P).unwrap();
        drop(c);
        assert_eq!(b.usage(&Scope::Key("k".into()), Window::Total), (30, 0));
        assert!(b.admit_at(k(), 71, P).is_err());
        b.admit_at(k(), 70, P).unwrap().settle(70);
        assert!(b.admit_at(k(), 1, P).is_err());
        // Zero-cost requests still fit a budget that is exactly used up.
        b.admit_at(k(), 0, P).unwrap();
    }

    #[test]
    fn spent_is_tracked_without_a_budget_and_windows_roll() {
        let b = Budgets::default();
        b.admit_at(vec![key("k", None, Window::Day)], 500, P)
            .unwrap()
            .settle_at(40, P);
        let next_day = Period {
            day: P.day + 1,
            month: P.month,
        };
        let day = || vec![key("k", Some(50), Window::Day)];
        let month = || vec![key("k", Some(50), Window::Month)];
        assert!(b.admit_at(month(), 11, next_day).is_err());
        b.admit_at(day(), 50, next_day).unwrap();
        let next_month = Period {
            day: P.day + 31,
            month: P.month + 1,
        };
        b.admit_at(month(), 50, next_month).unwrap();
    }

    #[test]
    fn every_budget_in_scope_must_have_room() {
        let b = Budgets::default();
        let scopes = |global: i64| {
            vec![
                key("k", None, Window::Total),
                Scoped {
                    scope: Scope::Provider("p".into()),
                    budget: None,
                },
                Scoped {
                    scope: Scope::Global,
                    budget: Some(Budget {
                        limit_uc: global,
                        window: Window::Month,
                    }),
                },
            ]
        };
        let held = b.admit_at(scopes(100), 80, P).unwrap();
        assert_eq!(b.reserved_total(), 80);
        let r = b.admit_at(scopes(100), 30, P).unwrap_err();
        assert_eq!(r.scope, Scope::Global);
        // The refused request reserved nothing on the key either.
        assert_eq!(b.usage(&Scope::Key("k".into()), Window::Total), (0, 80));
        held.settle_at(10, P);
        assert_eq!(
            b.usage_at(&Scope::Provider("p".into()), Window::Month, P),
            (10, 0)
        );
        assert_eq!(b.reserved_total(), 0);
    }

    #[test]
    fn many_threads_never_overspend_and_fill_the_budget() {
        // 64 threads × 20 attempts, each reserving 7 and spending 5..=7,
        // against a budget of 1000: the spent never exceeds the budget, and
        // the budget ends fuller than one reservation's room.
        let b = Budgets::default();
        const LIMIT: i64 = 1000;
        let limit = LIMIT;
        let scopes = || vec![key("k", Some(LIMIT), Window::Total)];
        let threads: Vec<_> = (0..64)
            .map(|t| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut admitted = 0;
                    for i in 0..20 {
                        if let Ok(h) = b.admit_at(scopes(), 7, P) {
                            admitted += 1;
                            let (spent, reserved) = b.usage(&Scope::Key("k".into()), Window::Total);
                            assert!(spent + reserved <= limit, "{spent} + {reserved}");
                            if (t + i) % 9 == 0 {
                                drop(h);
                            } else {
                                h.settle(5 + (t + i) % 3);
                            }
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let (spent, reserved) = b.usage(&Scope::Key("k".into()), Window::Total);
        assert_eq!(reserved, 0);
        assert!(spent <= limit, "{spent}");
        assert!(admitted >= limit / 7, "{admitted}");
        // Exactly the room left is admitted, not a µ¢ more.
        assert!(b.admit_at(scopes(), limit - spent + 1, P).is_err());
        b.admit_at(scopes(), limit - spent, P)
            .unwrap()
            .settle(limit - spent);
        assert_eq!(b.usage(&Scope::Key("k".into()), Window::Total), (limit, 0));
    }

    #[test]
    fn periods_are_utc_calendar() {
        // 2026-11-29T18:00Z
        let p = Period::of_ms(1_795_975_200_000);
        assert_eq!(civil_from_days(p.day), (2026, 11, 29));
        assert_eq!(p.month, 2026 * 12 + 10);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn usd_is_parsed_exactly() {
        assert_eq!(parse_usd("12.50"), Ok(1_250_000_000));
        assert_eq!(parse_usd("0.00000001"), Ok(1));
        assert_eq!(parse_usd("3"), Ok(300_000_000));
        for bad in ["", "-1", "1.", ".5", "1e3", " 1", "1.000000001", "ten"] {
            assert!(parse_usd(bad).is_err(), "{bad}");
        }
        assert_eq!(format_usd_exact(150_000_000), "1.50");
        assert_eq!(format_usd_exact(123), "0.00000123");
        assert_eq!(worst_case_uc(&[(1, 1)]), 1);
        assert_eq!(worst_case_uc(&[(1_000_000, 7), (0, 9)]), 7);
        assert_eq!(worst_case_uc(&[(100, 1_000_000_000)]), 100_000);
    }

    #[test]
    fn settings_validate_name_the_member() {
        let s = Settings {
            global_usd: Some("1.5x".into()),
            ..Settings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "global_usd");
        let s = Settings {
            unknown_price: UnknownPrice::Fallback,
            ..Settings::default()
        };
        assert_eq!(
            s.validate().unwrap_err().field,
            "fallback_input_usd_per_million"
        );
        let s = Settings {
            unknown_price: UnknownPrice::Fallback,
            fallback_input_usd_per_million: Some("1".into()),
            fallback_output_usd_per_million: Some("2".into()),
            ..Settings::default()
        };
        assert_eq!(s.fallback_rates(), Some((100_000_000, 200_000_000)));
        Settings::default().validate().unwrap();
    }
}
