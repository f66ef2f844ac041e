"""A cheap load generator and provider sink for bench/load.py.

A 2-core machine cannot host the router, 1,000 websockets-library clients and a full simulator at
once: each of those costs tens of µs per frame in Python. These speak just enough WebSocket (RFC
6455 framing, no extensions) over uvloop protocols to cost a few µs per frame, so that the router is
what the measurement sees.

``Sink`` answers the handshake and speaks a minimal subset of a provider's protocol (``deepgram``:
binary audio, Results every second of audio, CloseStream -> Metadata + close; ``speechmatics``:
StartRecognition -> RecognitionStarted, AudioAdded acks, AddTranscript, EndOfStream ->
EndOfTranscript; ``openai``: a Realtime transcription session, session.update read for the format,
base64 audio in input_audio_buffer.append, every second an item committed + its transcription
completed, the closing input_audio_buffer.commit -> an empty item, after which the router closes),
each connection's finals at a phase of its own within the second. It records, per connection, the
cumulative audio bytes received (decoded PCM) with their arrival time, the audio's sample rate as
the router configured it, and the send time of every final. ``Client`` opens a connection, sends
precomputed masked frames on a shared 20 ms ticker, and records send and receive times.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import struct
import time
from urllib.parse import parse_qs, urlsplit

try:  # websockets' C unmasking: OpenAI audio arrives in masked text frames, 1.3 kB per 20 ms
    from websockets.speedups import apply_mask
except ImportError:
    apply_mask = None

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# OpenAI Realtime: base64 can hold neither '"' nor ':', so these markers cannot occur inside the audio
OPENAI_APPEND = b'"input_audio_buffer.append"'
OPENAI_AUDIO = b'"audio"'
OPENAI_FORMATS = {"audio/pcm": (24000, 2), "audio/pcmu": (8000, 1), "audio/pcma": (8000, 1)}  # rate, width


def frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _xor(payload, key)


def _xor(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    k = int.from_bytes((key * (len(data) // 4 + 1))[:len(data)], "big")
    return (int.from_bytes(data, "big") ^ k).to_bytes(len(data), "big")


_unmask = apply_mask or _xor


class FrameReader:
    """Incremental frame parser; yields (opcode, payload) with payload unmasked only when asked."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes, want_payload) -> list[tuple[int, bytes, int]]:
        buf = self.buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            op = b0 & 0x0F
            masked = b1 & 0x80
            ln = b1 & 0x7F
            hdr = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = struct.unpack_from("!H", buf, pos + 2)[0]
                hdr = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = struct.unpack_from("!Q", buf, pos + 2)[0]
                hdr = 10
            if masked:
                hdr += 4
            if n - pos < hdr + ln:
                break
            payload = b""
            if want_payload(op):
                payload = bytes(buf[pos + hdr:pos + hdr + ln])
                if masked:
                    payload = _unmask(payload, bytes(buf[pos + hdr - 4:pos + hdr]))
            out.append((op, payload, ln))
            pos += hdr + ln
        del buf[:pos]
        return out


def _accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


# -- the sink ---------------------------------------------------------------------------------------
class SinkConn(asyncio.Protocol):
    def __init__(self, sink: "Sink") -> None:
        self.sink = sink
        self.head = b""
        self.reader = FrameReader()
        self.open = False
        self.rec = {"key": "", "rx": [], "finals_tx": [], "bytes": 0, "query": {}, "sample_rate": 16000}
        self.bytes_per_s = 32000
        self.next_final = 1.0
        self.seq = 0
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, rest = self.head.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            q = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
            auth = headers.get("authorization", headers.get("x-api-key", ""))
            self.rec["key"] = auth.split()[-1] if auth else ""
            self.rec["query"] = q
            if q.get("encoding") == "mulaw":
                self.bytes_per_s = self.rec["sample_rate"] = int(q.get("sample_rate", 8000))
            elif q.get("sample_rate"):
                self.rec["sample_rate"] = int(q["sample_rate"])
                self.bytes_per_s = self.rec["sample_rate"] * 2
            elif self.sink.protocol == "openai":  # the session's default until session.update says
                self.rec["sample_rate"], self.bytes_per_s = 24000, 48000
            self.transport.write(
                ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Accept: {_accept(headers['sec-websocket-key'])}\r\n\r\n").encode())
            self.open = True
            # Finals every second of audio, at an offset of each connection's own: independent
            # calls do not finish utterances in the same 20 ms, so neither do the simulated ones.
            self.next_final = 1.0 + (len(self.sink.records) * 0.6180339887) % 1.0
            self.sink.records.append(self.rec)
            data = rest
            if not data:
                return
        now = time.monotonic()
        for op, payload, ln in self.reader.feed(data, lambda op: op != 2):
            if op == 2:
                if self.sink.protocol == "speechmatics":
                    self.seq += 1
                    self._text({"message": "AudioAdded", "seq_no": self.seq})
                self._audio(now, ln)
            elif op == 1:
                if OPENAI_APPEND in payload:
                    # Not json.loads: find the base64 and decode it only to count the PCM (and to
                    # refuse garbage: an undecodable append counts nothing, so it shows as lost audio).
                    start = payload.find(b'"', payload.find(OPENAI_AUDIO) + len(OPENAI_AUDIO)) + 1
                    try:
                        n = len(binascii.a2b_base64(payload[start:payload.find(b'"', start)], strict_mode=True))
                    except binascii.Error:
                        n = 0
                    self._audio(now, n)
                else:
                    self._control(json.loads(payload))
            elif op == 8:
                self.transport.write(frame(8, struct.pack("!H", 1000), False))
                self.transport.close()
            elif op == 9:
                self.transport.write(frame(10, payload, False))

    def _audio(self, now: float, n: int) -> None:
        total = self.rec["bytes"] = self.rec["bytes"] + n
        self.rec["rx"].append((now, total))
        if total / self.bytes_per_s >= self.next_final:
            self._final(max(0.0, self.next_final - 1.0), self.next_final)
            self.next_final += 1.0

    def _text(self, *msgs: dict) -> None:
        self.transport.write(b"".join(frame(1, json.dumps(m, separators=(",", ":")).encode(), False)
                                      for m in msgs))

    def _openai_item(self, transcript: str) -> None:
        """One OpenAI item: committed, then its transcript (what its server VAD or a client commit
        produces, without the speech_started/stopped events, the deltas and the item bookkeeping)."""
        self.seq += 1
        item, prev = f"item_bench{self.seq:06d}", (f"item_bench{self.seq - 1:06d}" if self.seq > 1 else None)
        self._text({"type": "input_audio_buffer.committed", "event_id": f"event_c{self.seq}",
                    "previous_item_id": prev, "item_id": item},
                   {"type": "conversation.item.input_audio_transcription.completed",
                    "event_id": f"event_t{self.seq}", "item_id": item, "content_index": 0,
                    "transcript": transcript})

    def _final(self, start: float, end: float) -> None:
        if self.sink.protocol == "deepgram":
            self._text({"type": "Results", "channel_index": [0, 1], "duration": end - start, "start": start,
                        "is_final": True, "speech_final": False, "from_finalize": False,
                        "channel": {"alternatives": [{"transcript": "hello world", "confidence": 0.99, "words": [
                            {"word": "hello", "start": start, "end": start + 0.4, "confidence": 0.99,
                             "punctuated_word": "Hello"},
                            {"word": "world", "start": start + 0.5, "end": end - 0.1, "confidence": 0.99,
                             "punctuated_word": "world."}]}]},
                        "metadata": {"request_id": "bench", "model_uuid": "bench",
                                     "model_info": {"name": "general", "version": "1", "arch": "nova-3"}}})
        elif self.sink.protocol == "openai":
            self._openai_item("Hello world.")
        else:
            self._text({"message": "AddTranscript", "format": "2.9",
                        "metadata": {"transcript": "hello world", "start_time": start, "end_time": end},
                        "results": [
                            {"type": "word", "start_time": start, "end_time": start + 0.4,
                             "alternatives": [{"content": "hello", "confidence": 0.99, "language": "en"}]},
                            {"type": "word", "start_time": start + 0.5, "end_time": end - 0.1,
                             "alternatives": [{"content": "world", "confidence": 0.99, "language": "en"}]}]})
        self.rec["finals_tx"].append(time.monotonic())

    def _control(self, msg: dict) -> None:
        kind = msg.get("type") or msg.get("message")
        if kind == "StartRecognition":
            fmt = msg.get("audio_format") or {}
            if fmt.get("sample_rate"):
                self.rec["sample_rate"] = int(fmt["sample_rate"])
                self.bytes_per_s = self.rec["sample_rate"] * (1 if fmt.get("encoding") == "mulaw" else 2)
            self._text({"message": "RecognitionStarted", "id": "bench", "orchestrator_version": "bench"})
        elif kind == "session.update":  # not answered: the adapter neither waits for nor reads session.updated
            fmt = msg["session"]["audio"]["input"].get("format") or {}
            rate, width = OPENAI_FORMATS[fmt.get("type", "audio/pcm")]
            self.rec["sample_rate"], self.bytes_per_s = rate, rate * width
        elif kind == "input_audio_buffer.commit":
            self._openai_item("")  # the closing commit: the tail since the last final holds no words
        elif kind in ("CloseStream", "EndOfStream"):
            if self.sink.protocol == "deepgram":
                self._text({"type": "Metadata", "transaction_key": "deprecated", "request_id": "bench",
                            "sha256": "0", "created": "2026-01-01T00:00:00.000Z",
                            "duration": self.rec["bytes"] / self.bytes_per_s, "channels": 1})
                self.transport.write(frame(8, struct.pack("!H", 1000), False))
            else:
                self._text({"message": "EndOfTranscript"})


class Sink:
    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.records: list[dict] = []
        self.server = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SinkConn(self), "127.0.0.1", 0, backlog=8192)
        return self.server.sockets[0].getsockname()[1]


# -- the client -------------------------------------------------------------------------------------
class ClientConn(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.opened = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.head = b""
        self.reader = FrameReader()
        self.finals_rx: list[float] = []
        self.close_code: int | None = None
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.opened.set_exception(RuntimeError(head[:200].decode("latin-1")))
                return
            self.opened.set_result(None)
            if not data:
                return
        now = time.monotonic()
        for op, payload, _ in self.reader.feed(data, lambda op: op in (1, 8)):
            if op == 1 and (b'"is_final":true' in payload or b'"type":"transcript"' in payload) \
                    and b'"is_partial":true' not in payload:
                self.finals_rx.append(now)
            elif op == 8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.transport.write(frame(8, payload[:2], True))
                self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)


async def open_client(host: str, port: int, path: str, headers: dict[str, str]) -> ClientConn:
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
           + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: ClientConn(req), host, port)
    await asyncio.wait_for(conn.opened, 60)
    return conn


def masked_frames(frames: list[bytes]) -> list[bytes]:
    """Client frames must be masked; one random key per frame, shared by every stream, is legal."""
    return [frame(2, f, True) for f in frames]


def text_frame(text: str) -> bytes:
    return frame(1, text.encode(), True)


# -- a raw uvloop relay: the floor of the router's own stack ------------------------------------------
class _Pipe(asyncio.Protocol):
    """One side of a byte-for-byte TCP relay: what arrives is written to the peer, nothing parsed."""

    def __init__(self) -> None:
        self.transport = None
        self.peer: "_Pipe | None" = None
        self.early: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.early.append(data)

    def connection_lost(self, exc) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def serve_uvloop_relay(upstream_port: int) -> int:
    """Listen on a free port; relay each connection to 127.0.0.1:upstream_port unchanged."""
    loop = asyncio.get_running_loop()

    def accepted() -> _Pipe:
        down = _Pipe()

        async def connect() -> None:
            try:
                _, up = await loop.create_connection(_Pipe, "127.0.0.1", upstream_port)
            except OSError:
                down.transport.close()
                return
            up.peer, down.peer = down, up
            for data in down.early:
                up.transport.write(data)
            down.early = []

        loop.create_task(connect())
        return down

    server = await loop.create_server(accepted, "127.0.0.1", 0, backlog=8192)
    return server.sockets[0].getsockname()[1]
