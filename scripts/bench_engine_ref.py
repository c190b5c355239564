#!/usr/bin/env python3
"""Reference figures from llama.cpp's own Python binding (llama-cpp-python) on the same
GGUF, thread count and prompts as `crates/engine/examples/throughput.rs`, printed as
JSON: prompt processing tok/s, single-stream generation tok/s (decode steps after the
first token), and time to first token for a short chat prompt (median of N runs).

usage: bench_engine_ref.py MODEL THREADS TOKENS [TTFT_RUNS]
"""
import json
import statistics
import sys
import time

from llama_cpp import Llama

model, threads, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ttft_runs = int(sys.argv[4]) if len(sys.argv) > 4 else 50

llm = Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)

def chat(content, max_tokens):
    return [{"role": "user", "content": content}], max_tokens

# Warm-up: page the weights in, size the buffers.
llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0)

# Prompt processing: the same ~500-token text prompt as the Rust example, evaluated fresh.
long_prompt = "The quick brown fox jumps over the lazy dog. " * 50 + " Summarise the above."
toks = llm.tokenize(long_prompt.encode(), add_bos=True)
llm.reset()
t0 = time.perf_counter()
llm.eval(toks)
pp_s = time.perf_counter() - t0
pp = {"tokens": len(toks), "seconds": pp_s, "tok_per_s": len(toks) / pp_s}

# Single stream: greedy, TOKENS tokens, timed from the first token to the last.
llm.reset()
stamps = []
for chunk in llm.create_chat_completion(
    messages=[{"role": "user", "content": "Write a long, detailed story about a lighthouse keeper on a distant planet."}],
    max_tokens=tokens, temperature=0, stream=True,
):
    if chunk["choices"][0]["delta"].get("content"):
        stamps.append(time.perf_counter())
gen_tokens = len(stamps)
gen = {"tokens": gen_tokens, "tok_per_s": (gen_tokens - 1) / (stamps[-1] - stamps[0]) if gen_tokens > 1 else 0.0}

# Time to first token of a short chat prompt made unique the way `sluice bench
# --unique-prompts` does ("Say hello. N"): both reuse the shared KV prefix and evaluate
# the few tokens after it. (An identical repeated prompt would let the binding sample
# from logits it kept, with no evaluation at all.)
ttfts = []
for i in range(ttft_runs):
    t0 = time.perf_counter()
    for chunk in llm.create_chat_completion(
        messages=[{"role": "user", "content": f"Say hello. {1000 + i}"}], max_tokens=2, temperature=0, stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            ttfts.append(time.perf_counter() - t0)
            break
ttft = {"runs": len(ttfts), "p50_ms": statistics.median(ttfts) * 1000, "min_ms": min(ttfts) * 1000}

print(json.dumps({"threads": threads, "prompt": pp, "single": gen, "ttft": ttft}))
