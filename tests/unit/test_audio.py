"""AudioPipeline and AudioMeter: the facade the server uses, over every encoding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixtures_mp3
import fixtures_opus
from routeraudio.audio import AudioMeter, AudioPipeline
from routeraudio.errors import AudioFormatError


def _run(p, data: bytes, cuts=()) -> bytes:
    cuts = sorted(set(c for c in cuts if 0 < c < len(data)))
    out = b""
    for a, b in zip([0] + cuts, cuts + [len(data)]):
        out += p.feed(data[a:b])
    return out + p.flush()


@pytest.fixture(scope="module")
def ogg_mono():
    return fixtures_opus.ogg_opus(fixtures_opus.speech_like(1.0, channels=1))


@pytest.fixture(scope="module")
def webm_stereo():
    return fixtures_opus.webm_opus(fixtures_opus.speech_like(1.0, channels=2))


@pytest.fixture(scope="module")
def mp3_44k():
    enc = fixtures_mp3.encode(fixtures_mp3.speech_like(44100, 1.0, 1), 44100)
    return fixtures_mp3.with_lame_header(enc), enc.n


@pytest.mark.parametrize("target", [16000, 24000])
def test_ogg_opus_exact_duration(ogg_mono, target):
    p = AudioPipeline("ogg_opus", 16000, 1, target)  # declared rate ignored: the container's wins
    pcm = _run(p, ogg_mono)
    assert len(pcm) // 2 == target  # 1.0 s exactly, after pre-skip and end trimming
    assert p.duration == pytest.approx(1.0)


def test_webm_stereo_downmixed_by_decoder(webm_stereo):
    p = AudioPipeline("webm", 48000, 1, 16000)
    pcm = np.frombuffer(_run(p, webm_stereo), "<i2")
    assert abs(len(pcm) - 16000) <= 16000 * 0.02  # WebM from PyAV carries no end trimming
    assert np.abs(pcm).max() > 1000


@pytest.mark.parametrize("target", [16000, 24000])
def test_mp3_resampled_exact_duration(mp3_44k, target):
    data, n = mp3_44k
    p = AudioPipeline("mp3", 44100, 1, target)
    pcm = _run(p, data)
    assert abs(len(pcm) // 2 - round(n * target / 44100)) <= 1
    assert p.duration == pytest.approx(n / 44100)


# -- MP3 at half rate: 44.1/48 kHz streams without a LAME/Info header ---------------------------

def _mp3_full_rate_path(data: bytes, target: int) -> bytes:
    """The path before half-rate decoding: native-rate decode, then one Resampler to the target."""
    from routeraudio._codec.mp3 import Mp3Decoder
    from routeraudio._codec.resample import Resampler

    dec = Mp3Decoder()
    pcm = dec.feed(data) + dec.flush()
    rs = Resampler(dec.sample_rate, target)
    return rs.feed(pcm) + rs.flush()


def _lowpass(x: np.ndarray, cutoff: float, rate: int) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / rate) > cutoff] = 0
    return np.fft.irfft(spectrum, len(x))


@pytest.mark.parametrize("rate, target", [(44100, 16000), (48000, 16000), (48000, 24000)])
@pytest.mark.parametrize("signal", ["speech", "sweep"])
def test_mp3_half_rate_matches_the_full_rate_path(rate, target, signal):
    enc = fixtures_mp3.stream(rate, 2, False, seconds=2.0, signal=signal)
    p = AudioPipeline("mp3", rate, 2, target)
    half = np.frombuffer(_run(p, enc.data, cuts=range(160, len(enc.data), 160)), "<i2").astype(float)
    full = np.frombuffer(_mp3_full_rate_path(enc.data, target), "<i2").astype(float)
    assert p._path.decoder.output_rate == rate // 2
    # Untagged: no trimming, and half-rate sample k is full-rate sample 2k, so the resampled
    # streams have the same length and timing.
    assert len(half) == len(full) == -(-len(enc.frames) * 1152 * target // rate)
    assert p.duration == pytest.approx(len(enc.frames) * 1152 / rate)
    # Passband (0.875 x the target's Nyquist): measured 66.8-71.7 dB on speech, 75.6-79.8 dB on
    # the sweep, stereo and mono, 64-256 kbps.
    edge = 0.875 * target / 2
    ref, got = _lowpass(full, edge, target), _lowpass(half, edge, target)
    inner = slice(200, -200)
    snr = 10 * np.log10(np.sum(ref[inner] ** 2) / np.sum((got[inner] - ref[inner]) ** 2))
    assert snr > 64


def _tone(rate: int, freq: float, amplitude: float = 16000.0) -> np.ndarray:
    t = np.arange(2 * rate) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).round().astype("<i2")[:, None]


@pytest.mark.parametrize("rate, target, freq", [
    (44100, 16000, 9500), (44100, 16000, 10500), (44100, 16000, 11000),  # kept at 22.05 kHz
    (44100, 16000, 12000), (44100, 16000, 15000),  # above 11.025 kHz: dropped subbands
    (48000, 16000, 10500), (48000, 24000, 13500), (48000, 24000, 16000),
])
def test_mp3_half_rate_rejects_aliases(rate, target, freq):
    # Each tone is above the resampler's stopband edge (1.125 x the target's Nyquist). Measured
    # (dB below the tone, half-rate / full-rate path): 44.1k -> 16k: 70.3/70.5 at 9.5 kHz,
    # 70.0/72.6 at 10.5, 72.8/78.2 at 11, 93.0/84.6 at 12, 96.8/73.6 at 15 kHz; 48k -> 16k: 85.0/
    # 84.1 at 10.5 kHz; 48k -> 24k: nothing at all (the subbands above 12 kHz are dropped) against
    # 83.6 and 75.8.
    enc = fixtures_mp3.encode(_tone(rate, freq), rate, bitrate=128)
    decoded = np.frombuffer(_mp3_full_rate_path(enc.data, rate), "<i2").astype(float)
    tone_rms = 16000 / np.sqrt(2)
    assert np.std(decoded[5000:-5000]) > 0.9 * tone_rms  # the encoder kept the tone
    p = AudioPipeline("mp3", rate, 1, target)
    out = np.frombuffer(_run(p, enc.data), "<i2").astype(float)
    assert p._path.decoder.output_rate == rate // 2
    assert 20 * np.log10(max(np.std(out[3000:-3000]), 1e-9) / tone_rms) < -60


def test_mp3_meter_counts_native_seconds_for_every_stream(mp3_44k):
    untagged = fixtures_mp3.stream(44100, 1, False)
    for data, seconds in ((mp3_44k[0], mp3_44k[1] / 44100), (untagged.data, len(untagged.frames) * 1152 / 44100)):
        m = AudioMeter("mp3", 44100, 1)
        _run(m, data, cuts=range(500, len(data), 500))
        assert m.duration == pytest.approx(seconds)


def test_pcm_paths():
    rng = np.random.default_rng(0)
    stereo = rng.integers(-20000, 20000, size=(4800, 2), dtype=np.int16)
    p = AudioPipeline("pcm_s16le", 48000, 2, 16000)
    out = _run(p, stereo.tobytes())
    assert abs(len(out) // 2 - 1600) <= 1 and p.duration == pytest.approx(0.1)
    mulaw = bytes(range(256)) * 8
    p = AudioPipeline("pcm_mulaw", 8000, 1, 8000)  # decode only
    assert len(_run(p, mulaw)) == 2 * len(mulaw)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 20000), max_size=12))
def test_pipeline_chunk_invariance(ogg_mono, webm_stereo, mp3_44k, cuts):
    for enc, data in (("ogg_opus", ogg_mono), ("webm", webm_stereo), ("mp3", mp3_44k[0])):
        whole = _run(AudioPipeline(enc, 48000, 1, 16000), data)
        assert _run(AudioPipeline(enc, 48000, 1, 16000), data, cuts) == whole, enc


def test_chained_ogg_streams(ogg_mono):
    second = fixtures_opus.ogg_opus(fixtures_opus.speech_like(0.5, channels=2, seed=3))
    # a chained stream needs a distinct serial for the second link
    pages = [fixtures_opus.ogg_rewrite(pg, serial=0x5151) for pg in fixtures_opus.ogg_pages(second)]
    chained = ogg_mono + b"".join(pages)
    p = AudioPipeline("ogg_opus", 48000, 1, 16000)
    pcm = _run(p, chained, cuts=range(997, len(chained), 997))
    assert len(pcm) // 2 == 16000 + 8000
    m = AudioMeter("ogg_opus", 48000, 1)
    _run(m, chained)
    assert m.duration == pytest.approx(1.5, abs=0.03)


@pytest.mark.parametrize("encoding,data", [
    ("webm", b"ID3\x04\x00" + b"\x00" * 200),
    ("ogg_opus", b"\x1aE\xdf\xa3" + b"\x00" * 200),
    ("mp3", b"OggS" + b"\x00" * 400),
])
def test_mislabelled_audio(encoding, data):
    with pytest.raises(AudioFormatError):
        _run(AudioPipeline(encoding, 48000, 1, 16000), data)
    with pytest.raises(AudioFormatError):
        _run(AudioMeter(encoding, 48000, 1), data)


def test_meter_counts_raw_and_rejects_partial_frames():
    m = AudioMeter("pcm_s16le", 16000, 2)
    m.feed(b"\0" * 6400)
    assert m.duration == pytest.approx(0.1)
    m.feed(b"\0" * 3)
    with pytest.raises(AudioFormatError, match="6403"):
        m.flush()


def test_invalid_construction():
    for args in (("flac", 16000, 1, 16000), ("pcm_s16le", 11025, 1, 16000), ("pcm_s16le", 16000, 9, 16000)):
        with pytest.raises(ValueError):
            AudioPipeline(*args)


def test_pcm_pipeline_checks_rates_at_once_and_builds_its_converter_with_the_first_audio():
    from routeraudio._codec.pcm import PcmConverter

    with pytest.raises(ValueError, match="22050"):
        AudioPipeline("pcm_s16le", 44100, 1, 22050)  # refused before any audio, as before
    idle = AudioPipeline("pcm_s16le", 44100, 1, 24000)
    assert idle.duration == 0.0 and idle.flush() == b""  # a session that never sent audio
    pcm = np.random.default_rng(3).integers(-9000, 9000, 44100, dtype=np.int16).tobytes()
    p = AudioPipeline("pcm_s16le", 44100, 1, 24000)
    ref = PcmConverter("pcm_s16le", 44100, 1, 24000)
    assert _run(p, pcm, cuts=range(882, len(pcm), 882)) == ref.feed(pcm) + ref.flush()
    assert p.duration == pytest.approx(1.0)
