//! The Overview page. A stub for now.

use super::{Cx, Nav};
use crate::http::Body;
use http::{Method, Response};

pub async fn route(cx: &Cx, path: &[&str]) -> Option<Response<Body>> {
    match (&cx.method, path) {
        (&Method::GET, [] | ["overview"]) => Some(cx.page(Nav::Overview, "Overview", "")),
        _ => None,
    }
}
