"""The ElevenLabs simulator over real loopback sockets: SDK conformance, the router end to end, quirks.

1. Every frame the simulator emits validates strictly against the ``elevenlabs`` SDK's own models (no
   missing field, no wrong type, no key the model does not know), and so does every message the adapter
   sends (``InputAudioChunkPayload``); the adapter's query matches the SDK's own URL builder.
2. The official SDK client (``AsyncElevenLabs(...).speech_to_text.realtime``, pointed at the simulator
   through its ``base_url``: no patching) runs a whole session.
3. The real router (``tests/integration/harness.py``) runs sessions through the simulator on asyncio and
   uvloop: PCM, mu-law, Ogg/Opus; partials, diarization, raw mode, a failure, keepalive; and the
   ElevenLabs quirks: the manual commit on finalize and the with-timestamps twin delivered once.
4. The simulator's handshake checks, protocol checks and failure injection behave as documented.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from urllib.parse import parse_qs, urlsplit

import pydantic
import fixtures_opus
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from routeraudio.config import ListenParams
from routeraudio.providers.elevenlabs import ElevenLabsAdapter
from routeraudio.testing import simulator_class
from routeraudio.testing.base import Faults, Script
from routeraudio.testing.elevenlabs import ElevenLabsSimulator

from .harness import LOOPS, PROVIDER_KEY, listen_url, pcm_chunks, router, run, session, simulator_cli

from elevenlabs import AsyncElevenLabs, AudioFormat, CommitStrategy, RealtimeEvents  # noqa: E402
from elevenlabs.realtime.scribe import ScribeRealtime  # noqa: E402
from elevenlabs.types import (CommittedTranscriptPayload, CommittedTranscriptWithTimestampsPayload,  # noqa: E402
                              DiarizedTranscript, InputAudioChunkPayload, PartialTranscriptPayload,
                              ScribeAuthErrorPayload, ScribeChunkSizeExceededErrorPayload, ScribeInputErrorPayload,
                              ScribeInsufficientAudioActivityErrorPayload, ScribeInvalidRequestError,
                              ScribeTranscriberErrorPayload, SessionStartedPayload, SpeakersMerged)

MODELS = {"session_started": SessionStartedPayload, "partial_transcript": PartialTranscriptPayload,
          "committed_transcript": CommittedTranscriptPayload,
          "committed_transcript_with_timestamps": CommittedTranscriptWithTimestampsPayload,
          "diarized_transcript": DiarizedTranscript, "speakers_merged": SpeakersMerged,
          "auth_error": ScribeAuthErrorPayload, "invalid_request": ScribeInvalidRequestError,
          "input_error": ScribeInputErrorPayload, "chunk_size_exceeded": ScribeChunkSizeExceededErrorPayload,
          "insufficient_audio_activity": ScribeInsufficientAudioActivityErrorPayload,
          "transcriber_error": ScribeTranscriberErrorPayload}
TEXT = "Hello there. How are you today? Fine thanks."
WORDS = ["Hello", "there.", "How", "are", "you", "today?", "Fine", "thanks."]


def script(speakers: int = 1) -> Script:
    return Script.from_text(TEXT, start=0.2, word_s=0.25, gap_s=0.05, pause_s=0.8, speakers=speakers)


def sim(**kw) -> ElevenLabsSimulator:
    kw.setdefault("script", script())
    return ElevenLabsSimulator(api_key=PROVIDER_KEY, **kw)


PCM = dict(provider="elevenlabs", encoding="pcm_s16le", sample_rate=16000)
KEY = {"x-api-key": PROVIDER_KEY}


def _no_unknown_keys(value) -> None:
    if isinstance(value, pydantic.BaseModel):
        assert not value.model_extra, f"{type(value).__name__} has keys the SDK does not know: {value.model_extra}"
        for name in type(value).model_fields:
            _no_unknown_keys(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for v in value:
            _no_unknown_keys(v)


def assert_conforms(text: str) -> str:
    obj = json.loads(text)
    kind = obj["message_type"]
    _no_unknown_keys(MODELS[kind].model_validate(obj, strict=True))
    return kind


def assert_adapter_message_conforms(text: str) -> dict:
    obj = json.loads(text)
    _no_unknown_keys(InputAudioChunkPayload.model_validate(obj, strict=True))
    base64.b64decode(obj["audio_base_64"], validate=True)
    return obj


def words_of(out) -> list[str]:
    return [w["text"] for m in out.finals for w in (m["words"] or [])]


def ogg_opus(seconds: float) -> bytes:
    return fixtures_opus.ogg_opus(fixtures_opus.speech_like(seconds))  # the project's Opus fixtures


async def collect(ws, until=None) -> list[dict]:
    """Messages until the server closes (any code) or ``until(message)`` holds."""
    out: list[dict] = []
    try:
        async for m in ws:
            out.append(json.loads(m))
            if until is not None and until(out[-1]):
                break
    except ConnectionClosed:
        pass
    return out


# -- 1. conformance ---------------------------------------------------------------------------------
def test_every_frame_both_ways_conforms_to_the_sdk_models(tmp_path):
    async def main():
        async with sim(script=script(2), keep_frames=True) as s, router(tmp_path, {"elevenlabs": s.listen_url}) as r:
            on = await session(listen_url(r, **PCM, partial_results=True, diarize=True), pcm_chunks(5.0),
                               headers=KEY, controls={100: json.dumps({"type": "finalize"})})
            mulaw = await session(listen_url(r, provider="elevenlabs", encoding="pcm_mulaw", sample_rate=8000,
                                             endpointing=0), [b"\xff" * 800] * 30, headers=KEY)
            for refused in ("model_id=nope", "audio_format=pcm_11025", "commit_strategy=sometimes"):
                async with connect(f"{s.listen_url}?{refused}", additional_headers={"xi-api-key": PROVIDER_KEY}) as ws:
                    assert await collect(ws)
            async with connect(s.listen_url + "?model_id=scribe_v2_realtime") as ws:
                assert await collect(ws)
            return on, mulaw, s.connections

    on, mulaw, records = run("uvloop", main)
    assert on.code == mulaw.code == 1000
    kinds = [assert_conforms(f) for rec in records for f in rec.sent]
    assert {"session_started", "partial_transcript", "committed_transcript", "committed_transcript_with_timestamps",
            "diarized_transcript", "invalid_request", "auth_error"} <= set(kinds)
    sent = [assert_adapter_message_conforms(f) for rec in records[:2] for f in rec.info["frames"]]
    assert sum(m["commit"] for m in sent) == 3  # one finalize, two closes
    assert {m["sample_rate"] for m in sent} == {16000, 8000}
    assert records[1].param("audio_format") == "ulaw_8000" and records[1].audio_bytes == 24000


def test_adapter_query_matches_the_sdk_url_builder():
    p = ListenParams.from_query({**{k: str(v) for k, v in PCM.items()}, "endpointing": "800", "diarize": "true"})
    ours = parse_qs(urlsplit(ElevenLabsAdapter(p, "k", "wss://api.elevenlabs.io/v1/speech-to-text/realtime")
                             .connect_request().url).query)
    sdk_url = ScribeRealtime("k")._build_websocket_url(
        model_id="scribe_v2_realtime", audio_format="pcm_16000", commit_strategy="vad", vad_silence_threshold_secs=0.8,
        language_code="en", include_timestamps=True)
    sdk = parse_qs(urlsplit(sdk_url).query)
    assert sdk_url.startswith("wss://api.elevenlabs.io/v1/speech-to-text/realtime?")
    assert ours.pop("diarize") == ["true"]  # the one flag the SDK's builder does not know (UNCONFIRMED name)
    assert ours == sdk


# -- 2. the official SDK client ---------------------------------------------------------------------
def test_official_sdk_client_runs_a_whole_session():
    async def main():
        async with sim() as s:
            client = AsyncElevenLabs(api_key=PROVIDER_KEY, base_url=s.url.replace("ws://", "http://"))
            conn = await client.speech_to_text.realtime.connect({
                "model_id": "scribe_v2_realtime", "audio_format": AudioFormat.PCM_16000, "sample_rate": 16000,
                "commit_strategy": CommitStrategy.VAD, "vad_silence_threshold_secs": 0.5,
                "include_timestamps": True, "language_code": "en"})
            got: list[tuple[str, object]] = []
            both = asyncio.Event()  # the VAD's commit and the SDK's own
            for event in RealtimeEvents:
                conn.on(event, lambda *a, e=event: got.append((e.value, a)))
            conn.on(RealtimeEvents.COMMITTED_TRANSCRIPT_WITH_TIMESTAMPS,
                    lambda d: both.set() if sum(n == "committed_transcript" for n, _ in got) == 2 else None)
            for chunk in pcm_chunks(3.0, frame_ms=100):
                await conn.send({"audio_base_64": base64.b64encode(chunk).decode()})
            await conn.commit()
            await asyncio.wait_for(both.wait(), 5)
            await conn.close()
            (record,) = await s.wait_finished(1)
            return got, record

    got, record = run("asyncio", main)
    names = [name for name, _ in got]
    assert "error" not in names and not any(n.endswith("_error") for n in names)
    known = {e.value for e in RealtimeEvents}
    assert {json.loads(f)["message_type"] for f in record.sent} <= known  # nothing the SDK does not recognise
    finals = [a[0]["text"] for n, a in got if n == "committed_transcript_with_timestamps"]
    assert finals == ["Hello there.", "How are you today?"]  # the second by the SDK's own commit
    assert names[0] == "session_started" and names[-1] == "close"
    assert record.header("xi-api-key") == PROVIDER_KEY and record.info["commits"] == 1
    assert (record.close_code, record.closed_by) == (1000, "client") and record.audio_seconds == 3.0


# -- 3. the router end to end ----------------------------------------------------------------------
@pytest.mark.parametrize("loop", LOOPS)
def test_router_sessions_per_encoding(loop, tmp_path):
    ogg = ogg_opus(5.0)

    async def main():
        async with sim() as s, router(tmp_path, {"elevenlabs": s.listen_url}) as r:
            outs = {
                "pcm": await session(listen_url(r, **PCM), pcm_chunks(5.0), headers=KEY),
                "mulaw": await session(listen_url(r, provider="elevenlabs", encoding="pcm_mulaw", sample_rate=8000),
                                       [b"\x7f" * 160] * 250, headers=KEY),
                "ogg": await session(listen_url(r, provider="elevenlabs", encoding="ogg_opus", sample_rate=48000),
                                     [ogg[i:i + 2000] for i in range(0, len(ogg), 2000)], headers=KEY),
            }
            return outs, s.connections

    outs, records = run(loop, main)
    for name, out in outs.items():
        assert out.code == 1000, (name, out.messages)
        assert words_of(out) == WORDS, name  # every word once, in order, with its times
        assert [m["transcript"] for m in out.finals] == ["Hello there.", "How are you today?", "Fine thanks."]
        assert out.types.count("turn_end") == 3 and out.types[-1] == "turn_end"
        assert all("is_partial" not in m for m in out.transcripts)
        for a, b in zip(out.finals, out.finals[1:]):
            assert a["end_time"] <= b["start_time"]
    pcm, mulaw, ogg_rec = records
    assert pcm.header("xi-api-key") == PROVIDER_KEY and pcm.header("authorization") is None
    assert (pcm.param("audio_format"), mulaw.param("audio_format"), ogg_rec.param("audio_format")) == (
        "pcm_16000", "ulaw_8000", "pcm_16000")
    assert pcm.param("commit_strategy") == "vad" and pcm.param("vad_silence_threshold_secs") == "0.5"
    assert pcm.audio_bytes == sum(map(len, pcm_chunks(5.0))) and mulaw.audio_bytes == 40000
    assert ogg_rec.audio_seconds == pytest.approx(5.0, abs=0.05)
    assert all(rec.info["commits"] == 1 and rec.closed_by == "client" for rec in records)


@pytest.mark.parametrize("loop", LOOPS)
def test_partials_diarization_and_raw_mode(loop, tmp_path):
    async def main():
        async with sim(script=script(2)) as s, router(tmp_path, {"elevenlabs": s.listen_url}) as r:
            on = await session(listen_url(r, **PCM, partial_results=True, diarize=True), pcm_chunks(5.0), headers=KEY)
            raw = await session(listen_url(r, **PCM, parse_json=False), pcm_chunks(3.0), headers=KEY, raw_text=True)
            return on, raw, s.connections

    on, raw, (rec_on, rec_raw) = run(loop, main)
    assert on.code == raw.code == 1000
    partials = [m for m in on.transcripts if m["is_partial"]]
    assert [m["transcript"] for m in partials][:2] == ["Hello", "Hello there."]
    assert all(m["words"] is None for m in partials) and all(m["is_partial"] is False for m in on.finals)
    assert [{w["speaker"] for w in m["words"]} for m in on.finals] == [{"0"}, {"1"}, {"0"}]
    assert rec_on.param("diarize") == "true"
    # byte for byte what the "provider" sent, in order; session_started, sent right after the upgrade, can
    # be lost by the driver (frames that arrive with the 101 response are dropped: see the report)
    assert raw.messages == rec_raw.sent[len(rec_raw.sent) - len(raw.messages):]
    assert len(raw.messages) >= len(rec_raw.sent) - 1


@pytest.mark.parametrize("loop", LOOPS)
def test_provider_failure_mid_stream(loop, tmp_path):
    async def main():
        faults = Faults(fail_after_finals=2, fail_code=1011, fail_reason="transcriber crashed")
        async with sim(faults=faults) as s, router(tmp_path, {"elevenlabs": s.listen_url}) as r:
            return await session(listen_url(r, **PCM), pcm_chunks(5.0), headers=KEY, pace=0.001)

    out = run(loop, main)
    assert out.code == 4040
    assert [m["transcript"] for m in out.finals] == ["Hello there.", "How are you today?"]
    assert out.types[-1] == "error" and out.types.count("error") == 1
    err = out.errors[0]
    assert err["provider"] == "elevenlabs" and err["provider_code"] == "transcriber_error"
    assert err["provider_message"] == "transcriber crashed" and "retry" in err["error"]


def test_keepalive_during_silence(tmp_path, monkeypatch):
    caps = dataclasses.replace(ElevenLabsAdapter.CAPABILITIES, keepalive_interval=0.1)
    monkeypatch.setattr(ElevenLabsAdapter, "CAPABILITIES", caps)

    async def pause(ws):
        for _ in range(6):  # 0.9 s without audio: more than the simulator's 0.4 s idle limit
            await ws.send(json.dumps({"type": "keep_alive"}))
            await asyncio.sleep(0.15)
        for chunk in pcm_chunks(3.0):
            await ws.send(chunk)

    async def main():
        async with sim(idle_timeout=0.4) as s, router(tmp_path, {"elevenlabs": s.listen_url}) as r:
            kept = await session(listen_url(r, **PCM), pcm_chunks(2.0), headers=KEY, after_send=pause)
            return kept, s.connections[0]

    kept, rec = run("uvloop", main)
    assert kept.code == 1000, kept.messages
    assert rec.info["keepalives"] >= 3 and words_of(kept) == WORDS  # the script runs on audio time
    assert WORDS[2] in kept.finals[1]["transcript"] and kept.finals[1]["words"][0]["start_time"] == 1.55


def test_refused_key_reaches_the_client(tmp_path):
    async def main():
        async with sim(faults=Faults(reject_auth=True)) as s, router(
                tmp_path, {"elevenlabs": s.listen_url}, finalize_timeout=1.0) as r:
            return await session(listen_url(r, **PCM), pcm_chunks(0.2), headers=KEY), s.connections[0]

    refused, rec = run("uvloop", main)
    assert rec.close_code == 1008 and json.loads(rec.sent[0])["message_type"] == "auth_error"
    assert refused.code == 4040 and refused.errors[0]["provider_code"] == "auth_error"
    assert "API key" in refused.errors[0]["error"]


# -- the ElevenLabs quirks --------------------------------------------------------------------------
@pytest.mark.parametrize("loop", LOOPS)
def test_quirk_manual_commit_on_finalize(loop, tmp_path):
    """endpointing=0: manual commits; the client's finalize is a commit, so its words arrive before the end."""
    steps = Script.from_text("one two three four five six", start=0.1, word_s=0.3, gap_s=0.05, pause_s=0.5)

    async def main():
        async with sim(script=steps) as s, router(tmp_path, {"elevenlabs": s.listen_url}) as r:
            url = listen_url(r, **PCM, endpointing=0)

            async def finalize_last(ws):
                await ws.send(json.dumps({"type": "finalize"}))
            with_finalize = await session(url, pcm_chunks(1.2), headers=KEY, after_send=finalize_last)
            mid = await session(url, pcm_chunks(2.2), headers=KEY, controls={60: json.dumps({"type": "finalize"})})
            without = await session(url, pcm_chunks(2.2), headers=KEY)
            return with_finalize, mid, without, s.connections

    with_finalize, mid, without, records = run(loop, main)
    assert all(o.code == 1000 for o in (with_finalize, mid, without))
    # one final per commit: the finalize's (words heard by 1.2 s) and the close's
    assert [m["transcript"] for m in mid.finals] == ["one two three", "four five six"]
    assert [m["transcript"] for m in without.finals] == ["one two three four five six"]
    assert "turn_end" not in mid.types + without.types  # no VAD, no turn ends
    rec_mid, rec_without = records[1], records[2]
    assert rec_mid.param("commit_strategy") == "manual" and "vad_silence_threshold_secs" not in rec_mid.query
    assert rec_mid.info["commits"] == 2 and rec_without.info["commits"] == 1
    commits = [json.loads(f) for _, f in rec_mid.control if json.loads(f)["commit"]]
    assert commits == [{"message_type": "input_audio_chunk", "audio_base_64": "", "commit": True,
                        "sample_rate": 16000}] * 2
    # finalize with nothing new since the last commit is not sent: ElevenLabs throttles commits
    assert records[0].info["commits"] == 1 and [m["transcript"] for m in with_finalize.finals] == ["one two three"]


def test_quirk_timestamps_twin_delivered_once(tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"elevenlabs": s.listen_url}) as r:
            out = await session(listen_url(r, **PCM), pcm_chunks(5.0), headers=KEY)
            return out, s.connections[0]

    out, rec = run("uvloop", main)
    kinds = [json.loads(f)["message_type"] for f in rec.sent]
    committed = [json.loads(f)["text"] for f in rec.sent if json.loads(f)["message_type"] == "committed_transcript"]
    assert kinds.count("committed_transcript") == kinds.count("committed_transcript_with_timestamps") == 4
    assert [m["transcript"] for m in out.finals] == [t for t in committed if t]  # each segment once
    assert all(m["words"] for m in out.finals)  # ...with the twin's words


# -- 4. simulator behaviour -------------------------------------------------------------------------
async def first_messages(url: str, headers: dict, send: list | None = None, until=None
                         ) -> tuple[list[dict], int | None]:
    async with connect(url, additional_headers=headers) as ws:
        for frame in send or []:
            await ws.send(frame)
        msgs = await collect(ws, until)
    return msgs, ws.close_code


def chunk(audio: bytes, **extra) -> str:
    return json.dumps({"message_type": "input_audio_chunk", "audio_base_64": base64.b64encode(audio).decode(),
                       "commit": False, "sample_rate": 16000, **extra})


@pytest.mark.parametrize("query,headers,kind,text", [
    ("model_id=scribe_v2_realtime", {}, "auth_error", "authenticated"),
    ("model_id=scribe_v2_realtime", {"xi-api-key": "wrong"}, "auth_error", "authenticated"),
    ("model_id=scribe_v2_realtime", {"Authorization": f"Bearer {PROVIDER_KEY}"}, "auth_error", "authenticated"),
    ("audio_format=pcm_16000", {"xi-api-key": PROVIDER_KEY}, "invalid_request", "model_id is required"),
    ("model_id=scribe_v2_realtime&audio_format=pcm_16k", {"xi-api-key": PROVIDER_KEY}, "invalid_request",
     "audio_format"),
    ("model_id=scribe_v2_realtime&vad_silence_threshold_secs=0.1", {"xi-api-key": PROVIDER_KEY}, "invalid_request",
     "between 0.3 and 3.0"),
    ("model_id=scribe_v2_realtime&language_code=en-US", {"xi-api-key": PROVIDER_KEY}, "invalid_request",
     "language_code"),
    ("model_id=scribe_v2_realtime&include_timestamps=True", {"xi-api-key": PROVIDER_KEY}, "invalid_request",
     "include_timestamps"),
    ("model_id=scribe_v2_realtime&encoding=pcm_16000", {"xi-api-key": PROVIDER_KEY}, "invalid_request", "encoding"),
])
def test_handshake_is_checked_like_elevenlabs(query, headers, kind, text):
    async def main():
        async with sim() as s:
            return await first_messages(f"{s.listen_url}?{query}", headers)

    msgs, code = run("asyncio", main)
    assert len(msgs) == 1 and msgs[0]["message_type"] == kind and text in msgs[0]["error"]
    assert code == 1008
    assert_conforms(json.dumps(msgs[0]))


def test_token_query_parameter_and_unknown_path():
    async def main():
        async with sim() as s:
            ok, _ = await first_messages(f"{s.listen_url}?model_id=scribe_v2_realtime&token={PROVIDER_KEY}", {},
                                         until=lambda m: True)
            try:
                async with connect(f"{s.url}/v1/speech-to-text/stream?model_id=x"):
                    pass
            except InvalidStatus as exc:
                return ok, exc.response.status_code

    ok, status = run("asyncio", main)
    assert ok[0]["message_type"] == "session_started" and status == 404


@pytest.mark.parametrize("frames,kind,text", [
    ([b"\x00\x00"], "input_error", "Binary"),
    (["not json"], "input_error", "JSON"),
    (['{"message_type":"commit"}'], "input_error", "input_audio_chunk"),
    ([chunk(b"\0\0" * 160, sample_rate=8000)], "input_error", "sample_rate"),
    ([chunk(b"\0\0" * 160), chunk(b"\0\0" * 160, previous_text="context")], "input_error", "previous_text"),
    ([chunk(b"\0\0\0")], "input_error", "whole"),
    ([chunk(b"\0\0" * 16001)], "chunk_size_exceeded", "at most"),
    ([json.dumps({"message_type": "input_audio_chunk", "audio_base_64": "%%%", "commit": False})], "input_error",
     "base64"),
])
def test_protocol_violations_are_refused(frames, kind, text):
    async def main():
        async with sim() as s:
            return await first_messages(f"{s.listen_url}?model_id=scribe_v2_realtime",
                                        {"xi-api-key": PROVIDER_KEY}, frames)

    msgs, code = run("asyncio", main)
    assert msgs[0]["message_type"] == "session_started"
    assert msgs[-1]["message_type"] == kind and text in msgs[-1]["error"] and code == 1008


def test_first_chunk_may_carry_previous_text_and_idle_sessions_end():
    async def main():
        async with sim(idle_timeout=0.3) as s:
            return await first_messages(f"{s.listen_url}?model_id=scribe_v2_realtime",
                                        {"xi-api-key": PROVIDER_KEY}, [chunk(b"\0\0" * 160, previous_text="Hi")])

    msgs, code = run("asyncio", main)
    assert [m["message_type"] for m in msgs] == ["session_started", "insufficient_audio_activity"] and code == 1008


def test_ignored_commits_stall_and_hang():
    async def main():
        url_q = "?model_id=scribe_v2_realtime&include_timestamps=true"
        commit = json.dumps({"message_type": "input_audio_chunk", "audio_base_64": "", "commit": True,
                             "sample_rate": 16000})
        async with sim(faults=Faults(ignore_finalize=True), idle_timeout=0.3) as s:
            ignored, _ = await first_messages(s.listen_url + url_q, {"xi-api-key": PROVIDER_KEY},
                                              [chunk(b"\0\0" * 8000), commit])
        async with sim(faults=Faults(stall_after_finals=0)) as s:
            ws = await connect(s.listen_url + url_q, additional_headers={"xi-api-key": PROVIDER_KEY},
                               ping_interval=None, write_limit=2**14)
            try:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.5):
                        for _ in range(1000):
                            await ws.send(chunk(b"\0\0" * 16000))
            finally:
                ws.transport.abort()
            for conn in s._server.connections:  # a stalled socket is not read: do not wait 10 s for its close
                conn.close_timeout = 0.1
            await s.stop()
            stalled = s.connections[0]
        async with sim(faults=Faults(hang_handshake=True)) as s:
            with pytest.raises(TimeoutError):
                async with connect(s.listen_url + url_q, open_timeout=0.3):
                    pass
        return ignored, stalled

    ignored, stalled = run("asyncio", main)
    assert [m["message_type"] for m in ignored] == ["session_started", "partial_transcript",
                                                    "insufficient_audio_activity"]
    assert stalled.audio_frames == 0 and stalled.finished.is_set()


def test_cli_runs_the_simulator():
    with simulator_cli("elevenlabs", "k1") as url:
        msgs, code = run("asyncio", first_messages, f"{url}?model_id=scribe_v2_realtime&commit_strategy=vad",
                         {"xi-api-key": "k1"}, [chunk(b"\0\0" * 8000)] * 8 + [
                             json.dumps({"message_type": "input_audio_chunk", "audio_base_64": "",
                                         "commit": True, "sample_rate": 16000})],
                         lambda m: m["message_type"] == "committed_transcript")
    assert simulator_class("elevenlabs") is ElevenLabsSimulator
    assert msgs[0]["message_type"] == "session_started"
    assert any(m["message_type"] == "committed_transcript" and m["text"] for m in msgs)
