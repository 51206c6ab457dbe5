//! tollgate: a single-binary LLM proxy that keeps the books.
//!
//! See `ARCHITECTURE.md` for the map. `main.rs` parses the command line and
//! calls into [`app`]; tests call [`app::run`] or [`app::App`] the same way.

pub mod access;
pub mod admin;
pub mod app;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod counters;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod module_settings;
pub mod private_files;
pub mod providers;
pub mod proxy;
pub mod request_facts;
pub mod response_cache;
pub mod router;
pub mod secret;
pub mod semantic_index;
pub mod server;
pub mod state;
pub mod store;
pub mod trace;
pub mod ui;
pub mod vault;

pub use app::{App, run};
