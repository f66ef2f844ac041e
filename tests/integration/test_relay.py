"""The relay fast path: raw PCM forwarded unchanged goes client -> provider re-masked in C, without a
Python call per frame. It must be indistinguishable from the per-frame path: the same bytes in the
same order, interleaved with control messages exactly where the client put them, paced the same,
and counted by the adapters that count chunks (Speechmatics' EndOfStream.last_seq_no)."""

from __future__ import annotations

import json
import os

import pytest

import routeraudio.server.app as app_mod
from routeraudio.testing.base import Script
from routeraudio.testing.deepgram import DeepgramSimulator
from routeraudio.testing.speechmatics import SpeechmaticsSimulator

from .harness import PROVIDER_KEY, listen_url, router, run, session

HDR = {"x-api-key": PROVIDER_KEY}
SCRIPT = Script.from_text("one two three. four five six.", start=0.1, word_s=0.2, gap_s=0.05, pause_s=0.6)


class Recording(DeepgramSimulator):
    """A Deepgram simulator that also keeps every frame's content, in arrival order."""

    def __init__(self, **kw) -> None:
        super().__init__(api_key=PROVIDER_KEY, script=SCRIPT, **kw)
        self.frames: list[str | bytes] = []

    async def receive(self, ws, record, timeout=None):
        frame = await super().receive(ws, record, timeout)
        if frame is not None:
            self.frames.append(frame)
        return frame


@pytest.fixture
def relay_calls(monkeypatch):
    """Count the frames that went through the relay (and were not left to the per-frame path)."""
    calls = {"frames": 0, "bytes": 0}
    real = app_mod.relay_binary_frames

    def counting(data, limit, budget):
        out = real(data, limit, budget)
        calls["frames"] += out[1]
        calls["bytes"] += out[2]
        return out

    monkeypatch.setattr(app_mod, "relay_binary_frames", counting)
    return calls


def test_relayed_audio_arrives_unchanged_and_in_order_with_controls(relay_calls, tmp_path):
    frames = [os.urandom(160) for _ in range(150)]  # 3 s of 8 kHz mu-law, every byte value
    finalize = json.dumps({"type": "finalize"})
    controls = {50: finalize, 100: finalize}

    async def main():
        async with Recording() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            out = await session(listen_url(r, provider="deepgram", encoding="pcm_mulaw", sample_rate=8000),
                                frames, headers=HDR, controls=controls, pace=0.002)
            return out, s.frames

    out, got = run("uvloop", main)
    assert out.code == 1000, out.messages
    audio = [f for f in got if isinstance(f, bytes)]
    assert b"".join(audio) == b"".join(frames)
    # each Finalize reached the provider after exactly the audio the client sent before it
    texts = [(i, f) for i, f in enumerate(got) if isinstance(f, str)]
    finalizes = [i for i, f in texts if json.loads(f).get("type") == "Finalize"]
    assert len(finalizes) == 2
    for at, n_before in zip(finalizes, (50, 100)):
        assert sum(len(f) for f in got[:at] if isinstance(f, bytes)) == 160 * n_before
    # and the relay carried (almost) all of it: only frames before the upstream opened took on_audio
    assert relay_calls["frames"] >= 100 and relay_calls["bytes"] == 160 * relay_calls["frames"]


def test_relay_counts_speechmatics_chunks(relay_calls, tmp_path):
    frames = [os.urandom(640) for _ in range(100)]  # 2 s of 16 kHz s16le
    sim = SpeechmaticsSimulator(api_key=PROVIDER_KEY, script=SCRIPT)

    async def main():
        async with sim, router(tmp_path, {"speechmatics": sim.listen_url}) as r:
            out = await session(listen_url(r, provider="speechmatics", encoding="pcm_s16le", sample_rate=16000),
                                frames, headers=HDR, pace=0.002)
            return out, sim.connections[0]

    out, rec = run("uvloop", main)
    # the simulator refuses an EndOfStream whose last_seq_no is not the number of chunks it got
    assert out.code == 1000, out.messages
    assert rec.audio_bytes == 640 * 100
    assert relay_calls["frames"] >= 50


def test_converted_audio_never_takes_the_relay(relay_calls, tmp_path):
    frames = [os.urandom(320) for _ in range(50)]  # 8 kHz mu-law that Speechmatics gets as s16le

    async def main():
        async with SpeechmaticsSimulator(api_key=PROVIDER_KEY, script=SCRIPT) as sim, router(
                tmp_path, {"speechmatics": sim.listen_url}) as r:
            out = await session(listen_url(r, provider="speechmatics", encoding="pcm_s16le", sample_rate=8000,
                                           channels=2), frames, headers=HDR)
            return out, sim.connections[0]

    out, rec = run("uvloop", main)
    assert out.code == 1000, out.messages
    assert rec.audio_bytes == 50 * 320 // 2  # downmixed to mono: converted, so not relayed
    assert relay_calls["frames"] == 0


def test_relay_respects_the_pace_lead(relay_calls, tmp_path):
    second = os.urandom(16000)  # 1 s of 8 kHz mu-law per frame

    async def main():
        async with Recording() as s, router(tmp_path, {"deepgram": s.listen_url}, pace_lead_seconds=1.0) as r:
            out = await session(listen_url(r, provider="deepgram", encoding="pcm_mulaw", sample_rate=8000),
                                [second] * 4, headers=HDR, pace=0.0)
            rec = s.connections[0]
            return out, rec, s.frames

    out, rec, got = run("uvloop", main)
    assert out.code == 1000, out.messages
    assert b"".join(f for f in got if isinstance(f, bytes)) == second * 4
    # 4 s sent at once with a 1 s lead: the provider gets the last of it >= ~2 s after the first
    assert rec.last_audio_at - rec.first_audio_at >= 1.5


def test_audio_after_close_stream_is_refused_on_the_relay_path_too(relay_calls, tmp_path):
    frames = [os.urandom(160) for _ in range(50)]
    close = json.dumps({"type": "close_stream"})

    async def late_audio(ws):
        await ws.send(close)
        await ws.send(os.urandom(160))  # in the same TCP stream, right behind the close_stream

    async def main():
        async with Recording() as s, router(tmp_path, {"deepgram": s.listen_url}) as r:
            out = await session(listen_url(r, provider="deepgram", encoding="pcm_mulaw", sample_rate=8000),
                                frames, headers=HDR, pace=0.002, close=None, after_send=late_audio)
            return out, s.frames

    out, got = run("uvloop", main)
    assert relay_calls["frames"] >= 20  # the stream was on the relay path before close_stream
    assert out.code == 4000 and "after close_stream" in out.errors[0]["error"]
    assert b"".join(f for f in got if isinstance(f, bytes)) == b"".join(frames)  # not the late frame
