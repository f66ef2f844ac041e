"""Provider adapters: pure state machines, one module per provider, registered in ``ADAPTERS``."""

from __future__ import annotations

from .base import Adapter, AudioPlan, Capabilities, UpstreamRequest, plan_audio

ADAPTERS: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    ADAPTERS[cls.name] = cls
    return cls


def adapter_class(provider: str) -> type[Adapter]:
    # Load on a miss, not only when empty: importing one adapter module registers just that one.
    cls = ADAPTERS.get(provider)
    if cls is None:
        _load_all()
        cls = ADAPTERS[provider]
    return cls


def _load_all() -> None:
    import importlib

    from ..config import PROVIDERS

    for name in PROVIDERS:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


def _rates(rates) -> str:
    return "any rate" if rates is None else "/".join(f"{r // 1000}k" if r % 1000 == 0 else f"{r / 1000:g}k" for r in rates)


def capability_table() -> str:
    """The README's provider table, generated from every adapter's CAPABILITIES."""
    from ..config import PROVIDERS

    if len(ADAPTERS) < len(PROVIDERS):
        _load_all()
    rows = ["| provider | forwarded unchanged | otherwise converted to | keepalive | partials | turn_end |"
            " diarization | default model |",
            "|---|---|---|---|---|---|---|---|"]
    notes = []
    for name in PROVIDERS:
        caps = ADAPTERS[name].CAPABILITIES
        native = ", ".join(f"`{enc}` ({_rates(rates)})" for enc, rates in caps.native.items())
        keep = f"every {caps.keepalive_interval:g} s of silence" if caps.keepalive_interval else "-"
        yes = lambda b: "yes" if b else "no"  # noqa: E731
        rows.append(f"| {name} | {native} | `pcm_s16le` {caps.pcm_rate // 1000} kHz mono | {keep} | "
                    f"{yes(caps.partials)} | {yes(caps.turn_end)} | {yes(caps.diarization)} | `{caps.default_model}` |")
        notes += [f"- **{name}**: {note}" for note in caps.notes]
    return "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


__all__ = ["ADAPTERS", "capability_table", "Adapter", "AudioPlan", "Capabilities", "UpstreamRequest", "adapter_class",
           "plan_audio", "register"]
