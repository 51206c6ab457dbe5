#!/usr/bin/env python3
"""One-line progress summaries for benches/load.sh.

    brief.py oha FILE LABEL      # an oha JSON output
    brief.py stream FILE LABEL   # a stream-probe JSON output
    brief.py mem PROBE_FILE RSS_JSONL
"""
import json
import sys


def oha(path, label):
    d = json.load(open(path))
    codes = d.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    secs = d["summary"]["total"] or 1
    lp = d.get("latencyPercentiles", {})
    p50, p99 = ((lp.get(k) or 0) * 1000 for k in ("p50", "p99"))
    other = {k: v for k, v in codes.items() if not k.startswith("2")}
    errs = d.get("errorDistribution", {})
    line = f"{label:<16} {ok / secs:>9,.0f} 2xx/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms"
    if other:
        line += f"  other statuses {other}"
    if errs:
        line += f"  errors {errs}"
    return line


def stream(path, label):
    d = json.load(open(path))
    t, g = d["ttfb_ms"], d["gap_ms"]
    line = (f"stream {label:<9} {d['completed']}/{d['streams']} ok  "
            f"TTFB p50 {t.get('p50')} p99 {t.get('p99')} ms  "
            f"gap mean {g.get('mean')} p99 {g.get('p99')} ms")
    if d.get("errors"):
        line += f"  errors {d['errors']}"
    return line


def mem(probe, rss):
    d = json.load(open(probe))
    samples = [json.loads(x) for x in open(rss) if x.strip()]
    peak = max((s.get("rss_kb", 0) for s in samples), default=0) / 1024
    line = (f"{d['completed']}/{d['streams']} streams completed, max open {d['max_open']}, "
            f"peak VmRSS {peak:.1f} MB")
    if d.get("errors"):
        line += f"  errors {d['errors']}"
    return line


if __name__ == "__main__":
    kind, a, b = sys.argv[1:4]
    try:
        print("           " + {"oha": oha, "stream": stream, "mem": mem}[kind](a, b), file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - progress output only
        print(f"           ({kind} summary unavailable: {e})", file=sys.stderr)
