"""A Soniox real-time speech-to-text (WebSocket API) simulator on loopback.

It checks the connection as Soniox does: path ``/transcribe-websocket`` (else HTTP 404); the key in
``Authorization: Bearer <key>``, or (legacy) as ``api_key`` in the start request, never both; the
first message must be the JSON start request, validated field by field like the SDK's
``RealtimeSTTConfig`` (model, audio format, ``sample_rate``/``num_channels`` for raw formats,
two-letter ``language_hints``, ``max_endpoint_delay_ms`` 500-3000, v5-only fields). Every refusal is
Soniox's own: an error response (``error_code``, ``error_type``, ``error_message``, ``request_id``,
``more_info``) and then the close. Then it measures the audio it receives and plays its ``Script``
as Soniox's token stream: heard words come as non-final tokens (re-sent, without punctuation, in every
response) until they turn final ``final_lag_s`` later (sent once, with punctuation); long words come
in two pieces and may turn final piece by piece; ``<end>`` follows ``max_endpoint_delay_ms`` of
silence when endpoint detection is on; ``{"type":"finalize"}`` finalises everything heard and adds
``<fin>``; an empty frame (binary or text) ends the stream with the last final tokens, a
``finished: true`` response and a 1000 close. Shapes follow ``soniox`` 2.10.0
(``soniox.types.realtime.RealtimeEvent``, ``soniox.types.common.Token``).

Where Soniox's behaviour is not documented the simulator picks the stricter reading, marked "(sim)":
a wrong path is an HTTP 404; unknown start-request fields are refused; a bad key is answered in-band (error response after the
upgrade, as "all errors are returned as a JSON error response") rather than with an HTTP 401; the
connection closes with 1000 after an error response; the ``error_type`` names other than
``unauthenticated`` and ``model_not_available`` are invented; 20 s without any message ends the
session with a 408 error. The browser subprotocol auth (``soniox-api-key``) is not simulated.

Audio time: raw formats by bytes / bytes per sample / rate / channels; containers (``auto``, ``ogg``,
``webm``, ``mp3``) are sniffed and measured by ``routeraudio.audio.AudioMeter``, other containers
estimated at ``container_bytes_per_second``. Failure injection (``Faults``): ``fail_after_finals``
counts completed segments (responses with ``<end>``/``<fin>`` closing final text; without endpoint
detection, every response with final text) and sends Soniox's 503 "Cannot continue request" error
response before closing with the fault's code (``fail_reset``: a TCP reset, no response);
``reject_auth`` answers every key with the 401 error response; a stalled session drops its socket
when the simulator stops instead of waiting out websockets' close timeout on a socket nobody reads.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .base import ConnectionRecord, Faults, Script, SimulatorServer, container_meter, sniff_container

__all__ = ["END_OF_STREAM_FRAMES", "SimResponse", "SonioxConfig", "SonioxEngine", "SonioxRequestError",
           "SonioxSimulator", "error_response", "parse_config"]

PATH = "/transcribe-websocket"
MODELS = ("stt-rt-v5", "stt-rt-v4", "stt-rt-v3", "stt-rt-preview")
V5_ONLY = ("endpoint_sensitivity", "endpoint_latency_adjustment_level")
CONTAINER_FORMATS = ("auto", "aac", "aiff", "amr", "asf", "flac", "mp3", "ogg", "wav", "webm")
RAW_BYTES_PER_SAMPLE = {
    "pcm_s8": 1, "pcm_u8": 1, "mulaw": 1, "alaw": 1,
    "pcm_s16le": 2, "pcm_s16be": 2, "pcm_u16le": 2, "pcm_u16be": 2,
    "pcm_s24le": 3, "pcm_s24be": 3, "pcm_u24le": 3, "pcm_u24be": 3,
    "pcm_s32le": 4, "pcm_s32be": 4, "pcm_u32le": 4, "pcm_u32be": 4, "pcm_f32le": 4, "pcm_f32be": 4,
    "pcm_f64le": 8, "pcm_f64be": 8,
}
CONFIG_KEYS = frozenset({
    "api_key", "model", "audio_format", "num_channels", "sample_rate", "language_hints",
    "language_hints_strict", "context", "enable_speaker_diarization", "enable_language_identification",
    "enable_endpoint_detection", "max_endpoint_delay_ms", "endpoint_sensitivity",
    "endpoint_latency_adjustment_level", "translation", "client_reference_id"})
DEFAULT_MAX_ENDPOINT_DELAY_MS = 2000
ERROR_CLOSE_CODE = 1000  # (sim) Soniox does not document the close code after an error response
EARLY_TERMINATION = "Cannot continue request (code 1). Please restart the request."
END_TOKEN, FIN_TOKEN = "<end>", "<fin>"


# -- the start request, parsed like Soniox --------------------------------------------------------
class SonioxRequestError(Exception):
    """A refusal: Soniox's error code, error type and message."""

    def __init__(self, code: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.code, self.kind, self.message = code, kind, message


@dataclass(frozen=True, slots=True)
class SonioxConfig:
    model: str
    audio_format: str = "auto"
    sample_rate: int | None = None
    num_channels: int | None = None
    language_hints: tuple[str, ...] = ()
    diarization: bool = False
    language_identification: bool = False
    endpoint_detection: bool = False
    max_endpoint_delay_ms: int = DEFAULT_MAX_ENDPOINT_DELAY_MS
    api_key: str | None = None  # legacy: the key in the start request


def _bad(message: str) -> SonioxRequestError:
    return SonioxRequestError(400, "invalid_request", message)  # (sim) error_type


def _field(cfg: dict, name: str, kind: type | tuple, default=None):
    value = cfg.get(name)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (type(value) is bool and bool not in kinds):
        raise _bad(f"Invalid value for {name}: expected {' or '.join(k.__name__ for k in kinds)}")
    return value


def parse_config(text: str) -> SonioxConfig:
    """Validate a start request as Soniox does; ``SonioxRequestError`` names the problem."""
    try:
        cfg = json.loads(text)
    except ValueError:
        raise _bad("Start request is not valid JSON") from None
    if not isinstance(cfg, dict):
        raise _bad("Start request must be a JSON object")
    unknown = sorted(set(cfg) - CONFIG_KEYS)
    if unknown:
        raise _bad(f"Unknown field in start request: {unknown[0]}")  # (sim)
    model = _field(cfg, "model", str)
    if not model:
        raise _bad("Missing required field: model")
    if model not in MODELS:
        raise SonioxRequestError(400, "model_not_available", "Invalid model specified.")
    fmt = _field(cfg, "audio_format", str, "auto")
    if fmt not in CONTAINER_FORMATS and fmt not in RAW_BYTES_PER_SAMPLE:
        raise _bad(f"Invalid audio_format: {fmt}")
    rate = _field(cfg, "sample_rate", int)
    channels = _field(cfg, "num_channels", int)
    if fmt in RAW_BYTES_PER_SAMPLE:
        if rate is None or channels is None:
            raise _bad(f"audio_format={fmt} requires sample_rate and num_channels")
        if not 1 <= rate <= 384000 or not 1 <= channels <= 16:
            raise _bad("sample_rate or num_channels out of range")
    hints = _field(cfg, "language_hints", list, [])
    if not all(isinstance(h, str) and len(h) == 2 for h in hints):
        raise _bad("language_hints must be two-letter ISO 639-1 codes")
    for name in ("language_hints_strict", "enable_speaker_diarization", "enable_language_identification",
                 "enable_endpoint_detection"):
        _field(cfg, name, bool)
    delay = _field(cfg, "max_endpoint_delay_ms", int, DEFAULT_MAX_ENDPOINT_DELAY_MS)
    if not 500 <= delay <= 3000:
        raise _bad("max_endpoint_delay_ms must be between 500 and 3000")
    for name in V5_ONLY:
        if name in cfg and not model.startswith("stt-rt-v5"):
            raise _bad(f"{name} is not supported by model {model}")
    sensitivity = _field(cfg, "endpoint_sensitivity", (int, float), 0.0)
    level = _field(cfg, "endpoint_latency_adjustment_level", int, 0)
    if not -1.0 <= sensitivity <= 1.0 or not 0 <= level <= 3:
        raise _bad("endpoint_sensitivity must be -1..1 and endpoint_latency_adjustment_level 0..3")
    _field(cfg, "context", (dict, str))
    _field(cfg, "translation", dict)
    if len(_field(cfg, "client_reference_id", str, "")) > 256:
        raise _bad("client_reference_id is longer than 256 characters")
    api_key = _field(cfg, "api_key", str)
    return SonioxConfig(
        model=model, audio_format=fmt, sample_rate=rate, num_channels=channels, language_hints=tuple(hints),
        diarization=cfg.get("enable_speaker_diarization") is True,
        language_identification=cfg.get("enable_language_identification") is True,
        endpoint_detection=cfg.get("enable_endpoint_detection") is True, max_endpoint_delay_ms=delay,
        api_key=api_key)


def error_response(code: int, kind: str, message: str, request_id: str | None = None) -> dict:
    """Soniox's error response (the fields of https://soniox.com/docs/stt/rt/error-handling)."""
    return {"error_code": code, "error_type": kind, "error_message": message,
            "more_info": "https://soniox.com/docs/api-reference/errors#" + kind.replace("_", "-"),
            "request_id": request_id or str(uuid.uuid4())}


# -- the token engine (no I/O) -------------------------------------------------------------------
@dataclass(slots=True)
class _Piece:
    text: str
    start_ms: int
    end_ms: int
    speaker: str
    punct: bool  # a punctuation token: only shown once final


@dataclass(frozen=True, slots=True)
class SimResponse:
    """One response and whether it completes a final segment (what ``fail_after_finals`` counts)."""

    msg: dict
    closes_segment: bool


_TRAILING_PUNCT = re.compile(r"^(.*?)([.,?!;:]*)$", re.S)


def word_pieces(text: str, start: float, end: float, speaker: int | None, first: bool) -> list[_Piece]:
    """A word as Soniox tokens: a leading space (not on the stream's first word), words of six letters
    or more in two pieces, trailing punctuation as its own zero-length token."""
    core, punct = _TRAILING_PUNCT.match(text).groups()
    if not core:
        core, punct = text, ""
    s, e = round(start * 1000), round(end * 1000)
    parts = [core] if len(core) < 6 else [core[:len(core) // 2], core[len(core) // 2:]]
    spk = str((speaker or 0) + 1)
    out, cursor, done = [], s, 0
    for k, part in enumerate(parts):
        done += len(part)
        stop = e if k == len(parts) - 1 else s + round((e - s) * done / len(core))
        out.append(_Piece(("" if first or k else " ") + part, cursor, stop, spk, False))
        cursor = stop
    if punct:
        out.append(_Piece(punct, e, e, spk, True))
    return out


class SonioxEngine:
    """Turns audio time into Soniox responses for a script.

    Rules, evaluated every ``STEP`` seconds of audio: a word is heard once the audio passes its end
    and its tokens join the non-final ones; a token turns final ``final_lag_s`` after its end (in
    order); with endpoint detection, ``max_endpoint_delay_ms`` of silence after the last heard word
    finalises everything and adds ``<end>``. A response goes out every ``response_interval_s`` while
    there is something to say (new finals and every current non-final token), an empty one every
    ``idle_response_s`` otherwise, and at once for ``<end>``.
    """

    STEP = 0.02

    def __init__(self, cfg: SonioxConfig, script: Script, *, final_lag_s: float = 0.36,
                 response_interval_s: float = 0.12, idle_response_s: float = 1.0) -> None:
        self.cfg = cfg
        self.script = script
        self.final_lag_s = final_lag_s
        self.response_interval_s = response_interval_s
        self.idle_response_s = idle_response_s
        self.t = 0.0
        self.tokens: list[_Piece] = []  # every token heard
        self.final_count = 0  # tokens[:final_count] are final...
        self.sent_count = 0  # ...and tokens[:sent_count] were sent as final
        self.next_index = 0  # the first script word not heard yet
        self.last_word_end: float | None = None
        self.speech_since_end = False  # words heard since the last <end>
        self.text_since_marker = False  # final text sent since the last <end>/<fin>
        self.last_response = 0.0
        self.final_ms = 0

    def advance(self, audio_time: float) -> list[SimResponse]:
        out: list[SimResponse] = []
        while self.t < audio_time - 1e-9:
            self.t = min(audio_time, self.t + self.STEP)
            self._step(self.t, out)
        return out

    def finalize(self) -> list[SimResponse]:
        """``{"type":"finalize"}``: everything heard turns final, then ``<fin>``."""
        self.final_count = len(self.tokens)
        return [self._respond(self.t, FIN_TOKEN)]

    def finish(self) -> list[SimResponse]:
        """End of audio: the last final tokens, then the ``finished`` response."""
        out = []
        self.final_count = len(self.tokens)
        if self.final_count > self.sent_count:
            out.append(self._respond(self.t))
        ms = round(self.t * 1000)
        out.append(SimResponse({"tokens": [], "final_audio_proc_ms": ms, "total_audio_proc_ms": ms,
                                "finished": True}, False))
        return out

    def _step(self, now: float, out: list[SimResponse]) -> None:
        while (w := self.script.word(self.next_index)) is not None and w.end <= now + 1e-9:
            self.tokens += word_pieces(w.text, w.start, w.end, w.speaker, self.next_index == 0)
            self.last_word_end = w.end
            self.speech_since_end = True
            self.next_index += 1
        due_ms = (now - self.final_lag_s) * 1000 + 1e-6  # tokens that ended by then are final
        while self.final_count < len(self.tokens) and self.tokens[self.final_count].end_ms <= due_ms:
            self.final_count += 1
        nxt = self.script.word(self.next_index)
        if self.cfg.endpoint_detection and self.speech_since_end and self.last_word_end is not None:
            quiet_until = self.last_word_end + self.cfg.max_endpoint_delay_ms / 1000
            if now >= quiet_until - 1e-9 and (nxt is None or nxt.start >= now):
                self.final_count = len(self.tokens)
                self.speech_since_end = False
                out.append(self._respond(now, END_TOKEN))
                return
        since = now - self.last_response
        if since >= self.response_interval_s - 1e-9:
            if self.final_count > self.sent_count or self.final_count < len(self.tokens):
                out.append(self._respond(now))
            elif since >= self.idle_response_s - 1e-9:
                out.append(self._respond(now))

    def _token(self, p: _Piece, final: bool, i: int) -> dict:
        d: dict = {"text": p.text, "start_ms": p.start_ms, "end_ms": p.end_ms,
                   "confidence": round(0.97 - 0.02 * (i % 3) - (0.0 if final else 0.1), 2), "is_final": final}
        if self.cfg.diarization:
            d["speaker"] = p.speaker
        if self.cfg.language_identification:
            d["language"] = self.cfg.language_hints[0] if self.cfg.language_hints else "en"
        return d

    def _respond(self, now: float, marker: str | None = None) -> SimResponse:
        new = range(self.sent_count, self.final_count)
        live = [i for i in range(self.final_count, len(self.tokens)) if not self.tokens[i].punct]
        self.sent_count = self.final_count
        tokens = [self._token(self.tokens[i], True, i) for i in new]
        closes = False
        if marker is not None:
            tokens.append({"text": marker, "is_final": True})
            closes = self.text_since_marker or bool(new)
            self.text_since_marker = False
            self.final_ms = max(self.final_ms, round(now * 1000))
        elif new:
            if self.cfg.endpoint_detection:
                self.text_since_marker = True
            else:  # no utterances: each batch of final words is a final segment downstream
                closes = True
        tokens += [self._token(self.tokens[i], False, i) for i in live]
        if marker is None:
            horizon = round((now - self.final_lag_s) * 1000)
            if live:
                horizon = min(horizon, self.tokens[live[0]].start_ms)
            self.final_ms = max(self.final_ms, horizon)
        self.last_response = now
        return SimResponse({"tokens": tokens, "final_audio_proc_ms": self.final_ms,
                            "total_audio_proc_ms": round(now * 1000)}, closes)


# -- audio time ------------------------------------------------------------------------------------
class _AudioClock:
    """Seconds of audio in what was received, per the start request's format (containers sniffed)."""

    def __init__(self, cfg: SonioxConfig, container_bytes_per_second: float) -> None:
        self.cfg = cfg
        self.bytes = 0
        self.meter = None
        self.sniffed = False
        self.fallback_rate = container_bytes_per_second

    def feed(self, data: bytes) -> float:
        """Account for ``data``; return the audio time. Raises ValueError on undecodable containers."""
        self.bytes += len(data)
        cfg = self.cfg
        per = RAW_BYTES_PER_SAMPLE.get(cfg.audio_format)
        if per is not None:
            return self.bytes / per / (cfg.sample_rate or 1) / (cfg.num_channels or 1)
        if not self.sniffed:
            self.sniffed = True
            kind = {"ogg": "ogg_opus", "webm": "webm", "mp3": "mp3"}.get(cfg.audio_format)
            if cfg.audio_format == "auto":
                kind = sniff_container(data)
            self.meter = container_meter(kind)
        if self.meter is not None:
            try:
                self.meter.feed(data)  # AudioFormatError (a ValueError) on garbage
                return self.meter.duration
            except ImportError:
                self.meter = None
        return self.bytes / self.fallback_rate




# -- the server ------------------------------------------------------------------------------------
class SonioxSimulator(SimulatorServer):
    """``async with SonioxSimulator(api_key="k") as sim:`` then point a client at ``sim.listen_url``.

    ``api_key=None`` accepts any non-empty key. ``idle_timeout`` is how long the simulator waits for
    any message (audio, keepalive) before its 408 error. ``final_lag_s``, ``response_interval_s`` and
    ``idle_response_s`` tune the token engine.
    """

    provider = "soniox"

    def __init__(self, *, api_key: str | None = "test-key", script: Script | None = None,
                 faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0,
                 idle_timeout: float = 20.0, final_lag_s: float = 0.36, response_interval_s: float = 0.12,
                 idle_response_s: float = 1.0, container_bytes_per_second: float = 4000.0) -> None:
        super().__init__(host=host, port=port, script=script, faults=faults)
        self.api_key = api_key
        self.idle_timeout = idle_timeout
        self.engine_options = {"final_lag_s": final_lag_s, "response_interval_s": response_interval_s,
                               "idle_response_s": idle_response_s}
        self.container_bytes_per_second = container_bytes_per_second

    @property
    def listen_url(self) -> str:
        return self.url + PATH

    # -- handshake ------------------------------------------------------------------------------
    def _key_ok(self, key: str | None) -> bool:
        return bool(key) and (self.api_key is None or key == self.api_key)

    def auth_rejection(self, request: Request, record: ConnectionRecord) -> Response | None:
        # Soniox answers a bad key in-band (sim): the upgrade succeeds, the error response follows.
        record.info["request_id"] = str(uuid.uuid4())
        record.info["auth_error"] = "Incorrect API key provided. You can get an API key at https://console.soniox.com"
        return None

    def check_handshake(self, request: Request, record: ConnectionRecord) -> Response | None:
        if record.path != PATH:
            return self.http_error(404, f"No such endpoint: {record.path}")  # (sim)
        record.info["request_id"] = str(uuid.uuid4())
        auth = record.header("authorization")
        if auth is not None:
            scheme, _, key = auth.partition(" ")
            if scheme != "Bearer" or not key.strip():
                record.info["auth_error"] = "Invalid Authorization header: expected 'Bearer <API key>'"  # (sim)
            elif not self._key_ok(key):
                return self.auth_rejection(request, record)
            else:
                record.info["auth"] = "header"
        return None

    # -- session --------------------------------------------------------------------------------
    async def _refuse(self, ws: ServerConnection, record: ConnectionRecord, code: int, kind: str,
                      message: str) -> None:
        record.info["error"] = message
        await self._send_json(ws, record, error_response(code, kind, message, record.info.get("request_id")))
        await self.close(ws, record, ERROR_CLOSE_CODE)

    async def run_session(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        if "auth_error" in record.info:
            await self._refuse(ws, record, 401, "unauthenticated", record.info["auth_error"])
            return
        first = await self.receive(ws, record, timeout=self.idle_timeout)
        if first is None:
            await self._refuse(ws, record, 408, "request_timeout", "No start request received.")  # (sim)
            return
        if not isinstance(first, str) or not first:
            await self._refuse(ws, record, 400, "invalid_request",
                               "The first message must be the JSON start request.")  # (sim)
            return
        try:
            cfg = parse_config(first)
        except SonioxRequestError as exc:
            await self._refuse(ws, record, exc.code, exc.kind, exc.message)
            return
        if record.info.get("auth") == "header" and cfg.api_key is not None:
            await self._refuse(ws, record, 400, "invalid_request",
                               "Send the API key in the Authorization header or in the start request, not both.")
            return
        if record.info.get("auth") != "header":
            if not self._key_ok(cfg.api_key):
                await self._refuse(ws, record, 401, "unauthenticated",
                                   "Incorrect API key provided. You can get an API key at https://console.soniox.com")
                return
            record.info["auth"] = "config"
        record.info["config"] = cfg
        engine = SonioxEngine(cfg, self.script, **self.engine_options)
        clock = _AudioClock(cfg, self.container_bytes_per_second)
        while True:
            frame = await self.receive(ws, record, timeout=self.idle_timeout)
            if frame is None:
                await self._refuse(ws, record, 408, "request_timeout",
                                   "No audio or keepalive received in time.")  # (sim)
                return
            if frame in (b"", ""):  # end of audio (the SDK sends an empty text frame)
                if self.faults.ignore_close_stream:
                    continue
                await self._send_all(ws, record, engine.finish())
                await self.close(ws, record, 1000)
                return
            if isinstance(frame, bytes):
                try:
                    record.audio_seconds = clock.feed(frame)
                except ValueError:
                    await self._refuse(ws, record, 400, "invalid_request", "Audio data could not be decoded.")
                    return
                await self._send_all(ws, record, engine.advance(record.audio_seconds))
                continue
            try:
                msg = json.loads(frame)
                kind = msg.get("type") if isinstance(msg, dict) else None
            except ValueError:
                kind = None
            if kind == "keepalive":
                continue
            if kind == "finalize":
                silence = msg.get("trailing_silence_ms", 0)
                if type(silence) is not int or silence < 0:
                    await self._refuse(ws, record, 400, "invalid_request", "Invalid trailing_silence_ms.")
                    return
                if not self.faults.ignore_finalize:
                    await self._send_all(ws, record, engine.finalize())
                continue
            await self._refuse(ws, record, 400, "invalid_request",
                               'Unknown control message: expected {"type": "keepalive"} or {"type": "finalize"}.')
            return

    async def final_sent(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        f = self.faults
        if f.fail_after_finals is not None and not f.fail_reset and record.finals_sent + 1 >= f.fail_after_finals:
            # Soniox's early termination: the error response, then the close (the fault's code).
            await self._send_json(ws, record, error_response(503, "service_unavailable", EARLY_TERMINATION,
                                                             record.info.get("request_id")))  # (sim) type
        await super().final_sent(ws, record)

    async def stall(self, ws: ServerConnection | None = None) -> None:
        # A hung process that is finally killed: drop the socket when the simulator stops, instead of
        # waiting out the close handshake on a socket nobody reads (websockets' 10 s close_timeout).
        try:
            await super().stall(ws)
        finally:
            if ws is not None and ws.transport is not None:
                ws.transport.abort()

    async def _send_json(self, ws: ServerConnection, record: ConnectionRecord, msg: dict) -> None:
        await self.send_text(ws, record, json.dumps(msg, separators=(",", ":")))

    async def _send_all(self, ws: ServerConnection, record: ConnectionRecord, responses: list[SimResponse]) -> None:
        for r in responses:
            await self._send_json(ws, record, r.msg)
            if r.closes_segment:
                await self.final_sent(ws, record)


#: What Soniox sends after the end-of-audio frame once every token is final (the contract test replays it).
END_OF_STREAM_FRAMES = ['{"tokens":[],"final_audio_proc_ms":1000,"total_audio_proc_ms":1000,"finished":true}']
