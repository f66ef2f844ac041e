"""A Deepgram live-transcription (v1, Nova) simulator on loopback.

It checks the upgrade request as Deepgram does (path ``/v1/listen``, ``Authorization: Token <key>``
else HTTP 401 with a ``dg-error`` header, query parameters else HTTP 400), measures the audio it
receives, and plays its ``Script``: as the audio time passes, it sends ``Results`` (interim when
``interim_results=true``, finals per segment, ``speech_final`` when a pause of ``endpointing`` ms
follows), ``UtteranceEnd`` (with ``utterance_end_ms``), answers ``Finalize`` (``from_finalize``), and
ends ``CloseStream`` with the last finals, ``Metadata`` and a 1000 close. Shapes follow
``deepgram-sdk`` 7.17.0 (``deepgram.listen.v1.types``) field for field.

Where Deepgram's behaviour is not documented the simulator picks the stricter reading, marked
"(sim)": ``model`` is required; unknown query parameters are refused; ``utterance_end_ms`` without
``interim_results=true`` is refused; the DATA-0000 close reason wording is invented (the NET-0001 one is
Deepgram's, as seen in SDK issue reports). A zero-length binary frame ends the stream like
``CloseStream`` (Deepgram's legacy end-of-stream signal).

Audio time: ``linear16`` bytes / 2 / rate / channels, ``mulaw``/``alaw`` bytes / rate / channels;
containers (no ``encoding``) are sniffed (Ogg, WebM, MP3) and measured by ``routeraudio.audio.AudioMeter``
when the codec core is built, else estimated at ``container_bytes_per_second``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .base import (ConnectionRecord, Faults, Script, ScriptWord, SimulatorServer, container_meter,
                   sniff_container)

__all__ = ["DeepgramSimulator", "DeepgramEngine", "DeepgramOptions", "NET_0001_REASON"]

PATH = "/v1/listen"
ENCODINGS = ("linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus", "ogg-opus",
             "speex", "g729")
BYTES_PER_SAMPLE = {"linear16": 2, "linear32": 4, "mulaw": 1, "alaw": 1}
BOOLEAN_PARAMS = ("interim_results", "punctuate", "smart_format", "diarize", "vad_events", "multichannel",
                  "numerals", "profanity_filter", "dictation", "filler_words", "detect_entities", "mip_opt_out")
KNOWN_PARAMS = frozenset(BOOLEAN_PARAMS) | {
    "model", "language", "language_hint", "encoding", "sample_rate", "channels", "endpointing",
    "utterance_end_ms", "diarize_model", "keyterm", "keywords", "redact", "replace", "search", "tag",
    "extra", "callback", "callback_method", "version"}
NET_0001_REASON = ("Deepgram did not receive audio data or a text message within the timeout window. "
                   "See https://dpgr.am/net0001")
DATA_0000_REASON = "Deepgram could not decode the audio data (DATA-0000). See https://dpgr.am/data0000"  # (sim)
DEFAULT_ENDPOINTING_MS = 10  # Deepgram's documented default
MODEL_VERSIONS = {"nova-3": ("general-nova-3", "2025-04-17.21547", "nova-3")}


# -- options, parsed like Deepgram -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeepgramOptions:
    model: str
    encoding: str | None  # None: a container, sniffed from its first bytes
    sample_rate: int | None
    channels: int = 1
    interim_results: bool = False
    punctuate: bool = False
    diarize: bool = False
    endpointing_s: float | None = DEFAULT_ENDPOINTING_MS / 1000
    utterance_end_s: float | None = None


class BadRequest(ValueError):
    pass


def parse_options(query: dict[str, list[str]]) -> DeepgramOptions:
    """Validate a ``/v1/listen`` query as Deepgram does; ``BadRequest`` names the problem."""
    q: dict[str, str] = {}
    for name, values in query.items():
        if name not in KNOWN_PARAMS:
            raise BadRequest(f"Unknown query parameter: {name}")  # (sim)
        if name not in ("keyterm", "keywords", "redact", "replace", "search", "tag", "extra") and len(values) > 1:
            raise BadRequest(f"Query parameter {name} given more than once")
        q[name] = values[0]
    for name in BOOLEAN_PARAMS:
        if name in q and q[name] not in ("true", "false"):
            raise BadRequest(f"Invalid value for {name}: expected true or false, got {q[name]!r}")
    if not q.get("model"):
        raise BadRequest("No model given: pass model, e.g. model=nova-3")  # (sim)
    encoding, rate = q.get("encoding"), q.get("sample_rate")
    if (encoding is None) != (rate is None):
        raise BadRequest("encoding and sample_rate must be given together (raw audio) or both omitted "
                         "(containerized audio)")
    if encoding is not None and encoding not in ENCODINGS:
        raise BadRequest(f"Invalid encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    sample_rate = _int(rate, "sample_rate", 1, 384000) if rate is not None else None
    channels = _int(q["channels"], "channels", 1, 20) if "channels" in q else 1
    interim = q.get("interim_results") == "true"
    ep = q.get("endpointing")
    if ep is None:
        endpointing_s: float | None = DEFAULT_ENDPOINTING_MS / 1000
    elif ep == "false":
        endpointing_s = None
    else:
        endpointing_s = _int(ep, "endpointing", 0, 3_600_000) / 1000 or None
    ue = q.get("utterance_end_ms")
    utterance_end_s = None
    if ue is not None:
        utterance_end_s = _int(ue, "utterance_end_ms", 1000, 3_600_000) / 1000
        if not interim:
            raise BadRequest("utterance_end_ms requires interim_results=true")  # (sim)
    return DeepgramOptions(
        model=q["model"], encoding=encoding, sample_rate=sample_rate, channels=channels,
        interim_results=interim,
        punctuate=q.get("punctuate") == "true" or q.get("smart_format") == "true",
        diarize=q.get("diarize") == "true" or "diarize_model" in q,
        endpointing_s=endpointing_s, utterance_end_s=utterance_end_s)


def _int(text: str, name: str, lo: int, hi: int) -> int:
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise BadRequest(f"Invalid value for {name}: expected an integer from {lo} to {hi}, got {text!r}")
    return int(text)


# -- message builders (shapes of deepgram.listen.v1.types) -----------------------------------------
def results_message(words: list[ScriptWord], *, start: float, end: float, is_final: bool,
                    speech_final: bool, from_finalize: bool, opts: DeepgramOptions,
                    request_id: str, model_uuid: str) -> dict:
    name, version, arch = MODEL_VERSIONS.get(opts.model, (opts.model, "2025-01-01.0", opts.model))
    out_words = []
    for i, w in enumerate(words):
        item: dict = {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3),
                      "confidence": round(0.99 - 0.01 * (i % 4), 3)}
        if opts.punctuate:
            item["punctuated_word"] = w.text
        if opts.diarize:
            item["speaker"] = w.speaker or 0
        out_words.append(item)
    transcript = " ".join(w.text if opts.punctuate else w.word for w in words)
    confidence = round(sum(x["confidence"] for x in out_words) / len(out_words), 3) if out_words else 0.0
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": round(end - start, 3),
        "start": round(start, 3),
        "is_final": is_final,
        "speech_final": speech_final,
        "channel": {"alternatives": [{"transcript": transcript, "confidence": confidence, "words": out_words}]},
        "metadata": {"request_id": request_id,
                     "model_info": {"name": name, "version": version, "arch": arch},
                     "model_uuid": model_uuid},
        "from_finalize": from_finalize,
    }


def utterance_end_message(last_word_end: float) -> dict:
    return {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(last_word_end, 3)}


def metadata_message(request_id: str, sha256: str, duration: float, channels: int) -> dict:
    created = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"type": "Metadata", "transaction_key": "deprecated", "request_id": request_id, "sha256": sha256,
            "created": created, "duration": round(duration, 3), "channels": channels}


def error_message(description: str, message: str) -> dict:
    return {"type": "Error", "variant": "SchemaError", "description": description, "message": message}


# -- the transcript engine (no I/O) ----------------------------------------------------------------
class DeepgramEngine:
    """Turns audio time into Deepgram messages for a script.

    Rules, evaluated every ``STEP`` seconds of audio: a word is heard once the audio passes its end;
    heard words wait in the current segment. The segment becomes a final with ``speech_final`` when
    ``endpointing`` of silence followed its last word; a final without it when the segment has
    lasted ``max_segment_s`` (Deepgram's own segmentation during long speech; empty when nothing was
    said). ``UtteranceEnd`` follows ``utterance_end_ms`` without words (after the pending final).
    Interim results of the segment so far come every ``interim_interval_s``.
    """

    STEP = 0.02

    def __init__(self, opts: DeepgramOptions, script: Script, *, request_id: str | None = None,
                 interim_interval_s: float = 1.0, max_segment_s: float = 5.0) -> None:
        self.opts = opts
        self.script = script
        self.request_id = request_id or str(uuid.uuid4())
        self.model_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, "routeraudio-sim/" + opts.model))
        self.interim_interval_s = interim_interval_s
        self.max_segment_s = max_segment_s
        self.t = 0.0  # audio time processed
        self.cursor = 0.0  # start of the current segment (end of the last final)
        self.next_index = 0  # the first word not heard yet
        self.pending: list[ScriptWord] = []
        self.last_interim = 0.0
        self.utterance_word_end: float | None = None  # last word heard and not closed by UtteranceEnd

    def advance(self, audio_time: float) -> list[dict]:
        out: list[dict] = []
        while self.t < audio_time - 1e-9:
            self.t = min(audio_time, self.t + self.STEP)
            self._step(self.t, out)
        return out

    def finalize(self) -> list[dict]:
        """``Finalize``: everything heard so far becomes a final at once."""
        return [self._final(self._cut(self.t), speech_final=False, from_finalize=True)]

    def close(self) -> list[dict]:
        """``CloseStream``: the last final (when audio or words remain)."""
        if self.pending or self.t > self.cursor + 1e-9:
            return [self._final(self._cut(self.t), speech_final=False, from_finalize=False)]
        return []

    def _cut(self, now: float) -> float:
        nxt = self.script.word(self.next_index)
        return nxt.start if nxt is not None and nxt.start < now else now  # never split a word

    def _step(self, now: float, out: list[dict]) -> None:
        o = self.opts
        while (w := self.script.word(self.next_index)) is not None and w.end <= now + 1e-9:
            self.pending.append(w)
            self.utterance_word_end = w.end
            self.next_index += 1
        nxt = self.script.word(self.next_index)
        if self.pending and o.endpointing_s is not None:
            quiet_until = self.pending[-1].end + o.endpointing_s
            if now >= quiet_until - 1e-9 and (nxt is None or nxt.start >= quiet_until):
                out.append(self._final(self._cut(now), speech_final=True, from_finalize=False))
        if now - self.cursor >= self.max_segment_s and (self.pending or nxt is None or nxt.start >= now):
            out.append(self._final(self._cut(now), speech_final=False, from_finalize=False))
        ue, last = o.utterance_end_s, self.utterance_word_end
        if ue is not None and last is not None and now >= last + ue - 1e-9 and (nxt is None or nxt.start >= last + ue):
            if self.pending:
                out.append(self._final(self._cut(now), speech_final=False, from_finalize=False))
            out.append(utterance_end_message(last))
            self.utterance_word_end = None
        if o.interim_results and self.pending and now - self.last_interim >= self.interim_interval_s:
            self.last_interim = now
            out.append(results_message(self.pending, start=self.cursor, end=now, is_final=False,
                                       speech_final=False, from_finalize=False, opts=o,
                                       request_id=self.request_id, model_uuid=self.model_uuid))

    def _final(self, end: float, *, speech_final: bool, from_finalize: bool) -> dict:
        msg = results_message(self.pending, start=self.cursor, end=max(end, self.cursor), is_final=True,
                              speech_final=speech_final, from_finalize=from_finalize, opts=self.opts,
                              request_id=self.request_id, model_uuid=self.model_uuid)
        self.cursor = max(end, self.cursor)
        self.pending = []
        self.last_interim = self.cursor
        return msg


# -- audio time ------------------------------------------------------------------------------------
class _AudioClock:
    """Seconds of audio in what was received, per the declared (or sniffed) format."""

    def __init__(self, opts: DeepgramOptions, container_bytes_per_second: float) -> None:
        self.opts = opts
        self.bytes = 0
        self.sha = hashlib.sha256()
        self.container = None  # sniffed kind
        self.meter = None
        self.fallback_rate = container_bytes_per_second

    def feed(self, data: bytes) -> float:
        """Account for ``data``; return the audio time. Raises ValueError on undecodable containers."""
        self.bytes += len(data)
        self.sha.update(data)
        o = self.opts
        if o.encoding is not None:
            per = BYTES_PER_SAMPLE.get(o.encoding)
            if per is None:  # compressed raw codecs: no cheap exact measure
                return self.bytes / self.fallback_rate
            return self.bytes / per / (o.sample_rate or 1) / o.channels
        if self.container is None:
            self.container = sniff_container(data) or "unknown"
            self.meter = container_meter(self.container)
        if self.meter is not None:
            try:
                self.meter.feed(data)  # AudioFormatError (a ValueError) on garbage
                return self.meter.duration
            except ImportError:  # a codec module of the core is missing: estimate from here on
                self.meter = None
        return self.bytes / self.fallback_rate



# -- the server ------------------------------------------------------------------------------------
class DeepgramSimulator(SimulatorServer):
    """``async with DeepgramSimulator(api_key="k") as sim:`` then point a client at ``sim.listen_url``.

    ``api_key=None`` accepts any non-empty ``Token``. ``net_timeout`` is the NET-0001 inactivity
    limit (Deepgram: about 10 s). ``max_segment_s``/``interim_interval_s`` tune the engine.
    """

    provider = "deepgram"

    def __init__(self, *, api_key: str | None = "test-key", script: Script | None = None,
                 faults: Faults | None = None, net_timeout: float = 10.0, interim_interval_s: float = 1.0,
                 max_segment_s: float = 5.0, container_bytes_per_second: float = 4000.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port, script=script, faults=faults)
        self.api_key = api_key
        self.net_timeout = net_timeout
        self.interim_interval_s = interim_interval_s
        self.max_segment_s = max_segment_s
        self.container_bytes_per_second = container_bytes_per_second

    @property
    def listen_url(self) -> str:
        return self.url + PATH

    # -- handshake ------------------------------------------------------------------------------
    def _refuse(self, status: int, err_code: str, message: str, record: ConnectionRecord) -> Response:
        request_id = str(uuid.uuid4())
        record.info["error"] = message
        body = json.dumps({"err_code": err_code, "err_msg": message, "request_id": request_id})
        return self.http_error(status, body, [("dg-error", message), ("dg-request-id", request_id)],
                               content_type="application/json")

    def auth_rejection(self, request: Request, record: ConnectionRecord) -> Response:
        return self._refuse(401, "INVALID_AUTH", "Invalid credentials.", record)

    def check_handshake(self, request: Request, record: ConnectionRecord) -> Response | None:
        if record.path != PATH:
            return self._refuse(404, "NOT_FOUND", f"No such endpoint: {record.path}", record)
        auth = record.header("authorization") or ""
        scheme, _, key = auth.partition(" ")
        if scheme != "Token" or not key.strip() or (self.api_key is not None and key != self.api_key):
            return self.auth_rejection(request, record)
        try:
            record.info["options"] = parse_options(record.query)
        except BadRequest as exc:
            return self._refuse(400, "Bad Request", str(exc), record)
        record.info["request_id"] = str(uuid.uuid4())
        return None

    def response_headers(self, record: ConnectionRecord) -> list[tuple[str, str]]:
        return [("dg-request-id", record.info.get("request_id", ""))]

    # -- session --------------------------------------------------------------------------------
    async def run_session(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        opts: DeepgramOptions = record.info["options"]
        engine = DeepgramEngine(opts, self.script, request_id=record.info["request_id"],
                                interim_interval_s=self.interim_interval_s, max_segment_s=self.max_segment_s)
        clock = _AudioClock(opts, self.container_bytes_per_second)
        while True:
            frame = await self.receive(ws, record, timeout=self.net_timeout)
            if frame is None:  # nothing for net_timeout seconds: NET-0001
                await self.close(ws, record, 1011, NET_0001_REASON)
                return
            if isinstance(frame, bytes):
                if not frame:  # the legacy end-of-stream signal
                    await self._end(ws, record, engine, clock)
                    return
                try:
                    record.audio_seconds = clock.feed(frame)
                except ValueError:
                    await self.close(ws, record, 1008, DATA_0000_REASON)
                    return
                await self._send_all(ws, record, engine.advance(record.audio_seconds))
                continue
            try:
                msg = json.loads(frame)
                kind = msg["type"] if isinstance(msg, dict) else None
            except (ValueError, KeyError):
                kind = None
            if kind == "KeepAlive":
                continue
            if kind == "Finalize":
                if not self.faults.ignore_finalize:
                    await self._send_all(ws, record, engine.finalize())
            elif kind == "CloseStream":
                if not self.faults.ignore_close_stream:
                    await self._end(ws, record, engine, clock)
                    return
            elif kind == "Configure":
                await self._send_json(ws, record, {
                    "type": "ConfigureFailure", "request_id": engine.request_id,
                    "code": "CONFIGURE_INTERNAL_ERROR", "description": "the simulator does not apply Configure"})
            else:
                await self._send_json(ws, record, error_message(
                    "Could not parse the client message: expected a JSON object with type KeepAlive, "
                    "Finalize, CloseStream or Configure", frame[:1000]))

    async def _end(self, ws: ServerConnection, record: ConnectionRecord, engine: DeepgramEngine,
                   clock: _AudioClock) -> None:
        await self._send_all(ws, record, engine.close())
        await self._send_json(ws, record, metadata_message(engine.request_id, clock.sha.hexdigest(),
                                                           record.audio_seconds, engine.opts.channels))
        await self.close(ws, record, 1000)

    async def _send_json(self, ws: ServerConnection, record: ConnectionRecord, msg: dict) -> None:
        await self.send_text(ws, record, json.dumps(msg, separators=(",", ":")))

    async def _send_all(self, ws: ServerConnection, record: ConnectionRecord, msgs: list[dict]) -> None:
        for msg in msgs:
            await self._send_json(ws, record, msg)
            if msg.get("is_final") and msg["channel"]["alternatives"][0]["transcript"]:
                await self.final_sent(ws, record)

#: What Deepgram sends after CloseStream once every final is out (the adapter contract test replays it).
END_OF_STREAM_FRAMES = [json.dumps(metadata_message("00000000-0000-0000-0000-000000000000", "0" * 64, 1.0, 1))]
