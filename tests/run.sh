#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: lint, unit and integration
# tests, benches compiled and smoke-run, the official OpenAI / Anthropic
# Python SDKs against the real binary (their venv is created on first run), and
# the dashboard in headless Chromium (tests/browser; screenshots in
# target/screenshots/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check
step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "build"
cargo build --workspace --bins --locked
step "cargo test"
cargo test --workspace --locked
if compgen -G "benches/*.rs" >/dev/null; then
    step "benches (compile and run each once, no timing)"
    cargo bench --workspace --locked -- --test
fi
step "official SDKs (tests/sdk)"
bash tests/sdk/run.sh
step "dashboard in headless Chromium (tests/browser)"
bash tests/browser/run.sh
