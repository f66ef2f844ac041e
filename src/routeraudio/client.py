"""A small async client for programs: stream audio to a router and receive its messages.

    async with ListenClient(url, key="router_...", provider="deepgram", encoding="pcm_s16le",
                            sample_rate=16000) as client:
        await client.send(chunk)           # as many times as needed
        async for message in client.finish():   # close_stream, then every message until 1000
            print(message)

``stream_file`` does the whole thing for a file, paced at real time (or ``speed`` times faster).
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlencode

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .audio import AudioMeter


@dataclass
class Closed:
    """How the router ended the session."""

    code: int
    reason: str
    error: dict | None = None


@dataclass
class AudioSource:
    encoding: str
    sample_rate: int
    channels: int
    data: bytes = field(repr=False)


def read_audio_file(path: str | Path, encoding: str | None = None, sample_rate: int | None = None,
                    channels: int = 1) -> AudioSource:
    """Read WAV (PCM s16 or mu-law), raw PCM (give encoding and rate), Ogg/Opus, WebM or MP3."""
    p = Path(path)
    data = p.read_bytes()
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return _read_wav(data)
    suffix = p.suffix.lower()
    guessed = {".ogg": "ogg_opus", ".opus": "ogg_opus", ".oga": "ogg_opus", ".webm": "webm", ".mp3": "mp3",
               ".ulaw": "pcm_mulaw", ".mulaw": "pcm_mulaw", ".raw": "pcm_s16le", ".pcm": "pcm_s16le"}.get(suffix)
    encoding = encoding or guessed
    if encoding is None:
        raise ValueError(f"cannot tell the encoding of {p.name}; pass --encoding")
    if encoding in ("ogg_opus", "webm", "mp3"):
        # The container's own rate wins in the router; the declared one only has to be valid.
        return AudioSource(encoding, sample_rate or (44100 if encoding == "mp3" else 48000), channels, data)
    if not sample_rate:
        raise ValueError(f"raw audio needs --sample-rate ({p.name})")
    return AudioSource(encoding, sample_rate, channels, data)


def _read_wav(data: bytes) -> AudioSource:
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", body)
        elif cid == b"data" and fmt:
            tag, channels, rate, _, _, bits = fmt
            if tag == 1 and bits == 16:
                return AudioSource("pcm_s16le", rate, channels, body)
            if tag == 7 and bits == 8:
                return AudioSource("pcm_mulaw", rate, channels, body)
            raise ValueError(f"WAV format {tag} with {bits} bits is not supported (PCM16 or mu-law)")
        pos += 8 + size + (size & 1)
    raise ValueError("WAV file without fmt/data chunks")


class ListenClient:
    def __init__(self, url: str, *, provider: str, encoding: str, sample_rate: int, key: str | None = None,
                 jwt_token: str | None = None, **params) -> None:
        query = {"provider": provider, "encoding": encoding, "sample_rate": sample_rate}
        query.update({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items() if v is not None})
        if jwt_token:
            query["jwt_token"] = jwt_token
        self.url = f"{url.rstrip('/')}/v1/listen?{urlencode(query)}"
        self.headers = {"x-api-key": key} if key else {}
        self.ws = None
        self.closed: Closed | None = None
        self._queue: asyncio.Queue = asyncio.Queue()
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> "ListenClient":
        self.ws = await connect(self.url, additional_headers=self.headers, max_size=2**22, compression=None,
                                proxy=None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        error = None
        try:
            async for raw in self.ws:
                msg = json.loads(raw) if isinstance(raw, str) else {"type": "binary", "data": raw}
                if isinstance(msg, dict) and msg.get("type") == "error":
                    error = msg
                await self._queue.put(msg)
        except ConnectionClosed:
            pass
        finally:
            code = self.ws.close_code
            self.closed = Closed(1006 if code is None else code, self.ws.close_reason or "", error)
            await self._queue.put(None)

    async def send(self, audio: bytes) -> None:
        await self.ws.send(audio)

    async def control(self, kind: str) -> None:
        await self.ws.send(json.dumps({"type": kind}))

    async def messages(self) -> AsyncIterator[dict]:
        """Messages as they arrive, until the router closes."""
        while True:
            msg = await self._queue.get()
            if msg is None:
                return
            yield msg

    async def finish(self) -> AsyncIterator[dict]:
        await self.control("close_stream")
        async for msg in self.messages():
            yield msg


async def stream_file(url: str, source: AudioSource, *, provider: str, key: str | None = None,
                      speed: float = 1.0, frame_ms: int = 20, on_message=None, **params) -> Closed:
    """Stream ``source`` at real time (``speed`` x), print-callback each message, return how it closed."""
    meter = AudioMeter(source.encoding, source.sample_rate, source.channels)
    raw = source.encoding in ("pcm_s16le", "pcm_mulaw")
    if raw:
        chunk = source.sample_rate * source.channels * (2 if source.encoding == "pcm_s16le" else 1) * frame_ms // 1000
    else:
        chunk = 1024  # container bytes: paced by the duration the meter decodes from them
    async with ListenClient(url, provider=provider, encoding=source.encoding, sample_rate=source.sample_rate,
                            channels=source.channels, key=key, **params) as client:
        async def consume() -> None:
            async for msg in client.messages():
                if on_message:
                    on_message(msg)

        reader = asyncio.create_task(consume())
        start = time.monotonic()
        try:
            for i in range(0, len(source.data), chunk):
                if reader.done():
                    break
                piece = source.data[i:i + chunk]
                meter.feed(piece)
                await client.send(piece)
                delay = start + meter.duration / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if not reader.done():
                await client.control("close_stream")
        except ConnectionClosed:
            pass
        await reader
    return client.closed
