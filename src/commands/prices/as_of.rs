//! The built-in table's as-of date, and when `serve` calls it stale.
//!
//! List prices change; a binary that is never updated keeps billing at the
//! prices of its build. The table states the day its prices were checked
//! (`as_of` at its top), and `serve` warns when that day is further back
//! than `[ledger] builtin_prices_max_age_days`.

use time::Date;

/// The `as_of` date at the top of the built-in table. A unit test checks
/// that it is there and well formed.
pub fn builtin_as_of() -> Option<Date> {
    read_as_of(super::BUILTIN_PRICES)
}

fn read_as_of(table: &str) -> Option<Date> {
    let top: toml::Table = toml::from_str(table).ok()?;
    let text = top.get("as_of")?.as_str()?;
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// Whole days from `as_of` to `today` (negative when `as_of` is later).
pub fn age_days(as_of: Date, today: Date) -> i64 {
    (today - as_of).whole_days()
}

/// The warning `serve` logs when the table is older than `max_age_days`
/// (`0`: never warn).
pub fn staleness_warning(as_of: Date, today: Date, max_age_days: u64) -> Option<String> {
    let age = age_days(as_of, today);
    let limit = i64::try_from(max_age_days).unwrap_or(i64::MAX);
    (max_age_days > 0 && age > limit).then(|| {
        format!(
            "the built-in price table is dated {as_of}, {age} days ago (more than \
             ledger.builtin_prices_max_age_days = {max_age_days}): list prices may have changed; \
             update tollgate or load current prices with `tollgate prices import`"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn the_builtin_table_states_its_date() {
        let as_of =
            builtin_as_of().expect("as_of = \"YYYY-MM-DD\" at the top of builtin_prices.toml");
        assert!(as_of >= date!(2026 - 11 - 01), "{as_of}");
        assert_eq!(read_as_of("as_of = \"2026-02-30\""), None);
        assert_eq!(read_as_of("[[price]]"), None);
    }

    #[test]
    fn warns_only_past_the_limit() {
        let as_of = date!(2026 - 11 - 23);
        assert_eq!(age_days(as_of, date!(2027 - 02 - 21)), 90);
        assert_eq!(staleness_warning(as_of, date!(2027 - 02 - 21), 90), None);
        let w = staleness_warning(as_of, date!(2027 - 02 - 22), 90).unwrap();
        assert!(w.contains("dated 2026-11-23, 91 days ago"), "{w}");
        assert_eq!(staleness_warning(as_of, date!(2030 - 01 - 01), 0), None);
        assert_eq!(staleness_warning(as_of, date!(2026 - 11 - 01), 1), None);
    }
}
