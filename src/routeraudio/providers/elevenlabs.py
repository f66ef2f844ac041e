"""ElevenLabs Scribe realtime speech-to-text (``scribe_v2_realtime``) as a sans-I/O adapter.

Docs: https://elevenlabs.io/docs/api-reference/speech-to-text/v-1-speech-to-text-realtime (AsyncAPI:
query parameters, messages), https://elevenlabs.io/docs/developers/guides/cookbooks/speech-to-text/realtime
(commit strategies). Shapes as in ``elevenlabs`` 2.78.0: ``realtime/scribe.py`` (URL, ``xi-api-key``),
``realtime/connection.py`` (``input_audio_chunk``, commit, error kinds), ``types/*_payload.py``;
checked 2026-11. Behaviour seen by integrators: livekit/agents PR #5139 (2026-03), pipecat
``services/elevenlabs/stt.py`` (2026-08).

Theory of operation. Everything is configured by query parameters; ElevenLabs greets with
``session_started``. Audio goes up base64 inside ``input_audio_chunk`` JSON (``commit: false``,
``sample_rate``); a *commit* is the same message with empty audio and ``commit: true``. ElevenLabs sends
``partial_transcript`` (text of the uncommitted audio only, no times) and, per commit, a
``committed_transcript`` (text) plus a ``committed_transcript_with_timestamps`` twin (text and words).
Commits come from its VAD (``commit_strategy=vad``) or from the client; with the default ``manual``
strategy and no commits no final ever arrives. There is no end-of-stream message: the client commits,
waits for the committed transcript of that commit and closes the socket itself.

Segments go through one FIFO queue so output keeps ElevenLabs' order: a segment is held until its twin
arrives (the words), and with ``diarize`` until its ``diarized_transcript`` (the speakers); partials
queue behind held segments. A wait that never ends is cut by a deadline (``TWIN_WAIT_S``,
``DIARIZE_WAIT_S``), so no segment is lost and none waits longer than that. ``receive_frame`` carries
no time, so a wait that starts at a frame asks for an immediate timer (``next_deadline() == 0.0``) to
learn the time from ``receive_timer`` and then sets its real deadline.

Which commit a segment answers: our commits (finalize, close) are answered in order. In VAD mode a
segment is taken as the answer to our oldest open commit, made at audio time T, unless its words show
the VAD had already committed it (last word end + ``vad_silence_threshold_secs`` < T - ``MARGIN_S``);
VAD segments with text end a turn (``turn_end``). After ``send_close`` the session is done when the close
commit is answered; when a VAD segment shows up instead, ``CLOSE_SETTLE_S`` without another segment
also ends it (a noisy tail the VAD never committed looks like one).

Decisions and quirks (sources above; "assumed" where nothing primary says it):
- endpointing > 0 -> ``commit_strategy=vad`` and ``vad_silence_threshold_secs`` = endpointing / 1000
  clamped to ElevenLabs' 0.3..3.0 s (SDK docstring); endpointing = 0 -> ``manual``: finals only on
  finalize and at the end of the stream;
- ``include_timestamps=true`` always (words); the with-timestamps twin also arrives without it
  (livekit PR #5139), and either twin may come first: a twin whose partner already went out is dropped;
- a commit with nothing new since our last commit is not sent (ElevenLabs throttles commits:
  ``commit_throttled``); every commit is assumed to be answered, with empty text for silence;
- keepalive: an ``input_audio_chunk`` with empty audio (livekit PR #5139: ElevenLabs drops a socket after
  ~10 s without audio); silence would shift every later timestamp;
- ``diarize=true`` is sent as the ``diarize`` query flag: named so by the SDK 2.78.0 docstrings of
  ``DiarizedTranscript``/``SpeakersMerged`` but absent from its URL builder and from the published
  AsyncAPI query list (UNCONFIRMED); speakers ``speaker_N`` become ``"N"``; ``speakers_merged`` remaps
  later ones (finals already sent are not revised);
- word times are seconds from the start of the stream; ``spacing`` and ``audio_event`` items are not
  words; ``final_transcript*`` (older names in the AsyncAPI) and entity/redaction/edit messages are
  ignored; error messages carry ``error`` (SDK) or ``message`` (livekit): both are read;
- language ``auto`` omits ``language_code`` (ElevenLabs detects it); ``pt-BR`` is sent as ``pt``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlencode

from ..config import ListenParams
from ..errors import ProviderError
from ..events import Transcript, TurnEnd, Word
from . import register
from .base import Adapter, MalformedMessage as _Malformed, Capabilities, State, UpstreamRequest

logger = logging.getLogger("routeraudio.providers.elevenlabs")

# -- wire constants -------------------------------------------------------------------------------
VAD_SILENCE_RANGE_S = (0.3, 3.0)  # vad_silence_threshold_secs bounds (SDK RealtimeAudioOptions docstring)
MAX_CHUNK_S = 0.5  # audio per input_audio_chunk; ElevenLabs has a limit (chunk_size_exceeded), value unknown
TWIN_WAIT_S = 0.5  # a committed_transcript waits this long for its with-timestamps twin
DIARIZE_WAIT_S = 3.0  # ...and this long for its diarized_transcript
CLOSE_SETTLE_S = 2.0  # after close: quiet time that ends the session when the answer looked like VAD's
MARGIN_S = 0.25  # slack when telling a VAD commit from the answer to ours by word times
ASAP = 0.0  # a deadline in the past: "call receive_timer now" (to learn the time)
COMMITTED, WITH_TIMESTAMPS = "committed_transcript", "committed_transcript_with_timestamps"
ERROR_HINTS = {  # ElevenLabs' error kinds (SDK RealtimeEvents) and what the user can do
    "auth_error": "ElevenLabs rejected the API key or token",
    "quota_exceeded": "the ElevenLabs account is out of quota",
    "unaccepted_terms": "the ElevenLabs account has not accepted the speech-to-text terms",
    "rate_limited": "ElevenLabs is rate limiting this account; retry later",
    "queue_overflow": "ElevenLabs is overloaded (queue overflow); retry later",
    "resource_exhausted": "ElevenLabs has no capacity for the session; retry later",
    "session_time_limit_exceeded": "ElevenLabs ended the session at its time limit; open a new session",
    "commit_throttled": "ElevenLabs refused a commit: finalize was sent too often",
    "chunk_size_exceeded": "ElevenLabs refused an audio chunk as too large",
    "insufficient_audio_activity": "ElevenLabs ended the session: too long without audio",
    "input_error": "ElevenLabs refused the audio or a message",
    "invalid_request": "ElevenLabs refused the session parameters",
    "transcriber_error": "ElevenLabs failed while transcribing; retry the session",
    "error": "ElevenLabs reported an error",
}
ERROR_KINDS = frozenset(ERROR_HINTS) | {"unaccepted_terms_error", "quota_exceeded_error"}
IGNORED_KINDS = frozenset({"session_started", "warning", "committed_transcript_entities", "redacted_transcript",
                           "edited_transcript", "final_transcript", "final_transcript_with_timestamps"})


# -- pure translation -----------------------------------------------------------------------------
def audio_format(encoding: str, sample_rate: int) -> str:
    """ElevenLabs' ``audio_format`` for what goes upstream (``pcm_16000``, ``ulaw_8000``...)."""
    return f"ulaw_{sample_rate}" if encoding == "pcm_mulaw" else f"pcm_{sample_rate}"


def vad_silence_secs(endpointing_ms: int) -> float:
    lo, hi = VAD_SILENCE_RANGE_S
    return round(min(hi, max(lo, endpointing_ms / 1000)), 3)


def speaker_label(raw: object, merged: dict[str, str] | None = None) -> str | None:
    """``speaker_3`` -> ``"3"`` after following ``speakers_merged`` renames; None when absent."""
    if not isinstance(raw, str) or not raw:
        return None
    seen = set()
    while merged and raw in merged and raw not in seen:
        seen.add(raw)
        raw = merged[raw]
    tail = raw[len("speaker_"):] if raw.startswith("speaker_") else raw
    return tail if tail.isdigit() else raw


def words_from(items: object, diarize: bool, merged: dict[str, str] | None = None
               ) -> tuple[Word, ...] | None:
    """Unified words of a ``words`` list; None when ElevenLabs left their times out."""
    if items is None:
        return None
    if not isinstance(items, list):
        raise _Malformed("words is not a list")
    out = []
    for w in items:
        if not isinstance(w, dict) or not isinstance(w.get("text"), str):
            raise _Malformed("a word has no text")
        if w.get("type", "word") != "word" or not w["text"].strip():
            continue  # spacing and audio events are not words
        start, end = w.get("start"), w.get("end")
        if start is None or end is None:
            return None
        if type(start) not in (int, float) or type(end) not in (int, float):
            raise _Malformed("a word time is not a number")
        out.append(Word(w["text"].strip(), float(start), float(end),
                        speaker_label(w.get("speaker_id"), merged) if diarize else None))
    return tuple(out)


def error_from(kind: str, msg: dict) -> ProviderError:
    detail = msg.get("error") if isinstance(msg.get("error"), str) else msg.get("message")
    detail = detail if isinstance(detail, str) else None
    hint = ERROR_HINTS.get(kind) or ERROR_HINTS.get(kind.removesuffix("_error"), "ElevenLabs reported an error")
    return ProviderError(f"{hint}: {detail or kind}", provider_code=kind, provider_message=detail)


@dataclass(slots=True, eq=False)
class _Item:
    """One output in arrival order: a partial (ready at once) or a committed segment (maybe held)."""

    text: str
    partial: bool = False
    words: tuple[Word, ...] | None = None
    twin: bool = False  # the with-timestamps twin is still expected
    diarized: bool = False  # the diarized_transcript is still expected
    wait: float = 0.0
    deadline: float | None = None
    audio_s: float = 0.0  # audio sent when it arrived (end of a segment without words)
    orphan: bool = False  # released before its with-timestamps twin came

    def expire(self) -> None:
        self.orphan = self.orphan or self.twin
        self.twin = self.diarized = False

    @property
    def ready(self) -> bool:
        return not (self.twin or self.diarized)


# -- the adapter ----------------------------------------------------------------------------------
@register
class ElevenLabsAdapter(Adapter):
    name = "elevenlabs"
    TYPE_FIELD = "message_type"
    API_KEY_ENV = "ELEVENLABS_API_KEY"
    DEFAULT_URL = "wss://api.elevenlabs.io/v1/speech-to-text/realtime"
    CAPABILITIES = Capabilities(
        native={"pcm_s16le": None, "pcm_mulaw": (8000,)},
        pcm_rate=16000,
        default_model="scribe_v2_realtime",
        keepalive_interval=5.0,
        partials=True,
        diarization=True,
        turn_end=True,
        notes=(
            "endpointing sets ElevenLabs' VAD silence (vad_silence_threshold_secs), clamped to 0.3-3 s; "
            "endpointing=0 turns the VAD off: finals then come only on finalize and at the end of the stream",
            "punctuate=false is not honoured: Scribe always punctuates",
            "diarize=true sends ElevenLabs' diarize flag (its realtime name is unconfirmed); finals wait up to "
            "3 s for the speakers, and later speaker merges do not revise finals already sent",
            "partials carry no word timings (ElevenLabs gives none)",
            "language=auto lets ElevenLabs detect the language; region subtags are dropped (pt-BR -> pt)",
        ),
    )

    def __init__(self, params: ListenParams, api_key: str, base_url: str | None = None) -> None:
        super().__init__(params, api_key, base_url)
        self.manual = params.endpointing <= 0
        self.vad_s = 0.0 if self.manual else vad_silence_secs(params.endpointing)
        self._bytes_per_s = self.plan.sample_rate * (1 if self.plan.encoding == "pcm_mulaw" else 2)
        self._sample = 1 if self.plan.encoding == "pcm_mulaw" else 2
        self._carry = b""  # an odd byte of s16 audio, sent with the next chunk
        self._sent = 0  # audio bytes sent
        self._sent_at_commit = 0
        self._commits: deque[tuple[str, float]] = deque()  # our open commits: ("finalize"|"close", audio s)
        self._queue: deque[_Item] = deque()
        self._unpaired: tuple[str, str] | None = None  # (kind, text) of a twin whose partner went out
        self._merged: dict[str, str] = {}
        self._cursor = 0.0  # end of the last final
        self._partial_text: str | None = None
        self._settle: float | None = None  # CLOSE_SETTLE_S deadline (-1: requested, time unknown)

    # -- request ---------------------------------------------------------------------------------
    def query(self) -> list[tuple[str, str]]:
        """The query parameters of the upgrade request, in order (a list: tests read it)."""
        p, plan = self.params, self.plan
        q = [("model_id", self.model), ("audio_format", audio_format(plan.encoding, plan.sample_rate)),
             ("commit_strategy", "manual" if self.manual else "vad")]
        if not self.manual:
            q.append(("vad_silence_threshold_secs", str(self.vad_s)))
        lang = p.language.replace("_", "-").split("-")[0].lower()
        if lang != "auto":
            q.append(("language_code", lang))
        q.append(("include_timestamps", "true"))
        if p.diarize:
            q.append(("diarize", "true"))
        return q

    def connect_request(self) -> UpstreamRequest:
        sep = "&" if "?" in self.base_url else "?"
        return UpstreamRequest(url=self.base_url + sep + urlencode(self.query()),
                               headers=(("xi-api-key", self.api_key),))

    # -- from the client ---------------------------------------------------------------------------
    def _chunk(self, audio: bytes, commit: bool = False) -> str:
        return json.dumps({"message_type": "input_audio_chunk", "audio_base_64": base64.b64encode(audio).decode(),
                           "commit": commit, "sample_rate": self.plan.sample_rate}, separators=(",", ":"))

    def send_audio(self, data: bytes, now: float) -> None:
        if not self._accepting():
            return
        data = self._carry + bytes(data)
        cut = len(data) - len(data) % self._sample
        data, self._carry = data[:cut], data[cut:]
        step = max(self._sample, int(MAX_CHUNK_S * self._bytes_per_s) // self._sample * self._sample)
        for i in range(0, len(data), step):
            self._send(self._chunk(data[i:i + step]))
        self._sent += len(data)

    def _commit(self, kind: str) -> None:
        if self._sent == self._sent_at_commit:
            return  # nothing new to commit: ElevenLabs would only throttle us
        self._sent_at_commit = self._sent
        self._commits.append((kind, self._sent / self._bytes_per_s))
        self._send(self._chunk(b"", commit=True))

    def send_finalize(self) -> None:
        if self._accepting():
            self._commit("finalize")

    def send_keepalive(self) -> None:
        if self._accepting():
            self._send(self._chunk(b""))

    def send_close(self) -> None:
        if self._accepting():
            self._commit("close")
            self.state = State.CLOSING
            self._maybe_finish()

    # -- from ElevenLabs ---------------------------------------------------------------------------
    def _dispatch(self, kind: str, msg: dict) -> None:
        if kind in ERROR_KINDS or kind.endswith("_error"):
            self._fail(error_from(kind, msg))
            return
        text = msg.get("text")
        if kind in (COMMITTED, WITH_TIMESTAMPS, "partial_transcript", "diarized_transcript"):
            if not isinstance(text, str):
                raise _Malformed("no text")
            text = text.strip()
        if kind == COMMITTED or kind == WITH_TIMESTAMPS:
            self._on_committed(kind, text, msg)
        elif kind == "partial_transcript":
            self._on_partial(text)
        elif kind == "diarized_transcript":
            self._on_diarized(text, msg)
        elif kind == "speakers_merged":
            src, dst = msg.get("from_speaker_id"), msg.get("to_speaker_id")
            if not isinstance(src, str) or not isinstance(dst, str):
                raise _Malformed("speaker ids are not strings")
            self._merged[src] = dst
        elif kind not in IGNORED_KINDS:
            logger.debug("ignoring ElevenLabs message of unknown type %r", kind[:50])
        self._flush()

    def _on_partial(self, text: str) -> None:
        if not text or text == self._partial_text or not self.params.partial_results:
            return
        self._partial_text = text
        self._queue.append(_Item(text, partial=True, audio_s=self._sent / self._bytes_per_s))

    def _on_committed(self, kind: str, text: str, msg: dict) -> None:
        words = words_from(msg.get("words"), self.params.diarize, self._merged) if kind == WITH_TIMESTAMPS else None
        if kind == WITH_TIMESTAMPS:
            item = next((i for i in self._queue if i.twin and i.text == text), None) or next(
                (i for i in self._queue if i.twin), None)
            if item is not None:  # the usual order: the plain one came first and waits for its words
                item.words, item.twin = words, False
                item.wait = DIARIZE_WAIT_S if item.diarized else 0.0
                item.deadline = None
                return
        if self._unpaired == (kind, text):
            self._unpaired = None  # the twin of a segment already out
            return
        twin = kind == COMMITTED
        if not twin:
            self._unpaired = (COMMITTED, text)  # timestamps first: the plain twin adds nothing
        diarized = self.params.diarize and bool(text)
        self._queue.append(_Item(text, words=words, twin=twin, diarized=diarized,
                                 wait=TWIN_WAIT_S if twin else DIARIZE_WAIT_S if diarized else 0.0,
                                 audio_s=self._sent / self._bytes_per_s))
        self._partial_text = None
        self._settle = None

    def _on_diarized(self, text: str, msg: dict) -> None:
        waiting = [i for i in self._queue if i.diarized]
        match = next((i for i in waiting if i.text == text), None)
        if match is None:
            logger.debug("diarized_transcript for no held segment (%d waiting)", len(waiting))
            return
        for item in waiting:  # diarizations come in commit order: earlier ones were skipped
            if item is match:
                break
            item.diarized = False
        words = words_from(msg.get("words"), True, self._merged)
        if words is not None:
            match.words = words
        match.diarized = False

    # -- the queue ---------------------------------------------------------------------------------
    def _flush(self) -> None:
        while self._queue and self._queue[0].ready and self.state is not State.CLOSED:
            item = self._queue.popleft()
            self._release(item)
        self._maybe_finish()

    def _release(self, item: _Item) -> None:
        if item.partial:  # it spans the audio since the last final, as far as ElevenLabs had it
            self._out(Transcript(self.name, item.text, self._cursor, max(self._cursor, item.audio_s), True))
        else:
            self._segment(item)

    def _segment(self, item: _Item) -> None:
        if item.orphan:  # released without its words: drop the words if they come later
            self._unpaired = (WITH_TIMESTAMPS, item.text)
        words = item.words
        last_end = words[-1].end_time if words else None
        answered = None
        if self._commits:
            at = self._commits[0][1]
            if self.manual or not item.text or last_end is None or last_end + self.vad_s > at - MARGIN_S:
                answered = self._commits.popleft()[0]
        if item.text:
            if words:
                start, end = words[0].start_time, words[-1].end_time
            else:
                start, end = self._cursor, max(self._cursor, item.audio_s)
            self._out(Transcript(self.name, item.text, start, end, is_partial=False, words=words))
            self._cursor = max(self._cursor, end)
            if answered is None and not self.manual:
                self._out(TurnEnd(self.name, last_end))
        if answered is None and self.state is State.CLOSING and self._commits:
            self._settle = -1.0  # the close answer may be one the VAD had made: settle, then finish

    def _out(self, event: Transcript | TurnEnd) -> None:
        if self.params.parse_json:
            self._emit(event)

    def _maybe_finish(self) -> None:
        if self.state is State.CLOSING and not self._commits and not self._queue:
            self._finish()

    def _drain(self) -> None:
        """Everything held goes out now, in order, whatever it still waits for (the session is ending)."""
        while self._queue and self.state is not State.CLOSED:
            item = self._queue.popleft()
            item.expire()
            self._release(item)

    # -- timers ------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if self.state is State.CLOSED:
            return None
        deadlines = [i.deadline for i in self._queue if not i.ready]
        if self._settle is not None:
            deadlines.append(self._settle)
        if any(d is None or d < 0 for d in deadlines):
            return ASAP
        return min(deadlines, default=None)

    def receive_timer(self, now: float) -> None:
        if self.state is State.CLOSED:
            return
        for item in self._queue:
            if item.ready:
                continue
            if item.deadline is None:
                item.deadline = now + item.wait
            elif item.deadline <= now:
                item.expire()
        if self._settle is not None:
            if self._settle < 0:
                self._settle = now + CLOSE_SETTLE_S
            elif self._settle <= now:
                self._commits.clear()
                self._settle = None
        self._flush()

    # -- endings -----------------------------------------------------------------------------------
    def receive_close(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.CLOSING and code in (1000, 1005):
            self._drain()
            self._finish()
            return
        detail = f"code {code}" + (f": {reason}" if reason else "")
        self._fail(ProviderError(f"ElevenLabs closed the connection unexpectedly ({detail})",
                                 provider_code=code, provider_message=reason or None))

    def _fail(self, error: ProviderError) -> None:
        if self.error is None:
            self._drain()  # segments that arrived before the failure still reach the client first
        super()._fail(error)
