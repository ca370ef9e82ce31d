#!/usr/bin/env python3
"""How much of snappy's saving on a WAL sample record a writer that knows
the record's layout would keep, for one scrape of an exposition page.

A sample's entry in Prometheus's sample record is a signed varint of the
series-ref delta to the record's first sample, a signed varint of the
timestamp delta and the value's 8 bytes (big-endian). The record is built
for the page's float values with consecutive refs and one timestamp (one
scrape of one target, as the agent commits it) and compressed with snappy;
the alternative writes every entry as literal bytes except the value's
trailing zero bytes (round values), which become a copy of an earlier run
of zeros when there are at least MIN_RUN of them. Sizes are of snappy
elements (tag bytes included).

Measurement only (docs/performance-history.md, "Earlier stop: caches and
branches simulated, ..."); needs python-snappy (`pip install python-snappy`).

    python3 scripts/sim_wal_compression.py <page.txt>
"""

import struct
import sys

import snappy

HEADER = 1 + 8 + 8  # record type, first ref, first timestamp


def page_values(path):
    values = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            try:
                values.append(float(line.rsplit(" ", 1)[1]))
            except ValueError:
                pass
    return values


def varint(x):
    x = (x << 1) ^ (x >> 63)
    out = bytearray()
    while x >= 0x80:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


def record(values):
    rec = bytearray([2]) + struct.pack(">q", 1000) + struct.pack(">q", 1_700_000_000_000)
    for i, v in enumerate(values):
        rec += varint(i) + varint(0) + struct.pack(">d", v)
    return bytes(rec)


def literal_cost(n):
    return 0 if n == 0 else n + (1 if n <= 60 else 2 if n <= 256 else 3)


def copy_cost(offset, length):
    return 2 if 4 <= length <= 11 and offset < 2048 else 3


def by_layout(values, min_run):
    total, pending, pos, last_zeros = 0, HEADER, HEADER, None
    for i, v in enumerate(values):
        head = len(varint(i)) + 1
        value = struct.pack(">d", v)
        zeros = len(value) - len(value.rstrip(b"\0"))
        end = pos + head + 8
        if zeros >= min_run and last_zeros is not None:
            total += literal_cost(pending + head + 8 - zeros)
            total += copy_cost(end - zeros - last_zeros, zeros)
            pending = 0
        else:
            pending += head + 8
        if zeros >= min_run:
            last_zeros = end - zeros
        pos = end
    return total + literal_cost(pending)


def main():
    values = page_values(sys.argv[1])
    raw = record(values)
    compressed = len(snappy.compress(raw))
    print(f"{len(values)} values: record {len(raw)} B, snappy {compressed} B "
          f"({compressed / len(raw):.3f})")
    for min_run in (3, 4, 5):
        size = by_layout(values, min_run)
        print(f"by layout, zero runs of {min_run}+ copied: {size} B ({size / len(raw):.3f})")


if __name__ == "__main__":
    main()
