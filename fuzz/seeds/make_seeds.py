#!/usr/bin/env python3
"""Writes the seed corpus, fuzz/corpus/TARGET/NAME, from realistic inputs.

Run from the repository root: python3 fuzz/seeds/make_seeds.py. Seeds are named by what
they are; re-running rewrites them unchanged. The config seed is README.md's example.
"""
import json, os, re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def put(target, name, data):
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# Real OpenAI and Ollama streams (the shapes upstreams send).
OPENAI_SSE = (
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1733011200,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1733011200,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
    ': keep-alive\n\n'
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1733011200,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\n'
    'data: [DONE]\n\n'
)
OPENAI_SSE_CRLF = 'event: message\r\nid: 7\r\ndata: {"a":\r\ndata: 1}\r\n\r\nretry: 100\r\ndata: [DONE]\r\n\r\n'
OLLAMA_NDJSON = (
    '{"model":"llama3.1:8b","created_at":"2024-12-01T00:00:00Z","message":{"role":"assistant","content":"Hel"},"done":false}\n'
    '{"model":"llama3.1:8b","created_at":"2024-12-01T00:00:00Z","message":{"role":"assistant","content":"lo"},"done":false}\n'
    '\n'
    '{"model":"llama3.1:8b","created_at":"2024-12-01T00:00:01Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":123456,"prompt_eval_count":9,"eval_count":2}\r\n'
)

put("sse", "openai-stream", b"\x07" + OPENAI_SSE.encode())
put("sse", "crlf-multiline-fields", b"\x00" + OPENAI_SSE_CRLF.encode())
put("sse", "unterminated-last-event", b"\x03" + b'data: {"partial":true}')
put("ndjson", "ollama-chat-stream", b"\x05" + OLLAMA_NDJSON.encode())
put("ndjson", "unterminated-last-line", b"\x01" + b'{"done":false}\n{"done":tr')

def chunked(body, sizes):
    out, i = b"", 0
    for s in sizes:
        part = body[i:i + s]; i += s
        if not part: break
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    if i < len(body):
        out += b"%x;ext=1\r\n" % (len(body) - i) + body[i:] + b"\r\n"
    return out + b"0\r\nx-trailer: 1\r\n\r\n"

# h1_response: first byte = read size - 1 (bits 0-5), HEAD request (bit 6).
put("h1_response", "sse-chunked", b"\x0f" + b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(OPENAI_SSE.encode(), [40, 200, 13]))
put("h1_response", "ndjson-chunked", b"\x3f" + b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunked(OLLAMA_NDJSON.encode(), [100]))
put("h1_response", "json-content-length", b"\x00" + b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{"object":"list","data":[]}')
put("h1_response", "error-401", b"\x09" + b'HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 84\r\nconnection: close\r\n\r\n{"error":{"message":"Incorrect API key provided: sk-abc","type":"invalid_request_error"}}')
put("h1_response", "continue-then-close-delimited", b"\x02" + b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nserver: x\r\n\r\nuntil the close")
put("h1_response", "head-request", b"\x41" + b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
put("h1_response", "no-content", b"\x05" + b"HTTP/1.1 204 No Content\r\n\r\n")
put("h1_response", "truncated-chunk", b"\x04" + b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab")

# Requests, as in docs/fields.md and the dialects' documentation.
def req(target, name, obj):
    put(target, name, json.dumps(obj, separators=(",", ":")))

req("openai_chat", "minimal", {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "Hello!"}]})
req("openai_chat", "full", {
    "model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is in this image?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}], "name": "ann"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":21}"},
    ],
    "max_completion_tokens": 64, "temperature": 0.2, "top_p": 0.9, "seed": 7, "stop": ["\n\n", "END"],
    "presence_penalty": 0.1, "frequency_penalty": 0.1, "top_k": 40, "min_p": 0.05, "user": "u-1", "n": 1,
    "metadata": {"k": "v"}, "logprobs": True, "top_logprobs": 3, "reasoning_effort": "low",
    "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object", "properties": {"temp": {"type": "number"}}}}},
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False,
})
req("openai_chat", "bad-temperature", {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9})
req("openai_completion", "minimal", {"model": "llama-3.1-8b", "prompt": "Once upon a time", "max_tokens": 16})
req("openai_completion", "full", {"model": "m", "prompt": ["one"], "suffix": "end", "stream": True, "stream_options": {"include_usage": True}, "temperature": 1.0, "top_p": 1, "seed": 1, "stop": "\n", "echo": False, "best_of": 1, "logit_bias": {"50256": -100}, "n": 1, "user": "u"})
req("ollama_chat", "minimal", {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "Why is the sky blue?"}]})
req("ollama_chat", "full", {
    "model": "llava", "stream": False, "keep_alive": "5m", "format": "json", "think": "low",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "21", "tool_name": "get_weather"},
    ],
    "options": {"temperature": 0.2, "top_p": 0.9, "top_k": 40, "num_predict": 64, "seed": 3, "stop": ["<|eot|>"], "num_ctx": 4096, "repeat_penalty": 1.1},
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "logprobs": True, "top_logprobs": 2,
})
req("ollama_chat", "keep-alive-overflow", {"model": "m", "messages": [], "keep_alive": "300000000000y"})
req("ollama_generate", "minimal", {"model": "llama3.1:8b", "prompt": "Why is the sky blue?"})
req("ollama_generate", "full", {"model": "llava", "prompt": "Describe", "system": "Be brief.", "images": ["iVBORw0KGgo="], "stream": True, "raw": False, "keep_alive": -1, "format": {"type": "object"}, "think": True, "options": {"num_predict": 8, "stop": ["\n"]}, "context": [1, 2, 3], "template": "{{ .Prompt }}"})
req("ollama_generate", "load-only", {"model": "llama3.1:8b", "keep_alive": 0})

# Agent frames (docs/agent-protocol.md).
put("frame_to_gateway", "hello", '{"type":"hello","protocol":1,"token":"sat-0123456789abcdef","agent_id":"gpu-box-1","version":"0.1.0","models":["llama3.1:8b","qwen2.5:0.5b"],"slots":4}')
put("frame_to_gateway", "hello-newer-protocol", '{"type":"hello","protocol":2,"token":"sat-x","future":true}')
put("frame_to_gateway", "chunk", '{"type":"chunk","job":17,"delta":"Hel"}')
put("frame_to_gateway", "done", '{"type":"done","job":17,"finish_reason":"stop","usage":{"prompt_tokens":9,"completion_tokens":12}}')
put("frame_to_gateway", "error", '{"type":"error","job":17,"error":{"kind":"status","status":503,"message":"busy"}}')
put("frame_to_gateway", "load", '{"type":"load","jobs":2,"slots":4,"draining":false}')
put("frame_to_agent", "welcome", '{"type":"welcome","protocol":1,"heartbeat_ms":3000}')
put("frame_to_agent", "refused", '{"type":"refused","code":"unauthorized","reason":"unknown or revoked agent token"}')
put("frame_to_agent", "job-chat", '{"type":"job","job":17,"request":{"model":"llama3.1:8b","input":{"kind":"chat","messages":[{"role":"user","content":"hi"}]},"sampling":{"max_tokens":64,"temperature":0.2},"stream":true,"request_id":"0192f5c4-0000-7000-8000-000000000000"}}')
put("frame_to_agent", "cancel", '{"type":"cancel","job":17}')
put("frame_to_agent", "ping", '{"type":"ping","nonce":42}')

# chat_template: first byte even = a real template (byte / 2 picks it), odd = template given.
put("chat_template", "smollm2-conversation", b"\x00" + "system\x01Be brief.\0user\x01Hi\0assistant\x01Hello!\0user\x01What is 2+2?".encode())
put("chat_template", "llama3-alternating", b"\x04" + "Hi\0Hello\0How are you?".encode())
put("chat_template", "mistral-wrong-order", b"\x06" + "assistant\x01first\0user\x01second".encode())
put("chat_template", "given-template-loop", b"\x01" + "{% for m in messages %}{{ m.role | upper }}: {{ m.content.strip() }}{% if not loop.last %}\n{% endif %}{% endfor %}{{ bos_token }}\0user\x01 hi \0assistant\x01there".encode())
put("chat_template", "given-template-raise", b"\x01" + "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok\0tool\x01x".encode())

# Config: README.md's example, and small ones.
readme = open(os.path.join(ROOT, "README.md")).read()
example = re.search(r"## Configuration.*?```toml\n(.*?)```", readme, re.S).group(1)
put("config", "readme-example", example)
put("config", "minimal", '[server]\nlisten = "127.0.0.1:8080"\n')
put("config", "backends", '[[backends]]\nname = "ollama"\nkind = "ollama"\nurl = "http://127.0.0.1:11434"\nmodels = ["llama3.1:8b", { name = "chat", upstream = "llama3.1:8b" }]\n')
put("config", "unknown-key", '[server]\nlistne = "x"\n')
