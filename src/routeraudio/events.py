"""Unified events and their JSON: the only place a client-facing message is built.

Adapters produce these values; the server serialises them with ``to_json``. Times are float seconds
of audio from the start of the client's stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_time: float
    end_time: float
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    """A recognised segment. Finals never overlap and are delivered once; partials replace each other."""

    provider: str
    transcript: str
    start_time: float
    end_time: float
    is_partial: bool = False
    words: tuple[Word, ...] | None = None


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """The speaker's turn ended (provider end-of-turn, utterance end, or a synthesised one)."""

    provider: str
    end_time: float | None = None


@dataclass(frozen=True, slots=True)
class Raw:
    """A provider frame forwarded unmodified (``parse_json=false``)."""

    data: str | bytes


Event = Union[Transcript, TurnEnd, Raw]


def _round(t: float) -> float:
    return round(t, 3)


def to_json(event: Transcript | TurnEnd, *, partials_enabled: bool) -> str:
    """Serialise a unified event. ``is_partial`` is present only when the client asked for partials."""
    if isinstance(event, Transcript):
        msg: dict = {
            "type": "transcript",
            "provider": event.provider,
            "transcript": event.transcript,
            "start_time": _round(event.start_time),
            "end_time": _round(event.end_time),
        }
        if partials_enabled:
            msg["is_partial"] = event.is_partial
        msg["words"] = None if event.words is None else [
            {"text": w.text, "start_time": _round(w.start_time), "end_time": _round(w.end_time),
             "speaker": w.speaker}
            for w in event.words
        ]
        return json.dumps(msg, ensure_ascii=False, separators=(",", ":"))
    if isinstance(event, TurnEnd):
        msg = {"type": "turn_end", "provider": event.provider}
        if event.end_time is not None:
            msg["end_time"] = _round(event.end_time)
        return json.dumps(msg, separators=(",", ":"))
    raise TypeError(f"not a unified event: {event!r}")


def error_json(message: str, code: int, *, provider: str | None = None,
               provider_code: int | str | None = None, provider_message: str | None = None,
               **extra: object) -> str:
    """The error frame sent before a non-1000 close: ``{"type":"error","error":...,"code":...}``."""
    msg: dict = {"type": "error", "error": message, "code": code}
    if provider is not None:
        msg["provider"] = provider
    if provider_code is not None:
        msg["provider_code"] = provider_code
    if provider_message is not None:
        msg["provider_message"] = provider_message
    msg.update(extra)
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"))
