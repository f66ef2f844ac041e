"""An AssemblyAI Universal-Streaming (streaming API v3) simulator on loopback.

It checks the connection as AssemblyAI does: path ``/v3/ws`` (else HTTP 404); the raw key in
``Authorization`` (or a ``token`` query parameter), refused *after* the upgrade with an ``Error`` frame
and close 1008 ("Unauthorized Connection: Missing Authorization header"); the query parameters of the
SDK's ``RealTimeParameters`` (``speech_model`` required, ``sample_rate`` for PCM, typed values;
booleans in any case, since the official SDK itself sends ``True``), refused with ``Error`` + close
3006; unknown parameters are ignored, as AssemblyAI does, and noted in ``record.info["ignored_params"]``. Then it sends ``Begin`` and measures the audio: every binary message
must hold 50-1000 ms (else ``Error`` + close 3007 "Input duration violation"), and with ``max_lead_s``
set, audio may not run further ahead of real time than that (3007 "Audio Transmission Rate Exceeded").
Text messages: ``KeepAlive``, ``ForceEndpoint`` (ends the turn now), ``UpdateConfiguration`` (turn
silences applied), ``Terminate`` (the turn in flight, ``Termination``, close 1000); anything else is
``Error`` + close 3006. Every non-1000 close, failure injection included, is preceded by an ``Error``
frame with the same code, and a reason over 123 bytes becomes "See Error message for details".

The script is played as AssemblyAI's two model families do (shapes of ``assemblyai`` 1.8.2
``streaming.v3.models``, field for field, plus ``utterance`` from the docs' message sequence):
- Universal-Streaming (``universal-streaming-english``/``-multilingual``, ``whisper-rt``): a ``Turn`` per
  heard word, the newest word not final yet (``transcript`` holds the final words only); a turn ends
  after ``min_turn_silence`` when its last word ends a sentence, else after ``max_turn_silence``, with an
  unformatted end of turn and, with ``format_turns=true``, a formatted twin of the same ``turn_order``.
- Universal-3 Pro and newer: formatted text on every message, partials only as an early partial
  (0.75 s into a turn) and at pauses of ``min_turn_silence``, all partial words non-final; one end of
  turn, at a sentence end after ``min_turn_silence`` or after ``max_turn_silence``.
Choices marked (sim) are not documented by AssemblyAI: the 404 body, the wording of invalid-key and
invalid-parameter errors, refusing ``language_codes`` outside Universal-3 Pro, refusing the opus,
ogg_opus and aac encodings (not simulated), ``Termination`` + 1000 at ``inactivity_timeout``, a
Universal-Streaming word turning final 0.2 s after it ends, and no message for a ``ForceEndpoint``
during silence.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass, replace

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .base import ConnectionRecord, Faults, Script, ScriptWord, SimulatorServer

__all__ = ["AssemblyAIEngine", "AssemblyAIOptions", "AssemblyAISimulator", "END_OF_STREAM_FRAMES", "Rejected",
           "parse_options", "turn_message"]

PATH = "/v3/ws"
#: ``assemblyai`` 1.8.2 ``SpeechModel``
SPEECH_MODELS = ("universal-streaming-multilingual", "universal-streaming-english", "u3-rt-pro", "u3-rt-pro-beta-1",
                 "whisper-rt", "universal-3-5-pro", "universal-3-6", "universal-3-6-pro", "u3-pro")
FORMAT_TURNS_MODELS = frozenset({"universal-streaming-english", "universal-streaming-multilingual", "whisper-rt"})
U3_PRO_MODELS = frozenset({"u3-rt-pro", "u3-rt-pro-beta-1", "u3-pro", "universal-3-5-pro", "universal-3-6-pro"})
ENCODINGS = ("pcm_s16le", "pcm_mulaw", "opus", "ogg_opus", "aac")  # ``Encoding``
BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_mulaw": 1}  # the simulated ones
BOOL_PARAMS = frozenset({"format_turns", "speaker_labels", "language_detection", "filter_profanity",
                         "session_heartbeat", "acknowledge_silence", "continuous_partials", "include_partial_turns",
                         "redact_pii", "customer_support_audio_capture"})
INT_PARAMS = {"sample_rate": (1, 384_000), "min_turn_silence": (0, 60_000), "max_turn_silence": (0, 60_000),
              "min_end_of_turn_silence_when_confident": (0, 60_000), "inactivity_timeout": (5, 3600),
              "max_speakers": (1, 10), "interruption_delay": (0, 1000), "turn_left_pad_ms": (0, 10_000),
              "speaker_labels_revision_interval_ms": (0, 3_600_000), "previous_context_n_turns": (0, 100)}
FLOAT_PARAMS = frozenset({"end_of_turn_confidence_threshold", "vad_threshold", "voice_focus_threshold",
                          "noise_suppression_threshold"})
LIST_PARAMS = frozenset({"keyterms_prompt", "language_codes", "redact_pii_policies"})
#: every connection parameter of ``RealTimeParameters`` (+ ``token``, ``previous_context_n_turns``)
KNOWN_PARAMS = BOOL_PARAMS | set(INT_PARAMS) | FLOAT_PARAMS | LIST_PARAMS | {
    "encoding", "speech_model", "language_code", "domain", "webhook_url", "webhook_auth_header_name",
    "webhook_auth_header_value", "llm_gateway", "voice_focus", "noise_suppression_model", "redact_pii_sub",
    "mode", "prompt", "agent_context", "token"}
#: what ``UpdateConfiguration`` may carry (``RealTimeSessionParameters``)
UPDATE_FIELDS = frozenset({"end_of_turn_confidence_threshold", "min_end_of_turn_silence_when_confident",
                           "min_turn_silence", "max_turn_silence", "vad_threshold", "format_turns", "keyterms_prompt",
                           "filter_profanity", "prompt", "agent_context", "interruption_delay", "turn_left_pad_ms",
                           "language_codes", "session_heartbeat", "acknowledge_silence"})
DEFAULT_TURN_SILENCE_MS = {True: (400, 1280), False: (100, 1000)}  # (min, max) by "formats in a twin"
MISSING_AUTH = "Unauthorized Connection: Missing Authorization header"
INVALID_KEY = "Unauthorized Connection: Invalid API key"  # (sim)
SESSION_S = 3 * 3600  # the longest session


class Rejected(ValueError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class AssemblyAIOptions:
    speech_model: str
    encoding: str = "pcm_s16le"
    sample_rate: int = 16000
    format_turns: bool = False
    speaker_labels: bool = False
    language_detection: bool = False
    min_turn_silence_s: float = 0.4
    max_turn_silence_s: float = 1.28
    inactivity_timeout: float | None = None

    @property
    def builtin_formatting(self) -> bool:
        """Universal-3 Pro and newer: every message formatted, one end of turn."""
        return self.speech_model not in FORMAT_TURNS_MODELS

    @property
    def twin(self) -> bool:
        """Each turn ends twice: unformatted, then formatted."""
        return not self.builtin_formatting and self.format_turns


def parse_options(query: dict[str, list[str]]) -> tuple[AssemblyAIOptions, list[str]]:
    """Validate a ``/v3/ws`` query as AssemblyAI does: the options and the ignored parameter names.
    Raises ``Rejected`` (code 3006) naming the problem."""
    q = {name: values[-1] for name, values in query.items()}
    ignored = sorted(set(q) - KNOWN_PARAMS)
    bad = lambda why: Rejected(3006, f"Invalid connection parameter: {why}")  # noqa: E731 (sim wording)
    model = q.get("speech_model")
    if not model:
        raise bad("speech_model is required (one of " + ", ".join(SPEECH_MODELS) + ")")
    if model not in SPEECH_MODELS:
        raise bad(f"speech_model {model!r} is not one of " + ", ".join(SPEECH_MODELS))
    encoding = q.get("encoding", "pcm_s16le")
    if encoding not in ENCODINGS:
        raise bad(f"encoding {encoding!r} is not one of " + ", ".join(ENCODINGS))
    if encoding not in BYTES_PER_SAMPLE:
        raise bad(f"encoding {encoding} is not simulated")  # (sim)
    values: dict = {}
    for name in BOOL_PARAMS & set(q):
        if q[name].lower() not in ("true", "false"):  # any case: the SDK's urlencode sends True/False
            raise bad(f"{name} must be true or false, got {q[name]!r}")
        values[name] = q[name].lower() == "true"
    for name in set(INT_PARAMS) & set(q):
        lo, hi = INT_PARAMS[name]
        if not q[name].isdigit() or not lo <= int(q[name]) <= hi:
            raise bad(f"{name} must be an integer from {lo} to {hi}, got {q[name]!r}")
        values[name] = int(q[name])
    for name in FLOAT_PARAMS & set(q):
        try:
            if not 0.0 <= float(q[name]) <= 1.0:
                raise ValueError
        except ValueError:
            raise bad(f"{name} must be a number from 0 to 1, got {q[name]!r}") from None
    for name in LIST_PARAMS & set(q):
        try:
            items = json.loads(q[name])
        except ValueError:
            items = None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise bad(f"{name} must be a JSON list of strings, got {q[name]!r}")
        if name == "language_codes":
            if model not in U3_PRO_MODELS:
                raise bad(f"language_codes is only supported by {', '.join(sorted(U3_PRO_MODELS))}")  # (sim)
            if len(items) > 10 or ("multi" in items and len(items) > 1):
                raise bad("language_codes takes at most 10 codes, and 'multi' only alone")
    if "sample_rate" not in values:
        raise bad("sample_rate is required for PCM encodings")
    twin_family = model in FORMAT_TURNS_MODELS
    min_ms, max_ms = DEFAULT_TURN_SILENCE_MS[twin_family]
    min_ms = values.get("min_turn_silence", values.get("min_end_of_turn_silence_when_confident", min_ms))
    max_ms = values.get("max_turn_silence", max_ms)
    opts = AssemblyAIOptions(
        speech_model=model, encoding=encoding, sample_rate=values["sample_rate"],
        format_turns=values.get("format_turns", False), speaker_labels=values.get("speaker_labels", False),
        language_detection=values.get("language_detection", False),
        min_turn_silence_s=min_ms / 1000, max_turn_silence_s=max_ms / 1000,
        inactivity_timeout=values.get("inactivity_timeout"))
    return opts, ignored


# -- message builders (shapes of assemblyai.streaming.v3.models) -----------------------------------
def _ms(t: float) -> int:
    return int(round(t * 1000))


def _speaker(n: int | None) -> str:
    return chr(ord("A") + n) if n is not None and 0 <= n < 26 else "UNKNOWN"


def turn_message(order: int, words: list[ScriptWord], *, n_final: int, in_transcript: int, end_of_turn: bool,
                 formatted: bool, opts: AssemblyAIOptions) -> dict:
    """A ``Turn``: ``words[:n_final]`` final, ``words[:in_transcript]`` in ``transcript``."""
    texts = [w.text if formatted else w.word for w in words]
    items = []
    for i, (w, text) in enumerate(zip(words, texts)):
        item: dict = {"start": _ms(w.start), "end": _ms(w.end), "text": text,
                      "confidence": round(0.99 - 0.01 * (i % 4), 3), "word_is_final": i < n_final}
        if opts.speaker_labels and i < n_final:
            item["speaker"] = _speaker(w.speaker)
        items.append(item)
    transcript = " ".join(texts[:in_transcript])
    msg: dict = {"type": "Turn", "turn_order": order, "turn_is_formatted": formatted, "end_of_turn": end_of_turn,
                 "transcript": transcript, "end_of_turn_confidence": 0.97 if end_of_turn else 0.02,
                 "words": items, "utterance": transcript if end_of_turn else ""}
    if opts.speaker_labels:
        msg["speaker_label"] = _speaker(words[0].speaker) if words else "UNKNOWN"
    if opts.language_detection and end_of_turn:
        msg["language_code"], msg["language_confidence"] = "en", 0.98
    return msg


def begin_message(session_id: str, model: str) -> dict:
    config = {"model": model, "api_version": "1.0.0"}
    if model not in FORMAT_TURNS_MODELS:
        config["mode"] = "balanced"
    return {"type": "Begin", "id": session_id, "expires_at": int(time.time()) + SESSION_S, "configuration": config}


def termination_message(audio_s: float, session_s: float) -> dict:
    return {"type": "Termination", "audio_duration_seconds": int(round(audio_s)),
            "session_duration_seconds": int(round(session_s))}


def error_message(code: int, text: str) -> dict:
    return {"type": "Error", "error_code": code, "error": text}


# -- the transcript engine (no I/O) ----------------------------------------------------------------
class AssemblyAIEngine:
    """Turns audio time into ``Turn`` messages for a script, evaluated every ``STEP`` seconds of audio.
    A word is heard once the audio passes its end; the rules per model family are in the module doc."""

    STEP = 0.02
    WORD_FINAL_LAG_S = 0.2  # (sim)
    EARLY_PARTIAL_S = 0.75

    def __init__(self, opts: AssemblyAIOptions, script: Script) -> None:
        self.opts = opts
        self.script = script
        self.t = 0.0
        self.next_index = 0
        self.order = 0
        self.turn: list[ScriptWord] = []
        self.n_final = 0  # Universal-Streaming: final words of the turn
        self.early_sent = False  # Universal-3 Pro: the early partial of this turn is out
        self.paused_at = -1  # Universal-3 Pro: turn length at the last pause partial

    def update(self, min_turn_silence_s: float | None, max_turn_silence_s: float | None) -> None:
        """``UpdateConfiguration``: new turn silences apply from now on."""
        changes = {"min_turn_silence_s": min_turn_silence_s, "max_turn_silence_s": max_turn_silence_s}
        self.opts = replace(self.opts, **{k: v for k, v in changes.items() if v is not None})

    def advance(self, audio_time: float) -> list[dict]:
        out: list[dict] = []
        while self.t < audio_time - 1e-9:
            self.t = min(audio_time, self.t + self.STEP)
            self._step(self.t, out)
        return out

    def force_endpoint(self) -> list[dict]:
        """``ForceEndpoint`` and ``Terminate``: the turn in progress ends now (nothing during silence)."""
        return self._end_turn() if self.turn else []

    def _step(self, now: float, out: list[dict]) -> None:
        o = self.opts
        while (w := self.script.word(self.next_index)) is not None and w.end <= now + 1e-9:
            self.turn.append(w)
            self.next_index += 1
            if not o.builtin_formatting:  # a message per word; the one before it is final now
                self.n_final = len(self.turn) - 1
                out.append(self._message(self.n_final, self.n_final, end_of_turn=False, formatted=False))
        if not self.turn:
            return
        last, nxt = self.turn[-1], self.script.word(self.next_index)
        quiet = now - last.end

        def silent_for(s: float) -> bool:
            return quiet >= s - 1e-9 and (nxt is None or nxt.start >= last.end + s - 1e-9)

        confident = last.text.rstrip("\"')").endswith((".", "?", "!"))
        min_s = min(o.min_turn_silence_s, o.max_turn_silence_s)
        if silent_for(o.max_turn_silence_s) or (confident and silent_for(min_s)):
            out.extend(self._end_turn())
        elif o.builtin_formatting:
            n = len(self.turn)
            if not self.early_sent and now - self.turn[0].start >= self.EARLY_PARTIAL_S - 1e-9:
                self.early_sent = True
                out.append(self._message(0, n, end_of_turn=False, formatted=True))
            elif silent_for(min_s) and self.paused_at != n:
                self.paused_at = n
                out.append(self._message(0, n, end_of_turn=False, formatted=True))
        elif self.n_final < len(self.turn) and quiet >= self.WORD_FINAL_LAG_S - 1e-9:
            self.n_final = len(self.turn)
            out.append(self._message(self.n_final, self.n_final, end_of_turn=False, formatted=False))

    def _message(self, n_final: int, in_transcript: int, *, end_of_turn: bool, formatted: bool) -> dict:
        return turn_message(self.order, self.turn, n_final=n_final, in_transcript=in_transcript,
                            end_of_turn=end_of_turn, formatted=formatted, opts=self.opts)

    def _end_turn(self) -> list[dict]:
        n = len(self.turn)
        out = [self._message(n, n, end_of_turn=True, formatted=self.opts.builtin_formatting)]
        if self.opts.twin:
            out.append(self._message(n, n, end_of_turn=True, formatted=True))
        self.order += 1
        self.turn, self.n_final, self.early_sent, self.paused_at = [], 0, False, -1
        return out


def ends_a_turn(msg: dict, opts: AssemblyAIOptions) -> bool:
    """The last message of an ended turn with text (where a failure after K finals fires)."""
    return (msg.get("type") == "Turn" and msg["end_of_turn"] and bool(msg["transcript"])
            and (not opts.twin or msg["turn_is_formatted"]))


# -- the server ------------------------------------------------------------------------------------
class AssemblyAISimulator(SimulatorServer):
    """``async with AssemblyAISimulator(api_key="k") as sim:`` then point a client at ``sim.listen_url``
    (the SDK: ``RealTimeTranscriberOptions(api_host=sim.url)``).

    ``api_key=None`` accepts any key without a scheme prefix. ``max_lead_s`` turns on the real-time rate
    check (off by default: tests stream faster than real time).
    """

    provider = "assemblyai"

    def __init__(self, *, api_key: str | None = "test-key", script: Script | None = None,
                 faults: Faults | None = None, max_lead_s: float | None = None, host: str = "127.0.0.1",
                 port: int = 0, **_ignored: object) -> None:
        super().__init__(host=host, port=port, script=script, faults=faults)
        self.api_key = api_key
        self.max_lead_s = max_lead_s

    @property
    def listen_url(self) -> str:
        return self.url + PATH

    # -- handshake ------------------------------------------------------------------------------
    def auth_rejection(self, request: Request, record: ConnectionRecord) -> Response | None:
        record.info["refusal"] = (1008, INVALID_KEY)
        return None  # AssemblyAI accepts the upgrade, then says why not

    def check_handshake(self, request: Request, record: ConnectionRecord) -> Response | None:
        if record.path != PATH:
            return self.http_error(404, "Not Found")  # (sim)
        key = (record.header("authorization") or record.param("token") or "").strip()
        if not key:
            record.info["refusal"] = (1008, MISSING_AUTH)
        elif (key != self.api_key) if self.api_key is not None else (" " in key):
            record.info["refusal"] = (1008, INVALID_KEY)  # "Bearer <key>" is not the key
        else:
            try:
                record.info["options"], record.info["ignored_params"] = parse_options(record.query)
            except Rejected as exc:
                record.info["refusal"] = (exc.code, exc.message)
        return None

    # -- session --------------------------------------------------------------------------------
    async def close(self, ws: ServerConnection, record: ConnectionRecord, code: int, reason: str = "") -> None:
        """AssemblyAI sends an ``Error`` frame with the same code before any close that is an error."""
        if code != 1000:
            with contextlib.suppress(ConnectionClosed):
                await self._send_json(ws, record, error_message(code, reason or "Session Cancelled"))
            if len(reason.encode()) > 123:
                reason = "See Error message for details"
        await super().close(ws, record, code, reason)

    async def run_session(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        if "refusal" in record.info:
            await self.close(ws, record, *record.info["refusal"])
            return
        opts: AssemblyAIOptions = record.info["options"]
        engine = AssemblyAIEngine(opts, self.script)
        record.info["session_id"] = session_id = str(uuid.uuid4())
        await self._send_json(ws, record, begin_message(session_id, opts.speech_model))
        per_second = BYTES_PER_SAMPLE[opts.encoding] * opts.sample_rate
        while True:
            frame = await self.receive(ws, record, timeout=opts.inactivity_timeout)
            if frame is None:  # inactivity_timeout: the session ends (sim)
                await self._end(ws, record, opts, [])
                return
            if isinstance(frame, bytes):
                ms = len(frame) * 1000 / per_second
                if not 50 - 1e-6 <= ms <= 1000 + 1e-6:
                    await self.close(ws, record, 3007,
                                     f"Input duration violation: {ms:.0f} ms. Expected between 50 and 1000 ms")
                    return
                record.audio_seconds = record.audio_bytes / per_second
                elapsed = time.monotonic() - (record.first_audio_at or time.monotonic())
                if self.max_lead_s is not None and record.audio_seconds - elapsed > self.max_lead_s:
                    await self.close(ws, record, 3007, f"Audio Transmission Rate Exceeded: Received "
                                     f"{record.audio_seconds:.1f} sec. audio in {elapsed:.1f} sec")
                    return
                await self._send_all(ws, record, opts, engine.advance(record.audio_seconds))
                continue
            try:
                msg = json.loads(frame)
            except ValueError:
                await self.close(ws, record, 3006, f"Invalid JSON: {frame[:200]}")
                return
            kind = msg.get("type") if isinstance(msg, dict) else None
            if not isinstance(kind, str):
                await self.close(ws, record, 3006, f"Invalid Message: {frame[:200]}")
                return
            if kind == "KeepAlive":
                continue
            if kind == "ForceEndpoint":
                if not self.faults.ignore_finalize:
                    await self._send_all(ws, record, opts, engine.force_endpoint())
            elif kind == "UpdateConfiguration":
                unknown = set(msg) - UPDATE_FIELDS - {"type"}
                if unknown:
                    await self.close(ws, record, 3006, f"Invalid Message: unknown fields {sorted(unknown)}")
                    return
                silences = [msg.get(k) for k in ("min_turn_silence", "max_turn_silence")]
                engine.update(*(s / 1000 if type(s) is int else None for s in silences))
            elif kind == "Terminate":
                if not self.faults.ignore_close_stream:
                    await self._end(ws, record, opts, engine.force_endpoint())
                    return
            else:
                await self.close(ws, record, 3006, f"Invalid Message Type: {kind}")
                return

    async def _end(self, ws: ServerConnection, record: ConnectionRecord, opts: AssemblyAIOptions,
                   last: list[dict]) -> None:
        """The last turn's messages, ``Termination``, close 1000."""
        await self._send_all(ws, record, opts, last)
        await self._send_json(ws, record, termination_message(record.audio_seconds,
                                                              time.monotonic() - record.opened_at))
        await super().close(ws, record, 1000)

    async def _send_json(self, ws: ServerConnection, record: ConnectionRecord, msg: dict) -> None:
        await self.send_text(ws, record, json.dumps(msg, separators=(",", ":")))

    async def _send_all(self, ws: ServerConnection, record: ConnectionRecord, opts: AssemblyAIOptions,
                        msgs: list[dict]) -> None:
        for msg in msgs:
            await self._send_json(ws, record, msg)
            if ends_a_turn(msg, opts):
                await self.final_sent(ws, record)


#: What AssemblyAI sends after ``Terminate`` once the last turn is out (the adapter contract test replays it).
END_OF_STREAM_FRAMES = [json.dumps(termination_message(1.0, 1.0), separators=(",", ":"))]
