//! Exact decimal rescaling of JSON number literals.
//!
//! LiteLLM writes prices per token as JSON numbers (`1.5e-07`); tollgate
//! keeps prices per million tokens as decimal strings. Reading the number
//! through an `f64` would turn `1.5e-07` into `0.15000000000000002`, so the
//! literal's text is rescaled digit by digit instead: the value is its
//! digits times a power of ten, and moving the decimal point is exact.

/// Finest fraction a price may have: 8 decimals of USD (one µ¢).
const MAX_DECIMALS: usize = 8;

/// Largest power of ten a literal may carry; anything beyond is no price.
const MAX_EXPONENT: i64 = 40;

/// Why a number literal cannot be a price.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("{0} is not a number")]
    NotANumber(String),
    #[error("{0} is negative")]
    Negative(String),
    #[error("{literal} is {exact} USD, finer than 8 decimal places (1 µ¢)")]
    TooPrecise { literal: String, exact: String },
    #[error("{0} is out of range")]
    OutOfRange(String),
}

/// `literal × 10^places` as a plain decimal string (`"1.5e-07"`, 6 →
/// `"0.15"`), with no trailing fractional zeros and at most 8 decimals.
pub fn rescale(literal: &str, places: i64) -> Result<String, DecimalError> {
    let not_a_number = || DecimalError::NotANumber(literal.to_owned());
    if literal.starts_with('-') {
        return Err(DecimalError::Negative(literal.to_owned()));
    }
    let (mantissa, exponent) = match literal.find(['e', 'E']) {
        Some(at) => (&literal[..at], &literal[at + 1..]),
        None => (literal, "0"),
    };
    let exponent_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if exponent_digits.is_empty()
        || exponent_digits.len() > 4
        || !exponent_digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(not_a_number());
    }
    let exponent: i64 = exponent.parse().map_err(|_| not_a_number())?;
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || (mantissa.contains('.') && frac.is_empty())
        || !digits_only(whole)
        || !digits_only(frac)
    {
        return Err(not_a_number());
    }
    let scale = exponent + places - frac.len() as i64;
    let digits = format!("{whole}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok("0".into());
    }
    if !(-MAX_EXPONENT..=MAX_EXPONENT).contains(&scale) {
        return Err(DecimalError::OutOfRange(literal.to_owned()));
    }
    let exact = if scale >= 0 {
        format!("{digits}{}", "0".repeat(scale as usize))
    } else {
        let frac_len = scale.unsigned_abs() as usize;
        let padded = if digits.len() <= frac_len {
            format!("{}{digits}", "0".repeat(frac_len - digits.len() + 1))
        } else {
            digits.to_owned()
        };
        let (w, f) = padded.split_at(padded.len() - frac_len);
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            w.to_owned()
        } else {
            format!("{w}.{f}")
        }
    };
    let decimals = exact.split_once('.').map_or(0, |(_, f)| f.len());
    if decimals > MAX_DECIMALS {
        return Err(DecimalError::TooPrecise {
            literal: literal.to_owned(),
            exact,
        });
    }
    if exact.split('.').next().map_or(0, str::len) > 12 {
        return Err(DecimalError::OutOfRange(literal.to_owned()));
    }
    Ok(exact)
}

/// A decimal string without insignificant zeros (`"0.30"` → `"0.3"`), for
/// comparing and showing prices; anything else is returned unchanged.
pub fn normalize(s: &str) -> String {
    rescale(s, 0).unwrap_or_else(|_| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescales_exactly() {
        let cases = [
            ("1.5e-07", 6, "0.15"),
            ("1.5E-07", 6, "0.15"),
            ("3e-06", 6, "3"),
            ("3.75e-06", 6, "3.75"),
            ("1.25e-07", 6, "0.125"),
            ("2.5e-6", 6, "2.5"),
            ("6e-08", 6, "0.06"),
            ("0.000015", 6, "15"),
            ("0.0000025", 6, "2.5"),
            ("1e-05", 6, "10"),
            ("1e+00", 6, "1000000"),
            ("0", 6, "0"),
            ("0.0", 6, "0"),
            ("5.46875e-07", 6, "0.546875"),
            ("1e-14", 6, "0.00000001"),
            ("0.01", 3, "10"),
            ("0.0275", 3, "27.5"),
            ("15", 0, "15"),
            ("0.30", 0, "0.3"),
            ("2.50", 0, "2.5"),
            ("100", 0, "100"),
        ];
        for (literal, places, want) in cases {
            assert_eq!(rescale(literal, places).as_deref(), Ok(want), "{literal}");
        }
    }

    #[test]
    fn rejects_what_is_no_exact_price() {
        assert!(matches!(
            rescale("1e-15", 6),
            Err(DecimalError::TooPrecise { .. })
        ));
        assert_eq!(
            rescale("2.0000000000000002e-07", 6)
                .unwrap_err()
                .to_string(),
            "2.0000000000000002e-07 is 0.20000000000000002 USD, finer than 8 decimal places (1 µ¢)"
        );
        assert!(matches!(
            rescale("-1e-06", 6),
            Err(DecimalError::Negative(_))
        ));
        assert!(matches!(
            rescale("1e400", 6),
            Err(DecimalError::NotANumber(_) | DecimalError::OutOfRange(_))
        ));
        assert!(matches!(
            rescale("1e99", 6),
            Err(DecimalError::OutOfRange(_))
        ));
        for bad in [
            "", ".5", "5.", "1e", "1e+", "abc", "1.2.3", "0x10", "\"1\"", "1 ",
        ] {
            assert!(
                matches!(rescale(bad, 6), Err(DecimalError::NotANumber(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn normalizes_for_display() {
        assert_eq!(normalize("0.30"), "0.3");
        assert_eq!(normalize("12.50"), "12.5");
        assert_eq!(normalize("3"), "3");
        assert_eq!(normalize("x"), "x");
    }
}
