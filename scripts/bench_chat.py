#!/usr/bin/env python3
"""Multi-turn chat timings through HTTP (OpenAI `/v1/chat/completions`, streamed), for
scripts/bench-chat.sh. Each turn resends the whole history with the assistant's real
answers, as a chat client does, so a server can reuse what it cached of the prefix.

usage:
  bench_chat.py URL MODEL turns   FOLLOWUPS MAX_TOKENS          # one conversation
  bench_chat.py URL MODEL rounds  CONVS ROUNDS MAX_TOKENS        # CONVS conversations round robin

`turns`: the first message is ~2,000 tokens (a long text to summarise), then FOLLOWUPS
short follow-up questions; prints the first turn's time to first token and each
follow-up's. `rounds`: CONVS conversations, each opened with its own ~300-token message,
then ROUNDS rounds in which every conversation takes one follow-up turn in turn (one
request in flight at a time); prints every follow-up's time to first token.
Standard library only; temperature 0.
"""
import http.client
import json
import sys
import time
import urllib.parse

PARAGRAPH = (
    "The river town kept its records in a stone house by the mill. Every spring the "
    "clerks wrote down the height of the flood, the price of grain, the names of the "
    "ferrymen and the boats they mended, and every autumn they read the year aloud in "
    "the square so that nobody could say later that a debt had been forgotten. "
)
FOLLOWUPS = [
    "What does the text say about the clerks?",
    "Summarise that in one sentence.",
    "Which season is mentioned first?",
    "Name one thing that was written down.",
    "Why were the records read aloud?",
]


def long_message(tokens_wanted, tag):
    # One PARAGRAPH is about 60 tokens for SmolLM2's tokenizer.
    repeats = max(1, tokens_wanted // 60)
    return f"{tag} Read this record and summarise it.\n\n" + PARAGRAPH * repeats


class Client:
    def __init__(self, url, model, max_tokens):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.model, self.max_tokens = model, max_tokens

    def turn(self, messages):
        """Sends one streamed turn; returns (ttft seconds, answer text, completion tokens)."""
        body = json.dumps({
            "model": self.model, "messages": messages, "stream": True, "temperature": 0,
            "max_tokens": self.max_tokens, "stream_options": {"include_usage": True},
        })
        # A connection per turn: llama-server may close an idle keep-alive connection.
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body,
                          {"Content-Type": "application/json", "Accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise SystemExit(f"bench_chat: HTTP {resp.status}: {resp.read()[:300]!r}")
        ttft, parts, usage = None, [], None
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if event.get("usage"):
                usage = event["usage"].get("completion_tokens")
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if ttft is None:
                        ttft = time.perf_counter() - start
                    parts.append(text)
        resp.read()
        conn.close()
        if ttft is None:  # an empty answer: its end is its first token
            ttft = time.perf_counter() - start
        return ttft, "".join(parts), usage


def main():
    url, model, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "turns":
        followups, max_tokens = int(sys.argv[4]), int(sys.argv[5])
        client = Client(url, model, max_tokens)
        messages = [{"role": "user", "content": long_message(2000, f"[{time.time_ns()}]")}]
        first, answer, _ = client.turn(messages)
        result = {"first_ttft_ms": first * 1000, "followup_ttft_ms": []}
        for i in range(followups):
            messages += [{"role": "assistant", "content": answer},
                         {"role": "user", "content": FOLLOWUPS[i % len(FOLLOWUPS)]}]
            ttft, answer, _ = client.turn(messages)
            result["followup_ttft_ms"].append(ttft * 1000)
    elif mode == "rounds":
        convs, rounds, max_tokens = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        client = Client(url, model, max_tokens)
        stamp = time.time_ns()
        histories = []
        for c in range(convs):
            messages = [{"role": "user", "content": long_message(300, f"[{stamp} conversation {c}]")}]
            _, answer, _ = client.turn(messages)
            histories.append(messages + [{"role": "assistant", "content": answer}])
        result = {"followup_ttft_ms": []}
        for r in range(rounds):
            for messages in histories:
                messages.append({"role": "user", "content": FOLLOWUPS[r % len(FOLLOWUPS)]})
                ttft, answer, _ = client.turn(messages)
                messages.append({"role": "assistant", "content": answer})
                result["followup_ttft_ms"].append(ttft * 1000)
    else:
        raise SystemExit(f"bench_chat: unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
