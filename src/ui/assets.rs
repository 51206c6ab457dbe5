//! The dashboard's static files, compiled into the binary and served from
//! `/ui/assets/NAME` with a year-long cache lifetime. Pages link them with
//! `?v=<content hash>`, so a new binary's files are fetched afresh.

use crate::http::{Body, full};
use http::{HeaderValue, Response, StatusCode, header};
use std::sync::LazyLock;

const FILES: [(&str, &str, &[u8]); 2] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
];

static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = blake3::Hasher::new();
    for (_, _, bytes) in FILES {
        h.update(bytes);
    }
    h.finalize().to_hex()[..12].to_string()
});

/// The `?v=` that changes whenever any asset does.
pub fn version() -> &'static str {
    &VERSION
}

/// The asset `name`, or `None` when there is no such file.
pub fn serve(name: &str) -> Option<Response<Body>> {
    let (_, content_type, bytes) = FILES.iter().find(|(n, _, _)| *n == name)?;
    let mut resp = Response::new(full(*bytes));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Some(resp)
}
