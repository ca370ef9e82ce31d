#!/usr/bin/env python3
"""Samples the RSS of the process whose command line starts with a given
path, every `--every` seconds, following it across restarts (a new PID is
picked up when the old one exits). Writes `t,pid,rss_bytes` CSV.

Used beside `../shared/bench/run --outage ... --restart-agent`, whose own
timeline stops at the restart, to see memory during WAL replay and catch-up:

    python3 scripts/sample_rss.py --match target/release/tributary \
        --out /tmp/rss-restart.csv --for 900 &
"""
import argparse
import os
import time


def find_pid(prefix):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if argv0.startswith(prefix):
            return int(pid)
    return None


def rss_bytes(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--match", required=True, help="path the command line starts with")
    p.add_argument("--out", required=True)
    p.add_argument("--every", type=float, default=0.5)
    p.add_argument("--for", dest="duration", type=float, default=600.0)
    a = p.parse_args()
    t0 = time.monotonic()
    pid = None
    with open(a.out, "w") as out:
        out.write("t,pid,rss_bytes\n")
        while time.monotonic() - t0 < a.duration:
            rss = rss_bytes(pid) if pid else None
            if rss is None:
                pid = find_pid(a.match)
                rss = rss_bytes(pid) if pid else None
            if rss is not None:
                out.write("%.2f,%d,%d\n" % (time.monotonic() - t0, pid, rss))
                out.flush()
            time.sleep(a.every)


if __name__ == "__main__":
    main()
