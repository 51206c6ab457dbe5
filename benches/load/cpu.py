#!/usr/bin/env python3
"""CPU accounting for benches/load.sh: how much of the machine was ours.

The benchmark shares 2 cores with whatever else runs on the machine (other
builds, editors, test suites). To make that visible, each measured run is
bracketed by two snapshots:

    cpu.py snap ROOT_PID          # one JSON line: system and ROOT_PID-tree CPU time
    cpu.py threads PID [LABEL]    # one JSON line: PID's CPU time per thread name
    cpu.py quiet [--max-busy F] [--timeout S]
                                  # wait (bounded) until the machine is mostly idle

`ours` is the CPU time of ROOT_PID and every descendant, living or reaped
(the kernel folds reaped children into their parent's cutime/cstime), so
busy - ours is CPU that something else on the machine used during the run.
Values are in clock ticks (USER_HZ) summed over all CPUs.
"""
import json
import os
import sys
import time


def system_ticks():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts] + [0] * 10
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    busy = user + nice + system + irq + softirq
    return {"busy": busy, "steal": steal, "total": busy + idle + iowait + steal}


def proc_stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    # comm may contain spaces: fields after the last ')'.
    rest = s[s.rindex(")") + 2:].split()
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, utime + stime, cutime + cstime


def ours(root):
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                procs[int(name)] = st
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, stack, me = 0, [root], os.getpid()
    while stack:
        pid = stack.pop()
        if pid == me or pid not in procs:
            continue
        _, own, reaped = procs[pid]
        total += own + reaped
        stack.extend(children.get(pid, []))
    return total


def busy_fraction(interval=1.0):
    a = system_ticks()
    time.sleep(interval)
    b = system_ticks()
    dt = b["total"] - a["total"]
    return (b["busy"] - a["busy"]) / dt if dt else 0.0


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "snap":
        root = int(sys.argv[2])
        snap = {"unix_ms": int(time.time() * 1000), "ours": ours(root)}
        snap.update(system_ticks())
        if len(sys.argv) > 3:
            snap["label"] = sys.argv[3]
        print(json.dumps(snap))
        return 0
    if cmd == "threads":
        pid = int(sys.argv[2])
        by_name = {}
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            tids = []
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue
            st = proc_stat(f"{pid}/task/{tid}")
            if st:
                by_name[name] = by_name.get(name, 0) + st[1]
        snap = {"unix_ms": int(time.time() * 1000), "pid": pid, "threads": by_name}
        if len(sys.argv) > 3:
            snap["label"] = sys.argv[3]
        print(json.dumps(snap))
        return 0
    if cmd == "quiet":
        max_busy, timeout = 0.25, 30.0
        args = sys.argv[2:]
        for flag, val in zip(args[::2], args[1::2]):
            if flag == "--max-busy":
                max_busy = float(val)
            elif flag == "--timeout":
                timeout = float(val)
        deadline = time.time() + timeout
        while True:
            frac = busy_fraction()
            if frac <= max_busy:
                print(f"{frac:.2f}")
                return 0
            if time.time() >= deadline:
                print(f"{frac:.2f}")
                return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
