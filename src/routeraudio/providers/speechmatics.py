"""Speechmatics real-time transcription (Realtime API v2) as a sans-I/O adapter.

Docs: https://docs.speechmatics.com/api-ref/realtime-transcription-websocket (messages, close codes),
https://docs.speechmatics.com/get-started/authentication (endpoints, ``Authorization: Bearer``),
https://docs.speechmatics.com/speech-to-text/realtime/output (finals, partials, ``max_delay``),
https://docs.speechmatics.com/speech-to-text/realtime/turn-detection (``EndOfUtterance``,
``ForceEndOfUtterance``), https://docs.speechmatics.com/speech-to-text/formatting (``permitted_marks``).
Message shapes as in the AsyncAPI spec ``spec/realtime.yaml`` of GitHub ``speechmatics/docs``
(commit 8783a7a, 2026-08-13) and ``speechmatics-rt`` 1.2.1 (``speechmatics.rt``), checked 2026-11.

Theory of operation. The upgrade request carries only the key; ``receive_open()`` queues the config,
``StartRecognition``. Speechmatics answers with ``Info`` messages, then ``RecognitionStarted``; nothing
may be sent before that, so audio, finalizes and the close handed over until then are held, in order,
and sent when it arrives. The hold is bounded: ``START_TIMEOUT`` s after the first held chunk (a
``next_deadline()`` timer) or ``MAX_HELD_AUDIO_S`` s of held audio fail the session with an
``UpstreamTimeoutError``. Audio goes up as binary frames, each acknowledged by ``AudioAdded {seq_no}``
(``chunks_sent``/``chunks_acked``). Finals (``AddTranscript``) are incremental, non-overlapping
segments; partials (``AddPartialTranscript``, with ``enable_partials``) carry the not-yet-final tail
and replace each other; ``EndOfUtterance`` follows the final it closes and becomes ``turn_end``.
``send_close()`` sends ``EndOfStream`` with ``last_seq_no`` = chunks sent; Speechmatics flushes its last
finals and sends ``EndOfTranscript``, where the adapter is ``done`` (the driver then closes the socket,
as the SDK's client does).

Decisions and quirks (sources above, as of 2026-11):
- default URL ``wss://eu.rt.speechmatics.com/v2``: the documented EU1 endpoint since docs commit
  d09d4ee (2025-12-09); ``speechmatics-rt`` 1.2.1 still defaults to the older ``eu2.rt`` host;
  ``us.rt`` and ``global.rt`` are the other documented hosts (``ROUTERAUDIO_SPEECHMATICS_URL``);
- ``model`` (``standard``/``enhanced``/``melia-1``) replaces the deprecated ``operating_point``;
  default ``enhanced`` as in ``speechmatics-rt`` (the spec's own default is ``standard``);
- ``endpointing`` ms -> ``conversation_config.end_of_utterance_silence_trigger`` in seconds, clamped
  to the documented 0-2 s (0 disables ``EndOfUtterance``); ``max_delay`` (0.7-4 s, finals latency)
  is ``max(1.0, trigger + 0.5)`` because the docs advise a trigger below ``max_delay``;
- ``punctuate=false`` -> ``punctuation_overrides.permitted_marks = []`` (the documented way to get
  no marks); casing and entity formatting cannot be turned off that way;
- punctuation comes as separate results with ``attaches_to`` (previous/next/both/none); the text is
  rebuilt from the results with the language pack's ``word_delimiter`` (empty for Japanese,
  Chinese...), and a mark is glued onto the word it attaches to in ``words``; a mark that attaches to
  a word of an earlier final stays in its own final's text (finals are never edited);
- ``ForceEndOfUtterance`` carries ``timestamp`` = seconds of audio sent, as the SDK does;
- speaker labels ``S1``, ``S2``... are kept; ``UU`` (unknown speaker) becomes null;
- ``AddTranscript`` with no results arrives during silence and is dropped; so are empty partials
  (each final is followed by a partial of the remaining words, often none);
- ``EndOfTranscript`` before ``EndOfStream`` (e.g. after a ``duration_limit_exceeded`` warning) is an
  error carrying the last warning, not a normal end;
- no application keepalive exists: the driver's WebSocket pings keep the session alive (Speechmatics
  ends sessions with neither audio nor ping for 3 min, or no audio for 1 h).
"""

from __future__ import annotations

import json
import logging

from ..config import ListenParams
from ..errors import ProviderError, UpstreamTimeoutError
from ..events import Transcript, TurnEnd, Word
from . import register
from .base import Adapter, MalformedMessage as _Malformed, Capabilities, State, UpstreamRequest

logger = logging.getLogger("routeraudio.providers.speechmatics")

# -- wire constants -------------------------------------------------------------------------------
#: routeraudio encodings Speechmatics takes raw, by its name, and their bytes per sample
ENCODINGS = {"pcm_s16le": "pcm_s16le", "pcm_mulaw": "mulaw"}
BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_mulaw": 1}
EOU_TRIGGER_RANGE = (0.0, 2.0)  # seconds, spec ConversationConfig
MAX_DELAY_RANGE = (0.7, 4.0)  # seconds, spec TranscriptionConfig
START_TIMEOUT = 15.0  # s to wait for RecognitionStarted once audio is held (docs: setup takes up to ~15 s)
MAX_HELD_AUDIO_S = 30.0  # seconds of audio held before RecognitionStarted
UNKNOWN_SPEAKER = "UU"
WORD_TYPES = frozenset({"word", "entity"})
#: messages that change nothing for the client
CONSUMED = frozenset({"Info", "AudioEventStarted", "AudioEventEnded", "AddTranslation", "AddPartialTranslation",
                      "SpeakersResult", "ChannelAudioAdded"})

#: close codes Speechmatics documents (api-ref "Websocket errors"), with what the user can do
CLOSE_CODES = {
    1003: "Speechmatics refused a message it could not accept (protocol_error)",
    1008: "Speechmatics ended the session (policy_violation: idle or maximum session time reached)",
    1011: "Speechmatics failed internally (internal_error); retry after 5-10 s",
    4001: "Speechmatics refused the API key (not_authorised)",
    4003: "Speechmatics does not allow this request for the key (not_allowed)",
    4004: "Speechmatics cannot use this model/language (invalid_model): check model and language",
    4005: "Speechmatics concurrent session quota reached (quota_exceeded); retry after 5-10 s",
    4006: "Speechmatics usage quota reached (timelimit_exceeded)",
    4013: "Speechmatics could not run the job (job_error); retry after 5-10 s",
}
#: advice for some in-band Error types (spec ErrorTypeEnum)
ERROR_HINTS = {"not_authorised": "check the Speechmatics API key", "invalid_model": "check model and language",
               "quota_exceeded": "too many concurrent sessions; retry after 5-10 s", "job_error": "retry after 5-10 s",
               "buffer_error": "audio arrived faster than Speechmatics reads it"}


# -- pure translation -----------------------------------------------------------------------------
def _num(value: object, what: str) -> float:
    if type(value) not in (int, float):  # bool is an int subclass and never a time
        raise _Malformed(f"{what} is not a number")
    return float(value)


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(bounds[1], max(bounds[0], value))


def eou_trigger_s(endpointing_ms: int) -> float:
    """``end_of_utterance_silence_trigger`` for the client's ``endpointing``: seconds, clamped to 0-2."""
    return round(_clamp(endpointing_ms / 1000, EOU_TRIGGER_RANGE), 3)


def max_delay_s(trigger: float) -> float:
    """``max_delay`` kept above the end-of-utterance trigger (docs' advice), within 0.7-4 s."""
    return round(_clamp(max(1.0, trigger + 0.5), MAX_DELAY_RANGE), 3)


def start_recognition(params: ListenParams, encoding: str, sample_rate: int, model: str) -> dict:
    """The ``StartRecognition`` message for a session (``encoding`` is routeraudio's, as planned)."""
    trigger = eou_trigger_s(params.endpointing)
    config: dict = {
        "language": params.language,
        "model": model,
        "enable_partials": params.partial_results,
        "max_delay": max_delay_s(trigger),
        "diarization": "speaker" if params.diarize else "none",
        "conversation_config": {"end_of_utterance_silence_trigger": trigger},
    }
    if not params.punctuate:
        config["punctuation_overrides"] = {"permitted_marks": []}
    return {"message": "StartRecognition",
            "audio_format": {"type": "raw", "encoding": ENCODINGS[encoding], "sample_rate": sample_rate},
            "transcription_config": config}


def _alternative(result: dict) -> dict | None:
    alts = result.get("alternatives") or []  # a result without alternatives carries no text
    if not isinstance(alts, list) or not (alts == [] or isinstance(alts[0], dict)):
        raise _Malformed("alternatives is not a list of objects")
    if alts and not isinstance(alts[0].get("content"), str):
        raise _Malformed("an alternative has no content")
    return alts[0] if alts else None


def transcript_from_results(msg: dict, provider: str, *, partial: bool, diarize: bool,
                            delimiter: str = " ") -> Transcript | None:
    """The unified transcript of one ``AddTranscript``/``AddPartialTranscript``, or None without text.

    Words and entities are joined with ``delimiter``; punctuation joins per ``attaches_to``. Raises
    ``_Malformed`` when the message is not shaped like a transcript message.
    """
    meta, results = msg.get("metadata"), msg.get("results")
    if not isinstance(meta, dict) or not isinstance(results, list):
        raise _Malformed("no metadata or results")
    start, end = _num(meta.get("start_time"), "metadata.start_time"), _num(meta.get("end_time"), "metadata.end_time")
    text: list[str] = []
    words: list[Word] = []
    glue = True  # no delimiter before the next token (start of text, or after a "next"/"both" mark)
    prefix = ""  # marks attaching to the next word
    for r in results:
        if not isinstance(r, dict) or not isinstance(r.get("type"), str):
            raise _Malformed("a result has no type")
        alt = _alternative(r)
        r_start, r_end = _num(r.get("start_time"), "result start_time"), _num(r.get("end_time"), "result end_time")
        if alt is None:
            continue
        content, kind = alt["content"], r["type"]
        if kind in WORD_TYPES:
            if not glue:
                text.append(delimiter)
            text.append(content)
            speaker = alt.get("speaker")
            if not (diarize and isinstance(speaker, str) and speaker != UNKNOWN_SPEAKER):
                speaker = None
            words.append(Word(prefix + content, r_start, r_end, speaker))
            glue, prefix = False, ""
        elif kind == "punctuation":
            attaches = r.get("attaches_to", "previous")
            if attaches in ("next", "none") and not glue:
                text.append(delimiter)
            text.append(content)
            if attaches in ("previous", "both") and words and not prefix:
                last = words[-1]
                words[-1] = Word(last.text + content, last.start_time, last.end_time, last.speaker)
            elif attaches in ("next", "both"):
                prefix += content
            glue = attaches in ("next", "both")
        else:
            logger.debug("ignoring Speechmatics result of unknown type %r", kind[:50])
    joined = "".join(text).strip()
    if not joined:
        return None
    if words:
        start, end = min(start, words[0].start_time), max(end, words[-1].end_time)
    return Transcript(provider, joined, start, end, is_partial=partial, words=tuple(words))


def _close_error(code: int, reason: str) -> ProviderError:
    hint = CLOSE_CODES.get(code, "Speechmatics closed the connection unexpectedly")
    detail = f"close {code}" + (f": {reason}" if reason else "")
    return ProviderError(f"{hint} ({detail})", provider_code=code, provider_message=reason or None)


def _error_from_message(msg: dict) -> ProviderError:
    kind = msg.get("type") if isinstance(msg.get("type"), str) else None
    reason = msg.get("reason") if isinstance(msg.get("reason"), str) else None
    hint = ERROR_HINTS.get(kind or "")
    text = f"Speechmatics reported an error ({kind or 'no type'}): {reason or 'no reason given'}"
    return ProviderError(text + (f"; {hint}" if hint else ""), provider_code=kind, provider_message=reason)


_FINALIZE = object()  # a finalize held, in order, until RecognitionStarted


# -- the adapter ----------------------------------------------------------------------------------
@register
class SpeechmaticsAdapter(Adapter):
    name = "speechmatics"
    RELAYS_AUDIO = True  # send_audio: one binary frame per chunk, unchanged
    TYPE_FIELD = "message"
    API_KEY_ENV = "SPEECHMATICS_API_KEY"
    DEFAULT_URL = "wss://eu.rt.speechmatics.com/v2"
    CAPABILITIES = Capabilities(
        native={"pcm_s16le": None, "pcm_mulaw": None},
        pcm_rate=16000,
        default_model="enhanced",
        keepalive_interval=None,
        partials=True,
        diarization=True,
        turn_end=True,
        notes=(
            "endpointing becomes end_of_utterance_silence_trigger in seconds, clamped to 0-2 s "
            "(over 2000 ms acts as 2000 ms); endpointing=0 turns it off: no turn_end from pauses",
            "finals arrive within max_delay = max(1.0, endpointing + 0.5) s (0.7-4 s) of each word",
            "finalize forces an end of utterance: its final is followed by a turn_end",
            "punctuate=false removes punctuation marks only; capitalisation and number formatting stay",
            "the unknown speaker label UU is reported as null; others as Speechmatics names them (S1, S2...)",
            "Ogg/Opus, WebM and MP3 are decoded to 16 kHz PCM; language is passed as given (Speechmatics codes)",
        ),
    )

    def __init__(self, params: ListenParams, api_key: str, base_url: str | None = None) -> None:
        super().__init__(params, api_key, base_url)
        self.chunks_sent = 0  # binary AddAudio frames sent: EndOfStream.last_seq_no
        self.chunks_acked = 0  # highest AudioAdded.seq_no received
        self.started = False  # RecognitionStarted received
        self._start_sent = False
        self._bytes_sent = 0
        self._bytes_per_second = plan_bps = self.plan.sample_rate * BYTES_PER_SAMPLE[self.plan.encoding]
        self._held: list[bytes | object] = []  # audio and finalizes waiting for RecognitionStarted
        self._held_bytes = 0
        self._max_held_bytes = int(MAX_HELD_AUDIO_S * plan_bps)
        self._close_held = False
        self._start_deadline: float | None = None
        self._delimiter = " "
        self._turn_open = False
        self._last_word_end: float | None = None
        self._partial_text: str | None = None
        self._last_warning: str | None = None

    # -- request ---------------------------------------------------------------------------------
    def start_message(self) -> dict:
        """The ``StartRecognition`` message this session sends (a dict so tests can read it)."""
        return start_recognition(self.params, self.plan.encoding, self.plan.sample_rate, self.model)

    def connect_request(self) -> UpstreamRequest:
        return UpstreamRequest(url=self.base_url, headers=(("Authorization", f"Bearer {self.api_key}"),))

    # -- from the client ---------------------------------------------------------------------------
    def receive_open(self) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.CONNECTING:  # send_close() may already have moved on to CLOSING
            self.state = State.OPEN
        if not self._start_sent:
            self._start_sent = True
            self._send_json(self.start_message())

    def send_audio(self, data: bytes, now: float) -> None:
        if not data or not self._accepting():
            return
        if self.started:
            self._send_chunk(bytes(data))
            return
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        if self._start_deadline is None:
            self._start_deadline = now + START_TIMEOUT
        if self._held_bytes > self._max_held_bytes:
            self._fail(UpstreamTimeoutError(
                f"Speechmatics had not started recognition after {MAX_HELD_AUDIO_S:g} s of audio; "
                "the router does not hold more"))

    def _send_chunk(self, data: bytes) -> None:
        self._send(data)
        self.chunks_sent += 1
        self._bytes_sent += len(data)

    def relay_ready(self) -> bool:
        return self.started and super().relay_ready()  # before RecognitionStarted, audio is held

    def relayed(self, frames: int, nbytes: int) -> None:
        self.chunks_sent += frames  # each relayed frame is one AddAudio: EndOfStream counts them
        self._bytes_sent += nbytes

    def send_finalize(self) -> None:
        if not self._accepting():
            return
        if self.started:
            self._send_finalize()
        else:
            self._held.append(_FINALIZE)

    def _send_finalize(self) -> None:
        seconds = round(self._bytes_sent / self._bytes_per_second, 3)
        self._send_json({"message": "ForceEndOfUtterance", "timestamp": seconds})

    def send_keepalive(self) -> None:
        """Speechmatics has no keep-alive message; WebSocket pings do that job."""

    def send_close(self) -> None:
        if not self._accepting():
            return
        self.state = State.CLOSING
        if self.started:
            self._send_end_of_stream()
        else:
            self._close_held = True

    def _send_end_of_stream(self) -> None:
        self._send_json({"message": "EndOfStream", "last_seq_no": self.chunks_sent})

    def _send_json(self, msg: dict) -> None:
        self._send(json.dumps(msg, separators=(",", ":")))

    # -- timers ----------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if self.started or self.state is State.CLOSED:
            return None
        return self._start_deadline

    def receive_timer(self, now: float) -> None:
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self._fail(UpstreamTimeoutError(
                f"Speechmatics did not confirm StartRecognition (RecognitionStarted) within {START_TIMEOUT:g} s"))

    # -- from Speechmatics -------------------------------------------------------------------------
    def _dispatch(self, kind: str, msg: dict) -> None:
        if kind == "RecognitionStarted":
            self._on_started(msg)
        elif kind == "AudioAdded":
            seq = msg.get("seq_no")
            if type(seq) is not int or not 0 < seq <= self.chunks_sent:
                raise _Malformed(f"seq_no {seq!r} does not name one of the {self.chunks_sent} chunks sent")
            self.chunks_acked = max(self.chunks_acked, seq)
        elif kind == "EndOfTranscript":
            if self.state is State.CLOSING:
                self._finish()
            else:
                last = f" (last warning: {self._last_warning})" if self._last_warning else ""
                self._fail(ProviderError(f"Speechmatics ended the transcript before close_stream{last}",
                                         provider_code="EndOfTranscript", provider_message=self._last_warning))
        elif kind == "Error":
            self._fail(_error_from_message(msg))
        elif kind == "Warning":
            reason = msg.get("reason")
            self._last_warning = reason[:500] if isinstance(reason, str) else None
            logger.debug("Speechmatics warning %r: %s", msg.get("type"), self._last_warning)
        elif not self.params.parse_json:
            return  # raw mode: the frame went out as it came; only the lifecycle matters here
        elif kind in ("AddTranscript", "AddPartialTranscript"):
            self._on_transcript(msg, partial=kind == "AddPartialTranscript")
        elif kind == "EndOfUtterance":
            if self._turn_open:
                self._emit(TurnEnd(self.name, self._last_word_end))
                self._turn_open = False
        elif kind not in CONSUMED:
            # A message type Speechmatics adds later must not end sessions: note it and carry on.
            logger.debug("ignoring Speechmatics message of unknown type %r", kind[:50])

    def _on_started(self, msg: dict) -> None:
        if self.started:
            logger.debug("ignoring a second RecognitionStarted")
            return
        info = msg.get("language_pack_info")
        if isinstance(info, dict) and isinstance(info.get("word_delimiter"), str):
            self._delimiter = info["word_delimiter"]
        self.started = True
        self._start_deadline = None
        held, self._held, self._held_bytes = self._held, [], 0
        for item in held:  # in the order the client sent them
            if item is _FINALIZE:
                self._send_finalize()
            else:
                self._send_chunk(item)  # type: ignore[arg-type]
        if self._close_held:
            self._close_held = False
            self._send_end_of_stream()

    def _on_transcript(self, msg: dict, partial: bool) -> None:
        t = transcript_from_results(msg, self.name, partial=partial, diarize=self.params.diarize,
                                    delimiter=self._delimiter)
        if partial:  # validated always, shown only when asked for
            if self.params.partial_results and t is not None and t.transcript != self._partial_text:
                self._partial_text = t.transcript
                self._emit(t)
            return
        self._partial_text = None
        if t is not None:
            self._emit(t)
            self._turn_open = True
            if t.words:
                self._last_word_end = t.words[-1].end_time

    def receive_close(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.CLOSING and code in (1000, 1005):
            self._finish()
            return
        self._fail(_close_error(code, reason))
