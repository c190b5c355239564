#!/usr/bin/env python3
"""Summarises scripts/bench-gateway.sh results: medians over repeats, and what the
gateway adds compared with going straight to the upstream in the same run."""
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


lines = ["| scenario | metric | direct | sluice | added / ratio |", "|---|---|---|---|---|"]

d, s = load(out, "c1-direct-*.json"), load(out, "c1-sluice-*.json")
if d and s:
    for q in ("p50", "p99"):
        dv, sv = med(pick(d, "ttft_ms", q)), med(pick(s, "ttft_ms", q))
        lines.append(f"| c=1 stream 64 tok | TTFT {q} (ms) | {dv:.3f} | {sv:.3f} | +{sv - dv:.3f} ms |")
    # Added per-token cost: the extra end-to-end time beyond the extra first-token time,
    # spread over the remaining tokens.
    per_tok = []
    for (_, dr), (_, sr) in zip(d, s):
        tokens = sr["tokens"]["output"] / max(sr["requests"]["ok"], 1)
        extra = (sr["e2e_ms"]["mean"] - dr["e2e_ms"]["mean"]) - (sr["ttft_ms"]["mean"] - dr["ttft_ms"]["mean"])
        per_tok.append(extra * 1000 / max(tokens - 1, 1))
    dv, sv = med(pick(d, "inter_token_ms", "mean")), med(pick(s, "inter_token_ms", "mean"))
    lines.append(f"| c=1 stream 64 tok | inter-token mean (µs) | {dv*1000:.2f} | {sv*1000:.2f} | +{(sv-dv)*1000:.2f} µs |")
    lines.append(f"| c=1 stream 64 tok | added per token, from e2e (µs) | | | {med(per_tok):.2f} µs |")
    dv, sv = med(pick(d, "e2e_ms", "mean")), med(pick(s, "e2e_ms", "mean"))
    lines.append(f"| c=1 stream 64 tok | e2e mean (ms) | {dv:.3f} | {sv:.3f} | +{sv - dv:.3f} ms |")

for sc, label in (("c64", "c=64 stream 64 tok"), ("nostream", "c=64 non-stream")):
    d, s = load(out, f"{sc}-direct-*.json"), load(out, f"{sc}-sluice-*.json")
    if not (d and s):
        continue
    dv, sv = med(pick(d, "throughput", "requests_per_s")), med(pick(s, "throughput", "requests_per_s"))
    lines.append(f"| {label} | requests/s | {dv:,.0f} | {sv:,.0f} | {sv / dv:.2f}x |")
    dv, sv = med(pick(d, "throughput", "output_tokens_per_s")), med(pick(s, "throughput", "output_tokens_per_s"))
    lines.append(f"| {label} | tokens/s | {dv:,.0f} | {sv:,.0f} | {sv / dv:.2f}x |")
    cpu = []
    for path, r in s:
        tick_file = path.replace(".json", ".cputicks")
        if os.path.exists(tick_file):
            ticks = int(open(tick_file).read())
            n = r["requests"]["completed"] + r["config"].get("warmup", 0)
            cpu.append(ticks * TICK_US / max(n, 1))
    if cpu:
        lines.append(f"| {label} | gateway CPU per request (µs) | | {med(cpu):.1f} | |")
    lines.append(f"| {label} | errors (all runs) | {errors(d)} | {errors(s)} | |")

s = load(out, "slow-sluice-*.json")
if s:
    _, r = s[0]
    rss = open(os.path.join(out, "slow-sluice-1.rss")).read()
    hwm = re.search(r"VmHWM:\s+(\d+)", rss)
    lines.append(f"| 8,000 slow streams (1 tok/s) | ok / errors | | {r['requests']['ok']} / {errors(s)} | |")
    if hwm:
        lines.append(f"| 8,000 slow streams (1 tok/s) | gateway peak RSS (MB) | | {int(hwm.group(1)) / 1024:.0f} | |")

print("\n".join(lines))
