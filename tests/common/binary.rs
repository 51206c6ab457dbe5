//! The real `tollgate` binary in a child process: start `serve`, signal it,
//! wait for it to exit.

use super::{ADMIN_KEY, UPSTREAM_KEY};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

pub struct Served {
    pub child: Child,
    pub addr: String,
}

/// Starts `tollgate serve ARGS` in `dir` (with the harness's upstream and
/// admin keys, and none of the caller's TOLLGATE_* settings) and waits for
/// its "listening on" line.
pub fn serve(args: &[&str], dir: &std::path::Path, envs: &[(&str, &str)]) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(args)
        .current_dir(dir)
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_DB")
        .env_remove("TOLLGATE_LISTEN")
        .env_remove("TOLLGATE_AUDIT_KEY")
        .env("TEST_UPSTREAM_KEY", UPSTREAM_KEY)
        .env("TOLLGATE_ADMIN_KEY", ADMIN_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Served { child, addr }
}

/// Sends `sig` (as `kill` takes it, e.g. `-HUP`) to `child`.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

pub fn sigterm(child: &Child) {
    signal(child, "-TERM");
}

/// The exit code (-1: ended by a signal) and everything written to stderr.
pub fn wait_exit(mut child: Child) -> (i32, String) {
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("tollgate did not exit within 30 s");
}

/// SIGTERM, then what [`wait_exit`] gives.
pub fn stop(child: Child) -> (i32, String) {
    sigterm(&child);
    wait_exit(child)
}

/// Runs `tollgate ARGS --db DB` (none of the caller's TOLLGATE_CONFIG or
/// audit key): exit code, stdout, stderr.
pub fn cli(db: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_AUDIT_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
