#!/usr/bin/env python3
"""Gateway memory per idle connected agent: connects N agents (real WebSockets, each
authenticated with a Hello and welcomed), then reads the gateway's RSS.

Usage: bench-idle-agents.py GATEWAY_PID WS_URL TOKEN N
The gateway should run with a long [agents] heartbeat/dead_after (agents here do not
answer protocol pings) and generous max_handshakes / attempts_per_minute."""
import asyncio, json, sys, time

import websockets


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def agent(url, token, i, ready):
    ws = await websockets.connect(url, max_size=None, ping_interval=None)
    hello = {"type": "hello", "protocol": 1, "token": token, "agent_id": f"idle-{i}",
             "version": "bench", "models": ["idle-model"], "slots": 1}
    await ws.send(json.dumps(hello))
    answer = json.loads(await ws.recv())
    assert answer["type"] == "welcome", answer
    ready.append(ws)


async def main():
    pid, url, token, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    before = rss_kib(pid)
    ready = []
    for start in range(0, n, 200):
        await asyncio.gather(*(agent(url, token, i, ready) for i in range(start, min(n, start + 200))))
    await asyncio.sleep(3)
    after = rss_kib(pid)
    print(json.dumps({"agents": len(ready), "rss_before_kib": before, "rss_after_kib": after,
                      "per_agent_kib": round((after - before) / len(ready), 1)}))
    for ws in ready:
        await ws.close()


asyncio.run(main())
