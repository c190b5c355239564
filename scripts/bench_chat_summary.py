#!/usr/bin/env python3
"""Summary of scripts/bench-chat.sh: medians over rounds, llama-server beside Sluice,
and the issue's targets checked. usage: bench_chat_summary.py OUT"""
import glob
import json
import os
import statistics
import sys

out = sys.argv[1]


def runs(name, kind):
    paths = sorted(glob.glob(os.path.join(out, f"{name}-{kind}-*.json")))
    return [json.load(open(p)) for p in paths]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def figures(name):
    turns, rounds = runs(name, "turns"), runs(name, "rounds")
    one, eight, rss = runs(name, "one"), runs(name, "eight"), runs(name, "rss")
    if not rss:
        return None
    return {
        "rounds": len(rss),
        "first_ttft_ms": med(t["first_ttft_ms"] for t in turns),
        "followup_ttft_ms": med(med(t["followup_ttft_ms"]) for t in turns),
        "one_tok_s": med(r["throughput"]["output_tokens_per_s"] for r in one),
        "eight_tok_s": med(r["throughput"]["output_tokens_per_s"] for r in eight),
        "rr_followup_ttft_ms": med(med(r["followup_ttft_ms"]) for r in rounds),
        "rss_idle_mib": med(r["rss_idle_kb"] / 1024 for r in rss),
        "rss_after_mib": med(r["rss_after_kb"] / 1024 for r in rss),
    }


names = sorted({os.path.basename(p).split("-rss-")[0] for p in glob.glob(os.path.join(out, "*-rss-*.json"))})
sluices = [n for n in names if n.startswith("sluice")]
llama = figures("llama")
found = {n: figures(n) for n in sluices}
rows = [
    ("first turn (~2,000 tokens): TTFT ms", "first_ttft_ms", "{:.0f}"),
    ("follow-up turns: TTFT ms (median of 3)", "followup_ttft_ms", "{:.0f}"),
    ("one stream, 128 tokens: tok/s", "one_tok_s", "{:.1f}"),
    ("8 streams: aggregate tok/s", "eight_tok_s", "{:.1f}"),
    ("32 conversations on 4 slots: follow-up TTFT ms", "rr_followup_ttft_ms", "{:.0f}"),
    ("RSS after warm-up MiB", "rss_idle_mib", "{:.0f}"),
    ("RSS after the run MiB", "rss_after_mib", "{:.0f}"),
]
n = max([(f or {}).get("rounds", 0) for f in [llama, *found.values()]] or [0])
print(f"\nmedians of {n} round(s)   " + open(os.path.join(out, "load.txt")).read().replace("\n", "; "))
print(f"{'':52} {'llama-server':>13}" + "".join(f" {name:>12} {'ratio':>6}" for name in sluices))
for label, key, fmt in rows:
    a = llama[key] if llama else float("nan")
    line = f"{label:52} {fmt.format(a):>13}"
    for name in sluices:
        b = found[name][key]
        ratio = b / a if a == a and a else float("nan")
        line += f" {fmt.format(b):>12} {ratio:>6.2f}"
    print(line)
for name, f in (("llama-server", llama), *found.items()):
    if f:
        print(f"{name}: 8 streams = {f['eight_tok_s'] / f['one_tok_s']:.2f}x one stream; "
              f"round-robin follow-up = {f['rr_followup_ttft_ms'] / f['followup_ttft_ms']:.2f}x single-conversation follow-up")
for name, sluice in found.items():
    if not llama:
        break
    print(f"{name}:")
    checks = [
        ("first-turn TTFT <= llama-server's", sluice["first_ttft_ms"] <= llama["first_ttft_ms"]),
        ("follow-up TTFT <= llama-server's", sluice["followup_ttft_ms"] <= llama["followup_ttft_ms"]),
        ("32 conversations: follow-up TTFT <= 2x single", sluice["rr_followup_ttft_ms"] <= 2 * sluice["followup_ttft_ms"]),
        ("one stream tok/s >= llama-server's", sluice["one_tok_s"] >= llama["one_tok_s"]),
        ("8 streams >= 2x one", sluice["eight_tok_s"] >= 2 * sluice["one_tok_s"]),
    ]
    for label, ok in checks:
        print(f"  {'met   ' if ok else 'MISSED'} {label}")
kv_bytes = int(os.environ.get("KV_CACHE_BYTES", str(1 << 30)))
for name in sluices:
    path = os.path.join(out, f"{name}-rssrun-result.json")
    if os.path.exists(path):
        r = json.load(open(path))
        base, after = r["rss_base_kb"] * 1024, r["rss_after_kb"] * 1024
        bound = (base + kv_bytes) * 1.05
        print(f"{name}: {r['requests']} requests: RSS {base / 2**20:.0f} -> {after / 2**20:.0f} MiB "
              f"(host KV cache holds {r['kv_host_bytes'] / 2**20:.0f} MiB after {r.get('saves', 0)} saves, "
              f"{r.get('restores', 0)} restores, {r.get('evictions', 0)} evictions; bound {bound / 2**20:.0f} MiB) "
              f"{'met' if after <= bound else 'MISSED'}")
