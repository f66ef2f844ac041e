"""A Gradium speech-to-text (STT WebSocket, ``/api/speech/asr``) simulator on loopback.

It speaks the protocol of https://docs.gradium.ai/api-reference/endpoint/stt-websocket as the ``gradium``
SDK 0.6.4 and gradium-ai/gradium-rs ``protocol.rs`` shape it: the upgrade is accepted on
``/api/speech/asr`` (else HTTP 404); the first message must be ``setup`` and the key (``x-api-key``
header, or ``?token=`` as browsers use) must be good, else ``{"type":"error","code":1008}`` and a 1008
close; ``setup`` is validated (``input_format``, ``json_config`` values per
https://docs.gradium.ai/guides/transcription-settings) and answered by ``ready``; ``audio`` is base64
in JSON. As the audio time received passes, it plays its ``Script``:

- a ``step`` per 80 ms of audio with VAD for horizons 0.5, 1 and 2 s (low while a word is spoken,
  high soon after a sentence ends, rising slowly in a pause inside a sentence);
- each word as ``text`` (``start_s``) ``delay_in_frames`` x 80 ms after it starts, and ``end_text``
  (``stop_s``) as long after it ends: the model's look-ahead delay;
- ``flush`` emits every word heard so far at once, then ``flushed`` with the same ``flush_id``; the last
  ``trailing_words`` of them come right *after* ``flushed`` (the documented "text may trail flushed");
- ``end_of_stream`` emits the remaining heard words, ``end_of_stream``, then a 1000 close (or keeps the
  socket for another ``setup`` with ``close_ws_on_eos: false``).

Failures (``Faults``) send ``{"type":"error","message":reason,"code":fail_code}`` before the close, as
Gradium does. A "final" for ``fail_after_finals`` / ``stall_after_finals`` is a ``flushed`` that closed
a segment with text; it counts ``final_grace_s`` (wall time) after it was sent, so that the client has
turned it into its final before the fault fires.

Where Gradium's behaviour is not documented the simulator picks the stricter reading, marked "(sim)":
unknown ``setup`` keys and unknown message types are refused (1008); binary frames are refused; the key
is checked when the first message arrives; the error wordings are invented.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import struct
import time
import uuid

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .base import ConnectionRecord, Faults, Script, ScriptWord, SessionOver, SimulatorServer

__all__ = ["END_OF_STREAM_FRAMES", "GradiumEngine", "GradiumSimulator", "SetupError", "parse_setup"]

PATH = "/api/speech/asr"
STEP_S = 0.08
SAMPLE_RATE = 24000
FRAME_SIZE = 1920
HORIZONS = (0.5, 1.0, 2.0)
#: input_format -> bytes per second of audio (None: measured by parsing the stream)
INPUT_FORMATS: dict[str, int | None] = {
    "pcm": 48000, **{f"pcm_{r}": 2 * r for r in (8000, 16000, 22050, 24000, 44100, 48000)},
    "ulaw_8000": 8000, "mulaw_8000": 8000, "alaw_8000": 8000, "wav": None, "opus": None}
SETUP_KEYS = frozenset({"type", "model_name", "input_format", "json_config", "client_req_id",
                        "close_ws_on_eos", "retry_for_s"})
LANGUAGES = ("en", "fr", "de", "es", "pt")
DELAYS = (7, 8, 10, 12, 14, 16, 20, 24, 32, 36, 48)
DEFAULT_DELAY_IN_FRAMES = 16  # the docs' setup example and ready example


# -- setup, parsed like Gradium ----------------------------------------------------------------------
class SetupError(ValueError):
    pass


def parse_setup(msg: dict) -> dict:
    """Validate a ``setup`` message; return its settings (``SetupError`` names the problem)."""
    unknown = set(msg) - SETUP_KEYS
    if unknown:
        raise SetupError(f"unknown setup field(s): {', '.join(sorted(unknown))}")  # (sim)
    model = msg.get("model_name", "default")
    if not isinstance(model, str) or not model:
        raise SetupError("model_name must be a non-empty string")
    fmt = msg.get("input_format", "wav")
    if fmt not in INPUT_FORMATS:
        raise SetupError(f"unsupported input_format {fmt!r}; expected one of {', '.join(INPUT_FORMATS)}")
    config = msg.get("json_config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            raise SetupError("json_config is not valid JSON") from None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise SetupError("json_config must be an object or a JSON string of one")
    if "language" in config and config["language"] not in LANGUAGES:
        raise SetupError(f"unsupported language {config['language']!r}; expected one of {', '.join(LANGUAGES)}")
    delay = config.get("delay_in_frames", config.get("delay_in_tokens", DEFAULT_DELAY_IN_FRAMES))
    if type(delay) is not int or delay not in DELAYS:
        raise SetupError(f"delay_in_frames must be one of {', '.join(map(str, DELAYS))}, got {delay!r}")
    for key, lo, hi in (("temp", 0.0, 1.0), ("padding_bonus", -4.0, 4.0)):
        if key in config and (type(config[key]) not in (int, float) or not lo <= config[key] <= hi):
            raise SetupError(f"{key} must be a number from {lo} to {hi}, got {config[key]!r}")
    eos = msg.get("close_ws_on_eos", True)
    if not isinstance(eos, bool):
        raise SetupError("close_ws_on_eos must be a boolean")
    return {"model_name": model, "input_format": fmt, "json_config": config, "delay_in_frames": delay,
            "close_ws_on_eos": eos}


# -- message builders (shapes of the API reference and gradium-rs stt::Response) --------------------
def ready_message(request_id: str, model: str, delay_in_frames: int) -> dict:
    return {"type": "ready", "request_id": request_id, "model_name": model, "sample_rate": SAMPLE_RATE,
            "frame_size": FRAME_SIZE, "delay_in_frames": delay_in_frames, "text_stream_names": []}


def text_message(word: ScriptWord) -> dict:
    return {"type": "text", "text": word.text, "start_s": round(word.start, 3), "stream_id": 0}


def end_text_message(word: ScriptWord) -> dict:
    return {"type": "end_text", "stop_s": round(word.end, 3), "stream_id": 0}


def step_message(idx: int, probs: tuple[float, ...]) -> dict:
    return {"type": "step", "vad": [{"horizon_s": h, "inactivity_prob": p} for h, p in zip(HORIZONS, probs)],
            "step_idx": idx, "step_duration_s": STEP_S, "total_duration_s": round((idx + 1) * STEP_S, 3)}


def error_message(message: str, code: int) -> dict:
    return {"type": "error", "message": message, "code": code}


# -- the transcript engine (no I/O) ----------------------------------------------------------------
class GradiumEngine:
    """Turns audio time into Gradium messages for a script, one 80 ms frame at a time.

    Word ``i`` is sent as ``text`` once the audio passes ``start + delay`` and ``end_text`` once it
    passes ``end + delay`` (``delay`` = ``delay_in_frames`` x 80 ms); ``flush``/``close`` send every
    word fully heard at once. ``texts_sent`` counts ``text`` messages (tests and fault accounting).
    """

    def __init__(self, script: Script, delay_in_frames: int = DEFAULT_DELAY_IN_FRAMES) -> None:
        self.script = script
        self.delay = delay_in_frames * STEP_S
        self.t = 0.0  # audio time received
        self.step_idx = 0  # the next step to send
        self.next_word = 0  # the first word whose text is not sent
        self.end_due: ScriptWord | None = None  # text sent, end_text not yet
        self.texts_sent = 0
        self._vad_next = 0  # the first word not started at the last VAD step
        self._vad_last: ScriptWord | None = None

    def advance(self, audio_time: float) -> list[dict]:
        self.t = max(self.t, audio_time)
        out: list[dict] = []
        while (self.step_idx + 1) * STEP_S <= self.t + 1e-9:
            boundary = (self.step_idx + 1) * STEP_S
            self._words_until(boundary - self.delay, out)
            out.append(step_message(self.step_idx, self.vad(boundary)))
            self.step_idx += 1
        return out

    def flush(self) -> list[list[dict]]:
        """Every word heard so far, as one ``[text, end_text]`` group per word."""
        out: list[dict] = []
        self._words_until(self.t, out, heard_only=True)
        groups: list[list[dict]] = []
        for msg in out:
            if msg["type"] == "text" or not groups:
                groups.append([msg])
            else:
                groups[-1].append(msg)
        return groups

    def _words_until(self, t: float, out: list[dict], heard_only: bool = False) -> None:
        """Send what is due at model time ``t``: end_text of word i always before text of word i+1."""
        while True:
            if self.end_due is not None and self.end_due.end <= t + 1e-9:
                out.append(end_text_message(self.end_due))
                self.end_due = None
                continue
            w = self.script.word(self.next_word)
            due = w is not None and (w.end if heard_only else w.start) <= t + 1e-9
            if self.end_due is None and due:
                out.append(text_message(w))
                self.texts_sent += 1
                self.end_due, self.next_word = w, self.next_word + 1
                continue
            return

    def vad(self, t: float) -> tuple[float, ...]:
        """Inactivity probabilities at audio time ``t`` (the VAD looks back, never at the script's future)."""
        while (w := self.script.word(self._vad_next)) is not None and w.start < t:  # t only grows
            self._vad_last, self._vad_next = w, self._vad_next + 1
        last = self._vad_last
        if last is None:
            return tuple(0.9 for _ in HORIZONS)  # nothing said yet
        if t < last.end + STEP_S:
            return tuple(round(0.02 + 0.01 * h, 3) for h in HORIZONS)  # speaking
        silence = t - last.end
        base = 0.6 if last.text.rstrip().endswith((".", "?", "!")) else 0.1  # a sentence ended
        return tuple(round(min(0.97, base * (0.8 + 0.1 * h) + silence), 3) for h in HORIZONS)


# -- audio time ------------------------------------------------------------------------------------
class _AudioClock:
    """Seconds of audio received, per ``input_format``. ``feed`` raises ValueError on garbage."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.per_second = INPUT_FORMATS[fmt]
        self.bytes = 0
        self.meter = None
        self.wav_head = b""
        self.wav_rate: int | None = None  # bytes per second once the WAV header is parsed
        self.wav_data = 0
        if fmt == "opus":
            from ..audio import AudioMeter

            self.meter = AudioMeter("ogg_opus", 48000, 1)

    def feed(self, data: bytes) -> float:
        self.bytes += len(data)
        if self.per_second:
            return self.bytes / self.per_second
        if self.meter is not None:
            self.meter.feed(data)  # AudioFormatError (a ValueError) on anything but Ogg Opus
            return self.meter.duration
        return self._wav(data)

    def _wav(self, data: bytes) -> float:
        if self.wav_rate is not None:
            self.wav_data += len(data)
            return self.wav_data / self.wav_rate
        self.wav_head += data
        head = self.wav_head
        if len(head) >= 12 and (head[:4] != b"RIFF" or head[8:12] != b"WAVE"):
            raise ValueError("not a WAV stream")
        pos, rate = 12, None
        while pos + 8 <= len(head):
            cid, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
            if cid == b"fmt ":
                if pos + 24 > len(head):
                    return 0.0
                tag, channels, sample_rate, _, _, bits = struct.unpack_from("<HHIIHH", head, pos + 8)
                if tag not in (1, 0xFFFE) or bits not in (16, 24, 32) or not channels or not sample_rate:
                    raise ValueError("WAV must hold 16, 24 or 32-bit PCM")
                rate = channels * sample_rate * bits // 8
            elif cid == b"data":
                if rate is None:
                    raise ValueError("WAV data chunk before its fmt chunk")
                self.wav_rate, self.wav_data = rate, len(head) - pos - 8
                return self.wav_data / rate
            pos += 8 + size + (size & 1)
        if len(head) > 65536:
            raise ValueError("no WAV data chunk in the first 64 KiB")
        return 0.0


# -- the server ------------------------------------------------------------------------------------
class GradiumSimulator(SimulatorServer):
    """``async with GradiumSimulator(api_key="k") as sim:`` then point a client at ``sim.listen_url``.

    ``api_key=None`` accepts any non-empty key. ``trailing_words`` words of each flush come after
    ``flushed`` (``trailing_delay_s`` later); ``final_grace_s``: see the module docstring.
    """

    provider = "gradium"

    def __init__(self, *, api_key: str | None = "test-key", script: Script | None = None,
                 faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0,
                 trailing_words: int = 1, trailing_delay_s: float = 0.0, final_grace_s: float = 0.3,
                 **_ignored: object) -> None:
        super().__init__(host=host, port=port, script=script, faults=faults)
        self.api_key = api_key
        self.trailing_words = trailing_words
        self.trailing_delay_s = trailing_delay_s
        self.final_grace_s = final_grace_s

    @property
    def listen_url(self) -> str:
        return self.url + PATH

    # -- handshake: the upgrade is accepted; the key is judged at the first message ------------------
    def check_handshake(self, request: Request, record: ConnectionRecord) -> Response | None:
        if record.path != PATH:
            return self.http_error(404, f"no route for {record.path}")  # (sim)
        key = record.header("x-api-key") or record.param("token")
        if not key:
            record.info["auth"] = "missing API key: send it in the x-api-key header"  # (sim)
        elif self.api_key is not None and key != self.api_key:
            record.info["auth"] = "invalid API key"  # (sim)
        return None

    def auth_rejection(self, request: Request, record: ConnectionRecord) -> Response | None:
        record.info["auth"] = "API key is revoked or expired"  # Gradium's REST wording for 1008
        return None  # Gradium refuses in-band: error message + 1008 close

    async def close(self, ws: ServerConnection, record: ConnectionRecord, code: int, reason: str = "") -> None:
        """Gradium sends an ``error`` message before any close that is not a normal one."""
        if code != 1000:
            try:
                await self._send(ws, record, error_message(reason or "internal error", code))
            except ConnectionClosed:
                pass
        await super().close(ws, record, code, reason.encode()[:120].decode(errors="ignore"))

    async def stall(self, ws: ServerConnection | None = None) -> None:
        """As the base's, but reading resumes once released, so that the closing handshake sees the
        peer's close (or its reset) instead of waiting out ``close_timeout`` at ``stop()``."""
        try:
            await super().stall(ws)
        finally:
            if ws is not None and ws.transport is not None and not ws.transport.is_closing():
                ws.transport.resume_reading()

    async def _reject(self, ws: ServerConnection, record: ConnectionRecord, message: str) -> None:
        record.info["error"] = message
        await self.close(ws, record, 1008, message)
        raise SessionOver(message)

    # -- session --------------------------------------------------------------------------------
    async def run_session(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        pending: list[float] = []  # when each final not yet counted was sent (time.monotonic())
        while await self._request(ws, record, pending):  # close_ws_on_eos=false: another setup may follow
            pass

    async def _recv(self, ws: ServerConnection, record: ConnectionRecord, timeout: float | None):
        """The next frame as (raw, parsed JSON object or None); None after ``timeout``. Audio messages
        are accounted as audio, everything else is recorded in ``record.control``."""
        try:
            async with asyncio.timeout(timeout):
                frame = await ws.recv()
        except TimeoutError:
            return None
        msg = None
        if isinstance(frame, str):
            try:
                msg = json.loads(frame)
            except ValueError:
                pass
        if not (isinstance(msg, dict) and msg.get("type") == "audio"):
            record.control.append((time.monotonic(), frame if isinstance(frame, str) else repr(frame[:50])))
        return frame, msg if isinstance(msg, dict) else None

    async def _request(self, ws: ServerConnection, record: ConnectionRecord, pending: list[float]) -> bool:
        """One request: setup .. end_of_stream. True when the socket stays open for another."""
        got = await self._recv(ws, record, None)
        _, msg = got
        if record.info.get("auth"):
            await self._reject(ws, record, record.info["auth"])
        if msg is None or msg.get("type") != "setup":
            await self._reject(ws, record, "the first message must be a setup message")
        try:
            setup = parse_setup(msg)
        except SetupError as exc:
            await self._reject(ws, record, str(exc))
        record.info["setup"] = setup
        request_id = str(uuid.uuid4())
        record.info.setdefault("request_ids", []).append(request_id)
        await self._send(ws, record, ready_message(request_id, setup["model_name"], setup["delay_in_frames"]))
        engine = GradiumEngine(self.script, setup["delay_in_frames"])
        clock = _AudioClock(setup["input_format"])
        texts_at_flush = 0
        while True:
            got = await self._recv(ws, record, self._grace_left(pending))
            await self._settle(ws, record, pending, wait=False)
            if got is None:  # a final's grace ran out while the client was quiet
                continue
            _, msg = got
            kind = msg.get("type") if msg is not None else None
            if kind == "audio":
                audio = self._decode_audio(msg)
                if audio is None:
                    await self._reject(ws, record, "invalid audio message: audio must be base64 text")
                now = time.monotonic()
                record.audio_bytes += len(audio)
                record.audio_frames += 1
                record.first_audio_at = record.first_audio_at or now
                record.last_audio_at = now
                try:
                    record.audio_seconds = clock.feed(audio)
                except ValueError as exc:
                    await self._reject(ws, record, f"invalid audio for input_format {clock.fmt}: {exc}")
                for out in engine.advance(record.audio_seconds):
                    await self._send(ws, record, out)
            elif kind == "flush":
                fid = msg.get("flush_id")
                if set(msg) - {"type", "flush_id", "client_req_id"} or not (
                        type(fid) is int or isinstance(fid, str)):
                    await self._reject(ws, record, "flush needs an integer flush_id")
                if self.faults.ignore_finalize:
                    continue
                await self._settle(ws, record, pending, wait=True)
                groups = engine.flush()
                keep = min(len(groups), max(0, self.trailing_words))
                for group in groups[:len(groups) - keep]:
                    for out in group:
                        await self._send(ws, record, out)
                await self._send(ws, record, {"type": "flushed", "flush_id": fid})
                if keep and self.trailing_delay_s:
                    await asyncio.sleep(self.trailing_delay_s)
                for group in groups[len(groups) - keep:]:
                    for out in group:
                        await self._send(ws, record, out)
                if engine.texts_sent > texts_at_flush:
                    texts_at_flush = engine.texts_sent
                    pending.append(time.monotonic())
                    if not self._faults_armed():
                        await self._settle(ws, record, pending, wait=False)
            elif kind == "end_of_stream":
                if set(msg) - {"type", "client_req_id"}:
                    await self._reject(ws, record, "end_of_stream takes no fields")  # (sim)
                if self.faults.ignore_close_stream:
                    continue
                await self._settle(ws, record, pending, wait=True)
                for group in engine.flush():
                    for out in group:
                        await self._send(ws, record, out)
                await self._send(ws, record, {"type": "end_of_stream"})
                if setup["close_ws_on_eos"]:
                    await self.close(ws, record, 1000)
                    return False
                return True
            elif kind == "setup":
                await self._reject(ws, record, "setup was already received for this request")  # (sim)
            elif msg is None:
                await self._reject(ws, record, "messages must be JSON objects with a type")  # (sim)
            else:
                await self._reject(ws, record, f"unknown message type {str(kind)[:40]!r}")  # (sim)

    @staticmethod
    def _decode_audio(msg: dict) -> bytes | None:
        audio = msg.get("audio")
        if not isinstance(audio, str) or set(msg) - {"type", "audio", "client_req_id"}:
            return None
        try:
            return base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            return None

    # -- finals and faults ------------------------------------------------------------------------
    def _faults_armed(self) -> bool:
        return self.faults.fail_after_finals is not None or self.faults.stall_after_finals is not None

    def _grace_left(self, pending: list[float]) -> float | None:
        if not pending:
            return None
        return max(0.0, pending[0] + self.final_grace_s - time.monotonic())

    async def _settle(self, ws: ServerConnection, record: ConnectionRecord, pending: list[float], *,
                      wait: bool) -> None:
        """Count the finals whose grace has passed (all of them, sleeping, with ``wait``)."""
        while pending:
            left = self._grace_left(pending) if self._faults_armed() else 0.0
            if left:
                if not wait:
                    return
                await asyncio.sleep(left)
            pending.pop(0)
            await self.final_sent(ws, record)  # fires fail_after_finals / stall_after_finals

    async def _send(self, ws: ServerConnection, record: ConnectionRecord, msg: dict) -> None:
        await self.send_text(ws, record, json.dumps(msg, separators=(",", ":")))


#: What Gradium sends after the adapter's send_close() (a flush, then end_of_stream) once every word
#: is out (the adapter contract test replays it).
END_OF_STREAM_FRAMES = ['{"type":"flushed","flush_id":1}', '{"type":"end_of_stream"}']
