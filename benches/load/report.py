#!/usr/bin/env python3
"""Turn the raw outputs of benches/load.sh into results.json and a markdown table.

    report.py OUT_DIR

Reads OUT_DIR/raw/* (oha JSON, stream-probe JSON, sampler JSONL, /metrics
snapshots, small text facts) and writes OUT_DIR/results.json and
OUT_DIR/summary.md; prints the markdown on stdout. Missing inputs become
"n/a" rather than errors, so a partial run still reports what it measured.
"""
import json
import os
import re
import statistics
import sys

OUT = sys.argv[1]
RAW = os.path.join(OUT, "raw")


def path(name):
    return os.path.join(RAW, name)


def load_json(name):
    try:
        with open(path(name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_text(name, default=None):
    try:
        with open(path(name)) as f:
            return f.read().strip()
    except OSError:
        return default


def jsonl(name):
    out = []
    try:
        with open(path(name)) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def runs(prefix):
    """Files prefix-1.json, prefix-2.json, ... that exist, in order."""
    i, out = 1, []
    while os.path.exists(path(f"{prefix}-{i}.json")):
        out.append(f"{prefix}-{i}.json")
        i += 1
    return out


def oha(name):
    """The numbers we use from one oha JSON output."""
    d = load_json(name)
    if not d:
        return None
    s = d.get("summary", {})
    codes = {k: int(v) for k, v in d.get("statusCodeDistribution", {}).items()}
    errors = {k: int(v) for k, v in d.get("errorDistribution", {}).items()}
    secs = s.get("total") or 0.0
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    lp = d.get("latencyPercentiles", {})
    ms = lambda v: None if v is None else v * 1000.0  # noqa: E731
    return {
        "file": name,
        "secs": secs,
        "responses": sum(codes.values()),
        "ok": ok,
        "non_2xx": sum(codes.values()) - ok,
        "errors": errors,
        "ok_per_sec": ok / secs if secs else 0.0,
        "p50_ms": ms(lp.get("p50")),
        "p90_ms": ms(lp.get("p90")),
        "p99_ms": ms(lp.get("p99")),
        "p999_ms": ms(lp.get("p99.9")),
        "mean_ms": ms(s.get("average")),
    }


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def metric(text, name):
    if not text:
        return None
    m = re.search(rf"^{re.escape(name)} ([0-9.eE+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def fmt(x, digits=2, unit=""):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}{unit}"


def signed(x, digits=3):
    if x is None:
        return "n/a"
    return f"{x:+.{digits}f}"


res = {"meta": load_json("meta.json") or {}}

# --- throughput --------------------------------------------------------------
thr = {}
for side in ("direct", "via", "litellm"):
    rs = [r for r in (oha(n) for n in runs(f"thr-{side}")) if r]
    thr[side] = {
        "runs": rs,
        "median_ok_per_sec": median([r["ok_per_sec"] for r in rs]),
        "non_2xx": sum(r["non_2xx"] for r in rs),
    }
d_rps = thr["direct"]["median_ok_per_sec"]
for side in ("via", "litellm"):
    v = thr[side]["median_ok_per_sec"]
    thr[side]["ratio_to_direct"] = v / d_rps if (v is not None and d_rps) else None
res["throughput"] = thr

# --- governance modules off vs on (same key, same load) ------------------------
mods = {}
for side in ("off", "on"):
    rs = [r for r in (oha(n) for n in runs(f"thr-modules-{side}")) if r]
    mods[side] = {
        "runs": rs,
        "median_ok_per_sec": median([r["ok_per_sec"] for r in rs]),
        "non_2xx": sum(r["non_2xx"] for r in rs),
    }
on, off = mods["on"]["median_ok_per_sec"], mods["off"]["median_ok_per_sec"]
mods["ratio_on_to_off"] = on / off if (on is not None and off) else None
mods["names"] = read_text("modules.txt", "").strip()
res["modules"] = mods

# --- exact cache hits ----------------------------------------------------------
cache = {"status": read_text("cache-status.txt", "not run")}
for side in ("cache", "cachedirect"):
    rs = [r for r in (oha(n) for n in runs(f"thr-{side}")) if r]
    cache[side] = {
        "runs": rs,
        "median_ok_per_sec": median([r["ok_per_sec"] for r in rs]),
        "non_2xx": sum(r["non_2xx"] for r in rs),
    }
c_hit, c_dir = cache["cache"]["median_ok_per_sec"], cache["cachedirect"]["median_ok_per_sec"]
cache["ratio_to_direct"] = c_hit / c_dir if (c_hit is not None and c_dir) else None
lrs = [r for r in (oha(n) for n in runs("lat-cache")) if r]
cache["latency"] = {
    "runs": lrs,
    "p50_ms": median([r["p50_ms"] for r in lrs]),
    "p99_ms": median([r["p99_ms"] for r in lrs]),
}
res["cache"] = cache

# --- latency at a fixed rate -------------------------------------------------
lat = {}
for side in ("direct", "via", "litellm", "litellm-low"):
    rs = [r for r in (oha(n) for n in runs(f"lat-{side}")) if r]
    lat[side] = {
        "runs": rs,
        "p50_ms": median([r["p50_ms"] for r in rs]),
        "p99_ms": median([r["p99_ms"] for r in rs]),
        "achieved_per_sec": median([r["ok_per_sec"] for r in rs]),
        "non_2xx": sum(r["non_2xx"] for r in rs),
    }
for side in ("via", "litellm", "litellm-low"):
    for p in ("p50_ms", "p99_ms"):
        a, b = lat[side][p], lat["direct"][p]
        lat[side]["added_" + p] = a - b if (a is not None and b is not None) else None
res["latency"] = lat

# --- writer during the throughput runs through tollgate ----------------------
writer_runs = []
for i, _ in enumerate(thr["via"]["runs"], start=1):
    before = read_text(f"metrics-before-thr-via-{i}.txt")
    after = read_text(f"metrics-after-thr-via-{i}.txt")
    c0 = metric(before, "tollgate_writer_records_committed_total")
    c1 = metric(after, "tollgate_writer_records_committed_total")
    secs = thr["via"]["runs"][i - 1]["secs"]
    samples = [s["queue_depth"] for s in jsonl(f"queue-thr-via-{i}.jsonl") if "queue_depth" in s]
    writer_runs.append(
        {
            "records": None if c0 is None or c1 is None else c1 - c0,
            "records_per_sec": None if c0 is None or c1 is None or not secs else (c1 - c0) / secs,
            "queue_depth_max_sampled": max(samples) if samples else None,
            "queue_depth_samples": len(samples),
            "queue_peak_metric": metric(after, "tollgate_writer_queue_peak"),
            "backpressure_waits": metric(after, "tollgate_writer_backpressure_waits_total"),
            "max_batch": metric(after, "tollgate_writer_max_batch"),
        }
    )
peaks = [w["queue_peak_metric"] for w in writer_runs if w["queue_peak_metric"] is not None]
sampled = [w["queue_depth_max_sampled"] for w in writer_runs if w["queue_depth_max_sampled"] is not None]
res["writer"] = {
    "runs": writer_runs,
    "median_records_per_sec": median([w["records_per_sec"] for w in writer_runs]),
    "queue_peak": max(peaks) if peaks else (max(sampled) if sampled else None),
    "queue_peak_source": "tollgate_writer_queue_peak" if peaks else "max sampled tollgate_writer_queue_depth",
    "queue_depth_max_sampled": max(sampled) if sampled else None,
    "backpressure_waits": writer_runs[-1]["backpressure_waits"] if writer_runs else None,
}

# --- streaming ---------------------------------------------------------------
sd, sv = load_json("stream-direct.json"), load_json("stream-via.json")


def g(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def diff(a, b):
    return a - b if (a is not None and b is not None) else None


res["streaming"] = {
    "direct": sd,
    "via": sv,
    "added_ttfb_p50_ms": diff(g(sv, "ttfb_ms", "p50"), g(sd, "ttfb_ms", "p50")),
    "added_ttfb_p99_ms": diff(g(sv, "ttfb_ms", "p99"), g(sd, "ttfb_ms", "p99")),
    "added_mean_gap_ms": diff(g(sv, "gap_ms", "mean"), g(sd, "gap_ms", "mean")),
    "added_gap_p99_ms": diff(g(sv, "gap_ms", "p99"), g(sd, "gap_ms", "p99")),
}

# --- memory at N concurrent streams ----------------------------------------------
mp = load_json("mem-probe.json")
markers = {}
for line in (read_text("mem-probe.err", "") or "").splitlines():
    m = re.match(r"PROBE (\w+) unix_ms=(\d+)", line)
    if m:
        markers[m.group(1)] = int(m.group(2))
samples = jsonl("mem-rss.jsonl")
window = [
    s
    for s in samples
    if "rss_kb" in s
    and "all_open" in markers
    and markers["all_open"] <= s["unix_ms"] <= markers.get("first_done", 1 << 62)
]
peak = max(window, key=lambda s: s["rss_kb"]) if window else {}
before = {}
for line in (read_text("status-before-mem.txt", "") or "").splitlines():
    k, _, v = line.partition(":")
    before[k] = int(v.split()[0]) / 1024
res["memory"] = {
    "at_peak_anon_mb": peak.get("anon_kb", 0) / 1024 or None,
    "at_peak_file_mb": peak.get("file_kb", 0) / 1024 or None,
    "idle_anon_mb": before.get("RssAnon"),
    "idle_file_mb": before.get("RssFile"),
    "peak_anon_all_open_mb": max((s.get("anon_kb", 0) for s in window), default=0) / 1024 or None,
    "probe": mp,
    "markers": markers,
    "idle_rss_mb": (float(read_text("rss-before-mem.txt")) / 1024) if read_text("rss-before-mem.txt") else None,
    "samples_while_all_open": len(window),
    "peak_rss_all_open_mb": max(s["rss_kb"] for s in window) / 1024 if window else None,
    "peak_rss_during_run_mb": max((s["rss_kb"] for s in samples if "rss_kb" in s), default=0) / 1024 or None,
    "hwm_mb": max((s["hwm_kb"] for s in samples if "hwm_kb" in s), default=0) / 1024 or None,
    "max_open_connections": max((s["open"] for s in samples if "open" in s), default=None),
}

# --- shutdown under load and record count ------------------------------------
via_responses = sum(r["responses"] for k in ("thr", "lat", "warm", "term")
                    for r in (oha(n) for n in runs(f"{k}-via")) if r)
via_aborted = sum(r["errors"].get("aborted due to deadline", 0) for k in ("thr", "lat", "warm", "term")
                  for r in (oha(n) for n in runs(f"{k}-via")) if r)
probe_streams = sum((g(x, "completed") or 0) + (g(x, "failed") or 0)
                    for x in (load_json("stream-via-warm.json"), sv, mp))
traces = read_text("traces-count.txt")
res["records"] = {
    "responses_received_via_tollgate": via_responses + probe_streams,
    "aborted_by_load_tool_at_deadline": via_aborted,
    "traces_in_db": int(traces) if traces and traces.isdigit() else None,
    "tollgate_exit_code": read_text("tollgate-exit.txt"),
    "integrity_check": read_text("integrity.txt"),
}

# --- CPU accounting (benches/load/cpu.py) ---------------------------------------------
ncpu = int(res["meta"].get("nproc") or os.cpu_count() or 1)
snaps = {}
for x in jsonl("cpu.jsonl"):
    name, _, edge = x.get("label", "").rpartition(":")
    snaps.setdefault(name, {})[edge] = x
cpu = {}
for name, e in snaps.items():
    if "start" in e and "end" in e:
        d = {k: e["end"][k] - e["start"][k] for k in ("busy", "ours", "steal", "total")}
        if d["total"] > 0:
            c = lambda v: round(max(v, 0) / d["total"] * ncpu, 2)  # noqa: E731
            cpu[name] = {"ours_cores": c(d["ours"]), "foreign_cores": c(d["busy"] - d["ours"]),
                         "steal_cores": c(d["steal"])}
res["cpu"] = cpu

pids = dict(line.split() for line in (read_text("pids.txt", "") or "").splitlines() if line.strip())
tsnaps = {}
for x in jsonl("threads.jsonl"):
    name, _, edge = x.get("label", "").rpartition(":")
    tsnaps.setdefault((str(x["pid"]), name), {})[edge] = x["threads"]
TICK_US = 1e6 / 100  # USER_HZ


def per_request_us(proc, run, requests):
    e = tsnaps.get((pids.get(proc), run), {})
    if "start" not in e or "end" not in e or not requests:
        return None
    by = {k: (e["end"].get(k, 0) - e["start"].get(k, 0)) * TICK_US / requests for k in e["end"]}
    by = {k: round(v, 1) for k, v in by.items() if v > 0}
    return {"total": round(sum(by.values()), 1), "by_thread": by}


cpu_req = {}
for side in ("direct", "via"):
    for r in thr[side]["runs"]:
        run = r["file"][:-5]
        cpu_req[run] = {"tollgate": per_request_us("tollgate", run, r["responses"]),
                        "mock": per_request_us("mock", run, r["responses"])}
res["cpu_per_request_us"] = cpu_req

# --- litellm status ------------------------------------------------------------
res["litellm"] = {
    "status": read_text("litellm-status.txt", "not run"),
    "version": read_text("litellm-version.txt"),
}

with open(os.path.join(OUT, "results.json"), "w") as f:
    json.dump(res, f, indent=2)

# --- markdown -------------------------------------------------------------------
L = res["litellm"]["status"] == "ok"
meta = res["meta"]
rows = []


def met(ok):
    return "n/a" if ok is None else ("met" if ok else "**missed**")


lv, ld, ll, llow = lat["via"], lat["direct"], lat["litellm"], lat["litellm-low"]


def litellm_latency_cell():
    cell = (f"asked {meta.get('rate', '?')}/s, managed {fmt(ll['achieved_per_sec'], 0)}/s: "
            f"p50 {fmt(ll['p50_ms'], 0)} / p99 {fmt(ll['p99_ms'], 0)} ms (saturated, queueing)")
    if llow["runs"]:
        cell += (f"; at {fmt(llow['achieved_per_sec'], 0)} req/s: "
                 f"{signed(llow.get('added_p50_ms'), 1)} / {signed(llow.get('added_p99_ms'), 1)} ms added")
    return cell


rate = meta.get("rate", "1000")
rows.append((
    f"added latency p50 / p99 at {rate} req/s",
    "≤ 0.2 ms / ≤ 1 ms",
    f"{signed(lv.get('added_p50_ms'))} / {signed(lv.get('added_p99_ms'))} ms "
    f"(via: {fmt(lv['p50_ms'], 3)} / {fmt(lv['p99_ms'], 3)} ms)",
    f"{fmt(ld['p50_ms'], 3)} / {fmt(ld['p99_ms'], 3)} ms",
    litellm_latency_cell() if L and ll["runs"] else "n/a",
    "n/a" if lv.get("added_p50_ms") is None else
    f"p50 {met(lv['added_p50_ms'] <= 0.2)} / p99 {met(lv['added_p99_ms'] <= 1.0)}",
))
tv, td, tl = thr["via"], thr["direct"], thr["litellm"]
rows.append((
    f"throughput, c={meta.get('concurrency', '?')}, non-stream chat",
    "≥ 0.5 of direct",
    f"{fmt(tv['median_ok_per_sec'], 0)} req/s = {fmt(tv.get('ratio_to_direct'), 2)} of direct",
    f"{fmt(td['median_ok_per_sec'], 0)} req/s",
    f"{fmt(tl['median_ok_per_sec'], 0)} req/s = {fmt(tl.get('ratio_to_direct'), 3)} of direct" if L and tl["runs"] else "n/a",
    met(None if tv.get("ratio_to_direct") is None else tv["ratio_to_direct"] >= 0.5),
))
mo = res["modules"]
rows.append((
    f"throughput with governance modules on ({mo['names'] or '?'}), c={meta.get('concurrency', '?')}",
    "within 10 % of modules off",
    f"{fmt(mo['on']['median_ok_per_sec'], 0)} req/s on vs {fmt(mo['off']['median_ok_per_sec'], 0)} off "
    f"= {fmt(mo['ratio_on_to_off'], 3)}; non-2xx on/off: {mo['on']['non_2xx']}/{mo['off']['non_2xx']}",
    "—", "—",
    met(None if mo["ratio_on_to_off"] is None else
        (mo["ratio_on_to_off"] >= 0.9 and mo["on"]["non_2xx"] == 0 and mo["off"]["non_2xx"] == 0)),
))
rows.append((
    "writer: records committed/s, isolated (`cargo bench --bench writer`)",
    "≥ 50,000",
    "not measured by this script — see `cargo bench --bench writer`",
    "—", "—", "see writer bench",
))
w = res["writer"]
rows.append((
    "writer under the throughput load (informational)",
    "keeps up; no backpressure",
    f"{fmt(w['median_records_per_sec'], 0)} records/s committed (= proxy rate); "
    f"queue peak {fmt(w['queue_peak'], 0)} ({w['queue_peak_source']}; after each run: "
    f"{' / '.join(fmt(r['queue_peak_metric'], 0) for r in w['runs'])}; sampled every 50 ms: "
    f"{' / '.join(fmt(r['queue_depth_max_sampled'], 0) for r in w['runs'])}); "
    f"largest batch {fmt(w['runs'][-1]['max_batch'] if w['runs'] else None, 0)}; "
    f"backpressure waits {fmt(w['backpressure_waits'], 0)}",
    "—", "—",
    met(None if w["backpressure_waits"] is None else w["backpressure_waits"] == 0),
))
ca = res["cache"]
if ca["cache"]["runs"]:
    rows.append((
        f"exact-cache hit throughput, c={meta.get('concurrency', '?')} (status of a repeat: {ca['status']})",
        "≥ 1.0 of direct (answering faster than the upstream itself)",
        f"{fmt(ca['cache']['median_ok_per_sec'], 0)} req/s = {fmt(ca.get('ratio_to_direct'), 2)} of direct; "
        f"non-2xx {ca['cache']['non_2xx']}",
        f"{fmt(ca['cachedirect']['median_ok_per_sec'], 0)} req/s",
        "—",
        met(None if ca.get("ratio_to_direct") is None else ca["ratio_to_direct"] >= 1.0),
    ))
    rows.append((
        f"exact-cache hit latency p50 / p99 at {meta.get('rate', '1000')} req/s",
        "p50 ≤ 0.15 ms",
        f"{fmt(ca['latency']['p50_ms'], 3)} / {fmt(ca['latency']['p99_ms'], 3)} ms",
        "—", "—",
        met(None if ca["latency"]["p50_ms"] is None else ca["latency"]["p50_ms"] <= 0.15),
    ))
else:
    rows.append(("exact-cache hit served end to end, p50", "≤ 0.15 ms", f"n/a — {ca['status']}", "—", "—", "n/a"))
st = res["streaming"]
rows.append((
    "streaming: added time to first byte p50 / p99",
    "≤ 1 ms; no buffering",
    f"{signed(st['added_ttfb_p50_ms'])} / {signed(st['added_ttfb_p99_ms'])} ms; "
    f"mean inter-chunk gap {signed(st['added_mean_gap_ms'])} ms "
    f"({fmt(g(sv, 'gap_ms', 'mean'), 2)} vs {fmt(g(sd, 'gap_ms', 'mean'), 2)} ms); "
    f"{fmt(g(sv, 'choice_events_per_stream', 'mean'), 0)} events/stream",
    f"TTFB {fmt(g(sd, 'ttfb_ms', 'p50'), 3)} / {fmt(g(sd, 'ttfb_ms', 'p99'), 3)} ms; "
    f"{fmt(g(sd, 'choice_events_per_stream', 'mean'), 0)} events/stream",
    "not measured",
    met(None if st["added_ttfb_p99_ms"] is None else
        (st["added_ttfb_p99_ms"] <= 1.0 and abs(st["added_mean_gap_ms"]) <= 1.0
         and g(sv, "failed") == 0
         and g(sv, "choice_events_per_stream", "min") == g(sd, "choice_events_per_stream", "min"))),
))
m = res["memory"]
n_mem = meta.get("mem_streams", "1000")
rows.append((
    f"resident memory with {n_mem} concurrent open streams",
    "≤ 100 MB",
    f"{fmt(m['peak_rss_all_open_mb'], 1)} MB peak VmRSS while all {g(mp, 'max_open') or '?'} were open "
    f"(of which {fmt(m['at_peak_anon_mb'], 1)} MB anonymous, {fmt(m['at_peak_file_mb'], 1)} MB file-backed); "
    f"{g(mp, 'completed') or 0}/{n_mem} completed; idle just before: {fmt(m['idle_rss_mb'], 1)} MB "
    f"({fmt(m['idle_anon_mb'], 1)} anon + {fmt(m['idle_file_mb'], 1)} file); VmHWM {fmt(m['hwm_mb'], 1)} MB",
    "—", "not measured",
    met(None if m["peak_rss_all_open_mb"] is None else
        (m["peak_rss_all_open_mb"] <= 100 and g(mp, "completed") == int(n_mem))),
))
r = res["records"]
rows.append((
    "records lost on SIGTERM under load / on `kill -9`",
    "0 / ≤ one batch, file consistent",
    f"this run (SIGTERM during load): {r['traces_in_db']} traces for "
    f"{r['responses_received_via_tollgate']} responses received (+{r['aborted_by_load_tool_at_deadline']} "
    f"cut by oha at its deadline); exit {r['tollgate_exit_code']}; integrity_check {r['integrity_check']}. "
    "Exact checks: `tests/lifecycle.rs::sigterm_lets_in_flight_requests_finish_and_loses_no_trace`, "
    "`tests/lifecycle.rs::kill_9_leaves_a_consistent_file_and_a_valid_ledger`",
    "—", "—",
    met(None if r["traces_in_db"] is None else
        (r["traces_in_db"] >= r["responses_received_via_tollgate"]
         and r["tollgate_exit_code"] == "0" and r["integrity_check"] == "ok")),
))

md = ["| figure | target | tollgate (measured) | direct to mock | LiteLLM | verdict |",
      "|---|---|---|---|---|---|"]
for row in rows:
    md.append("| " + " | ".join(str(c) for c in row) + " |")
md.append("")
md.append(f"LiteLLM: {res['litellm']['version'] if L else res['litellm']['status']}")
detail = ["", "Per run (2xx req/s; latency p50 / p99 ms):"]
for kind, label in (("thr", "throughput"), ("lat", "fixed rate")):
    for side in ("direct", "via", "litellm", "litellm-low"):
        rs = (thr if kind == "thr" else lat).get(side, {}).get("runs")
        if rs:
            detail.append(
                f"- {label} {side}: "
                + ", ".join(
                    f"{r['ok_per_sec']:,.0f}/s ({fmt(r['p50_ms'], 3)} / {fmt(r['p99_ms'], 3)})"
                    + (f" non-2xx {r['non_2xx']}" if r["non_2xx"] else "")
                    for r in rs
                )
            )
md.extend(detail)
md.append("")
md.append("CPU per request in the throughput runs (µs of CPU time / responses; 10 ms tick resolution):")
for run, v in cpu_req.items():
    parts = []
    for proc in ("tollgate", "mock"):
        x = v.get(proc)
        if x and x["total"]:
            top = ", ".join(f"{k} {t:g}" for k, t in sorted(x["by_thread"].items(), key=lambda kv: -kv[1])[:4])
            parts.append(f"{proc} {x['total']:g} ({top})")
    md.append(f"- {run}: " + ("; ".join(parts) or "n/a"))
md.append("")
busy = {k: v for k, v in cpu.items() if v["foreign_cores"] >= 0.1}
md.append("Other work on the machine during the measured runs (cores, of "
          f"{ncpu}): " + (", ".join(f"{k} {v['foreign_cores']}" for k, v in busy.items())
                          if busy else "none above 0.1 core in any run"))
steal = max((v["steal_cores"] for v in cpu.values()), default=0)
if steal >= 0.05:
    md.append(f"Hypervisor steal time, worst run: {steal} cores")
text = "\n".join(md) + "\n"
with open(os.path.join(OUT, "summary.md"), "w") as f:
    f.write(text)
print(text)
