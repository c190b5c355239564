#!/usr/bin/env python3
"""Summarises scripts/bench-agents.sh results: medians over repeats of what going
through an agent adds compared with calling the agent's backend directly."""
import os, sys

from bench_common import load, med

out = sys.argv[1]
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def get(r, *keys):
    for k in keys:
        r = r.get(k) if isinstance(r, dict) else None
    return r


def errors(runs):
    return sum(sum(r.get("errors", {}).values()) for _, r in runs)


lines = ["| scenario | metric | direct | via agent | added / ratio | target |", "|---|---|---|---|---|---|"]

d, a = load(out, "c1-direct-*.json"), load(out, "c1-agent-*.json")
if d and a:
    dv, av = med([get(r, "ttft_ms", "p50") for _, r in d]), med([get(r, "ttft_ms", "p50") for _, r in a])
    lines.append(f"| c=1, 64 tok | TTFT p50 (ms) | {dv:.3f} | {av:.3f} | +{av - dv:.3f} ms | ≤ +1 ms |")
    per_tok = []
    for (_, dr), (_, ar) in zip(d, a):
        tokens = ar["tokens"]["output"] / max(ar["requests"]["ok"], 1)
        extra = (ar["e2e_ms"]["mean"] - dr["e2e_ms"]["mean"]) - (ar["ttft_ms"]["mean"] - dr["ttft_ms"]["mean"])
        per_tok.append(extra * 1000 / max(tokens - 1, 1))
    lines.append(f"| c=1, 64 tok | added per token, from e2e (µs) | | | {med(per_tok):.2f} µs | ≤ 50 µs |")
    lines.append(f"| c=1, 64 tok | errors | {errors(d)} | {errors(a)} | | 0 |")

d, a = load(out, "paced-direct-*.json"), load(out, "paced-agent-*.json")
if d and a:
    dv, av = med([get(r, "inter_token_ms", "p99") for _, r in d]), med([get(r, "inter_token_ms", "p99") for _, r in a])
    lines.append(f"| 1,000 tok/s per stream | gap p99 (ms) | {dv:.3f} | {av:.3f} | +{av - dv:.3f} ms | ≤ +1 ms |")
    lines.append(f"| 1,000 tok/s per stream | errors | {errors(d)} | {errors(a)} | | 0 |")

d, a = load(out, "relay-direct-*.json"), load(out, "relay-agent-*.json")
if d and a:
    dv = med([get(r, "throughput", "output_tokens_per_s") for _, r in d])
    av = med([get(r, "throughput", "output_tokens_per_s") for _, r in a])
    lines.append(f"| c=64, 512 tok | tokens/s | {dv:,.0f} | {av:,.0f} | {av / dv:.2f}x | |")
    rates = []
    for path, r in a:
        tick_file = path.replace(".json", ".cputicks")
        if os.path.exists(tick_file):
            cpu_s = int(open(tick_file).read()) * TICK_S
            rates.append(r["tokens"]["output"] / cpu_s if cpu_s else None)
    lines.append(f"| c=64, 512 tok | tokens per gateway CPU-second | | {med(rates):,.0f} | | ≥ 100,000 |")
    lines.append(f"| c=64, 512 tok | errors | {errors(d)} | {errors(a)} | | 0 |")

print("\n".join(lines))
