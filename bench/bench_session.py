"""The router's per-frame paths (issue 6), with stub transports so only our code and the framing are
timed: one client audio frame received, metered/converted and forwarded upstream; and one provider
final (a Deepgram Results message) received, mapped to the unified format and sent to the client.

Baselines in the same run: websockets' sans-I/O protocols doing only the framing of the same
traffic (ServerProtocol parsing the client frame and ClientProtocol sending it on; ClientProtocol
parsing the provider's text frame and ServerProtocol sending a text frame back), the floor any
websockets-based relay pays before doing anything with the audio or the JSON.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import tempfile

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from routeraudio.config import ServerConfig
from routeraudio.server.app import ClientConnection, Router
from routeraudio.server.upstream import UpstreamConnection


class StubTransport:
    def write(self, data):
        pass

    def is_closing(self):
        return False

    def can_write_eof(self):
        return True

    def write_eof(self):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_write_buffer_size(self):
        return 0

    def set_write_buffer_limits(self, **kw):
        pass

    def close(self):
        pass

    def abort(self):
        pass


PROFILES = {
    "mulaw8k_native": ("pcm_mulaw", 8000, 1, 160),
    "pcm16k_native": ("pcm_s16le", 16000, 1, 640),
    "pcm48k_stereo_downmix": ("pcm_s16le", 48000, 2, 3840),
}


def _session(loop, encoding, rate, channels):
    router = Router(ServerConfig(data_dir=tempfile.mkdtemp(), pace_lead_seconds=0,
                                 provider_keys={"deepgram": "k"},
                                 provider_urls={"deepgram": "ws://127.0.0.1:9/v1/listen"}))
    conn = ClientConnection(router)
    conn.connection_made(StubTransport())
    key = base64.b64encode(os.urandom(16)).decode()
    conn.data_received(
        (f"GET /v1/listen?provider=deepgram&encoding={encoding}&sample_rate={rate}&channels={channels} HTTP/1.1\r\n"
         f"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
         "Sec-WebSocket-Version: 13\r\nx-api-key: byok\r\n\r\n").encode())
    s = conn.session
    s._connect_task.cancel()
    up = UpstreamConnection(s.adapter.connect_request(), "deepgram")
    up.transport = StubTransport()
    request = up.ws.connect()
    up.ws.send_request(request)
    up.ws.data_to_send()
    accept = base64.b64encode(hashlib.sha1(request.headers["Sec-WebSocket-Key"].encode()
                                           + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
    up.ws.receive_data(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
    up.ws.events_received()
    s.upstream, s._pending = up, None
    s.adapter.receive_open()
    s.adapter.data_to_send()
    up.attach(s._on_upstream_message, s._on_upstream_closed, s._on_upstream_writable, s._on_pong)
    return conn


def _results(start: float) -> str:
    """A Deepgram final of two words, as the load harness's sink sends it."""
    end = start + 1.0
    return json.dumps({
        "type": "Results", "channel_index": [0, 1], "duration": 1.0, "start": start, "is_final": True,
        "speech_final": False, "from_finalize": False,
        "channel": {"alternatives": [{"transcript": "hello world", "confidence": 0.99, "words": [
            {"word": "hello", "start": start, "end": start + 0.4, "confidence": 0.99, "punctuated_word": "Hello"},
            {"word": "world", "start": start + 0.5, "end": end - 0.1, "confidence": 0.99,
             "punctuated_word": "world."}]}]},
        "metadata": {"request_id": "bench", "model_uuid": "bench",
                     "model_info": {"name": "general", "version": "1", "arch": "nova-3"}}}, separators=(",", ":"))


@pytest.mark.parametrize("profile", list(PROFILES))
def test_router_frame_path(benchmark, profile):
    encoding, rate, channels, size = PROFILES[profile]

    async def run():  # the router's objects live on a running loop, as in the server
        conn = _session(asyncio.get_running_loop(), encoding, rate, channels)
        frame = Frame(Opcode.BINARY, b"\x55" * size).serialize(mask=True, extensions=[])
        benchmark.pedantic(conn.data_received, args=(frame,), rounds=200, iterations=100, warmup_rounds=5)

    asyncio.run(run())


def test_baseline_websockets_receive_and_forward(benchmark):
    server = ServerProtocol(state=State.OPEN)  # parsers start in frame mode, as after a handshake
    client = ClientProtocol(parse_uri("ws://127.0.0.1/"), state=State.OPEN)
    frame = Frame(Opcode.BINARY, b"\x55" * 160).serialize(mask=True, extensions=[])

    def relay():
        server.receive_data(frame)
        events = server.events_received()
        assert len(events) == 1
        client.send_binary(events[0].data)
        client.data_to_send()
        server.data_to_send()

    benchmark.pedantic(relay, rounds=200, iterations=100, warmup_rounds=5)


def test_router_final_path(benchmark):
    async def run():
        conn = _session(asyncio.get_running_loop(), "pcm_mulaw", 8000, 1)
        frame = Frame(Opcode.TEXT, _results(0.0).encode()).serialize(mask=False, extensions=[])
        benchmark.pedantic(conn.session.upstream.data_received, args=(frame,), rounds=100, iterations=100,
                           warmup_rounds=5)

    asyncio.run(run())


def test_baseline_websockets_final_receive_and_send(benchmark):
    client = ClientProtocol(parse_uri("ws://127.0.0.1/"), state=State.OPEN)
    server = ServerProtocol(state=State.OPEN)
    frame = Frame(Opcode.TEXT, _results(0.0).encode()).serialize(mask=False, extensions=[])

    def relay():
        client.receive_data(frame)
        events = client.events_received()
        assert len(events) == 1
        server.send_text(events[0].data)
        server.data_to_send()
        client.data_to_send()

    benchmark.pedantic(relay, rounds=100, iterations=100, warmup_rounds=5)
