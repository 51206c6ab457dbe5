//! Generating keys and checking the admin credential.

use base64::Engine;

/// A freshly generated key: the plaintext (to show once) and what is stored.
pub struct NewKey {
    pub id: String,
    pub plaintext: crate::secret::Secret,
    pub prefix: String,
    pub hash: [u8; 32],
}

fn random<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS RNG failing means no secure key can be made at all.
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    buf
}

fn new_key(key_prefix: &str, id_prefix: &str) -> NewKey {
    // 256 bits of entropy, URL-safe so it survives headers and shells.
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>());
    let plaintext = format!("{key_prefix}{body}");
    let prefix = plaintext[..key_prefix.len() + 8].to_string();
    let hash = *blake3::hash(plaintext.as_bytes()).as_bytes();
    let id = format!(
        "{id_prefix}{}",
        crate::audit::encoding::to_hex(&random::<8>())
    );
    NewKey {
        id,
        plaintext: crate::secret::Secret::new(plaintext),
        prefix,
        hash,
    }
}

/// A client key: `tg-` + 43 URL-safe characters (256 bits).
pub fn new_client_key() -> NewKey {
    new_key("tg-", "key_")
}

/// An admin credential: `tga-` + 43 URL-safe characters (256 bits).
pub fn new_admin_key() -> NewKey {
    new_key("tga-", "adm_")
}

/// `YYYY-MM-DD` (end of that day, UTC) or RFC 3339 → Unix ms.
pub fn parse_expiry(s: &str) -> Result<i64, String> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let day = crate::ledger::report::parse_day(s)
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"))?;
    let end = day
        .next_day()
        .ok_or_else(|| format!("{s:?} is out of range"))?
        .midnight()
        .assume_utc();
    Ok((end.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The shortest `TOLLGATE_ADMIN_KEY` accepted, in characters: a generated
/// credential has 47.
pub const MIN_ADMIN_KEY_CHARS: usize = 32;

/// Refuses a `TOLLGATE_ADMIN_KEY` too short to resist guessing.
pub fn check_admin_key(key: &str) -> Result<(), String> {
    let len = key.chars().count();
    if len < MIN_ADMIN_KEY_CHARS {
        return Err(format!(
            "TOLLGATE_ADMIN_KEY is {len} characters long; it must have at least \
             {MIN_ADMIN_KEY_CHARS} (unset it to have tollgate create a random one)"
        ));
    }
    Ok(())
}

/// The longest client key name, in bytes.
pub const MAX_KEY_NAME_BYTES: usize = 256;

/// `s` with control characters escaped (`\u{1b}`), for printing text that
/// may predate the checks on it to a terminal.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// The admin credentials in force: `TOLLGATE_ADMIN_KEY`, or the ones stored.
#[derive(Clone)]
pub struct AdminAuth {
    hashes: Vec<blake3::Hash>,
}

impl AdminAuth {
    pub fn new(hashes: Vec<[u8; 32]>) -> AdminAuth {
        AdminAuth {
            hashes: hashes.into_iter().map(blake3::Hash::from_bytes).collect(),
        }
    }

    pub fn from_plaintext(key: &str) -> AdminAuth {
        AdminAuth {
            hashes: vec![blake3::hash(key.as_bytes())],
        }
    }

    /// Whether any admin credential is in force (the dashboard is disabled
    /// without one).
    pub fn is_configured(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// Constant-time per candidate (`blake3::Hash` equality is).
    pub fn check(&self, presented: &str) -> bool {
        let h = blake3::hash(presented.as_bytes());
        self.hashes
            .iter()
            .fold(false, |ok, stored| ok | (*stored == h))
    }
}

/// A new client key's row and its plaintext (to show once).
pub fn client_key_row(
    name: &str,
    expires: Option<&str>,
    models: Option<Vec<String>>,
) -> Result<
    (
        crate::store::access_sql::ClientKeyRow,
        crate::secret::Secret,
    ),
    String,
> {
    if name.trim().is_empty() {
        return Err("a key needs a non-empty name".into());
    }
    if name.chars().any(char::is_control) {
        return Err("a key name must not contain control characters".into());
    }
    if name.trim().len() > MAX_KEY_NAME_BYTES {
        return Err(format!(
            "a key name must be at most {MAX_KEY_NAME_BYTES} bytes long"
        ));
    }
    let expires_at_ms = expires.map(parse_expiry).transpose()?;
    let models = models.map(|m| {
        m.into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    });
    if models
        .iter()
        .flatten()
        .any(|m| m.chars().any(char::is_control) || m.len() > crate::trace::MAX_MODEL_BYTES)
    {
        return Err(format!(
            "a model name must have no control characters and at most {} bytes",
            crate::trace::MAX_MODEL_BYTES
        ));
    }
    if models.as_ref().is_some_and(Vec::is_empty) {
        return Err("models, when given, must name at least one model".into());
    }
    let new = new_client_key();
    Ok((
        crate::store::access_sql::ClientKeyRow {
            id: new.id,
            name: name.trim().to_string(),
            prefix: new.prefix,
            hash: new.hash,
            models,
            created_at_ms: crate::trace::now_ms(),
            expires_at_ms,
            revoked_at_ms: None,
            limits: Default::default(),
        },
        new.plaintext,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hashed() {
        let a = new_client_key();
        let b = new_client_key();
        assert!(a.plaintext.expose().starts_with("tg-"));
        assert_eq!(a.plaintext.expose().len(), 3 + 43);
        assert_ne!(a.plaintext, b.plaintext);
        assert!(a.plaintext.expose().starts_with(&a.prefix));
        assert_eq!(
            a.hash,
            *blake3::hash(a.plaintext.expose().as_bytes()).as_bytes()
        );
        assert!(a.id.starts_with("key_") && !a.id.contains(&a.plaintext.expose()[3..]));
    }

    #[test]
    fn admin_check() {
        let k = new_admin_key();
        let auth = AdminAuth::new(vec![k.hash]);
        assert!(auth.check(k.plaintext.expose()));
        assert!(!auth.check("tga-nope"));
        assert!(!AdminAuth::new(vec![]).check(""));
    }

    #[test]
    fn names_are_checked_and_printed_safely() {
        assert!(client_key_row("ops\u{1b}[2J", None, None).is_err());
        assert!(client_key_row("a\nb", None, None).is_err());
        assert!(client_key_row(&"n".repeat(300), None, None).is_err());
        assert!(client_key_row("ok", None, Some(vec!["m\u{1b}x".into()])).is_err());
        assert!(client_key_row("ok name", None, Some(vec!["fast".into()])).is_ok());
        assert_eq!(printable("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
        assert_eq!(printable("plain"), "plain");
        assert!(check_admin_key(&"k".repeat(31)).is_err());
        assert!(check_admin_key(&"k".repeat(32)).is_ok());
    }

    #[test]
    fn expiry_forms() {
        assert_eq!(parse_expiry("1970-01-01").unwrap(), 86_400_000);
        assert_eq!(parse_expiry("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(parse_expiry("soon").is_err());
    }
}
