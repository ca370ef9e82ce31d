#!/usr/bin/env python3
"""Plots RSS over time from CSV files (the bench's `--timeline-dir` CSVs,
column `rss`, or `scripts/sample_rss.py` output, column `rss_bytes`) into
one PNG. Needs matplotlib (`pip install matplotlib`).

    python3 scripts/plot_rss.py --out docs/rss-churn.png \
        --title "400k series, 1 % targets replaced per minute" \
        tributary=/tmp/tl/tributary-200x2000-0.csv

Each positional argument is LABEL=CSV. `--mark T:TEXT` draws a vertical
line at T seconds (repeatable).
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    ts, rss = [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            value = row.get("rss") or row.get("rss_bytes")
            if not value:
                continue
            ts.append(float(row["t"]))
            rss.append(int(float(value)) / 2**20)
    return ts, rss


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("series", nargs="+", help="LABEL=CSV")
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="RSS over time")
    p.add_argument("--mark", action="append", default=[], help="T:TEXT")
    a = p.parse_args()
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    for spec in a.series:
        label, path = spec.split("=", 1)
        ts, rss = read(path)
        ax.plot(ts, rss, label=label, linewidth=1.4)
    for m in a.mark:
        t, text = m.split(":", 1)
        ax.axvline(float(t), color="grey", linestyle="--", linewidth=0.8)
        ax.text(float(t), ax.get_ylim()[1] * 0.98, " " + text, va="top", fontsize=8, color="grey")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(a.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.out)


if __name__ == "__main__":
    main()
