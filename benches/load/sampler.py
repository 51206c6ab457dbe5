#!/usr/bin/env python3
"""Sample a process's memory and (optionally) tollgate's writer queue gauge.

    sampler.py --pid PID --out FILE [--metrics URL] [--interval SECS]

Appends one JSON line per sample to FILE until SIGTERM/SIGINT:
    {"unix_ms": ..., "rss_kb": ..., "hwm_kb": ..., "anon_kb": ..., "file_kb": ...,
     "queue_depth": ..., "open": ...}
`queue_depth` / `open` (tollgate_writer_queue_depth / tollgate_connections_open)
are present only with --metrics. Used by benches/load.sh.
"""
import argparse
import json
import signal
import sys
import time
import urllib.request

stop = False
# /proc/PID/status fields sampled. VmRSS = RssAnon + RssFile + RssShmem; RssFile
# includes pages of the memory-mapped SQLite database (store.mmap_size_bytes).
FIELDS = {"VmRSS": "rss_kb", "VmHWM": "hwm_kb", "RssAnon": "anon_kb", "RssFile": "file_kb"}


def on_signal(_sig, _frame):
    global stop
    stop = True


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = FIELDS.get(line.split(":", 1)[0])
                if key:
                    out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def scrape(url):
    out = {}
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("tollgate_writer_queue_depth "):
                    out["queue_depth"] = int(float(line.split()[1]))
                elif line.startswith("tollgate_connections_open "):
                    out["open"] = int(float(line.split()[1]))
    except Exception:  # noqa: BLE001 - a missed sample is fine
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--metrics")
    ap.add_argument("--interval", type=float, default=0.1)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with open(a.out, "a") as f:
        while not stop:
            s = {"unix_ms": int(time.time() * 1000)}
            s.update(proc_status(a.pid))
            if a.metrics:
                s.update(scrape(a.metrics))
            f.write(json.dumps(s) + "\n")
            f.flush()
            time.sleep(a.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
