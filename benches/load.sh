#!/usr/bin/env bash
# Load benchmark: tollgate vs. straight to the mock upstream (and LiteLLM as a
# reference), all on 127.0.0.1, bounded in count and time.
#
#   bash benches/load.sh                 # everything, ~5 min on 2 cores
#   LOAD_LITELLM=0 bash benches/load.sh  # without the LiteLLM column
#
# Measures (see BENCHMARKS.md for what each figure means):
#   * throughput: oha, non-stream chat, fixed concurrency for a fixed time,
#     alternating direct / via tollgate; median req/s of each, ratio via/direct
#   * added latency at a fixed request rate (oha -q, latency-corrected)
#   * streaming: time to first byte and inter-chunk gaps (stream-probe)
#   * tollgate's resident memory with 1,000 concurrent open streams
#   * writer: records committed per second during the throughput runs, queue peak
#   * SIGTERM under load: every response received has its trace
#   * LiteLLM (optional, pip-installed into target/load/litellm-venv):
#     throughput and fixed-rate latency against the same mock
#
# Output: a markdown table on stdout; target/load/summary.md, results.json and
# every raw output under target/load/raw/.
#
# Knobs (environment): LOAD_LITELLM=0|1 (1), LOAD_DURATION seconds per run (8),
# LOAD_CONCURRENCY (32), LOAD_RATE req/s (1000), LOAD_THR_PAIRS (3),
# LOAD_LAT_PAIRS (3), LOAD_STREAMS (100), LOAD_STREAM_CONCURRENCY (4),
# LOAD_MEM_STREAMS (1000), LOAD_LITELLM_WORKERS (nproc), LOAD_SKIP_BUILD=1 to
# measure the binaries already in target/release (e.g. while the tree does not build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HELPERS="$ROOT/benches/load"
OUT="$ROOT/target/load"
RAW="$OUT/raw"
BIN="$ROOT/target/release"

LOAD_LITELLM="${LOAD_LITELLM:-1}"
DURATION="${LOAD_DURATION:-8}"
CONC="${LOAD_CONCURRENCY:-32}"
RATE="${LOAD_RATE:-1000}"
THR_PAIRS="${LOAD_THR_PAIRS:-3}"
LAT_PAIRS="${LOAD_LAT_PAIRS:-3}"
STREAMS="${LOAD_STREAMS:-100}"
STREAM_CONC="${LOAD_STREAM_CONCURRENCY:-4}"
MEM_STREAMS="${LOAD_MEM_STREAMS:-1000}"
LITELLM_WORKERS="${LOAD_LITELLM_WORKERS:-$(nproc)}"
LITELLM_VENV="$OUT/litellm-venv"

# A small, realistic non-stream chat request.
BODY='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"Summarize the plot of Hamlet in two sentences."}],"temperature":0.2,"max_tokens":128}'

log() { printf '[load %3ds] %s\n' "$SECONDS" "$*" >&2; }

# --- processes and cleanup ------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-load.XXXXXX")"
PIDS=()       # processes we started (killed on exit)
GROUPS_=()    # process groups we started with setsid (LiteLLM and its workers)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${GROUPS_[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}" $(jobs -p); do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${GROUPS_[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}" $(jobs -p); do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# bg_wait CMD...: run CMD as a background job and wait for it, so a signal to
# this script is handled at once rather than when CMD ends.
bg_wait() {
    "$@" &
    wait "$!"
}

forget_pid() { # drop $1 from PIDS once it has exited
    local keep=() p
    for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# wait_listening FILE PID NAME: print the address a server announced on stdout.
wait_listening() {
    local file=$1 pid=$2 name=$3 i addr
    for ((i = 0; i < 300; i++)); do
        addr="$(sed -n 's#^listening on http://##p' "$file" 2>/dev/null | head -n1)"
        if [[ -n "$addr" ]]; then
            echo "$addr"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited before listening; its stderr:" >&2
            cat "$RAW/$name.stderr" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    echo "$name did not announce an address within 30 s" >&2
    return 1
}

# CPU accounting around each measured run (see benches/load/cpu.py): system
# busy time vs. this script's process tree, and tollgate's / the mock's time
# per thread, so runs disturbed by other work on the machine are visible.
TG_PID=""
MOCK_PID=""
cpu_snap() {
    python3 "$HELPERS/cpu.py" snap $$ "$1" >>"$RAW/cpu.jsonl" || true
    local pid
    for pid in "$TG_PID" "$MOCK_PID"; do
        [[ -n "$pid" ]] && python3 "$HELPERS/cpu.py" threads "$pid" "$1" >>"$RAW/threads.jsonl" || true
    done
}

# wait_quiet PHASE: wait (at most 20 s) until other work leaves the CPUs mostly idle.
wait_quiet() {
    local busy
    if busy="$(python3 "$HELPERS/cpu.py" quiet --max-busy 0.3 --timeout 20)"; then
        echo "$1 quiet busy=$busy" >>"$RAW/quiet.txt"
    else
        log "warning: the machine is still ${busy} busy (fraction of all CPUs) with other work; measuring anyway"
        echo "$1 still-busy busy=$busy" >>"$RAW/quiet.txt"
    fi
}

# oha_run NAME URL ARGS...: one oha run, JSON to raw/NAME.json, summary to stderr.
oha_run() {
    local name=$1 url=$2
    shift 2
    cpu_snap "$name:start"
    bg_wait oha --no-tui --output-format json -o "$RAW/$name.json" \
        -m POST -H 'content-type: application/json' -H "authorization: Bearer $CLIENT_KEY" \
        -d "$BODY" "$@" "$url"
    cpu_snap "$name:end"
    python3 "$HELPERS/brief.py" oha "$RAW/$name.json" "$name"
}

metrics() { curl -sf --max-time 2 "http://$TG/metrics"; }

# --- preparation -----------------------------------------------------------------
rm -rf "$RAW"
mkdir -p "$RAW"

# 1,000 streams need ~3 descriptors each across probe, tollgate and mock.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 4 * MEM_STREAMS)); then
    log "warning: ulimit -n is $(ulimit -n); $MEM_STREAMS streams may run out of descriptors"
fi

if [[ "${LOAD_SKIP_BUILD:-0}" == 1 ]]; then
    log "LOAD_SKIP_BUILD=1: measuring the release binaries already in target/release"
else
    log "building release binaries"
    cargo build --release --workspace --bins --quiet
fi
for b in tollgate mock-upstream stream-probe; do
    [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b" >&2; exit 1; }
done

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v oha >/dev/null 2>&1; then
    log "installing oha (cargo install --locked oha)"
    cargo install --locked oha --quiet
fi

python3 - "$RAW/meta.json" <<EOF
import json, subprocess, sys, datetime
def sh(c):
    return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "command": "bash benches/load.sh",
    "nproc": sh("nproc"),
    "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
    "mem_total": sh("free -h | awk '/^Mem:/ {print \$2}'"),
    "kernel": sh("uname -r"),
    "oha": sh("oha --version"),
    "rustc": sh("rustc --version"),
    "skip_build": "${LOAD_SKIP_BUILD:-0}" == "1",
    "tollgate_binary_mtime": sh("date -u -r target/release/tollgate '+%Y-%m-%d %H:%M UTC'"),
    "git": sh("git rev-parse --short HEAD") + (" + uncommitted changes" if sh("git status --porcelain --untracked-files=no") else ""),
    "duration_s": $DURATION, "concurrency": $CONC, "rate": $RATE,
    "thr_pairs": $THR_PAIRS, "lat_pairs": $LAT_PAIRS,
    "streams": $STREAMS, "stream_concurrency": $STREAM_CONC, "mem_streams": $MEM_STREAMS,
}, open(sys.argv[1], "w"), indent=1)
EOF

# --- mock upstream and tollgate -----------------------------------------------------
"$BIN/mock-upstream" --listen 127.0.0.1:0 --no-record >"$WORK/mock.out" 2>"$RAW/mock.stderr" &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
MOCK="$(wait_listening "$WORK/mock.out" "$MOCK_PID" mock)"
log "mock upstream on $MOCK"

cat >"$WORK/tollgate.toml" <<EOF
# Defaults everywhere (tracing, cost and audit on) except where it listens,
# where the database lives and where the providers are.
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 10

[store]
path = "$WORK/tollgate.db"

[[providers]]
name = "openai"
protocol = "openai"
base_url = "http://$MOCK/v1"
api_key_env = "LOAD_UPSTREAM_KEY"
models = ["gpt-4o-mini", "text-embedding-3-small"]

[[providers]]
name = "anthropic"
protocol = "anthropic"
base_url = "http://$MOCK/v1"
api_key_env = "LOAD_UPSTREAM_KEY"
models = ["claude-haiku-4-5"]
EOF
cp "$WORK/tollgate.toml" "$RAW/tollgate.toml"

# Client keys are required by default: issue one for the load tools.
CLIENT_KEY="$("$BIN/tollgate" keys create --config "$WORK/tollgate.toml" --name load-bench 2>"$RAW/keys-create.stderr" | tail -n1)"
[[ "$CLIENT_KEY" == tg-* ]] || { echo "tollgate keys create gave no key:" >&2; cat "$RAW/keys-create.stderr" >&2; exit 1; }

LOAD_UPSTREAM_KEY=sk-load-upstream TOLLGATE_LOG=warn \
    "$BIN/tollgate" serve --config "$WORK/tollgate.toml" >"$WORK/tollgate.out" 2>"$RAW/tollgate.stderr" &
TG_PID=$!
PIDS+=("$TG_PID")
TG="$(wait_listening "$WORK/tollgate.out" "$TG_PID" tollgate)"
log "tollgate on $TG (pid $TG_PID)"
printf 'tollgate %s\nmock %s\n' "$TG_PID" "$MOCK_PID" >"$RAW/pids.txt"

DIRECT_URL="http://$MOCK/v1/chat/completions"
VIA_URL="http://$TG/v1/chat/completions"
code="$(curl -s -o "$RAW/smoke.json" -w '%{http_code}' -H 'content-type: application/json' \
    -H "authorization: Bearer $CLIENT_KEY" -d "$BODY" "$VIA_URL")"
if [[ "$code" != 200 ]]; then
    echo "smoke request through tollgate failed with HTTP $code:" >&2
    cat "$RAW/smoke.json" >&2
    exit 1
fi

# --- throughput ----------------------------------------------------------------------
wait_quiet throughput
log "throughput: c=$CONC, ${DURATION}s per run, $THR_PAIRS x (direct, via), after a 2 s warm-up each"
oha_run warm-direct-1 "$DIRECT_URL" -z 2s -c "$CONC"
oha_run warm-via-1 "$VIA_URL" -z 2s -c "$CONC"
for ((i = 1; i <= THR_PAIRS; i++)); do
    sleep 1
    oha_run "thr-direct-$i" "$DIRECT_URL" -z "${DURATION}s" -c "$CONC"
    sleep 1
    metrics >"$RAW/metrics-before-thr-via-$i.txt"
    python3 "$HELPERS/sampler.py" --pid "$TG_PID" --metrics "http://$TG/metrics" \
        --interval 0.05 --out "$RAW/queue-thr-via-$i.jsonl" &
    SAMPLER=$!
    PIDS+=("$SAMPLER")
    oha_run "thr-via-$i" "$VIA_URL" -z "${DURATION}s" -c "$CONC"
    sleep 0.5 # let the last batch commit
    kill -TERM "$SAMPLER" && wait "$SAMPLER" || true
    forget_pid "$SAMPLER"
    metrics >"$RAW/metrics-after-thr-via-$i.txt"
done

# --- governance modules on vs off ---------------------------------------------------------
# The same load through tollgate with a key that has every limit and a budget
# (set far above what the load reaches, so nothing is refused and every
# module does its full work), alternating: every module switched off, then on
# (`tollgate modules disable|enable`, in force within a second).
wait_quiet modules
GOV_KEY="$("$BIN/tollgate" keys create --config "$WORK/tollgate.toml" --name load-governed \
    --rpm 1000000000 --tpm 1000000000000 --max-parallel 100000 --budget-usd 1000000 --budget-window total \
    2>"$RAW/keys-create-governed.stderr" | tail -n1)"
[[ "$GOV_KEY" == tg-* ]] || { echo "tollgate keys create (governed) gave no key:" >&2; cat "$RAW/keys-create-governed.stderr" >&2; exit 1; }
MODULES="$("$BIN/tollgate" modules list --json --config "$WORK/tollgate.toml" |
    python3 -c 'import json, sys; print(" ".join(m["name"] for m in json.load(sys.stdin)))')"
# The governance modules: the cache would turn the "on" runs into hits, and
# the guardrails are a content module (their cost is `cargo bench --bench guardrails`).
GOV_MODULES="$(echo "$MODULES" | tr ' ' '\n' | grep -vE '^(cache|semantic_cache|guardrails)$' | tr '\n' ' ')"
switch_modules() {
    local verb=$1 m
    for m in $GOV_MODULES; do
        "$BIN/tollgate" modules "$verb" "$m" --config "$WORK/tollgate.toml" >>"$RAW/modules-switch.log" 2>&1
    done
    sleep 1.5 # the server polls module settings every second
}
echo "$GOV_MODULES" >"$RAW/modules.txt"
log "modules: c=$CONC, ${DURATION}s per run, $THR_PAIRS x (off, on) via tollgate; modules: $GOV_MODULES"
SAVED_KEY="$CLIENT_KEY"
CLIENT_KEY="$GOV_KEY"
switch_modules enable
oha_run warm-modules-on-1 "$VIA_URL" -z 2s -c "$CONC"
for ((i = 1; i <= THR_PAIRS; i++)); do
    switch_modules disable
    oha_run "thr-modules-off-$i" "$VIA_URL" -z "${DURATION}s" -c "$CONC"
    switch_modules enable
    oha_run "thr-modules-on-$i" "$VIA_URL" -z "${DURATION}s" -c "$CONC"
done
CLIENT_KEY="$SAVED_KEY"

# --- exact cache: hits against the upstream itself -------------------------------------------
# The same request over and over through tollgate with `cache` on: after the
# first, every answer is a hit that never leaves the box. Compared with
# direct-to-mock throughput in this same run, and its latency at the fixed rate.
if [[ " $MODULES " == *" cache "* ]]; then
    wait_quiet cache
    "$BIN/tollgate" modules enable cache --config "$WORK/tollgate.toml" >>"$RAW/modules-switch.log" 2>&1
    sleep 1.5
    for _ in 1 2; do
        curl -s -D "$RAW/cache-prime-headers.txt" -o /dev/null -H 'content-type: application/json' \
            -H "authorization: Bearer $CLIENT_KEY" -d "$BODY" "$VIA_URL"
    done
    tr -d '\r' <"$RAW/cache-prime-headers.txt" | awk -F': ' 'tolower($1) == "x-tollgate-cache" {print $2}' >"$RAW/cache-status.txt"
    log "cache: second identical request answered x-tollgate-cache: $(cat "$RAW/cache-status.txt")"
    oha_run warm-cache-1 "$VIA_URL" -z 2s -c "$CONC"
    for ((i = 1; i <= THR_PAIRS; i++)); do
        sleep 1
        oha_run "thr-cachedirect-$i" "$DIRECT_URL" -z "${DURATION}s" -c "$CONC"
        sleep 1
        oha_run "thr-cache-$i" "$VIA_URL" -z "${DURATION}s" -c "$CONC"
    done
    for ((i = 1; i <= LAT_PAIRS; i++)); do
        sleep 1
        oha_run "lat-cache-$i" "$VIA_URL" -z "${DURATION}s" -c "$CONC" -q "$RATE" --latency-correction
    done
    "$BIN/tollgate" modules disable cache --config "$WORK/tollgate.toml" >>"$RAW/modules-switch.log" 2>&1
    sleep 1.5
else
    echo "no cache module" >"$RAW/cache-status.txt"
fi

# --- added latency at a fixed rate -------------------------------------------------------
wait_quiet latency
log "latency: ${RATE} req/s (latency-corrected), ${DURATION}s per run, $LAT_PAIRS x (direct, via)"
for ((i = 1; i <= LAT_PAIRS; i++)); do
    sleep 1
    oha_run "lat-direct-$i" "$DIRECT_URL" -z "${DURATION}s" -c "$CONC" -q "$RATE" --latency-correction
    sleep 1
    oha_run "lat-via-$i" "$VIA_URL" -z "${DURATION}s" -c "$CONC" -q "$RATE" --latency-correction
done

# --- streaming: first byte and inter-chunk gaps -----------------------------------------------
probe() { bg_wait "$BIN/stream-probe" --key "$CLIENT_KEY" "$@"; }
wait_quiet streaming
log "streaming: $STREAMS streams x 20 words at 20 ms, $STREAM_CONC at a time, direct then via"
probe --url "$VIA_URL" --streams 8 --concurrency 2 --words 5 --chunk-delay-ms 5 \
    >"$RAW/stream-via-warm.json" 2>/dev/null
for side in direct via; do
    url="$DIRECT_URL"
    [[ "$side" == via ]] && url="$VIA_URL"
    sleep 1
    cpu_snap "stream-$side:start"
    probe --url "$url" --streams "$STREAMS" --concurrency "$STREAM_CONC" --stagger-ms 110 \
        --words 20 --chunk-delay-ms 20 --timeout-secs 60 >"$RAW/stream-$side.json" 2>"$RAW/stream-$side.err" ||
        log "stream-probe $side reported failed streams"
    cpu_snap "stream-$side:end"
    python3 "$HELPERS/brief.py" stream "$RAW/stream-$side.json" "$side"
done

# --- memory with many concurrent open streams ------------------------------------------------
wait_quiet memory
log "memory: $MEM_STREAMS concurrent streams through tollgate (40 words, 500 ms apart)"
sleep 1
grep -E '^(VmRSS|RssAnon|RssFile|VmHWM):' "/proc/$TG_PID/status" >"$RAW/status-before-mem.txt"
awk '/^VmRSS:/ {print $2}' "/proc/$TG_PID/status" >"$RAW/rss-before-mem.txt"
ls -l "$WORK"/tollgate.db* >"$RAW/db-size-before-mem.txt" 2>&1 || true
python3 "$HELPERS/sampler.py" --pid "$TG_PID" --metrics "http://$TG/metrics" \
    --interval 0.1 --out "$RAW/mem-rss.jsonl" &
SAMPLER=$!
PIDS+=("$SAMPLER")
cpu_snap "mem:start"
probe --url "$VIA_URL" --streams "$MEM_STREAMS" --concurrency "$MEM_STREAMS" \
    --words 40 --chunk-delay-ms 500 --timeout-secs 90 \
    >"$RAW/mem-probe.json" 2>"$RAW/mem-probe.err" || log "stream-probe reported failed streams"
cpu_snap "mem:end"
kill -TERM "$SAMPLER" && wait "$SAMPLER" || true
forget_pid "$SAMPLER"
python3 "$HELPERS/brief.py" mem "$RAW/mem-probe.json" "$RAW/mem-rss.jsonl"

# --- SIGTERM under load ------------------------------------------------------------------------
log "SIGTERM under load: oha c=$CONC for 4 s, SIGTERM after 2 s"
sleep 1
metrics >"$RAW/metrics-final.txt" || true
oha --no-tui --output-format json -o "$RAW/term-via-1.json" -m POST \
    -H 'content-type: application/json' -H "authorization: Bearer $CLIENT_KEY" \
    -d "$BODY" -z 4s -c "$CONC" "$VIA_URL" &
OHA_PID=$!
PIDS+=("$OHA_PID")
sleep 2
kill -TERM "$TG_PID"
tg_rc=0
wait "$TG_PID" || tg_rc=$?
forget_pid "$TG_PID"
wait "$OHA_PID" || true
forget_pid "$OHA_PID"
TG_PID=""
echo "$tg_rc" >"$RAW/tollgate-exit.txt"
sqlite3 "$WORK/tollgate.db" 'SELECT count(*) FROM traces' >"$RAW/traces-count.txt" 2>&1 || true
sqlite3 "$WORK/tollgate.db" 'PRAGMA integrity_check' >"$RAW/integrity.txt" 2>&1 || true
log "tollgate exited $tg_rc; $(cat "$RAW/traces-count.txt") traces; integrity_check: $(head -c 80 "$RAW/integrity.txt")"

# --- LiteLLM reference -------------------------------------------------------------------------
litellm_phase() {
    local status="$RAW/litellm-status.txt"
    if [[ ! -x "$LITELLM_VENV/bin/litellm" ]]; then
        log "LiteLLM: installing into $LITELLM_VENV (at most 4 min)"
        python3 -m venv "$LITELLM_VENV"
        if ! timeout 240 "$LITELLM_VENV/bin/pip" install --quiet 'litellm[proxy]' >"$RAW/litellm-pip.log" 2>&1; then
            echo "skipped: pip install 'litellm[proxy]' failed or took over 4 min (see raw/litellm-pip.log)" >"$status"
            rm -rf "$LITELLM_VENV"
            return 0
        fi
    fi
    local version port master
    version="$("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version:/ {print $2}')"
    # LiteLLM refuses to start without a master key; clients send it.
    master="sk-load-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    cat >"$WORK/litellm.yaml" <<EOF
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://$MOCK/v1
      api_key: sk-load-upstream
litellm_settings:
  telemetry: false
EOF
    cp "$WORK/litellm.yaml" "$RAW/litellm.yaml"
    log "LiteLLM $version: starting on 127.0.0.1:$port with $LITELLM_WORKERS worker(s)"
    # Own process group, so its workers are stopped with it. No network but
    # localhost: use the bundled model price map, no telemetry.
    LITELLM_MASTER_KEY="$master" LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False LITELLM_LOG=ERROR \
        setsid "$LITELLM_VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 \
        --port "$port" --num_workers "$LITELLM_WORKERS" >"$RAW/litellm.log" 2>&1 &
    local lpid=$!
    GROUPS_+=("$lpid")
    local url="http://127.0.0.1:$port/v1/chat/completions" i ready=0
    for ((i = 0; i < 240; i++)); do
        if ! kill -0 "$lpid" 2>/dev/null; then break; fi
        if curl -sf --max-time 2 -o /dev/null -H 'content-type: application/json' \
            -H "authorization: Bearer $master" -d "$BODY" "$url"; then
            ready=1
            break
        fi
        sleep 0.5
    done
    if ((ready == 0)); then
        if kill -0 "$lpid" 2>/dev/null; then
            echo "skipped: LiteLLM $version did not answer a chat request within 120 s (see raw/litellm.log)" >"$status"
        else
            echo "skipped: LiteLLM $version exited at startup (see raw/litellm.log)" >"$status"
        fi
        kill -TERM -- "-$lpid" 2>/dev/null || true
        return 0
    fi
    wait_quiet litellm
    log "LiteLLM ready; throughput then latency"
    local CLIENT_KEY="$master"
    oha_run warm-litellm-1 "$url" -z 2s -c "$CONC"
    for ((i = 1; i <= THR_PAIRS; i++)); do
        sleep 1
        oha_run "thr-litellm-$i" "$url" -z "${DURATION}s" -c "$CONC"
    done
    sleep 1
    oha_run lat-litellm-1 "$url" -z "${DURATION}s" -c "$CONC" -q "$RATE" --latency-correction
    # It cannot sustain that rate on 2 cores: also measure at half the
    # throughput it managed, where it is not saturated.
    local low
    low="$(python3 -c '
import json, sys
rps = []
for f in sys.argv[1:]:
    d = json.load(open(f))
    ok = sum(v for k, v in d.get("statusCodeDistribution", {}).items() if k.startswith("2"))
    rps.append(ok / (d["summary"]["total"] or 1))
rps.sort()
print(max(5, int(rps[len(rps) // 2] / 2)))
' "$RAW"/thr-litellm-*.json)"
    if ((low < RATE)); then
        sleep 1
        oha_run lat-litellm-low-1 "$url" -z "${DURATION}s" -c "$CONC" -q "$low" --latency-correction
    fi
    echo "ok" >"$status"
    echo "$version, $LITELLM_WORKERS uvicorn worker(s), no database" >"$RAW/litellm-version.txt"
    kill -TERM -- "-$lpid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$lpid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$lpid" 2>/dev/null || true
}
if [[ "$LOAD_LITELLM" == 1 ]]; then
    litellm_phase
else
    echo "not run (LOAD_LITELLM=0)" >"$RAW/litellm-status.txt"
fi

# --- report ---------------------------------------------------------------------------------------
echo "$SECONDS" >"$RAW/runtime-seconds.txt"
log "done in ${SECONDS}s; results in target/load/"
python3 "$HELPERS/report.py" "$OUT"
