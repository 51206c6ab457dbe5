//! Who may use the gateway: client keys for the proxy routes, the admin
//! credential for the admin API. Keys are random, shown once, and stored
//! only as BLAKE3 hashes; comparisons are constant-time.

mod client;
mod credential;
pub mod limits;
pub mod session;
mod throttle;

pub use client::{
    AuthError, AuthStats, ClientAuth, ClientKey, ConflictingCredentials, Refused, model_allowed,
};
pub use credential::{
    AdminAuth, MIN_ADMIN_KEY_CHARS, NewKey, check_admin_key, client_key_row, new_admin_key,
    new_client_key, parse_expiry, printable,
};
pub use session::{UiSession, UiSessions};
pub use throttle::UNKNOWN_PEER;
