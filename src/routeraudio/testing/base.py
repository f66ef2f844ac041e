"""Loopback simulators of providers' real-time STT APIs: the machinery every provider shares.

Theory of operation. ``SimulatorServer`` is a websockets (asyncio) server on 127.0.0.1, port 0 by
default (the OS picks; read ``port``/``url`` after ``start()``), used as ``async with``. Every upgrade
request gets a ``ConnectionRecord`` before anything else is decided, so tests can inspect refused
handshakes too. A provider module subclasses the server and fills in three hooks:

- ``check_handshake(request, record)``: the provider's own checks (path, auth, parameters); return an
  HTTP ``Response`` to refuse the upgrade (``self.http_error``), or None to accept;
- ``auth_rejection(request, record)``: the provider's answer when ``faults.reject_auth`` is set;
- ``run_session(ws, record)``: the protocol, using ``receive()`` (records audio and control frames),
  ``send_json()`` (records what went out) and ``final_sent()`` after each final transcript it sends,
  which is where the injected failures fire.

A ``Script`` says which words are "spoken" when; simulators do not recognise speech, they reveal the
script as the audio time they received passes each word. ``Faults`` makes a simulator misbehave:
refuse auth, fail after K finals (close code + reason, or a TCP reset), stall (stop reading and
writing), hang the handshake, ignore the finalize or end-of-stream message.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import ClassVar, Iterable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = ["ConnectionRecord", "Faults", "Script", "ScriptWord", "SessionOver", "SimulatorServer"]


# -- what is said ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScriptWord:
    """One spoken word: ``word`` as recognised (lower case, no punctuation), times in seconds."""

    word: str
    start: float
    end: float
    speaker: int | None = None
    punctuated: str | None = None  # with case and punctuation, as a punctuating recogniser writes it

    @property
    def text(self) -> str:
        return self.punctuated or self.word


_SENTENCE = re.compile(r"[^.?!]+[.?!]*")
_STRIP = re.compile(r"[^\w'-]+")


class Script:
    """The words a simulator "hears", in time order; ``repeat=True`` loops them forever.

    ``word(i)`` is the i-th word (None past the end); with ``repeat`` the script restarts every
    ``period`` seconds (default: the last word's end plus one second).
    """

    def __init__(self, words: Iterable[ScriptWord], *, repeat: bool = False, period: float | None = None) -> None:
        self.words = tuple(words)
        for a, b in zip(self.words, self.words[1:]):
            if b.start < a.end:
                raise ValueError(f"script words overlap: {a} and {b}")
        if any(w.end <= w.start for w in self.words):
            raise ValueError("every script word needs end > start")
        self.repeat = repeat and bool(self.words)
        self.period = period if period is not None else (self.words[-1].end + 1.0 if self.words else 0.0)

    @classmethod
    def from_text(cls, text: str, *, start: float = 0.5, word_s: float = 0.3, gap_s: float = 0.06,
                  pause_s: float = 1.2, speakers: int = 1, repeat: bool = False) -> "Script":
        """Words at a steady pace; a ``pause_s`` silence after each sentence. Speakers take turns by
        sentence when ``speakers`` > 1."""
        words, t = [], start
        for n, sentence in enumerate(_SENTENCE.findall(text)):
            tokens = sentence.split()
            if not tokens:
                continue
            for tok in tokens:
                plain = _STRIP.sub("", tok).lower()
                if not plain:
                    continue
                words.append(ScriptWord(plain, round(t, 3), round(t + word_s, 3), n % speakers, tok))
                t += word_s + gap_s
            t += pause_s - gap_s
        return cls(words, repeat=repeat, period=round(t, 3) if repeat else None)

    def word(self, i: int) -> ScriptWord | None:
        n = len(self.words)
        if i < n:
            return self.words[i]
        if not self.repeat:
            return None
        lap, w = divmod(i, n)
        w0 = self.words[w]
        shift = lap * self.period
        return ScriptWord(w0.word, round(w0.start + shift, 3), round(w0.end + shift, 3), w0.speaker, w0.punctuated)

    def __iter__(self):
        return iter(self.words)


DEFAULT_SCRIPT_TEXT = ("Hello, how are you today? I am calling about my order. "
                       "It was supposed to arrive on Monday.")


# -- what arrives ------------------------------------------------------------------------------------
CONTAINERS = ("ogg_opus", "webm", "mp3")


def sniff_container(head: bytes) -> str | None:
    """The container a stream's first bytes start (ogg_opus, webm, mp3), or None."""
    if head[:4] == b"OggS":
        return "ogg_opus"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "webm"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def container_meter(kind: str | None):
    """An AudioMeter measuring a container stream's audio time, or None (not a container, or the
    codec core is not built; simulators then estimate from the byte count)."""
    if kind not in CONTAINERS:
        return None
    try:
        from ..audio import AudioMeter

        return AudioMeter(kind, 48000, 1)
    except ImportError:
        return None


# -- how to misbehave ------------------------------------------------------------------------------
@dataclass(slots=True)
class Faults:
    """Failure injection. Mutable: a test may change it between sessions (``hang_handshake`` excepted:
    set it before ``start()``, which then turns off the server's handshake timeout)."""

    reject_auth: bool = False  # refuse every handshake as the provider refuses a bad key
    fail_after_finals: int | None = None  # after K final transcripts (0: right after the handshake)...
    fail_code: int = 1011  # ...close with this code and reason...
    fail_reason: str = "simulated failure"
    fail_reset: bool = False  # ...or reset the TCP connection instead
    stall_after_finals: int | None = None  # after K finals stop reading and writing (0: at once)
    hang_handshake: bool = False  # accept TCP, never answer the upgrade request
    ignore_finalize: bool = False
    ignore_close_stream: bool = False


# -- what happened ---------------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class ConnectionRecord:
    """Everything a client did on one connection, and how it ended. Times are ``time.monotonic()``."""

    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]
    opened_at: float
    status: int | None = None  # 101 when upgraded, else the refusal's HTTP status
    audio_bytes: int = 0
    audio_frames: int = 0
    empty_frames: int = 0
    first_audio_at: float | None = None
    last_audio_at: float | None = None
    audio_seconds: float = 0.0  # audio time as the simulator measured it
    control: list[tuple[float, str]] = field(default_factory=list)  # every text frame received
    sent: list[str] = field(default_factory=list)  # every text frame the simulator sent
    finals_sent: int = 0
    close_code: int | None = None  # the first close frame's code (1006: none, the TCP link broke)
    close_reason: str = ""
    closed_by: str | None = None  # "server", "client", or "reset"
    closed_at: float | None = None
    info: dict = field(default_factory=dict)  # provider-specific notes (parsed options, ...)
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def control_types(self) -> list[str]:
        """The ``type`` (or ``message``) of every JSON control message, in order; '?' for others."""
        out = []
        for _, text in self.control:
            try:
                msg = json.loads(text)
            except ValueError:
                out.append("?")
                continue
            out.append(str(msg.get("type", msg.get("message", "?"))) if isinstance(msg, dict) else "?")
        return out


class SessionOver(Exception):
    """Raised inside ``run_session`` when a fault ended the connection."""


# -- the server ------------------------------------------------------------------------------------
class SimulatorServer:
    """A provider simulator on loopback. Subclasses set ``provider`` and implement ``run_session``."""

    provider: ClassVar[str] = "generic"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, script: Script | None = None,
                 faults: Faults | None = None, max_size: int = 2**22) -> None:
        self.host = host
        self._port = port
        self.script = script or Script.from_text(DEFAULT_SCRIPT_TEXT)
        self.faults = faults or Faults()
        self.max_size = max_size
        self.connections: list[ConnectionRecord] = []
        self._server: Server | None = None
        self._records: dict[int, ConnectionRecord] = {}
        self._released: asyncio.Event | None = None  # set at stop: hung handshakes and stalls return

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> "SimulatorServer":
        self._released = asyncio.Event()
        self._server = await serve(
            self._handler, self.host, self._port, process_request=self._process_request,
            process_response=self._process_response, max_size=self.max_size, compression=None,
            open_timeout=None if self.faults.hang_handshake else 10, ping_interval=None)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        assert self._released is not None
        self._released.set()
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> "SimulatorServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL (scheme, host, port); providers append their path."""
        return f"ws://{self.host}:{self._port}"

    async def wait_finished(self, count: int = 1, timeout: float = 5.0) -> list[ConnectionRecord]:
        """Wait until ``count`` connections have ended (refused ones count at once)."""
        async with asyncio.timeout(timeout):
            while True:
                done = [r for r in self.connections if r.finished.is_set()]
                if len(done) >= count:
                    return done
                pending = [r for r in self.connections if not r.finished.is_set()]
                if pending:
                    await pending[0].finished.wait()
                else:
                    await asyncio.sleep(0.01)

    # -- hooks for providers ----------------------------------------------------------------------
    def check_handshake(self, request: Request, record: ConnectionRecord) -> Response | None:
        return None

    def auth_rejection(self, request: Request, record: ConnectionRecord) -> Response:
        return self.http_error(401, "invalid credentials")

    def response_headers(self, record: ConnectionRecord) -> list[tuple[str, str]]:
        """Headers added to the 101 Switching Protocols answer."""
        return []

    async def run_session(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        raise NotImplementedError

    # -- helpers for providers --------------------------------------------------------------------
    @staticmethod
    def http_error(status: int, body: str, headers: Iterable[tuple[str, str]] = (),
                   content_type: str = "text/plain; charset=utf-8") -> Response:
        h = Headers([("Content-Type", content_type), *headers])
        data = body.encode()
        h["Content-Length"] = str(len(data))
        return Response(status, _REASONS.get(status, "Error"), h, data)

    async def receive(self, ws: ServerConnection, record: ConnectionRecord,
                      timeout: float | None = None) -> str | bytes | None:
        """The next frame, recorded; None after ``timeout`` seconds without one."""
        try:
            async with asyncio.timeout(timeout):
                frame = await ws.recv()
        except TimeoutError:
            return None
        now = time.monotonic()
        if isinstance(frame, bytes):
            if frame:
                record.audio_bytes += len(frame)
                record.audio_frames += 1
                if record.first_audio_at is None:
                    record.first_audio_at = now
                record.last_audio_at = now
            else:
                record.empty_frames += 1
        else:
            record.control.append((now, frame))
        return frame

    async def send_text(self, ws: ServerConnection, record: ConnectionRecord, text: str) -> None:
        record.sent.append(text)
        await ws.send(text)

    async def final_sent(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        """Count one final transcript; fire ``fail_after_finals`` / ``stall_after_finals``."""
        record.finals_sent += 1
        await self._check_faults(ws, record)

    async def close(self, ws: ServerConnection, record: ConnectionRecord, code: int, reason: str = "") -> None:
        await _close_draining(ws, code, reason)

    async def reset(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed or unplugged server would."""
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.transport.abort()
        record.closed_by = "reset"

    async def stall(self, ws: ServerConnection | None = None) -> None:
        """Stop reading and writing until the simulator stops, like a hung process: the socket is no
        longer read at all, so TCP back-pressure builds and pings go unanswered."""
        assert self._released is not None
        if ws is not None and ws.transport is not None:
            ws.transport.pause_reading()
        await self._released.wait()
        if ws is not None and ws.transport is not None:
            ws.transport.abort()  # a hung peer never completes a closing handshake: don't wait for one
        raise SessionOver("stalled until the simulator stopped")

    # -- internals --------------------------------------------------------------------------------
    async def _check_faults(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        f = self.faults
        if f.fail_after_finals is not None and record.finals_sent >= f.fail_after_finals:
            if f.fail_reset:
                await self.reset(ws, record)
            else:
                await self.close(ws, record, f.fail_code, f.fail_reason)
            raise SessionOver("failure injected")
        if f.stall_after_finals is not None and record.finals_sent >= f.stall_after_finals:
            await self.stall(ws)

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        record = ConnectionRecord(path=url.path, query=parse_qs(url.query, keep_blank_values=True),
                                  headers=list(request.headers.raw_items()), opened_at=time.monotonic())
        self.connections.append(record)
        self._records[id(connection)] = record
        if self.faults.hang_handshake:
            assert self._released is not None
            await self._released.wait()
            response = self.http_error(503, "simulator stopped")
        elif self.faults.reject_auth:
            response = self.auth_rejection(request, record)
        else:
            response = self.check_handshake(request, record)
        if response is not None:
            self._records.pop(id(connection), None)
            record.status = response.status_code
            record.closed_at = time.monotonic()
            record.finished.set()
        return response

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        record = self._records.get(id(connection))
        if record is not None and response.status_code == 101:
            for name, value in self.response_headers(record):
                response.headers[name] = value

    async def _handler(self, ws: ServerConnection) -> None:
        record = self._records.pop(id(ws))
        record.status = 101
        try:
            await self._check_faults(ws, record)
            await self.run_session(ws, record)
        except (SessionOver, ConnectionClosed):
            pass
        finally:
            if record.closed_by != "reset":
                await _close_draining(ws, 1000, "")  # no-op when already closed
            self._note_close(ws, record)
            record.finished.set()

    @staticmethod
    def _note_close(ws: ServerConnection, record: ConnectionRecord) -> None:
        record.closed_at = time.monotonic()
        if record.closed_by == "reset":
            record.close_code = 1006
            return
        p = ws.protocol
        if p.close_rcvd_then_sent is True or (p.close_rcvd is not None and p.close_sent is None):
            first, record.closed_by = p.close_rcvd, "client"
        elif p.close_sent is not None:
            first, record.closed_by = p.close_sent, "server"
        else:
            first, record.closed_by = None, "client"
        record.close_code = first.code if first is not None else 1006
        record.close_reason = first.reason if first is not None else ""


async def _close_draining(ws: ServerConnection, code: int, reason: str) -> None:
    """Close, reading (and dropping) what the client still sends meanwhile.

    A connection whose incoming queue is full stops reading the socket, so the client's answering close
    frame would wait behind unread audio until ``close_timeout``: drain while the handshake runs.
    """

    async def drain() -> None:
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass

    task = asyncio.ensure_future(drain())
    try:
        await ws.close(code, reason)
    finally:
        await task


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 503: "Service Unavailable"}
