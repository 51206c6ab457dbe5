//! The one error a module's settings give when they do not hold: which
//! member, and why. Every module's `validate` returns it; the config file,
//! the admin API and the CLI turn it into their own errors naming the field.

/// A setting that does not hold; `field` is the member's name within its
/// module (`rpm`), or the module's name when the module is unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}
