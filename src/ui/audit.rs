//! The Audit page (`/ui/audit`): the chain head, the last checkpoint and
//! whether the chain is keyed; "verify now", which runs the verifier in
//! the background (`audit::job`) while `app.js` polls its progress from
//! `GET /ui/audit/verify` (without JavaScript the page shows the state on
//! reload); and the checkpoint file to download.

use super::format;
use super::html::esc;
use super::{Cx, Nav, json, redirect};
use crate::audit::checkpoint::Anchor;
use crate::audit::encoding::to_hex;
use crate::audit::job::{self, JobState, JobStatus};
use crate::http::{Body, full};
use crate::state::AppState;
use crate::store::audit_sql;
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::json;
use std::path::Path;

const TITLE: &str = "Audit";

pub async fn route(cx: &Cx, path: &[&str]) -> Option<Response<Body>> {
    Some(match (&cx.method, path) {
        (&Method::GET, ["audit"]) => page(cx).await,
        (&Method::POST, ["audit", "verify"]) => {
            cx.state.verify_job.start();
            redirect("/ui/audit")
        }
        (&Method::GET, ["audit", "verify"]) => {
            json(StatusCode::OK, &status_json(&cx.state.verify_job.status()))
        }
        (&Method::GET, ["audit", "checkpoint"]) => checkpoint_file(cx).await,
        _ => return None,
    })
}

/// The highest audit seq a completed, successful verification run (verify
/// now) has covered, if any: the trace page says a trace's entry is
/// verified only when its seq is at or below this.
pub fn verified_up_to(state: &AppState) -> Option<i64> {
    state.verify_job.verified_up_to()
}

/// What `GET /ui/audit/verify` answers (the UI contract's shape, plus the
/// failure's message and why a run could not start).
fn status_json(s: &JobStatus) -> serde_json::Value {
    json!({
        "state": s.state.as_str(),
        "checked": s.checked,
        "total": s.total,
        "ok": s.ok,
        "head_seq": s.head.map(|h| h.seq),
        "first_failure": s.first_failure.as_ref().map(|f| json!({
            "seq": f.seq,
            "kind": f.kind.as_str(),
            "message": f.message,
        })),
        "error": s.error,
    })
}

/// The ledger as the page shows it.
struct Ledger {
    head: Option<audit_sql::Head>,
    keyed: bool,
    /// The last checkpoint, or why the file cannot be read.
    checkpoint: Result<Option<(Anchor, i64)>, String>,
}

async fn page(cx: &Cx) -> Response<Body> {
    let checkpoints = cx.state.config.checkpoint_path();
    // On the blocking pool with the queries: the file is read there too.
    let read = cx
        .state
        .reads
        .read(move |conn| {
            Ok(Ledger {
                head: audit_sql::head(conn)?,
                keyed: audit_sql::key_id(conn)?.is_some(),
                checkpoint: job::last_checkpoint(&checkpoints),
            })
        })
        .await;
    let ledger = match read {
        Ok(ledger) => ledger,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: cannot read the audit ledger");
            return cx.page_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                Nav::Audit,
                TITLE,
                "<p class=\"error\">The audit ledger cannot be read; see the server log.</p>",
            );
        }
    };
    let head = match ledger.head {
        Some((seq, hash)) => format!(
            "seq <span class=\"seq\">{seq}</span>, hash <code class=\"hash\">{}</code>",
            to_hex(&hash)
        ),
        None => "empty ledger".to_string(),
    };
    let checkpoint = match &ledger.checkpoint {
        Ok(Some((anchor, at_ms))) => format!(
            "seq <span class=\"seq\">{}</span> at {}",
            anchor.seq,
            format::time(*at_ms) + " UTC"
        ),
        Ok(None) => "none".to_string(),
        Err(e) => format!("unreadable: {}", esc(e)),
    };
    let keyed = if ledger.keyed { "keyed" } else { "unkeyed" };
    let have_file = matches!(ledger.checkpoint, Ok(Some(_)));
    let content = format!(
        "<section id=\"ledger\"><h2>Ledger</h2><dl class=\"facts\">\
         <dt>Chain head</dt><dd id=\"chain-head\">{head}</dd>\
         <dt>Last checkpoint</dt><dd id=\"last-checkpoint\">{checkpoint}</dd>\
         <dt>Chain</dt><dd id=\"keyed\">{keyed}</dd></dl>\
         <p><a id=\"checkpoint-download\" href=\"/ui/audit/checkpoint\">Download the checkpoint \
         file</a>{no_file}</p></section>{verify}",
        no_file = if have_file {
            ""
        } else {
            " <span class=\"muted\">(none written yet)</span>"
        },
        verify = verify_section(cx, &cx.state.verify_job.status()),
    );
    cx.page(Nav::Audit, TITLE, &content)
}

fn verify_section(cx: &Cx, s: &JobStatus) -> String {
    let result = match (s.state, s.ok) {
        (JobState::Done, Some(true)) => match s.head {
            Some(head) => format!("OK — verified up to seq {}", head.seq),
            None => "OK — the ledger is empty".to_string(),
        },
        (JobState::Done, _) => match (&s.first_failure, &s.error) {
            (Some(f), _) => format!("FAILED at seq {}: {}", f.seq, f.kind),
            (None, Some(e)) => format!("could not verify: {e}"),
            (None, None) => "FAILED".to_string(),
        },
        (JobState::Running, _) => "running…".to_string(),
        (JobState::Idle, _) => "not run since the gateway started".to_string(),
    };
    let detail = match &s.first_failure {
        Some(f) if s.state == JobState::Done => {
            format!("<p id=\"verify-detail\">{}</p>", esc(&f.message))
        }
        _ => String::new(),
    };
    let finished = match s.finished_at_ms {
        Some(at) if s.state == JobState::Done => {
            format!(
                " <span class=\"muted\">(finished {})</span>",
                format::time(at) + " UTC"
            )
        }
        _ => String::new(),
    };
    format!(
        "<section id=\"verify\"><h2>Verify the chain</h2>\
         <p>Checks every entry from the first to the head, and the checkpoint file's anchors, \
         on a read-only connection while the gateway keeps serving.</p>\
         <form id=\"verify-now\" method=\"post\" action=\"/ui/audit/verify\">{csrf}\
         <button id=\"verify-button\" type=\"submit\">Verify now</button></form>\
         <p id=\"verify-progress\">{checked} / {total} entries checked</p>\
         <p><strong id=\"verify-result\">{result}</strong>{finished}</p>{detail}</section>",
        csrf = cx.csrf_input(),
        checked = s.checked,
        total = s.total,
        result = esc(&result),
    )
}

async fn checkpoint_file(cx: &Cx) -> Response<Body> {
    let path = cx.state.config.checkpoint_path();
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let mut resp = Response::new(full(bytes));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            let disposition = format!("attachment; filename=\"{}\"", download_name(&path));
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(file = %path.display(), error = %e, "dashboard: cannot read the checkpoint file");
            }
            cx.page_status(
                StatusCode::NOT_FOUND,
                Nav::Audit,
                "No checkpoint file",
                "<p id=\"no-checkpoint\">No checkpoint has been written yet (see \
                 <code>[audit] checkpoint_every_entries</code> and \
                 <code>checkpoint_interval_secs</code>).</p>",
            )
        }
    }
}

/// The file's name with anything but `[A-Za-z0-9._-]` replaced, safe in a
/// quoted header parameter.
fn download_name(path: &Path) -> String {
    let name: String = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "tollgate.checkpoints".into()
    } else {
        name
    }
}
