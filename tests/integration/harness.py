"""Router + simulator on loopback, run on asyncio or uvloop, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from urllib.parse import urlencode

import uvloop
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from routeraudio.config import ServerConfig
from routeraudio.server.app import Router

LOOPS = ["asyncio", "uvloop"]
PROVIDER_KEY = "dg-secret-key"


def run(loop_kind: str, coro_fn, *args, timeout: float = 30.0):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro_fn(*args)

    if loop_kind == "uvloop":
        return uvloop.run(bounded())
    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def router(tmp_path, urls: dict[str, str], **overrides):
    cfg = ServerConfig(host="127.0.0.1", port=0, data_dir=str(tmp_path),
                       provider_keys={p: PROVIDER_KEY for p in urls}, provider_urls=dict(urls))
    for k, v in overrides.items():
        setattr(cfg, k, v)
    r = Router(cfg)
    await r.start()
    try:
        yield r
    finally:
        await r.shutdown(drain_timeout=0.5)


@dataclass
class Outcome:
    messages: list = field(default_factory=list)
    code: int | None = None
    reason: str = ""

    @property
    def transcripts(self):
        return [m for m in self.messages if isinstance(m, dict) and m.get("type") == "transcript"]

    @property
    def finals(self):
        return [m for m in self.transcripts if not m.get("is_partial")]

    @property
    def errors(self):
        return [m for m in self.messages if isinstance(m, dict) and m.get("type") == "error"]

    @property
    def types(self):
        return [m.get("type") if isinstance(m, dict) else "raw" for m in self.messages]


def listen_url(r: Router, **params) -> str:
    params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items() if v is not None}
    return f"ws://127.0.0.1:{r.port}/v1/listen?{urlencode(params)}"


async def session(url: str, chunks=(), *, headers=None, close: str | None = "close_stream",
                  pace: float = 0.0, controls: dict[int, str] | None = None, raw_text: bool = False,
                  after_send=None) -> Outcome:
    """Open, send ``chunks`` (bytes, or str for text frames), end with ``close``, collect until closed."""
    out = Outcome()
    async with connect(url, additional_headers=headers or {}, max_size=2**24, proxy=None,
                       compression=None, open_timeout=5) as ws:
        async def reader():
            try:
                async for m in ws:
                    if isinstance(m, str) and not raw_text:
                        out.messages.append(json.loads(m))
                    else:
                        out.messages.append(m)
            except ConnectionClosed:
                pass

        task = asyncio.create_task(reader())
        try:
            for i, chunk in enumerate(chunks):
                if controls and i in controls:
                    await ws.send(controls[i])
                await ws.send(chunk)
                if pace:
                    await asyncio.sleep(pace)
            if after_send is not None:
                await after_send(ws)
            if close == "close_stream":
                await ws.send(json.dumps({"type": "close_stream"}))
            elif close == "empty":
                await ws.send(b"")
        except ConnectionClosed:
            pass
        await asyncio.wait_for(task, 20)
        out.code, out.reason = ws.close_code, ws.close_reason or ""
    return out


async def http_request(port: int, method: str, path: str, headers: dict | None = None,
                       body: bytes = b"") -> tuple[int, dict | str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    data = await reader.read()
    writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    status = int(status_line.split()[1])
    payload = rest.partition(b"\r\n\r\n")[2].decode()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


def pcm_chunks(seconds: float, rate: int = 16000, frame_ms: int = 20, channels: int = 1) -> list[bytes]:
    """Silence-free PCM (a quiet tone) in frames: the simulator keys off audio time, not content."""
    import math
    import struct

    n = int(rate * frame_ms / 1000)
    frames = []
    for f in range(int(seconds * 1000 / frame_ms)):
        samples = []
        for i in range(n):
            v = int(3000 * math.sin(2 * math.pi * 440 * (f * n + i) / rate))
            samples.extend([v] * channels)
        frames.append(struct.pack(f"<{len(samples)}h", *samples))
    return frames


@contextlib.contextmanager
def simulator_cli(provider: str, key: str):
    """``python -m routeraudio.testing simulate PROVIDER`` as a user runs it; yields the URL it prints
    (which must not show the key), and checks that Ctrl-C stops it cleanly."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with subprocess.Popen([sys.executable, "-m", "routeraudio.testing", "simulate", provider, "--port", "0",
                           "--key", key], stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            line = proc.stdout.readline()
            assert f"{provider} simulator listening on ws://127.0.0.1:" in line and key not in line
            yield line.split()[4]
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0
