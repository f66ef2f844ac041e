"""The AssemblyAI simulator over real loopback sockets: conformance with the official SDK, and the router.

1. Every frame the simulator emits validates strictly against ``assemblyai``'s own message models (no
   key they do not know beyond the documented ``utterance``), and every query / control message the
   adapter sends is what the SDK's models accept and its client sends.
2. The official SDK client (``AsyncRealTimeTranscriber``) runs a whole session against it; no patching:
   the SDK takes ``api_host="ws://host:port"``.
3. The real router, end to end (``harness``), per encoding on asyncio and uvloop, with partials, raw
   mode, finalize (padded remainder, times mapped back), a mid-stream failure, refusals, and the quirk:
   the double end of turn with ``format_turns``.
4. The simulator's own checks (chunk duration, speech_model, auth header...) and failure injection.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import fixtures_opus
from routeraudio.config import ListenParams
from routeraudio.providers.assemblyai import AssemblyAIAdapter
from routeraudio.testing import simulator_class
from routeraudio.testing.assemblyai import AssemblyAISimulator
from routeraudio.testing.base import Faults, Script

from .harness import LOOPS, PROVIDER_KEY, listen_url, pcm_chunks, router, run, session, simulator_cli


def go(loop: str, fn, *args, **kw):
    """``harness.run`` with keyword arguments for the coroutine function."""
    return run(loop, functools.partial(fn, **kw), *args)

import assemblyai  # noqa: E402,F401  - a declared test dependency: fail, never skip
from assemblyai.streaming.v3 import (AsyncRealTimeTranscriber, BeginEvent, RealTimeEvents,  # noqa: E402
                                     RealTimeParameters, RealTimeTranscriberOptions, SessionConfiguration,
                                     TerminationEvent, TurnEvent, Word)
from assemblyai.streaming.v3._base import _BaseStreamingClient, _build_headers, _dump_model_json  # noqa: E402
from assemblyai.streaming.v3.models import ErrorEvent, ForceEndpoint, KeepAlive, TerminateSession  # noqa: E402

TEXT = "Hello there. How are you today? Fine thanks."
SCRIPT = Script.from_text(TEXT, start=0.2, word_s=0.25, gap_s=0.05, pause_s=0.8, speakers=2)
AUDIO_S = 5.0  # the last word ends at 4.05 s; its end of turn is due by 4.55 s
HEADERS = {"Authorization": PROVIDER_KEY}
US = "universal-streaming-english"
MODELS = {"Begin": BeginEvent, "Turn": TurnEvent, "Termination": TerminationEvent, "Error": ErrorEvent}
#: keys the docs' message sequences show beyond the SDK's models
DOCUMENTED_EXTRAS = {"Turn": {"utterance"}}
CONTROL_MODELS = {"ForceEndpoint": ForceEndpoint, "KeepAlive": KeepAlive, "Terminate": TerminateSession}


def assert_conforms(text: str) -> dict:
    """Validate one simulator frame against the SDK model of its type; return it."""
    obj = json.loads(text)
    model = MODELS[obj["type"]]
    # Begin.expires_at is Unix seconds on the wire (docs) and a datetime in the SDK: only lax mode converts.
    event = model.model_validate(obj, strict=model is not BeginEvent)
    assert set(obj) <= set(model.model_fields) | DOCUMENTED_EXTRAS.get(obj["type"], set()), obj
    if isinstance(event, TurnEvent):
        for w in obj["words"]:
            assert set(w) <= set(Word.model_fields), w
    if isinstance(event, BeginEvent) and "configuration" in obj:
        assert set(obj["configuration"]) <= set(SessionConfiguration.model_fields)
    assert isinstance(_BaseStreamingClient._parse_message(obj), model)  # the SDK's own dispatch agrees
    return obj


def assert_sdk_control(text: str) -> str:
    obj = json.loads(text)
    model = CONTROL_MODELS[obj["type"]]
    assert text == _dump_model_json(model.model_validate(obj, strict=True))  # byte for byte the SDK's
    return obj["type"]


def assert_sdk_query(query: dict[str, list[str]]) -> RealTimeParameters:
    """The adapter's query: only parameters the SDK knows, values its models accept."""
    flat = {k: v[0] for k, v in query.items()}
    assert set(flat) <= set(RealTimeParameters.model_fields), flat
    decoded = {k: json.loads(v) if k in ("language_codes", "keyterms_prompt") else v for k, v in flat.items()}
    return RealTimeParameters.model_validate(decoded)


def pcm_100ms(seconds: float, rate: int = 16000) -> list[bytes]:
    return pcm_chunks(seconds, rate=rate, frame_ms=100)


async def raw_session(sim: AssemblyAISimulator, query: str, audio: list[bytes], controls: dict[int, str] | None = None,
                      end: str | None = '{"type":"Terminate"}', headers: dict | None = None,
                      path: str = "/v3/ws") -> tuple[list[str], int | None, str]:
    """Talk to the simulator directly; every frame it sends until it closes, and the close."""
    received: list[str] = []
    async with connect(f"{sim.url}{path}?{query}", additional_headers=HEADERS if headers is None else headers) as ws:
        async def reader():
            try:
                async for frame in ws:
                    received.append(frame)
            except ConnectionClosed:
                pass

        task = asyncio.create_task(reader())
        try:
            for i, chunk in enumerate(audio):
                if controls and i in controls:
                    await ws.send(controls[i])
                await ws.send(chunk)
            if end is not None:
                await ws.send(end)
        except ConnectionClosed:
            pass
        await task
    return received, ws.close_code, ws.close_reason or ""


# -- 1. conformance ---------------------------------------------------------------------------------
def test_every_frame_conforms_to_the_sdk_models():
    async def main():
        frames = []
        async with AssemblyAISimulator(api_key=PROVIDER_KEY, script=SCRIPT) as sim:
            q1 = (f"speech_model={US}&sample_rate=16000&encoding=pcm_s16le&format_turns=true&speaker_labels=true"
                  "&language_detection=true&min_turn_silence=400&max_turn_silence=500")
            got, code, _ = await raw_session(sim, q1, pcm_100ms(AUDIO_S), {
                12: '{"type":"ForceEndpoint"}', 20: '{"type":"KeepAlive"}',
                25: '{"type":"UpdateConfiguration","max_turn_silence":600,"keyterms_prompt":["order"]}'})
            frames += got
            assert code == 1000
            q2 = urlencode({"speech_model": "universal-3-5-pro", "sample_rate": 8000, "encoding": "pcm_mulaw",
                            "language_codes": '["en"]'})
            got2, code2, _ = await raw_session(sim, q2, [bytes([0xFF]) * 800] * 50)
            frames += got2
            assert code2 == 1000
            broken = [(q2, [bytes(100)], None), (q2, [], '{"type":"Flush"}'), ("sample_rate=1", [], None)]
            for query, audio, end in broken:  # 3007 (12.5 ms), 3006 (message type), 3006 (no speech_model)
                got3, _, _ = await raw_session(sim, query, audio, end=end)
                frames += got3
            await sim.wait_finished(5)
        return [assert_conforms(f) for f in frames]

    objs = run("asyncio", main)
    kinds = [o["type"] for o in objs]
    assert {"Begin", "Turn", "Termination", "Error"} <= set(kinds)
    turns = [o for o in objs if o["type"] == "Turn"]
    assert any(t["end_of_turn"] and t["turn_is_formatted"] for t in turns)
    assert any(not t["end_of_turn"] and not t["words"][-1]["word_is_final"] for t in turns)
    assert any("speaker" in w for t in turns for w in t["words"]) and any("language_code" in t for t in turns)
    assert [o["error_code"] for o in objs if o["type"] == "Error"] == [3007, 3006, 3006]


@pytest.mark.parametrize("query", [
    {}, {"model": US, "diarize": True, "endpointing": 800}, {"model": US, "punctuate": False},
    {"encoding": "pcm_mulaw", "sample_rate": 8000, "language": "es", "endpointing": 0},
    {"model": "whisper-rt", "encoding": "webm", "sample_rate": 48000},
])
def test_adapter_messages_are_what_the_sdk_sends(query):
    p = ListenParams.from_query({"provider": "assemblyai", "encoding": "pcm_s16le", "sample_rate": "16000",
                                 **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}})
    a = AssemblyAIAdapter(p, PROVIDER_KEY, "ws://127.0.0.1:9/v3/ws")
    req = a.connect_request()
    params = assert_sdk_query(parse_qs(urlsplit(req.url).query))
    assert str(params.speech_model) == a.model
    sdk_headers = _build_headers(RealTimeTranscriberOptions(api_key=PROVIDER_KEY))
    assert dict(req.headers) == {k: sdk_headers[k] for k in ("Authorization", "AssemblyAI-Version")}
    a.receive_open()
    a.send_keepalive()
    a.send_finalize()
    a.send_close()
    assert [assert_sdk_control(f) for f in a.data_to_send()] == ["KeepAlive", "ForceEndpoint", "Terminate"]


# -- 2. the official SDK client ---------------------------------------------------------------------
@pytest.mark.parametrize("model", [US, "universal-3-5-pro"])
def test_official_sdk_client_runs_a_whole_session(model, caplog):
    async def main():
        got: dict[str, list] = {"Begin": [], "Turn": [], "Termination": [], "Error": []}
        async with AssemblyAISimulator(api_key=PROVIDER_KEY, script=SCRIPT) as sim:
            client = AsyncRealTimeTranscriber(RealTimeTranscriberOptions(api_key=PROVIDER_KEY, api_host=sim.url))
            for kind in got:
                client.on(RealTimeEvents[kind], lambda _c, ev, kind=kind: got[kind].append(ev))
            await client.connect(RealTimeParameters(speech_model=model, sample_rate=16000, encoding="pcm_s16le",
                                                    format_turns=True, speaker_labels=True))
            await client.stream(pcm_100ms(2.0))
            await client.keep_alive()
            await client.force_endpoint()
            await client.stream(pcm_100ms(3.0)[20:])
            await client.disconnect(terminate=True)
            (record,) = await sim.wait_finished(1)
        return got, record

    with caplog.at_level(logging.WARNING, logger="assemblyai"):
        got, record = run("asyncio", main)
    assert not [r for r in caplog.records if "Unsupported" in r.getMessage()], caplog.records
    assert got["Error"] == [] and len(got["Begin"]) == 1 and len(got["Termination"]) == 1
    assert got["Begin"][0].configuration.model == model
    ends = [t for t in got["Turn"] if t.end_of_turn and (t.turn_is_formatted or model != US)]
    assert [t.transcript for t in ends] == ["Hello there.", "How", "are you today?"]  # ForceEndpoint at 2 s
    assert record.status == 101 and record.header("authorization") == PROVIDER_KEY
    assert record.header("assemblyai-version") == "2025-05-12"
    assert record.control_types == ["KeepAlive", "ForceEndpoint", "Terminate"]
    assert record.audio_seconds == pytest.approx(3.0) and (record.close_code, record.closed_by) == (1000, "server")


def test_official_sdk_client_sees_an_auth_refusal():
    async def main():
        errors, seen = [], asyncio.Event()
        async with AssemblyAISimulator(api_key=PROVIDER_KEY) as sim:
            client = AsyncRealTimeTranscriber(RealTimeTranscriberOptions(api_key="wrong", api_host=sim.url))
            client.on(RealTimeEvents.Error, lambda _c, err: (errors.append(err), seen.set()))
            await client.connect(RealTimeParameters(speech_model=US, sample_rate=16000))
            await asyncio.wait_for(seen.wait(), 5)
            await client.disconnect()
        return errors

    (err,) = run("asyncio", main)
    assert err.code == 1008 and "Invalid API key" in str(err)


# -- 3. end to end through the router -------------------------------------------------------------
def aai(**kw) -> AssemblyAISimulator:
    kw.setdefault("script", SCRIPT)
    return AssemblyAISimulator(api_key=PROVIDER_KEY, **kw)


async def through_router(tmp_path, sim: AssemblyAISimulator, query: dict, audio: list, **kw):
    async with sim, router(tmp_path, {"assemblyai": sim.listen_url}, pace_lead_seconds=0) as r:
        out = await session(listen_url(r, provider="assemblyai", **query), audio,
                            headers={"x-api-key": PROVIDER_KEY}, **kw)
        await sim.wait_finished(1)
    return out, sim.connections[0]


def turn_ends(record) -> dict[int, list[bool]]:
    """turn_order -> turn_is_formatted of each end-of-turn message the simulator sent."""
    out: dict[int, list[bool]] = {}
    for text in record.sent:
        m = json.loads(text)
        if m["type"] == "Turn" and m["end_of_turn"]:
            out.setdefault(m["turn_order"], []).append(m["turn_is_formatted"])
    return out


@pytest.fixture(scope="module")
def ogg_audio() -> bytes:
    return fixtures_opus.ogg_opus(fixtures_opus.speech_like(AUDIO_S))


ENCODINGS = {
    "pcm_s16le": ({"encoding": "pcm_s16le", "sample_rate": 16000}, ("pcm_s16le", "16000")),
    "pcm_mulaw": ({"encoding": "pcm_mulaw", "sample_rate": 8000}, ("pcm_mulaw", "8000")),
    "ogg_opus": ({"encoding": "ogg_opus", "sample_rate": 48000}, ("pcm_s16le", "16000")),
}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_full_session_per_encoding(loop, encoding, tmp_path, ogg_audio):
    query, upstream = ENCODINGS[encoding]
    audio = {"pcm_s16le": pcm_chunks(AUDIO_S), "pcm_mulaw": [bytes([0x7F, 0xFF]) * 80] * int(AUDIO_S * 50),
             "ogg_opus": [ogg_audio[i:i + 1000] for i in range(0, len(ogg_audio), 1000)]}[encoding]
    out, rec = go(loop, through_router, tmp_path, aai(), {**query, "diarize": True}, audio)
    assert out.code == 1000, out.messages
    assert not out.errors
    assert [m["transcript"] for m in out.finals] == ["Hello there.", "How are you today?", "Fine thanks."]
    assert out.types == ["transcript", "turn_end"] * 3
    assert "is_partial" not in out.finals[0]
    assert {w["speaker"] for m in out.finals for w in m["words"]} == {"A", "B"}
    for a, b in zip(out.finals, out.finals[1:]):
        assert a["end_time"] <= b["start_time"]
    assert (rec.param("encoding"), rec.param("sample_rate")) == upstream
    assert rec.param("speech_model") == "universal-3-5-pro" and rec.header("authorization") == PROVIDER_KEY
    # every message held 50-1000 ms (else the simulator had closed with 3007), 100 ms but the last
    assert rec.audio_seconds == pytest.approx(AUDIO_S, abs=0.06)  # (decoded Opus: a padded last message)
    assert rec.control_types == ["Terminate"] and rec.close_code == 1000 and rec.closed_by == "server"


@pytest.mark.parametrize("punctuate", [True, False])
def test_assemblyai_double_end_of_turn_with_format_turns(punctuate, tmp_path):
    """The quirk: Universal-Streaming with format_turns=true ends each turn twice (same turn_order,
    unformatted then formatted); the client gets one final per turn, the formatted one."""
    out, rec = go("uvloop", through_router, tmp_path, aai(),
                  {"encoding": "pcm_s16le", "sample_rate": 16000, "model": US, "punctuate": punctuate,
                   "partial_results": True}, pcm_chunks(AUDIO_S))
    assert out.code == 1000 and not out.errors
    assert rec.param("format_turns") == str(punctuate).lower()
    assert turn_ends(rec) == {i: ([False, True] if punctuate else [False]) for i in range(3)}
    expected = ["Hello there.", "How are you today?", "Fine thanks."] if punctuate else [
        "hello there", "how are you today", "fine thanks"]
    assert [m["transcript"] for m in out.finals] == expected
    assert [t for t in out.types if t != "transcript"] == ["turn_end"] * 3
    partials = [m for m in out.transcripts if m["is_partial"]]
    assert partials and partials[0]["transcript"] == "hello"  # cumulative, word by word, unformatted
    finals_at = [i for i, m in enumerate(out.messages) if m.get("type") == "transcript" and not m["is_partial"]]
    assert all(out.messages[i + 1]["type"] == "turn_end" for i in finals_at)  # no partial between the twins


def test_partials_and_raw_mode(tmp_path):
    out, _ = go("uvloop", through_router, tmp_path, aai(), {"encoding": "pcm_s16le", "sample_rate": 16000,
                                                             "partial_results": True}, pcm_chunks(AUDIO_S))
    assert [m["transcript"] for m in out.finals] == ["Hello there.", "How are you today?", "Fine thanks."]
    # Universal-3 Pro: one early partial 0.75 s into the only turn that lasts that long
    assert [m["transcript"] for m in out.transcripts if m["is_partial"]] == ["How are"]
    raw, rec = go("uvloop", through_router, tmp_path, aai(), {"encoding": "pcm_s16le", "sample_rate": 16000,
                                                               "parse_json": False}, pcm_chunks(AUDIO_S),
                  raw_text=True)
    assert raw.code == 1000 and raw.messages == rec.sent  # byte for byte, Begin to Termination
    assert json.loads(raw.messages[-1])["type"] == "Termination"


def test_finalize_pads_the_remainder_and_keeps_the_clients_times(tmp_path):
    # finalize after 1.02 s: 20 ms of audio remain and go up padded to 50 ms. The simulator's script is in
    # its own (provider) time, which now runs 30 ms ahead of the client's: the client must see the words
    # after the padding 30 ms earlier than the script says, i.e. where they are in its own audio.
    out, rec = go("asyncio", through_router, tmp_path, aai(), {"encoding": "pcm_s16le", "sample_rate": 16000},
                  pcm_chunks(AUDIO_S), controls={51: '{"type":"finalize"}'})
    assert out.code == 1000 and not out.errors
    assert rec.control_types == ["ForceEndpoint", "Terminate"]
    assert rec.audio_seconds == pytest.approx(AUDIO_S + 0.03)  # the padding
    words = [(w["text"], w["start_time"], w["end_time"]) for m in out.finals for w in m["words"]]
    shift = lambda t: round(t - 0.03 if t > 1.05 else t, 3)  # noqa: E731
    assert words == [(w.text, shift(w.start), shift(w.end)) for w in SCRIPT]


@pytest.mark.parametrize("loop", LOOPS)
def test_provider_failure_mid_stream(loop, tmp_path):
    faults = Faults(fail_after_finals=1, fail_code=3005, fail_reason="Session Cancelled: An error occurred")
    out, rec = go(loop, through_router, tmp_path, aai(faults=faults),
                  {"encoding": "pcm_s16le", "sample_rate": 16000, "model": US}, pcm_chunks(AUDIO_S))
    assert out.code == 4040
    assert [m["transcript"] for m in out.finals] == ["Hello there."]  # the formatted one, then the error
    assert out.types == ["transcript", "turn_end", "error"]
    err = out.errors[0]
    assert (err["provider"], err["provider_code"], err["provider_message"]) == (
        "assemblyai", 3005, "Session Cancelled: An error occurred")
    assert rec.close_code == 3005 and json.loads(rec.sent[-1])["type"] == "Error"


@pytest.mark.parametrize("sim_kw,code,message", [
    ({"faults": Faults(reject_auth=True)}, 1008, "Unauthorized Connection: Invalid API key"),
    ({"api_key": "someone-else"}, 1008, "Unauthorized Connection: Invalid API key"),
])
def test_refusals_become_provider_errors(sim_kw, code, message, tmp_path):
    sim = AssemblyAISimulator(**{"api_key": PROVIDER_KEY, "script": SCRIPT, **sim_kw})
    out, _ = go("uvloop", through_router, tmp_path, sim, {"encoding": "pcm_s16le", "sample_rate": 16000},
                pcm_chunks(0.5))
    assert out.code == 4040 and out.finals == []
    assert (out.errors[0]["provider_code"], out.errors[0]["provider_message"]) == (code, message)
    assert "API key" in out.errors[0]["error"]


# -- 4. simulator behaviour -------------------------------------------------------------------------
Q = "speech_model=universal-3-5-pro&sample_rate=16000"


@pytest.mark.parametrize("query,headers,audio,code,error", [
    (Q, {}, [], 1008, "Unauthorized Connection: Missing Authorization header"),
    (Q, {"Authorization": f"Bearer {PROVIDER_KEY}"}, [], 1008, "Unauthorized Connection: Invalid API key"),
    ("sample_rate=16000", None, [], 3006, "speech_model is required"),
    ("speech_model=nova-3&sample_rate=16000", None, [], 3006, "speech_model 'nova-3'"),
    ("speech_model=u3-rt-pro", None, [], 3006, "sample_rate is required"),
    (Q + "&encoding=linear16", None, [], 3006, "encoding 'linear16'"),
    (Q + "&speaker_labels=yes", None, [], 3006, "speaker_labels must be true or false"),
    (Q + "&max_turn_silence=soon", None, [], 3006, "max_turn_silence"),
    (f"speech_model={US}&sample_rate=16000&language_codes=[\"es\"]", None, [], 3006, "language_codes"),
    (Q, None, [bytes(3200), bytes(640)], 3007, "Input duration violation: 20 ms. Expected between 50 and 1000 ms"),
    (Q, None, [bytes(32002)], 3007, "Input duration violation: 1000 ms"),
    (Q, None, [bytes(32004)], 3007, "Expected between 50 and 1000 ms"),
    (Q, None, [bytes(1600), "not json"], 3006, "Invalid JSON: not json"),
    (Q, None, ['{"type":"Finalize"}'], 3006, "Invalid Message Type: Finalize"),
    (Q, None, ["[]"], 3006, "Invalid Message: []"),
    (Q, None, ['{"type":"UpdateConfiguration","speech_model":"x"}'], 3006, "unknown fields"),
])
def test_simulator_refuses_like_assemblyai(query, headers, audio, code, error):
    async def main():
        async with AssemblyAISimulator(api_key=PROVIDER_KEY, script=SCRIPT) as sim:
            got = await raw_session(sim, query, audio, end=None, headers=headers)
            (record,) = await sim.wait_finished(1)
        return got, record

    (frames, close_code, reason), record = run("asyncio", main)
    err = json.loads(frames[-1])
    assert err["type"] == "Error" and err["error_code"] == code and error in err["error"]
    assert close_code == code and (reason == err["error"] or reason == "See Error message for details")
    assert record.status == 101 and record.closed_by == "server"
    # refused connections get no Begin; a session broken mid-way had one
    assert (json.loads(frames[0])["type"] == "Begin") == bool(audio)


def test_simulator_ignores_unknown_parameters_and_accepts_any_raw_key():
    async def main():
        async with AssemblyAISimulator(api_key=None, script=SCRIPT) as sim:
            got = await raw_session(sim, Q + "&smart_format=true", pcm_100ms(1.0), headers={"Authorization": "k"})
            (record,) = await sim.wait_finished(1)
        return got, record

    (frames, code, _), record = run("asyncio", main)
    assert code == 1000 and record.info["ignored_params"] == ["smart_format"]
    assert [json.loads(f)["type"] for f in frames] == ["Begin", "Turn", "Termination"]


def test_wrong_path_is_http_404():
    async def main():
        async with AssemblyAISimulator(api_key=PROVIDER_KEY) as sim:
            with pytest.raises(InvalidStatus) as exc:
                await raw_session(sim, Q, [], path="/v2/realtime/ws")
        return exc.value

    assert run("asyncio", main).response.status_code == 404


def test_rate_check_and_long_reasons():
    async def main():
        async with AssemblyAISimulator(api_key=PROVIDER_KEY, max_lead_s=0.5) as sim:
            got = await raw_session(sim, Q, pcm_100ms(2.0), end=None)
        async with AssemblyAISimulator(api_key=PROVIDER_KEY, faults=Faults(fail_after_finals=0, fail_code=3005,
                                                                           fail_reason="x" * 200)) as sim:
            got2 = await raw_session(sim, Q, [], end=None)
        return got, got2

    (frames, code, _), (frames2, code2, reason2) = run("asyncio", main)
    assert code == 3007 and "Audio Transmission Rate Exceeded" in json.loads(frames[-1])["error"]
    assert code2 == 3005 and reason2 == "See Error message for details"
    assert json.loads(frames2[-1]) == {"type": "Error", "error_code": 3005, "error": "x" * 200}


def test_ignore_finalize_and_terminate_then_inactivity_timeout():
    async def main():
        faults = Faults(ignore_finalize=True, ignore_close_stream=True)
        async with AssemblyAISimulator(api_key=PROVIDER_KEY, script=SCRIPT, faults=faults) as sim:
            sim.script = Script.from_text("Hello there friend", start=0.1)
            async with connect(f"{sim.listen_url}?{Q}&inactivity_timeout=5", additional_headers=HEADERS) as ws:
                for chunk in pcm_100ms(0.8):
                    await ws.send(chunk)
                await ws.send('{"type":"ForceEndpoint"}')
                await ws.send('{"type":"Terminate"}')
                assert json.loads(await ws.recv())["type"] == "Begin"
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.3):
                        await ws.recv()
            (record,) = await sim.wait_finished(1)
        return record

    record = run("asyncio", main)
    assert record.control_types == ["ForceEndpoint", "Terminate"]
    assert not any(json.loads(f)["type"] == "Turn" and json.loads(f)["end_of_turn"] for f in record.sent)
    assert (record.close_code, record.closed_by) == (1000, "client")


def test_cli_runs_the_simulator():
    with simulator_cli("assemblyai", "cli-key-1") as url:

        async def client():
            async with connect(f"{url}?{Q}", additional_headers={"Authorization": "cli-key-1"}) as ws:
                for chunk in pcm_100ms(3.0):
                    await ws.send(chunk)
                await ws.send('{"type":"Terminate"}')
                return [json.loads(m) async for m in ws]

        frames = run("asyncio", client)
    assert frames[0]["type"] == "Begin" and frames[-1]["type"] == "Termination"
    assert any(f["type"] == "Turn" and f["end_of_turn"] for f in frames)
    assert simulator_class("assemblyai") is AssemblyAISimulator
