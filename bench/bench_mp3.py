"""Mp3Decoder: microseconds per 20 ms of audio, against PyAV (+ python-soxr HQ) in the same run.

Input: 10 s of speech-like 44.1 kHz mono, 64 kbps CBR (lameenc), fed in chunks of 160 bytes
(20 ms at 64 kbps), as a client streaming live would send it. ``extra_info`` holds ``us_per_20ms``
and ``rtf`` (processing time / audio time) from the median round; a summary with the ratios to the
PyAV baseline and to bare libmpg123 at full rate (the floor of any libmpg123-based decoder) is
printed at the end. The ``-> 16k`` rows compare the two MP3 paths: full-rate decode + the 44.1k ->
16k resampler (two stages), and half-rate decode (``Mp3Decoder(target_rate=16000)``) + the 22.05k ->
16k resampler, which ``AudioPipeline`` uses for streams without a LAME/Info header like this one.
The bare libmpg123 rows run libmpg123 alone in C, in the same 160-byte pieces (compiled on first
use; skipped without a compiler, see ``BareMpg123``). The rows that need
``routeraudio._codec.resample`` are skipped without it.

    PYTHONPATH=src .venv/bin/python -m pytest bench/bench_mp3.py -p no:cacheprovider \
        --benchmark-columns=mean,median
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fixtures_mp3 as F  # noqa: E402
from baseline_mp3 import BareMpg123, BaselineMp3To16k, PyAVMp3Decoder  # noqa: E402
from routeraudio._codec.mp3 import Mp3Decoder  # noqa: E402

RATE = 44100
SECONDS = 10.0
CHUNK = 160
UNITS = SECONDS / 0.020  # 20 ms units of audio per round
RESULTS: dict[str, float] = {}
FLOOR = "libmpg123 bare, full rate"


@pytest.fixture(scope="module")
def mp3():
    enc = F.encode(F.speech_like(RATE, SECONDS, 1), RATE, bitrate=64)
    return [enc.data[i:i + CHUNK] for i in range(0, len(enc.data), CHUNK)]


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if not RESULTS or reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line("MP3 44.1 kHz mono, 64 kbps, 160-byte chunks: median us per 20 ms of audio")
        floor = RESULTS.get(FLOOR)
        for name, us in RESULTS.items():
            base = RESULTS.get("pyav decode + soxr HQ -> 16k" if "16k" in name else "pyav decode")
            per_stream = "thread" not in name and "call" not in name
            ratio = f"  x{us / base:.2f} of pyav" if base and per_stream and "libmpg123" not in name else ""
            ratio += f"  x{us / floor:.2f} of libmpg123" if floor and per_stream and "pyav" not in name else ""
            rtf = f"   rtf {us / 20000:.5f}" if "call" not in name else ""
            reporter.write_line(f"  {name:<46} {us:8.3f} us{rtf}{ratio}")


def _run(benchmark, name, make, chunks, rounds=20):
    def once(target):
        n = 0
        for chunk in chunks:
            n += len(target.feed(chunk))
        return n + len(target.flush())

    produced = benchmark.pedantic(once, setup=lambda: ((make(),), {}), rounds=rounds, iterations=1,
                                  warmup_rounds=2)
    assert produced > 0
    if benchmark.stats is None:  # --benchmark-disable: ran once as a plain test
        return
    us = benchmark.stats.stats.median / UNITS * 1e6
    benchmark.extra_info["us_per_20ms"] = round(us, 3)
    benchmark.extra_info["rtf"] = round(us / 20000, 6)
    RESULTS[name] = us


@pytest.mark.parametrize("down_sample", [0, 1], ids=["full", "half"])
def test_mp3_decode_bare_libmpg123(benchmark, mp3, down_sample):
    """libmpg123 without our framing layer or Python, fed 160 bytes at a time. At half rate
    libmpg123 runs its generic C synthesis (its SIMD synthesis exists only at full rate)."""
    if not BareMpg123.available():
        pytest.skip("cannot compile against libmpg123")
    rate = "full" if down_sample == 0 else "half"
    _run(benchmark, f"libmpg123 bare, {rate} rate", lambda: BareMpg123(down_sample), [b"".join(mp3)])


def test_mp3_decode_routeraudio(benchmark, mp3):
    _run(benchmark, "routeraudio decode", Mp3Decoder, mp3)


def test_mp3_decode_routeraudio_half_rate(benchmark, mp3):
    _run(benchmark, "routeraudio decode, half rate", lambda: Mp3Decoder(16000), mp3)


def test_mp3_decode_routeraudio_one_feed(benchmark, mp3):
    """The whole stream in one feed(): the difference to 160-byte chunks is the per-call cost."""
    _run(benchmark, "routeraudio decode, one feed()", Mp3Decoder, [b"".join(mp3)])


def test_mp3_feed_call_overhead(benchmark):
    dec = Mp3Decoder()
    feed = dec.feed
    empty = b""

    def calls():
        for _ in range(10000):
            feed(empty)

    benchmark.pedantic(calls, rounds=20, iterations=1, warmup_rounds=2)
    if benchmark.stats is None:
        return
    us = benchmark.stats.stats.median / 10000 * 1e6
    benchmark.extra_info["us_per_call"] = round(us, 4)
    RESULTS["feed(b'') call overhead (per call)"] = us


def test_mp3_decode_pyav_baseline(benchmark, mp3):
    _run(benchmark, "pyav decode", PyAVMp3Decoder, mp3)


@pytest.mark.parametrize("half", [False, True], ids=["full-rate", "half-rate"])
def test_mp3_to_16k_routeraudio(benchmark, mp3, half):
    resample = pytest.importorskip("routeraudio._codec.resample")

    class DecodeResample:
        def __init__(self):
            self.dec = Mp3Decoder(16000 if half else 0)
            self.rs = resample.Resampler(RATE // 2 if half else RATE, 16000)

        def feed(self, data):
            return self.rs.feed(self.dec.feed(data))

        def flush(self):
            return self.rs.feed(self.dec.flush()) + self.rs.flush()

    name = "half-rate decode + 22.05k resample -> 16k" if half else "full-rate decode + 44.1k resample -> 16k"
    _run(benchmark, name, DecodeResample, mp3)


def test_mp3_to_16k_pipeline(benchmark, mp3):
    pytest.importorskip("routeraudio._codec.resample")
    from routeraudio.audio import AudioPipeline

    _run(benchmark, "AudioPipeline('mp3') -> 16k", lambda: AudioPipeline("mp3", RATE, 1, 16000), mp3)


def test_mp3_to_16k_baseline(benchmark, mp3):
    _run(benchmark, "pyav decode + soxr HQ -> 16k", BaselineMp3To16k, mp3)


@pytest.mark.parametrize("threads", [1, 2])
def test_mp3_decode_threads(benchmark, mp3, threads):
    """Each thread decodes its own copy of the stream in 160-byte chunks. Decoding runs without the
    GIL; per-call Python work (the loop, the bytes objects) holds it. With two free cores the mean
    stays flat while the work doubles."""

    def decode_all():
        dec = Mp3Decoder()
        for chunk in mp3:
            dec.feed(chunk)
        dec.flush()

    def work():
        ts = [threading.Thread(target=decode_all) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    benchmark.pedantic(work, rounds=20, iterations=1, warmup_rounds=2)
    if benchmark.stats is None:
        return
    us = benchmark.stats.stats.median / (UNITS * threads) * 1e6
    benchmark.extra_info["us_per_20ms_per_stream"] = round(us, 3)
    RESULTS[f"{threads} thread(s), per stream (wall)"] = us
