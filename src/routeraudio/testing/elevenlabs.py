"""An ElevenLabs Scribe realtime speech-to-text simulator on loopback.

It checks the upgrade as ElevenLabs does (path ``/v1/speech-to-text/realtime``, key in ``xi-api-key`` or a
``token`` query parameter; query parameters validated per the ``elevenlabs`` 2.78.0 SDK docstrings), greets
with ``session_started``, decodes the base64 audio of ``input_audio_chunk`` messages, and plays its
``Script`` as the audio time passes: a ``partial_transcript`` of the uncommitted words each time a word is
heard; per commit (the client's ``commit: true``, or its VAD after ``vad_silence_threshold_secs`` of
silence with ``commit_strategy=vad``) a ``committed_transcript``, its ``committed_transcript_with_timestamps``
twin (``include_timestamps=true``) and, with ``diarize=true``, a ``diarized_transcript``. A commit of
silence answers with empty text. There is no end-of-stream message: the client closes the socket.
Shapes follow the SDK's Fern models (``elevenlabs.types``) field for field.

Refusals are in-band as ElevenLabs' own are: the upgrade succeeds, then one error message
(``message_type`` = the error kind, ``error`` = the text) and a close. Where ElevenLabs' behaviour is not
documented the simulator takes the stricter reading, marked "(sim)": close codes (1008 for the client's
mistakes, 1011 for ``transcriber_error``); unknown query parameters, a region-tagged ``language_code``,
``commit_strategy=turn_prediction``, binary frames, any message other than ``input_audio_chunk``, audio
that is not whole samples or longer than ``max_chunk_s`` (``chunk_size_exceeded``), a ``sample_rate``
that contradicts ``audio_format`` are refused; ``idle_timeout`` seconds without a message end the session
with ``insufficient_audio_activity`` (ElevenLabs: about 10 s); the ``diarize`` flag's name (UNCONFIRMED).
``Faults.ignore_finalize`` / ``ignore_close_stream``: commits go unanswered (both are commits here).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
import uuid
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .base import ConnectionRecord, Faults, Script, ScriptWord, SessionOver, SimulatorServer

__all__ = ["END_OF_STREAM_FRAMES", "ElevenLabsSimulator", "ScribeEngine", "ScribeOptions", "parse_options"]

PATH = "/v1/speech-to-text/realtime"
AUDIO_FORMATS = {"pcm_8000": 8000, "pcm_16000": 16000, "pcm_22050": 22050, "pcm_24000": 24000,
                 "pcm_44100": 44100, "pcm_48000": 48000, "ulaw_8000": 8000}
MODELS = ("scribe_v2_realtime", "scribe_v2_realtime_turbo", "scribe_v3_live")
BOOLEANS = ("include_timestamps", "include_language_detection", "no_verbatim", "filter_background_audio",
            "enable_logging", "diarize")
RANGES = {"vad_silence_threshold_secs": (0.3, 3.0, float), "vad_threshold": (0.1, 0.9, float),
          "min_speech_duration_ms": (50, 2000, int), "min_silence_duration_ms": (50, 2000, int)}
LISTS = ("keyterms", "secondary_languages", "entity_detection", "entity_redaction")
KNOWN = frozenset({"model_id", "audio_format", "commit_strategy", "language_code", "entity_redaction_mode",
                   "transcript_edit", "token", *BOOLEANS, *RANGES, *LISTS})
AUTH_ERROR = "You must be authenticated to use this endpoint."  # wording from integrators' reports
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


# -- options, parsed like ElevenLabs ---------------------------------------------------------------
class Refusal(Exception):
    """The session is refused in-band with error ``kind`` and this message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ScribeOptions:
    model_id: str
    audio_format: str = "pcm_16000"
    commit_strategy: str = "manual"
    vad_silence_threshold_secs: float = 1.5
    vad_threshold: float = 0.4
    min_speech_duration_ms: int = 100
    min_silence_duration_ms: int = 100
    language_code: str | None = None
    include_timestamps: bool = False
    include_language_detection: bool = False
    no_verbatim: bool = False
    enable_logging: bool = True
    diarize: bool = False
    keyterms: tuple[str, ...] = field(default=())

    @property
    def sample_rate(self) -> int:
        return AUDIO_FORMATS[self.audio_format]

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.audio_format.startswith("ulaw") else 2


def parse_options(query: dict[str, list[str]]) -> ScribeOptions:
    """Validate the query of the upgrade request; ``Refusal`` names the problem."""
    for name, values in query.items():
        if name not in KNOWN:
            raise Refusal("invalid_request", f"Unknown query parameter: {name}")  # (sim)
        if name not in LISTS and len(values) > 1:
            raise Refusal("invalid_request", f"Query parameter {name} given more than once")
    q = {k: v[0] for k, v in query.items()}
    kw: dict = {}
    if not q.get("model_id"):
        raise Refusal("invalid_request", "model_id is required, e.g. model_id=scribe_v2_realtime")
    if q["model_id"] not in MODELS:
        raise Refusal("invalid_request", f"Invalid model_id {q['model_id']!r}; expected one of {', '.join(MODELS)}")
    kw["model_id"] = q["model_id"]
    if "audio_format" in q:
        if q["audio_format"] not in AUDIO_FORMATS:
            raise Refusal("invalid_request", f"Invalid audio_format {q['audio_format']!r}; expected one of "
                                             f"{', '.join(AUDIO_FORMATS)}")
        kw["audio_format"] = q["audio_format"]
    if "commit_strategy" in q:
        if q["commit_strategy"] not in ("manual", "vad"):
            raise Refusal("invalid_request", "commit_strategy must be manual or vad")
        kw["commit_strategy"] = q["commit_strategy"]
    for name, (lo, hi, kind) in RANGES.items():
        if name in q:
            try:
                value = kind(q[name])
            except ValueError:
                value = None
            if value is None or not lo <= value <= hi:
                raise Refusal("invalid_request", f"{name} must be between {lo} and {hi}, got {q[name]!r}")
            kw[name] = value
    for name in BOOLEANS:
        if name in q:
            if q[name] not in ("true", "false"):
                raise Refusal("invalid_request", f"{name} must be true or false, got {q[name]!r}")
            kw[name] = q[name] == "true"
    if "language_code" in q:
        if not _LANGUAGE.match(q["language_code"]):  # (sim) ISO-639-1/3 codes only
            raise Refusal("invalid_request", f"language_code must be an ISO-639-1 or ISO-639-3 code, "
                                             f"got {q['language_code']!r}")
        kw["language_code"] = q["language_code"]
    terms = query.get("keyterms", [])
    if len(terms) > 50 or any(len(t) > 20 for t in terms):
        raise Refusal("invalid_request", "keyterms: at most 50 terms of at most 20 characters each")
    kw["keyterms"] = tuple(terms)
    if kw.get("include_timestamps") and q.get("filter_background_audio") == "true":
        raise Refusal("invalid_request", "filter_background_audio cannot be combined with include_timestamps")
    return ScribeOptions(**kw)


# -- message builders (shapes of elevenlabs.types) --------------------------------------------------
def session_started_message(opts: ScribeOptions, session_id: str) -> dict:
    config = {"sample_rate": opts.sample_rate, "audio_format": opts.audio_format,
              "language_code": opts.language_code or "en", "model_id": opts.model_id,
              "commit_strategy": opts.commit_strategy, "vad_silence_threshold_secs": opts.vad_silence_threshold_secs,
              "vad_threshold": opts.vad_threshold, "min_speech_duration_ms": opts.min_speech_duration_ms,
              "min_silence_duration_ms": opts.min_silence_duration_ms, "enable_logging": opts.enable_logging,
              "include_timestamps": opts.include_timestamps,
              "include_language_detection": opts.include_language_detection,
              "keyterms": list(opts.keyterms), "no_verbatim": opts.no_verbatim}
    return {"message_type": "session_started", "session_id": session_id, "config": config}


def _word_items(words: list[ScriptWord], speakers: bool) -> list[dict]:
    out: list[dict] = []
    for i, w in enumerate(words):
        if i:
            prev = words[i - 1]
            out.append({"text": " ", "start": round(prev.end, 3), "end": round(w.start, 3), "type": "spacing",
                        "logprob": 0.0})
        item = {"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3), "type": "word",
                "logprob": round(-0.02 - 0.01 * (i % 4), 3)}
        if speakers:
            item["speaker_id"] = f"speaker_{w.speaker or 0}"
        out.append(item)
    return out


def committed_messages(words: list[ScriptWord], opts: ScribeOptions, segment_index: int) -> list[dict]:
    """What one commit produces: the text, its with-timestamps twin, its diarization."""
    text = " ".join(w.text for w in words)
    out = [{"message_type": "committed_transcript", "text": text}]
    if opts.include_timestamps:
        out.append({"message_type": "committed_transcript_with_timestamps", "text": text,
                    "language_code": opts.language_code or "en", "words": _word_items(words, opts.diarize)})
    if opts.diarize and words:
        out.append({"message_type": "diarized_transcript", "segment_index": segment_index, "text": text,
                    "words": _word_items(words, True)})
    return out


def error_message(kind: str, text: str) -> dict:
    return {"message_type": kind, "error": text}


# -- the transcript engine (no I/O) ----------------------------------------------------------------
class ScribeEngine:
    """Turns audio time into ElevenLabs messages for a script.

    Every ``STEP`` seconds of audio: a word is heard once the audio passes its end, and joins the
    uncommitted words (a ``partial_transcript`` of them follows). With the VAD, the uncommitted words are
    committed once ``vad_silence_threshold_secs`` of silence followed the last of them. ``commit()`` commits
    what is uncommitted now (possibly nothing: empty text).
    """

    STEP = 0.02

    def __init__(self, opts: ScribeOptions, script: Script) -> None:
        self.opts = opts
        self.script = script
        self.t = 0.0
        self.next_index = 0
        self.pending: list[ScriptWord] = []
        self.segment_index = 0

    def advance(self, audio_time: float) -> list[dict]:
        out: list[dict] = []
        while self.t < audio_time - 1e-9:
            self.t = min(audio_time, self.t + self.STEP)
            self._step(out)
        return out

    def commit(self) -> list[dict]:
        words, self.pending = self.pending, []
        out = committed_messages(words, self.opts, self.segment_index)
        self.segment_index += 1
        return out

    def _step(self, out: list[dict]) -> None:
        heard = False
        while (w := self.script.word(self.next_index)) is not None and w.end <= self.t + 1e-9:
            self.pending.append(w)
            self.next_index += 1
            heard = True
        if heard:
            out.append({"message_type": "partial_transcript", "text": " ".join(w.text for w in self.pending)})
        if self.opts.commit_strategy == "vad" and self.pending:
            quiet_until = self.pending[-1].end + self.opts.vad_silence_threshold_secs
            nxt = self.script.word(self.next_index)
            if self.t >= quiet_until - 1e-9 and (nxt is None or nxt.start >= quiet_until):
                out.extend(self.commit())


# -- the server ------------------------------------------------------------------------------------
class ElevenLabsSimulator(SimulatorServer):
    """``async with ElevenLabsSimulator(api_key="k") as sim:`` then point a client at ``sim.listen_url``.

    ``api_key=None`` accepts any non-empty key or token. ``idle_timeout``: seconds without a message
    before ``insufficient_audio_activity``; ``max_chunk_s``: the largest audio chunk accepted;
    ``keep_frames``: keep every frame received in ``record.info["frames"]`` (audio chunks included).
    """

    provider = "elevenlabs"

    def __init__(self, *, api_key: str | None = "test-key", script: Script | None = None,
                 faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0,
                 idle_timeout: float = 10.0, max_chunk_s: float = 1.0, keep_frames: bool = False,
                 **_ignored: object) -> None:
        super().__init__(host=host, port=port, script=script, faults=faults)
        self.api_key = api_key
        self.keep_frames = keep_frames
        self.idle_timeout = idle_timeout
        self.max_chunk_s = max_chunk_s

    @property
    def listen_url(self) -> str:
        return self.url + PATH

    # -- handshake ------------------------------------------------------------------------------
    def auth_rejection(self, request: Request, record: ConnectionRecord) -> Response | None:
        record.info["refusal"] = Refusal("auth_error", AUTH_ERROR)
        return None  # ElevenLabs accepts the upgrade, then says why not

    def check_handshake(self, request: Request, record: ConnectionRecord) -> Response | None:
        if record.path != PATH:
            return self.http_error(404, json.dumps({"detail": "Not Found"}), content_type="application/json")
        key = record.header("xi-api-key") or record.param("token") or ""
        if not key.strip() or (self.api_key is not None and key != self.api_key):
            return self.auth_rejection(request, record)
        try:
            record.info["options"] = parse_options(record.query)
        except Refusal as exc:
            record.info["refusal"] = exc
        return None

    # -- session --------------------------------------------------------------------------------
    async def run_session(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        refusal: Refusal | None = record.info.get("refusal")
        if refusal is not None:
            await self._refuse(ws, record, refusal.kind, str(refusal))
        opts: ScribeOptions = record.info["options"]
        engine = ScribeEngine(opts, self.script)
        record.info["session_id"] = session_id = uuid.uuid4().hex
        await self._send_json(ws, record, session_started_message(opts, session_id))
        record.info["commits"] = record.info["keepalives"] = 0
        record.info["frames"] = frames = []
        first = True
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    frame = await ws.recv()
            except TimeoutError:
                await self._refuse(ws, record, "insufficient_audio_activity",
                                   f"No audio received for {self.idle_timeout:g} seconds")
            if self.keep_frames:
                frames.append(frame)
            audio, commit = self._parse(frame, opts, first)
            if isinstance(audio, Refusal):
                record.control.append((time.monotonic(), frame if isinstance(frame, str) else "<binary>"))
                await self._refuse(ws, record, audio.kind, str(audio))
            first = False
            if audio:
                now = time.monotonic()
                record.audio_bytes += len(audio)
                record.audio_frames += 1
                record.first_audio_at = record.first_audio_at or now
                record.last_audio_at = now
                record.audio_seconds = record.audio_bytes / opts.bytes_per_sample / opts.sample_rate
                await self._send_all(ws, record, engine.advance(record.audio_seconds))
            else:
                record.control.append((time.monotonic(), frame))
            if commit:
                record.info["commits"] += 1
                if not (self.faults.ignore_finalize or self.faults.ignore_close_stream):
                    await self._send_all(ws, record, engine.commit())
            elif not audio:
                record.info["keepalives"] += 1

    def _parse(self, frame: str | bytes, opts: ScribeOptions, first: bool) -> tuple[bytes | Refusal, bool]:
        """(audio, commit) of one client frame, or the Refusal it earns."""
        if not isinstance(frame, str):
            return Refusal("input_error", "Binary frames are not accepted: send input_audio_chunk JSON messages"), False
        try:
            msg = json.loads(frame)
        except ValueError:
            return Refusal("input_error", "Could not parse the message as JSON"), False
        if not isinstance(msg, dict) or msg.get("message_type") != "input_audio_chunk":
            return Refusal("input_error", "Expected a JSON object with message_type input_audio_chunk"), False
        data, commit, rate = msg.get("audio_base_64"), msg.get("commit", False), msg.get("sample_rate")
        if not isinstance(data, str) or not isinstance(commit, bool):
            return Refusal("input_error", "audio_base_64 must be a string and commit a boolean"), False
        if rate is not None and rate != opts.sample_rate:
            return Refusal("input_error", f"sample_rate {rate!r} does not match audio_format {opts.audio_format}"), False
        if msg.get("previous_text") is not None and not first:
            return Refusal("input_error", "previous_text can only be sent with the first audio chunk"), False
        try:
            audio = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return Refusal("input_error", "audio_base_64 is not valid base64"), False
        if len(audio) % opts.bytes_per_sample:
            return Refusal("input_error", f"audio chunk of {len(audio)} bytes is not whole "
                                          f"{opts.bytes_per_sample}-byte samples"), False
        if len(audio) > self.max_chunk_s * opts.sample_rate * opts.bytes_per_sample:
            return Refusal("chunk_size_exceeded", f"Audio chunks must be at most {self.max_chunk_s:g} s"), False
        return audio, commit

    async def _refuse(self, ws: ServerConnection, record: ConnectionRecord, kind: str, text: str) -> None:
        record.info["error"] = text
        await self._send_json(ws, record, error_message(kind, text))
        await self.close(ws, record, 1011 if kind == "transcriber_error" else 1008, kind)
        raise SessionOver(kind)

    async def final_sent(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        """ElevenLabs reports a failure in-band (an error message), then closes."""
        f = self.faults
        if f.fail_after_finals is not None and not f.fail_reset and record.finals_sent + 1 >= f.fail_after_finals:
            record.finals_sent += 1
            await self._send_json(ws, record, error_message("transcriber_error", f.fail_reason))
            await self.close(ws, record, f.fail_code, f.fail_reason)
            raise SessionOver("failure injected")
        await super().final_sent(ws, record)

    async def _send_json(self, ws: ServerConnection, record: ConnectionRecord, msg: dict) -> None:
        await self.send_text(ws, record, json.dumps(msg, separators=(",", ":")))

    async def _send_all(self, ws: ServerConnection, record: ConnectionRecord, msgs: list[dict]) -> None:
        for i, msg in enumerate(msgs):
            await self._send_json(ws, record, msg)
            kind = msg["message_type"]
            group_end = i + 1 == len(msgs) or msgs[i + 1]["message_type"] in ("committed_transcript",
                                                                              "partial_transcript")
            if kind != "partial_transcript" and group_end and msg["text"]:
                await self.final_sent(ws, record)


#: What ElevenLabs sends after the adapter's closing commit when nothing is left to transcribe (the
#: adapter contract test replays it); the client then closes the socket.
END_OF_STREAM_FRAMES = [json.dumps(m, separators=(",", ":")) for m in
                        committed_messages([], ScribeOptions("scribe_v2_realtime", include_timestamps=True), 0)]
