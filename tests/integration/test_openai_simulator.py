"""The OpenAI simulator over real loopback sockets: conformance with the official SDK, and end to end.

1. Every frame the simulator emits validates strictly against the ``openai`` SDK's event models (no
   missing field, no wrong type, no key the model does not know), and the SDK's own parser picks the
   same class; every message the adapter sends validates against the SDK's client-event models.
2. The official SDK client (``AsyncOpenAI(websocket_base_url=...).realtime.connect``) runs a whole
   transcription session against the simulator, unpatched.
3. The simulator's handshake and session checks behave as documented.
4. The real router, client -> router -> simulator, on asyncio and uvloop: every encoding path,
   partials, raw mode, failures, and OpenAI's quirks (deltas per item, commit on close, live models).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import pydantic
import fixtures_opus
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from openai import AsyncOpenAI
from openai._models import construct_type_unchecked
from openai.types.realtime import (ConversationItemAdded, ConversationItemDone,
                                   ConversationItemInputAudioTranscriptionCompletedEvent,
                                   ConversationItemInputAudioTranscriptionDeltaEvent, InputAudioBufferAppendEvent,
                                   InputAudioBufferClearedEvent, InputAudioBufferCommitEvent,
                                   InputAudioBufferCommittedEvent, InputAudioBufferSpeechStartedEvent,
                                   InputAudioBufferSpeechStoppedEvent, RealtimeErrorEvent,
                                   RealtimeTranscriptionSessionCreateRequest,
                                   RealtimeTranscriptionSessionCreateResponse, SessionCreatedEvent,
                                   SessionUpdateEvent, SessionUpdatedEvent)
from openai.types.realtime.realtime_server_event import RealtimeServerEvent
from routeraudio.config import ListenParams
from routeraudio.providers.openai import OpenAIAdapter
from routeraudio.testing import simulator_class
from routeraudio.testing.base import Faults, Script
from routeraudio.testing.openai import INVALID_KEY_REASON, TURN_DETECTION_REFUSED, OpenAISimulator

from .harness import LOOPS, PROVIDER_KEY, listen_url, pcm_chunks, router, run, session, simulator_cli

KEY = PROVIDER_KEY
HDR = {"x-api-key": PROVIDER_KEY}  # bring-your-own-key: the router forwards it to the simulator
MODELS = {"session.created": SessionCreatedEvent, "session.updated": SessionUpdatedEvent,
          "input_audio_buffer.speech_started": InputAudioBufferSpeechStartedEvent,
          "input_audio_buffer.speech_stopped": InputAudioBufferSpeechStoppedEvent,
          "input_audio_buffer.committed": InputAudioBufferCommittedEvent,
          "input_audio_buffer.cleared": InputAudioBufferClearedEvent,
          "conversation.item.added": ConversationItemAdded, "conversation.item.done": ConversationItemDone,
          "conversation.item.input_audio_transcription.delta": ConversationItemInputAudioTranscriptionDeltaEvent,
          "conversation.item.input_audio_transcription.completed":
              ConversationItemInputAudioTranscriptionCompletedEvent,
          "error": RealtimeErrorEvent}
TEXT = "Hello there. How are you today? Fine thanks."
SCRIPT = Script.from_text(TEXT, start=0.2, word_s=0.25, gap_s=0.05, pause_s=0.8)  # speech ends at 4.05 s
WORDS = [w.text for w in SCRIPT]


def _no_unknown_keys(value, skip=()) -> None:
    if isinstance(value, pydantic.BaseModel):
        assert not value.model_extra, f"{type(value).__name__} has keys the SDK does not know: {value.model_extra}"
        for name in type(value).model_fields:
            if name not in skip:
                _no_unknown_keys(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for v in value:
            _no_unknown_keys(v)


def assert_server_event(text: str) -> str:
    """Validate one simulator frame against the SDK model of its type; return the type."""
    obj = json.loads(text)
    kind = obj["type"]
    model = MODELS[kind]
    validated = model.model_validate(obj, strict=True)
    if kind in ("session.created", "session.updated"):
        # the SDK types the session as the *request* shape; the server sends the full session object
        _no_unknown_keys(validated, skip=("session",))
        _no_unknown_keys(RealtimeTranscriptionSessionCreateResponse.model_validate(obj["session"], strict=True))
    else:
        _no_unknown_keys(validated)
    assert isinstance(construct_type_unchecked(value=obj, type_=RealtimeServerEvent), model)  # the SDK's parse
    return kind


def assert_client_event(text: str) -> str:
    """Validate one adapter message against the SDK's client-event models; return the type."""
    obj = json.loads(text)
    model = {"session.update": SessionUpdateEvent, "input_audio_buffer.append": InputAudioBufferAppendEvent,
             "input_audio_buffer.commit": InputAudioBufferCommitEvent}[obj["type"]]
    validated = model.model_validate(obj, strict=True)
    _no_unknown_keys(validated)
    if obj["type"] == "session.update":
        assert isinstance(validated.session, RealtimeTranscriptionSessionCreateRequest)
    return obj["type"]


def pcm24(seconds: float) -> list[bytes]:
    return pcm_chunks(seconds, rate=24000, frame_ms=100)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def raw_session(sim: OpenAISimulator, messages: list, *, key: str = KEY, query: str = "intent=transcription",
                      wait_for: int = 0) -> tuple[list[str], int | None, str]:
    """Send JSON messages (dicts, or str as is) straight to the simulator; collect what it sends until
    ``wait_for`` completed events arrived after the last message (or the socket closed)."""
    received: list[str] = []
    async with connect(f"{sim.listen_url}?{query}", additional_headers={"Authorization": f"Bearer {key}"},
                       max_size=None) as ws:
        async def reader():
            try:
                async for frame in ws:
                    received.append(frame)
            except ConnectionClosed:
                pass
        task = asyncio.create_task(reader())
        for m in messages:
            await ws.send(m if isinstance(m, str) else json.dumps(m))
        async with asyncio.timeout(5):
            while sum('transcription.completed"' in f for f in received) < wait_for and not task.done():
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await ws.close()
        await task
        return received, ws.close_code, ws.close_reason or ""


def update(**input_) -> dict:
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": input_}}}


def appends(seconds: float, width: int = 2, rate: int = 24000) -> list[dict]:
    chunk = bytes(int(rate * width * 0.1))
    return [{"type": "input_audio_buffer.append", "audio": b64(chunk)} for _ in range(int(seconds * 10))]


COMMIT = {"type": "input_audio_buffer.commit", "event_id": "client_commit"}


# -- 1. conformance ---------------------------------------------------------------------------------
def test_every_simulator_frame_conforms_to_the_sdk_models():
    async def main():
        async with OpenAISimulator(api_key=KEY, script=SCRIPT) as sim:
            vad = update(format={"type": "audio/pcm", "rate": 24000},
                         transcription={"model": "gpt-transcribe", "languages": ["en"]},
                         turn_detection={"type": "server_vad", "silence_duration_ms": 500, "prefix_padding_ms": 300},
                         noise_reduction={"type": "near_field"})
            vad["session"]["include"] = ["item.input_audio_transcription.logprobs"]
            f1, _, _ = await raw_session(sim, [vad, *appends(2.0), COMMIT, *appends(3.0), COMMIT, COMMIT,
                                               {"type": "input_audio_buffer.clear"}, "not json",
                                               {"type": "response.create"},
                                               {"type": "input_audio_buffer.append", "audio": "***"},
                                               update(transcription={"model": "gpt-live-transcribe"})],
                                         wait_for=3)
            live = update(format={"type": "audio/pcmu"}, transcription={"model": "gpt-realtime-whisper"},
                          turn_detection=None)
            f2, _, _ = await raw_session(sim, [live, *appends(2.5, width=1, rate=8000), COMMIT], wait_for=1)
            whisper = update(transcription={"model": "whisper-1", "language": "en"})
            f3, _, _ = await raw_session(sim, [whisper, *appends(5.0)], wait_for=2)
            await sim.wait_finished(3)
        return f1, f2, f3

    f1, f2, f3 = run("asyncio", main)
    kinds = [assert_server_event(f) for f in f1 + f2 + f3]
    assert set(kinds) == set(MODELS)
    errors = [json.loads(f)["error"] for f in f1 if json.loads(f)["type"] == "error"]
    assert [e["code"] for e in errors] == ["input_audio_buffer_commit_empty", "invalid_json", "invalid_value",
                                           "invalid_value", "invalid_value"]
    assert errors[0]["event_id"] == "client_commit" and errors[-1]["message"] == TURN_DETECTION_REFUSED
    completed = [json.loads(f) for f in f1 + f2 + f3 if "transcription.completed" in f]
    assert [c["transcript"] for c in completed] == [
        "Hello there.", "How", "are you today?", "Fine thanks.", "",  # VAD, commit at 2 s, VAD, VAD, commit at 5 s
        "Hello there. How are you",  # gpt-realtime-whisper: one commit
        "Hello there.", "How are you today?", "Fine thanks."]  # whisper-1 with the default VAD
    assert completed[0]["logprobs"] and completed[0]["languages"] == [{"code": "en"}]
    assert completed[5]["usage"]["type"] == completed[6]["usage"]["type"] == "duration"
    assert completed[0]["usage"]["type"] == "tokens"
    live_kinds = [json.loads(f)["type"] for f in f2]
    assert live_kinds.index("conversation.item.input_audio_transcription.delta") < live_kinds.index(
        "input_audio_buffer.committed")  # gpt-realtime-whisper streams before the commit
    assert "input_audio_buffer.speech_started" not in live_kinds


@pytest.mark.parametrize("kw", [{}, {"encoding": "pcm_mulaw", "sample_rate": 8000}, {"endpointing": 0},
                                {"model": "gpt-live-transcribe", "language": "pt-BR"},
                                {"model": "gpt-4o-mini-transcribe", "language": "de", "endpointing": 20}])
def test_adapter_messages_conform_to_the_sdk_models(kw):
    q = {"provider": "openai", "encoding": "pcm_s16le", "sample_rate": "16000", **{k: str(v) for k, v in kw.items()}}
    a = OpenAIAdapter(ListenParams.from_query(q), KEY)
    a.send_audio(b"\x00\x01" * 480, 0.0)
    a.receive_open()
    a.send_finalize()
    a.send_audio(b"\x00\x01" * 480, 0.0)
    a.send_close()
    assert [assert_client_event(f) for f in a.data_to_send()] == [
        "session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.append",
        "input_audio_buffer.commit"]


# -- 2. the official SDK client ---------------------------------------------------------------------
def test_official_sdk_client_runs_a_whole_session(caplog):
    async def main():
        async with OpenAISimulator(api_key=KEY, script=SCRIPT) as sim:
            client = AsyncOpenAI(api_key=KEY, websocket_base_url=sim.url + "/v1", max_retries=0)
            received, pending = [], None
            async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
                await conn.session.update(session={"type": "transcription", "audio": {"input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "gpt-transcribe", "languages": ["en"]},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}})
                for chunk in pcm24(3.8):
                    await conn.input_audio_buffer.append(audio=b64(chunk))
                await conn.input_audio_buffer.commit(event_id="last")  # "Fine" has been heard, "thanks" not
                async with asyncio.timeout(5):
                    async for event in conn:
                        received.append(event)
                        if event.type == "input_audio_buffer.committed" and len(
                                [e for e in received if e.type == "input_audio_buffer.committed"]) == 3:
                            pending = event.item_id
                        if event.type.endswith("transcription.completed") and event.item_id == pending:
                            break
            (record,) = await sim.wait_finished(1)
        return received, record

    with caplog.at_level(logging.DEBUG, logger="openai"):
        received, record = run("asyncio", main)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(type(e) in MODELS.values() for e in received), [type(e) for e in received]
    assert [e.transcript for e in received if e.type.endswith("completed")] == ["Hello there.", "How are you today?",
                                                                                 "Fine"]
    assert not [e for e in received if e.type == "error"]
    assert record.path == "/v1/realtime" and record.query == {"intent": ["transcription"]}
    assert record.header("authorization") == f"Bearer {KEY}"
    assert record.control_types[0] == "session.update" and record.control_types[-1] == "input_audio_buffer.commit"
    assert record.audio_seconds == pytest.approx(3.8) and (record.close_code, record.closed_by) == (1000, "client")


# -- 3. simulator behaviour -------------------------------------------------------------------------
@pytest.mark.parametrize("path,query,status,text", [
    ("/v1/listen", "intent=transcription", 404, "Invalid URL"),
    ("/v1/realtime", "", 400, "Missing required parameter: 'model'"),
    ("/v1/realtime", "intent=conversation", 400, "intent"),
])
def test_handshake_refusals(path, query, status, text):
    async def main():
        async with OpenAISimulator(api_key=KEY) as sim:
            try:
                async with connect(f"{sim.url}{path}?{query}", additional_headers={"Authorization": f"Bearer {KEY}"}):
                    return None
            except InvalidStatus as exc:
                return exc

    exc = run("asyncio", main)
    assert exc is not None and exc.response.status_code == status
    assert text in json.loads(exc.response.body)["error"]["message"]


@pytest.mark.parametrize("auth", [None, f"Token {KEY}", "Bearer wrong", "Bearer "])
def test_bad_keys_are_refused_in_band_with_3000(auth):
    async def main():
        async with OpenAISimulator(api_key=KEY) as sim:
            async with connect(f"{sim.listen_url}?intent=transcription",
                               additional_headers={"Authorization": auth} if auth else {}) as ws:
                frames = []
                with pytest.raises(ConnectionClosed):
                    while True:
                        frames.append(await ws.recv())
                return frames, ws.close_code, ws.close_reason

    frames, code, reason = run("asyncio", main)
    assert (code, reason) == (3000, INVALID_KEY_REASON)
    (err,) = frames
    assert assert_server_event(err) == "error" and json.loads(err)["error"]["code"] == "invalid_api_key"


def test_reject_auth_fault_and_any_key():
    async def main():
        async with OpenAISimulator(api_key=None, faults=Faults(reject_auth=True)) as sim:
            refused = await raw_session(sim, [], key="anything")
            sim.faults.reject_auth = False
            accepted = await raw_session(sim, [], key="anything")
        return refused, accepted

    refused, accepted = run("asyncio", main)
    assert refused[1] == 3000 and accepted[1] == 1000
    assert json.loads(accepted[0][0])["type"] == "session.created"


def test_model_in_the_url_makes_a_conversation_session():
    async def main():
        async with OpenAISimulator(api_key=KEY) as sim:
            frames, _, _ = await raw_session(sim, [update(transcription={"model": "gpt-transcribe"})],
                                             query="model=gpt-realtime")
        return [json.loads(f) for f in frames]

    created, err = run("asyncio", main)
    assert created["session"]["type"] == "realtime"
    assert err["error"]["code"] == "invalid_model"


def test_ignore_close_stream_drops_commits():
    async def main():
        async with OpenAISimulator(api_key=KEY, script=SCRIPT, faults=Faults(ignore_close_stream=True)) as sim:
            frames, _, _ = await raw_session(sim, [*appends(1.0), COMMIT])
        return [json.loads(f)["type"] for f in frames]

    kinds = run("asyncio", main)
    assert "input_audio_buffer.committed" not in kinds and "error" not in kinds


def test_cli_runs_the_simulator():
    with simulator_cli("openai", "sk-cli") as url:

        async def client():
            async with connect(f"{url}?intent=transcription", additional_headers={"Authorization": "Bearer sk-cli"},
                               max_size=None) as ws:
                await ws.send(json.dumps(update(transcription={"model": "gpt-transcribe"})))
                for m in appends(3.0):
                    await ws.send(json.dumps(m))
                out = []
                async with asyncio.timeout(5):
                    async for m in ws:
                        out.append(json.loads(m))
                        if out[-1]["type"].endswith("completed"):
                            return out

        frames = run("asyncio", client)
    assert frames[-1]["transcript"] == "Hello, how are you today?"  # the CLI's default script
    assert simulator_class("openai") is OpenAISimulator


# -- 4. end to end through the router ---------------------------------------------------------------
def sim(**kw) -> OpenAISimulator:
    kw.setdefault("script", SCRIPT)
    return OpenAISimulator(api_key=PROVIDER_KEY, **kw)


def _ogg_opus(seconds: float) -> bytes:
    return fixtures_opus.ogg_opus(fixtures_opus.speech_like(seconds))  # the project's Opus fixtures


def _audio(encoding: str, seconds: float) -> tuple[dict, list[bytes]]:
    if encoding == "pcm_s16le":
        return {"encoding": encoding, "sample_rate": 16000}, pcm_chunks(seconds)
    if encoding == "pcm_mulaw":
        return {"encoding": encoding, "sample_rate": 8000}, [b"\xff" * 160] * int(seconds * 50)
    data = _ogg_opus(seconds)
    return {"encoding": encoding, "sample_rate": 48000}, [data[i:i + 2000] for i in range(0, len(data), 2000)]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_mulaw", "ogg_opus"])
def test_full_session_per_encoding(loop, encoding, tmp_path):
    fmt, chunks = _audio(encoding, 6.0)

    async def main():
        async with sim() as s, router(tmp_path, {"openai": s.listen_url}) as r:
            out = await session(listen_url(r, provider="openai", **fmt), chunks, headers=HDR)
            return out, s.connections[0]

    out, rec = run(loop, main)
    assert out.code == 1000 and not out.errors, out.messages
    assert [m["transcript"] for m in out.finals] == ["Hello there.", "How are you today?", "Fine thanks."]
    assert all(m["words"] is None and "is_partial" not in m for m in out.finals)
    assert out.types == ["transcript", "turn_end"] * 3  # each turn_end right after its final
    for a, b in zip(out.finals, out.finals[1:]):
        assert a["end_time"] <= b["start_time"]
    assert out.finals[0]["start_time"] == pytest.approx(0.0) and out.finals[0]["end_time"] == pytest.approx(1.25)
    assert rec.header("authorization") == f"Bearer {PROVIDER_KEY}" and rec.param("intent") == "transcription"
    assert rec.param("model") is None
    assert all(assert_client_event(text) for _, text in rec.control)  # what the adapter really sent
    upd = json.loads(rec.control[0][1])["session"]["audio"]["input"]
    if encoding == "pcm_mulaw":
        assert upd["format"] == {"type": "audio/pcmu"} and rec.audio_bytes == 6 * 8000  # forwarded unchanged
    else:
        assert upd["format"] == {"type": "audio/pcm", "rate": 24000}  # converted to 24 kHz PCM
        assert rec.audio_seconds == pytest.approx(6.0, abs=0.05)
    assert rec.control_types[-1] == "input_audio_buffer.commit"  # close_stream -> commit of the rest
    assert (rec.close_code, rec.closed_by) == (1000, "client")


@pytest.mark.parametrize("loop", LOOPS)
def test_quirk_deltas_per_item_and_commit_on_close(loop, tmp_path):
    """Deltas are per item and incremental: each partial rebuilds its item's text and never carries a
    finished item's words; the stream ends mid-sentence, and the close commits the rest of the buffer,
    whose item is the last final before the 1000 close."""
    async def main():
        async with sim() as s, router(tmp_path, {"openai": s.listen_url}) as r:
            out = await session(listen_url(r, provider="openai", encoding="pcm_s16le", sample_rate=16000,
                                           partial_results=True), pcm_chunks(3.8), headers=HDR)
            return out, s.connections[0]

    out, rec = run(loop, main)
    assert out.code == 1000 and not out.errors, out.messages
    finals = [m["transcript"] for m in out.finals]
    assert finals == ["Hello there.", "How are you today?", "Fine"]  # "thanks" ends at 4.05 s: never sent
    assert out.types.count("turn_end") == 2  # the close commit ends no turn
    partials, seen = [], []
    for m in out.messages:
        if m["type"] == "transcript" and m["is_partial"]:
            partials.append(m["transcript"])
        elif m["type"] == "transcript":
            seen.append(partials)
            partials = []
    assert seen == [["Hello", "Hello there."], ["How", "How are", "How are you", "How are you today?"], ["Fine"]]
    assert rec.control_types.count("input_audio_buffer.commit") == 1 and rec.control_types[-1].endswith("commit")
    assert out.finals[-1]["end_time"] == pytest.approx(3.8, abs=0.01)  # a client commit ends with the audio


def test_quirk_live_model_finals_only_on_finalize_and_close(tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"openai": s.listen_url}) as r:
            url = listen_url(r, provider="openai", encoding="pcm_s16le", sample_rate=16000, partial_results=True,
                             model="gpt-live-transcribe")
            out = await session(url, pcm_chunks(6.0), headers=HDR, controls={140: '{"type":"finalize"}'})
            return out, s.connections[0]

    out, rec = run("uvloop", main)
    assert out.code == 1000 and not out.errors, out.messages
    assert [m["transcript"] for m in out.finals] == ["Hello there. How are you today?", "Fine thanks."]
    assert "turn_end" not in out.types
    assert json.loads(rec.control[0][1])["session"]["audio"]["input"]["turn_detection"] is None
    first_partials = [m["transcript"] for m in out.transcripts[:3]]
    assert first_partials == ["Hello", "Hello there.", "Hello there. How"]  # streamed while audio arrives



def test_raw_mode(tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"openai": s.listen_url}) as r:
            out = await session(listen_url(r, provider="openai", encoding="pcm_s16le", sample_rate=16000,
                                           parse_json=False), pcm_chunks(5.0), headers=HDR, raw_text=True)
            return out, s.connections[0]

    out, rec = run("uvloop", main)
    assert out.code == 1000
    assert out.messages == rec.sent[:len(out.messages)]  # byte for byte what the "provider" sent, in order
    assert json.loads(out.messages[-1])["type"].endswith("transcription.completed")  # the close commit's item
    assert sum('transcription.completed"' in m for m in out.messages) == 4


@pytest.mark.parametrize("reset", [False, True])
def test_provider_failure_mid_stream(reset, tmp_path):
    faults = Faults(fail_after_finals=1, fail_code=1011, fail_reason="The server had an error", fail_reset=reset)

    async def main():
        async with sim(faults=faults) as s, router(tmp_path, {"openai": s.listen_url}) as r:
            return await session(listen_url(r, provider="openai", encoding="pcm_s16le", sample_rate=16000),
                                 pcm_chunks(6.0), headers=HDR)

    out = run("uvloop", main)
    assert out.code == 4040
    assert [m["transcript"] for m in out.finals] == ["Hello there."]
    (err,) = out.errors
    assert out.messages[-1] is err and err["code"] == 4040 and err["provider"] == "openai"
    if reset:
        assert err["provider_code"] == 1006
    else:  # OpenAI's error event comes before its close: its words reach the client
        assert (err["provider_code"], err["provider_message"]) == ("server_error", "The server had an error")


@pytest.mark.parametrize("headers,query,code,text", [
    pytest.param({"x-api-key": "sk-wrong"}, {}, "invalid_api_key", "refused the API key"),
    (HDR, {"model": "whisper-2"}, "invalid_value", "transcription.model"),
    (HDR, {"model": "gpt-4o-transcribe", "language": "english"}, "invalid_value", "language"),
])
def test_openai_refusals_reach_the_client(headers, query, code, text, tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"openai": s.listen_url}) as r:
            return await session(listen_url(r, provider="openai", encoding="pcm_s16le", sample_rate=16000, **query),
                                 pcm_chunks(1.0), headers=headers)

    out = run("uvloop", main, timeout=3.0)
    assert out.code == 4040 and not out.finals
    (err,) = out.errors
    assert err["provider_code"] == code and text in err["error"]


def test_provider_ignoring_the_close_commit_hits_the_finalize_deadline(tmp_path):
    async def main():
        async with sim(faults=Faults(ignore_close_stream=True)) as s, router(
                tmp_path, {"openai": s.listen_url}, finalize_timeout=0.5) as r:
            return await session(listen_url(r, provider="openai", encoding="pcm_s16le", sample_rate=16000),
                                 pcm_chunks(2.0), headers=HDR)

    out = run("uvloop", main)
    assert out.code == 4040 and [m["transcript"] for m in out.finals] == ["Hello there."]
    assert "did not finish" in out.errors[0]["error"]


def test_adapter_over_a_socket_sees_the_in_band_key_refusal():
    """The adapter alone (the driver gap above aside): OpenAI's error event, then its 3000 close."""
    async def main():
        async with sim() as s:
            a = OpenAIAdapter(ListenParams.from_query({"provider": "openai", "encoding": "pcm_s16le",
                                                       "sample_rate": "24000"}), "sk-wrong", s.listen_url)
            req = a.connect_request()
            ws = await connect(req.url, additional_headers=list(req.headers))
            a.receive_open()
            a.send_audio(bytes(4800), 0.0)
            try:
                for frame in a.data_to_send():
                    await ws.send(frame)
                async for frame in ws:
                    a.receive_frame(frame)
            except ConnectionClosed:
                pass
            await ws.wait_closed()
            a.receive_close(ws.close_code, ws.close_reason)
        return a

    a = run("asyncio", main)
    assert a.done and a.error.provider_code == "invalid_api_key" and "refused the API key" in str(a.error)
