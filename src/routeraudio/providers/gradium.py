"""Gradium speech-to-text (STT WebSocket ``/api/speech/asr``) as a sans-I/O adapter.

Docs: https://docs.gradium.ai/api-reference/endpoint/stt-websocket (messages),
https://docs.gradium.ai/guides/websocket-lifecycle (setup fields, ``close_ws_on_eos``),
https://docs.gradium.ai/guides/transcription-settings (``json_config``),
https://docs.gradium.ai/guides/recipes/turn-taking (VAD rule, flush), https://docs.gradium.ai/guides/errors.
Message shapes as in the ``gradium`` SDK 0.6.4 (``gradium.stream.Stt``, ``gradium.speech.STTSetup``,
``docs/websocket_stt_description.md`` of gradium-ai/gradium-py) and gradium-ai/gradium-rs
``src/protocol.rs`` (``stt::Response``), checked 2026-11.

Theory of operation. The socket opens with an ``x-api-key`` header; the first message must be
``setup`` (queued by ``receive_open`` ahead of anything else), answered by ``ready``. Audio goes up
base64-encoded in ``{"type":"audio"}`` text frames, as it arrives. Gradium answers with ``text``
fragments (append-only, usually one word, ``start_s``), ``end_text`` (``stop_s`` of the previous
fragment) and a ``step`` every 80 ms of audio with VAD predictions (``vad[i].inactivity_prob`` for a
horizon of ``horizon_s`` seconds). It has no final and no end-of-turn message, so the adapter builds
them. Fragments are held (each one re-sent as a partial of the held text when asked for) until they
become finals, cut by audio time so that the segments do not depend on when frames arrive:

- a turn ends where the VAD says the speaker stopped: the longest horizon (``vad[2]``, 2 s, the one
  Gradium's docs recommend) stays above ``VAD_THRESHOLD`` (0.5, Gradium's suggested starting point)
  for ``endpointing`` ms of audio (counted in 80 ms steps, rounded up), after speech (a step at or
  below the threshold, or a held fragment) and with no fragment starting inside that quiet run. The
  turn's end is the run's start ``t``: the fragments starting before ``t`` become a final, then
  ``turn_end``, as soon as they are all known: when a fragment starting at or after ``t`` arrives
  (Gradium sends text in time order), after the ``flushed`` of the flush the adapter sends at once
  (the model emits text ``delay_in_frames`` x 80 ms late: the flush brings the turn's last words
  without waiting; none is sent once closing), or at the end of the stream;
- the client finalizes: a flush; after its ``flushed`` every held fragment becomes a final (turns
  within it first, with their ``turn_end``), the rest without ``turn_end``;
- the stream ends: ``send_close`` sends a flush (not in raw mode) and ``{"type":"end_of_stream"}``;
  Gradium sends the remaining text then ``end_of_stream`` (and closes), where the held turns and the
  rest become finals and ``done`` is set (a 1000 close without ``end_of_stream`` ends it the same way).

Text can trail ``flushed`` briefly (pipecat waits 100 ms), so after ``flushed`` the adapter waits
``TRAILING_TEXT_S`` through ``next_deadline``/``receive_timer`` before acting on it; a fragment starting
at or after the audio Gradium had processed when it flushed (the last ``step``'s
``total_duration_s``) cannot trail it and ends the wait early.

Settled facts and quirks (docs and SDKs above, as of 2026-11):
- host: the SDK's default base URL is ``https://api.gradium.ai/api/`` ("defaults to the eu-api
  server"), also the API reference's; ``eu.api.gradium.ai`` / ``us.api.gradium.ai`` pin a region
  (``ROUTERAUDIO_GRADIUM_URL``). Auth is the ``x-api-key`` header (the SDK also sends ``x-api-source``);
- ``input_format`` names the audio: ``pcm`` is 24 kHz; ``pcm_8000`` ... ``pcm_48000`` (the six rates of
  the API doc copied in api-evangelist/gradium ``openapi/gradium-stt-api-openapi.yml``), ``ulaw_8000``,
  ``opus`` (Ogg-wrapped Opus); the server default is ``wav``, so it is always sent. Mono only for PCM;
  whether stereo Ogg Opus is downmixed is UNCONFIRMED;
- ``json_config`` (object or JSON string): ``language`` only en, fr, de, es, pt ("any other value raises a
  server error"), so other languages are not sent; ``delay_in_frames`` (7..48, server default) is left
  to Gradium;
- ``flush_id`` is an integer in the API reference (the SDK's ``send_flush`` too; pipecat sends strings,
  accepted back); ids are ints from 1;
- ``text`` carries ``stream_id`` (0) and no confidence; ``end_text.stop_s`` ends the previous ``text``;
  whether a flush shifts later timestamps is UNCONFIRMED (assumed not);
- errors arrive as ``{"type":"error","message":...,"code":1008|1011}`` before the close (1008 policy:
  key, setup, audio format; 1011 internal);
- no keep-alive message and no inactivity limit are documented (UNCONFIRMED): ``keepalive_interval`` is
  None; there is no diarization and no punctuation switch (``punctuate=false`` strips it here);
- ``endpointing`` has no Gradium counterpart: it is counted here in whole 80 ms VAD steps (rounded up,
  at least one) with no clamp beyond the router's own 60 s maximum; 0 turns VAD endpoints off.
"""

from __future__ import annotations

import base64
import json
import logging
import unicodedata

from ..config import ListenParams
from ..errors import ProviderError
from ..events import Transcript, TurnEnd, Word
from . import register
from .base import Adapter, MalformedMessage as _Malformed, Capabilities, State, UpstreamRequest

logger = logging.getLogger("routeraudio.providers.gradium")

# -- wire constants -------------------------------------------------------------------------------
PCM_RATES = (8000, 16000, 22050, 24000, 44100, 48000)  # each has an explicit pcm_<rate> format
LANGUAGES = frozenset({"en", "fr", "de", "es", "pt"})
VAD_THRESHOLD = 0.5
STEP_S = 0.08  # Gradium's frame: 1920 samples at 24 kHz
TRAILING_TEXT_S = 0.1  # wait after ``flushed`` for text that trails it
END_OF_STREAM = '{"type":"end_of_stream"}'
#: Gradium's error codes (also its close codes) and what the user can do about them.
ERROR_HINTS = {
    1008: "Gradium refused the session (policy violation: check the API key, the setup and the audio format)",
    1011: "Gradium failed while transcribing; retry the session",
}
_EPS = 1e-6


# -- pure translation -----------------------------------------------------------------------------
def _num(value: object, what: str) -> float:
    if type(value) not in (int, float):  # bool is an int subclass and never a time
        raise _Malformed(f"{what} is not a number")
    return float(value)


def input_format(encoding: str, sample_rate: int) -> str:
    """Gradium's ``input_format`` for what goes upstream (``AudioPlan.encoding``/``sample_rate``)."""
    if encoding == "pcm_mulaw":
        return "ulaw_8000"
    if encoding == "ogg_opus":
        return "opus"
    return f"pcm_{sample_rate}"


def gradium_language(code: str) -> str | None:
    """``pt-BR`` -> ``pt``; None for a language Gradium does not take."""
    base = code.replace("_", "-").split("-", 1)[0].lower()
    return base if base in LANGUAGES else None


def setup_message(model: str, fmt: str, language: str | None) -> dict:
    msg: dict = {"type": "setup", "model_name": model, "input_format": fmt}
    if language is not None:
        msg["json_config"] = {"language": language}
    return msg


def strip_punctuation(text: str) -> str:
    """Punctuation around each word removed (``"Hello,"`` -> ``"Hello"``); apostrophes inside kept."""
    def bare(tok: str) -> str:
        a, b = 0, len(tok)
        while a < b and unicodedata.category(tok[a]).startswith("P"):
            a += 1
        while b > a and unicodedata.category(tok[b - 1]).startswith("P"):
            b -= 1
        return tok[a:b]

    return " ".join(t for t in map(bare, text.split()) if t)


def longest_horizon_inactivity(msg: dict) -> tuple[float | None, float]:
    """(``inactivity_prob`` of the longest VAD horizon or None, ``total_duration_s``) of a ``step``."""
    total = _num(msg.get("total_duration_s"), "total_duration_s")
    _num(msg.get("step_duration_s"), "step_duration_s")
    vad = msg.get("vad")
    if not isinstance(vad, list):
        raise _Malformed("vad is not a list")
    best: tuple[float, float] | None = None
    for v in vad:
        if not isinstance(v, dict):
            raise _Malformed("a vad entry is not an object")
        horizon = _num(v.get("horizon_s"), "horizon_s")
        prob = _num(v.get("inactivity_prob"), "inactivity_prob")
        if best is None or horizon >= best[0]:
            best = (horizon, prob)
    return (best[1] if best else None), total


def segment_transcript(words: list[list], provider: str, *, partial: bool) -> Transcript:
    """The transcript of the fragments ``[text, start, end or None]`` of one segment.

    A fragment without ``end_text`` ends where the next one starts (or where it starts, when last).
    """
    out = []
    for i, (text, start, end) in enumerate(words):
        if end is None:
            end = words[i + 1][1] if i + 1 < len(words) else start
        out.append(Word(text, start, max(start, end)))
    return Transcript(provider, " ".join(w.text for w in out), out[0].start_time,
                      max(w.end_time for w in out), is_partial=partial, words=tuple(out))


def _error(code: object, message: object) -> ProviderError:
    code = code if type(code) is int or isinstance(code, str) else None
    message = message if isinstance(message, str) else None
    hint = (ERROR_HINTS.get(code) if type(code) is int else None) or "Gradium reported an error"
    return ProviderError(f"{hint}: {message or 'no message'}" + (f" (code {code})" if code is not None else ""),
                         provider_code=code, provider_message=message)


# -- the adapter ----------------------------------------------------------------------------------
@register
class GradiumAdapter(Adapter):
    name = "gradium"
    API_KEY_ENV = "GRADIUM_API_KEY"
    DEFAULT_URL = "wss://api.gradium.ai/api/speech/asr"  # the SDK's default host (EU); us.api.gradium.ai for the USA
    CAPABILITIES = Capabilities(
        native={"pcm_s16le": PCM_RATES, "pcm_mulaw": (8000,), "ogg_opus": None},
        pcm_rate=24000,
        default_model="default",
        keepalive_interval=None,
        partials=True,
        diarization=False,
        turn_end=True,
        notes=(
            "diarize is not supported: words never carry a speaker",
            "punctuate=false strips punctuation from Gradium's text (Gradium has no such option; case is kept)",
            "language: Gradium takes en, fr, de, es and pt (a region such as pt-BR is dropped); for any other "
            "language no language hint is sent",
            "finals and turn_end are built by the router: when Gradium's VAD (2 s horizon) stays above 0.5 "
            "for endpointing ms (whole 80 ms steps, rounded up), the router flushes Gradium and sends the "
            "final, then turn_end; endpointing=0 turns this off (finals only on finalize and at the end)",
            "finalize flushes Gradium; the final follows its acknowledgement (up to 100 ms later for "
            "trailing text), without turn_end",
            "words are Gradium's text fragments (usually one word each) with their start and end times",
        ),
    )

    def __init__(self, params: ListenParams, api_key: str, base_url: str | None = None) -> None:
        super().__init__(params, api_key, base_url)
        self.endpointing_steps = -(-params.endpointing // round(STEP_S * 1000)) if params.endpointing else 0
        self.request_id: str | None = None  # from ``ready``, for support requests
        self._setup_sent = False
        self._words: list[list] = []  # fragments not yet in a final: [text, start_s, stop_s or None]
        self._open_word = False  # the last fragment still waits for its end_text
        self._partial: str | None = None  # last partial sent, to drop repeats
        self._turns: list[float] = []  # VAD turn ends (audio s) whose final is not out yet, in order
        self._speech = False  # the VAD heard speech since the last turn end
        self._run_start: float | None = None  # audio time the current high-inactivity run began
        self._run_counted = False  # that run already reached ``endpointing``
        self._processed: float | None = None  # total_duration_s of the last step
        self._next_flush_id = 1
        self._flushes: dict[int, bool] = {}  # flush ids sent and not yet answered -> asked by the client
        self._trailing = False  # after ``flushed``: the final waits for trailing text
        self._trailing_until: float | None = None  # None while trailing: the clock is not known yet
        self._trailing_all = False  # the client asked: everything heard becomes final, not only turns
        self._cut: float | None = None  # audio processed when Gradium flushed (None: unknown)

    # -- request ---------------------------------------------------------------------------------
    def setup(self) -> dict:
        """The ``setup`` message (a dict so tests can read it)."""
        return setup_message(self.model, input_format(self.plan.encoding, self.plan.sample_rate),
                             gradium_language(self.params.language))

    def connect_request(self) -> UpstreamRequest:
        return UpstreamRequest(url=self.base_url,
                               headers=(("x-api-key", self.api_key), ("x-api-source", "routeraudio")))

    # -- from the client ---------------------------------------------------------------------------
    def receive_open(self) -> None:
        if not self._setup_sent:  # setup must precede anything queued while connecting
            self._setup_sent = True
            self._to_send.insert(0, json.dumps(self.setup(), separators=(",", ":")))
        super().receive_open()

    def send_audio(self, data: bytes, now: float) -> None:
        if data and self._accepting():
            self._send('{"type":"audio","audio":"' + base64.b64encode(data).decode("ascii") + '"}')

    def _flush(self, *, client: bool) -> None:
        fid, self._next_flush_id = self._next_flush_id, self._next_flush_id + 1
        self._flushes[fid] = client
        self._send(f'{{"type":"flush","flush_id":{fid}}}')

    def send_finalize(self) -> None:
        if self._accepting():
            self._flush(client=True)

    def send_keepalive(self) -> None:
        """Gradium documents no keep-alive (``keepalive_interval`` is None): nothing to send."""

    def send_close(self) -> None:
        if self._accepting():
            if self.params.parse_json:  # the flush makes trailing text precede end_of_stream
                self._flush(client=True)
            self._send(END_OF_STREAM)
            self.state = State.CLOSING

    # -- timers ------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if not self._trailing:
            return None
        # receive_frame carries no time: ask for an immediate timer to learn the clock, then wait.
        return 0.0 if self._trailing_until is None else self._trailing_until

    def receive_timer(self, now: float) -> None:
        if not self._trailing or self.state is State.CLOSED:
            return
        if self._trailing_until is None:
            self._trailing_until = now + TRAILING_TEXT_S
        elif now >= self._trailing_until - _EPS:
            self._flush_done()

    # -- from Gradium ------------------------------------------------------------------------------
    def _dispatch(self, kind: str, msg: dict) -> None:
        if kind == "error":
            self._fail(_error(msg.get("code"), msg.get("message")))
        elif kind == "end_of_stream":
            if self.state is State.CLOSING:
                self._finalize_all()
                self._finish()
            else:  # unprompted: the close that follows decides
                logger.debug("Gradium sent end_of_stream before close_stream")
        elif kind == "ready":
            rid = msg.get("request_id")
            self.request_id = rid if isinstance(rid, str) else None
        elif not self.params.parse_json:
            return  # raw mode: the frame went out as it came; only the end and errors matter here
        elif kind == "text":
            self._on_text(msg)
        elif kind == "end_text":
            stop = _num(msg.get("stop_s"), "stop_s")
            if self._open_word and self._words:  # else it closes a fragment already finalized
                self._words[-1][2] = stop
            self._open_word = False
        elif kind == "step":
            self._on_step(msg)
        elif kind == "flushed":
            self._on_flushed(msg)
        else:
            logger.debug("ignoring Gradium message of unknown type %r", kind[:50])

    def _on_text(self, msg: dict) -> None:
        text, start = msg.get("text"), _num(msg.get("start_s"), "start_s")
        if not isinstance(text, str):
            raise _Malformed("text is not a string")
        if self._trailing and self._cut is not None and start >= self._cut - _EPS:
            self._flush_done()  # spoken after the flushed audio: nothing more trails the flush
        while self._turns and self._turns[0] <= start + _EPS:
            self._final(self._turns.pop(0), turn=True)  # text comes in time order: that turn is complete
        text = text.strip() if self.params.punctuate else strip_punctuation(text)
        if not text:
            return
        self._words.append([text, start, None])
        self._open_word = True
        self._send_partial()

    def _on_step(self, msg: dict) -> None:
        prob, total = longest_horizon_inactivity(msg)
        self._processed = total
        if prob is None:
            return
        if prob <= VAD_THRESHOLD:
            self._run_start, self._run_counted, self._speech = None, False, True
            return
        if self._run_start is None:
            self._run_start = max(0.0, total - _num(msg["step_duration_s"], "step_duration_s"))
        if (self._run_counted or not self.endpointing_steps
                or total - self._run_start < self.endpointing_steps * STEP_S - _EPS):
            return
        self._run_counted = True
        at = self._run_start
        if self._words and self._words[-1][1] > at + _EPS:
            return  # a word began inside the quiet run: not an end of speech
        if not (self._speech or (self._words and self._words[0][1] < at)):
            return  # nothing said since the last turn end (leading or continued silence)
        self._speech = False
        self._turns.append(at)
        if self.state is State.OPEN:
            self._flush(client=False)  # the model lags: get the turn's last words now

    def _on_flushed(self, msg: dict) -> None:
        fid = msg.get("flush_id")
        if type(fid) is not int and not isinstance(fid, str):
            raise _Malformed("flush_id is not an integer")
        try:
            client = self._flushes.pop(int(fid))
        except (ValueError, KeyError):
            logger.debug("ignoring Gradium flushed for a flush this adapter did not send: %r", fid)
            return
        if self._trailing:  # a second flushed while waiting: its trailing text is waited for too
            self._trailing_all = self._trailing_all or client
        else:
            self._trailing, self._trailing_all = True, client
        self._trailing_until, self._cut = None, self._processed

    # -- finals --------------------------------------------------------------------------------------
    def _flush_done(self) -> None:
        """The trailing wait after ``flushed`` is over: the flushed audio's text is all here."""
        cut = self._cut
        while self._turns and (cut is None or self._turns[0] <= cut + _EPS):
            self._final(self._turns.pop(0), turn=True)
        if self._trailing_all:
            self._final(cut, turn=False)
        self._trailing = self._trailing_all = False
        self._trailing_until = self._cut = None

    def _finalize_all(self) -> None:
        """End of stream: every turn, then whatever is left, becomes final."""
        while self._turns:
            self._final(self._turns.pop(0), turn=True)
        self._final(None, turn=False)
        self._trailing = self._trailing_all = False

    def _final(self, before: float | None, *, turn: bool) -> None:
        """The fragments starting before ``before`` (all: None) become a final, then ``turn_end``."""
        n = len(self._words) if before is None else sum(1 for w in self._words if w[1] < before - _EPS)
        if not n:
            return
        done, self._words = self._words[:n], self._words[n:]
        if not self._words:
            self._open_word = False
        final = segment_transcript(done, self.name, partial=False)
        self._emit(final)
        if turn:
            self._emit(TurnEnd(self.name, final.end_time))
        self._partial = None
        self._send_partial()  # what is left starts the next utterance

    def _send_partial(self) -> None:
        if self.params.partial_results and self._words:
            t = segment_transcript(self._words, self.name, partial=True)
            if t.transcript != self._partial:
                self._partial = t.transcript
                self._emit(t)

    def receive_close(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.CLOSING and code in (1000, 1005):
            if self.params.parse_json:
                self._finalize_all()  # closed without end_of_stream: what came is still delivered
            self._finish()
            return
        hint = ERROR_HINTS.get(code, "Gradium closed the connection unexpectedly")
        self._fail(ProviderError(f"{hint} (close {code}{': ' + reason if reason else ''})",
                                 provider_code=code, provider_message=reason or None))
