"""The router's per-frame path (issue 6): one client frame received, metered/converted, and forwarded
upstream, with stub transports so only our code and websockets' framing are timed.

Baseline in the same run: websockets' sans-I/O ServerProtocol parsing the same frame (the floor any
websockets-based relay pays to receive it) and ClientProtocol sending it on (the floor to forward).
"""

from __future__ import annotations

import asyncio
import base64
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
    up.ws.state = State.OPEN
    s.upstream, s._pending = up, None
    s.adapter.receive_open()
    s.adapter.data_to_send()
    return conn


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
