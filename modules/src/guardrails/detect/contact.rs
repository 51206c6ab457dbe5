//! E-mail addresses and phone numbers.

use super::{Extend, Pattern, after, before, is_word};
use crate::guardrails::Rule;

pub(super) fn email() -> Vec<Pattern> {
    vec![Pattern {
        rule: Rule::Email,
        regex: r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,100}\.[A-Za-z]{2,24}(?-u:\b)",
        check: check_email,
        extend: Extend::None,
    }]
}

/// The whole local part (not the tail of a longer run) may not start or
/// end with a dot (a leading one is left out), and the domain's labels are not empty nor start or end with `-`.
fn check_email(hay: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    // A local part longer than the pattern allows is not cut to fit.
    if before(hay, s).is_some_and(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b)) {
        return None;
    }
    let m = &hay[s..e];
    let at = m.find('@')?;
    let lead = m[..at].len() - m[..at].trim_start_matches('.').len();
    let local = &m[lead..at];
    if local.is_empty() || local.ends_with('.') {
        return None;
    }
    let domain = &m[at + 1..];
    if domain
        .split('.')
        .any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))
    {
        return None;
    }
    Some((s + lead, e))
}

pub(super) fn phone() -> Vec<Pattern> {
    vec![
        // International: +CC then 2–6 groups.
        Pattern {
            rule: Rule::Phone,
            regex: r"\+[1-9][0-9]{0,2}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{1,4}){1,5}(?-u:\b)",
            check: |h, s, e| check_phone(h, s, e, 8, 15),
            extend: Extend::None,
        },
        // North American: (555) 123-4567, 555-123-4567, 1-800-555-1234.
        Pattern {
            rule: Rule::Phone,
            regex: r"(?:1[ .-])?(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}(?-u:\b)",
            check: |h, s, e| check_phone(h, s, e, 10, 11),
            extend: Extend::None,
        },
        // National with a trunk 0: 030 1234567, 06 12 34 56 78, 020 7946 0958.
        Pattern {
            rule: Rule::Phone,
            regex: r"0[0-9]{1,4}[ /.-]?[0-9]{2,4}(?:[ .-]?[0-9]{2,4}){1,3}(?-u:\b)",
            check: |h, s, e| check_phone(h, s, e, 9, 12),
            extend: Extend::None,
        },
    ]
}

/// Digits in range and standing alone: not inside a longer number, word or
/// dotted/dashed sequence (a date, a version, an IP address). A candidate
/// with too many digits is tried without its trailing groups (a phone
/// number followed by other numbers).
fn check_phone(hay: &str, s: usize, e: usize, min: usize, max: usize) -> Option<(usize, usize)> {
    if before(hay, s).is_some_and(|b| is_word(b) || b"+.-/".contains(&b)) {
        return None;
    }
    let m = &hay.as_bytes()[s..e];
    let mut ends = vec![m.len()];
    ends.extend(
        (1..m.len())
            .rev()
            .filter(|&i| !m[i].is_ascii_digit() && m[i - 1].is_ascii_digit()),
    );
    ends.into_iter().find_map(|end| {
        let digits = m[..end].iter().filter(|b| b.is_ascii_digit()).count();
        // Only a separator *and a digit* continue a number (a hit
        // beginning right after, e.g. a PEM block's dashes, does not).
        let next_digit = after(hay, s + end + 1).is_some_and(|b| b.is_ascii_digit());
        let continued = after(hay, s + end).is_some_and(|b| b"-/.".contains(&b)) && next_digit;
        ((min..=max).contains(&digits) && !continued).then_some((s, s + end))
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{finds, misses};
    use crate::guardrails::Rule;

    #[test]
    fn email_true_and_false_positives() {
        finds(
            Rule::Email,
            "write to jane.doe+x@mail.example.co.uk.",
            "jane.doe+x@mail.example.co.uk",
        );
        finds(Rule::Email, "<a@b.io>", "a@b.io");
        finds(Rule::Email, "x .jo@ex.com", "jo@ex.com");
        misses(Rule::Email, "user@localhost and a@b and @handle");
        misses(Rule::Email, "version 1.2@3.4 and foo@-bar.com");
        misses(Rule::Email, "[EMAIL_1]@[EMAIL_2]");
    }

    #[test]
    fn phone_true_and_false_positives() {
        finds(Rule::Phone, "call +1 415 555 2671 now", "+1 415 555 2671");
        finds(Rule::Phone, "call +44 20 7946 0958", "+44 20 7946 0958");
        finds(Rule::Phone, "(415) 555-2671", "(415) 555-2671");
        finds(Rule::Phone, "tel: 415-555-2671.", "415-555-2671");
        finds(Rule::Phone, "Tel. 030 12345678", "030 12345678");
        finds(Rule::Phone, "06 12 34 56 78", "06 12 34 56 78");
        misses(Rule::Phone, "order 4155552671 shipped");
        misses(Rule::Phone, "on 2024-01-15 at 10:30");
        misses(Rule::Phone, "ip 192.168.100.200 up");
        misses(Rule::Phone, "version 1.2.3 and 12 items");
        misses(Rule::Phone, "[PHONE_12]");
        finds(Rule::Phone, "030 1234567 536-90-4399", "030 1234567");
    }
}
