"""The Deepgram simulator over real loopback sockets: conformance with the official SDK, and the adapter.

1. Every frame the simulator emits validates strictly against ``deepgram-sdk``'s own message models
   (no missing field, no wrong type, no key the model does not know).
2. The official SDK client (``DeepgramClient(...).listen.v1.connect``) runs a whole session against it.
3. ``DeepgramAdapter`` runs a session through it with a minimal test-only driver, on asyncio and uvloop.
4. The simulator's handshake checks and failure injection behave as documented.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import struct
import threading
import warnings

import pydantic
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from routeraudio.config import ListenParams
from routeraudio.errors import ProviderError
from routeraudio.events import Raw, Transcript, TurnEnd
from routeraudio.providers.deepgram import DeepgramAdapter
from routeraudio.testing import simulator_class
from routeraudio.testing.base import Faults, Script
from routeraudio.testing.deepgram import NET_0001_REASON, DeepgramSimulator

from .harness import simulator_cli

with warnings.catch_warnings():
    # deepgram-sdk 7.17 imports names websockets 17 deprecates; not ours to fix.
    warnings.simplefilter("ignore", DeprecationWarning)
    from deepgram import DeepgramClient
    from deepgram.core.unchecked_base_model import construct_type
    from deepgram.environment import DeepgramClientEnvironment
    from deepgram.listen.v1 import socket_client as dg_socket
    from deepgram.listen.v1.types import (ListenV1ConfigureFailure, ListenV1Error, ListenV1Metadata,
                                          ListenV1Results, ListenV1SpeechStarted, ListenV1UtteranceEnd)

KEY = "sim-key-123"
MODELS = {"Results": ListenV1Results, "Metadata": ListenV1Metadata, "UtteranceEnd": ListenV1UtteranceEnd,
          "SpeechStarted": ListenV1SpeechStarted, "Error": ListenV1Error,
          "ConfigureFailure": ListenV1ConfigureFailure}
TEXT = "Hello, how are you today? I am calling about my order. It was supposed to arrive on Monday."
SCRIPT = Script.from_text(TEXT, speakers=2)


def run(coro, loop: str = "asyncio", timeout: float = 30.0):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    if loop == "uvloop":
        import uvloop as uvloop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(bounded())
    return asyncio.run(bounded())


def pcm16(seconds: float, rate: int = 16000) -> bytes:
    n = int(seconds * rate)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * 220 * i / rate)) for i in range(n)))


def chunks(data: bytes, size: int):
    return [data[i:i + size] for i in range(0, len(data), size)]


def assert_conforms(text: str) -> str:
    """Validate one simulator frame against the SDK model of its type; return the type."""
    obj = json.loads(text)
    kind = obj["type"]
    model = MODELS[kind]
    validated = model.model_validate(obj, strict=True)
    _no_unknown_keys(validated)
    # and the SDK's own dispatch (what its socket clients do) picks the same class
    assert isinstance(construct_type(type_=dg_socket.V1SocketClientResponse, object_=obj), model)
    return kind


def _no_unknown_keys(value) -> None:
    if isinstance(value, pydantic.BaseModel):
        assert not value.model_extra, f"{type(value).__name__} has keys the SDK does not know: {value.model_extra}"
        for name in type(value).model_fields:
            _no_unknown_keys(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for v in value:
            _no_unknown_keys(v)


async def raw_session(sim: DeepgramSimulator, query: str, audio: list[bytes], controls: dict[int, str] = {},
                      end: str | bytes = '{"type":"CloseStream"}') -> list[str]:
    """Send audio (and controls before chunk i) straight to the simulator; collect every frame."""
    received: list[str] = []
    async with connect(f"{sim.listen_url}?{query}", additional_headers={"Authorization": f"Token {KEY}"}) as ws:
        async def reader():
            try:
                async for frame in ws:
                    received.append(frame)
            except ConnectionClosed:  # a non-1000 close ends the session too
                pass
        task = asyncio.create_task(reader())
        for i, chunk in enumerate(audio):
            if i in controls:
                await ws.send(controls[i])
            await ws.send(chunk)
        await ws.send(end)
        await task
    return received


# -- 1. conformance ---------------------------------------------------------------------------------
def test_every_frame_conforms_to_the_sdk_models():
    async def main():
        kinds: list[str] = []
        async with DeepgramSimulator(api_key=KEY, script=SCRIPT) as sim:
            audio = chunks(pcm16(11.0), 3200)
            q1 = ("model=nova-3&language=en&encoding=linear16&sample_rate=16000&channels=1&punctuate=true"
                  "&smart_format=true&diarize=true&interim_results=true&endpointing=300&utterance_end_ms=1000"
                  "&vad_events=false")
            frames = await raw_session(sim, q1, audio, {15: '{"type":"Finalize"}', 30: '{"type":"KeepAlive"}',
                                                       40: '{"type":"nonsense"}', 41: "not json",
                                                       42: '{"type":"Configure","keyterms":["order"]}'})
            kinds += [assert_conforms(f) for f in frames]
            mulaw = [bytes([0xFF]) * 800] * 110  # 11 s of mu-law silence at 8 kHz
            q2 = "model=nova-3&encoding=mulaw&sample_rate=8000&punctuate=false&interim_results=false"
            frames2 = await raw_session(sim, q2, mulaw)
            kinds += [assert_conforms(f) for f in frames2]
            words2 = [w for f in frames2 if json.loads(f)["type"] == "Results"
                      for w in json.loads(f)["channel"]["alternatives"][0]["words"]]
            assert words2 and not any("punctuated_word" in w or "speaker" in w for w in words2)
            await sim.wait_finished(2)
        return kinds, frames

    kinds, frames = run(main())
    assert {"Results", "UtteranceEnd", "Metadata", "Error", "ConfigureFailure"} <= set(kinds)
    results = [json.loads(f) for f in frames if json.loads(f)["type"] == "Results"]
    assert any(not r["is_final"] for r in results)
    assert any(r["speech_final"] for r in results)
    assert any(r["from_finalize"] for r in results)
    assert json.loads(frames[-1])["type"] == "Metadata"


# -- 2. the official SDK client ---------------------------------------------------------------------
def _sdk_session(url: str, key: str, audio: list[bytes]) -> list:
    env = DeepgramClientEnvironment(base=url.replace("ws://", "http://"), production=url, agent=url, agent_rest=url)
    client = DeepgramClient(api_key=key, environment=env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        listen = client.listen.v1
    received: list = []
    with listen.connect(model="nova-3", encoding="linear16", sample_rate=16000, channels=1,
                        interim_results="true", punctuate="true", smart_format="true", diarize="true",
                        endpointing=300, utterance_end_ms=1000, language="en") as sock:
        def reader():
            for message in sock:  # the SDK's own parsing; unknown messages are logged and skipped
                received.append(message)

        t = threading.Thread(target=reader)
        t.start()
        for chunk in audio:
            sock.send_media(chunk)
        sock.send_keep_alive()
        sock.send_finalize()
        sock.send_close_stream()
        t.join(timeout=15)
        assert not t.is_alive()
    return received


def test_official_sdk_client_runs_a_whole_session(caplog):
    async def main():
        async with DeepgramSimulator(api_key=KEY, script=SCRIPT) as sim:
            received = await asyncio.to_thread(_sdk_session, sim.url, KEY, chunks(pcm16(4.0), 3200))
            (record,) = await sim.wait_finished(1)
        return received, record

    with caplog.at_level(logging.WARNING, logger="deepgram"):
        received, record = run(main())
    assert not [r for r in caplog.records if "unknown" in r.getMessage().lower()]
    assert all(isinstance(m, (ListenV1Results, ListenV1Metadata, ListenV1UtteranceEnd)) for m in received), received
    finals = [m for m in received if isinstance(m, ListenV1Results) and m.is_final]
    words = [w.punctuated_word for m in finals for w in m.channel.alternatives[0].words]
    assert words == ["Hello,", "how", "are", "you", "today?", "I"]  # "am" ends at 4.1 s
    assert {w.speaker for m in finals for w in m.channel.alternatives[0].words} == {0, 1}
    assert isinstance(received[-1], ListenV1Metadata) and received[-1].duration == 4.0
    assert record.status == 101 and record.header("authorization") == f"Token {KEY}"
    assert record.control_types == ["KeepAlive", "Finalize", "CloseStream"]
    assert record.audio_frames == 40 and record.audio_bytes == 128000 and record.audio_seconds == 4.0
    assert (record.close_code, record.closed_by) == (1000, "server")


# -- 3. the adapter over a real socket --------------------------------------------------------------
async def drive(adapter: DeepgramAdapter, audio: list[bytes], *, finalize_before: int | None = None,
                close: bool = True) -> list:
    """A minimal driver: the real one is ``server.session``; this one only wires frames both ways."""
    loop = asyncio.get_running_loop()
    req = adapter.connect_request()
    events: list = []
    async with connect(req.url, additional_headers=list(req.headers)) as ws:
        adapter.receive_open()

        async def pump():
            for frame in adapter.data_to_send():
                await ws.send(frame)
            events.extend(adapter.events_received())

        async def reader():
            try:
                async for frame in ws:
                    adapter.receive_frame(frame)
                    await pump()
                    if adapter.done:
                        return
            except ConnectionClosed:
                pass
            adapter.receive_close(ws.protocol.close_code or 1006, ws.protocol.close_reason or "")
            events.extend(adapter.events_received())

        task = asyncio.create_task(reader())
        for i, chunk in enumerate(audio):
            if i == finalize_before:
                adapter.send_finalize()
            adapter.send_audio(chunk, loop.time())
            adapter.send_audio(b"", loop.time())  # the adapter drops it: Deepgram would end the stream
            await pump()
            if adapter.done:
                break
        if close and not adapter.done:
            adapter.send_close()
            await pump()
        await task
    return events


def params(**kw) -> ListenParams:
    q = {"provider": "deepgram", "encoding": "pcm_s16le", "sample_rate": "16000"}
    q.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in kw.items()})
    return ListenParams.from_query(q)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("partials", [False, True])
def test_adapter_session_through_the_simulator(loop, partials):
    async def main():
        async with DeepgramSimulator(api_key=KEY, script=SCRIPT) as sim:
            a = DeepgramAdapter(params(partial_results=partials, diarize=True), KEY, sim.listen_url)
            events = await drive(a, chunks(pcm16(10.5), 3200), finalize_before=40)
            (record,) = await sim.wait_finished(1)
        return a, events, record

    a, events, record = run(main(), loop)
    assert a.done and a.error is None
    finals = [e for e in events if isinstance(e, Transcript) and not e.is_partial]
    assert " ".join(f.transcript for f in finals) == TEXT
    assert bool([e for e in events if isinstance(e, Transcript) and e.is_partial]) == partials
    assert sum(isinstance(e, TurnEnd) for e in events) == 3
    assert {w.speaker for f in finals for w in f.words} == {"0", "1"}
    assert record.empty_frames == 0 and record.control_types == ["Finalize", "CloseStream"]
    assert record.param("utterance_end_ms") == ("1000" if partials else None)


def test_adapter_raw_mode_through_the_simulator():
    async def main():
        async with DeepgramSimulator(api_key=KEY, script=SCRIPT) as sim:
            a = DeepgramAdapter(params(parse_json=False), KEY, sim.listen_url)
            events = await drive(a, chunks(pcm16(3.0), 3200))
            (record,) = await sim.wait_finished(1)
        return a, events, record

    a, events, record = run(main())
    assert a.done and a.error is None
    assert all(isinstance(e, Raw) for e in events)
    assert [e.data for e in events] == record.sent  # byte for byte what the "provider" sent


def test_adapter_reports_mid_stream_failure_after_the_finals_it_got():
    async def main():
        faults = Faults(fail_after_finals=1, fail_code=1011, fail_reason=NET_0001_REASON)
        async with DeepgramSimulator(api_key=KEY, script=SCRIPT, faults=faults) as sim:
            a = DeepgramAdapter(params(), KEY, sim.listen_url)
            events = await drive(a, chunks(pcm16(10.0), 3200))
        return a, events

    a, events = run(main())
    assert [e.transcript for e in events if isinstance(e, Transcript)] == ["Hello, how are you today?"]
    assert isinstance(a.error, ProviderError) and a.error.provider_code == "NET-0001"
    assert "keep_alive" in str(a.error)


def test_adapter_sees_a_tcp_reset_as_an_abnormal_close():
    async def main():
        async with DeepgramSimulator(api_key=KEY, script=SCRIPT, faults=Faults(fail_after_finals=1, fail_reset=True)) as sim:
            a = DeepgramAdapter(params(), KEY, sim.listen_url)
            events = await drive(a, chunks(pcm16(10.0), 3200))
            (record,) = await sim.wait_finished(1)
        return a, events, record

    a, events, record = run(main())
    assert record.closed_by == "reset" and record.close_code == 1006
    assert isinstance(a.error, ProviderError) and a.error.provider_code == 1006


# -- 4. simulator behaviour -------------------------------------------------------------------------
async def handshake(url: str, headers: dict) -> InvalidStatus | None:
    try:
        async with connect(url, additional_headers=headers):
            return None
    except InvalidStatus as exc:
        return exc


@pytest.mark.parametrize("path,headers,query,status,error", [
    ("/v1/listen", {}, "model=nova-3", 401, "Invalid credentials."),
    ("/v1/listen", {"Authorization": "Token wrong"}, "model=nova-3", 401, "Invalid credentials."),
    ("/v1/listen", {"Authorization": f"Bearer {KEY}"}, "model=nova-3", 401, "Invalid credentials."),
    ("/v2/listen", {"Authorization": f"Token {KEY}"}, "model=nova-3", 404, "No such endpoint"),
    ("/v1/listen", {"Authorization": f"Token {KEY}"}, "language=en", 400, "No model"),
    ("/v1/listen", {"Authorization": f"Token {KEY}"}, "model=nova-3&encoding=linear16", 400, "together"),
    ("/v1/listen", {"Authorization": f"Token {KEY}"}, "model=nova-3&sample_rate=16000", 400, "together"),
    ("/v1/listen", {"Authorization": f"Token {KEY}"}, "model=nova-3&encoding=pcm&sample_rate=8000", 400, "encoding"),
    ("/v1/listen", {"Authorization": f"Token {KEY}"}, "model=nova-3&punctuate=True", 400, "punctuate"),
    ("/v1/listen", {"Authorization": f"Token {KEY}"}, "model=nova-3&interim_results=true&utterance_end_ms=500",
     400, "utterance_end_ms"),
    ("/v1/listen", {"Authorization": f"Token {KEY}"}, "model=nova-3&utterance_end_ms=1000", 400, "interim_results"),
    ("/v1/listen", {"Authorization": f"Token {KEY}"}, "model=nova-3&endpointing=soon", 400, "endpointing"),
    ("/v1/listen", {"Authorization": f"Token {KEY}"}, "model=nova-3&smartformat=true", 400, "smartformat"),
])
def test_handshake_is_checked_like_deepgram(path, headers, query, status, error):
    async def main():
        async with DeepgramSimulator(api_key=KEY) as sim:
            exc = await handshake(f"{sim.url}{path}?{query}", headers)
            (record,) = await sim.wait_finished(1)
        return exc, record

    exc, record = run(main())
    assert exc is not None and exc.response.status_code == status
    assert error in exc.response.headers["dg-error"]
    assert exc.response.headers["dg-request-id"]
    body = json.loads(exc.response.body)
    assert error in body["err_msg"] and body["request_id"] == exc.response.headers["dg-request-id"]
    assert record.status == status and record.path == path


def test_reject_auth_and_accept_any_key():
    async def main():
        async with DeepgramSimulator(api_key=None, faults=Faults(reject_auth=True)) as sim:
            refused = await handshake(f"{sim.listen_url}?model=nova-3", {"Authorization": "Token anything"})
            sim.faults.reject_auth = False
            accepted = await handshake(f"{sim.listen_url}?model=nova-3", {"Authorization": "Token anything"})
            accepted_header = sim.connections[-1]
            await sim.wait_finished(2)
        return refused, accepted, accepted_header

    refused, accepted, record = run(main())
    assert refused.response.status_code == 401 and accepted is None
    assert record.status == 101 and (record.close_code, record.closed_by) == (1000, "client")


def test_net_0001_after_the_inactivity_timeout():
    async def main():
        async with DeepgramSimulator(api_key=KEY, net_timeout=0.3) as sim:
            async with connect(f"{sim.listen_url}?model=nova-3&encoding=linear16&sample_rate=16000",
                               additional_headers={"Authorization": f"Token {KEY}"}) as ws:
                for _ in range(3):  # keep-alives hold the connection open past the timeout...
                    await ws.send('{"type":"KeepAlive"}')
                    await asyncio.sleep(0.15)
                with pytest.raises(ConnectionClosed):  # ...silence does not
                    await ws.recv()
                code, reason = ws.protocol.close_code, ws.protocol.close_reason
            (record,) = await sim.wait_finished(1)
        return code, reason, record

    code, reason, record = run(main())
    assert (code, reason) == (1011, NET_0001_REASON)
    assert (record.close_code, record.closed_by) == (1011, "server")
    assert record.control_types == ["KeepAlive"] * 3


def test_zero_length_frame_ends_the_stream_like_close_stream():
    async def main():
        async with DeepgramSimulator(api_key=KEY, script=SCRIPT) as sim:
            frames = await raw_session(sim, "model=nova-3&encoding=linear16&sample_rate=16000",
                                       chunks(pcm16(3.0), 3200), end=b"")
            (record,) = await sim.wait_finished(1)
        return frames, record

    frames, record = run(main())
    assert json.loads(frames[-1])["type"] == "Metadata"
    assert record.empty_frames == 1 and record.close_code == 1000


def test_ignore_finalize_and_close_stream():
    async def main():
        faults = Faults(ignore_finalize=True, ignore_close_stream=True)
        async with DeepgramSimulator(api_key=KEY, script=SCRIPT, faults=faults, net_timeout=0.3) as sim:
            frames = await raw_session(sim, "model=nova-3&encoding=linear16&sample_rate=16000",
                                       chunks(pcm16(1.6), 3200), {2: '{"type":"Finalize"}'})
            (record,) = await sim.wait_finished(1)
        return frames, record

    frames, record = run(main())
    assert not any(json.loads(f).get("from_finalize") for f in frames)
    assert not any(json.loads(f)["type"] == "Metadata" for f in frames)
    assert record.close_code == 1011  # the session only ended by NET-0001


def test_stall_stops_reading():
    async def main():
        async with DeepgramSimulator(api_key=KEY, faults=Faults(stall_after_finals=0)) as sim:
            ws = await connect(f"{sim.listen_url}?model=nova-3&encoding=linear16&sample_rate=16000",
                               additional_headers={"Authorization": f"Token {KEY}"}, ping_interval=None,
                               write_limit=2**14)
            chunk = bytes(32000)
            try:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(1.0):
                        for _ in range(1000):  # 32 MB: far more than the socket buffers hold
                            await ws.send(chunk)
            finally:
                ws.transport.abort()  # a polite close would wait behind the unsent audio
            await sim.stop()
            return sim.connections[0]

    record = run(main())
    assert record.audio_frames == 0 and record.finished.is_set()


def test_hang_handshake():
    async def main():
        sim = DeepgramSimulator(api_key=KEY, faults=Faults(hang_handshake=True))
        async with sim:
            with pytest.raises(TimeoutError):
                async with connect(f"{sim.listen_url}?model=nova-3", open_timeout=0.3,
                                   additional_headers={"Authorization": f"Token {KEY}"}):
                    pass
        return sim.connections[0]

    record = run(main())
    assert record.status in (None, 503)


def test_container_audio_is_accepted_without_encoding():
    import av as av
    import io

    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        pcm = (np.sin(np.arange(48000 * 3) * 2 * np.pi * 220 / 48000) * 8000).astype(np.int16)
        for i in range(0, len(pcm), 960):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + 960], format="s16", layout="mono")
            frame.sample_rate = 48000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = buf.getvalue()

    async def main():
        async with DeepgramSimulator(api_key=KEY, script=SCRIPT) as sim:
            frames = await raw_session(sim, "model=nova-3&punctuate=true", chunks(data, 1000))
            (record,) = await sim.wait_finished(1)
        return frames, record

    frames, record = run(main())
    assert json.loads(frames[-1])["type"] == "Metadata"
    assert record.audio_bytes == len(data) and record.close_code == 1000
    assert record.audio_seconds == pytest.approx(3.0, abs=0.05)  # measured by routeraudio.audio.AudioMeter
    finals = [json.loads(f) for f in frames if json.loads(f).get("is_final")]
    assert " ".join(f["channel"]["alternatives"][0]["transcript"] for f in finals).strip() == "Hello, how are you today?"


def test_cli_runs_a_simulator():
    secret = "sim-secret-4711"
    with simulator_cli("deepgram", secret) as url:

        async def client():
            async with connect(f"{url}?model=nova-3&encoding=linear16&sample_rate=16000",
                               additional_headers={"Authorization": f"Token {secret}"}) as ws:
                for chunk in chunks(pcm16(3.0), 3200):
                    await ws.send(chunk)
                await ws.send('{"type":"CloseStream"}')
                return [m async for m in ws]

        frames = run(client())
    assert any(json.loads(f).get("is_final") and json.loads(f)["channel"]["alternatives"][0]["transcript"]
               for f in frames)
    assert json.loads(frames[-1])["type"] == "Metadata"
    assert simulator_class("deepgram") is DeepgramSimulator
