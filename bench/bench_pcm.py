"""Raw PCM paths (PcmConverter): microseconds per 20 ms frame, against numpy + python-soxr HQ.

Each path streams 10 s of audio in 20 ms frames through a fresh converter per round (created in the
untimed setup); ``extra_info`` holds ``us_per_20ms`` and ``rtf`` (processing time / audio time)
from the median round. The per-frame figures include the benchmark's own Python loop (~0.03 us per
frame), the same for both implementations. A summary with the ratios to the baseline (bench/
baseline_pcm.py) measured in the same run is printed at the end, followed by the bare call overhead
and the 1- vs 2-thread throughput (the GIL is released while samples are processed).

    PYTHONPATH=src .venv/bin/python -m pytest bench/bench_pcm.py -p no:cacheprovider \
        --benchmark-columns=mean,median
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # idle BLAS threads spinning would skew timings

import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline_pcm import BaselinePcm  # noqa: E402
from routeraudio._codec.pcm import PcmConverter  # noqa: E402

SECONDS = 10.0
FRAMES = int(SECONDS / 0.020)
PATHS = {
    "8k mu-law -> 16k": ("pcm_mulaw", 8000, 1, 16000),
    "8k s16 -> 16k": ("pcm_s16le", 8000, 1, 16000),
    "16k s16 -> 16k (pass-through)": ("pcm_s16le", 16000, 1, 16000),
    "48k stereo -> 16k mono": ("pcm_s16le", 48000, 2, 16000),
    "44.1k -> 16k": ("pcm_s16le", 44100, 1, 16000),
    "22.05k -> 16k": ("pcm_s16le", 22050, 1, 16000),
    "8k s16 -> 24k": ("pcm_s16le", 8000, 1, 24000),
}
IMPLS = {"routeraudio": PcmConverter, "baseline": BaselinePcm}
RESULTS: dict[tuple[str, str], float] = {}


def frames_for(encoding: str, rate: int, channels: int) -> list[bytes]:
    """10 s of a speech-band signal (gliding harmonics plus noise) cut into 20 ms frames."""
    rng = np.random.default_rng(2024)
    t = np.arange(int(SECONDS * rate)) / rate
    f0 = 150 + 50 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    sig = sum(np.sin(k * phase) / k for k in range(1, 12)) + 0.05 * rng.standard_normal(len(t))
    sig = np.repeat((sig / np.abs(sig).max() * 20000)[:, None], channels, axis=1)
    pcm = np.round(sig).astype("<i2")
    if encoding == "pcm_mulaw":
        # Encode with the table's inverse: the nearest code of each sample.
        from baseline_pcm import mulaw_table
        table = mulaw_table().astype(np.int32)
        order = np.argsort(table)
        idx = np.clip(np.searchsorted(table[order], pcm.astype(np.int32)), 0, 255)
        data = order[idx].astype(np.uint8).tobytes()
        step = rate // 50 * channels
    else:
        data = pcm.tobytes()
        step = rate // 50 * channels * 2
    return [data[i:i + step] for i in range(0, len(data), step)]


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if not RESULTS or reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line("Raw PCM, 20 ms frames: median us per frame (rtf = processing time / audio time)")
        reporter.write_line(f"  {'path':<32} {'routeraudio':>12} {'baseline':>10} {'ratio':>7} {'rtf':>10}")
        for path in PATHS:
            ours, base = RESULTS.get((path, "routeraudio")), RESULTS.get((path, "baseline"))
            if ours is None or base is None:
                continue
            reporter.write_line(f"  {path:<32} {ours:10.3f}us {base:8.3f}us {ours / base:6.3f}x {ours / 20000:10.6f}")
        for key in (("feed(b'') per call", "routeraudio"), ("feed(b'') per call", "baseline")):
            if key in RESULTS:
                reporter.write_line(f"  {key[0] + ', ' + key[1]:<44} {RESULTS[key]:8.4f} us")
        for impl in IMPLS:
            for stat in ("median", "min"):
                one, two = RESULTS.get(("threads 1", impl, stat)), RESULTS.get(("threads 2", impl, stat))
                if one and two:
                    reporter.write_line(
                        f"  48k stereo -> 16k, {impl:<11} ({stat:>6} round): 1 thread {1e6 / one:9,.0f} frames/s, "
                        f"2 threads {2e6 / two:9,.0f} frames/s (x{2 * one / two:.2f})")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("path", PATHS)
def test_pcm_path(benchmark, path, impl):
    config = PATHS[path]
    frames = frames_for(config[0], config[1], config[2])
    make = IMPLS[impl]
    benchmark.group = path

    def stream(conv):
        feed = conv.feed
        n = 0
        for frame in frames:
            n += len(feed(frame))
        return n + len(conv.flush())

    produced = benchmark.pedantic(stream, setup=lambda: ((make(*config),), {}), rounds=40, iterations=1,
                                  warmup_rounds=3)
    assert abs(produced / 2 - SECONDS * config[3]) <= 2
    if benchmark.stats is None:  # --benchmark-disable
        return
    us = benchmark.stats.stats.median / FRAMES * 1e6
    benchmark.extra_info["us_per_20ms"] = round(us, 3)
    benchmark.extra_info["rtf"] = round(us / 20000, 7)
    RESULTS[(path, impl)] = us


@pytest.mark.parametrize("impl", IMPLS)
def test_feed_call_overhead(benchmark, impl):
    """feed() of an empty frame: argument parsing, buffer acquisition, the (empty) result."""
    conv = IMPLS[impl]("pcm_mulaw", 8000, 1, 16000)
    feed = conv.feed
    empty = b""
    benchmark.group = "call overhead"

    def calls():
        for _ in range(10000):
            feed(empty)

    benchmark.pedantic(calls, rounds=30, iterations=1, warmup_rounds=3)
    if benchmark.stats is None:
        return
    us = benchmark.stats.stats.median / 10000 * 1e6
    benchmark.extra_info["us_per_call"] = round(us, 4)
    RESULTS[("feed(b'') per call", impl)] = us


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", IMPLS)
def test_threads(benchmark, impl, threads):
    """Each thread streams its own 48 kHz stereo input, frame by frame; the figure is wall time per
    frame per thread, so with the GIL released and two free cores it stays flat as threads double.
    Each 20 ms frame holds the GIL only for the call itself (~0.1 us), but handing the GIL between
    two threads costs a futex wake-up per frame, which caps the gain at 20 ms granularity."""
    config = PATHS["48k stereo -> 16k mono"]
    frames = frames_for(*config[:3])
    make = IMPLS[impl]
    benchmark.group = f"threads ({impl})"

    def convert_all():
        conv = make(*config)
        feed = conv.feed
        for frame in frames:
            feed(frame)
        conv.flush()

    def work():
        ts = [threading.Thread(target=convert_all) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    benchmark.pedantic(work, rounds=20, iterations=1, warmup_rounds=2)
    if benchmark.stats is None:
        return
    # Wall time per frame per thread. The minimum is reported too: on a machine shared with other
    # work, the second core is not always free, and the median then shows the contention instead.
    for stat in ("median", "min"):
        us = getattr(benchmark.stats.stats, stat) / FRAMES * 1e6
        benchmark.extra_info[f"us_per_20ms_per_thread_{stat}"] = round(us, 3)
        RESULTS[(f"threads {threads}", impl, stat)] = us
