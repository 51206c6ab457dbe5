//! Credentials: provider and tollgate API keys, cloud and chat tokens,
//! JWTs and PEM private keys. Each is found by a bounded prefix and then
//! extended over its token characters (a key's length does not matter).

use super::{Extend, Pattern, before, is_word};
use crate::guardrails::Rule;

fn token(b: u8) -> bool {
    is_word(b) || b == b'-'
}

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn jwt(b: u8) -> bool {
    token(b) || b == b'.'
}

fn base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+/=".contains(&b)
}

fn secret(regex: &'static str, check: super::Check, extend: fn(u8) -> bool) -> Pattern {
    Pattern {
        rule: Rule::Secret,
        regex,
        check,
        extend: Extend::Token(extend),
    }
}

pub(super) fn patterns() -> Vec<Pattern> {
    vec![
        // OpenAI sk-…, sk-proj-…, Anthropic sk-ant-…
        secret(r"sk-[A-Za-z0-9_-]{20}", random_body, token),
        // tollgate client and admin keys.
        secret(r"tga?-[A-Za-z0-9_-]{40}", random_body, token),
        // AWS access key ids.
        secret(r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}", standalone, alnum),
        // An AWS secret access key named as such.
        secret(
            r#"(?i:aws_?secret_?(?:access_?)?key)["']?[ \t]{0,4}[:=][ \t]{0,4}["']?[A-Za-z0-9/+]{40}"#,
            standalone,
            base64,
        ),
        // GitHub tokens.
        secret(r"gh[pousr]_[A-Za-z0-9]{36}", standalone, alnum),
        secret(r"github_pat_[A-Za-z0-9_]{22}", standalone, token),
        // Google API keys.
        secret(r"AIza[0-9A-Za-z_-]{35}", standalone, token),
        // Slack tokens.
        secret(r"xox[abposr]-[0-9A-Za-z-]{10}", random_body, |b| {
            alnum(b) || b == b'-'
        }),
        // JWTs: the header must decode to a JSON object naming `alg`.
        secret(r"eyJ[A-Za-z0-9_-]{2,160}\.[A-Za-z0-9_-]{2}", check_jwt, jwt),
        Pattern {
            rule: Rule::Secret,
            regex: r"-----BEGIN (?:[A-Z0-9]{1,10} ){0,3}PRIVATE KEY-----",
            check: |_, s, e| Some((s, e)),
            extend: Extend::Pem,
        },
    ]
}

/// The footer a PEM hit extends to (inclusive).
pub(crate) const PEM_END: &str = r"-----END (?:[A-Z0-9]{1,10} ){0,3}PRIVATE KEY-----";
/// The longest footer.
pub(crate) const PEM_END_MAX: usize = 70;

/// Not in the middle of a word.
fn standalone(hay: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    (!before(hay, s).is_some_and(token)).then_some((s, e))
}

/// Standing alone, and the body looks random (a digit or a capital), so
/// that `sk-learn-and-other-words` is not a key.
fn random_body(hay: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let body = hay[s..e].split_once('-')?.1;
    let random = body
        .bytes()
        .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    if random { standalone(hay, s, e) } else { None }
}

fn check_jwt(hay: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    standalone(hay, s, e)?;
    let header = hay[s..e].split('.').next()?;
    let json = decode_base64url(header)?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    v.get("alg")?;
    Some((s, e))
}

fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{finds, misses};
    use crate::guardrails::Rule;

    #[test]
    fn provider_and_tollgate_keys() {
        finds(
            Rule::Secret,
            "key sk-proj-AbC123xyzXYZ789defDEF456",
            "sk-proj-AbC123xyzXYZ789",
        );
        finds(
            Rule::Secret,
            "x-api-key: sk-ant-api03-Zx9Zx9Zx9Zx9Zx9Zx9",
            "sk-ant-api03-Zx9Zx9Zx9Z",
        );
        finds(
            Rule::Secret,
            "tg-AAAABBBBccccDDDD1111222233334444eeeeFFFF55",
            "tg-AAAABBBBccccDDDD1111222233334444eeeeFFFF",
        );
        finds(
            Rule::Secret,
            "id AKIAIOSFODNN7EXAMPLE.",
            "AKIAIOSFODNN7EXAMPLE",
        );
        finds(
            Rule::Secret,
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        );
        finds(
            Rule::Secret,
            "AIzaSyA-1234567890abcdefghijklmnopqrstu",
            "AIzaSyA-1234567890abcdefghijklmnopqrstu",
        );
        finds(Rule::Secret, "xoxb-1234567890-abc", "xoxb-1234567890");
        finds(
            Rule::Secret,
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        misses(Rule::Secret, "we use sk-learn-and-other-libraries daily");
        misses(Rule::Secret, "task-AAAABBBBccccDDDD1111 and mask-tg-x");
        misses(Rule::Secret, "[SECRET_1]");
    }

    #[test]
    fn jwts_need_a_header_with_alg() {
        // {"alg":"HS256","typ":"JWT"}
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.sig";
        finds(
            Rule::Secret,
            &format!("Bearer {jwt}"),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.ey",
        );
        // {"typ":"JWT"} has no alg.
        misses(Rule::Secret, "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.sig");
    }

    #[test]
    fn pem_private_key_headers() {
        finds(
            Rule::Secret,
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
            "-----BEGIN RSA PRIVATE KEY-----",
        );
        finds(
            Rule::Secret,
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----",
        );
        misses(Rule::Secret, "-----BEGIN PUBLIC KEY-----");
    }
}
