#!/usr/bin/env bash
# End-to-end tests with the official OpenAI and Anthropic Python SDKs.
#
# Builds nothing: run `cargo build --workspace --bins` first. Override the
# binaries with TOLLGATE_BIN / MOCK_UPSTREAM_BIN, the interpreter with PYTHON.
# Extra arguments go to pytest (e.g. `-k stream -x`).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

export TOLLGATE_BIN="${TOLLGATE_BIN:-$REPO/target/debug/tollgate}"
export MOCK_UPSTREAM_BIN="${MOCK_UPSTREAM_BIN:-$REPO/target/debug/mock-upstream}"

missing=0
for bin in "$TOLLGATE_BIN" "$MOCK_UPSTREAM_BIN"; do
    if [[ ! -x "$bin" ]]; then
        echo "tests/sdk/run.sh: missing binary: $bin" >&2
        missing=1
    fi
done
if [[ $missing -ne 0 ]]; then
    echo "tests/sdk/run.sh: build them first with: cargo build --workspace --bins" >&2
    exit 1
fi

REQUIREMENTS="$REPO/tests/sdk/requirements.txt"
VENV="$REPO/target/sdk-venv"
STAMP="$VENV/.requirements.sha256"
PY="$VENV/bin/python"

if [[ ! -x "$PY" ]]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi

want_hash="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
have_hash="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want_hash" != "$have_hash" ]]; then
    rm -f "$STAMP"
    "$PY" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want_hash" >"$STAMP"
fi

# The SDKs must only ever see what the tests configure explicitly.
unset OPENAI_API_KEY OPENAI_BASE_URL OPENAI_ORG_ID OPENAI_PROJECT_ID \
    ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN ANTHROPIC_BASE_URL || true

# Keep the source tree clean (no __pycache__ under tests/sdk).
export PYTHONDONTWRITEBYTECODE=1

# pytest exits 5 when it collected no tests: that is a failure here too, so
# every non-zero pytest status (5 included) becomes the script's status.
status=0
"$PY" -m pytest -q -p no:cacheprovider "$REPO/tests/sdk" "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "tests/sdk/run.sh: pytest collected no tests" >&2
fi
exit "$status"
