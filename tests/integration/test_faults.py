"""Provider faults and client pace: each ends in its documented way within its timeout."""

from __future__ import annotations

import time

import pytest

from routeraudio.testing.base import Faults, Script
from routeraudio.testing.deepgram import DeepgramSimulator

from .harness import PROVIDER_KEY, listen_url, pcm_chunks, router, run, session

PCM = dict(provider="deepgram", encoding="pcm_s16le", sample_rate=16000)
HDR = {"x-api-key": PROVIDER_KEY}


def sim(**kw):
    kw.setdefault("script", Script.from_text("one two three. four five six.", start=0.1, word_s=0.2,
                                             gap_s=0.05, pause_s=0.6))
    return DeepgramSimulator(api_key=PROVIDER_KEY, **kw)


def test_provider_stops_reading_then_stall_deadline(tmp_path):
    second = pcm_chunks(1.0, frame_ms=1000)[0]

    async def main():
        async with sim(faults=Faults(stall_after_finals=0)) as s, router(
                tmp_path, {"deepgram": s.listen_url}, stall_timeout=1.0, pace_lead_seconds=0,
                upstream_ping_interval=0, max_pending_audio_seconds=1000) as r:
            t0 = time.monotonic()
            out = await session(listen_url(r, **PCM), [second] * 400, headers=HDR, close=None)
            return out, time.monotonic() - t0

    out, elapsed = run("uvloop", main)
    assert out.code == 4040, out.messages
    err = out.errors[0]["error"]
    assert "stopped reading" in err and "dropped" in err and " s of audio" in err


def test_provider_stops_answering_pings(tmp_path):
    async def main():
        async with sim(faults=Faults(stall_after_finals=0)) as s, router(
                tmp_path, {"deepgram": s.listen_url}, upstream_ping_interval=0.2, upstream_ping_timeout=0.3) as r:
            return await session(listen_url(r, **PCM), pcm_chunks(0.2), headers=HDR, close=None)

    out = run("uvloop", main)
    assert out.code == 4040 and "pings" in out.errors[0]["error"]


def test_provider_never_completes_handshake(tmp_path):
    async def main():
        async with sim(faults=Faults(hang_handshake=True)) as s, router(
                tmp_path, {"deepgram": s.listen_url}, upstream_connect_timeout=0.5) as r:
            return await session(listen_url(r, **PCM), pcm_chunks(0.2), headers=HDR)

    out = run("uvloop", main)
    assert out.code == 4040 and "handshake" in out.errors[0]["error"]


def test_provider_never_answers_close_stream(tmp_path):
    async def main():
        async with sim(faults=Faults(ignore_close_stream=True)) as s, router(
                tmp_path, {"deepgram": s.listen_url}, finalize_timeout=0.5) as r:
            return await session(listen_url(r, **PCM), pcm_chunks(2.0), headers=HDR)

    out = run("uvloop", main)
    assert out.code == 4040
    assert [w["text"].strip(".").lower() for m in out.finals for w in m["words"]][:3] == ["one", "two", "three"]
    assert "did not finish" in out.errors[0]["error"]


def test_fast_client_is_paced_not_dropped(tmp_path):
    async def main():
        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}, pace_lead_seconds=0.5) as r:
            out = await session(listen_url(r, **PCM), pcm_chunks(2.0), headers=HDR)
            return out, s.connections[0]

    out, rec = run("uvloop", main)
    assert out.code == 1000
    assert rec.audio_bytes == 2 * 16000 * 2  # nothing dropped
    # 2 s of audio sent at full speed with a 0.5 s allowance reach the provider over >= ~1.25 s
    assert rec.last_audio_at - rec.first_audio_at >= 1.0


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_disconnect_closes_provider(how, tmp_path):
    async def main():
        import asyncio

        from websockets.asyncio.client import connect

        async with sim() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            ws = await connect(listen_url(r, **PCM), additional_headers=HDR, proxy=None)
            for chunk in pcm_chunks(0.4):
                await ws.send(chunk)
            while not s.connections or s.connections[0].audio_bytes < 12800:
                await asyncio.sleep(0.01)
            t0 = time.monotonic()
            if how == "close":
                await ws.close()
            else:
                ws.transport.abort()
            rec = s.connections[0]
            await asyncio.wait_for(rec.finished.wait(), 5)
            close_msg_at = next(t for t, text in rec.control if "CloseStream" in text)
            return close_msg_at - t0, rec.closed_at - t0

    to_close_message, to_socket_closed = run("uvloop", main)
    assert to_close_message < 1.0 and to_socket_closed < 5.0
