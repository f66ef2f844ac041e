"""Provider simulators that speak each real protocol on loopback, for tests, demos and users' own CI.

``DeepgramSimulator`` is the first; every simulator shares ``base.SimulatorServer`` (handshake hook,
connection records, scripted words, failure injection). ``SIMULATORS`` maps a provider name to its
class path; ``simulator_class(name)`` imports it on demand. ``routeraudio simulate <provider>`` runs one.
"""

from __future__ import annotations

import importlib

from .base import ConnectionRecord, Faults, Script, ScriptWord, SimulatorServer

SIMULATORS: dict[str, str] = {
    "deepgram": "routeraudio.testing.deepgram:DeepgramSimulator",
}


def simulator_class(provider: str) -> type[SimulatorServer]:
    """The simulator class for ``provider``; KeyError names the ones that exist."""
    try:
        module, _, attr = SIMULATORS[provider].partition(":")
    except KeyError:
        raise KeyError(f"no simulator for {provider!r}; available: {', '.join(sorted(SIMULATORS))}") from None
    return getattr(importlib.import_module(module), attr)


__all__ = ["ConnectionRecord", "Faults", "SIMULATORS", "Script", "ScriptWord", "SimulatorServer",
           "simulator_class"]
