//! Upstream error bodies can repeat the credential they were sent ("Incorrect
//! API key provided: sk-abc12*****wxyz"). Before such a body reaches the
//! client, the provider key — whole, or in the masked forms providers print
//! (a prefix and/or the last characters around `***` or `...`) — is replaced
//! by a placeholder. Error bodies are small; the caller holds at most
//! [`MAX_ERROR_BODY`] bytes of one, so the work here is bounded.

use memchr::memmem;
use std::borrow::Cow;

/// The most of an upstream error body held to be checked; a longer one is
/// withheld rather than passed on unchecked.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

pub const PLACEHOLDER: &[u8] = b"[redacted]";

/// `body` with `key` and its masked forms replaced by [`PLACEHOLDER`].
pub fn redact_key<'a>(body: &'a [u8], key: &str) -> Cow<'a, [u8]> {
    let key = key.as_bytes();
    if key.len() < 4 {
        return Cow::Borrowed(body);
    }
    let whole = replace_all(body, key);
    let masked = replace_masked(&whole, key);
    match (whole, masked) {
        (Cow::Borrowed(_), None) => Cow::Borrowed(body),
        (whole, None) => Cow::Owned(whole.into_owned()),
        (_, Some(out)) => Cow::Owned(out),
    }
}

fn replace_all<'a>(body: &'a [u8], key: &[u8]) -> Cow<'a, [u8]> {
    let mut hits = memmem::find_iter(body, key).peekable();
    if hits.peek().is_none() {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len());
    let mut last = 0;
    for at in hits {
        if at < last {
            continue;
        }
        out.extend_from_slice(&body[last..at]);
        out.extend_from_slice(PLACEHOLDER);
        last = at + key.len();
    }
    out.extend_from_slice(&body[last..]);
    Cow::Owned(out)
}

/// Bytes a key or its masked form is made of.
fn in_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'.')
}

/// Replaces every token (a run of key-like bytes) that is a masked form of
/// `key`; `None` when there is none.
fn replace_masked(body: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < body.len() {
        if !in_token(body[i]) {
            i += 1;
            continue;
        }
        let end = body[i..]
            .iter()
            .position(|&b| !in_token(b))
            .map_or(body.len(), |n| i + n);
        let token = &body[i..end];
        // A sentence's full stop after the key is not part of it.
        let token = match token {
            [.., a, b'.'] if *a != b'.' && *a != b'*' => &token[..token.len() - 1],
            _ => token,
        };
        if is_masked_form(token, key) {
            let o = out.get_or_insert_with(|| Vec::with_capacity(body.len()));
            o.extend_from_slice(&body[copied..i]);
            o.extend_from_slice(PLACEHOLDER);
            copied = i + token.len();
        }
        i = end;
    }
    let mut o = out?;
    o.extend_from_slice(&body[copied..]);
    Some(o)
}

/// `sk-abc12****wxyz`, `sk-ab...wxyz`, `****wxyz`, `sk-proj-****`: a mask
/// (three or more `*` or `.`) with a prefix of the key (3+ bytes) before it
/// or the key's last bytes (4+) after it.
fn is_masked_form(token: &[u8], key: &[u8]) -> bool {
    let is_mask = |b: &u8| *b == b'*' || *b == b'.';
    let Some(first) = memmem::find(token, b"***").or_else(|| memmem::find(token, b"...")) else {
        return false;
    };
    let lead = &token[..first];
    let tail_start = token.iter().rposition(is_mask).map_or(0, |p| p + 1);
    let tail = &token[tail_start..];
    (lead.len() >= 3 && key.starts_with(lead)) || (tail.len() >= 4 && key.ends_with(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-proj-AbCdEf0123456789wxyz";

    fn redacted(body: &str) -> String {
        String::from_utf8(redact_key(body.as_bytes(), KEY).into_owned()).unwrap()
    }

    #[test]
    fn whole_and_masked_keys_are_replaced() {
        let body = format!(
            r#"{{"error":{{"message":"Incorrect API key provided: sk-proj-********************wxyz. Sent: {KEY}, also sk-pr...wxyz and ****wxyz.","type":"invalid_request_error"}}}}"#
        );
        let out = redacted(&body);
        assert!(!out.contains(KEY), "{out}");
        assert!(!out.contains("wxyz"), "{out}");
        assert!(!out.contains("sk-pr"), "{out}");
        assert!(out.contains("Incorrect API key provided: [redacted]. Sent: [redacted], also"));
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }

    #[test]
    fn bodies_without_the_key_are_untouched() {
        let body =
            r#"{"error":{"message":"Rate limit reached... **slow down** (sk-other***9999)"}}"#;
        assert!(matches!(redact_key(body.as_bytes(), KEY), Cow::Borrowed(_)));
    }
}
