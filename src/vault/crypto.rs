//! Encryption of provider API keys at rest.
//!
//! Provider keys are the most valuable thing tollgate stores: whoever holds
//! one can spend the operator's money. So they never touch disk in the
//! clear. Each key is sealed with AES-256-GCM under a 32-byte *master key*
//! that lives outside the database (the `TOLLGATE_MASTER_KEY` environment
//! variable or a key file, both base64 text), so a leaked database file or
//! backup on its own reveals nothing.
//!
//! Why each piece is there:
//!
//! - **A fresh random 96-bit nonce per seal.** GCM breaks catastrophically
//!   if a nonce repeats under one key. Random nonces are safe for far more
//!   seals (about 2^32) than a proxy will ever make under one master key,
//!   and need no counter kept in step with the database.
//! - **Associated data binding the ciphertext to its row.** The provider
//!   name and row id are authenticated (not encrypted) with every seal, so
//!   someone with write access to the database cannot copy the ciphertext of
//!   an expensive key into another row or provider and have it decrypt
//!   there. The fields are length-prefixed rather than joined with a
//!   separator, so no two different (provider, row id) pairs can produce the
//!   same bytes.
//! - **A master key id stored beside each ciphertext.** The id is a short
//!   one-way digest of the master key, so it says *which* key sealed a row
//!   without revealing it. That makes rotation possible (re-seal every row
//!   under a new key with [`reseal`]) and turns "you started with the wrong
//!   key" into a clear [`VaultError::WrongMasterKey`] instead of a confusing
//!   authentication failure.
//! - **Zeroize on drop.** The master key and every decrypted provider key are
//!   wiped from memory when dropped, so they do not linger in freed heap
//!   pages, core dumps or swap longer than they are used.
//! - **No secret in any `Debug`/`Display` output or error.** Keys routinely
//!   end up in logs by way of `{:?}`; here they print as `*****` or as the
//!   master key's id, and errors name rows and key ids, never key material
//!   (not even part of a malformed master key).

use std::fmt;

use crate::secret::Secret;
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

/// blake3 `derive_key` context for master key ids. Changing it changes every
/// id and so orphans every stored ciphertext: never change it.
const KEY_ID_CONTEXT: &str = "tollgate vault master key id v1";

/// Domain separation prefix of the associated data; the version lets a
/// future format coexist with this one.
const AAD_PREFIX: &[u8] = b"tollgate provider key v1\0";

/// Length of the GCM authentication tag appended to every ciphertext.
const TAG_LEN: usize = 16;

/// What can go wrong sealing or opening a provider key. No variant carries
/// key material: only descriptions, row identifiers and master key ids.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key text is unusable; the string says what is wrong with
    /// it and never repeats any of it.
    #[error("invalid master key: {0}")]
    InvalidMasterKey(String),
    /// The row was sealed under a different master key than the one loaded.
    #[error(
        "provider key was sealed with master key {sealed_with}, but the loaded master key is {have}"
    )]
    WrongMasterKey { sealed_with: String, have: String },
    /// GCM authentication failed: the ciphertext or nonce was altered, the
    /// ciphertext was copied from another row or provider, or (in theory
    /// only) it was sealed by a different master key whose id collides.
    #[error(
        "provider key for provider {provider:?} row {row_id:?} failed authentication: \
         altered, copied from another row, or sealed with another master key"
    )]
    Tampered { provider: String, row_id: String },
    /// Encryption itself failed (input beyond AES-GCM's limits), or an
    /// authentic ciphertext held bytes that are not UTF-8 and so were never
    /// written by [`seal`].
    #[error("provider key encryption failed")]
    Crypto,
}

/// The 32-byte master key that seals every provider key.
///
/// Wiped from memory on drop. Deliberately not `Clone`, so the process holds
/// as few copies as possible; share it by reference or behind an `Arc`.
/// `Debug` shows only the [id](MasterKey::id).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; MASTER_KEY_LEN],
    /// Not secret: a one-way digest, cached because every seal records it.
    #[zeroize(skip)]
    id: String,
}

impl MasterKey {
    /// Parses base64 text, as found in `TOLLGATE_MASTER_KEY` or a key file.
    ///
    /// Surrounding whitespace (such as a key file's trailing newline) is
    /// ignored. Either the standard or the URL-safe alphabet is accepted,
    /// with or without padding, and the result must be exactly 32 bytes.
    /// The error never includes the input or any byte of it.
    pub fn from_base64(text: &str) -> Result<MasterKey, VaultError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(VaultError::InvalidMasterKey(
                "empty; expected base64 of 32 bytes".to_owned(),
            ));
        }
        // The decoder's own error names the offending character and its
        // offset, which would echo part of the key: it is dropped unread.
        let decoded: Zeroizing<Vec<u8>> = [&STANDARD_ANY_PAD, &URL_SAFE_ANY_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| {
                VaultError::InvalidMasterKey(
                    "not valid base64 (standard or URL-safe alphabet); expected base64 of 32 bytes"
                        .to_owned(),
                )
            })?;
        let bytes: [u8; MASTER_KEY_LEN] = decoded.as_slice().try_into().map_err(|_| {
            VaultError::InvalidMasterKey(format!(
                "decodes to {} bytes; expected exactly {MASTER_KEY_LEN}",
                decoded.len()
            ))
        })?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// Wraps raw key bytes. The caller's copy is the caller's to wipe.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> MasterKey {
        let id = key_id(&bytes);
        MasterKey { bytes, id }
    }

    /// A new random master key from the operating system's CSPRNG.
    pub fn generate() -> MasterKey {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut());
        MasterKey::from_bytes(*bytes)
    }

    /// The key as standard padded base64. This *is* the secret: meant only
    /// for printing a freshly generated key once (`tollgate vault`), never
    /// for logs. The caller should wipe the returned string when done.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.bytes)
    }

    /// The key's id: 16 lowercase hex characters, the first 8 bytes of
    /// `blake3::derive_key("tollgate vault master key id v1", key)`. Safe to
    /// store and to show; it identifies the key without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.bytes))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id={})", self.id)
    }
}

const ANY_PAD: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, ANY_PAD);
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, ANY_PAD);

fn key_id(bytes: &[u8; MASTER_KEY_LEN]) -> String {
    let derived = Zeroizing::new(blake3::derive_key(KEY_ID_CONTEXT, bytes));
    derived[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A sealed provider key as stored: all three fields are columns of the
/// key's row. None of them is secret without the master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; 12],
    /// The AES-GCM ciphertext followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
    /// [`MasterKey::id`] of the key that sealed it.
    pub master_key_id: String,
}

/// The associated data binding a ciphertext to its row:
/// `b"tollgate provider key v1\0"` ‖ u32 BE len(provider) ‖ provider ‖
/// u32 BE len(row_id) ‖ row_id. Fails only for a field over 4 GiB.
fn associated_data(provider: &str, row_id: &str) -> Result<Vec<u8>, VaultError> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + 8 + provider.len() + row_id.len());
    aad.extend_from_slice(AAD_PREFIX);
    for field in [provider, row_id] {
        let len = u32::try_from(field.len()).map_err(|_| VaultError::Crypto)?;
        aad.extend_from_slice(&len.to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    Ok(aad)
}

/// Encrypts `plaintext` (a provider API key) for the row identified by
/// `provider` and `row_id`, under a fresh random nonce.
pub fn seal(
    master: &MasterKey,
    provider: &str,
    row_id: &str,
    plaintext: &str,
) -> Result<Sealed, VaultError> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    seal_with_nonce(master, provider, row_id, plaintext, nonce.into())
}

fn seal_with_nonce(
    master: &MasterKey,
    provider: &str,
    row_id: &str,
    plaintext: &str,
    nonce: [u8; 12],
) -> Result<Sealed, VaultError> {
    let aad = associated_data(provider, row_id)?;
    // Room for the tag up front: growing the buffer would leave a copy of
    // the plaintext behind in the freed allocation.
    let mut buffer = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buffer.extend_from_slice(plaintext.as_bytes());
    if master
        .cipher()
        .encrypt_in_place(Nonce::from_slice(&nonce), &aad, &mut buffer)
        .is_err()
    {
        buffer.zeroize();
        return Err(VaultError::Crypto);
    }
    Ok(Sealed {
        nonce,
        ciphertext: buffer,
        master_key_id: master.id.clone(),
    })
}

/// Decrypts a row's provider key.
///
/// Checks the master key id first ([`VaultError::WrongMasterKey`]), then
/// authenticates and decrypts ([`VaultError::Tampered`] if the ciphertext,
/// nonce, provider or row id do not match what was sealed).
pub fn open(
    master: &MasterKey,
    provider: &str,
    row_id: &str,
    sealed: &Sealed,
) -> Result<Secret, VaultError> {
    if sealed.master_key_id != master.id {
        return Err(VaultError::WrongMasterKey {
            sealed_with: sealed.master_key_id.clone(),
            have: master.id.clone(),
        });
    }
    let aad = associated_data(provider, row_id)?;
    let mut buffer = sealed.ciphertext.clone();
    if master
        .cipher()
        .decrypt_in_place(Nonce::from_slice(&sealed.nonce), &aad, &mut buffer)
        .is_err()
    {
        // aes-gcm >= 0.10.3 leaves the buffer undecrypted on failure; wipe
        // it regardless rather than rely on that.
        buffer.zeroize();
        return Err(VaultError::Tampered {
            provider: provider.to_owned(),
            row_id: row_id.to_owned(),
        });
    }
    match String::from_utf8(buffer) {
        Ok(key) => Ok(Secret::new(key)),
        Err(not_utf8) => {
            not_utf8.into_bytes().zeroize();
            Err(VaultError::Crypto)
        }
    }
}

/// Re-encrypts a row's key under `new` with a fresh nonce, for master key
/// rotation. The intermediate plaintext is wiped before returning.
pub fn reseal(
    old: &MasterKey,
    new: &MasterKey,
    provider: &str,
    row_id: &str,
    sealed: &Sealed,
) -> Result<Sealed, VaultError> {
    let plain = open(old, provider, row_id, sealed)?;
    seal(new, provider, row_id, plain.expose())
}

/// The last 4 characters of a key (all of it, if shorter), for telling keys
/// apart in listings.
///
/// Showing the last 4 characters of a long random key is what providers'
/// own dashboards do: it leaves far too little to guess the rest. It only
/// holds for real provider keys; a short test value would be shown whole.
pub fn last4(plaintext: &str) -> String {
    let start = plaintext
        .char_indices()
        .rev()
        .nth(3)
        .map_or(0, |(index, _)| index);
    plaintext[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PLANTED: &str = "sk-PLANTED-provider-key-4f9c2e7a1b";
    const FIXED_KEY: [u8; 32] = [0x42; 32];

    fn master() -> MasterKey {
        MasterKey::from_bytes(FIXED_KEY)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn round_trip() {
        let key = master();
        let sealed = seal(&key, "openai", "row-1", PLANTED).unwrap();
        assert_eq!(sealed.master_key_id, key.id());
        assert_eq!(sealed.ciphertext.len(), PLANTED.len() + TAG_LEN);
        assert!(
            !sealed
                .ciphertext
                .windows(8)
                .any(|w| PLANTED.as_bytes().windows(8).any(|p| p == w))
        );
        let opened = open(&key, "openai", "row-1", &sealed).unwrap();
        assert_eq!(opened.expose(), PLANTED);
    }

    #[test]
    fn empty_key_round_trips() {
        let key = master();
        let sealed = seal(&key, "", "", "").unwrap();
        assert_eq!(open(&key, "", "", &sealed).unwrap().expose(), "");
    }

    #[test]
    fn two_seals_differ() {
        let key = master();
        let a = seal(&key, "openai", "row-1", PLANTED).unwrap();
        let b = seal(&key, "openai", "row-1", PLANTED).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(open(&key, "openai", "row-1", &b).unwrap().expose(), PLANTED);
    }

    #[test]
    fn wrong_master_key_is_reported_by_id() {
        let sealer = master();
        let other = MasterKey::generate();
        let sealed = seal(&sealer, "openai", "row-1", PLANTED).unwrap();
        match open(&other, "openai", "row-1", &sealed) {
            Err(VaultError::WrongMasterKey { sealed_with, have }) => {
                assert_eq!(sealed_with, sealer.id());
                assert_eq!(have, other.id());
            }
            other => panic!("expected WrongMasterKey, got {other:?}"),
        }
    }

    #[test]
    fn id_is_checked_before_decrypting() {
        // Same key bytes but a foreign id: must be WrongMasterKey, which
        // proves `open` never even tried the tag.
        let key = master();
        let mut sealed = seal(&key, "openai", "row-1", PLANTED).unwrap();
        sealed.master_key_id = "0000000000000000".to_owned();
        assert!(matches!(
            open(&key, "openai", "row-1", &sealed),
            Err(VaultError::WrongMasterKey { .. })
        ));
    }

    fn assert_tampered(result: Result<Secret, VaultError>, provider: &str, row_id: &str) {
        match result {
            Err(VaultError::Tampered {
                provider: p,
                row_id: r,
            }) => {
                assert_eq!(p, provider);
                assert_eq!(r, row_id);
            }
            other => panic!("expected Tampered, got {other:?}"),
        }
    }

    #[test]
    fn moved_to_another_row_or_provider_is_tampered() {
        let key = master();
        let sealed = seal(&key, "openai", "row-1", PLANTED).unwrap();
        assert_tampered(open(&key, "openai", "row-2", &sealed), "openai", "row-2");
        assert_tampered(
            open(&key, "anthropic", "row-1", &sealed),
            "anthropic",
            "row-1",
        );
        // A separator join would make these two pairs collide.
        let sealed = seal(&key, "ab", "c", PLANTED).unwrap();
        assert_tampered(open(&key, "a", "bc", &sealed), "a", "bc");
    }

    #[test]
    fn truncated_ciphertext_is_tampered() {
        let key = master();
        let mut sealed = seal(&key, "openai", "row-1", PLANTED).unwrap();
        sealed.ciphertext.truncate(TAG_LEN - 1);
        assert_tampered(open(&key, "openai", "row-1", &sealed), "openai", "row-1");
        sealed.ciphertext.clear();
        assert_tampered(open(&key, "openai", "row-1", &sealed), "openai", "row-1");
    }

    #[test]
    fn associated_data_layout() {
        let aad = associated_data("openai", "r1").unwrap();
        let mut expected = b"tollgate provider key v1\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"openai");
        expected.extend_from_slice(&[0, 0, 0, 2]);
        expected.extend_from_slice(b"r1");
        assert_eq!(aad, expected);
    }

    #[test]
    fn interoperates_with_plain_aes_gcm() {
        // Seal here, open with the bare primitive and the documented AAD: the
        // stored format is exactly AES-256-GCM, nothing home-grown.
        use aes_gcm::aead::{Aead, Payload};
        let key = master();
        let sealed = seal(&key, "openai", "row-1", PLANTED).unwrap();
        let mut aad = b"tollgate provider key v1\0".to_vec();
        aad.extend_from_slice(&6u32.to_be_bytes());
        aad.extend_from_slice(b"openai");
        aad.extend_from_slice(&5u32.to_be_bytes());
        aad.extend_from_slice(b"row-1");
        let plain = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&FIXED_KEY))
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(plain, PLANTED.as_bytes());
    }

    #[test]
    fn known_answer() {
        // Pins the on-disk format: a change here orphans stored keys.
        let key = master();
        assert_eq!(key.id(), KNOWN_ID);
        let sealed = seal_with_nonce(&key, "openai", "row-1", "sk-test", [7; 12]).unwrap();
        assert_eq!(hex(&sealed.ciphertext), KNOWN_CIPHERTEXT);
        assert_eq!(
            open(&key, "openai", "row-1", &sealed).unwrap().expose(),
            "sk-test"
        );
    }

    const KNOWN_ID: &str = "bc5b9dd1377eaed4";
    // Cross-checked against Python `cryptography`'s AESGCM.
    const KNOWN_CIPHERTEXT: &str = "0b8970d8d08206444c5afc9d4a4e699438db69991e0b33";

    #[test]
    fn id_matches_its_definition() {
        let key = master();
        let derived = blake3::derive_key("tollgate vault master key id v1", &FIXED_KEY);
        assert_eq!(key.id(), hex(&derived[..8]));
        assert_eq!(key.id().len(), 16);
        assert!(key.id().chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_ne!(MasterKey::generate().id(), key.id());
    }

    #[test]
    fn reseal_rotates() {
        let old = master();
        let new = MasterKey::generate();
        let sealed = seal(&old, "openai", "row-1", PLANTED).unwrap();
        let resealed = reseal(&old, &new, "openai", "row-1", &sealed).unwrap();
        assert_eq!(resealed.master_key_id, new.id());
        assert_ne!(resealed.nonce, sealed.nonce);
        assert_eq!(
            open(&new, "openai", "row-1", &resealed).unwrap().expose(),
            PLANTED
        );
        assert!(matches!(
            open(&old, "openai", "row-1", &resealed),
            Err(VaultError::WrongMasterKey { .. })
        ));
        // Rotation cannot be used to move a key to another row either.
        assert_tampered(
            reseal(&old, &new, "openai", "row-2", &sealed).map(|_| Secret::new(String::new())),
            "openai",
            "row-2",
        );
    }

    #[test]
    fn base64_round_trip_and_alphabets() {
        let key = MasterKey::generate();
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        let back = MasterKey::from_base64(&text).unwrap();
        assert_eq!(back.id(), key.id());
        assert_eq!(back.bytes, key.bytes);

        // Bytes that exercise '+' and '/' (standard) vs '-' and '_' (URL-safe).
        let bytes = [0xfb; 32];
        let standard = base64::engine::general_purpose::STANDARD.encode(bytes);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert!(standard.contains('+') || standard.contains('/'));
        assert!(url_safe.contains('-') || url_safe.contains('_'));
        let want = MasterKey::from_bytes(bytes);
        for text in [
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            url_safe.clone(),
            format!("{url_safe}="),
            format!("  {standard}\n"),
            format!("{url_safe}\r\n"),
        ] {
            assert_eq!(
                MasterKey::from_base64(&text).unwrap().id(),
                want.id(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn from_base64_rejects_bad_input_without_echoing_it() {
        let engine = base64::engine::general_purpose::STANDARD;
        let cases = [
            String::new(),
            "   \n".to_owned(),
            engine.encode([1u8; 31]),
            engine.encode([1u8; 33]),
            engine.encode([1u8; 16]),
            engine.encode([1u8; 64]),
            "SECRETSECRET!!garbage$$$".to_owned(),
            format!("{}*", engine.encode([9u8; 32])),
            // Mixed alphabets are neither standard nor URL-safe.
            format!("+_{}", &engine.encode([9u8; 32])[2..]),
            "QUJD\u{e9}".to_owned(),
        ];
        for input in cases {
            let err = match MasterKey::from_base64(&input) {
                Err(err @ VaultError::InvalidMasterKey(_)) => err,
                other => panic!("{input:?}: expected InvalidMasterKey, got {other:?}"),
            };
            let shown = format!("{err} {err:?}");
            let trimmed = input.trim();
            if !trimmed.is_empty() {
                assert!(!shown.contains(trimmed), "{shown}");
                // Not even a piece of it (longer than a word of prose).
                for piece in trimmed.as_bytes().chunks(6) {
                    let piece = String::from_utf8_lossy(piece);
                    assert!(!shown.contains(&*piece), "{shown} contains {piece}");
                }
            }
        }
    }

    #[test]
    fn nothing_formats_key_material() {
        let key = MasterKey::from_base64(&MasterKey::generate().to_base64()).unwrap();
        let key_b64 = key.to_base64();
        let key_hex = hex(&key.bytes);
        let other = MasterKey::generate();
        let sealed = seal(&key, "openai", "row-1", PLANTED).unwrap();
        let plain = open(&key, "openai", "row-1", &sealed).unwrap();
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;

        let errors = [
            MasterKey::from_base64(&key_b64[..40]).unwrap_err(),
            MasterKey::from_base64(&format!("{key_b64}!")).unwrap_err(),
            open(&other, "openai", "row-1", &sealed).unwrap_err(),
            open(&key, "openai", "row-1", &tampered).unwrap_err(),
            VaultError::Crypto,
        ];
        let mut shown = vec![
            format!("{key:?}"),
            format!("{plain:?}"),
            format!("{plain}"),
            format!("{:?}", Some(&plain)),
            format!("{sealed:?}"),
        ];
        for err in &errors {
            shown.push(format!("{err}"));
            shown.push(format!("{err:?}"));
        }
        assert_eq!(shown[0], format!("MasterKey(id={})", key.id()));
        assert_eq!(shown[1], "Secret(*****)");
        assert_eq!(shown[2], "*****");
        for text in &shown {
            assert!(!text.contains(PLANTED), "{text}");
            assert!(!text.contains("PLANTED"), "{text}");
            assert!(!text.contains(&key_b64[..16]), "{text}");
            assert!(
                !text.contains(&key_b64.trim_end_matches('=')[28..]),
                "{text}"
            );
            assert!(!text.contains(&key_hex[..16]), "{text}");
        }
    }

    #[test]
    fn secret_clone_and_zeroize() {
        let mut a = Secret::new(PLANTED.to_owned());
        let b = a.clone();
        a.zeroize();
        assert_eq!(a.expose(), "");
        assert_eq!(b.expose(), PLANTED);
    }

    #[test]
    fn secrets_are_wiped_on_drop() {
        fn zeroize_on_drop<T: ZeroizeOnDrop>() {}
        zeroize_on_drop::<MasterKey>();
        zeroize_on_drop::<Secret>();
        // The AES key schedule contains the master key itself; this fails
        // to compile unless the `aes` crate's `zeroize` feature is on.
        zeroize_on_drop::<aes_gcm::aes::Aes256>();
    }

    #[test]
    fn last4_counts_characters() {
        assert_eq!(last4("sk-abcdefgh1234"), "1234");
        assert_eq!(last4("abcd"), "abcd");
        assert_eq!(last4("ab"), "ab");
        assert_eq!(last4(""), "");
        assert_eq!(last4("xxé日本語"), "é日本語");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_key_round_trips(plaintext in "\\PC{0,80}", provider in "\\PC{0,12}", row in "\\PC{0,12}") {
            let key = master();
            let sealed = seal(&key, &provider, &row, &plaintext).unwrap();
            let opened = open(&key, &provider, &row, &sealed).unwrap();
            prop_assert_eq!(opened.expose(), plaintext.as_str());
        }

        #[test]
        fn any_single_byte_flip_is_tampered(
            plaintext in "[ -~]{0,64}",
            position in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let key = master();
            let mut sealed = seal(&key, "openai", "row-1", &plaintext).unwrap();
            let total = sealed.nonce.len() + sealed.ciphertext.len();
            let at = position.index(total);
            if at < sealed.nonce.len() {
                sealed.nonce[at] ^= mask;
            } else {
                sealed.ciphertext[at - sealed.nonce.len()] ^= mask;
            }
            let tampered = matches!(
                open(&key, "openai", "row-1", &sealed),
                Err(VaultError::Tampered { ref provider, ref row_id })
                    if provider == "openai" && row_id == "row-1"
            );
            prop_assert!(tampered, "flip at {} not detected", at);
        }

        #[test]
        fn last4_is_a_suffix_of_at_most_four_chars(text in "\\PC{0,12}") {
            let tail = last4(&text);
            prop_assert!(text.ends_with(&tail));
            prop_assert_eq!(tail.chars().count(), text.chars().count().min(4));
        }
    }
}
