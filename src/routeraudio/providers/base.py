"""The adapter contract: every provider is a sans-I/O state machine driven by ``server.session``.

Theory of operation. The driver builds an adapter from validated ``ListenParams``, the provider key
and the upstream base URL, asks it for the ``UpstreamRequest`` (a value: URL, headers, subprotocols),
opens the socket itself, and calls ``receive_open()``. From then on it feeds the adapter what happens:
client audio (``send_audio``), client control (``send_finalize``, ``send_close``), upstream frames
(``receive_frame``), the upstream close (``receive_close``) and timers (``receive_timer`` at
``next_deadline()``). After each call it drains ``data_to_send()`` to the provider and
``events_received()`` to the client. The adapter never raises because of what the provider sent:
it records a ``ProviderError`` in ``error`` and moves to ``CLOSED``; the driver turns that into an
error frame and close code 4040.

States::

    CONNECTING --receive_open--> OPEN --send_close--> CLOSING --(end-of-stream marker | close)--> CLOSED
         \\________________ error / receive_close ____________________________________________/

``done`` becomes true when the adapter has seen everything the provider will send for this session
(its end-of-stream marker, or the close); the driver then closes the socket and the client with 1000.
"""

from __future__ import annotations

import enum
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Mapping

from ..config import CONTAINER_ENCODINGS, ListenParams
from ..errors import ProviderError, UpstreamProtocolError
from ..events import Event, Raw


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class MalformedMessage(ValueError):
    """A provider frame that is JSON but not shaped like the provider's message of its type.

    Raised by an adapter's translation code; ``receive_frame`` records it as an UpstreamProtocolError.
    """


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider accepts, as data (README's provider table is generated from these).

    ``native`` maps a routeraudio encoding to the sample rates the provider takes as-is (``None``: any
    of the spec's rates). Raw PCM is only forwarded natively when mono. Anything else is converted to
    ``pcm_s16le`` mono at the input rate if PCM at that rate is native, else at ``pcm_rate``.
    """

    native: Mapping[str, tuple[int, ...] | None]
    pcm_rate: int = 16000
    default_model: str = ""
    keepalive_interval: float | None = None  # send_keepalive() after this long without audio
    partials: bool = True
    diarization: bool = False
    turn_end: bool = True
    notes: tuple[str, ...] = ()  # README: what happens to options the provider cannot honour


@dataclass(frozen=True, slots=True)
class AudioPlan:
    """What goes upstream: ``encoding``/``sample_rate`` as sent, and whether the audio core converts."""

    encoding: str
    sample_rate: int
    convert: bool


def _accepts(caps: Capabilities, encoding: str, rate: int) -> bool:
    rates = caps.native.get(encoding, ())
    return rates is None or rate in rates


def plan_audio(params: ListenParams, caps: Capabilities) -> AudioPlan:
    """Forward natively where the provider accepts the input, else convert (the spec's rule)."""
    enc, rate = params.encoding, params.sample_rate
    if _accepts(caps, enc, rate) and (params.channels == 1 or enc in CONTAINER_ENCODINGS):
        return AudioPlan(enc, rate, convert=False)
    if enc not in CONTAINER_ENCODINGS and _accepts(caps, "pcm_s16le", rate):
        return AudioPlan("pcm_s16le", rate, convert=True)  # decode / downmix only, no resampling
    return AudioPlan("pcm_s16le", caps.pcm_rate, convert=True)


class Adapter(ABC):
    """Base of all provider adapters. Subclasses set ``name`` and ``CAPABILITIES``."""

    name: ClassVar[str]
    CAPABILITIES: ClassVar[Capabilities]
    #: the field naming a message's kind, for providers that speak JSON text frames
    TYPE_FIELD: ClassVar[str] = "type"
    #: environment variable holding the router's own key for this provider (the SDK's name)
    API_KEY_ENV: ClassVar[str]
    DEFAULT_URL: ClassVar[str]

    def __init__(self, params: ListenParams, api_key: str, base_url: str | None = None) -> None:
        self.params = params
        self.api_key = api_key
        self.base_url = base_url or self.DEFAULT_URL
        self.plan = plan_audio(params, self.CAPABILITIES)
        self.model = params.model or self.CAPABILITIES.default_model
        self.state = State.CONNECTING
        self.error: ProviderError | None = None
        self.done = False
        self._to_send: list[str | bytes] = []
        self._events: list[Event] = []

    # -- what the driver reads ---------------------------------------------------------------
    def data_to_send(self) -> list[str | bytes]:
        out, self._to_send = self._to_send, []
        return out

    def events_received(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        return None

    def receive_timer(self, now: float) -> None:  # noqa: B027 - optional hook
        pass

    # -- what the driver feeds ---------------------------------------------------------------
    @abstractmethod
    def connect_request(self) -> UpstreamRequest: ...

    def receive_open(self) -> None:
        """The upstream socket is open. Frames queued before it (``send_*`` while CONNECTING) go first."""
        if self.state is State.CONNECTING:  # a send_close() before the open keeps CLOSING
            self.state = State.OPEN

    @abstractmethod
    def send_audio(self, data: bytes, now: float) -> None: ...

    @abstractmethod
    def send_finalize(self) -> None: ...

    @abstractmethod
    def send_keepalive(self) -> None: ...

    @abstractmethod
    def send_close(self) -> None:
        """End of audio: finalise upstream; ``done`` turns true after the provider's last word."""

    def receive_frame(self, frame: str | bytes) -> None:
        """A provider frame. The shared intake for providers that send JSON text frames with a
        ``TYPE_FIELD``: raw forwarding, parsing, and malformed frames recorded as protocol errors;
        ``_dispatch(kind, msg)`` does the provider's part. Providers that differ override this."""
        if self.state is State.CLOSED:
            return
        if not isinstance(frame, str):
            self._protocol_error(f"a binary frame ({self.name} sends only JSON text)", frame)
            return
        if not self.params.parse_json:
            self._emit(Raw(frame))
        try:
            msg = json.loads(frame)
        except (ValueError, RecursionError):
            self._protocol_error("a frame that is not JSON", frame)
            return
        kind = self._message_kind(msg) if isinstance(msg, dict) else None
        if not isinstance(kind, str):
            self._protocol_error(f"a frame that is not a JSON object with a string {self.TYPE_FIELD!r}", frame)
            return
        try:
            self._dispatch(kind, msg)
        except MalformedMessage as exc:
            self._protocol_error(f"a malformed {kind} message ({exc})", frame)

    def _message_kind(self, msg: dict) -> object:
        return msg.get(self.TYPE_FIELD)

    def _dispatch(self, kind: str, msg: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _dispatch or receive_frame")

    def receive_close(self, code: int, reason: str) -> None:
        """The upstream socket closed. Expected after our close sequence; an error otherwise."""
        if self.state is State.CLOSED:
            return
        if self.state is not State.CLOSING or code not in (1000, 1005):
            self._fail(ProviderError(
                f"{self.name} closed the connection unexpectedly (code {code}{': ' + reason if reason else ''})",
                provider_code=code, provider_message=reason or None))
            return
        self._finish()

    # -- the server's relay fast path -----------------------------------------------------------
    #: ``send_audio`` sends each chunk unchanged as one binary frame while open, and nothing else:
    #: the server may then relay client frames itself (see ``relay_ready``)
    RELAYS_AUDIO = False

    def relay_ready(self) -> bool:
        """Whether the server may forward client audio itself, each client frame unchanged as one
        binary frame, instead of calling ``send_audio`` (the server's hot path for audio forwarded
        natively): for adapters with ``RELAYS_AUDIO``, while open. An adapter that relays is told
        what went by ``relayed``. Never true with frames queued in ``data_to_send``, so relayed
        audio cannot overtake them."""
        return self.RELAYS_AUDIO and self.state is State.OPEN and not self._to_send

    def relayed(self, frames: int, nbytes: int) -> None:
        """Account for ``frames`` binary frames of ``nbytes`` audio bytes relayed under ``relay_ready``."""

    # -- helpers for subclasses ---------------------------------------------------------------
    def _accepting(self) -> bool:
        """Whether client actions still go upstream: before and while open, not once closing."""
        return self.state in (State.CONNECTING, State.OPEN)

    def _fail(self, error: ProviderError) -> None:
        if self.error is None:
            self.error = error
        self.state = State.CLOSED
        self.done = True

    def _protocol_error(self, what: str, frame: str | bytes) -> None:
        shown = frame[:200] if isinstance(frame, (str, bytes)) else frame
        self._fail(UpstreamProtocolError(f"{self.name} sent {what}: {shown!r}"))

    def _finish(self) -> None:
        self.state = State.CLOSED
        self.done = True

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _send(self, frame: str | bytes) -> None:
        self._to_send.append(frame)
