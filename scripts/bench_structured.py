"""Decode speed of the embedded engine with and without a JSON-schema constraint, same run.

Alternates plain and constrained streamed chat completions against a running Sluice
(one request in flight), and per request takes the decode rate: generated tokens after
the first, over the time from the first token's chunk to the last one's (prompt
evaluation and request overhead excluded). Prints the medians per round and the ratio.

  python3 scripts/bench_structured.py URL MODEL [--pairs 20] [--rounds 3] [--max-tokens 160]
"""
import argparse
import http.client
import json
import statistics
import sys
import time
import urllib.parse

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "species": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 40},
        "personality": {"type": "string", "maxLength": 200},
        "favourite_foods": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 5},
    },
    "required": ["name", "species", "age", "personality", "favourite_foods"],
    "additionalProperties": False,
}
PROMPTS = ["a cat", "a dog", "a parrot", "a hamster", "a goldfish", "a horse", "a rabbit", "a turtle"]


def stream(url, body, timeout):
    """Streams one chat completion; returns (text, first and last content times, completion tokens, finish reason)."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    first = last = None
    tokens = None
    finish = None
    text = []
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        for choice in chunk.get("choices", []):
            finish = choice.get("finish_reason") or finish
            piece = choice.get("delta", {}).get("content")
            if piece:
                now = time.perf_counter()
                first = first or now
                last = now
                text.append(piece)
    conn.close()
    return "".join(text), first, last, tokens, finish


def rate(url, model, prompt, seed, max_tokens, constrained):
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"Describe {prompt} as a pet, in JSON."}],
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "pet", "schema": SCHEMA, "strict": True}}
    text, first, last, tokens, finish = stream(url, body, 120)
    if constrained and finish == "stop":
        json.loads(text)  # a constrained answer that stopped by itself is a whole document
    if not tokens or tokens < 8 or last <= first:
        return None, tokens
    return (tokens - 1) / (last - first), tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("model")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=160)
    a = ap.parse_args()
    rate(a.url, a.model, "a cat", 0, 16, False)  # warm-up
    rate(a.url, a.model, "a cat", 0, 16, True)   # first constrained request builds the tokenizer tables
    ratios = []
    for r in range(a.rounds):
        plain, constrained, ptoks, ctoks = [], [], [], []
        for i in range(a.pairs):
            prompt = PROMPTS[i % len(PROMPTS)]
            for is_c, rates, toks in ((False, plain, ptoks), (True, constrained, ctoks)):
                v, n = rate(a.url, a.model, prompt, 1000 * r + i, a.max_tokens, is_c)
                if v is not None:
                    rates.append(v)
                    toks.append(n)
        p, c = statistics.median(plain), statistics.median(constrained)
        ratios.append(c / p)
        print(f"round {r + 1}: plain {p:.1f} tok/s (median of {len(plain)}, median {statistics.median(ptoks)} tokens), "
              f"constrained {c:.1f} tok/s (median of {len(constrained)}, median {statistics.median(ctoks)} tokens), "
              f"ratio {c / p:.3f}", flush=True)
    print(f"median ratio over {a.rounds} rounds: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    sys.exit(main())
