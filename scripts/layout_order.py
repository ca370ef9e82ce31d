#!/usr/bin/env python3
"""The functions a run executed, hottest first: the link order file.

Reads a callgrind out file of a stripped release binary (taken with
--dump-instr=yes --compress-pos=no --compress-strings=no) and the linker's
map of that binary, and prints the name of every function section the run
executed, the one with most instructions first. scripts/build_release.sh
links with the list as lld's --symbol-ordering-file, so the code a running
agent touches is packed at the start of .text and the rest, never run in
the training (other service discoveries, error paths), is left in pages
the agent never maps.

    scripts/layout_order.py MAP BINARY CALLGRIND_OUT... > pgo/tributary.order
"""
import bisect
import re
import sys

SECTION = re.compile(r"\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+\S+:\((\.text\.[^)]*)\)")
PREFIX = re.compile(r"^\.text\.(?:hot\.|unlikely\.|startup\.|exit\.|split\.)?")


def sections(map_path):
    found = []
    with open(map_path) as f:
        for line in f:
            m = SECTION.match(line)
            if m and int(m.group(2), 16) > 0:
                found.append((int(m.group(1), 16), int(m.group(2), 16), PREFIX.sub("", m.group(3))))
    found.sort()
    return found


def instructions(out_path, binary):
    """(address, instructions) for every instruction of `binary` the run executed."""
    in_binary = False
    after_call = False
    with open(out_path) as f:
        for line in f:
            if line.startswith("ob="):
                in_binary = line[3:].strip() == binary
            elif line.startswith("calls="):
                # The next line is the call site with the callee's inclusive
                # cost, not the site's own.
                after_call = True
            elif line.startswith("0x"):
                if in_binary and not after_call:
                    fields = line.split()
                    yield int(fields[0], 16), int(fields[-1])
                after_call = False


def main():
    map_path, binary, *out_paths = sys.argv[1:]
    secs = sections(map_path)
    starts = [s[0] for s in secs]
    cost = {}
    for out_path in out_paths:
        for address, count in instructions(out_path, binary):
            i = bisect.bisect_right(starts, address) - 1
            if i >= 0 and address < secs[i][0] + secs[i][1]:
                cost[i] = cost.get(i, 0) + count
    if not cost:
        sys.exit(f"no instruction of {binary} in {out_paths} falls in a section of {map_path}")
    seen = set()
    for i in sorted(cost, key=lambda i: (-cost[i], secs[i][0])):
        name = secs[i][2]
        if name not in seen:
            seen.add(name)
            print(name)
    size = sum(secs[i][1] for i in cost)
    print(f"{len(seen)} functions executed, {size} bytes of {sum(s[1] for s in secs)}", file=sys.stderr)


if __name__ == "__main__":
    main()
