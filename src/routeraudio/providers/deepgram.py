"""Deepgram live transcription (Nova models, streaming API v1) as a sans-I/O adapter.

Docs: https://developers.deepgram.com/reference/speech-to-text/listen-streaming (parameters, messages),
https://developers.deepgram.com/docs/keep-alive, https://developers.deepgram.com/docs/finalize,
https://developers.deepgram.com/docs/close-stream, https://developers.deepgram.com/docs/endpointing,
https://developers.deepgram.com/docs/understanding-end-of-speech-detection (UtteranceEnd),
https://developers.deepgram.com/docs/stt-troubleshooting-websocket-data-and-net-errors.
Message shapes as in ``deepgram-sdk`` 7.17.0 (``deepgram.listen.v1.types``), checked 2026-11.

Theory of operation. Everything is configured by query parameters of the upgrade request; there is no
setup message, so the adapter is OPEN as soon as the socket is. Audio goes up as binary frames, control
as JSON text (``KeepAlive``, ``Finalize``, ``CloseStream``). Deepgram answers with ``Results`` frames:
``is_final=false`` ones are interim hypotheses of the current segment (they replace each other),
``is_final=true`` ones are consecutive, non-overlapping segments, and ``speech_final=true`` on a final
marks an endpoint (a pause of ``endpointing`` ms). ``UtteranceEnd`` is a second end-of-speech signal
based on word gaps. After ``CloseStream`` Deepgram flushes its last finals, sends ``Metadata`` and
closes with 1000: the adapter is ``done`` at that ``Metadata`` (or at the close, whichever comes first).

Quirks (all seen in the docs and SDKs named above, as of 2026-11):
- a zero-length binary frame is Deepgram's legacy end-of-stream signal: the adapter never sends one;
- raw audio needs ``encoding`` and ``sample_rate``; containers (Ogg, WebM, MP3) must send neither;
- the server closes with 1011 and a reason linking ``dpgr.am/net0001`` after ~10 s without audio or
  a text message, so the driver sends ``KeepAlive`` after ``keepalive_interval`` of silence;
- ``utterance_end_ms`` needs ``interim_results=true`` and at least 1000 ms;
- ``speech_final`` and a later ``UtteranceEnd`` often end the same words: one ``turn_end`` for both;
- close reasons are sentences carrying the code as a link (``https://dpgr.am/net0001``) or as
  ``NET-0001``; both spellings are recognised;
- finals with an empty transcript arrive during silence and after ``Finalize``: they are dropped;
- ``channel_index`` is ``[index, total]``; only channel 0 exists here because audio goes up mono.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlencode

from ..config import ListenParams
from ..errors import ProviderError
from ..events import Transcript, TurnEnd, Word
from . import register
from .base import Adapter, MalformedMessage as _Malformed, Capabilities, State, UpstreamRequest

logger = logging.getLogger("routeraudio.providers.deepgram")

# -- wire constants -------------------------------------------------------------------------------
#: routeraudio encodings sent raw, by Deepgram's name; the containers go up without ``encoding``.
RAW_ENCODINGS = {"pcm_s16le": "linear16", "pcm_mulaw": "mulaw"}
MIN_UTTERANCE_END_MS = 1000  # Deepgram rejects smaller values
KEEPALIVE = '{"type":"KeepAlive"}'
FINALIZE = '{"type":"Finalize"}'
CLOSE_STREAM = '{"type":"CloseStream"}'
#: messages that change nothing for the client (SpeechStarted is never requested; Configure is never sent)
CONSUMED_TYPES = frozenset({"SpeechStarted", "ConfigureSuccess", "ConfigureFailure"})

#: Deepgram's close-reason codes and what the user can do about them.
CLOSE_REASONS = {
    "NET-0001": "Deepgram received no audio or keep-alive for about 10 seconds and closed the stream; "
                "keep sending audio, or keep_alive messages during silence",
    "NET-0000": "Deepgram closed the stream because its side of the connection timed out; retry the session",
    "DATA-0000": "Deepgram could not decode the audio: check encoding/sample_rate (and channels) match "
                 "what is actually sent",
}
#: fallback by close code when the reason names no Deepgram code
CLOSE_CODES = {
    1000: "Deepgram ended the stream before close_stream was sent",
    1002: "Deepgram could not decode the audio: check encoding/sample_rate match what is actually sent",
    1008: "Deepgram refused the stream data (policy violation): check encoding/sample_rate and the "
          "audio itself",
    1011: "Deepgram failed while transcribing; retry the session",
}
_REASON_CODE = re.compile(r"\b(NET|DATA)-?(\d{4})\b", re.IGNORECASE)


# -- pure translation -----------------------------------------------------------------------------
def _num(value: object, what: str) -> float:
    if type(value) not in (int, float):  # bool is an int subclass and never a time
        raise _Malformed(f"{what} is not a number")
    return float(value)


def _words(alt: dict, punctuate: bool, diarize: bool) -> tuple[Word, ...]:
    raw = alt.get("words", [])
    if not isinstance(raw, list):
        raise _Malformed("words is not a list")
    out = []
    for w in raw:
        if not isinstance(w, dict) or not isinstance(w.get("word"), str):
            raise _Malformed("a word has no text")
        text = w["word"]
        if punctuate and isinstance(w.get("punctuated_word"), str):
            text = w["punctuated_word"]
        speaker = w.get("speaker")
        out.append(Word(text, _num(w.get("start"), "word start"), _num(w.get("end"), "word end"),
                        str(speaker) if diarize and type(speaker) is int else None))
    return tuple(out)


def _transcript_from_results(msg: dict, provider: str, punctuate: bool, diarize: bool = False
                             ) -> Transcript | None:
    """The unified transcript of one ``Results`` message, or None when it carries no text.

    The segment spans Deepgram's window (``start``, ``start + duration``), widened to its words when
    they stick out. Raises ``_Malformed`` when the message is not shaped like a ``Results``.
    """
    start = _num(msg.get("start"), "start")
    end = start + _num(msg.get("duration"), "duration")
    channel = msg.get("channel")
    alts = channel.get("alternatives") if isinstance(channel, dict) else None
    if not isinstance(alts, list):
        raise _Malformed("no channel.alternatives")
    if not alts:
        return None
    alt = alts[0]
    if not isinstance(alt, dict) or not isinstance(alt.get("transcript"), str):
        raise _Malformed("no transcript")
    text = alt["transcript"].strip()
    if not text:
        return None
    words = _words(alt, punctuate, diarize)
    if words:
        start, end = min(start, words[0].start_time), max(end, words[-1].end_time)
    return Transcript(provider, text, start, end, is_partial=msg.get("is_final") is not True, words=words)


def _close_error(code: int, reason: str) -> ProviderError:
    """The error for a close Deepgram initiated, with its code (``NET-0001``…) when the reason names one."""
    m = _REASON_CODE.search(reason or "")
    dg_code = f"{m.group(1).upper()}-{m.group(2)}" if m else None
    hint = CLOSE_REASONS.get(dg_code or "") or CLOSE_CODES.get(code) or "Deepgram closed the connection unexpectedly"
    detail = f"close {code}" + (f": {reason}" if reason else "")
    return ProviderError(f"{hint} ({detail})", provider_code=dg_code or code, provider_message=reason or None)


def _bool(flag: bool) -> str:
    return "true" if flag else "false"


# -- the adapter ----------------------------------------------------------------------------------
@register
class DeepgramAdapter(Adapter):
    name = "deepgram"
    RELAYS_AUDIO = True  # send_audio: one binary frame per chunk, unchanged
    API_KEY_ENV = "DEEPGRAM_API_KEY"
    DEFAULT_URL = "wss://api.deepgram.com/v1/listen"
    CAPABILITIES = Capabilities(
        native={"pcm_s16le": None, "pcm_mulaw": None, "ogg_opus": None, "webm": None, "mp3": None},
        pcm_rate=16000,
        default_model="nova-3",
        keepalive_interval=5.0,
        partials=True,
        diarization=True,
        turn_end=True,
        notes=(
            "endpointing=0 turns Deepgram's endpointing off (endpointing=false): no turn_end from pauses",
            "with partial_results=true, UtteranceEnd also ends turns after max(1000, endpointing) ms "
            "without words (Deepgram's minimum is 1000 ms)",
            "punctuate=true also turns on smart_format (numbers, dates, currency formatted)",
        ),
    )

    def __init__(self, params: ListenParams, api_key: str, base_url: str | None = None) -> None:
        super().__init__(params, api_key, base_url)
        self._turn_open = False  # final words since the last turn end
        self._turn_end_due = False  # UtteranceEnd came while its words were still interim
        self._last_word_end: float | None = None
        self._partial_text: str | None = None  # last partial sent, to drop verbatim repeats
        self._partial_start: float | None = None  # its first word's start

    # -- request ---------------------------------------------------------------------------------
    def query(self) -> dict[str, str]:
        """The query parameters of the upgrade request (a dict so tests can read them)."""
        p, plan = self.params, self.plan
        q = {"model": self.model, "language": p.language}
        if plan.encoding in RAW_ENCODINGS:
            q["encoding"] = RAW_ENCODINGS[plan.encoding]
            q["sample_rate"] = str(plan.sample_rate)
            q["channels"] = "1"  # raw audio always goes up mono; containers describe themselves
        q["punctuate"] = q["smart_format"] = _bool(p.punctuate)
        q["diarize"] = _bool(p.diarize)
        # UtteranceEnd needs interim results upstream, so it comes only with partials (the spec's
        # rule); its word gap follows the client's endpointing, raised to Deepgram's 1000 ms minimum.
        q["interim_results"] = _bool(p.partial_results)
        q["endpointing"] = str(p.endpointing) if p.endpointing > 0 else "false"
        if p.partial_results and p.endpointing > 0:
            q["utterance_end_ms"] = str(max(MIN_UTTERANCE_END_MS, p.endpointing))
        q["vad_events"] = "false"
        return q

    def connect_request(self) -> UpstreamRequest:
        sep = "&" if "?" in self.base_url else "?"
        return UpstreamRequest(url=self.base_url + sep + urlencode(self.query()),
                               headers=(("Authorization", f"Token {self.api_key}"),))

    # -- from the client ---------------------------------------------------------------------------
    def receive_open(self) -> None:
        if self.state is State.CONNECTING:  # send_close() may already have moved on to CLOSING
            self.state = State.OPEN

    def send_audio(self, data: bytes, now: float) -> None:
        if data and self._accepting():  # an empty frame would end Deepgram's stream
            self._send(bytes(data))

    def send_finalize(self) -> None:
        if self._accepting():
            self._send(FINALIZE)

    def send_keepalive(self) -> None:
        if self._accepting():
            self._send(KEEPALIVE)

    def send_close(self) -> None:
        if self._accepting():
            self._send(CLOSE_STREAM)
            self.state = State.CLOSING

    # -- from Deepgram -----------------------------------------------------------------------------
    def _dispatch(self, kind: str, msg: dict) -> None:
        if kind == "Metadata":
            if self.state is State.CLOSING:  # the last message after CloseStream
                self._finish()
        elif kind == "Error":
            variant, description = msg.get("variant"), msg.get("description")
            if not isinstance(variant, str):
                variant = msg.get("code") if isinstance(msg.get("code"), (str, int)) else None
            if not isinstance(description, str):
                description = None
            self._fail(ProviderError(f"Deepgram reported an error: {description or 'no description'}",
                                     provider_code=variant, provider_message=description))
        elif not self.params.parse_json:
            return  # raw mode: the frame went out as it came; only the end and errors matter here
        elif kind == "Results":
            self._on_results(msg)
        elif kind == "UtteranceEnd":
            self._on_utterance_end(msg)
        elif kind not in CONSUMED_TYPES:
            # A message type Deepgram adds later must not end sessions: note it and carry on.
            logger.debug("ignoring Deepgram message of unknown type %r", kind[:50])

    def _on_results(self, msg: dict) -> None:
        t = _transcript_from_results(msg, self.name, self.params.punctuate, self.params.diarize)
        if msg.get("is_final") is not True:  # interim: validated always, shown only when asked for
            if self.params.partial_results and t is not None and t.transcript != self._partial_text:
                self._partial_text = t.transcript
                self._partial_start = t.words[0].start_time if t.words else None
                self._emit(t)
            return
        self._partial_text = self._partial_start = None
        if t is not None:
            self._emit(t)
            self._turn_open = True
            if t.words:
                self._last_word_end = t.words[-1].end_time
        if self._turn_end_due or msg.get("speech_final") is True:
            self._end_turn()

    def _on_utterance_end(self, msg: dict) -> None:
        last = msg.get("last_word_end")
        if last is not None:
            self._last_word_end = _num(last, "last_word_end")
        if self._turn_open:
            self._end_turn()
        elif self._partial_text is not None and not (
                last is not None and self._partial_start is not None and last < self._partial_start):
            self._turn_end_due = True  # its words are still interim: end the turn after their final

    def _end_turn(self) -> None:
        if self._turn_open:
            self._emit(TurnEnd(self.name, self._last_word_end))
        self._turn_open = self._turn_end_due = False

    def receive_close(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.CLOSING and code in (1000, 1005):
            self._finish()
            return
        self._fail(_close_error(code, reason))
