"""A real WebSocket server and client for the WebSocket tests (the `websockets` package).

    ws.py serve                 echo server on 127.0.0.1, prints its port, runs until killed
    ws.py client URL STEPS...   runs STEPS over one connection and prints one JSON line per step:
        send:TEXT        send TEXT and wait (10 s at most) for its echo
        sleep:SECONDS    stay idle
        closed:SECONDS   wait at most SECONDS for the gateway to close the connection
    Extra headers for the handshake come from WS_HEADERS (JSON object).
"""

import asyncio
import json
import os
import sys
import time

import websockets


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def serve():
    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()


async def client(url, steps):
    headers = json.loads(os.environ.get("WS_HEADERS", "{}"))
    try:
        ws = await websockets.connect(url, additional_headers=headers, ping_interval=None, open_timeout=10)
    except Exception as e:  # the handshake refused: report its status
        status = getattr(getattr(e, "response", None), "status_code", None)
        print(json.dumps({"step": "connect", "ok": False, "status": status, "error": str(e)}), flush=True)
        return
    print(json.dumps({"step": "connect", "ok": True}), flush=True)
    for step in steps:
        kind, _, arg = step.partition(":")
        if kind == "send":
            try:
                await ws.send(arg)
                reply = await asyncio.wait_for(ws.recv(), 10)
                print(json.dumps({"step": step, "ok": reply == arg, "reply": reply}), flush=True)
            except Exception as e:
                print(json.dumps({"step": step, "ok": False, "error": type(e).__name__}), flush=True)
        elif kind == "sleep":
            await asyncio.sleep(float(arg))
            print(json.dumps({"step": step, "ok": True}), flush=True)
        elif kind == "closed":
            start = time.monotonic()
            try:
                await asyncio.wait_for(ws.wait_closed(), float(arg))
                print(json.dumps({"step": step, "ok": True, "after": time.monotonic() - start}), flush=True)
            except asyncio.TimeoutError:
                print(json.dumps({"step": step, "ok": False}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve())
    else:
        asyncio.run(client(sys.argv[2], sys.argv[3:]))
