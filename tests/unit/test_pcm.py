"""mu-law decoding, downmixing and PcmConverter (the fused raw-PCM path)."""

from __future__ import annotations

import sys
import threading
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from routeraudio._codec.pcm import PcmConverter, downmix_s16, mulaw_to_s16
from routeraudio._codec.resample import Resampler
from routeraudio.errors import AudioFormatError
from reference import g711


def s16(data: bytes) -> list[int]:
    return np.frombuffer(data, dtype="<i2").tolist()


def mean_half_away(values: list[int]) -> int:
    """Reference mean, rounded half away from zero, in exact arithmetic."""
    q = Fraction(sum(values), len(values))
    magnitude = int(abs(q) + Fraction(1, 2))  # floor(|q| + 1/2)
    return magnitude if q >= 0 else -magnitude


# -- mu-law ------------------------------------------------------------------------------------------


def test_mulaw_is_exact_for_all_256_codes():
    codes = bytes(range(256))
    assert s16(mulaw_to_s16(codes)) == g711.decode(codes)


def test_mulaw_known_values():
    # 0x00 and 0x80 are the extremes, 0xFF and 0x7F the two zeros.
    assert s16(mulaw_to_s16(b"\x00\x80\xff\x7f")) == [-32124, 32124, 0, 0]


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_mulaw_accepts_any_buffer(wrap):
    data = bytes(range(256)) * 3
    assert mulaw_to_s16(wrap(data)) == mulaw_to_s16(data)
    assert mulaw_to_s16(wrap(b"")) == b""


# -- downmix -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", range(1, 9))
def test_downmix_rounds_half_away_from_zero_without_overflow(channels):
    rng = np.random.default_rng(channels)
    frames = [list(f) for f in rng.integers(-32768, 32768, (500, channels))]
    frames += [[32767] * channels, [-32768] * channels, [32767, -32768] * (channels // 2) + [0] * (channels % 2)]
    # Frames whose exact mean is k + 1/2 (only possible with an even channel count) and small sums.
    frames += [[1] + [0] * (channels - 1), [-1] + [0] * (channels - 1)]
    if channels % 2 == 0:
        frames += [[32767] * (channels - 1) + [32766], [-32768] * (channels - 1) + [-32767],
                   [3] + [0] * (channels - 1) if channels == 2 else [1] * (channels // 2) + [0] * (channels // 2)]
    data = np.array(frames, dtype="<i2").tobytes()
    assert s16(downmix_s16(data, channels)) == [mean_half_away(f) for f in frames]


def test_downmix_ties_are_symmetric():
    pairs = [(1, 0), (-1, 0), (3, 0), (-3, 0), (32767, 32766), (-32768, -32767), (32767, -32768), (2, 2)]
    data = np.array(pairs, dtype="<i2").tobytes()
    assert s16(downmix_s16(data, 2)) == [1, -1, 2, -2, 32767, -32768, -1, 2]


def test_downmix_rejects_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        downmix_s16(b"", 0)
    with pytest.raises(ValueError, match="channels"):
        downmix_s16(b"", 9)
    with pytest.raises(AudioFormatError, match=r"multiple of 6 bytes .* 2 byte\(s\) of a partial frame at byte offset 6"):
        downmix_s16(b"\x00" * 8, 3)


# -- PcmConverter ------------------------------------------------------------------------------------

CONFIGS = [
    ("pcm_mulaw", 8000, 1, 16000),
    ("pcm_mulaw", 8000, 1, 8000),
    ("pcm_mulaw", 8000, 2, 24000),
    ("pcm_s16le", 8000, 1, 16000),
    ("pcm_s16le", 16000, 1, 16000),
    ("pcm_s16le", 16000, 3, 24000),
    ("pcm_s16le", 22050, 1, 16000),
    ("pcm_s16le", 44100, 2, 16000),
    ("pcm_s16le", 44100, 1, 44100),
    ("pcm_s16le", 48000, 2, 16000),
    ("pcm_s16le", 48000, 6, 24000),
    ("pcm_mulaw", 48000, 8, 48000),
]


def make_input(encoding: str, rate: int, channels: int, seconds: float = 0.1, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    n = int(rate * seconds) * channels
    if encoding == "pcm_mulaw":
        return rng.integers(0, 256, n).astype(np.uint8).tobytes()
    return rng.integers(-32768, 32768, n).astype("<i2").tobytes()


def compose(encoding, in_rate, channels, out_rate, data: bytes) -> bytes:
    pcm = mulaw_to_s16(data) if encoding == "pcm_mulaw" else data
    mono = downmix_s16(pcm, channels)
    rs = Resampler(in_rate, out_rate)
    return rs.feed(mono) + rs.flush()


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_converter_is_the_composition_of_the_parts(config):
    data = make_input(*config[:3])
    conv = PcmConverter(*config)
    assert conv.feed(data) + conv.flush() == compose(*config, data)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_one_byte_feeds_match_a_single_feed(config):
    data = make_input(*config[:3], seconds=0.03)
    whole = PcmConverter(*config)
    expected = whole.feed(data) + whole.flush()
    conv = PcmConverter(*config)
    assert b"".join(conv.feed(data[i:i + 1]) for i in range(len(data))) + conv.flush() == expected


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[2], CONFIGS[5], CONFIGS[7], CONFIGS[9], CONFIGS[10]],
                         ids=str)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=24))
def test_random_splits_match_a_single_feed(config, cuts):
    data = make_input(*config[:3], seconds=0.05, seed=3)
    whole = PcmConverter(*config)
    expected = whole.feed(data) + whole.flush()
    bounds = [0] + sorted(c % (len(data) + 1) for c in cuts) + [len(data)]
    conv = PcmConverter(*config)
    view = memoryview(bytearray(data))
    assert b"".join(conv.feed(view[a:b]) for a, b in zip(bounds, bounds[1:])) + conv.flush() == expected


def test_larger_than_one_internal_block():
    data = make_input("pcm_s16le", 48000, 2, seconds=0.5, seed=5)
    config = ("pcm_s16le", 48000, 2, 16000)
    conv = PcmConverter(*config)
    assert conv.feed(data) + conv.flush() == compose(*config, data)


def test_s16_mono_without_resampling_is_passed_through():
    data = make_input("pcm_s16le", 16000, 1)
    conv = PcmConverter("pcm_s16le", 16000, 1, 16000)
    assert conv.feed(data) is data
    assert conv.feed(bytearray(data)) == data
    assert conv.feed(data[:3]) == data[:2]
    assert conv.feed(data[3:4]) == data[2:4]  # the odd byte waited for its pair
    assert conv.flush() == b""
    assert conv.duration == pytest.approx((2 * len(data) + 4) / 2 / 16000)


def test_duration_counts_complete_input_frames():
    conv = PcmConverter("pcm_s16le", 48000, 2, 16000)
    conv.feed(b"\x00" * 1920 * 2)
    assert conv.duration == pytest.approx(0.02)
    conv.feed(b"\x00" * 3)  # not yet a frame
    assert conv.duration == pytest.approx(0.02)
    conv.feed(b"\x00")
    assert conv.duration == pytest.approx(0.02 + 1 / 48000)
    assert 0 < conv.latency <= 3e-3


def test_output_length_after_flush():
    conv = PcmConverter("pcm_mulaw", 8000, 1, 16000)
    out = conv.feed(b"\xff" * 8000) + conv.flush()
    assert len(out) == 2 * 16000


@pytest.mark.parametrize("encoding, channels, nbytes, left, frame",
                         [("pcm_s16le", 1, 3, 1, 2), ("pcm_s16le", 2, 4 * 10 + 3, 3, 4),
                          ("pcm_mulaw", 3, 7, 1, 3), ("pcm_s16le", 6, 12 * 2 + 11, 11, 12)])
def test_partial_frame_at_flush_is_a_format_error(encoding, channels, nbytes, left, frame):
    conv = PcmConverter(encoding, 48000, channels, 16000)
    conv.feed(b"\x00" * nbytes)
    offset = nbytes - left
    with pytest.raises(AudioFormatError,
                       match=rf"{left} byte\(s\) left over at byte offset {offset}; expected a multiple of {frame} bytes"):
        conv.flush()


def test_flush_closes_and_reset_reopens():
    conv = PcmConverter("pcm_s16le", 8000, 1, 16000)
    data = make_input("pcm_s16le", 8000, 1)
    first = conv.feed(data) + conv.flush()
    assert conv.flush() == b""
    with pytest.raises(ValueError, match="reset"):
        conv.feed(data)
    conv.reset()
    assert conv.duration == 0
    assert conv.feed(data) + conv.flush() == first


@pytest.mark.parametrize("args, match", [
    (("pcm_f32le", 16000, 1, 16000), "encoding"),
    (("ogg_opus", 16000, 1, 16000), "encoding"),
    (("pcm_s16le", 11025, 1, 16000), "in_rate"),
    (("pcm_s16le", 16000, 0, 16000), "channels"),
    (("pcm_s16le", 16000, 9, 16000), "channels"),
    (("pcm_s16le", 16000, 1, 8000), "out_rate"),
    (("pcm_s16le", 44100, 1, 48000), "out_rate"),
])
def test_invalid_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        PcmConverter(*args)


def test_two_threads_convert_in_parallel():
    """Both threads finish with the right output, and one observes the other inside feed()."""
    config = ("pcm_mulaw", 8000, 2, 24000)  # the most work per input byte: tens of ms per feed()
    data = make_input(*config[:3], seconds=600, seed=9)
    expected = compose(*config, data)
    results: dict[str, bytes] = {}
    state = {"inside": 0, "overlap": 0}

    def work(name: str) -> None:
        conv = PcmConverter(*config)
        state["inside"] += 1
        out = conv.feed(data)
        state["inside"] -= 1
        results[name] = out + conv.flush()

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.05)
    try:
        worker = threading.Thread(target=work, args=("thread",))
        worker.start()
        while worker.is_alive():
            if state["inside"]:
                state["overlap"] += 1
        worker.join()
        work("main")
    finally:
        sys.setswitchinterval(old)
    assert results["thread"] == expected and results["main"] == expected
    assert state["overlap"] > 0
