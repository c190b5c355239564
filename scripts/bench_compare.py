#!/usr/bin/env python3
"""Summarises scripts/bench-compare.sh: for each variant, the median over its rounds of
Sluice's figures and of their ratio to the direct path measured in the same run."""
import glob
import json
import os
import sys

from bench_common import med

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
out, labels = sys.argv[1], sys.argv[2:]


def report(run_dir, name):
    path = os.path.join(run_dir, f"{name}-1.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def cpu_us(run_dir, sc):
    r = report(run_dir, f"{sc}-sluice")
    tick = os.path.join(run_dir, f"{sc}-sluice-1.cputicks")
    if r is None or not os.path.exists(tick):
        return None
    n = r["requests"]["completed"] + r["config"].get("warmup", 0)
    return int(open(tick).read()) * TICK_US / max(n, 1)


def metrics(run_dir):
    m = {}
    d, s = report(run_dir, "c1-direct"), report(run_dir, "c1-sluice")
    if d and s:
        m["c1 TTFT p50 (ms)"] = s["ttft_ms"]["p50"]
        m["c1 added TTFT p50 (ms)"] = s["ttft_ms"]["p50"] - d["ttft_ms"]["p50"]
        m["c1 added TTFT mean (ms)"] = s["ttft_ms"]["mean"] - d["ttft_ms"]["mean"]
    for sc in ("c64", "nostream"):
        d, s = report(run_dir, f"{sc}-direct"), report(run_dir, f"{sc}-sluice")
        if d and s:
            sv, dv = s["throughput"]["requests_per_s"], d["throughput"]["requests_per_s"]
            m[f"{sc} req/s"] = sv
            m[f"{sc} ratio to direct"] = sv / dv if dv else None
            m[f"{sc} CPU per request (µs)"] = cpu_us(run_dir, sc)
            m[f"{sc} errors"] = sum(s.get("errors", {}).values())
    return m


rows = {}
runs = {}
for label in labels:
    dirs = sorted(glob.glob(os.path.join(out, f"{label}-[0-9]*")))
    runs[label] = len(dirs)
    per_run = [metrics(d) for d in dirs]
    for key in sorted({k for m in per_run for k in m}):
        vals = [m.get(key) for m in per_run]
        rows.setdefault(key, {})[label] = sum(v or 0 for v in vals) if key.endswith("errors") else med(vals)

order = [
    "c1 TTFT p50 (ms)", "c1 added TTFT p50 (ms)", "c1 added TTFT mean (ms)",
    "c64 req/s", "c64 ratio to direct", "c64 CPU per request (µs)", "c64 errors",
    "nostream req/s", "nostream ratio to direct", "nostream CPU per request (µs)", "nostream errors",
]
print("| metric (median of rounds) | " + " | ".join(f"{l} ({runs[l]} runs)" for l in labels) + " |")
print("|---|" + "---|" * len(labels))
for key in order:
    if key not in rows:
        continue
    cells = []
    for l in labels:
        v = rows[key].get(l)
        if v is None or v != v:
            cells.append("")
        elif "ratio" in key:
            cells.append(f"{v:.3f}")
        elif "errors" in key:
            cells.append(f"{v:.0f}")
        elif "ms" in key:
            cells.append(f"{v:.4f}")
        else:
            cells.append(f"{v:,.1f}")
    print(f"| {key} | " + " | ".join(cells) + " |")
