#!/usr/bin/env python3
"""Simulates the remote-write encoder's literal matcher on one exposition
page: how many positions it hashes and how many bytes its matches save,
hashing every position, skipping ahead faster the longer nothing matched
(as snappy, and this matcher before), only word starts (after a
separator byte), or word starts but past hex identifiers nothing matched
at their start (the encoder now); and, for the encoder's probing, how
many first-occurrence pairs no match starts in or copies from (pairs the
matcher could skip), how many matches a pair has and how many pairs
back their source is (what remembering each pair's matches would take;
built and measured since, it did not pay: docs/performance-history.md,
"Earlier stop: the matcher's work kept with each pair, ...").

The text it sees is what a 2,000-sample request carries for the first
time: each distinct label pair's wire form (`job` and `instance` added as
a scrape would), in page order. Figures of docs/performance-history.md ("Earlier
stop: fewer page faults, ...") came from

    python3 scripts/sim_literal_matcher.py page.txt

with page.txt fetched from one target of ../shared/bench/farm.
"""
import bisect
import re
import struct
import sys

MIN_MATCH = 5


def varint(n):
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def wire(name, value):
    name, value = name.encode(), value.encode()
    inner = b"\x0a" + varint(len(name)) + name + b"\x12" + varint(len(value)) + value
    return b"\x0a" + varint(len(inner)) + inner


def first_occurrences(path):
    """The first-occurrence pairs in request order: (name, value, wire)."""
    seen, texts = set(), []
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or "\\" in line or not line.strip():
            continue
        series = line.rstrip("\n").rpartition(" ")[0]
        name, _, rest = series.partition("{")
        labels = {"__name__": name, "job": "bench", "instance": "127.0.0.1:20045"}
        labels.update(re.findall(r'(\w+)="([^"]*)"', rest))
        for pair in sorted(labels.items()):
            if pair not in seen:
                seen.add(pair)
                texts.append((pair[0], len(pair[1].encode()), wire(*pair)))
    return texts


def is_separator(b):
    return b < 0x30 or b == 0x5F


HEX = set(b"0123456789abcdef")


def simulate(texts, mode, bits=12, links=None):
    """mode: "every" position, "skipping" (step + 1 every 8 misses, the
    matcher before word starts), "words" (word starts only) or "hex" (word
    starts, but the rest of a run of hex digits and dashes is skipped when
    nothing matched a group after a dash, as the encoder does). With
    `links` (a list), appends for each match the index of the pair it
    starts in and of the pair it copies from."""
    history, table = bytearray(), [None] * (1 << bits)
    starts = []  # where each pair's text begins in `history`

    def owner(pos):
        return bisect.bisect_right(starts, pos) - 1

    probes = saved = 0
    # label name -> [value bytes, value bytes inside matches, name-part
    # bytes, name-part bytes inside matches]
    by_name = {}
    for name, value_len, text in texts:
        starts.append(len(history))
        stats = by_name.setdefault(name, [0, 0, 0, 0])
        stats[0] += value_len
        stats[2] += len(text) - value_len
        start = len(history)
        history += text
        end = len(history)
        at = start
        skip = 8
        while at + 4 <= end:
            probes += 1
            quad = struct.unpack_from("<I", history, at)[0]
            slot = ((quad * 0x1E35A7BD) & 0xFFFFFFFF) >> (32 - bits)
            prev, table[slot] = table[slot], at
            if prev is not None and history[prev:prev + 4] == history[at:at + 4]:
                m = 4
                while at + m < end and prev + m < at and history[prev + m] == history[at + m]:
                    m += 1
                if m >= MIN_MATCH:
                    saved += m - 3  # a copy element takes about 3 bytes
                    if links is not None:
                        links.append((owner(at), owner(prev)))
                    value_at = end - value_len
                    in_value = max(0, at + m - max(at, value_at))
                    stats[1] += in_value
                    stats[3] += m - in_value
                    at += m
                    skip = 8
                    continue
            if (mode == "hex" and history[at - 1] == 0x2D
                    and all(b in HEX for b in history[at:at + 4])):
                at += 4
                while at < end and (history[at] in HEX or history[at] == 0x2D):
                    at += 1
                continue
            if mode == "skipping":
                at += skip >> 3
                skip += 1
                continue
            at += 1
            while mode in ("words", "hex") and at < end and not is_separator(history[at - 1]):
                at += 1
    return probes, saved, by_name


def main():
    texts = first_occurrences(sys.argv[1])
    total = sum(len(t) for _, _, t in texts)
    print(f"{len(texts)} first-occurrence pairs, {total} bytes")
    links = []  # of the encoder's own probing: "hex", 2^12
    for mode in ("every", "skipping", "words", "hex"):
        for bits in (11, 12):
            own = mode == "hex" and bits == 12
            probes, saved, _ = simulate(texts, mode, bits, links if own else None)
            print(f"{mode:9s} table 2^{bits}: {probes:6d} probes, {saved:6d} bytes saved")
    # Which text matches: value and name parts by label name, every position.
    _, _, by_name = simulate(texts, "every")
    totals = [sum(s[i] for s in by_name.values()) for i in range(4)]
    print(f"value bytes {totals[0]}, {100 * totals[1] / totals[0]:.0f} % in matches; "
          f"name parts {totals[2]}, {100 * totals[3] / totals[2]:.0f} % in matches")
    for name, s in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:8]:
        print(f"  {name:12s} value bytes {s[0]:6d}, {100 * s[1] / max(1, s[0]):3.0f} % in matches")
    # Pairs a per-pair flag could keep out of the matcher because no match
    # starts in them or copies from them.
    used = {i for link in links for i in link}
    unused = [t for i, t in enumerate(texts) if i not in used]
    print(f"pairs no match starts in or copies from: {len(unused)} of {len(texts)}, "
          f"{sum(len(t) for _, _, t in unused)} bytes")
    back = sorted(at - src for at, src in links)
    n = len(back)
    if n == 0:
        print("no matches")
        return
    print(f"matches a pair: {n / len(texts):.2f}; source pairs back: median {back[n // 2]}, "
          f"90th percentile {back[n * 9 // 10]}, most {back[-1]}, "
          f"{100 * sum(b < 256 for b in back) / n:.1f} % under 256")


if __name__ == "__main__":
    main()
