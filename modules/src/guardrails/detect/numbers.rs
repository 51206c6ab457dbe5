//! Numbers that identify: payment cards (Luhn), US social security numbers,
//! IBANs (mod-97) and IP addresses.

use super::{Extend, Pattern, after, before, is_word};
use crate::guardrails::Rule;

pub(super) fn patterns() -> Vec<Pattern> {
    vec![
        Pattern {
            rule: Rule::Iban,
            regex: r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)",
            check: check_iban,
            extend: Extend::None,
        },
        Pattern {
            rule: Rule::Card,
            regex: r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)",
            check: check_card,
            extend: Extend::None,
        },
        Pattern {
            rule: Rule::Ssn,
            regex: r"(?-u:\b)[0-9]{3}([- ])[0-9]{2}[- ][0-9]{4}(?-u:\b)",
            check: check_ssn,
            extend: Extend::None,
        },
        Pattern {
            rule: Rule::Ip,
            regex: r"(?-u:\b)[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?-u:\b)",
            check: check_ipv4,
            extend: Extend::None,
        },
        Pattern {
            rule: Rule::Ip,
            regex: r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]{1,36}[0-9A-Fa-f](?:%[0-9A-Za-z]{1,8})?",
            check: check_ipv6,
            extend: Extend::None,
        },
    ]
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                if d > 4 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// 13–19 digits passing Luhn, not one repeated digit. A run that fails as
/// a whole is tried without its trailing groups (a card followed by more
/// numbers).
fn check_card(hay: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    if before(hay, s).is_some_and(|b| b"+.-".contains(&b)) {
        return None;
    }
    let m = &hay.as_bytes()[s..e];
    let mut ends: Vec<usize> = vec![m.len()];
    ends.extend((1..m.len()).rev().filter(|&i| !m[i].is_ascii_digit()));
    ends.into_iter().find_map(|end| {
        let digits: Vec<u8> = m[..end]
            .iter()
            .copied()
            .filter(u8::is_ascii_digit)
            .collect();
        let ok = (13..=19).contains(&digits.len())
            && digits.iter().any(|d| *d != digits[0])
            && luhn(&digits);
        ok.then_some((s, s + end))
    })
}

/// AAA-GG-SSSS with the same separator twice; area not 000, 666 or 9xx,
/// group not 00, serial not 0000.
fn check_ssn(hay: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let m = &hay.as_bytes()[s..e];
    let dashed_on =
        after(hay, e) == Some(b'-') && after(hay, e + 1).is_some_and(|b| b.is_ascii_digit());
    if m[3] != m[6] || before(hay, s).is_some_and(|b| b"-.".contains(&b)) || dashed_on {
        return None;
    }
    let area = &hay[s..s + 3];
    let ok = area != "000"
        && area != "666"
        && !area.starts_with('9')
        && &hay[s + 4..s + 6] != "00"
        && &hay[s + 7..s + 11] != "0000";
    ok.then_some((s, e))
}

/// IBAN lengths by country (ISO 13616 registry).
fn iban_len(cc: &str) -> Option<usize> {
    Some(match cc {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "CR" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "GI" | "IL" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "IQ" | "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        "RU" => 33,
        _ => return None,
    })
}

/// The country's length (the match may run on into other words: it is cut
/// there, at a space) and mod-97 = 1.
fn check_iban(hay: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let m = &hay.as_bytes()[s..e];
    let len = iban_len(&hay[s..s + 2])?;
    let mut n = 0;
    let mut end = None;
    for (i, b) in m.iter().enumerate() {
        if *b != b' ' {
            n += 1;
            if n == len {
                end = Some(i + 1);
                break;
            }
        }
    }
    let end = end?;
    if end < m.len() && m[end] != b' ' {
        return None;
    }
    let compact: Vec<u8> = m[..end].iter().copied().filter(|b| *b != b' ').collect();
    let mut rem: u32 = 0;
    for b in compact[4..].iter().chain(&compact[..4]) {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some((s, s + end))
}

/// Four octets up to 255, not part of a longer dotted sequence (a version).
fn check_ipv4(hay: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    if hay[s..e]
        .split('.')
        .any(|o| o.parse::<u16>().map_or(true, |v| v > 255))
    {
        return None;
    }
    if before(hay, s).is_some_and(|b| b == b'.' || b == b'-') {
        return None;
    }
    if after(hay, e) == Some(b'.') && after(hay, e + 1).is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((s, e))
}

/// Parses as an IPv6 address (the zone apart), standing alone.
fn check_ipv6(hay: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    if before(hay, s).is_some_and(|b| is_word(b) || b == b':' || b == b'.')
        || after(hay, e).is_some_and(|b| b.is_ascii_hexdigit() || b == b':')
    {
        return None;
    }
    let m = &hay[s..e];
    let addr = m.split('%').next()?;
    let colons = addr.bytes().filter(|b| *b == b':').count();
    if !(addr.contains("::") || colons == 7) {
        return None;
    }
    addr.parse::<std::net::Ipv6Addr>().ok()?;
    Some((s, e))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{finds, misses};
    use crate::guardrails::Rule;

    #[test]
    fn cards_are_luhn_checked() {
        finds(
            Rule::Card,
            "card 4111 1111 1111 1111 exp",
            "4111 1111 1111 1111",
        );
        finds(Rule::Card, "4111-1111-1111-1111", "4111-1111-1111-1111");
        finds(Rule::Card, "amex 378282246310005.", "378282246310005");
        finds(Rule::Card, "4111111111111111 1234", "4111111111111111");
        misses(Rule::Card, "card 4111 1111 1111 1112 exp");
        misses(Rule::Card, "id 1234567890123 and 0000000000000");
        misses(Rule::Card, "[CARD_1]");
    }

    #[test]
    fn ssns_follow_the_number_rules() {
        finds(Rule::Ssn, "ssn 536-90-4399.", "536-90-4399");
        finds(Rule::Ssn, "ssn 536 90 4399", "536 90 4399");
        misses(
            Rule::Ssn,
            "000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000",
        );
        misses(Rule::Ssn, "536-90 4399 and 2024-536-90-4399");
    }

    #[test]
    fn ibans_are_mod97_checked() {
        finds(
            Rule::Iban,
            "iban DE89 3704 0044 0532 0130 00 thanks",
            "DE89 3704 0044 0532 0130 00",
        );
        finds(
            Rule::Iban,
            "GB82WEST12345698765432",
            "GB82WEST12345698765432",
        );
        misses(Rule::Iban, "DE89 3704 0044 0532 0130 01");
        misses(
            Rule::Iban,
            "ZZ89370400440532013000 and DE893704004405320130001",
        );
    }

    #[test]
    fn ip_addresses_v4_and_v6() {
        finds(Rule::Ip, "from 192.168.1.20, ok", "192.168.1.20");
        finds(
            Rule::Ip,
            "host 2001:db8::8a2e:370:7334 up",
            "2001:db8::8a2e:370:7334",
        );
        finds(Rule::Ip, "[fe80::1%eth0]", "fe80::1%eth0");
        misses(Rule::Ip, "version 1.2.3.4.5 and 256.1.1.1 and 10.0.0");
        misses(Rule::Ip, "at 12:30:45 and std::vec and 00:1A:2B:3C:4D:5E");
    }
}
