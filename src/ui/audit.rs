//! The Audit page (`/ui/audit`; owner: ui-admin). A stub until filled in:
//! see `ui/mod.rs` for how a page is written.

use super::{Cx, Nav};
use crate::http::Body;
use crate::state::AppState;
use http::{Method, Response};

pub async fn route(cx: &Cx, path: &[&str]) -> Option<Response<Body>> {
    match (&cx.method, path) {
        (&Method::GET, ["audit"]) => Some(cx.page(Nav::Audit, "Audit", "")),
        _ => None,
    }
}

/// The highest audit seq a completed, successful verification run (verify
/// now) has covered, if any. The trace page (ui-core, `traces.rs`) says a
/// trace's entry is verified only when its seq is at or below this.
/// ui-admin: return the verify job's last `ok` result's head seq here.
pub fn verified_up_to(_state: &AppState) -> Option<i64> {
    None
}
