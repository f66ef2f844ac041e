"""An OpenAI Realtime API transcription-session simulator (GA interface) on loopback.

It checks the upgrade as OpenAI does (path ``/v1/realtime``; ``intent=transcription``, or a ``model=``
that makes a conversation session; ``Authorization: Bearer <key>``, where a wrong or missing key is
refused *after* the upgrade with an ``error`` event ``invalid_api_key`` and a close 3000
``invalid_request_error.invalid_api_key``), sends ``session.created``, validates every
``session.update`` field by field (unknown parameters, formats, models, ``languages`` never ``[]``
or ``null``, turn detection refused for ``gpt-live-transcribe``/``gpt-realtime-whisper``, ...) and
answers ``session.updated`` or an ``error`` naming the parameter. Audio is ``input_audio_buffer.append``
(base64) in the session's format; its time is bytes / bytes-per-second of that format.

The script is played per OpenAI's item model: with server VAD, ``speech_started`` when speech begins
(``audio_start_ms`` less the prefix padding), ``speech_stopped`` once ``silence_duration_ms`` of
silence followed the last word (``audio_end_ms`` includes that silence), then the item:
``committed``, ``conversation.item.added``, per-word ``...transcription.delta`` events,
``...transcription.completed``, ``conversation.item.done``. A client ``input_audio_buffer.commit``
makes an item of what is buffered (refused with ``input_audio_buffer_commit_empty`` under 100 ms).
``gpt-live-transcribe`` and ``gpt-realtime-whisper`` stream their deltas as the words are heard and
complete only on a commit; ``whisper-1`` sends one delta per item. There is no end-of-stream message
and the server never closes on its own: the client closes once its last item has completed.
Shapes follow ``openai`` 3.54.0 (``openai.types.realtime``) field for field.

Where OpenAI's behaviour is not documented the simulator picks the stricter reading, marked "(sim)":
error codes and wording other than ``invalid_api_key``, ``input_audio_buffer_commit_empty`` and the
turn-detection refusal; ``language`` must be a two- or three-letter lower-case code; a binary frame is
refused with an ``error``; ``semantic_vad`` ends a turn after a silence set by ``eagerness``; the
session given in ``session.created`` (``gpt-4o-mini-transcribe``, server VAD 500 ms).
``Faults.ignore_finalize`` and ``ignore_close_stream`` both drop client commits: OpenAI's finalize and
close are the same message.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from dataclasses import dataclass, replace

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .base import ConnectionRecord, Faults, Script, ScriptWord, SimulatorServer

__all__ = ["END_OF_STREAM_FRAMES", "OpenAIEngine", "OpenAISimulator", "SessionConfig", "SessionError",
           "apply_session_update"]

PATH = "/v1/realtime"
MODELS = ("whisper-1", "gpt-transcribe", "gpt-live-transcribe", "gpt-4o-mini-transcribe",
          "gpt-4o-mini-transcribe-2025-12-15", "gpt-4o-transcribe", "gpt-4o-transcribe-diarize",
          "gpt-realtime-whisper")
CLIENT_COMMIT_MODELS = ("gpt-live-transcribe", "gpt-realtime-whisper")  # no VAD; deltas stream live
LANGUAGES_MODELS = ("gpt-transcribe", "gpt-live-transcribe")  # take ``languages`` and ``keywords``
NO_PROMPT_MODELS = ("gpt-realtime-whisper", "gpt-4o-transcribe-diarize")
DURATION_BILLED = ("whisper-1", "gpt-realtime-whisper")
FORMATS = {"audio/pcm": (24000, 2), "audio/pcmu": (8000, 1), "audio/pcma": (8000, 1)}
MIN_COMMIT_S = 0.1
MAX_APPEND_BYTES = 15 * 2**20
EAGERNESS_SILENCE_S = {"low": 1.5, "medium": 0.8, "auto": 0.8, "high": 0.4}  # (sim)
TURN_DETECTION_REFUSED = "Turn detection is not supported for this transcription model"
INVALID_KEY_REASON = "invalid_request_error.invalid_api_key"
_KEYS = {
    "session": {"type", "audio", "include"},
    "session.audio": {"input"},
    "session.audio.input": {"format", "transcription", "turn_detection", "noise_reduction"},
    "session.audio.input.format": {"type", "rate"},
    "session.audio.input.transcription": {"model", "language", "languages", "prompt", "keywords", "delay"},
    "server_vad": {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms",
                   "create_response", "interrupt_response"},
    "semantic_vad": {"type", "eagerness", "create_response", "interrupt_response"},
    "session.audio.input.noise_reduction": {"type", "strength"},
}


# -- session configuration, checked like OpenAI --------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionConfig:
    format: str = "audio/pcm"
    model: str | None = "gpt-4o-mini-transcribe"  # None: transcription off
    language: str | None = None
    languages: tuple[str, ...] | None = None
    prompt: str | None = None
    keywords: tuple[str, ...] | None = None
    delay: str | None = None
    vad: str | None = "server_vad"  # server_vad | semantic_vad | None
    threshold: float = 0.5
    prefix_s: float = 0.3
    silence_s: float = 0.5
    eagerness: str = "auto"
    noise_reduction: str | None = None
    logprobs: bool = False

    @property
    def bytes_per_second(self) -> int:
        rate, width = FORMATS[self.format]
        return rate * width

    @property
    def streams_live(self) -> bool:
        return self.model is not None and self.model.startswith(CLIENT_COMMIT_MODELS)

    @property
    def vad_silence_s(self) -> float:
        return self.silence_s if self.vad == "server_vad" else EAGERNESS_SILENCE_S[self.eagerness]

    def session(self, session_id: str, expires_at: int) -> dict:
        """The session object of ``session.created`` / ``session.updated``."""
        fmt: dict = {"type": self.format}
        if self.format == "audio/pcm":
            fmt["rate"] = 24000
        transcription = None
        if self.model is not None:
            transcription = {"model": self.model}
            for key in ("language", "prompt", "delay"):
                if getattr(self, key) is not None:
                    transcription[key] = getattr(self, key)
            for key in ("languages", "keywords"):
                if getattr(self, key) is not None:
                    transcription[key] = list(getattr(self, key))
        turn = None
        if self.vad == "server_vad":
            turn = {"type": "server_vad", "threshold": self.threshold, "prefix_padding_ms": round(self.prefix_s * 1000),
                    "silence_duration_ms": round(self.silence_s * 1000)}
        elif self.vad == "semantic_vad":
            turn = {"type": "semantic_vad"}
        return {"type": "transcription", "object": "realtime.transcription_session", "id": session_id,
                "expires_at": expires_at,
                "audio": {"input": {"format": fmt, "transcription": transcription, "turn_detection": turn,
                                    "noise_reduction": None if self.noise_reduction is None
                                    else {"type": self.noise_reduction}}},
                "include": ["item.input_audio_transcription.logprobs"] if self.logprobs else None}


class SessionError(ValueError):
    """A refused ``session.update``: OpenAI's error ``code``, ``message`` and ``param``."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.code, self.param = code, param


def _object(value: object, path: str) -> dict:
    if not isinstance(value, dict):
        raise SessionError(f"Invalid type for '{path}': expected an object, but got {type(value).__name__}.",
                           path, "invalid_type")
    for key in value:
        allowed = _KEYS.get(path) or _KEYS.get(str(value.get("type")), set())
        if key not in allowed:
            raise SessionError(f"Unknown parameter: '{path}.{key}'.", f"{path}.{key}", "unknown_parameter")
    return value


def _ms(value: object, path: str, lo: int, hi: int) -> float:
    if type(value) is not int or not lo <= value <= hi:
        raise SessionError(f"Invalid '{path}': expected an integer from {lo} to {hi}, got {value!r}.", path)
    return value / 1000


def _string_list(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise SessionError(f"Invalid '{path}': expected a non-empty array of strings.", path)  # [] and null too
    return tuple(value)


def apply_session_update(current: SessionConfig, session: object, *, conversation: bool = False
                         ) -> SessionConfig:
    """The configuration after a ``session.update``; ``SessionError`` when OpenAI would refuse it.
    Fields not present keep their value (OpenAI's merge rule)."""
    s = _object(session, "session")
    if "type" not in s:
        raise SessionError("Missing required parameter: 'session.type'.", "session.type", "missing_required_parameter")
    if s["type"] != "transcription" or conversation:
        if conversation and s["type"] == "transcription":  # a ?model= URL opened a conversation session
            raise SessionError("Transcription sessions are opened with intent=transcription and no model in "
                               "the URL.", "session.type", "invalid_model")
        raise SessionError(f"Invalid value: {s['type']!r}. This is a transcription session: session.type must "
                           "be 'transcription'.", "session.type")
    cfg = current
    if "include" in s:
        inc = s["include"]
        if inc is not None and (not isinstance(inc, list) or any(v != "item.input_audio_transcription.logprobs"
                                                                  for v in inc)):
            raise SessionError("Invalid 'session.include'.", "session.include")
        cfg = replace(cfg, logprobs=bool(inc))
    audio = _object(s.get("audio", {}), "session.audio")
    inp = _object(audio.get("input", {}), "session.audio.input")
    if "format" in inp:
        fmt = _object(inp["format"], "session.audio.input.format")
        kind = fmt.get("type", "audio/pcm")
        if kind not in FORMATS:
            raise SessionError(f"Invalid value: {kind!r}. Supported values are: {', '.join(map(repr, FORMATS))}.",
                               "session.audio.input.format.type")
        if "rate" in fmt and (kind != "audio/pcm" or fmt["rate"] != 24000):
            raise SessionError(f"Invalid 'session.audio.input.format.rate': {fmt['rate']!r}. Only 24000 is "
                               "supported, and only for audio/pcm.", "session.audio.input.format.rate")
        cfg = replace(cfg, format=kind)
    if "noise_reduction" in inp:
        nr = inp["noise_reduction"]
        if nr is not None:
            nr = _object(nr, "session.audio.input.noise_reduction").get("type", "near_field")
            if nr not in ("near_field", "far_field"):
                raise SessionError(f"Invalid value: {nr!r}.", "session.audio.input.noise_reduction.type")
        cfg = replace(cfg, noise_reduction=nr)
    if "transcription" in inp:
        cfg = _transcription(cfg, inp["transcription"])
    if "turn_detection" in inp:
        cfg = _turn_detection(cfg, inp["turn_detection"])
    if cfg.vad is not None and cfg.streams_live:  # whichever of the two fields came last
        raise SessionError(TURN_DETECTION_REFUSED, "session.audio.input.turn_detection")
    return cfg


def _transcription(cfg: SessionConfig, value: object) -> SessionConfig:
    path = "session.audio.input.transcription"
    if value is None:
        return replace(cfg, model=None)
    t = _object(value, path)
    model = t.get("model", cfg.model or "whisper-1")
    if model not in MODELS:
        raise SessionError(f"Invalid value: {model!r}. Supported values are: {', '.join(map(repr, MODELS))}.",
                           f"{path}.model")
    lang = t.get("language")
    if lang is not None and (not isinstance(lang, str) or not lang.isalpha() or not lang.islower()
                             or len(lang) not in (2, 3)):  # (sim) ISO-639-1
        raise SessionError(f"Invalid 'language': {lang!r}. Use an ISO-639-1 code such as 'en'.", f"{path}.language")
    languages = keywords = None
    if "languages" in t:
        languages = _string_list(t["languages"], f"{path}.languages")
    if "keywords" in t:
        keywords = _string_list(t["keywords"], f"{path}.keywords")
    if (languages or keywords) and not model.startswith(LANGUAGES_MODELS):
        raise SessionError(f"'languages' and 'keywords' are not supported by {model}.", f"{path}.languages")
    if "delay" in t and (model != "gpt-realtime-whisper"
                         or t["delay"] not in ("minimal", "low", "medium", "high", "xhigh")):
        raise SessionError(f"Invalid 'delay' for {model}.", f"{path}.delay")
    if t.get("prompt") and model.startswith(NO_PROMPT_MODELS):
        raise SessionError(f"'prompt' is not supported by {model}.", f"{path}.prompt")
    return replace(cfg, model=model, language=lang, languages=languages, keywords=keywords,
                   prompt=t.get("prompt"), delay=t.get("delay"))


def _turn_detection(cfg: SessionConfig, value: object) -> SessionConfig:
    path = "session.audio.input.turn_detection"
    if value is None:
        return replace(cfg, vad=None)
    if not isinstance(value, dict) or value.get("type") not in ("server_vad", "semantic_vad"):
        raise SessionError("Invalid 'turn_detection.type': expected 'server_vad' or 'semantic_vad'.", f"{path}.type")
    td = _object(value, path)
    out = replace(cfg, vad=td["type"])
    if "silence_duration_ms" in td:
        out = replace(out, silence_s=_ms(td["silence_duration_ms"], f"{path}.silence_duration_ms", 0, 3_600_000))
    if "prefix_padding_ms" in td:
        out = replace(out, prefix_s=_ms(td["prefix_padding_ms"], f"{path}.prefix_padding_ms", 0, 3_600_000))
    if "threshold" in td:
        th = td["threshold"]
        if type(th) not in (int, float) or not 0 <= th <= 1:
            raise SessionError("Invalid 'threshold': expected a number from 0 to 1.", f"{path}.threshold")
        out = replace(out, threshold=float(th))
    if "eagerness" in td:
        if td["eagerness"] not in EAGERNESS_SILENCE_S:
            raise SessionError("Invalid 'eagerness'.", f"{path}.eagerness")
        out = replace(out, eagerness=td["eagerness"])
    return out


# -- message builders (shapes of openai.types.realtime) --------------------------------------------
def error_event(event_id: str, kind: str, message: str, *, code: str | None = None, param: str | None = None,
                client_event_id: str | None = None) -> dict:
    return {"type": "error", "event_id": event_id,
            "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": client_event_id}}


def user_item(item_id: str, transcript: str | None) -> dict:
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
            "content": [{"type": "input_audio", "transcript": transcript}]}


def completed_event(event_id: str, item_id: str, transcript: str, cfg: SessionConfig, seconds: float) -> dict:
    msg: dict = {"type": "conversation.item.input_audio_transcription.completed", "event_id": event_id,
                 "item_id": item_id, "content_index": 0, "transcript": transcript}
    model = cfg.model or ""
    if model.startswith(DURATION_BILLED):
        msg["usage"] = {"type": "duration", "seconds": round(seconds, 3)}
    else:
        audio_tokens = max(1, round(seconds * 10))
        out_tokens = len(transcript.split())
        msg["usage"] = {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": out_tokens,
                        "total_tokens": audio_tokens + out_tokens,
                        "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0}}
    if model.startswith("gpt-transcribe"):
        msg["languages"] = [{"code": (cfg.languages or (cfg.language or "en",))[0]}]
    if cfg.logprobs:
        msg["logprobs"] = _logprobs(transcript)
    return msg


def _logprobs(text: str) -> list[dict]:
    return [{"token": tok, "logprob": -0.01, "bytes": list(tok.encode())} for tok in text.split(" ") if tok]


# -- the transcript engine (no I/O) ----------------------------------------------------------------
class OpenAIEngine:
    """Turns audio time and client commits into OpenAI server events for a script.

    A word is heard once the audio passes its end. With VAD, speech starts when the audio reaches the
    first word of the next turn and stops once the VAD silence has passed after the turn's last word
    (and the next word starts later); the turn's heard words make the item. A client commit makes an
    item of the heard words not in an item yet (those ending before the buffered audio does).
    """

    STEP = 0.02

    def __init__(self, script: Script, config: SessionConfig | None = None, *, seed: str = "") -> None:
        self.script = script
        self.config = config or SessionConfig()
        self.t = 0.0  # audio received
        self.buffer_start = 0.0  # where the uncommitted buffer starts
        self.next_index = 0  # first word not heard yet
        self.heard: list[ScriptWord] = []  # heard, not in an item yet
        self.speaking = False
        self.speech_item: str | None = None  # announced by speech_started, not committed yet
        self.speech_last_end: float | None = None  # last word of the current speech
        self.live_item: str | None = None  # streaming models: the item its deltas belong to
        self.previous_item: str | None = None
        self._seed = seed or uuid.uuid4().hex[:8]
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._seed}{self._n:012d}"

    def event(self, kind: str, **fields: object) -> dict:
        return {"type": kind, "event_id": self._id("event"), **fields}

    def advance(self, audio_time: float) -> list[dict]:
        out: list[dict] = []
        while self.t < audio_time - 1e-9:
            self.t = min(audio_time, self.t + self.STEP)
            self._step(self.t, out)
        return out

    def _step(self, now: float, out: list[dict]) -> None:
        cfg = self.config
        while (w := self.script.word(self.next_index)) is not None and w.end <= now + 1e-9:
            self.heard.append(w)
            self.next_index += 1
            if self.speaking:
                self.speech_last_end = w.end
            if cfg.streams_live:
                if self.live_item is None:
                    self.live_item = self._id("item")
                out.append(self._delta(self.live_item, w.text if len(self.heard) == 1 else " " + w.text))
        if cfg.vad is None:
            return
        nxt = self.script.word(self.next_index)
        first = self.heard[0] if self.heard else nxt
        if not self.speaking and first is not None and first.start <= now + 1e-9:
            self.speaking, self.speech_item = True, self._id("item")
            self.speech_last_end = self.heard[-1].end if self.heard else None
            start = max(self.buffer_start, first.start - cfg.prefix_s)
            out.append(self.event("input_audio_buffer.speech_started", audio_start_ms=round(start * 1000),
                                  item_id=self.speech_item))
        if self.speaking and self.speech_last_end is not None:
            quiet_until = self.speech_last_end + cfg.vad_silence_s
            if now >= quiet_until - 1e-9 and (nxt is None or nxt.start >= quiet_until):
                item_id = self.speech_item or self._id("item")
                out.append(self.event("input_audio_buffer.speech_stopped", audio_end_ms=round(quiet_until * 1000),
                                      item_id=item_id))
                self.speaking, self.speech_item, self.speech_last_end = False, None, None
                out += self._item(item_id, quiet_until)

    def commit(self, client_event_id: str | None = None) -> list[dict]:
        """A client ``input_audio_buffer.commit``."""
        buffered = self.t - self.buffer_start
        if buffered < MIN_COMMIT_S - 1e-9:
            return [error_event(self._id("event"), "invalid_request_error",
                                "Error committing input audio buffer: buffer too small. Expected at least "
                                f"100ms of audio, but buffer only has {buffered * 1000:.2f}ms of audio.",
                                code="input_audio_buffer_commit_empty", client_event_id=client_event_id)]
        item_id = self.speech_item or self.live_item or self._id("item")
        self.speech_item = None  # the speech goes on; the VAD names its next item anew
        return self._item(item_id, self.t)

    def clear(self) -> list[dict]:
        self.heard, self.live_item, self.buffer_start = [], None, self.t
        return [self.event("input_audio_buffer.cleared")]

    def _delta(self, item_id: str, text: str) -> dict:
        msg = self.event("conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0,
                         delta=text)
        if self.config.logprobs:
            msg["logprobs"] = _logprobs(text.strip())
        return msg

    def _item(self, item_id: str, end: float) -> list[dict]:
        """Commit the buffer up to ``end`` as ``item_id`` and transcribe its heard words."""
        cfg, words = self.config, self.heard
        seconds = end - self.buffer_start
        self.heard, self.buffer_start = [], end
        streamed = item_id == self.live_item
        self.live_item = None
        out = [self.event("input_audio_buffer.committed", previous_item_id=self.previous_item, item_id=item_id),
               self.event("conversation.item.added", previous_item_id=self.previous_item,
                          item=user_item(item_id, None))]
        self.previous_item = item_id
        if cfg.model is None:  # transcription off: the item exists, nobody transcribes it
            return out + [self.event("conversation.item.done", previous_item_id=None, item=user_item(item_id, None))]
        texts = [w.text for w in words]
        transcript = " ".join(texts)
        if not streamed and texts:
            if cfg.model.startswith("whisper-1"):
                out.append(self._delta(item_id, transcript))
            else:
                out += [self._delta(item_id, t if i == 0 else " " + t) for i, t in enumerate(texts)]
        out.append(completed_event(self._id("event"), item_id, transcript, cfg, seconds))
        out.append(self.event("conversation.item.done", previous_item_id=None, item=user_item(item_id, transcript)))
        return out


# -- the server ------------------------------------------------------------------------------------
class OpenAISimulator(SimulatorServer):
    """``async with OpenAISimulator(api_key="k") as sim:`` then point a client at ``sim.listen_url``
    (the OpenAI SDK: ``websocket_base_url=sim.url + "/v1"``).

    ``api_key=None`` accepts any non-empty Bearer key. ``error_on_failure``: when ``fail_after_finals``
    fires, send a ``server_error`` event (with ``fail_reason``) before the close.
    """

    provider = "openai"

    def __init__(self, *, api_key: str | None = "test-key", script: Script | None = None,
                 faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0,
                 error_on_failure: bool = True, **_: object) -> None:
        super().__init__(host=host, port=port, script=script, faults=faults, max_size=MAX_APPEND_BYTES * 2)
        self.api_key = api_key
        self.error_on_failure = error_on_failure

    @property
    def listen_url(self) -> str:
        return self.url + PATH

    # -- handshake ------------------------------------------------------------------------------
    def _http_error(self, status: int, message: str, code: str | None, param: str | None) -> Response:
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                     "code": code}})
        return self.http_error(status, body, content_type="application/json")

    def auth_rejection(self, request: Request, record: ConnectionRecord) -> Response | None:
        record.info["auth_ok"] = False  # OpenAI refuses keys after the upgrade, in band
        return None

    def check_handshake(self, request: Request, record: ConnectionRecord) -> Response | None:
        if record.path != PATH:
            return self._http_error(404, f"Invalid URL (GET {record.path})", None, None)
        intent, model = record.param("intent"), record.param("model")
        if intent is not None and intent != "transcription":
            return self._http_error(400, f"Invalid value for 'intent': {intent!r}.", "invalid_value", "intent")  # (sim)
        if intent is None and not model and not record.param("call_id"):
            return self._http_error(400, "Missing required parameter: 'model'.", "missing_required_parameter",
                                    "model")  # (sim)
        scheme, _, key = (record.header("authorization") or "").partition(" ")
        record.info["auth_ok"] = scheme == "Bearer" and bool(key.strip()) and (self.api_key is None
                                                                              or key == self.api_key)
        record.info["conversation"] = intent is None
        return None

    # -- session --------------------------------------------------------------------------------
    async def run_session(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        engine = OpenAIEngine(self.script)
        if not record.info.get("auth_ok"):
            await self._send(ws, record, error_event(engine._id("event"), "invalid_request_error",
                                                     "Incorrect API key provided. You can find your API key at "
                                                     "https://platform.openai.com/account/api-keys.",
                                                     code="invalid_api_key"))
            await self.close(ws, record, 3000, INVALID_KEY_REASON)
            return
        conversation = record.info.get("conversation", False)
        session_id, expires_at = engine._id("sess"), int(time.time()) + 3600
        record.info["config"] = engine.config
        created = engine.config.session(session_id, expires_at)
        if conversation:  # (sim) only the type matters: transcription updates are refused
            created = {"type": "realtime", "object": "realtime.session", "id": session_id}
        await self._send(ws, record, engine.event("session.created", session=created))
        while True:
            frame = await self.receive(ws, record)
            if isinstance(frame, bytes):
                await self._send(ws, record, error_event(engine._id("event"), "invalid_request_error",
                                                         "Binary frames are not supported; send JSON events.",
                                                         code="invalid_value"))  # (sim)
                continue
            try:
                msg = json.loads(frame)
                kind = msg.get("type") if isinstance(msg, dict) else None
            except ValueError:
                msg, kind = {}, None
            client_id = msg.get("event_id") if isinstance(msg, dict) and isinstance(msg.get("event_id"), str) else None
            if kind == "input_audio_buffer.append":
                await self._append(ws, record, engine, msg, client_id)
            elif kind == "input_audio_buffer.commit":
                if not (self.faults.ignore_finalize or self.faults.ignore_close_stream):
                    await self._send_all(ws, record, engine.commit(client_id))
            elif kind == "input_audio_buffer.clear":
                await self._send_all(ws, record, engine.clear())
            elif kind == "session.update":
                try:
                    engine.config = apply_session_update(engine.config, msg.get("session"), conversation=conversation)
                except SessionError as exc:
                    await self._send(ws, record, error_event(engine._id("event"), "invalid_request_error", str(exc),
                                                             code=exc.code, param=exc.param, client_event_id=client_id))
                    continue
                record.info["config"] = engine.config
                await self._send(ws, record, engine.event("session.updated",
                                                          session=engine.config.session(session_id, expires_at)))
            elif kind is None:
                await self._send(ws, record, error_event(engine._id("event"), "invalid_request_error",
                                                         "We could not parse the JSON body of your request.",
                                                         code="invalid_json"))  # (sim)
            else:
                await self._send(ws, record, error_event(
                    engine._id("event"), "invalid_request_error",
                    f"Invalid value: {str(kind)[:100]!r}. Transcription sessions accept session.update and "
                    "input_audio_buffer.append, commit and clear.", code="invalid_value", param="type",
                    client_event_id=client_id))  # (sim)

    async def _append(self, ws: ServerConnection, record: ConnectionRecord, engine: OpenAIEngine, msg: dict,
                      client_id: str | None) -> None:
        try:
            data = base64.b64decode(msg.get("audio"), validate=True)
            if len(data) > MAX_APPEND_BYTES:
                raise ValueError
        except (TypeError, ValueError, binascii.Error):
            await self._send(ws, record, error_event(engine._id("event"), "invalid_request_error",
                                                     "Invalid 'audio': expected base64-encoded audio bytes, at most "
                                                     "15 MiB.", code="invalid_value", param="audio",
                                                     client_event_id=client_id))  # (sim)
            return
        record.audio_bytes += len(data)
        record.audio_frames += 1
        record.first_audio_at = record.first_audio_at or time.monotonic()
        record.last_audio_at = time.monotonic()
        record.audio_seconds += len(data) / engine.config.bytes_per_second
        await self._send_all(ws, record, engine.advance(record.audio_seconds))

    async def _send(self, ws: ServerConnection, record: ConnectionRecord, msg: dict) -> None:
        await self.send_text(ws, record, json.dumps(msg, separators=(",", ":"), ensure_ascii=False))

    async def _send_all(self, ws: ServerConnection, record: ConnectionRecord, msgs: list[dict]) -> None:
        for msg in msgs:
            await self._send(ws, record, msg)
            if msg["type"].endswith("transcription.completed") and msg["transcript"]:
                await self.final_sent(ws, record)

    async def final_sent(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        f = self.faults
        if (self.error_on_failure and not f.fail_reset and f.fail_after_finals is not None
                and record.finals_sent + 1 >= f.fail_after_finals):
            await self._send(ws, record, error_event(f"event_fail{record.finals_sent}", "server_error",
                                                     f.fail_reason, code="server_error"))
        await super().final_sent(ws, record)


def _end_of_stream_frames() -> list[str]:
    """What OpenAI sends after the close commit: the last item, committed and completed."""
    engine = OpenAIEngine(Script([ScriptWord("bye", 0.1, 0.4, None, "Bye.")]), SessionConfig(vad=None), seed="eos")
    engine.advance(0.5)
    return [json.dumps(m, separators=(",", ":")) for m in engine.commit()]


#: What OpenAI sends after the adapter's closing commit that completes a session (the adapter
#: contract test replays it): committed, item added, delta, completed, item done.
END_OF_STREAM_FRAMES = _end_of_stream_frames()
