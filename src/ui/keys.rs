//! The Keys page (`/ui/keys`; owner: ui-admin). A stub until filled in:
//! see `ui/mod.rs` for how a page is written.

use super::{Cx, Nav};
use crate::http::Body;
use http::{Method, Response};

pub async fn route(cx: &Cx, path: &[&str]) -> Option<Response<Body>> {
    match (&cx.method, path) {
        (&Method::GET, ["keys"]) => Some(cx.page(Nav::Keys, "Keys", "")),
        _ => None,
    }
}
