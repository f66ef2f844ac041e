"""AssemblyAI Universal-Streaming (streaming API v3) as a sans-I/O adapter.

Docs: https://www.assemblyai.com/docs/api-reference/streaming-api/universal-streaming (parameters,
messages), https://www.assemblyai.com/docs/streaming/select-the-speech-model (``speech_model`` required),
https://www.assemblyai.com/docs/speech-to-text/universal-streaming/message-sequence (cumulative turns,
the formatted second end of turn), https://assemblyai.com/docs/streaming/migration-guides/universal-to-u3-pro-streaming
(Universal-3 Pro), https://www.assemblyai.com/docs/streaming/common-session-errors-and-closures (errors).
Message shapes and the ``Authorization``/``AssemblyAI-Version`` headers as in the ``assemblyai`` SDK
1.8.2 (``streaming.v3.models``, ``_base._build_headers``), checked 2026-11.

Theory of operation. The query of the upgrade request configures everything; the key goes raw in
``Authorization`` (no ``Bearer``). AssemblyAI sends ``Begin``, then ``Turn`` messages, each the
*cumulative* state of the current turn (``turn_order``) until one with ``end_of_turn: true``: the
adapter emits one final and one ``turn_end`` per ended turn, and partials (when asked for) from the
turn's words so far. ``ForceEndpoint`` ends the turn now (finalize). After ``Terminate`` the server
sends the turn in flight, ``Termination`` and a 1000 close: the adapter is ``done`` at ``Termination``.

Quirks (docs and SDK above, 2026-11):
- every binary message must hold 50-1000 ms of audio (else ``Error`` and close 3007): audio goes up
  re-chunked in ``CHUNK_MS`` pieces (at most that much added latency; a remainder waits for more
  audio, as AssemblyAI's turn detection does); at finalize and close it goes at once, padded with
  silence to 50 ms when shorter. AssemblyAI's times count that padding, so they are mapped
  back to the client's stream. Audio ahead of real time is refused too (3007): the router paces it.
- Universal-Streaming models (``FORMAT_TURNS_MODELS``) with ``format_turns=true`` end each turn twice,
  same ``turn_order``: unformatted, then formatted. With ``punctuate=true`` the unformatted end (and
  every later message, to keep order) waits for the formatted twin: the final is late by AssemblyAI's
  formatting step, at most ``FORMAT_WAIT_S`` (then the unformatted text goes and a late twin is
  dropped). ``punctuate=false`` sends ``format_turns=false``: one end of turn, no wait. Universal-3
  Pro models (the default ``universal-3-5-pro``, also pipecat's and livekit-agents' as of 2026-08)
  always format (``turn_is_formatted`` is true on partials too), end a turn once, and send partials
  at pauses only. A repeated end of an ended ``turn_order`` is always dropped.
- ``endpointing`` -> ``max_turn_silence`` (ms) clamped to ``TURN_SILENCE_RANGE_MS`` (AssemblyAI
  documents no range), ``min_turn_silence`` lowered to it when its default (400 / 100 ms) is larger;
  0 sends neither (turn detection cannot be turned off). ``language`` -> ``language_codes`` for the
  Universal-3 Pro family only (livekit-agents mirrors the server's rule); ``multi``/``auto``: unsteered.
- no inactivity timeout unless ``inactivity_timeout`` is set (it is not): no keep-alive needed.
- errors: ``{"type":"Error","error_code":N,"error":...}`` then close N; 1008 is authorization (docs'
  close table; close 1008 "Unauthorized connection: ..." in Node SDK issue #97, 2025-07). A close
  reason over 123 bytes reads "See Error message for details"; unknown query parameters are ignored.
- ``speaker_labels=true``: ``speaker`` "A", "B"... on final words ("UNKNOWN" becomes null); later
  ``SpeakerRevision`` corrections cannot reach finals already delivered.
- an end of turn after ``ForceEndpoint``/``Terminate`` in silence has no text: no final, no turn_end.
"""

from __future__ import annotations

import bisect
import json
import logging
from typing import NamedTuple
from urllib.parse import urlencode

from ..config import ListenParams
from ..errors import ProviderError
from ..events import Transcript, TurnEnd, Word
from . import register
from .base import Adapter, MalformedMessage as _Malformed, Capabilities, State, UpstreamRequest

logger = logging.getLogger("routeraudio.providers.assemblyai")

# -- wire constants -------------------------------------------------------------------------------
API_VERSION = "2025-05-12"  # the ``AssemblyAI-Version`` header the official SDK sends
#: models that format in a second end-of-turn message when ``format_turns=true``
FORMAT_TURNS_MODELS = frozenset({"universal-streaming-english", "universal-streaming-multilingual", "whisper-rt"})
#: the Universal-3 Pro family: ``language_codes`` steering (livekit-agents ``_U3_PRO_MODELS``)
U3_PRO_MODELS = frozenset({"u3-rt-pro", "u3-rt-pro-beta-1", "u3-pro", "universal-3-5-pro", "universal-3-6-pro"})
UNSTEERED_LANGUAGES = frozenset({"multi", "auto"})
#: AssemblyAI's default ``min_turn_silence`` (ms): 400 Universal-Streaming, 100 Universal-3 Pro
DEFAULT_MIN_TURN_SILENCE_MS = {True: 400, False: 100}
#: ``endpointing`` clamp (ms). AssemblyAI documents no range: 100 is livekit-agents' default, 3600
#: AssemblyAI's own most conservative turn-detection preset.
TURN_SILENCE_RANGE_MS = (100, 3600)
MIN_CHUNK_MS = 50  # per-message audio the server accepts: 50-1000 ms
CHUNK_MS = 100  # what the adapter sends
FORMAT_WAIT_S = 1.0  # longest wait for the formatted twin of an end of turn
SILENCE_BYTE = {"pcm_s16le": 0x00, "pcm_mulaw": 0xFF}
BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_mulaw": 1}
ASAP = 0.0  # a deadline in the past: "call receive_timer now" (receive_frame carries no time)
FORCE_ENDPOINT = '{"type":"ForceEndpoint"}'
KEEPALIVE = '{"type":"KeepAlive"}'
TERMINATE = '{"type":"Terminate"}'
#: messages that change nothing for the client
CONSUMED_TYPES = frozenset({"SpeechStarted", "Heartbeat", "Silence", "SpeakerRevision", "LLMGatewayResponse"})

#: What each error/close code means for the user (codes of the docs' table and the SDK's).
ERROR_HINTS = {
    1008: "AssemblyAI refused the session as unauthorized: check the AssemblyAI API key, the account's "
          "balance and its concurrency limit",
    3005: "AssemblyAI failed while transcribing (server error); retry the session",
    3006: "AssemblyAI rejected a message or a connection parameter",
    3007: "AssemblyAI refused the audio pacing: each message must hold 50-1000 ms of audio and audio must "
          "not run ahead of real time",
    3008: "the AssemblyAI session expired (3 hour limit, or the temporary token's maximum duration)",
    3009: "too many concurrent AssemblyAI sessions for this account",
    1011: "AssemblyAI failed while transcribing; retry the session",
}


# -- pure translation -----------------------------------------------------------------------------
class TurnWord(NamedTuple):
    text: str
    start_ms: float
    end_ms: float
    speaker: str | None


class Turn(NamedTuple):
    """The fields of a ``Turn`` message the adapter uses."""

    order: int
    end_of_turn: bool
    formatted: bool
    transcript: str
    words: tuple[TurnWord, ...]


def _ms(value: object, what: str) -> float:
    if type(value) not in (int, float):  # bool is an int subclass and never a time
        raise _Malformed(f"{what} is not a number")
    return float(value)


def parse_turn(msg: dict) -> Turn:
    """Validate a ``Turn`` message; ``_Malformed`` names what is wrong."""
    order, transcript, words = msg.get("turn_order"), msg.get("transcript"), msg.get("words", [])
    if type(order) is not int:
        raise _Malformed("turn_order is not an integer")
    if not isinstance(transcript, str):
        raise _Malformed("transcript is not a string")
    if type(msg.get("end_of_turn")) is not bool:
        raise _Malformed("end_of_turn is not a boolean")
    if not isinstance(words, list):
        raise _Malformed("words is not a list")
    label = msg.get("speaker_label")
    out = []
    for w in words:
        if not isinstance(w, dict) or not isinstance(w.get("text"), str):
            raise _Malformed("a word has no text")
        speaker = w.get("speaker", label)
        out.append(TurnWord(w["text"], _ms(w.get("start"), "word start"), _ms(w.get("end"), "word end"),
                            speaker if isinstance(speaker, str) and speaker != "UNKNOWN" else None))
    return Turn(order, msg["end_of_turn"], msg.get("turn_is_formatted") is True, transcript, tuple(out))


def error_from(code: object, message: str | None) -> ProviderError:
    """The error for an ``Error`` frame or a close AssemblyAI initiated."""
    hint = (ERROR_HINTS.get(code) if isinstance(code, int) else None) or "AssemblyAI ended the session"
    detail = f"code {code}" + (f": {message}" if message else "")
    return ProviderError(f"{hint} ({detail})", provider_code=code if isinstance(code, (int, str)) else None,
                         provider_message=message or None)


def language_code(language: str) -> str:
    """AssemblyAI's steering code: the bare ISO 639-1 primary subtag (``pt-BR`` -> ``pt``)."""
    return language.replace("_", "-").split("-")[0].lower()


def turn_silence_ms(endpointing: int, formats_turns: bool) -> tuple[int, int] | None:
    """``(min_turn_silence, max_turn_silence)`` for the client's endpointing; None keeps the defaults."""
    if endpointing <= 0:
        return None
    lo, hi = TURN_SILENCE_RANGE_MS
    max_ms = min(hi, max(lo, endpointing))
    return min(max_ms, DEFAULT_MIN_TURN_SILENCE_MS[formats_turns]), max_ms


# -- the adapter ----------------------------------------------------------------------------------
@register
class AssemblyAIAdapter(Adapter):
    name = "assemblyai"
    API_KEY_ENV = "ASSEMBLYAI_API_KEY"
    DEFAULT_URL = "wss://streaming.assemblyai.com/v3/ws"
    CAPABILITIES = Capabilities(
        native={"pcm_s16le": None, "pcm_mulaw": (8000,)},
        pcm_rate=16000,
        default_model="universal-3-5-pro",
        keepalive_interval=None,
        partials=True,
        diarization=True,
        turn_end=True,
        notes=(
            "endpointing sets max_turn_silence, clamped to 100-3600 ms (min_turn_silence is lowered to it "
            "when larger); endpointing=0 keeps AssemblyAI's own turn detection, which cannot be turned off",
            "punctuate=false only works with the Universal-Streaming models (universal-streaming-english, "
            "universal-streaming-multilingual, whisper-rt); Universal-3 Pro models, the default "
            "universal-3-5-pro included, always punctuate",
            "with punctuate=true on a Universal-Streaming model each final waits for AssemblyAI's formatted "
            "copy of the turn (at most 1 s); punctuate=false avoids that wait",
            "language steers Universal-3 Pro models (language_codes, primary subtag; multi or auto: "
            "unsteered); universal-streaming-english is English only; universal-streaming-multilingual and "
            "whisper-rt detect the language themselves",
            "ogg_opus, webm and mp3 are decoded to 16 kHz PCM; mu-law goes up unchanged at 8 kHz only",
            "speaker labels AssemblyAI revises later (SpeakerRevision) are not re-sent; UNKNOWN comes as null",
        ),
    )

    def __init__(self, params: ListenParams, api_key: str, base_url: str | None = None) -> None:
        super().__init__(params, api_key, base_url)
        enc, rate = self.plan.encoding, self.plan.sample_rate
        self.formats_turns = self.model in FORMAT_TURNS_MODELS
        self.expect_twin = self.formats_turns and params.punctuate  # two ends of turn per turn
        self._bps = BYTES_PER_SAMPLE[enc]
        self._rate = rate
        self._silence = SILENCE_BYTE[enc]
        self._chunk_bytes = rate * CHUNK_MS // 1000 * self._bps
        self._min_bytes = -(-rate * MIN_CHUNK_MS // 1000) * self._bps  # whole samples, >= 50 ms
        self._buf = bytearray()
        self._sent_bytes = 0  # audio the provider has, padding included
        # silence inserted upstream, in provider seconds: (start, end, padding up to its end)
        self._pads: list[tuple[float, float, float]] = []
        self._done_turn = -1  # highest turn_order whose end was delivered
        self._open: Turn | None = None  # latest message of the turn in progress
        self._partial_text: str | None = None
        self._pending: Turn | None = None  # unformatted end of turn waiting for its formatted twin
        self._pending_deadline: float | None = None  # None: not known yet (ask for ASAP)
        self._held: list[Turn] = []  # later Turn messages, kept in order behind ``_pending``

    # -- request ---------------------------------------------------------------------------------
    def query(self) -> dict[str, str]:
        """The query parameters of the upgrade request (a dict so tests can read them)."""
        p, plan = self.params, self.plan
        q = {"speech_model": self.model, "encoding": plan.encoding, "sample_rate": str(plan.sample_rate)}
        if self.formats_turns:
            q["format_turns"] = "true" if p.punctuate else "false"
        if self.model in U3_PRO_MODELS and p.language.lower() not in UNSTEERED_LANGUAGES:
            q["language_codes"] = json.dumps([language_code(p.language)])
        if p.diarize:
            q["speaker_labels"] = "true"
        silence = turn_silence_ms(p.endpointing, self.formats_turns)
        if silence is not None:
            q["min_turn_silence"], q["max_turn_silence"] = str(silence[0]), str(silence[1])
        return q

    def connect_request(self) -> UpstreamRequest:
        sep = "&" if "?" in self.base_url else "?"
        return UpstreamRequest(url=self.base_url + sep + urlencode(self.query()),
                               headers=(("Authorization", self.api_key), ("AssemblyAI-Version", API_VERSION)))

    # -- from the client ---------------------------------------------------------------------------
    def send_audio(self, data: bytes, now: float) -> None:
        if not data or not self._accepting():
            return
        buf = self._buf
        buf += data
        size = self._chunk_bytes
        if len(buf) >= size:
            n = len(buf) // size * size
            for i in range(0, n, size):
                self._send_chunk(bytes(buf[i:i + size]))
            del buf[:n]

    def send_finalize(self) -> None:
        if self._accepting():
            self._flush_audio()
            self._send(FORCE_ENDPOINT)

    def send_keepalive(self) -> None:
        if self._accepting():
            self._send(KEEPALIVE)

    def send_close(self) -> None:
        if self._accepting():
            self._flush_audio()
            self._send(TERMINATE)
            self.state = State.CLOSING

    def _send_chunk(self, chunk: bytes) -> None:
        self._sent_bytes += len(chunk)
        self._send(chunk)

    def _flush_audio(self) -> None:
        """Send what is buffered now, padded with silence to whole samples and to 50 ms."""
        buf = self._buf
        if not buf:
            return
        short = -len(buf) % self._bps
        pad = max(short, self._min_bytes - len(buf))
        if pad > 0:
            start = (self._sent_bytes + len(buf)) / self._bps / self._rate
            seconds = pad / self._bps / self._rate
            self._pads.append((start, start + seconds, (self._pads[-1][2] if self._pads else 0.0) + seconds))
            buf += bytes([self._silence]) * pad
        self._send_chunk(bytes(buf))
        buf.clear()

    def _client_time(self, ms: float) -> float:
        """A provider time (ms, padding included) as seconds of the client's stream."""
        t = ms / 1000
        i = bisect.bisect_right(self._pads, t, key=lambda pad: pad[1])
        if i < len(self._pads) and t > self._pads[i][0]:
            t = self._pads[i][0]  # inside the padding: where the client's audio stopped
        return round(max(0.0, t - (self._pads[i - 1][2] if i else 0.0)), 6)

    # -- timers ------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if self.state is State.CLOSED or self._pending is None:
            return None
        return ASAP if self._pending_deadline is None else self._pending_deadline

    def receive_timer(self, now: float) -> None:
        if self.state is State.CLOSED or self._pending is None:
            return
        if self._pending_deadline is None:
            self._pending_deadline = now + FORMAT_WAIT_S
        elif self._pending_deadline <= now:
            self._release_pending()  # the formatted twin is late: the unformatted text goes out

    # -- from AssemblyAI ---------------------------------------------------------------------------
    def _message_kind(self, msg: dict) -> object:
        return msg.get("type", "Error" if "error" in msg else None)  # the SDK reads untyped errors too

    def _dispatch(self, kind: str, msg: dict) -> None:
        if kind == "Error":
            code, text = msg.get("error_code"), msg.get("error")
            self._end_of_stream(promote=False)  # what arrived before the error still goes out
            self._fail(error_from(code if type(code) is int else None, text if isinstance(text, str) else None))
        elif kind == "Termination":
            self._end_of_stream(promote=True)
            if self.state is State.CLOSING:
                self._finish()
            else:
                self._fail(ProviderError("AssemblyAI ended the session before close_stream (Termination)",
                                         provider_code="Termination"))
        elif not self.params.parse_json:
            return  # raw mode: the frame went out as it came; only the end and errors matter here
        elif kind == "Turn":
            self._on_turn(parse_turn(msg))
        elif kind == "Begin":
            logger.debug("AssemblyAI session %r began", str(msg.get("id"))[:64])
        elif kind == "Warning":
            logger.info("AssemblyAI warning %r: %r", msg.get("warning_code"), str(msg.get("warning"))[:200])
        elif kind not in CONSUMED_TYPES:
            logger.debug("ignoring AssemblyAI message of unknown type %r", kind[:50])

    def _on_turn(self, turn: Turn) -> None:
        pending = self._pending
        if pending is not None:
            if turn.order == pending.order and turn.end_of_turn and turn.formatted:
                self._pending = self._pending_deadline = None
                self._deliver(turn)
                self._replay()
            else:
                self._held.append(turn)
            return
        if turn.order <= self._done_turn:
            return  # a twin arriving after its wait ran out, or a late repeat
        if not turn.end_of_turn:
            self._open = turn
            self._partial(turn)
        elif self.expect_twin and not turn.formatted:
            self._pending, self._pending_deadline = turn, None
        else:
            self._deliver(turn)

    def _partial(self, turn: Turn) -> None:
        if not self.params.partial_results:
            return
        text = " ".join(w.text for w in turn.words).strip() or turn.transcript.strip()
        if text and text != self._partial_text:
            self._partial_text = text
            self._emit(self._transcript(turn, text, is_partial=True))

    def _deliver(self, turn: Turn, *, ended: bool = True) -> None:
        """One final (and turn_end) for a turn; ``ended=False``: an unfinished turn at the end of the
        stream, whose text is all its words (the cumulative ``transcript`` may lag behind them)."""
        self._done_turn = max(self._done_turn, turn.order)
        self._open = None
        self._partial_text = None
        joined = " ".join(w.text for w in turn.words).strip()
        text = (turn.transcript.strip() or joined) if ended else (joined or turn.transcript.strip())
        if not text:
            return  # an end of turn without speech (ForceEndpoint or Terminate during silence)
        final = self._transcript(turn, text, is_partial=False)
        self._emit(final)
        if ended:
            self._emit(TurnEnd(self.name, final.end_time))

    def _transcript(self, turn: Turn, text: str, *, is_partial: bool) -> Transcript:
        diarize = self.params.diarize
        words = tuple(Word(w.text, self._client_time(w.start_ms), self._client_time(w.end_ms),
                           w.speaker if diarize else None) for w in turn.words)
        if words:
            start, end = words[0].start_time, max(w.end_time for w in words)
        else:  # no word timings: a zero-length segment after the last one
            start = end = self._client_time(self._sent_bytes / self._bps / self._rate * 1000)
        return Transcript(self.name, text, start, end, is_partial=is_partial, words=words)

    def _release_pending(self) -> None:
        pending, self._pending, self._pending_deadline = self._pending, None, None
        if pending is not None:
            self._deliver(pending)
        self._replay()

    def _replay(self) -> None:
        """Process the messages held behind a pending end of turn, in order; one of them may start a new
        wait, which holds the rest again (and its own twin among them ends it)."""
        held, self._held = self._held, []
        for turn in held:
            self._on_turn(turn)

    def _end_of_stream(self, *, promote: bool) -> None:
        """Everything held goes out; at a clean end the unfinished turn's words become a final too."""
        if not self.params.parse_json:
            return
        while self._pending is not None:
            self._release_pending()
        if promote and self._open is not None:
            self._deliver(self._open, ended=False)

    def receive_close(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.CLOSING and code in (1000, 1005):
            self._end_of_stream(promote=True)
            self._finish()
            return
        self._end_of_stream(promote=False)
        if code in (1000, 1005):
            self._fail(ProviderError(f"AssemblyAI closed the connection before close_stream (code {code})",
                                     provider_code=code, provider_message=reason or None))
        else:
            self._fail(error_from(code, reason))
