"""WebmDemuxer: microseconds per Opus packet, against PyAV's matroska demuxer in the same run.

Input: 10 s of speech-like mono Opus in 20 ms packets (500 packets), laid out as Chrome's
MediaRecorder writes it (unknown-size Segment and Clusters of SimpleBlocks), fed in 4 KiB chunks as
a WebSocket server would receive it. ``extra_info["us_per_packet"]`` is the figure to compare.

    PYTHONPATH=src .venv/bin/python -m pytest bench/bench_webm.py -p no:cacheprovider \
        --benchmark-columns=mean,median
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import av
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fixtures_webm as F  # noqa: E402
from routeraudio._codec.webm import WebmDemuxer  # noqa: E402

CHUNK = 4096


@pytest.fixture(scope="module")
def recording():
    s = F.stream(1, seconds=10.0)
    return F.build(s), len(s.packets)


def _ours(data: bytes) -> int:
    d = WebmDemuxer()
    n = 0
    for i in range(0, len(data), CHUNK):
        n += len(d.feed(data[i:i + CHUNK]))
    return n + len(d.flush())


def _pyav(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as c:
        return sum(1 for p in c.demux(c.streams.audio[0]) if p.size and bytes(p))


def _run(benchmark, fn, data, packets):
    result = benchmark.pedantic(fn, args=(data,), rounds=30, iterations=1, warmup_rounds=2)
    assert result == packets
    benchmark.extra_info["us_per_packet"] = round(benchmark.stats.stats.mean / packets * 1e6, 3)


def test_webm_demux_routeraudio(benchmark, recording):
    _run(benchmark, _ours, *recording)


def test_webm_demux_pyav_baseline(benchmark, recording):
    _run(benchmark, _pyav, *recording)
