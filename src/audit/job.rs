//! "Verify now" for the dashboard: at most one verification of the live
//! database runs at a time, in the background on a read-only connection of
//! its own (never the writer's, never one the read pool needs for pages),
//! and its progress and last result stay readable while and after it runs.
//! Asking for a verification while one runs joins it rather than starting
//! a second pass over the same entries.

use super::checkpoint::{self, Anchor};
use super::encoding::ChainKey;
use super::verify::FailureKind;
use super::{Progress, VerifyError, verify_database_with};
use crate::config::StoreConfig;
use crate::store::{OpenMode, open};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// No verification since the process started.
    Idle,
    Running,
    Done,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Idle => "idle",
            JobState::Running => "running",
            JobState::Done => "done",
        }
    }
}

/// Where the chain broke, as the verifier named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstFailure {
    pub seq: i64,
    pub kind: FailureKind,
    pub message: String,
}

/// The job as seen at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    pub state: JobState,
    pub checked: u64,
    pub total: u64,
    /// `None` until a verification finished; `Some(false)` also when it
    /// could not run (see `error`).
    pub ok: Option<bool>,
    /// The verified head (when it finished OK).
    pub head: Option<Anchor>,
    pub first_failure: Option<FirstFailure>,
    /// Why the verification could not run at all (database or checkpoint
    /// file unreadable); no secret is in it.
    pub error: Option<String>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// What a verification needs, fixed when the gateway starts.
struct Source {
    store: StoreConfig,
    key: ChainKey,
    checkpoints: PathBuf,
}

/// The one verification job of a gateway; cheap to clone (shared).
#[derive(Clone)]
pub struct VerifyJob {
    shared: Arc<Shared>,
}

struct Shared {
    source: Source,
    /// The verdict fields; `checked`/`total` live in the atomics so that
    /// progress never takes the lock.
    status: Mutex<JobStatus>,
    checked: AtomicU64,
    total: AtomicU64,
    /// The head seq of the last run that finished, if it verified OK
    /// (kept while the next one runs); 0: none.
    verified_up_to: AtomicI64,
}

impl VerifyJob {
    /// A job verifying the database `store` with `key`, against the anchors
    /// in the checkpoint file `checkpoints` (read at each start; a missing
    /// file means no anchors).
    pub fn new(store: StoreConfig, key: ChainKey, checkpoints: PathBuf) -> VerifyJob {
        VerifyJob {
            shared: Arc::new(Shared {
                source: Source {
                    store,
                    key,
                    checkpoints,
                },
                status: Mutex::new(JobStatus {
                    state: JobState::Idle,
                    checked: 0,
                    total: 0,
                    ok: None,
                    head: None,
                    first_failure: None,
                    error: None,
                    started_at_ms: None,
                    finished_at_ms: None,
                }),
                checked: AtomicU64::new(0),
                total: AtomicU64::new(0),
                verified_up_to: AtomicI64::new(0),
            }),
        }
    }

    pub fn status(&self) -> JobStatus {
        let mut status = self.shared.lock().clone();
        status.checked = self.shared.checked.load(Ordering::Relaxed);
        status.total = self.shared.total.load(Ordering::Relaxed);
        status
    }

    /// The highest seq the last finished run verified, when it found the
    /// chain intact; `None` before any such run or after a failed one.
    pub fn verified_up_to(&self) -> Option<i64> {
        Some(self.shared.verified_up_to.load(Ordering::Relaxed)).filter(|&seq| seq > 0)
    }

    /// Starts a verification on tokio's blocking pool, unless one is
    /// running: then this joins it. Returns whether it started one.
    pub fn start(&self) -> bool {
        {
            let mut status = self.shared.lock();
            if status.state == JobState::Running {
                return false;
            }
            *status = JobStatus {
                state: JobState::Running,
                checked: 0,
                total: 0,
                ok: None,
                head: None,
                first_failure: None,
                error: None,
                started_at_ms: Some(crate::trace::now_ms()),
                finished_at_ms: None,
            };
            self.shared.checked.store(0, Ordering::Relaxed);
            self.shared.total.store(0, Ordering::Relaxed);
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = shared.run();
            shared.finish(outcome);
        });
        true
    }
}

type Outcome = Result<Option<Anchor>, Verdict>;

enum Verdict {
    Failed(FirstFailure),
    CannotRun(String),
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, JobStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) -> Outcome {
        // The anchors are read before the database: every checkpoint in the
        // file was written after its entry committed, so the snapshot taken
        // next holds each of them.
        let anchors = self.anchors().map_err(Verdict::CannotRun)?;
        let conn = open(&self.source.store, OpenMode::ReadOnly)
            .map_err(|e| Verdict::CannotRun(format!("cannot open the database: {e}")))?;
        let progress = |p: Progress| {
            self.total.store(p.total, Ordering::Relaxed);
            self.checked.store(p.checked, Ordering::Relaxed);
        };
        match verify_database_with(&conn, self.source.key.clone(), anchors, progress) {
            Ok(verified) => Ok(verified.head),
            Err(VerifyError::Failed(f)) => Err(Verdict::Failed(FirstFailure {
                seq: f.seq,
                kind: f.kind,
                message: f.message,
            })),
            Err(VerifyError::Db(e)) => {
                tracing::error!(error = %e, "audit verification cannot read the database");
                Err(Verdict::CannotRun(
                    "cannot read the database; see the server log".into(),
                ))
            }
        }
    }

    fn anchors(&self) -> Result<Vec<Anchor>, String> {
        let path = &self.source.checkpoints;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(format!(
                    "cannot read the checkpoint file {}: {e}",
                    path.display()
                ));
            }
        };
        checkpoints_in(&text)
            .map(|lines| lines.into_iter().map(|(a, _)| a).collect())
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn finish(&self, outcome: Outcome) {
        let mut status = self.lock();
        status.state = JobState::Done;
        status.finished_at_ms = Some(crate::trace::now_ms());
        match outcome {
            Ok(head) => {
                status.ok = Some(true);
                status.head = head;
                let seq = head.map_or(0, |h| h.seq);
                self.verified_up_to.store(seq, Ordering::Relaxed);
            }
            Err(Verdict::Failed(failure)) => {
                self.verified_up_to.store(0, Ordering::Relaxed);
                status.ok = Some(false);
                status.first_failure = Some(failure);
            }
            Err(Verdict::CannotRun(error)) => {
                self.verified_up_to.store(0, Ordering::Relaxed);
                status.ok = Some(false);
                status.error = Some(error);
            }
        }
    }
}

/// The checkpoints in a checkpoint file's text; a line still being
/// appended (no newline yet) is left out.
fn checkpoints_in(text: &str) -> Result<Vec<(Anchor, i64)>, checkpoint::CheckpointError> {
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    checkpoint::parse_file(complete)
}

/// How much of the checkpoint file's end is read for its last line (a
/// line is under 100 bytes; the file grows for the life of the database).
const TAIL_BYTES: u64 = 4096;

/// The last checkpoint in the file `path`: its anchor and when it was
/// written (unix ms); `Ok(None)` when there is no file or no line yet.
pub fn last_checkpoint(path: &std::path::Path) -> Result<Option<(Anchor, i64)>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(e)),
    };
    let len = file.metadata().map_err(cannot)?.len();
    let from = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(from)).map_err(cannot)?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(cannot)?;
    let tail = String::from_utf8_lossy(&tail);
    // Past the first newline, unless the tail is the whole file: the
    // first line of a cut tail is a fragment.
    let whole_lines = match (from, tail.find('\n')) {
        (0, _) => &tail[..],
        (_, Some(first)) => &tail[first + 1..],
        (_, None) => "",
    };
    checkpoints_in(whole_lines)
        .map(|lines| lines.last().copied())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn the_last_whole_line_is_the_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        assert_eq!(last_checkpoint(&path), Ok(None));
        let mut text = String::new();
        for seq in 1..=200 {
            text.push_str(&format!("{seq}:{H} {}\n", 1000 + seq));
        }
        text.push_str("201:0011");
        std::fs::write(&path, &text).unwrap();
        let (anchor, at) = last_checkpoint(&path).unwrap().unwrap();
        assert_eq!((anchor.seq, at), (200, 1200));
    }
}
