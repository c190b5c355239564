#!/usr/bin/env python3
"""Slow-header attacker for scripts/bench-trickle.sh: holds N connections to the gateway
from one source address, each sending a request head one byte at a time, INTERVAL
seconds apart, and never finishing it. A connection the gateway closes (its header
read timeout, or a connection cap's 503) is opened again after BACKOFF seconds, as a
determined attacker would. Runs for DURATION seconds (or until SIGTERM), then prints what it saw as JSON.

Usage: bench-trickle.py HOST:PORT SOURCE_IP N DURATION [INTERVAL] [BACKOFF]
"""
import asyncio
import json
import os
import signal
import sys
import time

HEAD = b"GET /v1/models HTTP/1.1\r\nhost: sluice\r\nx-padding: " + b"a" * 4096


async def one(host, port, source, interval, backoff, deadline, st):
    while time.monotonic() < deadline:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
            st["opened"] += 1
            st["holding"] += 1
            try:
                i = 0
                while time.monotonic() < deadline:
                    writer.write(HEAD[i % len(HEAD):i % len(HEAD) + 1])
                    i += 1
                    await writer.drain()
                    # A reply (a 503, a 408) or a close ends this connection.
                    try:
                        data = await asyncio.wait_for(reader.read(512), interval)
                    except asyncio.TimeoutError:
                        continue
                    if data.startswith(b"HTTP/1.1 503"):
                        st["refused_503"] += 1
                    elif data:
                        st["answered"] += 1
                    else:
                        st["closed"] += 1
                    break
            finally:
                st["holding"] -= 1
        except (ConnectionError, OSError):
            st["connect_errors"] += 1
        finally:
            if writer is not None:
                writer.close()
        await asyncio.sleep(backoff)


async def main():
    target, source, n, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    interval = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
    backoff = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0
    host, port = target.rsplit(":", 1)
    st = dict(opened=0, holding=0, refused_503=0, answered=0, closed=0, connect_errors=0, peak_holding=0)
    deadline = time.monotonic() + duration

    def report_and_exit():
        # Stopped early (SIGTERM): report what was seen so far.
        print(json.dumps(st), flush=True)
        os._exit(0)

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, report_and_exit)
    tasks = []
    # Open them 500 at a time so the accept queue is not the only thing measured.
    for start in range(0, n, 500):
        for _ in range(start, min(n, start + 500)):
            tasks.append(asyncio.create_task(one(host, int(port), source, interval, backoff, deadline, st)))
        await asyncio.sleep(0.05)

    async def peak():
        while time.monotonic() < deadline:
            st["peak_holding"] = max(st["peak_holding"], st["holding"])
            await asyncio.sleep(0.2)

    tasks.append(asyncio.create_task(peak()))
    await asyncio.gather(*tasks)
    print(json.dumps(st), flush=True)


asyncio.run(main())
