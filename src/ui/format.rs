//! How the dashboard shows numbers and times: money only through the
//! ledger's exact formatter (integer µ¢ → decimal string, never a float),
//! durations in milliseconds, times in UTC.

use crate::ledger::money::{format_usd_exact, group_thousands};

/// Exact USD, as `report costs --format json` prints it.
pub fn usd(uc: i64) -> String {
    format_usd_exact(uc)
}

/// `1234567` → `1,234,567`.
pub fn int(n: i64) -> String {
    let grouped = group_thousands(&n.unsigned_abs().to_string());
    if n < 0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

/// Microseconds as milliseconds with one decimal: `12345` → `12.3 ms`.
pub fn ms(us: i64) -> String {
    let tenths = (us + 50) / 100;
    format!("{}.{} ms", int(tenths / 10), tenths % 10)
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn time(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// `part / whole` as a percentage with two decimals (`0.00%` when `whole`
/// is 0), in integers.
pub fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "0.00%".into();
    }
    let bp = (i128::from(part) * 10_000 + i128::from(whole) / 2) / i128::from(whole);
    format!("{}.{:02}%", bp / 100, bp % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(usd(150_000_000), "1.50");
        assert_eq!(usd(123), "0.00000123");
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(ms(12_345), "12.3 ms");
        assert_eq!(ms(0), "0.0 ms");
        assert_eq!(time(86_400_000), "1970-01-02 00:00:00");
        assert_eq!(percent(1, 3), "33.33%");
        assert_eq!(percent(0, 0), "0.00%");
        assert_eq!(percent(2, 2), "100.00%");
    }
}
