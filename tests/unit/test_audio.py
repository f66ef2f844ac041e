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
