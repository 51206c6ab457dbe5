//! Who may use the gateway: client keys for the proxy routes, the admin
//! credential for the admin API. Keys are random, shown once, and stored
//! only as BLAKE3 hashes; comparisons are constant-time.

mod client;
mod credential;

pub use client::{AuthError, ClientAuth, ClientKey, model_allowed};
pub use credential::{
    AdminAuth, NewKey, client_key_row, new_admin_key, new_client_key, parse_expiry,
};
