//! The one place HTML is escaped and the page frame is drawn. Pages are
//! plain Rust `format!` strings: every value that did not come from this
//! crate's own literals goes through [`esc`] (text and attribute values
//! alike — it escapes both quote kinds), so there is a single rule to
//! check. No runtime template files, no template dependency.

use std::fmt::Write;

/// `s` safe inside HTML text and inside a quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as a query-string component (for links built from values).
pub fn url_component(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Which nav entry is the current page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Nav {
    Overview,
    Traces,
    Keys,
    Audit,
    Settings,
    /// A page under none of them (errors).
    None,
}

const NAV: [(Nav, &str, &str, &str); 5] = [
    (Nav::Overview, "nav-overview", "/ui/", "Overview"),
    (Nav::Traces, "nav-traces", "/ui/traces", "Traces"),
    (Nav::Keys, "nav-keys", "/ui/keys", "Keys"),
    (Nav::Audit, "nav-audit", "/ui/audit", "Audit"),
    (Nav::Settings, "nav-settings", "/ui/settings", "Settings"),
];

fn head(out: &mut String, title: &str) {
    let v = super::assets::version();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>tollgate — {}</title>\
         <link rel=\"stylesheet\" href=\"/ui/assets/app.css?v={v}\">\
         <script src=\"/ui/assets/app.js?v={v}\" defer></script></head>",
        esc(title)
    );
}

/// A signed-in page: `<title>tollgate — {title}</title>`, `nav#nav` (with
/// the sign-out form carrying `csrf`) and `content` (already HTML) in
/// `main#content`.
pub fn layout(title: &str, current: Nav, csrf: &str, content: &str) -> String {
    let mut out = String::with_capacity(content.len() + 2048);
    head(&mut out, title);
    out.push_str("<body><header><nav id=\"nav\"><span class=\"brand\">tollgate</span>");
    for (nav, id, href, label) in NAV {
        let current = if nav == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(out, "<a id=\"{id}\" href=\"{href}\"{current}>{label}</a>");
    }
    let _ = write!(
        out,
        "<form id=\"logout\" method=\"post\" action=\"/ui/logout\">{}\
         <button id=\"logout-button\" type=\"submit\">Sign out</button></form></nav></header>\
         <main id=\"content\"><h1>{}</h1>{content}</main></body></html>",
        csrf_input(csrf),
        esc(title)
    );
    out
}

/// A page outside a session (sign-in): no nav.
pub fn bare(title: &str, content: &str) -> String {
    let mut out = String::with_capacity(content.len() + 1024);
    head(&mut out, title);
    let _ = write!(
        out,
        "<body class=\"bare\"><main id=\"content\"><h1>{}</h1>{content}</main></body></html>",
        esc(title)
    );
    out
}

/// Why a form was refused, as `p#form-error` (one per page).
pub fn form_error(message: &str) -> String {
    format!(
        "<p id=\"form-error\" class=\"error\" role=\"alert\">{}</p>",
        esc(message)
    )
}

/// The hidden `csrf` input every mutating form carries.
pub fn csrf_input(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_attributes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("plain µ¢"), "plain µ¢");
        assert_eq!(url_component("a b&c"), "a+b%26c");
    }

    #[test]
    fn layout_has_the_contract_ids() {
        let page = layout("Keys", Nav::Keys, "tok\"", "<p>x</p>");
        for id in [
            "nav#nav",
            "id=\"nav-overview\" href=\"/ui/\"",
            "id=\"nav-traces\" href=\"/ui/traces\"",
            "id=\"nav-keys\" href=\"/ui/keys\" aria-current",
            "id=\"nav-audit\"",
            "id=\"nav-settings\"",
            "form id=\"logout\"",
            "button id=\"logout-button\"",
            "<main id=\"content\">",
            "<title>tollgate — Keys</title>",
            "value=\"tok&quot;\"",
        ] {
            let id = id.replace("nav#nav", "<nav id=\"nav\">");
            assert!(page.contains(&id), "{id} missing in {page}");
        }
    }
}
