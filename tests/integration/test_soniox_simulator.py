"""The Soniox simulator over real loopback sockets: conformance with the official SDK, and the router.

1. Every frame the simulator emits validates strictly against ``soniox``'s own models
   (``RealtimeEvent``, ``Token``: no wrong type, no key the models do not know beyond the documented
   error fields), and every start request / control message the adapter sends is what the SDK sends.
2. The official SDK client (``AsyncSonioxClient(websocket_base_url=...).realtime.stt``) runs a whole
   session against it (no patching needed: the SDK takes the URL).
3. The real router, end to end (``harness``), per encoding on asyncio and uvloop, with partials, raw
   mode, finalize, a mid-stream failure, refusals, and the quirk: tokens re-sent until final.
4. The simulator's own checks and failure injection.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import fixtures_opus
from routeraudio.config import ListenParams
from routeraudio.providers.soniox import SonioxAdapter
from routeraudio.testing import simulator_class
from routeraudio.testing.base import Faults, Script
from routeraudio.testing.soniox import SonioxSimulator

from .harness import LOOPS, PROVIDER_KEY, listen_url, pcm_chunks, router, run, session, simulator_cli

import soniox  # noqa: E402,F401  - a declared test dependency: fail, never skip
from soniox import AsyncSonioxClient  # noqa: E402
from soniox.types.realtime import RealtimeEvent, RealtimeSTTConfig  # noqa: E402

SCRIPT = Script.from_text("Hello there. How are you today? Fine thanks.", start=0.2, word_s=0.25, gap_s=0.05,
                          pause_s=0.8, speakers=2)
WORDS = [w.text for w in SCRIPT]  # Soniox always punctuates: "there.", "today?", "thanks."
AUDIO_S = 5.0  # the last word ends at 4.05 s; its endpoint (500 ms) is due at 4.55 s
#: keys an error response carries beyond the SDK's RealtimeEvent (https://soniox.com/docs/stt/rt/error-handling)
ERROR_EXTRAS = {"error_type", "more_info", "request_id"}
HEADERS = {"Authorization": f"Bearer {PROVIDER_KEY}"}
START = {"model": "stt-rt-v5", "audio_format": "pcm_s16le", "sample_rate": 16000, "num_channels": 1}


def assert_conforms(text: str) -> RealtimeEvent:
    """Validate one simulator frame against the SDK's models, strictly; return the parsed event."""
    obj = json.loads(text)
    event = RealtimeEvent.model_validate(obj, strict=True)
    assert set(event.model_extra or {}) <= (ERROR_EXTRAS if event.error_code is not None else set()), obj
    for t in event.tokens:
        assert not t.model_extra, f"token keys the SDK does not know: {t.model_extra}"
    assert RealtimeEvent.validate_event(text) == event  # the SDK's own parsing agrees
    return event


def assert_sdk_start_request(text: str) -> dict:
    """A start request the SDK itself would send for the same settings, key for key."""
    obj = json.loads(text)
    cfg = RealtimeSTTConfig.model_validate(obj, strict=True)
    assert set(obj) <= set(RealtimeSTTConfig.model_fields)
    assert cfg.model_dump(exclude_none=True) == obj
    return obj


def mulaw_chunks(seconds: float) -> list[bytes]:
    return [bytes([0x7F, 0xFF]) * 80] * int(seconds * 50)  # 20 ms frames at 8 kHz


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.fixture(scope="module")
def webm_audio() -> bytes:
    return fixtures_opus.webm_opus(fixtures_opus.speech_like(AUDIO_S))


async def raw_session(sim: SonioxSimulator, start: dict | str | None, audio: list[bytes],
                      controls: dict[int, str] | None = None, end: str | bytes | None = b"",
                      headers: dict | None = None) -> list[str]:
    """Talk to the simulator directly; collect every frame it sends until it closes."""
    received: list[str] = []
    async with connect(sim.listen_url, additional_headers=HEADERS if headers is None else headers) as ws:
        async def reader():
            try:
                async for frame in ws:
                    received.append(frame)
            except ConnectionClosed:
                pass

        task = asyncio.create_task(reader())
        try:
            if start is not None:
                await ws.send(start if isinstance(start, str) else json.dumps(start))
            for i, chunk in enumerate(audio):
                if controls and i in controls:
                    await ws.send(controls[i])
                await ws.send(chunk)
            if end is not None:
                await ws.send(end)
        except ConnectionClosed:
            pass
        await task
    return received


# -- 1. conformance ---------------------------------------------------------------------------------
def test_every_frame_conforms_to_the_sdk_models():
    async def main():
        async with SonioxSimulator(api_key=PROVIDER_KEY, script=SCRIPT) as sim:
            start = {**START, "language_hints": ["en"], "enable_speaker_diarization": True,
                     "enable_language_identification": True, "enable_endpoint_detection": True,
                     "max_endpoint_delay_ms": 500}
            f1 = await raw_session(sim, start, pcm_chunks(AUDIO_S), {60: '{"type":"finalize"}',
                                                                    90: '{"type": "keepalive"}'})
            f2 = await raw_session(sim, {"model": "stt-rt-v4", "audio_format": "mulaw", "sample_rate": 8000,
                                         "num_channels": 1}, mulaw_chunks(AUDIO_S))
            f3 = await raw_session(sim, {"model": "stt-rt-v5", "max_endpoint_delay_ms": 100}, [])
            await sim.wait_finished(3)
        return f1, f2, f3

    f1, f2, f3 = run("asyncio", main)
    events = [assert_conforms(f) for f in f1 + f2 + f3]
    assert events[-1].error_code == 400 and "max_endpoint_delay_ms" in events[-1].error_message
    e1 = [assert_conforms(f) for f in f1]
    texts = [t.text for e in e1 for t in e.tokens]
    assert "<end>" in texts and "<fin>" in texts
    assert any(not t.is_final for e in e1 for t in e.tokens)
    assert {t.speaker for e in e1 for t in e.tokens if t.text[0] != "<"} == {"1", "2"}
    assert {t.language for e in e1 for t in e.tokens if t.text[0] != "<"} == {"en"}
    assert e1[-1].finished and not any(e.finished for e in e1[:-1])
    e2 = [assert_conforms(f) for f in f2]
    assert not any(t.text == "<end>" for e in e2 for t in e.tokens)  # endpoint detection is off by default
    assert all(t.speaker is None for e in e2 for t in e.tokens)
    assert "".join(t.text for e in e2 for t in e.tokens if t.is_final) == " ".join(WORDS)


@pytest.mark.parametrize("query", [
    {"encoding": "pcm_s16le", "sample_rate": 16000},
    {"encoding": "pcm_s16le", "sample_rate": 48000, "channels": 2, "diarize": True},
    {"encoding": "pcm_mulaw", "sample_rate": 8000, "language": "pt-BR", "endpointing": 0},
    {"encoding": "webm", "sample_rate": 48000, "model": "stt-rt-v4", "endpointing": 9000},
    {"encoding": "mp3", "sample_rate": 44100, "language": "yue", "partial_results": True},
])
def test_adapter_messages_are_what_the_sdk_sends(query):
    a = SonioxAdapter(ListenParams.from_query({"provider": "soniox", **{k: str(v).lower() if isinstance(v, bool)
                                                                        else str(v) for k, v in query.items()}}),
                      PROVIDER_KEY)
    a.receive_open()
    a.send_keepalive()
    a.send_finalize()
    a.send_close()
    start, keepalive, finalize, end = a.data_to_send()
    assert_sdk_start_request(start)
    # the SDK's control messages (soniox.realtime.async_stt.send_control_message), as objects
    assert json.loads(keepalive) == {"type": "keepalive"} and json.loads(finalize) == {"type": "finalize"}
    assert end == b""


# -- 2. the official SDK client ---------------------------------------------------------------------
def test_official_sdk_client_runs_a_whole_session():
    async def main():
        async with SonioxSimulator(api_key=PROVIDER_KEY, script=SCRIPT) as sim:
            config = RealtimeSTTConfig(model="stt-rt-v5", audio_format="pcm_s16le", sample_rate=16000,
                                       num_channels=1, language_hints=["en"], enable_speaker_diarization=True,
                                       enable_endpoint_detection=True, max_endpoint_delay_ms=500)
            events = []
            async with AsyncSonioxClient(api_key=PROVIDER_KEY, websocket_base_url=sim.listen_url) as client:
                async with client.realtime.stt.connect(config=config) as stt:
                    async def reader():
                        async for event in stt.receive_events():
                            events.append(event)

                    task = asyncio.create_task(reader())
                    for chunk in pcm_chunks(3.0):
                        await stt.send_byte_chunk(chunk)
                    await stt.keep_alive()
                    await stt.finalize()
                    await stt.finish()
                    await task
            (record,) = await sim.wait_finished(1)
        return events, record, config

    events, record, config = run("asyncio", main)
    assert all(e.error_code is None for e in events)
    assert events[-1].finished
    finals = [t for e in events for t in e.tokens if t.is_final]
    assert "".join(t.text for t in finals if t.text[0] != "<") == "Hello there. How are you today?"
    assert [t.text for t in finals if t.text[0] == "<"] == ["<end>", "<fin>"]
    assert record.header("authorization") == f"Bearer {PROVIDER_KEY}" and record.info["auth"] == "header"
    assert [json.loads(t) if t else "" for _, t in record.control] == [
        config.model_dump(exclude_none=True), {"type": "keepalive"}, {"type": "finalize"}, ""]
    assert record.audio_seconds == 3.0 and (record.close_code, record.closed_by) == (1000, "server")
    for frame in record.sent:
        assert_conforms(frame)


# -- 3. end to end through the router -------------------------------------------------------------
def soniox(**kw) -> SonioxSimulator:
    kw.setdefault("script", SCRIPT)
    return SonioxSimulator(api_key=PROVIDER_KEY, **kw)


async def through_router(tmp_path, sim: SonioxSimulator, query: dict, audio: list, router_kw=None, **kw):
    async with sim, router(tmp_path, {"soniox": sim.listen_url}, pace_lead_seconds=0, **(router_kw or {})) as r:
        out = await session(listen_url(r, provider="soniox", **query), audio, headers={"x-api-key": PROVIDER_KEY},
                            **kw)
        await sim.wait_finished(1)
    return out, sim.connections[0]


def words_of(out) -> list[str]:
    return [w["text"] for m in out.finals for w in (m["words"] or [])]


ENCODINGS = {
    "pcm_s16le": ({"encoding": "pcm_s16le", "sample_rate": 16000}, {"audio_format": "pcm_s16le", "sample_rate": 16000}),
    "pcm_mulaw": ({"encoding": "pcm_mulaw", "sample_rate": 8000}, {"audio_format": "mulaw", "sample_rate": 8000}),
    "webm": ({"encoding": "webm", "sample_rate": 48000}, {"audio_format": "auto"}),
}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_full_session_per_encoding(loop, encoding, tmp_path, webm_audio):
    query, upstream = ENCODINGS[encoding]
    audio = {"pcm_s16le": pcm_chunks(AUDIO_S), "pcm_mulaw": mulaw_chunks(AUDIO_S),
             "webm": chunks(webm_audio, 4000)}[encoding]
    out, rec = run(loop, through_router, tmp_path, soniox(), {**query, "diarize": True}, audio)
    assert out.code == 1000, out.messages
    assert not out.errors
    assert words_of(out) == WORDS  # every word once, in order, as finals
    assert [m["transcript"] for m in out.finals] == ["Hello there.", "How are you today?", "Fine thanks."]
    assert out.types == ["transcript", "turn_end"] * 3  # one final per utterance, each closed by <end>
    assert "is_partial" not in out.finals[0]
    assert {w["speaker"] for m in out.finals for w in m["words"]} == {"1", "2"}
    for a, b in zip(out.finals, out.finals[1:]):
        assert a["end_time"] <= b["start_time"]
    start = assert_sdk_start_request(rec.control[0][1])
    assert {k: start.get(k) for k in upstream} == upstream and "api_key" not in start
    assert start["max_endpoint_delay_ms"] == 500 and start["enable_speaker_diarization"] is True
    assert rec.header("authorization") == f"Bearer {PROVIDER_KEY}"
    # forwarded natively: the provider got the client's bytes (PCM's own rate, mu-law, the WebM file)
    assert rec.audio_bytes == sum(map(len, audio))
    assert rec.audio_seconds == pytest.approx(AUDIO_S, abs=0.03)
    assert rec.empty_frames == 1 and rec.close_code == 1000  # the end-of-audio frame, then Soniox closed


def test_soniox_tokens_re_sent_until_final(tmp_path):
    """The quirk, through the router: Soniox re-sends each non-final token in every response and each
    final token once; the client gets partials that replace each other and each word once as final."""
    out, rec = run("asyncio", through_router, tmp_path, soniox(), {**ENCODINGS["pcm_s16le"][0],
                                                                   "partial_results": True}, pcm_chunks(AUDIO_S))
    assert out.code == 1000 and not out.errors
    sent = [json.loads(f) for f in rec.sent]
    resent = {}
    finals = []
    for msg in sent:
        for t in msg["tokens"]:
            if t["is_final"]:
                if t["text"] not in ("<end>", "<fin>"):
                    finals.append((t["text"], t["start_ms"]))
            else:
                resent[(t["text"], t["start_ms"])] = resent.get((t["text"], t["start_ms"]), 0) + 1
    assert max(resent.values()) >= 3  # the same non-final token, response after response
    assert len(finals) == len(set(finals))  # final tokens: once
    assert words_of(out) == WORDS
    partials = [m for m in out.transcripts if m["is_partial"]]
    assert partials and all(not m["is_partial"] for m in out.finals)
    assert not any("<" in m["transcript"] for m in out.transcripts)
    # each partial holds its utterance so far, never the previous utterances' words
    for m in partials:
        assert m["transcript"].split()[0] in ("Hello", "How", "Fine")
    assert partials[-1]["transcript"] in ("Fine thanks", "Fine thanks.", "Fine tha")


def test_finalize_and_raw_mode(tmp_path):
    async def main():
        sim = soniox()
        async with sim, router(tmp_path, {"soniox": sim.listen_url}, pace_lead_seconds=0) as r:
            base = dict(provider="soniox", **ENCODINGS["pcm_s16le"][0])
            # finalize at 2.16 s: "How are" heard, "you today?" not yet
            fin = await session(listen_url(r, **base), pcm_chunks(3.5), headers={"x-api-key": PROVIDER_KEY},
                                controls={108: '{"type":"finalize"}'})
            raw = await session(listen_url(r, **base, endpointing=0, parse_json=False), pcm_chunks(2.0),
                                headers={"x-api-key": PROVIDER_KEY}, raw_text=True)
            await sim.wait_finished(2)
        return fin, raw, sim.connections

    fin, raw, (rec_fin, rec_raw) = run("asyncio", main)
    assert fin.code == 1000 and json.loads(rec_fin.control[1][1]) == {"type": "finalize"}
    assert any(t["text"] == "<fin>" for f in rec_fin.sent for t in json.loads(f)["tokens"])
    assert [m["transcript"] for m in fin.finals] == ["Hello there.", "How are", "you today?"]
    assert fin.types == ["transcript", "turn_end", "transcript", "transcript", "turn_end"]  # <fin> is no turn end
    assert raw.code == 1000 and raw.messages == rec_raw.sent  # byte for byte what the provider sent
    assert json.loads(raw.messages[-1])["finished"] is True
    assert not any(t["text"] == "<end>" for f in raw.messages for t in json.loads(f)["tokens"])


@pytest.mark.parametrize("loop", LOOPS)
def test_provider_failure_mid_stream(loop, tmp_path):
    out, rec = run(loop, through_router, tmp_path, soniox(faults=Faults(fail_after_finals=1)),
                   ENCODINGS["pcm_s16le"][0], pcm_chunks(AUDIO_S))
    assert out.code == 4040
    assert out.types == ["transcript", "turn_end", "error"]
    assert out.finals[0]["transcript"] == "Hello there."
    (err,) = out.errors
    assert err["code"] == 4040 and err["provider"] == "soniox" and err["provider_code"] == 503
    assert err["provider_message"].startswith("Cannot continue request")
    assert "start a new session" in err["error"]


@pytest.mark.parametrize("query,sim_kw,code,words", [
    pytest.param({}, {"api_key": "another-key"}, 401, "rejected the API key"),
    ({"model": "stt-rt-v1"}, {}, 400, "Invalid model specified."),
])
def test_refusals_become_provider_errors(query, sim_kw, code, words, tmp_path):
    sim = SonioxSimulator(script=SCRIPT, **{"api_key": PROVIDER_KEY, **sim_kw})
    out, rec = run("asyncio", through_router, tmp_path, sim, {**ENCODINGS["pcm_s16le"][0], **query},
                   pcm_chunks(0.5), {"finalize_timeout": 1.0})
    assert out.code == 4040 and out.errors[0]["provider_code"] == code
    assert words in out.errors[0]["error"]
    assert rec.status == 101 and "error" in rec.info


# -- 4. simulator behaviour -------------------------------------------------------------------------
@pytest.mark.parametrize("headers,start,first,code,error", [
    ({}, START, None, 401, "Incorrect API key"),
    ({"Authorization": "Token " + PROVIDER_KEY}, START, None, 401, "Bearer"),
    ({"Authorization": "Bearer nope"}, START, None, 401, "Incorrect API key"),
    (None, {**START, "api_key": PROVIDER_KEY}, None, 400, "not both"),
    (None, None, b"\x00\x00", 400, "first message"),
    (None, {"audio_format": "auto"}, None, 400, "model"),
    (None, {**START, "model": "whisper"}, None, 400, "Invalid model specified."),
    (None, {"model": "stt-rt-v5", "audio_format": "pcm_s16le"}, None, 400, "sample_rate and num_channels"),
    (None, {**START, "audio_format": "linear16"}, None, 400, "audio_format"),
    (None, {**START, "language_hints": ["eng"]}, None, 400, "two-letter"),
    (None, {**START, "max_endpoint_delay_ms": 3500}, None, 400, "between 500 and 3000"),
    (None, {**START, "enable_non_final_tokens": False}, None, 400, "enable_non_final_tokens"),
    (None, {**START, "model": "stt-rt-v4", "endpoint_sensitivity": 0.5}, None, 400, "not supported"),
    (None, {**START, "enable_speaker_diarization": "yes"}, None, 400, "enable_speaker_diarization"),
    (None, "not json", None, 400, "JSON"),
    (None, START, '{"type":"pause"}', 400, "Unknown control message"),
])
def test_simulator_refuses_like_soniox(headers, start, first, code, error):
    async def main():
        async with SonioxSimulator(api_key=PROVIDER_KEY) as sim:
            frames = await raw_session(sim, start, [first] if first is not None else [], end=None,
                                       headers=headers)
            (record,) = await sim.wait_finished(1)
        return frames, record

    frames, record = run("asyncio", main)
    err = assert_conforms(frames[-1])
    assert err.error_code == code and error in err.error_message
    assert json.loads(frames[-1])["request_id"]
    assert record.status == 101 and (record.close_code, record.closed_by) == (1000, "server")


def test_legacy_key_in_the_start_request_and_any_key():
    async def main():
        async with SonioxSimulator(api_key=PROVIDER_KEY, script=SCRIPT) as sim:
            legacy = await raw_session(sim, {**START, "api_key": PROVIDER_KEY}, pcm_chunks(1.0), headers={})
            sim.api_key = None
            anyone = await raw_session(sim, START, pcm_chunks(1.0), headers={"Authorization": "Bearer whatever"})
            await sim.wait_finished(2)
        return legacy, anyone, sim.connections

    legacy, anyone, (r1, r2) = run("asyncio", main)
    assert json.loads(legacy[-1])["finished"] and json.loads(anyone[-1])["finished"]
    assert (r1.info["auth"], r2.info["auth"]) == ("config", "header")


def test_wrong_path_and_reject_auth():
    async def main():
        async with SonioxSimulator(api_key=None) as sim:
            with pytest.raises(InvalidStatus) as exc:
                async with connect(sim.url + "/transcribe", additional_headers=HEADERS):
                    pass
            sim.faults.reject_auth = True
            refused = await raw_session(sim, START, [], end=None)
            await sim.wait_finished(2)
        return exc.value, refused

    exc, refused = run("asyncio", main)
    assert exc.response.status_code == 404
    assert assert_conforms(refused[-1]).error_code == 401


def test_ignore_finalize_and_end_of_audio_then_idle_timeout():
    async def main():
        faults = Faults(ignore_finalize=True, ignore_close_stream=True)
        async with SonioxSimulator(api_key=PROVIDER_KEY, script=SCRIPT, faults=faults, idle_timeout=0.3) as sim:
            frames = await raw_session(sim, START, pcm_chunks(1.0), {10: '{"type":"finalize"}'})
            (record,) = await sim.wait_finished(1)
        return frames, record

    frames, record = run("asyncio", main)
    events = [assert_conforms(f) for f in frames]
    assert not any(t.text == "<fin>" for e in events for t in e.tokens)
    assert not any(e.finished for e in events)
    assert events[-1].error_code == 408  # the session only ended by the inactivity timeout
    assert record.empty_frames == 1


def test_keepalive_holds_the_session_open():
    async def main():
        async with SonioxSimulator(api_key=PROVIDER_KEY, idle_timeout=0.3) as sim:
            async with connect(sim.listen_url, additional_headers=HEADERS) as ws:
                await ws.send(json.dumps(START))
                for _ in range(3):
                    await ws.send('{"type":"keepalive"}')
                    await asyncio.sleep(0.15)
                await ws.send(b"")
                frames = [f async for f in ws]
            (record,) = await sim.wait_finished(1)
        return frames, record

    frames, record = run("asyncio", main)
    assert json.loads(frames[-1]) == {"tokens": [], "final_audio_proc_ms": 0, "total_audio_proc_ms": 0,
                                      "finished": True}
    assert record.control_types[1:] == ["keepalive"] * 3


@pytest.mark.parametrize("kind", ["ogg_opus", "webm"])
def test_container_audio_is_sniffed_and_measured(kind):
    pcm = fixtures_opus.speech_like(2.0)
    data = fixtures_opus.ogg_opus(pcm) if kind == "ogg_opus" else fixtures_opus.webm_opus(pcm)

    async def main():
        async with SonioxSimulator(api_key=PROVIDER_KEY, script=SCRIPT) as sim:
            frames = await raw_session(sim, {"model": "stt-rt-v5", "audio_format": "auto"}, chunks(data, 1000))
            bad = await raw_session(sim, {"model": "stt-rt-v5", "audio_format": "ogg"}, [b"OggS" + bytes(60)])
            (record, _) = await sim.wait_finished(2)
        return frames, bad, record

    frames, bad, record = run("asyncio", main)
    assert record.audio_bytes == len(data) and record.audio_seconds == pytest.approx(2.0, abs=0.03)
    finals = "".join(t.text for f in frames for t in assert_conforms(f).tokens if t.is_final)
    assert finals == "Hello there. How"  # "How" ends at 1.8 s
    assert assert_conforms(bad[-1]).error_code == 400


def test_stall_and_hang_handshake():
    async def main():
        async with SonioxSimulator(api_key=PROVIDER_KEY, faults=Faults(stall_after_finals=0)) as sim:
            ws = await connect(sim.listen_url, additional_headers=HEADERS, ping_interval=None, write_limit=2**14)
            try:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.5):
                        for _ in range(1000):
                            await ws.send(bytes(32000))
            finally:
                ws.transport.abort()
            await sim.stop()
            stalled = sim.connections[0]
        sim = SonioxSimulator(api_key=PROVIDER_KEY, faults=Faults(hang_handshake=True))
        async with sim:
            with pytest.raises(TimeoutError):
                async with connect(sim.listen_url, open_timeout=0.3, additional_headers=HEADERS):
                    pass
        return stalled, sim.connections[0]

    stalled, hung = run("asyncio", main)
    assert stalled.audio_frames == 0 and not stalled.control
    assert hung.status in (None, 503)


def test_cli_runs_the_simulator():
    with simulator_cli("soniox", "cli-secret") as url:

        async def client():
            async with connect(url, additional_headers={"Authorization": "Bearer cli-secret"}) as ws:
                await ws.send(json.dumps({**START, "enable_endpoint_detection": True,
                                          "max_endpoint_delay_ms": 500}))
                for chunk in pcm_chunks(4.0):
                    await ws.send(chunk)
                await ws.send(b"")
                return [json.loads(m) async for m in ws]

        frames = run("asyncio", client)
    assert any(t["text"] == "<end>" for f in frames for t in f["tokens"])
    assert frames[-1]["finished"] is True
    assert simulator_class("soniox") is SonioxSimulator
