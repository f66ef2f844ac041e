"""The Gradium simulator over real loopback sockets: conformance, the official SDK, and the router.

1. Every frame the simulator emits validates strictly against models hand-written from Gradium's
   documented message list (the ``gradium`` SDK has none for server messages); every message the
   adapter sends validates against the SDK's ``STTSetup`` and equals what the SDK's own client sends.
2. The official SDK client (``gradium.client.GradiumClient``, its ``stt_realtime`` and ``stt_stream``)
   runs whole sessions against it; its ``base_url`` takes a loopback URL, so nothing is patched.
3. The router runs full sessions through it (``harness``), on asyncio and uvloop, per encoding; with
   partials, raw frames, a failure mid-stream, and the Gradium quirk: text trailing ``flushed``.
4. The simulator's setup checks and failure injection behave as documented.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
from typing import Literal

import pydantic
import pytest
import typing_extensions
from pydantic import BaseModel, ConfigDict
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from routeraudio.config import ListenParams
from routeraudio.providers.gradium import GradiumAdapter
from routeraudio.testing import simulator_class
from routeraudio.testing.base import Faults, Script
from routeraudio.testing.gradium import GradiumSimulator

from .harness import LOOPS, PROVIDER_KEY, listen_url, pcm_chunks, router, run, session, simulator_cli

KEY = PROVIDER_KEY
HDR = {"x-api-key": KEY}
SCRIPT_TEXT = "Hello there. How are you today? Fine thanks."
WORDS = ["Hello", "there.", "How", "are", "you", "today?", "Fine", "thanks."]


def script(text: str = SCRIPT_TEXT, **kw) -> Script:
    kw = {"start": 0.2, "word_s": 0.25, "gap_s": 0.05, "pause_s": 1.5, **kw}
    return Script.from_text(text, **kw)


def sim(**kw) -> GradiumSimulator:
    kw.setdefault("script", script())
    return GradiumSimulator(api_key=KEY, **kw)


# -- models from the documented message list (docs.gradium.ai stt-websocket, gradium-rs protocol.rs) --
class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Ready(_Msg):
    type: Literal["ready"]
    request_id: str
    model_name: str
    sample_rate: int
    frame_size: int
    delay_in_frames: int
    text_stream_names: list[str]


class Text(_Msg):
    type: Literal["text"]
    text: str
    start_s: float
    stream_id: int | None = None


class EndText(_Msg):
    type: Literal["end_text"]
    stop_s: float
    stream_id: int | None = None


class VadPrediction(_Msg):
    horizon_s: float
    inactivity_prob: float = pydantic.Field(ge=0.0, le=1.0)


class Step(_Msg):
    type: Literal["step"]
    vad: list[VadPrediction]
    step_idx: int
    step_duration_s: float
    total_duration_s: float


class Flushed(_Msg):
    type: Literal["flushed"]
    flush_id: int | str


class EndOfStream(_Msg):
    type: Literal["end_of_stream"]


class Error(_Msg):
    type: Literal["error"]
    message: str
    code: int


SERVER = {m.model_fields["type"].annotation.__args__[0]: m
          for m in (Ready, Text, EndText, Step, Flushed, EndOfStream, Error)}

INPUT_FORMATS = Literal["pcm", "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000",
                        "wav", "opus", "ulaw_8000", "mulaw_8000", "alaw_8000"]


class SetupIn(_Msg):
    type: Literal["setup"]
    model_name: str
    input_format: INPUT_FORMATS
    json_config: dict | str | None = None


class AudioIn(_Msg):
    type: Literal["audio"]
    audio: str


class FlushIn(_Msg):
    type: Literal["flush"]
    flush_id: int


class EndOfStreamIn(_Msg):
    type: Literal["end_of_stream"]


CLIENT = {"setup": SetupIn, "audio": AudioIn, "flush": FlushIn, "end_of_stream": EndOfStreamIn}


def assert_server_frame(text: str) -> str:
    obj = json.loads(text)
    SERVER[obj["type"]].model_validate(obj)
    return obj["type"]


# -- 1. conformance ---------------------------------------------------------------------------------
def params(**kw) -> ListenParams:
    q = {"provider": "gradium", "encoding": "pcm_s16le", "sample_rate": "16000"}
    q.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in kw.items()})
    return ListenParams.from_query(q)


@pytest.mark.parametrize("kw", [{}, {"encoding": "pcm_mulaw", "sample_rate": 8000}, {"encoding": "ogg_opus",
                                "sample_rate": 48000}, {"encoding": "mp3", "sample_rate": 44100, "language": "ja"}])
def test_adapter_messages_conform_to_the_sdk(kw):
    from gradium import speech
    from gradium.stream import Stt

    a = GradiumAdapter(params(**kw), KEY, "ws://127.0.0.1:9/api/speech/asr")
    a.receive_open()
    a.send_audio(b"\x01\x02\x03\x04", 0.0)
    a.send_finalize()
    a.send_close()
    frames = [json.loads(f) for f in a.data_to_send()]
    for f in frames:
        CLIENT[f["type"]].model_validate(f)
    setup, audio, flush, flush2, eos = frames
    sdk_setup = {k: v for k, v in setup.items() if k != "type"}
    # The SDK's STTSetup is a typing.TypedDict, which pydantic only takes on 3.12+: the same fields and
    # types, rebuilt as a typing_extensions one that forbids keys the SDK does not know.
    sdk_model = typing_extensions.TypedDict("STTSetup", dict(speech.STTSetup.__annotations__), total=False)
    sdk_model.__pydantic_config__ = ConfigDict(extra="forbid")
    pydantic.TypeAdapter(sdk_model).validate_python(sdk_setup, strict=True)
    assert audio == speech._encode_audio_chunk(b"\x01\x02\x03\x04")  # the SDK's own audio message

    class Recorder:  # what the SDK's realtime client puts on the wire for flush and end of stream
        def __init__(self):
            self.sent = []

        async def send_json(self, msg):
            self.sent.append(msg)

    stt = Stt(client=None)
    stt._ws = Recorder()
    asyncio.run(stt.send_flush(1))
    asyncio.run(stt.send_eos())
    assert [flush, eos] == stt._ws.sent and flush2 == {"type": "flush", "flush_id": 2}


async def raw_session(sim: GradiumSimulator, setup: dict, audio: list[bytes], controls: dict[int, str] = {},
                      end: str | None = '{"type":"end_of_stream"}', headers: dict = HDR) -> list[str]:
    """Setup, audio (controls before chunk i), end; every frame received until the close."""
    received: list[str] = []
    async with connect(sim.listen_url, additional_headers=headers) as ws:
        async def reader():
            try:
                async for frame in ws:
                    received.append(frame)
            except ConnectionClosed:
                pass

        task = asyncio.create_task(reader())
        await ws.send(json.dumps(setup))
        try:
            for i, chunk in enumerate(audio):
                if i in controls:
                    await ws.send(controls[i])
                await ws.send(json.dumps({"type": "audio", "audio": base64.b64encode(chunk).decode()}))
            if end is not None:
                await ws.send(end)
        except ConnectionClosed:
            pass
        await task
    return received


def test_every_frame_conforms_to_the_documented_models():
    async def main():
        async with sim() as s:
            pcm = b"".join(pcm_chunks(6.0))
            frames = await raw_session(
                s, {"type": "setup", "model_name": "default", "input_format": "pcm_16000",
                    "json_config": json.dumps({"language": "en", "delay_in_frames": 12})},
                [pcm[i:i + 3200] for i in range(0, len(pcm), 3200)],
                {20: '{"type":"flush","flush_id":1}', 40: '{"type":"flush","flush_id":"two"}'})
            mulaw = await raw_session(s, {"type": "setup", "model_name": "default", "input_format": "ulaw_8000"},
                                      [b"\xff" * 800] * 30)
            bad = await raw_session(s, {"type": "setup", "model_name": "default", "input_format": "pcm"},
                                    [b"\0\0" * 100], {0: '{"type":"rewind"}'})
            records = await s.wait_finished(3)
        return frames, mulaw, bad, records

    frames, mulaw, bad, records = run("asyncio", main)
    kinds = [assert_server_frame(f) for f in frames + mulaw + bad]
    assert {"ready", "text", "end_text", "step", "flushed", "end_of_stream", "error"} <= set(kinds)
    objs = [json.loads(f) for f in frames]
    assert objs[0]["type"] == "ready" and objs[0]["delay_in_frames"] == 12
    assert objs[-1] == {"type": "end_of_stream"}
    assert [o["flush_id"] for o in objs if o["type"] == "flushed"] == [1, "two"]
    assert " ".join(o["text"] for o in objs if o["type"] == "text") == SCRIPT_TEXT
    texts = [o for o in objs if o["type"] in ("text", "end_text")]
    assert [o["type"] for o in texts] == ["text", "end_text"] * len(WORDS)  # end_text closes each text
    steps = [o for o in objs if o["type"] == "step"]
    assert [o["step_idx"] for o in steps] == list(range(len(steps))) and len(steps) == round(6.0 / 0.08)
    assert [json.loads(f)["type"] for f in mulaw][-1] == "end_of_stream"
    assert sum(json.loads(f)["type"] == "step" for f in mulaw) == 37  # 3 s of mu-law at 8 kHz
    assert json.loads(bad[-1]) == {"type": "error", "message": "unknown message type 'rewind'", "code": 1008}
    assert [r.close_code for r in records] == [1000, 1000, 1008]
    assert records[0].audio_seconds == pytest.approx(6.0, abs=0.01)
    assert records[0].control_types == ["setup", "flush", "flush", "end_of_stream"]


# -- 2. the official SDK client ---------------------------------------------------------------------
def test_official_sdk_clients_run_whole_sessions():
    import numpy as np
    from gradium.client import GradiumClient

    pcm24 = (np.sin(np.arange(24000 * 4) * 2 * np.pi * 220 / 24000) * 8000).astype(np.int16)

    async def main():
        async with sim() as s:
            client = GradiumClient(base_url=f"http://127.0.0.1:{s.port}/api/", api_key=KEY)
            realtime = []
            async with client.stt_realtime(model_name="default", input_format="pcm",
                                           json_config={"language": "en"}) as stt:
                for i in range(0, len(pcm24), 1920):
                    await stt.send_audio(pcm24[i:i + 1920])
                await stt.send_flush(1)
                await stt.send_eos()
                async for msg in stt:
                    realtime.append(msg)
            stream = await client.stt_stream({"model_name": "default", "input_format": "pcm"},
                                             _chunks(pcm24.tobytes(), 3840))
            texts = [t async for t in stream.iter_text()]
            records = await s.wait_finished(2)
        return realtime, texts, stream.request_id, records

    realtime, texts, request_id, records = run("asyncio", main)
    for msg in realtime:
        SERVER[msg["type"]].model_validate(msg)
    kinds = [m["type"] for m in realtime]
    assert kinds[0] == "ready" and kinds[-1] == "end_of_stream" and "flushed" in kinds
    assert [m["text"] for m in realtime if m["type"] == "text"] == WORDS[:6]  # "Fine" ends after 4 s
    assert [t.text for t in texts] == WORDS[:6] and texts[0].start_s == 0.2
    assert request_id in records[1].info["request_ids"]
    for r in records:
        assert r.header("x-api-key") == KEY and r.header("x-api-source").startswith("python-client/")
        assert (r.close_code, r.closed_by) == (1000, "server") and r.audio_seconds == 4.0
    assert records[0].control_types == ["setup", "flush", "end_of_stream"]
    assert json.loads(records[0].control[0][1])["json_config"] == '{"language": "en"}'  # the SDK stringifies


async def _chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


# -- 3. through the router ------------------------------------------------------------------------
def words_of(out) -> list[str]:
    return [w["text"] for m in out.finals for w in (m["words"] or [])]


def _encoded(encoding: str, seconds: float) -> bytes:
    import av
    import numpy as np

    rate = 48000
    signal = (0.3 * np.sin(2 * np.pi * 300 * np.arange(int(rate * seconds)) / rate) * 32767).astype(np.int16)
    buf = io.BytesIO()
    # Ogg pages of 100 ms, as a streaming recorder writes them (ffmpeg's default is 1 s per page)
    options = {"page_duration": "100000"} if encoding == "ogg_opus" else {}
    with av.open(buf, "w", format={"ogg_opus": "ogg", "webm": "webm"}[encoding], options=options) as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(signal.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()


def _audio(encoding: str, rate: int, seconds: float) -> tuple[list[bytes], float]:
    """Chunks of ~0.1 s and the pace that sends them at about 10x real time."""
    if encoding == "pcm_s16le":
        return pcm_chunks(seconds, rate=rate, frame_ms=100), 0.01
    if encoding == "pcm_mulaw":
        return [b"\xd5\x55" * (rate // 20)] * int(seconds * 10), 0.01
    data = _encoded(encoding, seconds)
    n = max(1, len(data) // int(seconds * 10))
    return [data[i:i + n] for i in range(0, len(data), n)], 0.01


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("encoding,rate,fmt", [("pcm_s16le", 16000, "pcm_16000"), ("pcm_mulaw", 8000, "ulaw_8000"),
                                               ("ogg_opus", 48000, "opus"), ("webm", 48000, "pcm_24000")])
def test_full_session_per_encoding(loop, encoding, rate, fmt, tmp_path):
    chunks, pace = _audio(encoding, rate, 7.0)

    async def main():
        async with sim() as s, router(tmp_path, {"gradium": s.listen_url}) as r:
            out = await session(listen_url(r, provider="gradium", encoding=encoding, sample_rate=rate),
                                chunks, headers=HDR, pace=pace)
            return out, s.connections[0]

    out, rec = run(loop, main)
    assert out.code == 1000, out.messages
    assert not out.errors
    assert words_of(out) == WORDS  # every word once, in order, as finals, before the 1000 close
    assert [m["transcript"] for m in out.finals] == ["Hello there.", "How are you today?", "Fine thanks."]
    for a, b in zip(out.finals, out.finals[1:]):
        assert a["end_time"] <= b["start_time"]
    assert out.types == ["transcript", "turn_end"] * 3  # the VAD ends each sentence's turn
    assert "is_partial" not in out.finals[0] and out.finals[0]["words"][0]["speaker"] is None
    assert rec.header("x-api-key") == KEY
    assert rec.info["setup"]["input_format"] == fmt
    assert rec.control_types[0] == "setup" and rec.control_types[-2:] == ["flush", "end_of_stream"]
    assert rec.control_types.count("flush") == 4  # three VAD endpoints and the close
    assert rec.audio_seconds == pytest.approx(7.0, abs=0.05)


@pytest.mark.parametrize("loop", LOOPS)
def test_partials_punctuation_and_diarize(loop, tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"gradium": s.listen_url}) as r:
            url = listen_url(r, provider="gradium", encoding="pcm_s16le", sample_rate=16000,
                             partial_results=True, diarize=True)
            on = await session(url, pcm_chunks(7.0, frame_ms=100), headers=HDR, pace=0.01)
            off = await session(listen_url(r, provider="gradium", encoding="pcm_s16le", sample_rate=16000,
                                           punctuate=False, endpointing=0), pcm_chunks(7.0, frame_ms=100),
                                headers=HDR, pace=0.01)
            return on, off

    on, off = run(loop, main)
    assert on.code == off.code == 1000
    partials = [m for m in on.transcripts if m["is_partial"]]
    assert [m["transcript"] for m in partials][:2] == ["Hello", "Hello there."]
    assert all(m["is_partial"] is False for m in on.finals) and words_of(on) == WORDS
    assert all(w["speaker"] is None for m in on.finals for w in m["words"])  # no diarization at Gradium
    assert on.types.count("turn_end") == 3
    # punctuation stripped; endpointing=0: no turn ends, one final at the end
    assert [m["transcript"] for m in off.finals] == ["Hello there How are you today Fine thanks"]
    assert "turn_end" not in off.types and all("is_partial" not in m for m in off.transcripts)


def test_raw_mode_forwards_provider_frames(tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"gradium": s.listen_url}) as r:
            out = await session(listen_url(r, provider="gradium", encoding="pcm_s16le", sample_rate=16000,
                                           parse_json=False), pcm_chunks(3.0, frame_ms=100), headers=HDR,
                                raw_text=True)
            return out, s.connections[0]

    out, rec = run("uvloop", main)
    assert out.code == 1000
    assert out.messages == rec.sent  # byte for byte the simulator's frames, in order
    assert json.loads(out.messages[0])["type"] == "ready" and json.loads(out.messages[-1])["type"] == "end_of_stream"
    assert rec.control_types == ["setup", "end_of_stream"]


@pytest.mark.parametrize("loop", LOOPS)
def test_provider_failure_mid_stream(loop, tmp_path):
    async def main():
        faults = Faults(fail_after_finals=1, fail_code=1011, fail_reason="worker crashed")
        async with sim(faults=faults) as s, router(tmp_path, {"gradium": s.listen_url}) as r:
            out = await session(listen_url(r, provider="gradium", encoding="pcm_s16le", sample_rate=16000),
                                pcm_chunks(7.0, frame_ms=100), headers=HDR, pace=0.01)
            return out, s.connections[0]

    out, rec = run(loop, main)
    assert out.code == 4040, out.messages
    assert [m["transcript"] for m in out.finals] == ["Hello there."]  # the final before the failure...
    assert out.types[-1] == "error" and out.types.count("error") == 1  # ...then exactly one error frame
    err = out.errors[0]
    assert (err["code"], err["provider"], err["provider_code"], err["provider_message"]) == (
        4040, "gradium", 1011, "worker crashed")
    assert json.loads(rec.sent[-1]) == {"type": "error", "message": "worker crashed", "code": 1011}
    assert rec.close_code == 1011


@pytest.mark.parametrize("loop", LOOPS)
def test_flushed_followed_by_trailing_text(loop, tmp_path):
    """Gradium's quirk: text can arrive after ``flushed``; it belongs to the flushed segment's final."""
    words = "one two three four five six"

    async def main():
        s = sim(script=script(words, start=0.1, word_s=0.3, pause_s=0.5), trailing_words=2, trailing_delay_s=0.02)
        async with s, router(tmp_path, {"gradium": s.listen_url}) as r:
            # finalize after 1.2 s: "one two three" are heard (three ends at 1.05); no VAD endpoint mid-speech
            out = await session(listen_url(r, provider="gradium", encoding="pcm_s16le", sample_rate=16000,
                                           partial_results=True), pcm_chunks(3.0, frame_ms=100), headers=HDR,
                                controls={12: json.dumps({"type": "finalize"})}, pace=0.01)
            return out, s.connections[0]

    out, rec = run(loop, main)
    assert out.code == 1000, out.messages
    assert [m["transcript"] for m in out.finals] == ["one two three", "four five six"]  # nothing lost or split
    assert "turn_end" not in out.types  # a client finalize is not a turn end
    sent = [json.loads(f) for f in rec.sent]
    i = next(i for i, m in enumerate(sent) if m["type"] == "flushed")
    assert [m.get("text") for m in sent[i + 1:i + 5]] == ["two", None, "three", None]  # trailing text
    first = out.messages.index(out.finals[0])
    assert [m["transcript"] for m in out.messages[:first] if m.get("is_partial")][-1] == "one two three"


def test_wrong_provider_key_is_a_provider_error(tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"gradium": s.listen_url}) as r:
            return await session(listen_url(r, provider="gradium", encoding="pcm_s16le", sample_rate=16000),
                                 pcm_chunks(0.3), headers={"x-api-key": "not-the-key"})

    out = run("uvloop", main)
    assert out.code == 4040 and out.errors[0]["provider_code"] == 1008
    assert out.errors[0]["provider_message"] == "invalid API key" and "check the API key" in out.errors[0]["error"]


# -- 4. simulator behaviour -------------------------------------------------------------------------
SETUP = {"type": "setup", "model_name": "default", "input_format": "pcm"}


@pytest.mark.parametrize("first,headers,error", [
    (SETUP, {}, "missing API key"),
    (SETUP, {"Authorization": f"Bearer {KEY}"}, "missing API key"),  # Gradium's header is x-api-key
    (SETUP, {"x-api-key": "wrong"}, "invalid API key"),
    ({"type": "audio", "audio": ""}, HDR, "first message must be a setup"),
    ({**SETUP, "input_format": "flac"}, HDR, "unsupported input_format"),
    ({**SETUP, "json_config": {"language": "ja"}}, HDR, "unsupported language"),
    ({**SETUP, "json_config": {"delay_in_frames": 9}}, HDR, "delay_in_frames"),
    ({**SETUP, "json_config": "{not json"}, HDR, "json_config is not valid JSON"),
    ({**SETUP, "json_config": {"temp": 2}}, HDR, "temp must be"),
    ({**SETUP, "sample_rate": 16000}, HDR, "unknown setup field"),
    ({**SETUP, "close_ws_on_eos": "yes"}, HDR, "close_ws_on_eos"),
])
def test_setup_is_checked_like_gradium(first, headers, error):
    async def main():
        async with sim() as s:
            frames = await raw_session(s, first, [b"\0\0" * 10], end=None, headers=headers)
            (record,) = await s.wait_finished(1)
        return frames, record

    frames, record = run("asyncio", main)
    (frame,) = frames
    msg = json.loads(frame)
    Error.model_validate(msg)
    assert msg["code"] == 1008 and error in msg["message"]
    assert (record.status, record.close_code, record.closed_by) == (101, 1008, "server")


@pytest.mark.parametrize("later,error", [
    ('{"type":"audio","audio":"***"}', "audio must be base64"),
    ('{"type":"audio","audio":"AAAA","extra":1}', "audio must be base64"),
    (b"\x00\x01", "JSON objects"),
    ('{"type":"flush"}', "integer flush_id"),
    (json.dumps(SETUP), "already received"),
])
def test_protocol_violations_after_setup(later, error):
    async def main():
        async with sim() as s, connect(s.listen_url, additional_headers=HDR) as ws:
            await ws.send(json.dumps(SETUP))
            await ws.send(later)
            frames = []
            with pytest.raises(ConnectionClosed):
                while True:
                    frames.append(await ws.recv())
        return frames, ws.close_code

    frames, code = run("asyncio", main)
    assert json.loads(frames[0])["type"] == "ready"
    assert error in json.loads(frames[-1])["message"] and code == 1008


def test_wrong_path_is_refused_at_the_upgrade():
    async def main():
        async with sim() as s:
            with pytest.raises(InvalidStatus) as exc:
                async with connect(s.url + "/api/speech/tts", additional_headers=HDR):
                    pass
        return exc.value.response.status_code

    assert run("asyncio", main) == 404


def test_reject_auth_and_any_key():
    async def main():
        async with GradiumSimulator(api_key=None, faults=Faults(reject_auth=True)) as s:
            refused = await raw_session(s, SETUP, [], headers={"x-api-key": "anything"})
            s.faults.reject_auth = False
            accepted = await raw_session(s, SETUP, [], headers={"x-api-key": "anything"})
            no_key = await raw_session(s, SETUP, [], headers={})
        return refused, accepted, no_key

    refused, accepted, no_key = run("asyncio", main)
    assert json.loads(refused[0]) == {"type": "error", "message": "API key is revoked or expired", "code": 1008}
    assert [json.loads(f)["type"] for f in accepted] == ["ready", "end_of_stream"]
    assert "missing API key" in json.loads(no_key[0])["message"]


def test_browser_token_and_reusable_socket():
    async def main():
        async with sim() as s, connect(f"{s.listen_url}?token={KEY}") as ws:
            out = []
            for n in range(2):  # close_ws_on_eos=false: a second request on the same socket
                await ws.send(json.dumps({**SETUP, "close_ws_on_eos": n == 1}))
                await ws.send(json.dumps({"type": "audio", "audio": base64.b64encode(bytes(9600)).decode()}))
                await ws.send('{"type":"end_of_stream"}')
                async for f in ws:
                    out.append(json.loads(f)["type"])
                    if out[-1] == "end_of_stream":
                        break
            await ws.wait_closed()
            return out, ws.close_code, s.connections[0]

    kinds, code, record = run("asyncio", main)
    assert kinds == ["ready", "step", "step", "end_of_stream"] * 2 and code == 1000
    assert len(record.info["request_ids"]) == 2


def test_wav_and_opus_input_are_measured():
    import numpy as np

    pcm = (np.sin(np.arange(16000 * 2) / 10) * 5000).astype(np.int16).tobytes()
    wav = (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt "
           + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
           + b"data" + struct.pack("<I", len(pcm)) + pcm)
    ogg = _encoded("ogg_opus", 2.0)

    async def main():
        async with sim() as s:
            await raw_session(s, {**SETUP, "input_format": "wav"}, [wav[i:i + 1000] for i in range(0, len(wav), 1000)])
            await raw_session(s, {**SETUP, "input_format": "opus"}, [ogg[i:i + 500] for i in range(0, len(ogg), 500)])
            bad = await raw_session(s, {**SETUP, "input_format": "opus"}, [b"not an ogg stream at all" * 10])
            return await s.wait_finished(3), bad

    (wav_rec, ogg_rec, bad_rec), bad = run("asyncio", main)
    assert wav_rec.audio_seconds == pytest.approx(2.0) and ogg_rec.audio_seconds == pytest.approx(2.0, abs=0.03)
    assert "invalid audio for input_format opus" in json.loads(bad[-1])["message"] and bad_rec.close_code == 1008


def test_ignore_finalize_and_close_stream_and_stall():
    async def main():
        faults = Faults(ignore_finalize=True, ignore_close_stream=True)
        async with sim(faults=faults) as s:
            async with connect(s.listen_url, additional_headers=HDR) as ws:
                await ws.send(json.dumps(SETUP))
                await ws.send('{"type":"flush","flush_id":3}')
                await ws.send('{"type":"end_of_stream"}')
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.3):
                        while True:
                            assert json.loads(await ws.recv())["type"] == "ready"
        async with sim(faults=Faults(stall_after_finals=1)) as s:
            chunks = pcm_chunks(3.0, frame_ms=100)
            async with connect(s.listen_url, additional_headers=HDR) as ws:
                await ws.send(json.dumps({**SETUP, "input_format": "pcm_16000"}))
                for c in chunks[:12]:
                    await ws.send(json.dumps({"type": "audio", "audio": base64.b64encode(c).decode()}))
                await ws.send('{"type":"flush","flush_id":1}')
                got = []
                with pytest.raises(TimeoutError):  # after the final's grace the simulator hangs
                    async with asyncio.timeout(1.0):
                        async for f in ws:
                            got.append(json.loads(f)["type"])
                for c in chunks[12:]:  # no longer read: the audio stays in the socket buffers
                    await ws.send(json.dumps({"type": "audio", "audio": base64.b64encode(c).decode()}))
                await asyncio.sleep(0.1)
                record = s.connections[0]
                ws.transport.abort()
            return got, record

    got, record = run("asyncio", main)
    assert "flushed" in got and got[-1] != "end_of_stream"
    assert record.finals_sent == 1 and record.audio_frames == 12


def test_cli_runs_the_simulator():
    secret = "sim-secret-4711"
    with simulator_cli("gradium", secret) as url:

        async def client():
            async with connect(url, additional_headers={"x-api-key": secret}) as ws:
                await ws.send(json.dumps(SETUP))
                pcm = bytes(48000 * 4)
                for i in range(0, len(pcm), 3840):
                    chunk = base64.b64encode(pcm[i:i + 3840]).decode()
                    await ws.send(json.dumps({"type": "audio", "audio": chunk}))
                await ws.send('{"type":"end_of_stream"}')
                return [json.loads(m) async for m in ws]

        frames = run("asyncio", client)
    assert any(f["type"] == "text" for f in frames) and frames[-1]["type"] == "end_of_stream"
    assert simulator_class("gradium") is GradiumSimulator
