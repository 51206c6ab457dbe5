#!/usr/bin/env bash
# Dashboard page benchmark: the overview and the trace list on a database of
# 10 million traces (issue 11; goals: overview <= 300 ms, a traces page
# <= 100 ms of server time on a 2-core machine).
#
#   bash benches/dashboard.sh
#
# 1. Makes the database once (benches/gen_traces.rs, through tollgate's own
#    writer: ~90 days, 3 providers, 11 models, 50 keys), or reuses it.
# 2. Starts the release binary on it, on 127.0.0.1, with an admin key.
# 3. Signs in through POST /ui/login, then requests each page N times in turn
#    (one warm-up round first, not counted): GET /ui/, /ui/traces, filtered
#    by model, by status class 5xx and by key, the second page (the
#    `a#next-page` cursor), and one trace page.
# 4. Writes p50/p95 of the server's `Server-Timing: app;dur=` and of the
#    client-side time (request sent -> body read, keep-alive connection) as a
#    markdown table: target/dashboard-bench/summary.md (+ results.json).
#
# Knobs (environment): DASH_TRACES (10000000), DASH_N requests per page (30),
# DASH_DB (target/dashboard-bench/traces-10m.db; made if missing),
# DASH_SKIP_BUILD=1 to use the binaries already built.
# The file is several GB: delete it when done (rm target/dashboard-bench/*.db*).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/dashboard-bench"
TRACES="${DASH_TRACES:-10000000}"
N="${DASH_N:-30}"
DB="${DASH_DB:-$OUT/traces-10m.db}"
BIN="$ROOT/target/release/tollgate"
mkdir -p "$OUT"

log() { printf '[dashboard %3ds] %s\n' "$SECONDS" "$*" >&2; }

if [[ "${DASH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building the release binary"
    cargo build --release --bin tollgate >&2
fi

if [[ ! -f "$DB" ]]; then
    log "generating $TRACES traces into $DB"
    rm -f "$DB-wal" "$DB-shm" "$DB.checkpoints"
    cargo bench --bench gen_traces -- --db "$DB" --traces "$TRACES" | tee "$OUT/gen.log" >&2
else
    log "reusing $DB"
fi

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ADMIN_KEY="$(python3 -c 'import secrets; print("bench-" + secrets.token_urlsafe(32))')"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

log "starting tollgate on 127.0.0.1:$PORT (migrations run now)"
started=$(date +%s.%N)
env -u TOLLGATE_CONFIG TOLLGATE_ADMIN_KEY="$ADMIN_KEY" RUST_LOG=warn \
    "$BIN" serve --db "$DB" --listen "127.0.0.1:$PORT" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
    sleep 0.1
done
log "ready after $(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')") s"

# The busiest key and a mid-size model, for the filtered lists.
KEY_ID="$(python3 - "$DB" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("SELECT client_key_id FROM cost_daily WHERE client_key_id != '' "
                 "GROUP BY client_key_id ORDER BY sum(requests) DESC LIMIT 1").fetchone()[0])
EOF
)"

ADMIN_KEY="$ADMIN_KEY" python3 - "$PORT" "$N" "$KEY_ID" "$OUT" "$DB" "$TRACES" <<'EOF'
import http.client, json, os, re, sys, time, urllib.parse

port, n, key_id, out, db, traces = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
cookie = None

def request(method, path, body=None, headers=None):
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = cookie
    t0 = time.perf_counter()
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    return r, data, (time.perf_counter() - t0) * 1000

# Sign in.
form = urllib.parse.urlencode({"admin_key": os.environ["ADMIN_KEY"]})
r, _, _ = request("POST", "/ui/login", form, {
    "Content-Type": "application/x-www-form-urlencoded",
    "Origin": f"http://127.0.0.1:{port}", "Host": f"127.0.0.1:{port}"})
if r.status != 303:
    sys.exit(f"sign-in failed: {r.status}")
m = re.search(r"tollgate_session=([^;]+)", r.getheader("Set-Cookie") or "")
if not m:
    sys.exit("sign-in set no session cookie")
cookie = f"tollgate_session={m.group(1)}"

def html(path):
    r, data, _ = request("GET", path)
    if r.status != 200:
        sys.exit(f"GET {path}: {r.status}")
    return data.decode()

first = html("/ui/traces")
nxt = re.search(r'id="next-page"[^>]*href="([^"]+)"|href="([^"]+)"[^>]*id="next-page"', first)
if not nxt:
    sys.exit("/ui/traces has no a#next-page")
next_href = (nxt.group(1) or nxt.group(2)).replace("&amp;", "&")
if next_href.startswith("?"):
    next_href = "/ui/traces" + next_href
tid = re.search(r'data-request-id="([^"]+)"', first).group(1)

pages = [
    ("overview", "/ui/", 300),
    ("traces", "/ui/traces", 100),
    ("traces ?model=", "/ui/traces?model=gpt-5.4", 100),
    ("traces ?status=5xx", "/ui/traces?status=5xx", 100),
    ("traces ?key=", "/ui/traces?key=" + urllib.parse.quote(key_id), 100),
    ("traces, 2nd page (before=)", next_href, 100),
    ("trace page", "/ui/traces/" + tid, 100),
]

def server_ms(r):
    m = re.search(r"app;dur=([0-9.]+)", r.getheader("Server-Timing") or "")
    return float(m.group(1)) if m else float("nan")

samples = {name: ([], []) for name, _, _ in pages}
for round_ in range(n + 1):
    for name, path, _ in pages:
        r, body, client = request("GET", path)
        if r.status != 200:
            sys.exit(f"GET {path}: {r.status}")
        if round_ == 0 and name.startswith("traces") and b"data-request-id=" not in body:
            sys.exit(f"GET {path}: no trace rows (a benchmark of an empty page measures nothing)")
        if round_ > 0:  # round 0 warms the page cache
            samples[name][0].append(server_ms(r))
            samples[name][1].append(client)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]

rows, results = [], {}
for name, path, goal in pages:
    s, c = samples[name]
    res = {"path": path, "server_p50_ms": pct(s, 50), "server_p95_ms": pct(s, 95),
           "client_p50_ms": pct(c, 50), "client_p95_ms": pct(c, 95), "goal_ms": goal, "n": n}
    results[name] = res
    ok = "met" if res["server_p95_ms"] <= goal else "**missed**"
    rows.append(f"| {name} | {res['server_p50_ms']:.1f} | {res['server_p95_ms']:.1f} | "
                f"{res['client_p50_ms']:.1f} | {res['client_p95_ms']:.1f} | ≤ {goal} | {ok} |")

size_gb = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p)) / 1e9
summary = "\n".join([
    f"Dashboard pages on {int(traces):,} traces ({size_gb:.1f} GB database), {n} requests each "
    "after one warm-up round, one keep-alive connection, release build, 127.0.0.1.",
    "Server = `Server-Timing: app;dur`; client = request sent to body read. Goal on server p95.",
    "",
    "| page | server p50 ms | server p95 ms | client p50 ms | client p95 ms | goal | |",
    "|---|---|---|---|---|---|---|",
    *rows,
    "",
])
open(os.path.join(out, "summary.md"), "w").write(summary)
json.dump(results, open(os.path.join(out, "results.json"), "w"), indent=2)
print(summary)
EOF
