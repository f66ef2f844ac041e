"""Resampler: latency, rejection, flatness, agreement with soxr VHQ, streaming invariants.

Latency and rejection are sample-count and spectrum facts, so they are exact tests, not timings:

* latency: feed one sample at a time and record how many outputs each feed() has returned; after n
  input samples the newest input is at (n-1)/in_rate and the newest output at (count-1)/out_rate on
  the output's own timeline. The output timeline's offset from the input's is measured from a step
  response (the half-amplitude crossing of a linear-phase filter is its delay). Added latency is the
  worst case of (newest input time - newest output time) + that offset.
* nothing withheld: the counts must equal the longest prefix of outputs whose non-zero taps only
  touch input that has arrived, computed here from the filter taps.
* rejection: periodic test tones (whole cycles per second) give line spectra with 1 Hz FFT bins, so
  image and alias power is read off the spectrum without window leakage.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np
import pytest
import soxr
from hypothesis import HealthCheck, given, settings, strategies as st

from routeraudio._codec.resample import PASSBAND_EDGE, RATES, Resampler
from routeraudio.errors import AudioFormatError

PAIRS = sorted(PASSBAND_EDGE)
LATENCY_BUDGET = 3e-3
MIN_REJECTION_DB = 60.0
AMPLITUDE = 16000


def resample(rs: Resampler, x: np.ndarray) -> np.ndarray:
    out = rs.feed(x.astype("<i2").tobytes()) + rs.flush()
    return np.frombuffer(out, dtype="<i2").astype(np.float64)


def tone(freq: float, rate: int, seconds: float, amplitude: float = AMPLITUDE) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def steady_spectrum(y: np.ndarray, rate: int) -> np.ndarray:
    """Power per 1 Hz bin of one second of output, after 0.25 s of settling."""
    seg = y[rate // 4: rate // 4 + rate]
    return np.abs(np.fft.rfft(seg)) ** 2


def edges(pair: tuple[int, int]) -> tuple[float, float, float]:
    nyquist = min(pair) / 2
    edge = PASSBAND_EDGE[pair]
    return nyquist, edge * nyquist, (2 - edge) * nyquist


@pytest.fixture(scope="module")
def noise() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(20240611)
    return {rate: rng.integers(-20000, 20000, rate // 5 + 4800).astype(np.int16) for rate in RATES}


# -- latency -----------------------------------------------------------------------------------------


def newest_input(h: np.ndarray, L: int, M: int, c: int):
    """For output j: the newest input index it reads with a non-zero tap (from the taps alone)."""
    first_nonzero = []
    for p in range(L):
        nz = np.flatnonzero(h[p::L])
        first_nonzero.append(int(nz[0]) * L + p if len(nz) else 10**9)

    def newest(j: int) -> int:
        pos = j * M + c
        return (pos - first_nonzero[pos % L]) // L

    return newest


def step_offset(pair: tuple[int, int]) -> float:
    """Output timeline minus input timeline, from the half-amplitude point of a step response."""
    in_rate, out_rate = pair
    k0 = in_rate // 10
    x = np.zeros(in_rate // 5, dtype=np.int16)
    x[k0:] = AMPLITUDE
    y = resample(Resampler(*pair), x)
    j = int(np.argmax(y >= AMPLITUDE / 2))
    frac = (AMPLITUDE / 2 - y[j - 1]) / (y[j] - y[j - 1])
    t_cross = (j - 1 + frac) / out_rate
    t_step = (k0 - 0.5) / in_rate  # midway between the last 0 and the first AMPLITUDE sample
    return t_cross - t_step


@pytest.mark.parametrize("pair", PAIRS, ids=str)
def test_latency_within_budget_and_nothing_withheld(pair, noise):
    in_rate, out_rate = pair
    rs = Resampler(*pair)
    # A chain of stages (44.1k -> 16k runs 44.1k -> 22.05k -> 16k): output j of the last stage
    # reads the first stage's input through the newest input of each stage in turn.
    stage_newest = [newest_input(np.array(taps), L, M, c) for _, L, M, c, taps in rs._stages()]

    def newest(j: int) -> int:
        for f in reversed(stage_newest):
            j = f(j)
        return j

    x = noise[in_rate]
    # Past the start-up, then two periods of the output pattern (it repeats every in/gcd inputs).
    n_total = int(rs.delay * in_rate) + 2 * (in_rate // math.gcd(in_rate, out_rate)) + 40
    counts, emitted = [], 0
    for k in range(n_total):
        emitted += len(rs.feed(x[k:k + 1].tobytes())) // 2
        counts.append(emitted)
    expected, j = [], 0
    for n in range(1, n_total + 1):
        while newest(j) <= n - 1:
            j += 1
        expected.append(j)
    assert counts == expected, "feed() must return exactly the outputs the input so far determines"

    lags = [(n - 1) / in_rate - (count - 1) / out_rate for n, count in zip(range(1, n_total + 1), counts)]
    offset = step_offset(pair)
    assert abs(offset) < 20e-6, "output sample j must be aligned with input time j / out_rate"
    worst = max(lags) + offset
    print(f"{pair}: added latency {worst * 1e3:.3f} ms (filter delay {rs.delay * 1e3:.3f} ms)")
    assert worst <= LATENCY_BUDGET
    assert max(lags) == pytest.approx(rs.latency, abs=1e-9)
    assert rs.delay <= LATENCY_BUDGET


def test_identity_is_a_copy(noise):
    rs = Resampler(16000, 16000)
    x = noise[16000].tobytes()
    assert rs.feed(x) == x
    assert rs.flush() == b""
    assert rs.delay == 0.0 and rs.latency == 0.0 and rs.ratio == 1.0


# -- frequency response ------------------------------------------------------------------------------


def rejection_db(pair: tuple[int, int]) -> float:
    """Worst image or alias level below a passband tone of the same amplitude, in dB.

    A passband tone must come out as that tone alone: every other bin holds its images (and, after
    a fractional ratio's decimation, their aliases) plus rounding noise. When decimating, a tone
    anywhere in the stopband must come out >= 60 dB below a passband tone."""
    in_rate, out_rate = pair
    nyquist, passband, stopband = edges(pair)
    worst = math.inf
    for f in np.linspace(100, passband, 7).round():
        spec = steady_spectrum(resample(Resampler(*pair), tone(f, in_rate, 1.5)), out_rate)
        worst = min(worst, 10 * math.log10(spec[int(f)] / (spec.sum() - spec[int(f)])))
    if in_rate > out_rate:
        ref = steady_spectrum(resample(Resampler(*pair), tone(1000, in_rate, 1.5)), out_rate).sum()
        freqs = list(np.linspace(stopband, in_rate / 2 - 20, 9).round())
        for f in freqs:
            spec = steady_spectrum(resample(Resampler(*pair), tone(f, in_rate, 1.5)), out_rate)
            worst = min(worst, 10 * math.log10(ref / spec.sum()))
    return worst


@pytest.mark.parametrize("pair", PAIRS, ids=str)
def test_rejection_of_images_and_aliases(pair):
    worst = rejection_db(pair)
    print(f"{pair}: rejection {worst:.1f} dB")
    assert worst >= MIN_REJECTION_DB


def test_10khz_tone_48k_to_16k_is_60db_below_passband():
    y10 = resample(Resampler(48000, 16000), tone(10000, 48000, 1.5))
    y1 = resample(Resampler(48000, 16000), tone(1000, 48000, 1.5))
    level = 10 * math.log10(steady_spectrum(y10, 16000).sum() / steady_spectrum(y1, 16000).sum())
    assert level <= -MIN_REJECTION_DB


def test_8k_to_16k_image_band_is_60db_down():
    # Broadband 8 kHz input: whatever lies in 4-8 kHz at 16 kHz is an image of 0-4 kHz.
    rng = np.random.default_rng(7)
    spec_in = np.fft.rfft(rng.standard_normal(8000))
    spec_in[int(3500):] = 0  # the passband
    x = np.fft.irfft(spec_in, 8000)
    x = np.round(np.tile(x, 2) / np.abs(x).max() * AMPLITUDE).astype(np.int16)
    spec = steady_spectrum(resample(Resampler(8000, 16000), x), 16000)
    assert 10 * math.log10(spec[:4000].sum() / spec[4000:].sum()) >= MIN_REJECTION_DB


@pytest.mark.parametrize("pair", PAIRS, ids=str)
def test_passband_is_flat(pair):
    in_rate, out_rate = pair
    _, passband, _ = edges(pair)
    for f in np.linspace(50, passband, 8).round():
        spec = steady_spectrum(resample(Resampler(*pair), tone(f, in_rate, 1.5)), out_rate)
        amplitude = 2 * math.sqrt(spec[int(f)]) / out_rate
        assert 20 * math.log10(amplitude / AMPLITUDE) == pytest.approx(0, abs=0.05), f


def speech_like(rate: int, seconds: float = 1.5) -> np.ndarray:
    """Voiced 'speech': a gliding 100-250 Hz pitch with harmonics shaped by two moving formants and a
    syllable envelope, plus a quieter exponential sine sweep; band-limited to 95% of the passband of
    every pair so that both resamplers see only passband content."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 170 + 70 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    sig = np.zeros_like(t)
    for k in range(1, 60):
        fk = k * f0
        gain = np.exp(-((fk - 700) / 300) ** 2) + 0.5 * np.exp(-((fk - 1800 - 400 * np.sin(t)) / 500) ** 2)
        sig += np.where(fk < 3300, gain / k ** 0.3, 0) * np.sin(k * phase)
    sig *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    sweep_end = 3300.0
    sweep = np.sin(2 * np.pi * 50 * seconds / math.log(sweep_end / 50) * ((sweep_end / 50) ** (t / seconds) - 1))
    sig = sig / np.abs(sig).max() + 0.3 * sweep
    return np.round(sig / np.abs(sig).max() * 20000).astype(np.int16)


@pytest.mark.parametrize("pair", PAIRS, ids=str)
def test_agrees_with_soxr_vhq_in_the_passband(pair):
    in_rate, out_rate = pair
    _, passband, _ = edges(pair)
    x = speech_like(in_rate)
    ours = resample(Resampler(*pair), x)
    ref = soxr.resample(x.astype(np.float64), in_rate, out_rate, quality="VHQ")
    n = min(len(ours), len(ref))
    assert abs(len(ours) - len(ref)) <= 1
    # Both streams start from silence and are time-aligned; compare the spectra up to the passband
    # edge (the filters differ only in their transition bands).
    a, b = np.fft.rfft(ours[:n]), np.fft.rfft(ref[:n])
    band = np.fft.rfftfreq(n, 1 / out_rate) <= passband
    snr = 10 * math.log10(np.sum(np.abs(b[band]) ** 2) / np.sum(np.abs(a[band] - b[band]) ** 2))
    print(f"{pair}: SNR vs soxr VHQ {snr:.1f} dB")
    assert snr >= 60


# -- streaming invariants ----------------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS, ids=str)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 147, 441, 1000, 4799])
def test_flush_completes_the_stream(pair, n, noise):
    in_rate, out_rate = pair
    rs = Resampler(*pair)
    out = rs.feed(noise[in_rate][:n].tobytes()) + rs.flush()
    assert len(out) // 2 == -(-n * out_rate // in_rate)
    assert abs(len(out) // 2 - n * out_rate / in_rate) <= 1


@pytest.mark.parametrize("pair", PAIRS + [(16000, 16000)], ids=str)
def test_one_byte_feeds_match_a_single_feed(pair, noise):
    data = noise[pair[0]][: pair[0] // 20].tobytes()
    whole = Resampler(*pair)
    expected = whole.feed(data) + whole.flush()
    rs = Resampler(*pair)
    got = b"".join(rs.feed(data[i:i + 1]) for i in range(len(data))) + rs.flush()
    assert got == expected


@pytest.mark.parametrize("pair", [(8000, 16000), (8000, 24000), (16000, 24000), (24000, 16000),
                                  (44100, 16000), (22050, 24000), (48000, 16000)], ids=str)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=9600), max_size=24))
def test_random_splits_match_a_single_feed(pair, cuts, noise):
    data = noise[pair[0]][:4800].tobytes()
    whole = Resampler(*pair)
    expected = whole.feed(data) + whole.flush()
    rs = Resampler(*pair)
    bounds = [0] + sorted(c % (len(data) + 1) for c in cuts) + [len(data)]
    views = memoryview(data)
    got = b"".join(rs.feed(views[a:b]) for a, b in zip(bounds, bounds[1:])) + rs.flush()
    assert got == expected


def test_blocks_larger_than_the_internal_block(noise):
    # One feed() of many internal blocks equals many small feeds.
    x = np.tile(noise[48000], 3).tobytes()
    a = Resampler(48000, 16000)
    b = Resampler(48000, 16000)
    expected = b"".join(b.feed(x[i:i + 1234]) for i in range(0, len(x), 1234)) + b.flush()
    assert a.feed(bytearray(x)) + a.flush() == expected


@pytest.mark.parametrize("pair", PAIRS, ids=str)
def test_constant_input_gives_constant_output(pair):
    in_rate, out_rate = pair
    y = resample(Resampler(*pair), np.full(in_rate // 10, 12345, dtype=np.int16))
    settled = y[out_rate // 200: -(out_rate // 200)]
    assert np.all(settled == 12345)


@pytest.mark.parametrize("pair", [(8000, 16000), (48000, 16000), (44100, 24000)], ids=str)
def test_full_scale_square_wave_saturates_without_wrapping(pair):
    in_rate, out_rate = pair
    half = in_rate // 100
    x = np.tile(np.r_[np.full(half, 32767), np.full(half, -32768)], 10).astype(np.int16)
    y = resample(Resampler(*pair), x)
    assert y.max() == 32767 and y.min() == -32768  # the overshoot is clipped
    period = 2 * out_rate // 100
    for start in range(period, len(y) - period, period):
        assert np.all(y[start + period // 8: start + 3 * period // 8] > 30000)
        assert np.all(y[start + 5 * period // 8: start + 7 * period // 8] < -30000)


def test_reset_starts_a_new_stream(noise):
    rs = Resampler(44100, 16000)
    data = noise[44100].tobytes()
    first = rs.feed(data) + rs.flush()
    rs.reset()
    assert rs.feed(data) + rs.flush() == first
    rs.reset()
    rs.feed(b"\x01\x02\x03")
    rs.reset()
    assert rs.feed(data) + rs.flush() == first


def test_flush_closes_the_stream():
    rs = Resampler(8000, 16000)
    rs.feed(b"\x00\x01" * 100)
    assert len(rs.flush()) > 0
    assert rs.flush() == b""
    with pytest.raises(ValueError, match="reset"):
        rs.feed(b"\x00\x00")


def test_odd_byte_count_at_flush_is_a_format_error():
    rs = Resampler(48000, 16000)
    rs.feed(b"\x00" * 101)
    with pytest.raises(AudioFormatError, match=r"1 byte .* byte offset 100; expected a multiple of 2"):
        rs.flush()


@pytest.mark.parametrize("in_rate, out_rate", [(11025, 16000), (16000, 8000), (0, 16000), (-8000, 16000),
                                                (48000, 44100), (8000, 48000), (16000, 12000)])
def test_invalid_rates_are_rejected(in_rate, out_rate):
    with pytest.raises(ValueError, match="rate"):
        Resampler(in_rate, out_rate)


def test_properties():
    rs = Resampler(44100, 16000)
    assert rs.in_rate == 44100 and rs.out_rate == 16000
    assert rs.ratio == pytest.approx(16000 / 44100)
    assert 0 < rs.delay <= rs.latency <= LATENCY_BUDGET
    assert repr(rs) == "Resampler(44100, 16000)"


def test_feed_releases_the_gil():
    """While one thread is inside feed(), another thread runs Python code.

    With a long switch interval the interpreter never forces the GIL away from the feeding thread
    between `inside = True` and the call, so the main thread can only observe `inside` while the
    call itself has released the GIL. No timing is asserted, only that the observation happened.
    """
    # 10 minutes of 8 kHz audio to 24 kHz (the most work per input byte): tens of ms without the GIL.
    data = np.random.default_rng(1).integers(-9000, 9000, 8000 * 600).astype(np.int16).tobytes()
    rs = Resampler(8000, 24000)
    state = {"inside": False, "seen": 0}

    def work():
        state["inside"] = True
        rs.feed(data)
        state["inside"] = False

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.05)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        while worker.is_alive():
            if state["inside"]:
                state["seen"] += 1
        worker.join()
    finally:
        sys.setswitchinterval(old)
    assert state["seen"] > 0
