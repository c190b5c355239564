#!/usr/bin/env python3
"""Summarises scripts/bench-gateway.sh results: medians over repeats, and what Sluice and
a plain hyper proxy each add compared with going straight to the upstream in the same run."""
import os, re, sys

from bench_common import load, med

out = sys.argv[1]
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def pick(runs, *keys):
    vals = []
    for _, r in runs:
        v = r
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        vals.append(v)
    return vals


def errors(runs):
    return sum(sum(r.get("errors", {}).values()) for _, r in runs)


def cpu_per_request(runs):
    """Median proxy CPU (µs) per request served, warm-up included, from .cputicks files."""
    cpu = []
    for path, r in runs:
        tick_file = path.replace(".json", ".cputicks")
        if os.path.exists(tick_file):
            ticks = int(open(tick_file).read())
            n = r["requests"]["completed"] + r["config"].get("warmup", 0)
            cpu.append(ticks * TICK_US / max(n, 1))
    return med(cpu)


def fmt(v, spec):
    return "" if v != v else format(v, spec)  # NaN (no plain-proxy runs): blank


lines = [
    "| scenario | metric | direct | plain proxy | sluice | sluice added / ratio | plain added / ratio |",
    "|---|---|---|---|---|---|---|",
]

d, p, s = load(out, "c1-direct-*.json"), load(out, "c1-plain-*.json"), load(out, "c1-sluice-*.json")
if d and s:
    for q in ("p50", "p99"):
        dv, pv, sv = (med(pick(x, "ttft_ms", q)) for x in (d, p, s))
        lines.append(
            f"| c=1 stream 64 tok | TTFT {q} (ms) | {dv:.3f} | {fmt(pv, '.3f')} | {sv:.3f} "
            f"| +{sv - dv:.3f} ms | {fmt(pv - dv, '+.3f')} ms |"
        )
    # Added per-token cost: the extra end-to-end time beyond the extra first-token time,
    # spread over the remaining tokens.
    per_tok = []
    for (_, dr), (_, sr) in zip(d, s):
        tokens = sr["tokens"]["output"] / max(sr["requests"]["ok"], 1)
        extra = (sr["e2e_ms"]["mean"] - dr["e2e_ms"]["mean"]) - (sr["ttft_ms"]["mean"] - dr["ttft_ms"]["mean"])
        per_tok.append(extra * 1000 / max(tokens - 1, 1))
    dv, pv, sv = (med(pick(x, "inter_token_ms", "mean")) for x in (d, p, s))
    lines.append(
        f"| c=1 stream 64 tok | inter-token mean (µs) | {dv*1000:.2f} | {fmt(pv*1000, '.2f')} | {sv*1000:.2f} "
        f"| +{(sv-dv)*1000:.2f} µs | |"
    )
    lines.append(f"| c=1 stream 64 tok | added per token, from e2e (µs) | | | | {med(per_tok):.2f} µs | |")
    dv, pv, sv = (med(pick(x, "e2e_ms", "mean")) for x in (d, p, s))
    lines.append(
        f"| c=1 stream 64 tok | e2e mean (ms) | {dv:.3f} | {fmt(pv, '.3f')} | {sv:.3f} | +{sv - dv:.3f} ms "
        f"| {fmt(pv - dv, '+.3f')} ms |"
    )

for sc, label in (("c64", "c=64 stream 64 tok"), ("nostream", "c=64 non-stream")):
    d, p, s = load(out, f"{sc}-direct-*.json"), load(out, f"{sc}-plain-*.json"), load(out, f"{sc}-sluice-*.json")
    if not (d and s):
        continue
    for metric, key in (("requests/s", "requests_per_s"), ("tokens/s", "output_tokens_per_s")):
        dv, pv, sv = (med(pick(x, "throughput", key)) for x in (d, p, s))
        lines.append(
            f"| {label} | {metric} | {dv:,.0f} | {fmt(pv, ',.0f')} | {sv:,.0f} | {sv / dv:.2f}x | {fmt(pv / dv, '.2f')}x |"
        )
    lines.append(
        f"| {label} | proxy CPU per request (µs) | | {fmt(cpu_per_request(p), '.1f')} | {cpu_per_request(s):.1f} | | |"
    )
    lines.append(f"| {label} | errors (all runs) | {errors(d)} | {errors(p) if p else ''} | {errors(s)} | | |")

s = load(out, "slow-sluice-*.json")
if s:
    _, r = s[0]
    rss = open(os.path.join(out, "slow-sluice-1.rss")).read()
    hwm = re.search(r"VmHWM:\s+(\d+)", rss)
    lines.append(f"| 8,000 slow streams (1 tok/s) | ok / errors | | | {r['requests']['ok']} / {errors(s)} | | |")
    if hwm:
        lines.append(f"| 8,000 slow streams (1 tok/s) | gateway peak RSS (MB) | | | {int(hwm.group(1)) / 1024:.0f} | | |")

print("\n".join(lines))
