"""Ogg/Opus to 16 kHz mono: microseconds per 20 ms packet, three paths in the same run.

(a) ``OggDemuxer`` + ``OpusDecoder`` at 16 kHz, fed the Ogg stream in 4 KiB chunks (what a server
    receives), one ``decode_many`` per chunk; (a1) the same with one ``decode()`` call per packet.
(b) the floor: bare libopus decoding the same packets to 16 kHz in a C loop (``_bench_decode_loop``).
(c) the straightforward baseline: opuslib at 48 kHz (one Python call per packet) + python-soxr
    ``ResampleStream`` HQ 48 kHz -> 16 kHz.
Target: (a) <= 1.08 x (b). Input: 30 s of speech-like mono Opus, 20 ms packets (1500 packets), at
libopus's default settings (CELT) and at voip 24 kbit/s (hybrid). Then 1 vs 2 threads decoding two
streams. ``extra_info`` holds us_per_packet and the real-time factor; the summary at the end of the
module prints the ratios (medians of the rounds, all measured in this process).

    PYTHONPATH=src .venv/bin/python -m pytest bench/bench_opus.py -p no:cacheprovider \
        --benchmark-columns=mean,median
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import opuslib
import pytest
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fixtures_opus as F  # noqa: E402
from routeraudio._codec.ogg import OggDemuxer  # noqa: E402
from routeraudio._codec.opus import OpusDecoder, _bench_decode_loop  # noqa: E402

SECONDS = 30.0
CHUNK = 4096
RATE = 16000
PACKET_S = 0.020
RESULTS: dict[tuple[str, str], float] = {}  # (profile, path) -> median seconds per packet

PATHS = ("a", "a1", "floor", "baseline")
PROFILES = {"celt-64k": {}, "hybrid-24k": {"application": "voip", "bitrate": 24000}}


@pytest.fixture(scope="module", params=list(PROFILES))
def stream(request):
    data = F.ogg_opus(F.speech_like(SECONDS, 1), 20, page_ms=100, **PROFILES[request.param])
    packets = F.pyav_packets(data)
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    return request.param, data, chunks, packets


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    if not RESULTS:
        return
    lines = ["", "Opus -> 16 kHz, median us per 20 ms packet (real-time factor = us / 20000):"]
    for profile in PROFILES:
        row = {path: t for (p, path), t in RESULTS.items() if p == profile and path in PATHS}
        if "floor" in row:
            lines.append(f"  {profile}: " + "; ".join(
                f"{path} {t * 1e6:.2f} us ({t / row['floor']:.3f} x floor)" for path, t in row.items()))
        ratio = RESULTS.get((profile, "a/b interleaved"))
        if ratio is not None:
            lines.append(f"  {profile}: (a) / (b) measured interleaved: {ratio:.3f}")
    if ("threads", "1") in RESULTS and ("threads", "2") in RESULTS:
        one, two = RESULTS[("threads", "1")], RESULTS[("threads", "2")]
        lines.append(f"  2 streams x {SECONDS:.0f} s: 1 thread {one * 1e3:.1f} ms, "
                     f"2 threads {two * 1e3:.1f} ms, speed-up {one / two:.2f} x")
    # Fixture teardown runs under output capture: suspend it so the summary reaches the terminal.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    with capture.global_and_fixture_disabled():
        for line in lines:
            reporter.write_line(line)


def _record(benchmark, profile, path, packets):
    per_packet = benchmark.stats.stats.median / packets
    RESULTS[(profile, path)] = per_packet
    benchmark.extra_info["us_per_packet"] = round(per_packet * 1e6, 3)
    benchmark.extra_info["real_time_factor"] = round(per_packet / PACKET_S, 6)


def _ours(chunks) -> int:
    demux = OggDemuxer()
    decoder = None
    n = 0
    for chunk in chunks:
        packets = demux.feed(chunk)
        if packets:
            if decoder is None:
                decoder = OpusDecoder(demux.channels, RATE, demux.pre_skip, demux.output_gain)
            n += len(decoder.decode_many(packets, demux.trim_end))
    return n


def _ours_per_packet(chunks) -> int:
    demux = OggDemuxer()
    decoder = None
    n = 0
    for chunk in chunks:
        packets = demux.feed(chunk)
        if packets:
            if decoder is None:
                decoder = OpusDecoder(demux.channels, RATE, demux.pre_skip, demux.output_gain)
            for packet in packets:
                n += len(decoder.decode(packet))
    return n


def _baseline(packets) -> int:
    decoder = opuslib.Decoder(48000, 1)
    resampler = soxr.ResampleStream(48000, RATE, 1, dtype="int16", quality="HQ")
    n = 0
    for packet in packets:
        pcm = np.frombuffer(decoder.decode(packet, 5760), np.int16)
        n += len(resampler.resample_chunk(pcm).tobytes())
    return n + len(resampler.resample_chunk(np.zeros(0, np.int16), last=True).tobytes())


def test_a_ogg_demux_and_decode(benchmark, stream):
    profile, _, chunks, packets = stream
    assert benchmark.pedantic(_ours, args=(chunks,), rounds=25, iterations=1, warmup_rounds=2) > 0
    _record(benchmark, profile, "a", len(packets))


def test_a1_ogg_demux_and_decode_per_packet(benchmark, stream):
    profile, _, chunks, packets = stream
    assert benchmark.pedantic(_ours_per_packet, args=(chunks,), rounds=25, iterations=1, warmup_rounds=2)
    _record(benchmark, profile, "a1", len(packets))


def test_b_bare_libopus_floor(benchmark, stream):
    profile, _, _, packets = stream
    benchmark.pedantic(_bench_decode_loop, args=(packets, RATE), rounds=25, iterations=1, warmup_rounds=2)
    _record(benchmark, profile, "floor", len(packets))


def test_c_opuslib_48k_plus_soxr_baseline(benchmark, stream):
    profile, _, _, packets = stream
    assert benchmark.pedantic(_baseline, args=(packets,), rounds=10, iterations=1, warmup_rounds=1) > 0
    _record(benchmark, profile, "baseline", len(packets))


def test_ratio_a_over_b_interleaved(benchmark, stream):
    """(a) and (b) alternately in every round, so machine drift hits both alike; the ratio of their
    medians is the figure the target (<= 1.08) is checked against."""
    profile, _, chunks, packets = stream
    times = {"a": [], "b": []}

    def pair():
        t0 = time.perf_counter()
        _ours(chunks)
        t1 = time.perf_counter()
        _bench_decode_loop(packets, RATE)
        t2 = time.perf_counter()
        times["a"].append(t1 - t0)
        times["b"].append(t2 - t1)

    benchmark.pedantic(pair, rounds=30, iterations=1, warmup_rounds=2)
    ratio = statistics.median(times["a"]) / statistics.median(times["b"])
    RESULTS[(profile, "a/b interleaved")] = ratio
    benchmark.extra_info["a_over_b"] = round(ratio, 4)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads(benchmark, threads):
    """Two 30 s streams, decoded one after the other in one thread or side by side in two."""
    data = F.ogg_opus(F.speech_like(SECONDS, 1), 20, page_ms=100)
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]

    def sequential():
        _ours(chunks)
        _ours(chunks)

    def parallel():
        workers = [threading.Thread(target=_ours, args=(chunks,)) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    benchmark.pedantic(sequential if threads == 1 else parallel, rounds=15, iterations=1, warmup_rounds=1)
    RESULTS[("threads", str(threads))] = benchmark.stats.stats.median
