//! One type for every secret held in memory (provider keys, decrypted or
//! configured, and the first-run admin credential): `Debug` and `Display`
//! never show the value, the value is reachable only through
//! [`Secret::expose`] (so every place that handles one is easy to find), and
//! it is wiped on drop (each clone wipes its own copy).

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The plaintext, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(*****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_formats_the_value() {
        let s = super::Secret::new("sk-very-secret".into());
        assert!(!format!("{s:?} {s}").contains("very-secret"));
        assert_eq!(s.expose(), "sk-very-secret");
    }
}
