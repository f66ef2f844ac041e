"""The end-to-end suite, parametrized over all seven providers: one client API, any provider."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from routeraudio.config import PROVIDERS
from routeraudio.providers import adapter_class
from routeraudio.testing import simulator_class
from routeraudio.testing.base import Faults, Script

from .harness import LOOPS, PROVIDER_KEY, listen_url, pcm_chunks, router, run, session
from .test_listen_e2e import _encoded_fixture

TEXT = "Hello there. How are you today? Fine thanks."
WORDS = ["hello", "there", "how", "are", "you", "today", "fine", "thanks"]
HDR = {"x-api-key": PROVIDER_KEY}


def script(**kw) -> Script:
    return Script.from_text(TEXT, start=0.2, word_s=0.25, gap_s=0.05, pause_s=0.8, **kw)


def norm(text: str) -> list[str]:
    return [w for w in re.sub(r"[^\w' ]+", " ", text.lower()).split() if w]


def final_words(out) -> list[str]:
    return [w for m in out.finals for w in norm(m["transcript"])]


async def _with(provider, tmp_path, coro, sim_kw=None, **router_kw):
    sim = simulator_class(provider)(api_key=PROVIDER_KEY, script=(sim_kw or {}).pop("script", script()),
                                    **(sim_kw or {}))
    async with sim as s, router(tmp_path, {provider: s.listen_url}, **router_kw) as r:
        return await coro(r, s)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("encoding,rate", [("pcm_s16le", 16000), ("pcm_mulaw", 8000)])
def test_full_session(provider, encoding, rate, loop, tmp_path):
    if encoding == "pcm_mulaw":
        data = bytes([0x7F, 0xFF, 0x70, 0xF0] * (rate * 6 // 4))  # 6 s; simulators key off audio time
        chunks = [data[i:i + rate // 50] for i in range(0, len(data), rate // 50)]
    else:
        chunks = pcm_chunks(6.0, rate=rate)

    async def go(r, s):
        out = await session(listen_url(r, provider=provider, encoding=encoding, sample_rate=rate), chunks,
                            headers=HDR)
        return out, s.connections

    out, conns = run(loop, _with, provider, tmp_path, go)
    assert out.code == 1000, out.messages[-3:]
    assert not out.errors
    assert final_words(out) == WORDS  # every word, once, in order
    for m in out.finals:
        assert m["provider"] == provider and m["end_time"] >= m["start_time"] >= 0
        assert "is_partial" not in m
    starts = [m["start_time"] for m in out.finals]
    assert starts == sorted(starts)
    if adapter_class(provider).CAPABILITIES.turn_end:
        assert "turn_end" in out.types
    assert len(conns) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_container_input(provider, tmp_path):
    data, seconds = _encoded_fixture("webm")
    chunks = [data[i:i + 2000] for i in range(0, len(data), 2000)]

    async def go(r, s):
        return await session(listen_url(r, provider=provider, encoding="webm", sample_rate=48000), chunks,
                             headers=HDR), s.connections[0]

    out, rec = run("uvloop", _with, provider, tmp_path, go)
    assert out.code == 1000, out.messages[-3:]
    assert final_words(out)[:2] == ["hello", "there"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_partials_and_raw_mode(provider, tmp_path):
    async def go(r, s):
        on = await session(listen_url(r, provider=provider, encoding="pcm_s16le", sample_rate=16000,
                                      partial_results=True), pcm_chunks(6.0), headers=HDR)
        raw = await session(listen_url(r, provider=provider, encoding="pcm_s16le", sample_rate=16000,
                                       parse_json=False), pcm_chunks(3.0), headers=HDR, raw_text=True)
        return on, raw, s.connections

    on, raw, conns = run("uvloop", _with, provider, tmp_path, go)
    assert on.code == raw.code == 1000
    assert final_words(on) == WORDS
    assert all(m["is_partial"] is False for m in on.finals)
    if adapter_class(provider).CAPABILITIES.partials:
        partials = [m for m in on.transcripts if m["is_partial"]]
        assert partials, "partials were asked for"
        assert not any("<end>" in m["transcript"] or "<fin>" in m["transcript"] for m in partials)
    # raw mode: the provider's own text frames, unmodified and in order
    sent_text = [f for f in conns[1].sent if isinstance(f, str)]
    got = [m for m in raw.messages if isinstance(m, str)]
    assert got == sent_text[:len(got)] and len(got) >= len(sent_text) - 1
    for m in got:
        json.loads(m)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_failure_after_finals(provider, tmp_path):
    async def go(r, s):
        return await session(listen_url(r, provider=provider, encoding="pcm_s16le", sample_rate=16000),
                             pcm_chunks(8.0), headers=HDR, pace=0.002)

    faults = Faults(fail_after_finals=1, fail_code=1011, fail_reason="simulated outage")
    out = run("uvloop", _with, provider, tmp_path, go, {"faults": faults})
    assert out.code == 4040, out.messages[-3:]
    assert len(out.finals) >= 1
    assert out.types[-1] == "error" and out.types.count("error") == 1
    assert out.errors[0]["provider"] == provider


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_rejects_credentials(provider, tmp_path):
    async def go(r, s):
        return await session(listen_url(r, provider=provider, encoding="pcm_s16le", sample_rate=16000),
                             pcm_chunks(0.5), headers=HDR)

    out = run("uvloop", _with, provider, tmp_path, go, {"faults": Faults(reject_auth=True)})
    assert out.code == 4040
    assert out.errors[0]["provider"] == provider and out.errors[0]["error"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_client_vanishing_closes_upstream(provider, tmp_path):
    async def go(r, s):
        from websockets.asyncio.client import connect

        ws = await connect(listen_url(r, provider=provider, encoding="pcm_s16le", sample_rate=16000),
                           additional_headers=HDR, proxy=None)
        for chunk in pcm_chunks(0.6):
            await ws.send(chunk)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (s.connections and s.connections[0].audio_bytes):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        ws.transport.abort()
        rec = s.connections[0]
        await asyncio.wait_for(rec.finished.wait(), 5)
        return rec.closed_at - t0, r

    elapsed, r = run("uvloop", _with, provider, tmp_path, go)
    assert elapsed < 1.0
    assert not r.sessions
