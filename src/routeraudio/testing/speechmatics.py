"""A Speechmatics real-time (Realtime API v2) simulator on loopback.

It checks the upgrade request as Speechmatics does (path ``/v2``, ``Authorization: Bearer <key>`` or
``?jwt=<key>``, else HTTP 401), then the session protocol: the first message must be a valid
``StartRecognition`` (else ``Error`` + close); it answers with ``Info`` messages and, after
``start_delay`` seconds, ``RecognitionStarted``. Audio (binary ``AddAudio``) is acknowledged chunk by
chunk with ``AudioAdded {seq_no}``, and the ``Script`` is played as the audio time passes: finals
(``AddTranscript``, incremental) once a word is ``max_delay`` old, partials (``AddPartialTranscript``)
with ``enable_partials``, a final plus ``EndOfUtterance`` after ``end_of_utterance_silence_trigger``
of silence, ``forced`` ones on ``ForceEndOfUtterance``, and on ``EndOfStream`` the last final and
``EndOfTranscript``; the client is expected to close then. Shapes follow the AsyncAPI spec
``spec/realtime.yaml`` of GitHub ``speechmatics/docs`` (8783a7a, 2026-08-13) and ``speechmatics-rt``
1.2.1.

Refusals: an ``Error {type, reason}`` message, then a close whose code and payload follow the
api-ref's "Websocket errors" table (1003 ``protocol_error``, 4004 ``invalid_model``...). Where
Speechmatics' behaviour is not documented the simulator picks the stricter reading, marked "(sim)":
audio or control messages before ``RecognitionStarted`` are a ``protocol_error`` (1003);
``EndOfStream.last_seq_no`` other than the number of chunks received is a ``protocol_error`` (1003)
(note: ``speechmatics-rt`` 1.2.1 overwrites its send counter with each ``AudioAdded.seq_no``, so its
``stop_session`` can send a smaller number while acknowledgements lag; a careful client waits for
them); ``invalid_config``/``invalid_audio_type``/``invalid_message`` close with 1003; unknown keys in
``StartRecognition`` are ``invalid_config``; unknown query parameters are HTTP 400; the wording of
reasons and ``Info`` messages is invented. After ``EndOfTranscript`` the simulator waits
``eot_close_timeout`` for the client's close, then closes with 1000 itself.

Audio time: ``pcm_s16le`` bytes / 2 / rate, ``pcm_f32le`` / 4, ``mulaw`` / 1; ``type: file`` audio is
sniffed (Ogg, WebM, MP3) and measured by ``routeraudio.audio.AudioMeter``, else estimated at
``file_bytes_per_second``.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .base import (ConnectionRecord, Faults, Script, ScriptWord, SimulatorServer, container_meter,
                   sniff_container)

__all__ = ["END_OF_STREAM_FRAMES", "SpeechmaticsEngine", "SpeechmaticsOptions", "SpeechmaticsSimulator",
           "ConfigError", "parse_start_recognition"]

PATH = re.compile(r"^/v2(/[A-Za-z_-]*)?/?$")  # /v2, /v2/, legacy /v2/<language>
QUERY_PARAMS = frozenset({"jwt", "sm-sdk", "sm-app"})
BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1}
MODELS = ("standard", "enhanced", "melia-1")
DIARIZATION = ("none", "speaker", "channel", "channel_and_speaker")
TRANSCRIPTION_KEYS = frozenset({
    "language", "domain", "output_locale", "additional_vocab", "diarization", "max_delay", "max_delay_mode",
    "speaker_diarization_config", "audio_filtering_config", "transcript_filtering_config", "enable_partials",
    "enable_entities", "operating_point", "model", "punctuation_overrides", "conversation_config",
    "channel_diarization_labels", "streaming_mode", "ctrl", "language_hints", "language_hints_strict"})
MID_SESSION_KEYS = frozenset({"language", "max_delay", "max_delay_mode", "audio_filtering_config", "enable_partials",
                              "conversation_config"})
#: close payloads of api-ref "Websocket errors", and the Error type each close follows
CLOSE_PAYLOADS = {1003: "protocol_error", 1008: "policy_violation", 1011: "internal_error", 4001: "not_authorised",
                  4003: "not_allowed", 4004: "invalid_model", 4005: "quota_exceeded", 4006: "timelimit_exceeded",
                  4013: "job_error"}
ERROR_TYPE_FOR_CLOSE = {1003: "protocol_error", 1008: "idle_timeout", 1011: "unknown_error", 4001: "not_authorised",
                        4003: "not_allowed", 4004: "invalid_model", 4005: "quota_exceeded",
                        4006: "timelimit_exceeded", 4013: "job_error"}
CLOSE_FOR_ERROR = {"invalid_model": 4004, "not_authorised": 4001, "not_allowed": 4003, "quota_exceeded": 4005,
                   "timelimit_exceeded": 4006, "job_error": 4013, "idle_timeout": 1008, "session_timeout": 1008}
NO_DELIMITER_LANGUAGES = frozenset({"ja", "cmn", "yue", "th"})
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "ja": "Japanese"}
_MARK = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)


# -- StartRecognition, parsed like Speechmatics ------------------------------------------------------
class ConfigError(ValueError):
    """A refused client message: ``kind`` is the Speechmatics Error type."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class SpeechmaticsOptions:
    language: str
    model: str
    encoding: str | None  # None: type "file", sniffed
    sample_rate: int | None
    enable_partials: bool = False
    max_delay: float = 4.0
    diarization: str = "none"
    permitted_marks: tuple[str, ...] | None = None  # None: all marks
    eou_trigger: float = 0.0


def _number(cfg: dict, key: str, lo: float, hi: float, default: float, kind: str = "invalid_config") -> float:
    value = cfg.get(key, default)
    if type(value) not in (int, float) or not lo <= value <= hi:
        raise ConfigError(kind, f"{key} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


def _bool(cfg: dict, key: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if type(value) is not bool:
        raise ConfigError("invalid_config", f"{key} must be true or false, got {value!r}")
    return value


def parse_start_recognition(msg: object) -> SpeechmaticsOptions:
    """Validate a ``StartRecognition`` message; ``ConfigError`` carries the Error type and reason."""
    if not isinstance(msg, dict) or msg.get("message") != "StartRecognition":
        raise ConfigError("protocol_error", "the first message must be StartRecognition")
    unknown = set(msg) - {"message", "audio_format", "transcription_config", "translation_config",
                          "audio_events_config"}
    if unknown:
        raise ConfigError("invalid_message", f"unknown fields in StartRecognition: {', '.join(sorted(unknown))}")
    fmt, cfg = msg.get("audio_format"), msg.get("transcription_config")
    if not isinstance(fmt, dict) or not isinstance(cfg, dict):
        raise ConfigError("invalid_message", "StartRecognition needs audio_format and transcription_config objects")
    encoding = rate = None
    if fmt.get("type") == "raw":
        if set(fmt) - {"type", "encoding", "sample_rate"}:
            raise ConfigError("invalid_audio_type", "raw audio_format takes type, encoding and sample_rate only")
        encoding, rate = fmt.get("encoding"), fmt.get("sample_rate")
        if encoding not in BYTES_PER_SAMPLE:
            raise ConfigError("invalid_audio_type",
                              f"encoding must be one of {', '.join(BYTES_PER_SAMPLE)}, got {encoding!r}")
        if type(rate) is not int or not 1 <= rate <= 192000:
            raise ConfigError("invalid_audio_type", f"sample_rate must be a positive integer, got {rate!r}")
    elif fmt.get("type") != "file" or set(fmt) != {"type"}:
        raise ConfigError("invalid_audio_type", f"audio_format.type must be raw or file, got {fmt.get('type')!r}")
    unknown = set(cfg) - TRANSCRIPTION_KEYS
    if unknown:
        raise ConfigError("invalid_config", f"unknown transcription_config fields: {', '.join(sorted(unknown))}")
    language = cfg.get("language")
    if not isinstance(language, str) or not re.fullmatch(r"[a-z]{2,3}([_-][A-Za-z]{2,4})*", language):
        raise ConfigError("invalid_config", f"transcription_config.language must be a language code, got {language!r}")
    if "model" in cfg and "operating_point" in cfg:
        raise ConfigError("invalid_config", "give model or operating_point (deprecated), not both")  # (sim)
    model = cfg.get("model", cfg.get("operating_point", "standard"))
    if model not in MODELS:
        raise ConfigError("invalid_model", f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    diarization = cfg.get("diarization", "none")
    if diarization not in DIARIZATION:
        raise ConfigError("invalid_config", f"diarization must be one of {', '.join(DIARIZATION)}, got {diarization!r}")
    marks: tuple[str, ...] | None = None
    overrides = cfg.get("punctuation_overrides")
    if overrides is not None:
        if not isinstance(overrides, dict) or set(overrides) - {"permitted_marks", "sensitivity"}:
            raise ConfigError("invalid_config", "punctuation_overrides takes permitted_marks and sensitivity")
        pm = overrides.get("permitted_marks", ["all"])
        if not isinstance(pm, list) or not all(isinstance(m, str) and (len(m) == 1 or m == "all") for m in pm):
            raise ConfigError("invalid_config", "permitted_marks must be a list of single marks or 'all'")
        marks = None if "all" in pm else tuple(pm)
        _number(overrides, "sensitivity", 0, 1, 0.5)
    conv = cfg.get("conversation_config", {})
    if not isinstance(conv, dict) or set(conv) - {"end_of_utterance_silence_trigger"}:
        raise ConfigError("invalid_config", "conversation_config takes end_of_utterance_silence_trigger only")
    return SpeechmaticsOptions(
        language=language, model=model, encoding=encoding, sample_rate=rate,
        enable_partials=_bool(cfg, "enable_partials", False), max_delay=_number(cfg, "max_delay", 0.7, 4, 4.0),
        diarization=diarization, permitted_marks=marks,
        eou_trigger=_number(conv, "end_of_utterance_silence_trigger", 0, 2, 0.0))


# -- message builders (spec schemas) ------------------------------------------------------------------
def _t(x: float) -> float:
    return round(x, 3)


def error_message(kind: str, reason: str) -> dict:
    return {"message": "Error", "type": kind, "reason": reason}


def info_messages(opts: SpeechmaticsOptions) -> list[dict]:
    quality = "broadcast" if (opts.sample_rate or 16000) >= 12000 else "telephony"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [{"message": "Info", "type": "recognition_quality", "quality": quality,
             "reason": f"Running recognition using a {quality} model quality."},
            {"message": "Info", "type": "concurrent_session_usage", "usage": 1, "quota": 50, "last_updated": now,
             "reason": "1 concurrent sessions active out of quota 50"}]


def recognition_started(opts: SpeechmaticsOptions, session_id: str) -> dict:
    base = opts.language.split("_")[0].split("-")[0]
    return {"message": "RecognitionStarted", "orchestrator_version": "2026.08.0+routeraudio.sim", "id": session_id,
            "language_pack_info": {"adapted": False, "itn": True,
                                   "language_description": LANGUAGE_NAMES.get(base, base),
                                   "word_delimiter": "" if base in NO_DELIMITER_LANGUAGES else " ",
                                   "writing_direction": "left-to-right"}}


def end_of_utterance(at: float, forced: bool = False) -> dict:
    msg: dict = {"message": "EndOfUtterance", "metadata": {"start_time": _t(at), "end_time": _t(at)}}
    if forced:
        msg["forced"] = True
    return msg


# -- the transcript engine (no I/O) ----------------------------------------------------------------
class SpeechmaticsEngine:
    """Turns audio time into Speechmatics messages for a script.

    Rules, evaluated every ``STEP`` seconds of audio: a word is heard once the audio passes its end;
    a heard word becomes final (one ``AddTranscript`` per step, with its punctuation) once it is
    ``max_delay`` old. After ``eou_trigger`` seconds without a new word (and some speech since the
    last one), every heard word becomes final at once and ``EndOfUtterance`` follows. Partials of the
    heard, non-final words come every ``partial_interval_s`` when they changed, and right after every
    final (possibly empty). ``silence_final_s`` without a final yields an empty ``AddTranscript``.
    """

    STEP = 0.02

    def __init__(self, opts: SpeechmaticsOptions, script: Script, *, partial_interval_s: float = 0.5,
                 silence_final_s: float = 2.0) -> None:
        self.opts = opts
        self.script = script
        self.partial_interval_s = partial_interval_s
        self.silence_final_s = silence_final_s
        self.t = 0.0
        self.next_index = 0
        self.heard: list[ScriptWord] = []
        self.cursor = 0.0  # end of the last final
        self.last_final_t = 0.0
        self.last_partial_t = 0.0
        self.last_partial: tuple = ()
        self.last_word_end: float | None = None  # speech not yet closed by an EndOfUtterance

    def advance(self, audio_time: float) -> list[dict]:
        out: list[dict] = []
        while self.t < audio_time - 1e-9:
            self.t = min(audio_time, self.t + self.STEP)
            self._step(self.t, out)
        return out

    def force(self) -> list[dict]:
        """``ForceEndOfUtterance``: every heard word final now, then a forced ``EndOfUtterance``."""
        out = self._final(self.heard, self.t, forced=True)
        self.last_word_end = None
        return out + [end_of_utterance(self.t, forced=True)]

    def end(self) -> list[dict]:
        """``EndOfStream``: the last final (when words remain)."""
        return self._final(self.heard, self.t) if self.heard else []

    def _step(self, now: float, out: list[dict]) -> None:
        o = self.opts
        while (w := self.script.word(self.next_index)) is not None and w.end <= now + 1e-9:
            self.heard.append(w)
            self.last_word_end = w.end
            self.next_index += 1
        ready = 0
        while ready < len(self.heard) and self.heard[ready].end + o.max_delay <= now + 1e-9:
            ready += 1
        if ready:
            out += self._final(self.heard[:ready], now)
        nxt, last = self.script.word(self.next_index), self.last_word_end
        if o.eou_trigger > 0 and last is not None:
            quiet_until = last + o.eou_trigger
            if now >= quiet_until - 1e-9 and (nxt is None or nxt.start >= quiet_until):
                if self.heard:
                    out += self._final(self.heard, now)
                out.append(end_of_utterance(quiet_until))
                self.last_word_end = None
        if o.enable_partials and now - self.last_partial_t >= self.partial_interval_s:
            self.last_partial_t = now
            if tuple(self.heard) != self.last_partial:
                out.append(self._partial())
        if now - self.last_final_t >= self.silence_final_s and not self.heard:
            out += self._final([], nxt.start if nxt is not None and nxt.start < now else now)

    def _final(self, words: list[ScriptWord], now: float, forced: bool = False) -> list[dict]:
        results = self._results(words)
        start = words[0].start if words else self.cursor
        end = max((r["end_time"] for r in results), default=now)
        msg = self._transcript_message("AddTranscript", results, start, max(end, start))
        if forced:
            msg["forced"] = True
        self.heard = self.heard[len(words):] if words else self.heard
        self.cursor = max(self.cursor, end)
        self.last_final_t = now
        out = [msg]
        if self.opts.enable_partials:
            out.append(self._partial())
        return out

    def _partial(self) -> dict:
        self.last_partial = tuple(self.heard)
        results = self._results(self.heard)
        start = self.heard[0].start if self.heard else self.cursor
        end = results[-1]["end_time"] if results else self.t
        return self._transcript_message("AddPartialTranscript", results, start, max(end, start))

    def _transcript_message(self, kind: str, results: list[dict], start: float, end: float) -> dict:
        return {"message": kind, "format": "2.1",
                "metadata": {"start_time": _t(start), "end_time": _t(end), "transcript": _text(results)},
                "results": results}

    def _results(self, words: list[ScriptWord]) -> list[dict]:
        o = self.opts
        out: list[dict] = []
        for i, w in enumerate(words):
            lead, core, trail = _MARK.match(w.text).groups()
            speaker = f"S{(w.speaker or 0) + 1}" if o.diarization in ("speaker", "channel_and_speaker") else None

            def alt(content: str, confidence: float) -> dict:
                a = {"content": content, "confidence": confidence, "language": o.language}
                if speaker is not None:
                    a["speaker"] = speaker
                return a

            for mark in lead:
                if o.permitted_marks is None or mark in o.permitted_marks:
                    out.append({"type": "punctuation", "start_time": _t(w.start), "end_time": _t(w.start),
                                "attaches_to": "next", "is_eos": False, "alternatives": [alt(mark, 1.0)]})
            out.append({"type": "word", "start_time": _t(w.start), "end_time": _t(w.end),
                        "alternatives": [alt(core or w.word, round(0.99 - 0.01 * (i % 4), 2))]})
            for mark in trail:
                if o.permitted_marks is None or mark in o.permitted_marks:
                    out.append({"type": "punctuation", "start_time": _t(w.end), "end_time": _t(w.end),
                                "attaches_to": "previous", "is_eos": mark in ".?!",
                                "alternatives": [alt(mark, 1.0)]})
        return out


def _text(results: list[dict]) -> str:
    parts: list[str] = []
    glue = True
    for r in results:
        attaches = r.get("attaches_to")
        if not glue and attaches != "previous":
            parts.append(" ")
        parts.append(r["alternatives"][0]["content"])
        glue = attaches == "next"
    return "".join(parts)


# -- audio time ------------------------------------------------------------------------------------
class _AudioClock:
    def __init__(self, opts: SpeechmaticsOptions, file_bytes_per_second: float) -> None:
        self.opts = opts
        self.bytes = 0
        self.meter = None
        self.sniffed = False
        self.fallback = file_bytes_per_second

    def feed(self, data: bytes) -> float:
        """Account for ``data``; return the audio time. ValueError on undecodable files."""
        self.bytes += len(data)
        o = self.opts
        if o.encoding is not None:
            return self.bytes / BYTES_PER_SAMPLE[o.encoding] / (o.sample_rate or 1)
        if not self.sniffed:
            self.sniffed = True
            self.meter = container_meter(sniff_container(data))
        if self.meter is not None:
            self.meter.feed(data)
            return self.meter.duration
        return self.bytes / self.fallback



# -- the server ------------------------------------------------------------------------------------
class SpeechmaticsSimulator(SimulatorServer):
    """``async with SpeechmaticsSimulator(api_key="k") as sim:`` then point a client at ``sim.listen_url``.

    ``api_key=None`` accepts any non-empty key. ``start_delay`` is the time between ``StartRecognition``
    and ``RecognitionStarted`` (audio sent meanwhile is refused); ``idle_timeout`` the seconds without
    any message before the ``idle_timeout`` error (Speechmatics: one hour without audio).
    """

    provider = "speechmatics"

    def __init__(self, *, api_key: str | None = "test-key", script: Script | None = None,
                 faults: Faults | None = None, start_delay: float = 0.0, idle_timeout: float = 3600.0,
                 eot_close_timeout: float = 2.0, partial_interval_s: float = 0.5, silence_final_s: float = 2.0,
                 file_bytes_per_second: float = 4000.0, host: str = "127.0.0.1", port: int = 0,
                 **_ignored: object) -> None:
        super().__init__(host=host, port=port, script=script, faults=faults)
        self.api_key = api_key
        self.start_delay = start_delay
        self.idle_timeout = idle_timeout
        self.eot_close_timeout = eot_close_timeout
        self.partial_interval_s = partial_interval_s
        self.silence_final_s = silence_final_s
        self.file_bytes_per_second = file_bytes_per_second

    @property
    def listen_url(self) -> str:
        return self.url + "/v2"

    # -- handshake ------------------------------------------------------------------------------
    def auth_rejection(self, request: Request, record: ConnectionRecord) -> Response:
        record.info["error"] = "not_authorised"
        return self.http_error(401, json.dumps({"code": 401, "error": "Permission Denied"}),
                               content_type="application/json")  # (sim) body

    def check_handshake(self, request: Request, record: ConnectionRecord) -> Response | None:
        if not PATH.match(record.path):
            return self.http_error(404, f"Not Found: {record.path}")
        unknown = set(record.query) - QUERY_PARAMS
        if unknown:
            return self.http_error(400, f"Unknown query parameters: {', '.join(sorted(unknown))}")  # (sim)
        auth = record.header("authorization")
        if auth is not None:
            scheme, _, key = auth.partition(" ")
            if scheme != "Bearer":
                key = ""
        else:
            key = record.param("jwt") or ""
        if not key.strip() or (self.api_key is not None and key != self.api_key):
            return self.auth_rejection(request, record)
        return None

    # -- session --------------------------------------------------------------------------------
    async def close(self, ws: ServerConnection, record: ConnectionRecord, code: int, reason: str = "") -> None:
        """Every non-1000 close follows an in-band ``Error`` (injected failures included)."""
        if code != 1000 and "error" not in record.info:
            kind = ERROR_TYPE_FOR_CLOSE.get(code, "unknown_error")
            record.info["error"] = kind
            await self._send(ws, record, error_message(kind, reason or kind))
        await super().close(ws, record, code, CLOSE_PAYLOADS.get(code, reason) if code != 1000 else reason)

    async def _refuse(self, ws: ServerConnection, record: ConnectionRecord, kind: str, reason: str) -> None:
        record.info["error"] = kind
        await self._send(ws, record, error_message(kind, reason))
        await self.close(ws, record, CLOSE_FOR_ERROR.get(kind, 1003))

    async def run_session(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        first = await self.receive(ws, record, timeout=self.idle_timeout)
        if first is None:
            await self._refuse(ws, record, "idle_timeout", "no StartRecognition received")
            return
        if isinstance(first, bytes):
            await self._refuse(ws, record, "protocol_error", "audio received before StartRecognition")
            return
        try:
            opts = parse_start_recognition(json.loads(first))
        except ValueError as exc:  # ConfigError, or not JSON
            kind = exc.kind if isinstance(exc, ConfigError) else "invalid_message"
            await self._refuse(ws, record, kind, str(exc) if isinstance(exc, ConfigError) else "message is not JSON")
            return
        record.info["options"] = opts
        for msg in info_messages(opts):
            await self._send(ws, record, msg)
        if not await self._await_start(ws, record):
            return
        record.info["session_id"] = session_id = str(uuid.uuid4())
        await self._send(ws, record, recognition_started(opts, session_id))
        await self._stream(ws, record, opts)

    async def _await_start(self, ws: ServerConnection, record: ConnectionRecord) -> bool:
        """Sit on the start for ``start_delay``: anything the client sends meanwhile is refused."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.start_delay
        while (left := until - loop.time()) > 0:
            frame = await self.receive(ws, record, timeout=left)
            if frame is None:
                break
            what = "audio" if isinstance(frame, bytes) else "a message"
            await self._refuse(ws, record, "protocol_error", f"{what} received before RecognitionStarted")  # (sim)
            return False
        return True

    async def _stream(self, ws: ServerConnection, record: ConnectionRecord, opts: SpeechmaticsOptions) -> None:
        engine = SpeechmaticsEngine(opts, self.script, partial_interval_s=self.partial_interval_s,
                                    silence_final_s=self.silence_final_s)
        clock = _AudioClock(opts, self.file_bytes_per_second)
        seq = 0
        record.info["acks"] = 0
        while True:
            frame = await self.receive(ws, record, timeout=self.idle_timeout)
            if frame is None:
                await self._refuse(ws, record, "idle_timeout", "Session timed out due to inactivity")
                return
            if isinstance(frame, bytes):
                seq += 1
                try:
                    record.audio_seconds = clock.feed(frame)
                except ValueError:
                    await self._refuse(ws, record, "invalid_audio_type", "Could not decode the audio file")
                    return
                await self._send(ws, record, {"message": "AudioAdded", "seq_no": seq})
                record.info["acks"] = seq
                await self._send_all(ws, record, engine.advance(record.audio_seconds))
                continue
            try:
                msg = json.loads(frame)
                kind = msg.get("message") if isinstance(msg, dict) else None
            except ValueError:
                kind = None
            if kind == "ForceEndOfUtterance":
                ts = msg.get("timestamp", 0.0)
                if set(msg) - {"message", "timestamp", "channel"} or type(ts) not in (int, float) or ts < 0:
                    await self._refuse(ws, record, "invalid_message", "ForceEndOfUtterance takes a timestamp >= 0")
                    return
                if not self.faults.ignore_finalize:
                    await self._send_all(ws, record, engine.force())
            elif kind == "EndOfStream":
                last = msg.get("last_seq_no")
                if type(last) is not int or set(msg) != {"message", "last_seq_no"}:
                    await self._refuse(ws, record, "invalid_message", "EndOfStream needs an integer last_seq_no")
                    return
                if self.faults.ignore_close_stream:
                    continue
                if last != seq:
                    await self._refuse(ws, record, "protocol_error",  # (sim)
                                       f"EndOfStream last_seq_no is {last} but {seq} audio chunks were received")
                    return
                await self._send_all(ws, record, engine.end())
                await self._send(ws, record, {"message": "EndOfTranscript"})
                await self._await_client_close(ws)
                return
            elif kind == "SetRecognitionConfig":
                cfg = msg.get("transcription_config")
                if (not isinstance(cfg, dict) or set(cfg) - MID_SESSION_KEYS
                        or cfg.get("language", opts.language) != opts.language):
                    await self._refuse(ws, record, "invalid_config",
                                       "SetRecognitionConfig may change only max_delay, max_delay_mode, "
                                       "audio_filtering_config, enable_partials and conversation_config")
                    return
                engine.opts = replace(engine.opts, enable_partials=cfg.get("enable_partials") is True)
            elif kind == "GetSpeakers":
                await self._send(ws, record, {"message": "SpeakersResult", "speakers": []})
            elif kind == "StartRecognition":
                await self._refuse(ws, record, "protocol_error", "StartRecognition received twice")
                return
            else:
                await self._refuse(ws, record, "invalid_message", f"message not understood: {frame[:100]}")
                return

    async def _await_client_close(self, ws: ServerConnection) -> None:
        try:
            async with asyncio.timeout(self.eot_close_timeout):
                async for _ in ws:  # audio after EndOfStream is ignored, as Speechmatics does
                    pass
        except TimeoutError:
            pass

    async def _send(self, ws: ServerConnection, record: ConnectionRecord, msg: dict) -> None:
        await self.send_text(ws, record, json.dumps(msg, separators=(",", ":")))

    async def _send_all(self, ws: ServerConnection, record: ConnectionRecord, msgs: list[dict]) -> None:
        for msg in msgs:
            await self._send(ws, record, msg)
            if msg["message"] == "AddTranscript" and msg["results"]:
                await self.final_sent(ws, record)


#: What Speechmatics sends after EndOfStream once every final is out (the adapter contract test replays it).
END_OF_STREAM_FRAMES = ['{"message":"EndOfTranscript"}']
