#!/usr/bin/env python3
"""CPU cost of persisting the WAL consumer cursors the way the agent does
(a temporary file created, written and fsynced, renamed over cursors.json,
the directory fsynced), against a fixed 512-byte slot written in place and
fdatasynced, on the filesystem of DIR.

The calls are the agent's; the loop around them is Python's, whose own
share is a few microseconds a round. Creates and removes its files in DIR.

Measurement only (docs/performance-history.md, "Earlier stop: the kernel's
share and the agent's wake-ups measured, ...").

    python3 scripts/cursor_write_cost.py DIR [ROUNDS]
"""

import os
import resource
import sys
import time

BODY = b'{"version":1,"consumers":{"17167c":{"segment":3,"offset":123456789}}}\n'


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    d = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) == 3 else 200
    tmp, final, slot = (os.path.join(d, n) for n in ("cost.tmp", "cost.json", "cost.slot"))

    def replace():
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, BODY)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, final)
        dfd = os.open(d, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)

    sfd = os.open(slot, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(sfd, BODY.ljust(512), 0)
    os.fsync(sfd)

    def in_place():
        os.pwrite(sfd, BODY.ljust(512), 0)
        os.fdatasync(sfd)

    try:
        for name, f in [("temp file + rename", replace), ("slot in place", in_place)] * 2:
            c0, t0 = cpu_seconds(), time.monotonic()
            for _ in range(rounds):
                f()
            cpu = (cpu_seconds() - c0) / rounds * 1e6
            wall = (time.monotonic() - t0) / rounds * 1e6
            print(f"{name}: {cpu:.0f} us of CPU, {wall:.0f} us of wall time a write")
    finally:
        os.close(sfd)
        for p in (tmp, final, slot):
            if os.path.exists(p):
                os.remove(p)


if __name__ == "__main__":
    main()
