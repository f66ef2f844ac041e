"""The Speechmatics simulator over real loopback sockets: conformance, the official SDK, the router.

1. Every frame the simulator emits, and every message the adapter sends, validates strictly against
   message models written from Speechmatics' AsyncAPI spec (``spec/realtime.yaml`` of
   ``speechmatics/docs``, 8783a7a) and against ``speechmatics-rt``'s own enums and dataclasses (the SDK
   has no validating models).
2. The official SDK client (``speechmatics.rt.AsyncClient``, pointed at the simulator by its ``url``
   argument, no patching) runs a whole session: connect, stream, finalize, close.
3. The simulator checks the handshake and the protocol as Speechmatics does.
4. End to end through the real router, on asyncio and uvloop: one session per encoding, partials,
   raw mode, a mid-stream failure, and the quirk: audio held until ``RecognitionStarted``, one
   ``AudioAdded`` per chunk, ``EndOfStream.last_seq_no`` = chunks sent.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, ConfigDict, Field
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from routeraudio.testing import simulator_class
from routeraudio.testing.base import Faults, Script
from routeraudio.testing.speechmatics import SpeechmaticsSimulator

from .harness import LOOPS, PROVIDER_KEY, listen_url, pcm_chunks, router, run, session, simulator_cli

import speechmatics.rt  # noqa: E402,F401  - a declared test dependency: fail, never skip
from speechmatics.rt import (AsyncClient, AudioEncoding, AudioFormat, ClientMessageType,  # noqa: E402
                             ConversationConfig, ServerMessageType, SpeakerDiarizationConfig,
                             TranscriptionConfig, TranscriptResult)

KEY = PROVIDER_KEY
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXT = "Hello there. How are you today? Fine thanks."
SCRIPT = Script.from_text(TEXT, start=0.2, word_s=0.25, gap_s=0.05, pause_s=0.8, speakers=2)
WORDS = ["hello", "there", "how", "are", "you", "today", "fine", "thanks"]


# -- 1. message models from the spec (strict, no unknown keys) --------------------------------------
class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LanguagePackInfo(_M):
    word_delimiter: str
    language_description: Optional[str] = None
    writing_direction: Optional[Literal["left-to-right", "right-to-left"]] = None
    itn: Optional[bool] = None
    adapted: Optional[bool] = None


class RecognitionStarted(_M):
    message: Literal["RecognitionStarted"]
    orchestrator_version: Optional[str] = None
    id: Optional[str] = None
    language_pack_info: Optional[LanguagePackInfo] = None
    channel_ids: Optional[list[str]] = None


class AudioAdded(_M):
    message: Literal["AudioAdded"]
    seq_no: int


class Alternative(_M):
    content: str
    confidence: float
    language: Optional[str] = None
    speaker: Optional[str] = None
    tags: Optional[list[Literal["disfluency", "profanity"]]] = None


class Result(_M):
    type: Literal["word", "punctuation"]
    start_time: float
    end_time: float
    attaches_to: Optional[Literal["next", "previous", "none", "both"]] = None
    is_eos: Optional[bool] = None
    alternatives: Optional[list[Alternative]] = None
    channel: Optional[str] = None
    score: Optional[float] = Field(None, ge=0, le=1)
    volume: Optional[float] = Field(None, ge=0, le=100)


class Metadata(_M):
    start_time: float
    end_time: float
    transcript: str


class AddTranscript(_M):
    message: Literal["AddTranscript", "AddPartialTranscript"]
    metadata: Metadata
    results: list[Result]
    format: Optional[str] = None
    channel: Optional[str] = None
    forced: Optional[bool] = None


class EouMetadata(_M):
    start_time: Optional[float] = None
    end_time: Optional[float] = None


class EndOfUtterance(_M):
    message: Literal["EndOfUtterance"]
    metadata: EouMetadata
    channel: Optional[str] = None
    forced: Optional[bool] = None


class EndOfTranscript(_M):
    message: Literal["EndOfTranscript"]


class Info(_M):
    message: Literal["Info"]
    type: Literal["recognition_quality", "model_redirect", "deprecated", "concurrent_session_usage"]
    reason: str
    code: Optional[int] = None
    seq_no: Optional[int] = None
    quality: Optional[str] = None
    usage: Optional[float] = None
    quota: Optional[float] = None
    last_updated: Optional[str] = None


class Error(_M):
    message: Literal["Error"]
    type: Literal["invalid_message", "invalid_model", "invalid_config", "invalid_audio_type", "invalid_output_format",
                  "not_authorised", "insufficient_funds", "not_allowed", "job_error", "data_error", "buffer_error",
                  "protocol_error", "quota_exceeded", "timelimit_exceeded", "idle_timeout", "session_timeout",
                  "session_transfer", "unknown_error"]
    reason: str
    code: Optional[int] = None
    seq_no: Optional[int] = None


class SpeakersResult(_M):
    message: Literal["SpeakersResult"]
    speakers: list[dict]


SERVER = {m.model_fields["message"].annotation.__args__[0]: m for m in
          (RecognitionStarted, AudioAdded, EndOfUtterance, EndOfTranscript, Info, Error, SpeakersResult)}
SERVER.update({"AddTranscript": AddTranscript, "AddPartialTranscript": AddTranscript})


class AudioFormatRaw(_M):
    type: Literal["raw"]
    encoding: Literal["pcm_f32le", "pcm_s16le", "mulaw"]
    sample_rate: int


class PunctuationOverrides(_M):
    permitted_marks: Optional[list[str]] = None
    sensitivity: Optional[float] = Field(None, ge=0, le=1)


class ConversationCfg(_M):
    end_of_utterance_silence_trigger: Optional[float] = Field(None, ge=0, le=2)


class TranscriptionCfg(_M):
    language: str
    model: Optional[Literal["standard", "enhanced", "melia-1"]] = None
    enable_partials: Optional[bool] = None
    max_delay: Optional[float] = Field(None, ge=0.7, le=4)
    max_delay_mode: Optional[Literal["flexible", "fixed"]] = None
    diarization: Optional[Literal["none", "speaker", "channel", "channel_and_speaker"]] = None
    speaker_diarization_config: Optional[dict] = None
    punctuation_overrides: Optional[PunctuationOverrides] = None
    conversation_config: Optional[ConversationCfg] = None
    output_locale: Optional[str] = None
    enable_entities: Optional[bool] = None


class StartRecognition(_M):
    message: Literal["StartRecognition"]
    audio_format: AudioFormatRaw
    transcription_config: TranscriptionCfg


class ForceEndOfUtterance(_M):
    message: Literal["ForceEndOfUtterance"]
    timestamp: Optional[float] = Field(None, ge=0)
    channel: Optional[str] = None


class EndOfStream(_M):
    message: Literal["EndOfStream"]
    last_seq_no: int


CLIENT = {"StartRecognition": StartRecognition, "ForceEndOfUtterance": ForceEndOfUtterance,
          "EndOfStream": EndOfStream}


def assert_server_conforms(text: str) -> dict:
    """Validate one simulator frame against the spec model of its type and the SDK's own view of it."""
    obj = json.loads(text)
    kind = obj["message"]
    assert ServerMessageType(kind)  # the SDK knows the message
    SERVER[kind].model_validate(obj, strict=True)
    if kind in ("AddTranscript", "AddPartialTranscript"):
        result = TranscriptResult.from_message(obj)
        assert result.is_final == (kind == "AddTranscript")
        assert result.metadata.transcript == obj["metadata"]["transcript"]
    return obj


def assert_client_conforms(text: str) -> dict:
    """Validate one message the adapter sent against the spec model and the SDK's dataclasses."""
    obj = json.loads(text)
    kind = obj["message"]
    assert ClientMessageType(kind)
    CLIENT[kind].model_validate(obj, strict=True)
    if kind == "StartRecognition":
        cfg = dict(obj["transcription_config"])
        conv = cfg.pop("conversation_config", None)
        sdk_cfg = TranscriptionConfig(**cfg, conversation_config=ConversationConfig(**conv) if conv else None)
        assert json.loads(json.dumps(sdk_cfg.to_dict())) == obj["transcription_config"]  # nothing the SDK lacks
        fmt = obj["audio_format"]
        sdk_fmt = AudioFormat(encoding=AudioEncoding(fmt["encoding"]), sample_rate=fmt["sample_rate"])
        assert json.loads(json.dumps(sdk_fmt.to_dict())) == fmt
    return obj


def _sim(**kw) -> SpeechmaticsSimulator:
    kw.setdefault("script", SCRIPT)
    kw.setdefault("start_delay", 0.1)
    return SpeechmaticsSimulator(api_key=KEY, **kw)


def start_msg(**cfg) -> dict:
    fmt = cfg.pop("audio_format", {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000})
    tc = {"language": "en", "model": "enhanced", "enable_partials": True, "max_delay": 1.0, "diarization": "speaker",
          "conversation_config": {"end_of_utterance_silence_trigger": 0.5}}
    tc.update(cfg)
    return {"message": "StartRecognition", "audio_format": fmt, "transcription_config": tc}


async def talk(url: str, steps: list, headers: dict | None = None, timeout: float = 5.0) -> tuple[list[dict], int, str]:
    """Play ``steps`` (dict: JSON text, bytes: audio, ("wait", kind): until that message came, ("close",):
    close now) against the simulator; collect its messages until it closes (or we do, after ``timeout``)."""
    got: list[dict] = []
    async with connect(url, additional_headers=AUTH if headers is None else headers) as ws:
        async def reader():
            try:
                async for frame in ws:
                    got.append(json.loads(frame))
            except ConnectionClosed:
                pass

        task = asyncio.create_task(reader())
        try:
            for step in steps:
                if step == ("close",):
                    timeout = 0
                    break
                if isinstance(step, tuple):
                    while not any(m["message"] == step[1] for m in got):
                        await asyncio.sleep(0.005)
                else:
                    await ws.send(json.dumps(step) if isinstance(step, dict) else step)
            if timeout:
                await asyncio.wait_for(asyncio.shield(task), timeout)
        except (TimeoutError, ConnectionClosed):
            pass
        await ws.close()
        await task
        return got, ws.protocol.close_code, ws.protocol.close_reason


def test_every_frame_conforms_to_the_spec_and_sdk():
    async def main():
        async with _sim(start_delay=0.0) as sim:
            audio = pcm_chunks(8.0, frame_ms=100)
            steps = [start_msg(), ("wait", "RecognitionStarted"), *audio[:25],
                     {"message": "ForceEndOfUtterance", "timestamp": 2.5}, {"message": "GetSpeakers"}, *audio[25:],
                     {"message": "EndOfStream", "last_seq_no": len(audio)}, ("wait", "EndOfTranscript"), ("close",)]
            frames, code, _ = await talk(sim.listen_url, steps)
            (record,) = await sim.wait_finished(1)
        return frames, code, record

    frames, code, record = run("asyncio", main)
    kinds = [assert_server_conforms(t)["message"] for t in record.sent]
    assert {"Info", "RecognitionStarted", "AudioAdded", "AddTranscript", "AddPartialTranscript", "EndOfUtterance",
            "SpeakersResult", "EndOfTranscript"} <= set(kinds)
    assert kinds[:3] == ["Info", "Info", "RecognitionStarted"] and kinds[-1] == "EndOfTranscript"
    assert [m["seq_no"] for m in frames if m["message"] == "AudioAdded"] == list(range(1, 81))
    forced = [m for m in frames if m.get("forced")]
    assert [m["message"] for m in forced][-1] == "EndOfUtterance" and forced[0]["message"] == "AddTranscript"
    finals = [m for m in frames if m["message"] == "AddTranscript"]
    assert any(not m["results"] for m in finals), "silence finals are empty AddTranscripts"
    speakers = {a["speaker"] for m in finals for r in m["results"] for a in r["alternatives"]}
    assert speakers == {"S1", "S2"}
    assert code == 1000 and record.closed_by == "client"


# -- 2. the official SDK client -----------------------------------------------------------------------
async def _sdk_session(url: str, chunks: list[bytes]) -> list[dict]:
    received: list[dict] = []
    client = AsyncClient(api_key=KEY, url=url)
    for kind in ServerMessageType:
        client.on(kind, received.append)
    all_acked = asyncio.Event()
    client.on(ServerMessageType.AUDIO_ADDED, lambda m: m["seq_no"] == len(chunks) and all_acked.set())
    async with client:
        await client.start_session(
            transcription_config=TranscriptionConfig(
                language="en", enable_partials=True, max_delay=1.0, diarization="speaker",
                speaker_diarization_config=SpeakerDiarizationConfig(max_speakers=2),
                conversation_config=ConversationConfig(end_of_utterance_silence_trigger=0.5)),
            audio_format=AudioFormat(encoding=AudioEncoding.PCM_S16LE, sample_rate=16000, chunk_size=3200))
        for chunk in chunks:
            await client.send_audio(chunk)
        await client.force_end_of_utterance()
        # speechmatics-rt 1.2.1 overwrites its chunk counter with each AudioAdded.seq_no: with acks
        # still in flight its EndOfStream.last_seq_no would be too small. Waiting for them is correct use.
        await asyncio.wait_for(all_acked.wait(), 5)
        await client.stop_session()
    return received


def test_official_sdk_client_runs_a_whole_session(caplog):
    async def main():
        async with _sim() as sim:
            received = await _sdk_session(sim.listen_url, pcm_chunks(5.0, frame_ms=100))
            (record,) = await sim.wait_finished(1)
        return received, record

    with caplog.at_level(logging.WARNING, logger="speechmatics"):
        received, record = run("asyncio", main)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    kinds = [m["message"] for m in received]
    assert kinds[:3] == ["Info", "Info", "RecognitionStarted"] and kinds[-1] == "EndOfTranscript"
    assert "Error" not in kinds and "Warning" not in kinds
    finals = [TranscriptResult.from_message(m) for m in received if m["message"] == "AddTranscript"]
    words = [r.alternatives[0].content for f in finals for r in f.results if r.type == "word"]
    assert [w.lower() for w in words] == WORDS
    assert kinds.count("EndOfUtterance") == 4  # three by silence, one forced
    assert record.status == 101 and record.header("authorization") == f"Bearer {KEY}"
    assert record.param("sm-sdk").startswith("python-rt-sdk")
    assert record.control_types == ["StartRecognition", "ForceEndOfUtterance", "EndOfStream"]
    assert json.loads(record.control[-1][1])["last_seq_no"] == record.audio_frames == record.info["acks"] == 50
    assert record.audio_seconds == 5.0 and (record.close_code, record.closed_by) == (1000, "client")


# -- 3. the simulator's own checks ------------------------------------------------------------------
async def _handshake(url: str, headers: dict) -> InvalidStatus | None:
    try:
        async with connect(url, additional_headers=headers):
            return None
    except InvalidStatus as exc:
        return exc


@pytest.mark.parametrize("path,headers,status", [
    ("/v2", {}, 401),
    ("/v2", {"Authorization": f"Token {KEY}"}, 401),
    ("/v2", {"Authorization": KEY}, 401),
    ("/v2", {"Authorization": "Bearer wrong"}, 401),
    ("/v2?jwt=wrong", {}, 401),
    ("/v1/listen", AUTH, 404),
    ("/v2?language=en", AUTH, 400),
    ("/v2", AUTH, None),
    ("/v2/", AUTH, None),
    ("/v2/en", AUTH, None),
    (f"/v2?jwt={KEY}", {}, None),
    ("/v2?sm-sdk=x&sm-app=y", AUTH, None),
])
def test_handshake_is_checked_like_speechmatics(path, headers, status):
    async def main():
        async with _sim() as sim:
            exc = await _handshake(sim.url + path, headers)
            (record,) = await sim.wait_finished(1)
        return exc, record

    exc, record = run("asyncio", main)
    if status is None:
        assert exc is None and record.status == 101
    else:
        assert exc is not None and exc.response.status_code == status == record.status


@pytest.mark.parametrize("first,kind,code", [
    (b"\x00\x00" * 160, "protocol_error", 1003),
    ("StartRecognition", "invalid_message", 1003),
    ({"message": "EndOfStream", "last_seq_no": 0}, "protocol_error", 1003),
    (start_msg(model="nova-3"), "invalid_model", 4004),
    (start_msg(language=""), "invalid_config", 1003),
    (start_msg(max_delay=0.2), "invalid_config", 1003),
    (start_msg(conversation_config={"end_of_utterance_silence_trigger": 2.5}), "invalid_config", 1003),
    (start_msg(endpointing=500), "invalid_config", 1003),
    (start_msg(audio_format={"type": "raw", "encoding": "opus", "sample_rate": 16000}), "invalid_audio_type", 1003),
    (start_msg(audio_format={"type": "raw", "encoding": "mulaw"}), "invalid_audio_type", 1003),
])
def test_start_recognition_is_checked(first, kind, code):
    async def main():
        async with _sim() as sim:
            return await talk(sim.listen_url, [first])

    frames, close_code, reason = run("asyncio", main)
    assert [m["message"] for m in frames] == ["Error"] and frames[0]["type"] == kind
    Error.model_validate(frames[0])
    assert close_code == code and reason == ("invalid_model" if code == 4004 else "protocol_error")


@pytest.mark.parametrize("early", [b"\x00\x00" * 160, {"message": "ForceEndOfUtterance"}])
def test_anything_before_recognition_started_is_refused(early):
    async def main():
        async with _sim(start_delay=0.5) as sim:
            return await talk(sim.listen_url, [start_msg(), ("wait", "Info"), early])

    frames, code, reason = run("asyncio", main)
    assert [m["message"] for m in frames] == ["Info", "Info", "Error"]
    assert frames[-1]["type"] == "protocol_error" and "before RecognitionStarted" in frames[-1]["reason"]
    assert (code, reason) == (1003, "protocol_error")


@pytest.mark.parametrize("last", [2, 4, 0])
def test_wrong_last_seq_no_is_refused(last):
    async def main():
        async with _sim(start_delay=0.0) as sim:
            steps = [start_msg(), ("wait", "RecognitionStarted"), *pcm_chunks(0.3, frame_ms=100),
                     {"message": "EndOfStream", "last_seq_no": last}]
            return await talk(sim.listen_url, steps)

    frames, code, reason = run("asyncio", main)
    assert [m["seq_no"] for m in frames if m["message"] == "AudioAdded"] == [1, 2, 3]
    assert frames[-1]["message"] == "Error" and frames[-1]["type"] == "protocol_error"
    assert f"last_seq_no is {last} but 3" in frames[-1]["reason"]
    assert "EndOfTranscript" not in [m["message"] for m in frames] and (code, reason) == (1003, "protocol_error")


def test_faults_and_idle_timeout():
    async def main():
        out = {}
        faults = Faults(ignore_finalize=True, ignore_close_stream=True)
        async with _sim(start_delay=0.0, faults=faults, idle_timeout=0.3) as sim:
            steps = [start_msg(), ("wait", "RecognitionStarted"), *pcm_chunks(0.3, frame_ms=100),
                     {"message": "ForceEndOfUtterance"}, {"message": "EndOfStream", "last_seq_no": 3}]
            out["ignored"] = await talk(sim.listen_url, steps)
            sim.faults = Faults(reject_auth=True)
            out["rejected"] = await _handshake(sim.listen_url, AUTH)
        async with SpeechmaticsSimulator(api_key=None, script=SCRIPT) as sim:
            out["any_key"] = await _handshake(sim.listen_url, {"Authorization": "Bearer anything"})
        return out

    out = run("asyncio", main)
    frames, code, reason = out["ignored"]
    assert not any(m.get("forced") for m in frames) and frames[-1]["message"] == "Error"
    assert frames[-1]["type"] == "idle_timeout" and (code, reason) == (1008, "policy_violation")
    assert out["rejected"].response.status_code == 401 and out["any_key"] is None


def test_cli_runs_a_simulator():
    with simulator_cli("speechmatics", "sm-cli-secret") as url:
        steps = [start_msg(), ("wait", "RecognitionStarted"), *pcm_chunks(3.0, frame_ms=100),
                 {"message": "EndOfStream", "last_seq_no": 30}, ("wait", "EndOfTranscript"), ("close",)]
        frames, code, _ = run("asyncio", talk, url, steps, {"Authorization": "Bearer sm-cli-secret"})
    assert any(m["message"] == "AddTranscript" and m["results"] for m in frames) and code == 1000
    assert simulator_class("speechmatics") is SpeechmaticsSimulator


# -- 4. end to end through the router ---------------------------------------------------------------
HDR = {"x-api-key": PROVIDER_KEY}


@pytest.fixture(scope="module")
def ogg_opus() -> bytes:
    import av as av
    import numpy as np

    rate, seconds = 48000, 5.0
    t = np.arange(int(rate * seconds)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def _audio(encoding: str, ogg: bytes) -> list[bytes]:
    if encoding == "pcm_s16le":
        return pcm_chunks(5.0)
    if encoding == "pcm_mulaw":
        return [b"\xff" * 160] * 250  # 5 s of mu-law silence at 8 kHz: the simulator keys off time
    return [ogg[i:i + 4000] for i in range(0, len(ogg), 4000)]


def _words(out) -> list[str]:
    return [w["text"].lower().strip(".,?!") for m in out.finals for w in (m["words"] or [])]


def _turns(out) -> list[tuple[str, set]]:
    """The finals between turn_ends, joined: (text, speakers) per turn."""
    turns, text, speakers = [], [], set()
    for m in out.messages:
        if m["type"] == "transcript" and not m.get("is_partial"):
            text.append(m["transcript"])
            speakers |= {w["speaker"] for w in m["words"]}
        elif m["type"] == "turn_end":
            turns.append((" ".join(text), speakers))
            text, speakers = [], set()
    assert not text, "every final is followed by its turn_end"
    return turns


SENTENCES = ["Hello there.", "How are you today?", "Fine thanks."]


def _control(record) -> list[dict]:
    return [assert_client_conforms(text) for _, text in record.control]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("encoding,rate,upstream", [("pcm_s16le", 16000, ("pcm_s16le", 16000)),
                                                    ("pcm_mulaw", 8000, ("mulaw", 8000)),
                                                    ("ogg_opus", 48000, ("pcm_s16le", 16000))])
def test_router_session_per_encoding(loop, encoding, rate, upstream, ogg_opus, tmp_path):
    async def main():
        async with _sim() as s, router(tmp_path, {"speechmatics": s.listen_url}) as r:
            url = listen_url(r, provider="speechmatics", encoding=encoding, sample_rate=rate)
            out = await session(url, _audio(encoding, ogg_opus), headers=HDR)
            (rec,) = await s.wait_finished(1)
            return out, rec

    out, rec = run(loop, main)
    assert out.code == 1000 and not out.errors, out.messages
    assert _words(out) == WORDS
    assert _turns(out) == [(t, {None}) for t in SENTENCES]  # each turn_end after the final it closes
    assert all("is_partial" not in m for m in out.finals)
    for a, b in zip(out.finals, out.finals[1:]):
        assert a["end_time"] <= b["start_time"]
    control = _control(rec)
    assert [m["message"] for m in control] == ["StartRecognition", "EndOfStream"]
    fmt = control[0]["audio_format"]
    assert (fmt["encoding"], fmt["sample_rate"]) == upstream
    assert control[0]["transcription_config"]["enable_partials"] is False  # partials only when asked
    assert rec.header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert control[-1]["last_seq_no"] == rec.audio_frames == rec.info["acks"]
    assert rec.audio_seconds == pytest.approx(5.0, abs=0.05)
    for text in rec.sent:
        assert_server_conforms(text)


def test_router_partials_and_diarization(tmp_path):
    async def main():
        async with _sim() as s, router(tmp_path, {"speechmatics": s.listen_url}) as r:
            url = listen_url(r, provider="speechmatics", encoding="pcm_s16le", sample_rate=16000,
                             partial_results=True, diarize=True, endpointing=300)
            return await session(url, pcm_chunks(5.0), headers=HDR), s.connections[0]

    out, rec = run("uvloop", main)
    assert out.code == 1000, out.messages
    partials = [m for m in out.transcripts if m["is_partial"]]
    assert partials and all(m["transcript"] for m in partials)
    assert _words(out) == WORDS
    assert _turns(out) == [(SENTENCES[0], {"S1"}), (SENTENCES[1], {"S2"}), (SENTENCES[2], {"S1"})]
    cfg = _control(rec)[0]["transcription_config"]
    assert cfg["enable_partials"] is True and cfg["diarization"] == "speaker"
    assert cfg["conversation_config"] == {"end_of_utterance_silence_trigger": 0.3}


def test_router_raw_mode(tmp_path):
    async def main():
        async with _sim() as s, router(tmp_path, {"speechmatics": s.listen_url}) as r:
            url = listen_url(r, provider="speechmatics", encoding="pcm_s16le", sample_rate=16000, parse_json=False)
            out = await session(url, pcm_chunks(3.0), headers=HDR, raw_text=True)
            (rec,) = await s.wait_finished(1)
            return out, rec

    out, rec = run("asyncio", main)
    assert out.code == 1000
    assert out.messages == rec.sent  # byte for byte what the "provider" sent, EndOfTranscript last
    assert json.loads(out.messages[-1]) == {"message": "EndOfTranscript"}


@pytest.mark.parametrize("loop", LOOPS)
def test_router_provider_failure_mid_stream(loop, tmp_path):
    async def main():
        faults = Faults(fail_after_finals=1, fail_code=4013, fail_reason="Job failed: simulated")
        async with _sim(faults=faults) as s, router(tmp_path, {"speechmatics": s.listen_url}) as r:
            url = listen_url(r, provider="speechmatics", encoding="pcm_s16le", sample_rate=16000)
            return await session(url, pcm_chunks(5.0), headers=HDR)

    out = run(loop, main)
    assert [m["transcript"] for m in out.finals] == ["Hello there."]
    assert out.types == ["transcript", "error"] and out.code == 4040
    err = out.errors[0]
    assert (err["provider"], err["provider_code"], err["provider_message"]) == (
        "speechmatics", "job_error", "Job failed: simulated")


def test_router_provider_never_sends_end_of_transcript(tmp_path):
    async def main():
        async with _sim(faults=Faults(ignore_close_stream=True)) as s, router(
                tmp_path, {"speechmatics": s.listen_url}, finalize_timeout=0.5) as r:
            url = listen_url(r, provider="speechmatics", encoding="pcm_s16le", sample_rate=16000)
            return await session(url, pcm_chunks(2.0), headers=HDR)

    out = run("asyncio", main)
    assert out.code == 4040 and "did not finish" in out.errors[0]["error"]
    assert [m["transcript"] for m in out.finals] == ["Hello there."]


@pytest.mark.parametrize("loop", LOOPS)
def test_speechmatics_audio_added_acks_and_end_of_stream_last_seq_no(loop, tmp_path):
    """The quirk: the router holds audio and a finalize until RecognitionStarted (the simulator
    refuses anything earlier), every chunk gets one AudioAdded, and last_seq_no counts them all."""
    async def main():
        async with _sim(start_delay=0.4) as s, router(tmp_path, {"speechmatics": s.listen_url}) as r:
            url = listen_url(r, provider="speechmatics", encoding="pcm_s16le", sample_rate=16000)
            out = await session(url, pcm_chunks(5.0), headers=HDR, controls={100: '{"type":"finalize"}'})
            (rec,) = await s.wait_finished(1)
            return out, rec

    out, rec = run(loop, main)
    assert out.code == 1000 and not out.errors, out.messages
    assert _words(out) == WORDS
    control = _control(rec)
    assert [m["message"] for m in control] == ["StartRecognition", "ForceEndOfUtterance", "EndOfStream"]
    assert control[1]["timestamp"] == 2.0  # held in order: exactly 100 chunks of 20 ms before it
    # the client sent everything long before the provider was ready: the router held it
    started_at = rec.control[0][0] + 0.4
    assert rec.first_audio_at >= started_at - 0.05
    acks = [json.loads(t)["seq_no"] for t in rec.sent if json.loads(t)["message"] == "AudioAdded"]
    assert acks == list(range(1, rec.audio_frames + 1)) and rec.audio_frames == 250
    assert control[-1]["last_seq_no"] == 250
    assert [t for t, _ in _turns(out)] == ["Hello there.", "How", "are you today?", "Fine thanks."]  # finalize at 2 s
