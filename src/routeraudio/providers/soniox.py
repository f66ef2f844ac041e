"""Soniox real-time speech-to-text (WebSocket API, ``stt-rt-v5``) as a sans-I/O adapter.

Docs: https://soniox.com/docs/stt/api-reference/websocket-api (start request, audio, ending the stream),
https://soniox.com/docs/stt/rt/real-time-transcription (final vs non-final tokens),
https://soniox.com/docs/stt/rt/endpoint-detection (``<end>``),
https://soniox.com/docs/stt/real-time-API/manual-finalization (``<fin>``),
https://soniox.com/docs/stt/rt/connection-keepalive, https://soniox.com/docs/stt/rt/error-handling,
https://soniox.com/docs/guides/websocket-authentication and .../migrate-websocket-authentication.
Message shapes as in the ``soniox`` SDK 2.10.0 (``soniox.types.realtime.RealtimeSTTConfig`` and
``RealtimeEvent``, ``soniox.types.common.Token``, ``soniox.realtime.async_stt``), checked 2026-11.

Theory of operation. Nothing goes in the URL: the key travels in ``Authorization: Bearer`` on the
upgrade and the session is configured by the first message, a JSON start request queued by
``receive_open()``. Audio follows as binary frames: PCM as ``pcm_s16le``/``mulaw`` with its rate and
channel count, containers (Ogg/Opus, WebM, MP3) as they are with ``audio_format: "auto"``. Soniox
answers with responses carrying ``tokens`` (word pieces with their own leading space): each response
holds the tokens that just became final, sent once and never again, followed by every current
non-final token, re-sent (possibly changed) in each response until it is final. The adapter keeps the
final tokens of the current segment in ``_pending`` and the latest non-final tokens in ``_live``:

- a segment ends at ``<end>`` (endpoint detection: the final, then a ``turn_end``), at ``<fin>`` (the
  answer to ``{"type":"finalize"}``) and at the end of the stream; its final tokens become one final
  ``transcript``. With endpoint detection off (``endpointing=0``) there are no utterances, so finals
  go out per response, cut at word boundaries;
- a partial is ``_pending`` + ``_live`` (the whole utterance so far), replaced on every change;
- end of audio is an empty frame; Soniox finalises everything, sends a last response with
  ``finished: true`` and closes: ``done`` at that response;
- on an error response or an unexpected close, final tokens not yet delivered go out first (they are
  Soniox's last word on their audio), then the error; non-final ones are dropped.

Quirks (from the docs and SDK above, as of 2026-11):
- the key goes in the header only: sending it also as ``api_key`` in the start request is rejected,
  and from 2027-01-15 a connection that sends it only there is refused (``soniox.realtime._utils``);
- non-final tokens come whatever the client wants (the SDK's config has no switch; the older
  ``enable_non_final_tokens`` field is gone), so ``partial_results=false`` drops them here;
- ``<end>``/``<fin>`` are final tokens, never text; ``<end>`` comes only with
  ``enable_endpoint_detection``; ``max_endpoint_delay_ms`` must be 500-3000 (SDK ``Field(ge=500,
  le=3000)``): ``endpointing`` is clamped into that range, and it is a maximum delay, not a silence
  length: Soniox's model may end the utterance sooner;
- ``language_hints`` takes ISO 639-1 codes of exactly two letters (SDK ``LanguageCode``): ``pt-BR``
  becomes ``pt``; other codes send no hint (Soniox then detects the language);
- the end of audio is an empty frame, not JSON: the SDK sends an empty text frame, the docs ask for
  "an empty WebSocket frame" (binary or text); the adapter sends an empty binary frame at the end
  and drops empty audio chunks, which would end the stream early;
- keep-alive ``{"type":"keepalive"}`` at least every 20 s without audio; the SDK sends one every 5 s while paused;
- errors are a response with ``error_code``/``error_type``/``error_message`` (plus ``request_id``,
  ``more_info``), then Soniox closes; 503 "Cannot continue request" means start a new session;
- punctuation and casing cannot be turned off; speakers are strings ("1", "2", ...);
- words are rebuilt from tokens by their leading space: in scripts written without spaces (Chinese,
  Japanese) a "word" is a run of tokens.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from ..config import ListenParams
from ..errors import ProviderError
from ..events import Raw, Transcript, TurnEnd, Word
from . import register
from .base import Adapter, MalformedMessage as _Malformed, Capabilities, State, UpstreamRequest

logger = logging.getLogger("routeraudio.providers.soniox")

# -- wire constants -------------------------------------------------------------------------------
#: routeraudio encodings sent raw, by Soniox's name; containers go up as "auto" (sniffed by Soniox)
RAW_FORMATS = {"pcm_s16le": "pcm_s16le", "pcm_mulaw": "mulaw"}
CONTAINER_FORMAT = "auto"
MIN_ENDPOINT_DELAY_MS, MAX_ENDPOINT_DELAY_MS = 500, 3000
KEEPALIVE = '{"type":"keepalive"}'
FINALIZE = '{"type":"finalize"}'
END_OF_AUDIO = b""
END_TOKEN = "<end>"
FIN_TOKEN = "<fin>"

#: What the user can do about each error code Soniox documents.
ERROR_HINTS = {
    400: "Soniox refused the request: check model, language and audio settings",
    401: "Soniox rejected the API key",
    402: "Soniox refused the session: check the account's billing",
    408: "Soniox timed out waiting for audio: stream in real time and send keep_alive during silence",
    429: "Soniox refused the session: too many requests or concurrent streams",
    500: "Soniox failed while transcribing; retry the session",
    503: "Soniox ended the session early; start a new session to continue",
}


# -- pure translation -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Token:
    """One Soniox token, times in seconds (None when Soniox gave none)."""

    text: str
    start: float | None
    end: float | None
    is_final: bool
    speaker: str | None = None


def _ms(value: object, what: str) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float):  # bool is an int subclass and never a time
        raise _Malformed(f"{what} is not a number")
    return value / 1000.0


def parse_tokens(msg: dict) -> list[Token]:
    """The tokens of one response, validated; raises ``_Malformed``."""
    raw = msg.get("tokens", [])
    if not isinstance(raw, list):
        raise _Malformed("tokens is not a list")
    out = []
    for t in raw:
        if not isinstance(t, dict) or not isinstance(t.get("text"), str):
            raise _Malformed("a token has no text")
        final = t.get("is_final")
        if final is not None and type(final) is not bool:
            raise _Malformed("is_final is not a boolean")
        speaker = t.get("speaker")
        speaker = str(speaker) if isinstance(speaker, str) or type(speaker) is int else None
        out.append(Token(t["text"], _ms(t.get("start_ms"), "start_ms"), _ms(t.get("end_ms"), "end_ms"),
                         final is True, speaker))
    return out


def words_from_tokens(tokens: list[Token], diarize: bool) -> tuple[Word, ...] | None:
    """Join word pieces into words: a token starting with whitespace starts a new word, the others
    (sub-word pieces, punctuation) extend the current one. None when a word has no times."""
    groups: list[list[Token]] = []
    for t in tokens:
        if not groups or t.text[:1].isspace():
            groups.append([t])
        else:
            groups[-1].append(t)
    words = []
    for g in groups:
        text = "".join(t.text for t in g).strip()
        if not text:
            continue
        starts = [t.start for t in g if t.start is not None]
        ends = [t.end for t in g if t.end is not None]
        if not starts or not ends:
            return None
        words.append(Word(text, min(starts), max(ends), g[0].speaker if diarize else None))
    return tuple(words)


def transcript_from_tokens(tokens: list[Token], provider: str, *, is_partial: bool, diarize: bool,
                           fallback_time: float = 0.0) -> Transcript | None:
    """One unified transcript for a run of (non-marker) tokens; None when they hold no text."""
    text = "".join(t.text for t in tokens).strip()
    if not text:
        return None
    words = words_from_tokens(tokens, diarize)
    starts = [t.start for t in tokens if t.start is not None]
    ends = [t.end for t in tokens if t.end is not None]
    start = min(starts) if starts else fallback_time
    end = max(ends) if ends else start
    return Transcript(provider, text, start, max(start, end), is_partial=is_partial, words=words)


def complete_prefix(pending: list[Token], following: Token | None) -> int:
    """How many of ``pending`` form whole words, given the token that follows them (None: nothing
    is in flight, so the last word is complete too)."""
    if following is None or following.text[:1].isspace() or not pending:
        return len(pending)
    for i in range(len(pending) - 1, -1, -1):  # the last word continues: keep it back
        if pending[i].text[:1].isspace():
            return i
    return 0


def language_hint(language: str) -> str | None:
    """Soniox's two-letter hint for a language tag (``pt-BR`` -> ``pt``), or None."""
    primary = language.replace("_", "-").split("-")[0].lower()
    return primary if len(primary) == 2 and primary.isascii() and primary.isalpha() else None


def error_from_response(msg: dict) -> ProviderError:
    """The error for a Soniox error response: its code, type and message, with what to do about it."""
    code, kind, text = msg.get("error_code"), msg.get("error_type"), msg.get("error_message")
    if not isinstance(code, (int, str)) or type(code) is bool:
        code = None
    kind = kind if isinstance(kind, str) else None
    text = text if isinstance(text, str) else None
    hint = ERROR_HINTS.get(code) if type(code) is int else None
    detail = ", ".join(str(x) for x in (code, kind) if x is not None)
    message = f"{hint or 'Soniox reported an error'}: {text or 'no message'}" + (f" ({detail})" if detail else "")
    return ProviderError(message, provider_code=code if code is not None else kind, provider_message=text)


# -- the adapter ----------------------------------------------------------------------------------
@register
class SonioxAdapter(Adapter):
    name = "soniox"
    RELAYS_AUDIO = True  # send_audio: one binary frame per chunk, unchanged
    API_KEY_ENV = "SONIOX_API_KEY"
    DEFAULT_URL = "wss://stt-rt.soniox.com/transcribe-websocket"
    CAPABILITIES = Capabilities(
        native={"pcm_s16le": None, "pcm_mulaw": None, "ogg_opus": None, "webm": None, "mp3": None},
        pcm_rate=16000,
        default_model="stt-rt-v5",
        keepalive_interval=5.0,
        partials=True,
        diarization=True,
        turn_end=True,
        notes=(
            "punctuate=false is not honoured: Soniox always returns punctuated, cased text",
            "endpointing sets Soniox's max_endpoint_delay_ms, clamped to 500-3000 ms; Soniox's model may "
            "end a turn sooner than that",
            "endpointing=0 turns endpoint detection off: no turn_end, and finals arrive as Soniox "
            "confirms words instead of once per utterance",
            "language is a hint, not a restriction: its two-letter code is sent (pt-BR -> pt); a code "
            "that is not two letters sends no hint and Soniox detects the language",
            "speaker labels are Soniox's own (\"1\", \"2\", ...)",
        ),
    )

    def __init__(self, params: ListenParams, api_key: str, base_url: str | None = None) -> None:
        super().__init__(params, api_key, base_url)
        self._pending: list[Token] = []  # final tokens of the segment not yet delivered
        self._live: list[Token] = []  # the latest non-final tokens
        self._partial_text: str | None = None  # last partial sent, to drop verbatim repeats
        self._turn_open = False  # finals since the last turn end
        self._last_end = 0.0  # end of the last final word, for turn_end and token-less times

    # -- request ---------------------------------------------------------------------------------
    @property
    def endpoint_detection(self) -> bool:
        return self.params.endpointing > 0

    def start_request(self) -> dict:
        """The first message: Soniox's start request (a dict so tests can read it)."""
        p, plan = self.params, self.plan
        cfg: dict = {"model": self.model}
        if plan.encoding in RAW_FORMATS:
            cfg["audio_format"] = RAW_FORMATS[plan.encoding]
            cfg["sample_rate"] = plan.sample_rate
            cfg["num_channels"] = 1  # raw audio always goes up mono; containers describe themselves
        else:
            cfg["audio_format"] = CONTAINER_FORMAT
        hint = language_hint(p.language)
        if hint is not None:
            cfg["language_hints"] = [hint]
        cfg["enable_speaker_diarization"] = p.diarize
        cfg["enable_endpoint_detection"] = self.endpoint_detection
        if self.endpoint_detection:
            cfg["max_endpoint_delay_ms"] = min(MAX_ENDPOINT_DELAY_MS, max(MIN_ENDPOINT_DELAY_MS, p.endpointing))
        return cfg

    def connect_request(self) -> UpstreamRequest:
        return UpstreamRequest(url=self.base_url, headers=(("Authorization", f"Bearer {self.api_key}"),))

    # -- from the client ---------------------------------------------------------------------------
    def receive_open(self) -> None:
        # The start request must be the first message, before anything queued while connecting.
        self._to_send.insert(0, json.dumps(self.start_request(), separators=(",", ":")))
        super().receive_open()

    def send_audio(self, data: bytes, now: float) -> None:
        if data and self._accepting():  # an empty frame would end Soniox's stream
            self._send(bytes(data))

    def send_finalize(self) -> None:
        if self._accepting():
            self._send(FINALIZE)

    def send_keepalive(self) -> None:
        if self._accepting():
            self._send(KEEPALIVE)

    def send_close(self) -> None:
        if self._accepting():
            self._send(END_OF_AUDIO)
            self.state = State.CLOSING

    # -- from Soniox -------------------------------------------------------------------------------
    def receive_frame(self, frame: str | bytes) -> None:
        if self.state is State.CLOSED:
            return
        if not self.params.parse_json:
            self._emit(Raw(frame))
        try:
            msg = json.loads(frame)  # the SDK accepts responses in binary frames too
        except (ValueError, RecursionError):  # UnicodeDecodeError included; absurdly deep nesting
            self._protocol_error("a frame that is not JSON", frame)
            return
        if not isinstance(msg, dict):
            self._protocol_error("a frame that is not a JSON object", frame)
            return
        if msg.get("error_code") is not None or msg.get("error_message") is not None:
            self._fail(error_from_response(msg))
            return
        finished = msg.get("finished", False)
        try:
            if type(finished) is not bool:
                raise _Malformed("finished is not a boolean")
            tokens = parse_tokens(msg)
        except _Malformed as exc:
            self._protocol_error(f"a malformed response ({exc})", frame)
            return
        if "tokens" not in msg and not finished:
            keys = [str(k)[:40] for k in list(msg)[:10]]
            logger.debug("ignoring a Soniox message without tokens (keys %s)", keys)
        if self.params.parse_json:
            self._on_tokens(tokens)
        if finished:  # Soniox's last response: everything is final, the socket closes next
            self._flush()
            self._finish()

    def _on_tokens(self, tokens: list[Token]) -> None:
        live = []
        for t in tokens:
            if not t.is_final:
                if t.text not in (END_TOKEN, FIN_TOKEN):  # markers are always final; never shown
                    live.append(t)
            elif t.text == END_TOKEN:
                self._flush()
                if self._turn_open:
                    self._emit(TurnEnd(self.name, self._last_end))
                    self._turn_open = False
            elif t.text == FIN_TOKEN:
                self._flush()
            else:
                self._pending.append(t)
        self._live = live
        if not self.endpoint_detection and self._pending:
            # No utterances without endpoint detection: deliver whole words as Soniox confirms them.
            self._flush(complete_prefix(self._pending, live[0] if live else None))
        if self.params.partial_results:
            self._show_partial()

    def _flush(self, count: int | None = None) -> None:
        """Deliver the first ``count`` pending final tokens (all by default) as one final segment."""
        n = len(self._pending) if count is None else count
        if n <= 0:
            return
        segment, self._pending = self._pending[:n], self._pending[n:]
        t = transcript_from_tokens(segment, self.name, is_partial=False, diarize=self.params.diarize,
                                   fallback_time=self._last_end)
        if t is None:
            return
        self._emit(t)
        self._partial_text = None
        self._turn_open = True
        self._last_end = t.words[-1].end_time if t.words else t.end_time

    def _show_partial(self) -> None:
        t = transcript_from_tokens(self._pending + self._live, self.name, is_partial=True,
                                   diarize=self.params.diarize, fallback_time=self._last_end)
        if t is not None and t.transcript != self._partial_text:
            self._partial_text = t.transcript
            self._emit(t)

    def receive_close(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.CLOSING and code in (1000, 1005):
            self._flush()  # a close without the finished response: what was final still counts
            self._finish()
            return
        self._fail(ProviderError(
            f"Soniox closed the connection unexpectedly (code {code}{': ' + reason if reason else ''})",
            provider_code=code, provider_message=reason or None))

    def _fail(self, error: ProviderError) -> None:
        # Final tokens are Soniox's last word on their audio: deliver them before the error.
        if self.state is not State.CLOSED and self.params.parse_json:
            self._flush()
        super()._fail(error)
