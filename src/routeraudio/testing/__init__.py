"""Provider simulators that speak each real protocol on loopback, for tests, demos and users' own CI.

One simulator per provider; every simulator shares ``base.SimulatorServer`` (handshake hook,
connection records, scripted words, failure injection). ``SIMULATORS`` maps a provider name to its
class path; ``simulator_class(name)`` imports it on demand. ``routeraudio simulate <provider>`` runs one.
"""

from __future__ import annotations

import importlib

from .base import ConnectionRecord, Faults, Script, ScriptWord, SimulatorServer

# Every simulator takes (api_key=, script=, faults=, host=, port=) and has ``listen_url``; its module
# also exports END_OF_STREAM_FRAMES: what the provider sends, after the adapter's send_close(), that
# completes a session (the adapter contract test replays it).
SIMULATORS: dict[str, str] = {
    "deepgram": "routeraudio.testing.deepgram:DeepgramSimulator",
    "assemblyai": "routeraudio.testing.assemblyai:AssemblyAISimulator",
    "elevenlabs": "routeraudio.testing.elevenlabs:ElevenLabsSimulator",
    "openai": "routeraudio.testing.openai:OpenAISimulator",
    "speechmatics": "routeraudio.testing.speechmatics:SpeechmaticsSimulator",
    "soniox": "routeraudio.testing.soniox:SonioxSimulator",
    "gradium": "routeraudio.testing.gradium:GradiumSimulator",
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
