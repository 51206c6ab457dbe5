//! Money as integers.
//!
//! Every amount on the money path is an `i64` count of micro-cents (µ¢;
//! 1 µ¢ = 10^-6 cent = 10^-8 USD). Floating point never touches money: a
//! float cannot represent most decimal prices exactly, and summing millions of
//! slightly-wrong per-request costs drifts. Rounding happens in exactly one
//! place, [`div_round_half_even`], so it is the same everywhere.

/// Micro-cents in one US dollar.
pub const UC_PER_USD: i64 = 100_000_000;
/// Micro-cents in one US cent.
pub const UC_PER_CENT: i64 = 1_000_000;

/// Divides and rounds to the nearest integer, ties to even (banker's
/// rounding), so rounding errors do not drift one way over many amounts.
///
/// `denominator` must be positive; a zero or negative denominator is a bug in
/// the caller and panics. Correct for negative numerators, and cannot
/// overflow for any numerator.
pub fn div_round_half_even(numerator: i128, denominator: i128) -> i128 {
    assert!(
        denominator > 0,
        "div_round_half_even: denominator must be > 0"
    );
    let floor = numerator.div_euclid(denominator);
    // 0 <= rem < denominator, so `denominator - rem` cannot overflow where
    // `2 * rem` could.
    let rem = numerator.rem_euclid(denominator);
    let above_half = denominator - rem;
    // Rounding up needs rem > 0, hence denominator >= 2 and |floor| <= MAX / 2.
    if rem > above_half || (rem == above_half && floor % 2 != 0) {
        floor + 1
    } else {
        floor
    }
}

/// Formats as dollars and cents for people: `"$1,234,567.89"`, `"-$1.50"`.
///
/// Rounds half-to-even to the cent; an amount that rounds to zero prints as
/// `"$0.00"`, never `"-$0.00"`.
pub fn format_usd(uc: i64) -> String {
    let cents = div_round_half_even(i128::from(uc), i128::from(UC_PER_CENT));
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let dollars = group_thousands(&(cents / 100).to_string());
    format!("{sign}${dollars}.{:02}", cents % 100)
}

/// Formats the exact USD value with no rounding, for machine-readable output:
/// `123` → `"0.00000123"`, `150_000_000` → `"1.50"`, `-5` → `"-0.00000005"`.
///
/// Eight decimals (one µ¢), trailing zeros trimmed down to two.
pub fn format_usd_exact(uc: i64) -> String {
    let sign = if uc < 0 { "-" } else { "" };
    let abs = uc.unsigned_abs();
    let per_usd = UC_PER_USD.unsigned_abs();
    let frac = format!("{:08}", abs % per_usd);
    let kept = frac.trim_end_matches('0').len().max(2);
    format!("{sign}{}.{}", abs / per_usd, &frac[..kept])
}

/// Converts whole cents to micro-cents, or `None` if that overflows.
pub fn cents_to_uc(cents: i64) -> Option<i64> {
    cents.checked_mul(UC_PER_CENT)
}

/// `1234567` → `1,234,567` (digits only, no sign).
pub fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rounds_half_to_even() {
        let cases = [
            (5, 10, 0),
            (15, 10, 2),
            (25, 10, 2),
            (35, 10, 4),
            (14, 10, 1),
            (16, 10, 2),
            (-5, 10, 0),
            (-15, 10, -2),
            (-25, 10, -2),
            (-14, 10, -1),
            (-16, 10, -2),
            (0, 7, 0),
            (7, 7, 1),
            (-7, 7, -1),
            (1, 3, 0),
            (2, 3, 1),
            (-2, 3, -1),
            (i128::MAX, 1, i128::MAX),
            (i128::MIN, 1, i128::MIN),
            (i128::MAX, 2, i128::MAX / 2 + 1),
            (i128::MIN, 2, i128::MIN / 2),
            (i128::MAX, i128::MAX, 1),
            (i128::MIN, i128::MAX, -1),
        ];
        for (n, d, want) in cases {
            assert_eq!(div_round_half_even(n, d), want, "{n} / {d}");
        }
    }

    #[test]
    #[should_panic(expected = "denominator must be > 0")]
    fn zero_denominator_panics() {
        div_round_half_even(1, 0);
    }

    #[test]
    fn formats_usd() {
        let cases = [
            (0, "$0.00"),
            (1, "$0.00"),
            (-1, "$0.00"),
            (500_000, "$0.00"),
            (500_001, "$0.01"),
            (1_500_000, "$0.02"),
            (2_500_000, "$0.02"),
            (1_235_000_000, "$12.35"),
            (1_234_500_000, "$12.34"),
            (1_234_500_001, "$12.35"),
            (-150_000_000, "-$1.50"),
            (-1_500_000, "-$0.02"),
            (100_000_000_000, "$1,000.00"),
            (99_999_999_999, "$1,000.00"),
            (123_456_789_000_000, "$1,234,567.89"),
            (12_345_678_900_000, "$123,456.79"),
            (-123_456_789_000_000, "-$1,234,567.89"),
            (i64::MAX, "$92,233,720,368.55"),
            (i64::MIN, "-$92,233,720,368.55"),
        ];
        for (uc, want) in cases {
            assert_eq!(format_usd(uc), want, "{uc}");
        }
    }

    #[test]
    fn formats_usd_exact() {
        let cases = [
            (0, "0.00"),
            (123, "0.00000123"),
            (150_000_000, "1.50"),
            (100_000_000, "1.00"),
            (1_000_000, "0.01"),
            (100_000, "0.001"),
            (123_456_789_012, "1234.56789012"),
            (-5, "-0.00000005"),
            (-150_000_000, "-1.50"),
            (i64::MAX, "92233720368.54775807"),
            (i64::MIN, "-92233720368.54775808"),
        ];
        for (uc, want) in cases {
            assert_eq!(format_usd_exact(uc), want, "{uc}");
        }
    }

    #[test]
    fn converts_cents() {
        assert_eq!(cents_to_uc(0), Some(0));
        assert_eq!(cents_to_uc(150), Some(150_000_000));
        assert_eq!(cents_to_uc(-3), Some(-3_000_000));
        assert_eq!(cents_to_uc(i64::MAX / UC_PER_CENT + 1), None);
        assert_eq!(cents_to_uc(i64::MIN), None);
        assert_eq!(UC_PER_USD, 100 * UC_PER_CENT);
    }

    /// Picks, among the three integers around the quotient, the one nearest
    /// to it, preferring the even one on a tie.
    fn reference(n: i128, d: i128) -> i128 {
        let t = n / d;
        let mut best = t - 1;
        for q in [t, t + 1] {
            let (dq, db) = ((n - q * d).abs(), (n - best * d).abs());
            if dq < db || (dq == db && q % 2 == 0) {
                best = q;
            }
        }
        best
    }

    proptest! {
        #[test]
        fn matches_reference(
            n in -1_000_000_000_000_000_000_000_000_000_000i128..=1_000_000_000_000_000_000_000_000_000_000,
            d in 1i128..=1_000_000_000_000,
        ) {
            let q = div_round_half_even(n, d);
            prop_assert_eq!(q, reference(n, d));
            // Within half a unit of the exact quotient: |n/d - q| <= 1/2.
            prop_assert!(2 * (n - q * d).abs() <= d);
        }

        #[test]
        fn matches_reference_small(n in -1000i128..=1000, d in 1i128..=20) {
            prop_assert_eq!(div_round_half_even(n, d), reference(n, d));
        }

        #[test]
        fn format_usd_shows_rounded_cents(uc in any::<i64>()) {
            let s = format_usd(uc);
            let cents = div_round_half_even(i128::from(uc), i128::from(UC_PER_CENT));
            prop_assert_eq!(s.starts_with('-'), cents < 0);
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(digits.parse::<u128>().ok(), Some(cents.unsigned_abs()));
        }
    }
}
