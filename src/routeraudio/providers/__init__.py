"""Provider adapters: pure state machines, one module per provider, registered in ``ADAPTERS``."""

from __future__ import annotations

from .base import Adapter, AudioPlan, Capabilities, UpstreamRequest, plan_audio

ADAPTERS: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    ADAPTERS[cls.name] = cls
    return cls


def adapter_class(provider: str) -> type[Adapter]:
    if not ADAPTERS:
        _load_all()
    return ADAPTERS[provider]


def _load_all() -> None:
    import importlib

    from ..config import PROVIDERS

    for name in PROVIDERS:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


__all__ = ["ADAPTERS", "Adapter", "AudioPlan", "Capabilities", "UpstreamRequest", "adapter_class",
           "plan_audio", "register"]
