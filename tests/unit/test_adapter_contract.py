"""The adapter contract, run over every registered provider adapter (STYLE.md "The adapter contract").

Each adapter declares its capabilities as data, builds its upstream request offline for every input
format, reaches CLOSED/done after ``send_close`` and the provider's end of stream (or a close), and
records an error instead of raising on garbage from the provider.
"""

from __future__ import annotations

import itertools
from urllib.parse import urlsplit

import pytest

from routeraudio.config import CONTAINER_ENCODINGS, ENCODINGS, PROVIDERS, SAMPLE_RATES, ListenParams
from routeraudio.errors import ProviderError, UpstreamProtocolError
from routeraudio.events import Raw, Transcript, TurnEnd
from routeraudio.providers import ADAPTERS, _load_all
from routeraudio.providers.base import Adapter, AudioPlan, Capabilities, State, UpstreamRequest

_load_all()
NAMES = sorted(ADAPTERS)
KEY = "contract-test-key-0123"

#: The provider's own last message after its close request, when it has one (else the close ends it).
def _end_of_stream(name: str) -> list[str | bytes]:
    """The frames that complete a session after send_close(), as the provider's simulator sends them."""
    import importlib

    return list(importlib.import_module(f"routeraudio.testing.{name}").END_OF_STREAM_FRAMES)


END_OF_STREAM = {name: _end_of_stream(name) for name in NAMES}

GARBAGE = ["this is not json", "{", "[1, 2, 3]", "null", "\x00\xff"]


def make(name: str, **query) -> Adapter:
    q = {"provider": name, "encoding": "pcm_s16le", "sample_rate": "16000"}
    q.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()})
    return ADAPTERS[name](ListenParams.from_query(q), KEY, None)


def test_at_least_one_adapter_is_registered():
    assert "deepgram" in ADAPTERS
    assert set(ADAPTERS) <= set(PROVIDERS)


@pytest.mark.parametrize("name", NAMES)
def test_declares_capabilities(name):
    cls = ADAPTERS[name]
    assert cls.name == name
    caps = cls.CAPABILITIES
    assert isinstance(caps, Capabilities)
    assert caps.native and set(caps.native) <= set(ENCODINGS)
    for rates in caps.native.values():
        assert rates is None or (rates and set(rates) <= set(SAMPLE_RATES))
    assert "pcm_s16le" in caps.native, "conversion targets pcm_s16le: the provider must take it"
    assert caps.pcm_rate in SAMPLE_RATES
    assert caps.default_model
    assert caps.keepalive_interval is None or caps.keepalive_interval > 0
    assert isinstance(cls.API_KEY_ENV, str) and cls.API_KEY_ENV.endswith("_KEY")
    assert urlsplit(cls.DEFAULT_URL).scheme in ("ws", "wss")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_builds_request_offline_for_every_input(name, encoding):
    for rate, channels in itertools.product(SAMPLE_RATES, (1, 2)):
        a = make(name, encoding=encoding, sample_rate=rate, channels=channels)
        plan = a.plan
        assert isinstance(plan, AudioPlan)
        native = a.CAPABILITIES.native
        if plan.convert:
            assert plan.encoding == "pcm_s16le"
        else:
            assert plan.encoding == encoding and encoding in native
            assert channels == 1 or encoding in CONTAINER_ENCODINGS
        req = a.connect_request()
        assert isinstance(req, UpstreamRequest)
        assert urlsplit(req.url).scheme in ("ws", "wss")
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in req.headers)
        assert all("\n" not in k + v and "\r" not in k + v for k, v in req.headers)
        carried = req.url + " ".join(v for _, v in req.headers) + " ".join(req.subprotocols)
        assert KEY in carried, "the provider key must reach the provider"
        assert a.state is State.CONNECTING and a.events_received() == []


@pytest.mark.parametrize("name", NAMES)
def test_request_respects_base_url(name):
    cls = ADAPTERS[name]
    p = ListenParams.from_query({"provider": name, "encoding": "pcm_s16le", "sample_rate": "16000"})
    req = cls(p, KEY, "ws://127.0.0.1:4567/some/path").connect_request()
    parts = urlsplit(req.url)
    assert (parts.scheme, parts.netloc, parts.path) == ("ws", "127.0.0.1:4567", "/some/path")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ending", ["end_of_stream", "close_1000"])
def test_reaches_closed_after_send_close(name, ending):
    a = make(name)
    a.receive_open()
    a.data_to_send()
    assert a.state is State.OPEN
    a.send_audio(b"\x00\x00" * 160, 0.0)
    a.send_audio(b"", 0.0)
    assert all(len(f) for f in a.data_to_send()), "never an empty frame upstream"
    a.send_close()
    assert a.state in (State.CLOSING, State.CLOSED) and a.error is None
    if ending == "end_of_stream" and name in END_OF_STREAM:
        for frame in END_OF_STREAM[name]:
            a.receive_frame(frame)
    else:
        a.receive_close(1000, "")
    assert a.state is State.CLOSED and a.done and a.error is None
    a.receive_close(1000, "")  # the socket closing after the end marker changes nothing
    assert a.error is None


@pytest.mark.parametrize("name", NAMES)
def test_unexpected_close_is_a_provider_error(name):
    a = make(name)
    a.receive_open()
    a.receive_close(1011, "boom")
    assert a.state is State.CLOSED and a.done
    assert isinstance(a.error, ProviderError)
    assert a.error.provider_message == "boom"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("garbage", GARBAGE)
@pytest.mark.parametrize("parse_json", [True, False])
def test_survives_garbage(name, garbage, parse_json):
    a = make(name, parse_json=parse_json, partial_results=True)
    a.receive_open()
    a.receive_frame(garbage)  # must not raise
    assert isinstance(a.error, UpstreamProtocolError)
    assert a.state is State.CLOSED and a.done
    events = a.events_received()
    assert all(isinstance(e, Raw) for e in events)
    a.receive_frame(garbage)
    a.receive_close(1006, "")
    assert isinstance(a.error, UpstreamProtocolError), "the first error is the one reported"


@pytest.mark.parametrize("name", NAMES)
def test_events_are_unified_values(name):
    a = make(name)
    a.receive_open()
    a.receive_frame('{"type": "definitely-not-a-real-message"}')
    for e in a.events_received():
        assert isinstance(e, (Transcript, TurnEnd, Raw))
        if not isinstance(e, Raw):
            assert e.provider == name


def test_registry_loads_every_provider_after_a_partial_import():
    """Importing one adapter module registers only that one; the registry must still find the rest."""
    import subprocess
    import sys

    code = ("import routeraudio.providers.deepgram\n"
            "from routeraudio.providers import adapter_class\n"
            "from routeraudio.config import PROVIDERS\n"
            "print(sorted(adapter_class(p).name for p in PROVIDERS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted(PROVIDERS))
