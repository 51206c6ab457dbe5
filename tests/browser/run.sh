#!/usr/bin/env bash
# Browser tests of the dashboard (/ui/) in headless Chromium, driven by
# Playwright for Python against the real binary and mock-upstream.
#
# Builds nothing: run `cargo build --workspace --bins` first. Needs Debian's
# chromium (.ci/run installs it); override with CHROMIUM. Playwright is
# installed into target/browser-venv and never downloads a browser of its own.
# Screenshots of every page go to target/screenshots/ (SCREENSHOT_DIR).
# Extra arguments go to pytest (e.g. `-k traces -x`).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

export TOLLGATE_BIN="${TOLLGATE_BIN:-$REPO/target/debug/tollgate}"
export MOCK_UPSTREAM_BIN="${MOCK_UPSTREAM_BIN:-$REPO/target/debug/mock-upstream}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export SCREENSHOT_DIR="${SCREENSHOT_DIR:-$REPO/target/screenshots}"

missing=0
for bin in "$TOLLGATE_BIN" "$MOCK_UPSTREAM_BIN" "$CHROMIUM"; do
    if [[ ! -x "$bin" ]]; then
        echo "tests/browser/run.sh: missing executable: $bin" >&2
        missing=1
    fi
done
if [[ $missing -ne 0 ]]; then
    echo "tests/browser/run.sh: build with \`cargo build --workspace --bins\`;" \
        "install Chromium with \`apt-get install chromium\`" >&2
    exit 1
fi

REQUIREMENTS="$REPO/tests/browser/requirements.txt"
VENV="$REPO/target/browser-venv"
STAMP="$VENV/.requirements.sha256"
PY="$VENV/bin/python"

if [[ ! -x "$PY" ]]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi

want_hash="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
have_hash="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want_hash" != "$have_hash" ]]; then
    rm -f "$STAMP"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
        "$PY" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want_hash" >"$STAMP"
fi
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# Keep the source tree clean (no __pycache__ under tests/browser).
export PYTHONDONTWRITEBYTECODE=1

mkdir -p "$SCREENSHOT_DIR"
rm -f "$SCREENSHOT_DIR"/*.png

# pytest exits 5 when it collected no tests: that is a failure here too.
status=0
"$PY" -m pytest -q -p no:cacheprovider "$REPO/tests/browser" "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "tests/browser/run.sh: pytest collected no tests" >&2
fi
exit "$status"
