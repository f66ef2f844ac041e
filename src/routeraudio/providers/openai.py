"""OpenAI Realtime API transcription sessions (GA interface, WebSocket) as a sans-I/O adapter.

Docs: https://developers.openai.com/api/docs/guides/realtime-transcription (URL, session.update,
commits), https://developers.openai.com/api/docs/guides/realtime-vad (which models take turn detection),
https://developers.openai.com/api/reference/resources/realtime/client-events (and server-events).
Message shapes as in the ``openai`` SDK 3.54.0 (``openai.types.realtime``), checked 2026-11.

Theory of operation. The socket opens on ``/v1/realtime?intent=transcription`` with ``Authorization:
Bearer <key>`` and no ``model=`` (a model in the URL makes a conversation session, which refuses a
transcription ``session.update`` with ``invalid_model``). ``receive_open`` queues one ``session.update``
(type ``transcription``: format, model, language, turn detection) ahead of any audio; audio goes up
base64 in ``input_audio_buffer.append``. OpenAI cuts the audio into *items*: its server VAD commits one
per speech turn (``speech_started`` -> ``speech_stopped`` -> ``committed``), and each client
``input_audio_buffer.commit`` (finalize, close) commits what is buffered. An item gets incremental
``...transcription.delta`` events and one ``...transcription.completed`` (or ``...failed``); items may
complete out of order, so finals are released in commit order: one per item, ``words=None`` (OpenAI
gives no word times), then ``turn_end`` if the VAD ended the item. Partials are the delta text of every
item not final yet. Times: a VAD item spans ``speech_started.audio_start_ms`` (with the 300 ms prefix
padding) to ``speech_stopped.audio_end_ms``; a client-committed item spans the audio sent between the
previous commit and its own; finals are clamped never to overlap. There is no end-of-stream message:
``send_close`` commits the rest, and the adapter is ``done`` once that commit is answered (``committed``,
or the benign ``input_audio_buffer_commit_empty`` error) and every committed item has completed.

Quirks and decisions (sources above; 2026-11):
- default model ``gpt-transcribe``: current (``gpt-4o-*`` and ``whisper-1`` shut down 2027-02-26 per the
  SDK's ``AudioTranscription`` docstring) and it takes server VAD, so ``endpointing`` and ``turn_end``
  work; its deltas arrive once an item is committed.
- ``gpt-live-transcribe``/``gpt-realtime-whisper`` refuse turn detection (realtime-vad guide: "require
  turn detection to be omitted or set to null"; error "Turn detection is not supported for this
  transcription model"): ``turn_detection: null``; deltas stream as audio arrives, finals come only on
  client commits (finalize, close_stream), no ``turn_end``. If their early deltas name another item
  than the commit's (undocumented), they are folded into the committed item.
- ``endpointing`` -> ``silence_duration_ms`` clamped to 200-10000 ms (OpenAI documents no range; default
  500; below 200 ms every breath ends a turn); ``endpointing=0`` -> no turn detection.
- ``language``: primary subtag (``pt-BR`` -> ``pt``); ``languages: [code]`` for ``gpt-transcribe`` and
  ``gpt-live-transcribe`` (the list refuses ``[]``/``null``: omitted instead), ``language`` for older
  models; ``auto``/``multi`` omit it (OpenAI detects).
- native audio: PCM at 24 kHz only (``audio/pcm``), G.711 mu-law at 8 kHz (``audio/pcmu``).
- errors: ``input_audio_buffer_commit_empty`` (a commit of < 100 ms, expected right after a VAD commit)
  is benign; every other ``error`` event ends the session: a transcription client only sends config,
  audio and commits, so any other error means the config or audio was refused or the key, quota or
  session cannot go on, and carrying on would lose words silently. A ``...failed`` item is skipped
  (logged): only its words are lost. A bad key: ``error`` ``invalid_api_key`` after the upgrade, then
  close 3000 ``invalid_request_error.invalid_api_key`` (twilio-samples/speech-assistant-openai-realtime-
  api-python issue #4).
- ``diarize`` is not supported (only the deprecated ``gpt-4o-transcribe-diarize`` labels speakers, in
  ``segment`` events, which are ignored); ``punctuate=false`` cannot be honoured (always punctuated).
- no keep-alive message exists; the driver's WebSocket pings check the connection.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import deque
from dataclasses import dataclass

from ..config import ListenParams
from ..errors import ProviderError
from ..events import Transcript, TurnEnd
from . import register
from .base import Adapter, MalformedMessage as _Malformed, AudioPlan, Capabilities, State, UpstreamRequest

logger = logging.getLogger("routeraudio.providers.openai")

# -- wire constants -------------------------------------------------------------------------------
DEFAULT_MODEL = "gpt-transcribe"
#: models that refuse turn detection: the client must commit every item (prefixes: dated snapshots)
CLIENT_COMMIT_MODELS = ("gpt-live-transcribe", "gpt-realtime-whisper")
#: models that take the plural ``languages`` list (and ``keywords``); the others take ``language``
LANGUAGES_LIST_MODELS = ("gpt-transcribe", "gpt-live-transcribe")
MIN_SILENCE_MS, MAX_SILENCE_MS = 200, 10_000
PREFIX_PADDING_MS = 300  # OpenAI's default, sent explicitly so the VAD segment times are known
AUTO_LANGUAGES = frozenset({"auto", "multi"})
#: routeraudio encoding -> (OpenAI input format, bytes per second as sent)
FORMATS = {"pcm_s16le": ({"type": "audio/pcm", "rate": 24000}, 48000),
           "pcm_mulaw": ({"type": "audio/pcmu"}, 8000)}
SESSION_UPDATE_EVENT_ID = "routeraudio_session_update"
COMMIT = '{"type":"input_audio_buffer.commit"}'
_APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"'
COMMIT_EMPTY = "input_audio_buffer_commit_empty"
#: error codes that do not end the session (see the module docstring)
BENIGN_ERROR_CODES = frozenset({COMMIT_EMPTY})
#: messages that change nothing for the client
CONSUMED_TYPES = frozenset({
    "session.created", "session.updated", "conversation.item.added", "conversation.item.done",
    "conversation.item.created", "input_audio_buffer.cleared", "input_audio_buffer.timeout_triggered",
    "conversation.item.input_audio_transcription.segment", "rate_limits.updated"})
PREFIX = "conversation.item.input_audio_transcription."

#: OpenAI error codes (also the tail of its close reasons, ``<error type>.<code>``) and what to do
ERROR_HINTS = {
    "invalid_api_key": "OpenAI refused the API key: check the key (or OPENAI_API_KEY) is valid",
    "insufficient_quota": "OpenAI refused the session: the account has no quota left",
    "session_expired": "OpenAI ended the session at its maximum duration; open a new session",
}


# -- pure translation -----------------------------------------------------------------------------
def uses_client_commits(model: str) -> bool:
    return model.startswith(CLIENT_COMMIT_MODELS)


def language_code(language: str) -> str | None:
    """The ISO-639-1 code OpenAI takes (``pt-BR`` -> ``pt``); None to let it detect the language."""
    lang = language.strip().lower()
    if not lang or lang in AUTO_LANGUAGES:
        return None
    return lang.replace("_", "-").split("-")[0]


def silence_ms(endpointing: int) -> int | None:
    """``turn_detection.silence_duration_ms`` for the client's endpointing (None: no turn detection)."""
    if endpointing <= 0:
        return None
    return max(MIN_SILENCE_MS, min(MAX_SILENCE_MS, endpointing))


def session_update(params: ListenParams, plan: AudioPlan, model: str) -> dict:
    """The ``session.update`` event that configures a transcription session for these parameters."""
    transcription: dict = {"model": model}
    lang = language_code(params.language)
    if lang is not None:
        if model.startswith(LANGUAGES_LIST_MODELS):
            transcription["languages"] = [lang]
        else:
            transcription["language"] = lang
    silence = None if uses_client_commits(model) else silence_ms(params.endpointing)
    turn_detection = None if silence is None else {
        "type": "server_vad", "prefix_padding_ms": PREFIX_PADDING_MS, "silence_duration_ms": silence}
    audio_input = {"format": dict(FORMATS[plan.encoding][0]), "transcription": transcription,
                   "turn_detection": turn_detection}
    return {"type": "session.update", "event_id": SESSION_UPDATE_EVENT_ID,
            "session": {"type": "transcription", "audio": {"input": audio_input}}}


def error_from_event(msg: dict) -> tuple[bool, ProviderError]:
    """``(fatal, error)`` for an ``error`` event; the error carries OpenAI's code and message."""
    body = msg.get("error")
    body = body if isinstance(body, dict) else {}
    message = body.get("message") if isinstance(body.get("message"), str) else None
    code = body.get("code") if isinstance(body.get("code"), str) else None
    kind = body.get("type") if isinstance(body.get("type"), str) else None
    param = body.get("param") if isinstance(body.get("param"), str) else None
    hint = ERROR_HINTS.get(code or "")
    if hint:
        text = f"{hint} ({message})" if message else hint
    else:
        text = f"OpenAI reported an error: {message or 'no message'}" + (f" (param {param})" if param else "")
    return code not in BENIGN_ERROR_CODES, ProviderError(text, provider_code=code or kind, provider_message=message)


def close_error(code: int, reason: str) -> ProviderError:
    """The error for a close OpenAI initiated; its reasons read ``<error type>.<code>``."""
    oa_code = reason.rpartition(".")[2] if reason else ""
    hint = ERROR_HINTS.get(oa_code) or "OpenAI closed the connection unexpectedly"
    detail = f"close {code}" + (f": {reason}" if reason else "")
    return ProviderError(f"{hint} ({detail})", provider_code=(oa_code if oa_code in ERROR_HINTS else code),
                         provider_message=reason or None)


def _str(msg: dict, key: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str):
        raise _Malformed(f"{key} is not a string")
    return value


def _ms(msg: dict, key: str) -> float:
    value = msg.get(key)
    if type(value) not in (int, float):  # bool is an int subclass and never a time
        raise _Malformed(f"{key} is not a number")
    return value / 1000.0


@dataclass(slots=True, eq=False)
class _Item:
    """One OpenAI item: its delta text so far, its span, and whether it is resolved."""

    text: str = ""
    start: float | None = None
    end: float | None = None
    final: str | None = None  # completed.transcript
    committed: bool = False
    resolved: bool = False  # completed or failed
    turn_end: float | None = None  # set when the VAD ended the turn with this item


# -- the adapter ----------------------------------------------------------------------------------
@register
class OpenAIAdapter(Adapter):
    name = "openai"
    API_KEY_ENV = "OPENAI_API_KEY"
    DEFAULT_URL = "wss://api.openai.com/v1/realtime"
    CAPABILITIES = Capabilities(
        native={"pcm_s16le": (24000,), "pcm_mulaw": (8000,)},
        pcm_rate=24000,
        default_model=DEFAULT_MODEL,
        keepalive_interval=None,
        partials=True,
        diarization=False,
        turn_end=True,
        notes=(
            "words is always null: OpenAI gives no word timings; segment times come from its VAD events "
            "or the audio sent",
            "diarize is not supported (no speaker labels)",
            "punctuate=false has no effect: OpenAI always punctuates",
            f"endpointing sets the server VAD silence, clamped to {MIN_SILENCE_MS}-{MAX_SILENCE_MS} ms; "
            "endpointing=0 turns the VAD off: finals then come only on finalize and close_stream, with "
            "no turn_end",
            "model=gpt-live-transcribe or gpt-realtime-whisper: no server VAD (OpenAI refuses it for "
            "them): finals only on finalize and close_stream, no turn_end, endpointing ignored",
            "with the default gpt-transcribe, partials of a turn arrive only once the turn has ended",
            "language is reduced to its primary subtag (pt-BR -> pt); language=auto lets OpenAI detect it",
        ),
    )

    def __init__(self, params: ListenParams, api_key: str, base_url: str | None = None) -> None:
        super().__init__(params, api_key, base_url)
        self._bytes_per_second = FORMATS[self.plan.encoding][1]
        self._sent = 0.0  # seconds of audio appended
        self._commit_point = 0.0  # where the server's buffer starts (after the last known commit)
        self._commits: deque[tuple[float, float]] = deque()  # our commits not answered yet: spans
        self._speech_start: dict[str, float] = {}  # item_id -> speech_started.audio_start_ms (s)
        self._vad_ended: dict[str, tuple[float | None, float]] = {}  # speech_stopped, not committed yet
        self._items: dict[str, _Item] = {}  # items whose final is not out yet, in commit order
        self._released: set[str] = set()  # items whose final is out: later events about them are stale
        self._last_end = 0.0  # end of the last final (finals never overlap)
        self._turn_open = False  # finals since the last turn_end
        self._partial: str | None = None  # last partial text sent

    # -- request ---------------------------------------------------------------------------------
    def session_update(self) -> dict:
        """The ``session.update`` this adapter sends first (a dict so tests can read it)."""
        return session_update(self.params, self.plan, self.model)

    def connect_request(self) -> UpstreamRequest:
        sep = "&" if "?" in self.base_url else "?"
        return UpstreamRequest(url=self.base_url + sep + "intent=transcription",
                               headers=(("Authorization", f"Bearer {self.api_key}"),))

    # -- from the client ---------------------------------------------------------------------------
    def receive_open(self) -> None:
        if self.state is State.CLOSED:
            return
        # The configuration must precede audio queued while connecting: audio is read in the
        # session's current format.
        self._to_send.insert(0, json.dumps(self.session_update(), separators=(",", ":")))
        if self.state is State.CONNECTING:
            self.state = State.OPEN

    def send_audio(self, data: bytes, now: float) -> None:
        if data and self._accepting():
            self._sent += len(data) / self._bytes_per_second
            self._send(_APPEND_HEAD + base64.b64encode(data).decode("ascii") + '"}')

    def _commit(self) -> None:
        """Commit what is buffered, when anything was sent since the last commit we know of."""
        if self._sent > self._commit_point + 1e-9:
            self._commits.append((self._commit_point, self._sent))
            self._commit_point = self._sent
            self._send(COMMIT)

    def send_finalize(self) -> None:
        if self._accepting():
            self._commit()

    def send_keepalive(self) -> None:
        pass  # OpenAI has no keep-alive message; WebSocket pings suffice

    def send_close(self) -> None:
        if not self._accepting():
            return
        opened = self.state is State.OPEN
        self._commit()
        self.state = State.CLOSING
        if opened:  # before the open, receive_open() still has to send the configuration
            if not self._commits:
                self._drop_uncommitted()
            self._check_done()

    # -- from OpenAI -------------------------------------------------------------------------------
    def _dispatch(self, kind: str, msg: dict) -> None:
        if kind.startswith(PREFIX):
            sub = kind[len(PREFIX):]
            if sub == "delta":
                self._on_delta(msg)
            elif sub == "completed":
                self._on_completed(msg)
            elif sub == "failed":
                self._on_failed(msg)
            elif kind not in CONSUMED_TYPES:
                logger.debug("ignoring OpenAI message of unknown type %r", kind[:80])
        elif kind == "input_audio_buffer.speech_started":
            self._speech_start[_str(msg, "item_id")] = _ms(msg, "audio_start_ms")
        elif kind == "input_audio_buffer.speech_stopped":
            item_id, end = _str(msg, "item_id"), _ms(msg, "audio_end_ms")
            self._vad_ended[item_id] = (self._speech_start.pop(item_id, None), end)
            self._commit_point = max(self._commit_point, end)
        elif kind == "input_audio_buffer.committed":
            self._on_committed(_str(msg, "item_id"))
        elif kind == "error":
            self._on_error(msg)
        elif kind not in CONSUMED_TYPES:
            # A message type OpenAI adds later must not end sessions: note it and carry on.
            logger.debug("ignoring OpenAI message of unknown type %r", kind[:80])

    def _item(self, item_id: str) -> _Item | None:
        """The item, created in commit order on first sight; None once its final was released."""
        item = self._items.get(item_id)
        if item is None:
            if item_id in self._released:
                return None  # a late or repeated event of a finished item
            item = self._items[item_id] = _Item()
        return item

    def _on_committed(self, item_id: str) -> None:
        vad = self._vad_ended.pop(item_id, None)
        if vad is not None:  # the server VAD ended this turn and committed it
            start, end = vad
        else:  # the answer to our oldest commit (or a commit we do not know of: idle timeout)
            start, end = self._commits.popleft() if self._commits else (self._commit_point, self._sent)
            start = max(start, self._speech_start.pop(item_id, start))  # committed during VAD speech
        if vad is None:
            self._fold_uncommitted(item_id)
        item = self._item(item_id)
        if item is None:
            return
        item.committed = True
        if vad is not None:
            item.turn_end = end
        if item.start is None:
            item.start, item.end = start, end
        self._check_done()

    def _fold_uncommitted(self, item_id: str) -> None:
        """Deltas streamed before a client commit (live models) belong to the audio it committed: if
        they named another item than the committed one, that item is the committed one."""
        stray = [i for i, it in self._items.items() if i != item_id and not it.committed and not it.resolved]
        if not stray:
            return
        text = "".join(self._items.pop(i).text for i in stray)
        self._released.update(stray)
        item = self._item(item_id)
        if item is not None:
            item.text = text + item.text

    def _on_delta(self, msg: dict) -> None:
        item_id, delta = _str(msg, "item_id"), msg.get("delta")
        if delta is not None and not isinstance(delta, str):
            raise _Malformed("delta is not a string")
        if not delta:
            return
        item = self._item(item_id)
        if item is not None and not item.resolved:
            item.text += delta
            self._send_partial()

    def _on_completed(self, msg: dict) -> None:
        item_id, transcript = _str(msg, "item_id"), _str(msg, "transcript")
        item = self._item(item_id)
        if item is not None and not item.resolved:
            item.final, item.resolved = transcript, True
            self._release()

    def _on_failed(self, msg: dict) -> None:
        item_id = _str(msg, "item_id")
        err = msg.get("error") if isinstance(msg.get("error"), dict) else {}
        logger.warning("OpenAI could not transcribe item %s (%s: %s); its words are lost", item_id[:64],
                       str(err.get("code"))[:64], str(err.get("message"))[:200])
        item = self._item(item_id)
        if item is not None and not item.resolved:
            item.final, item.resolved = None, True
            self._release()

    def _on_error(self, msg: dict) -> None:
        fatal, error = error_from_event(msg)
        if fatal:
            self._fail(error)
            return
        logger.debug("OpenAI: %s", error.provider_message)
        if error.provider_code == COMMIT_EMPTY and self._commits:
            self._commits.popleft()  # that commit made no item
            if self.state is State.CLOSING:
                self._drop_uncommitted()
        self._check_done()

    def _drop_uncommitted(self) -> None:
        """At the end, nothing will commit what was streamed but not committed: stop waiting for it."""
        for i in [i for i, it in self._items.items() if not it.committed and not it.resolved]:
            del self._items[i]
            self._released.add(i)
        self._release()

    # -- unified events ----------------------------------------------------------------------------
    def _release(self) -> None:
        """Emit the finals of resolved items at the head of the commit order, each once."""
        released = False
        while self._items:
            item_id, item = next(iter(self._items.items()))
            if not item.resolved:
                break
            del self._items[item_id]
            self._released.add(item_id)
            released = True
            text = (item.final or "").strip()
            start = max(self._last_end, item.start if item.start is not None else self._last_end)
            end = max(start, item.end if item.end is not None else self._sent)
            if text:
                self._out(Transcript(self.name, text, start, end, is_partial=False, words=None))
                self._turn_open = True
                self._last_end = end
            if item.turn_end is not None and self._turn_open:
                self._out(TurnEnd(self.name, max(item.turn_end, self._last_end)))
                self._turn_open = False
        if released:
            self._partial = None
            self._send_partial()
        self._check_done()

    def _send_partial(self) -> None:
        if not self.params.partial_results:
            return
        text = " ".join(t for t in (i.text.strip() for i in self._items.values()) if t)
        if not text or text == self._partial:
            return
        self._partial = text
        first = next(iter(self._items.values()))
        start = max(self._last_end, first.start if first.start is not None else self._last_end)
        self._out(Transcript(self.name, text, start, max(start, self._sent), is_partial=True, words=None))

    def _out(self, event: Transcript | TurnEnd) -> None:
        if self.params.parse_json:  # raw mode: the frames went out as they came
            self._emit(event)

    def _check_done(self) -> None:
        if self.state is State.CLOSING and not self._commits and not self._items and not self._vad_ended:
            self._finish()

    def receive_close(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.CLOSING and code in (1000, 1005):
            self._finish()
            return
        self._fail(close_error(code, reason))
