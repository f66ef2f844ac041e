"""Mp3Decoder: libmpg123 behind a framing layer; FFmpeg (through PyAV) is the reference decoder."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixtures_mp3 as fx
from routeraudio._codec.mp3 import MAX_GARBAGE_BYTES, MAX_TAG_BYTES, Mp3Decoder
from routeraudio.errors import AudioFormatError

GAPLESS_TRIM = fx.ENCODER_DELAY + fx.DECODER_DELAY
CASES = [(rate, channels, vbr) for rate in fx.ALL_RATES for channels in (1, 2) for vbr in (False, True)]


def case_id(case) -> str:
    rate, channels, vbr = case
    version = "mpeg1" if rate in fx.MPEG1_RATES else "mpeg2" if rate in fx.MPEG2_RATES else "mpeg25"
    return f"{version}-{rate}-{'stereo' if channels == 2 else 'mono'}-{'vbr' if vbr else 'cbr'}"


def decode(data: bytes, chunk: int | None = None, target_rate: int = 0) -> tuple[np.ndarray, Mp3Decoder]:
    dec = Mp3Decoder(target_rate)
    if chunk is None:
        out = dec.feed(data)
    else:
        out = b"".join(dec.feed(data[i:i + chunk]) for i in range(0, len(data), chunk))
    out += dec.flush()
    return np.frombuffer(out, "<i2"), dec


def decode_splits(data: bytes, cuts: list[int], target_rate: int = 0) -> bytes:
    dec = Mp3Decoder(target_rate)
    bounds = [0, *sorted(cuts), len(data)]
    out = b"".join(dec.feed(data[a:b]) for a, b in zip(bounds, bounds[1:]))
    return out + dec.flush()


def snr_db(signal: np.ndarray, reference: np.ndarray) -> float:
    signal = signal.astype(float)
    reference = reference.astype(float)
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((signal - reference) ** 2))


def best_lag(signal: np.ndarray, reference: np.ndarray, max_lag: int) -> int:
    """Lag of ``signal`` behind ``reference`` that maximises their cross-correlation."""
    signal = signal.astype(float)
    ref = reference.astype(float)[max_lag:len(reference) - max_lag]
    corr = np.correlate(signal[:len(ref) + 2 * max_lag], ref, "valid")
    return int(np.argmax(corr)) - max_lag


# -- against the reference decoder -------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference_decoder(case):
    rate, channels, vbr = case
    enc = fx.stream(rate, channels, vbr)
    pcm, dec = decode(enc.data)
    ref, ref_rate = fx.reference_decode(enc.data)
    assert dec.sample_rate == ref_rate == rate
    assert dec.channels == channels
    assert dec.frames_decoded == len(enc.frames)
    assert dec.samples_decoded == len(pcm)
    # Alignment: without a LAME header neither decoder trims anything, so both emit every frame
    # whole and must agree sample for sample: same length, cross-correlation peak at lag 0.
    assert len(pcm) == len(ref) == len(enc.frames) * enc.samples_per_frame
    assert best_lag(pcm, ref, max_lag=1500) == 0
    # Stereo is compared after downmixing FFmpeg's output to (L + R) / 2, libmpg123's MONO_MIX.
    # Measured: 74-76 dB mono, 70-73 dB stereo (s16 output vs float, different rounding).
    assert snr_db(pcm, ref) > 65


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gapless_duration_is_exact(case):
    rate, channels, vbr = case
    enc = fx.stream(rate, channels, vbr)
    tagged = fx.with_lame_header(enc)
    pcm, dec = decode(tagged)
    assert len(pcm) == dec.samples_decoded == enc.n
    assert dec.frames_decoded == len(enc.frames)  # the header frame is not an audio frame
    # The header frame yields no audio and trimming removes exactly encoder + decoder delay.
    bare, _ = decode(enc.data)
    assert np.array_equal(pcm, bare[GAPLESS_TRIM:GAPLESS_TRIM + enc.n])
    # FFmpeg's demuxer trims from the same header: same length, same samples.
    ref, _ = fx.reference_decode(tagged)
    assert len(ref) == enc.n
    assert snr_db(pcm, ref) > 65


@pytest.mark.parametrize("rate", [44100, 16000, 8000])
def test_gapless_output_is_aligned_with_the_encoder_input(rate):
    enc = fx.encode(fx.sweep(rate, 1.0, 1), rate, bitrate=128 if rate > 24000 else 64 if rate > 12000 else 32)
    pcm, _ = decode(fx.with_lame_header(enc))
    assert len(pcm) == enc.n
    assert best_lag(pcm, enc.mono, max_lag=200) == 0
    # Lossy coding of a sweep up to 0.45 x rate (LAME low-passes below that at these bitrates);
    # measured 25.9, 25.5 and 16.1 dB.
    assert snr_db(pcm, enc.mono) > 12


def test_bare_xing_header_is_not_audio():
    # A Xing header without LAME's delay/padding: no frame of silence for it; libmpg123 then
    # trims only its own 529-sample decoder delay.
    enc = fx.stream(44100, 2, True)
    pcm, dec = decode(fx.lame_header_frame(enc, lame_extension=False) + enc.data)
    bare, _ = decode(enc.data)
    assert np.array_equal(pcm, bare[fx.DECODER_DELAY:])
    assert dec.frames_decoded == len(enc.frames)


def test_header_frame_of_a_second_stream_is_dropped():
    first, second = fx.stream(44100, 1, False), fx.stream(44100, 2, True)
    pcm, dec = decode(fx.with_lame_header(first) + fx.with_lame_header(second))
    alone, _ = decode(fx.with_lame_header(first))
    # The first header's trimming applies to the first stream; the second stream plays untrimmed
    # and its header frame adds nothing.
    assert len(pcm) == first.n + len(second.frames) * 1152
    assert np.array_equal(pcm[:first.n], alone)
    assert dec.frames_decoded == len(first.frames) + len(second.frames)
    assert dec.channels == 2


# -- tags --------------------------------------------------------------------------------------

@pytest.mark.parametrize("lame_header", [False, True], ids=["bare", "lame-header"])
def test_tags_are_skipped(lame_header):
    enc = fx.stream(44100, 2, True)
    body = fx.with_lame_header(enc) if lame_header else enc.data
    plain, _ = decode(body)
    trap = enc.data[enc.frames[3].offset:enc.frames[9].offset]  # real frames hidden inside tags
    variants = {
        "id3v2+id3v1": fx.id3v2_tag(trap=trap) + body + fx.id3v1_tag(),
        "id3v2-footer+ape+id3v1": fx.id3v2_tag(3000, footer=True, trap=trap) + body + fx.apev2_tag()
        + fx.id3v1_tag(),
        "two-id3v2": fx.id3v2_tag(100) + fx.id3v2_tag(500, trap=trap) + body,
        # Larger than the garbage limit: tags are skipped, never counted as garbage or buffered.
        "big-id3v2": fx.id3v2_tag(3 * MAX_GARBAGE_BYTES, trap=trap) + body + fx.id3v1_tag(),
    }
    for name, data in variants.items():
        for chunk in (None, 509):
            pcm, dec = decode(data, chunk)
            assert np.array_equal(pcm, plain), name
            assert dec.frames_decoded == len(enc.frames), name


def test_id3v1_between_concatenated_streams_is_skipped():
    enc = fx.stream(22050, 1, False)
    pcm, dec = decode(enc.data + fx.id3v1_tag() + enc.data + fx.id3v1_tag())
    assert dec.frames_decoded == 2 * len(enc.frames)
    assert len(pcm) == 2 * len(enc.frames) * 576


def test_oversized_id3v2_tag_is_rejected():
    tag = bytearray(fx.id3v2_tag(10))
    tag[6:10] = bytes([0x7F, 0x7F, 0x7F, 0x7F])  # 256 MiB
    with pytest.raises(AudioFormatError, match=rf"tag at byte 0 declares \d+ bytes, more than the {MAX_TAG_BYTES}"):
        Mp3Decoder().feed(bytes(tag))


# -- garbage and resynchronisation ---------------------------------------------------------------

@pytest.mark.parametrize("case", [(44100, 1, False), (44100, 2, True), (22050, 2, False), (8000, 1, True)],
                         ids=case_id)
@pytest.mark.parametrize("no_sync", [True, False], ids=["junk", "random"])
def test_resync_after_garbage_between_frames(case, no_sync):
    enc = fx.stream(*case, seconds=2.0)
    clean, _ = decode(enc.data)
    spf = enc.samples_per_frame
    k = len(enc.frames) // 2
    pcm, dec = decode(fx.insert_at_frame(enc, k, fx.garbage(3000, seed=k, no_sync=no_sync)))
    # Every frame is decoded once, nothing from the garbage is.
    assert dec.frames_decoded == len(enc.frames)
    assert len(pcm) == len(clean)
    assert np.array_equal(pcm[:k * spf], clean[:k * spf])
    # Frame k is decoded without the bit reservoir of the frames before the garbage (libmpg123
    # is made to resync); measured: frames k to k + 3 at most differ, later ones are identical.
    assert np.array_equal(pcm[(k + 4) * spf:], clean[(k + 4) * spf:])


def test_resync_after_damage_inside_a_frame():
    enc = fx.stream(44100, 1, False, seconds=2.0)
    clean, _ = decode(enc.data)
    cut = enc.frames[30].offset + 100  # garbage replaces the rest of frame 30 and all of 31
    pcm, dec = decode(enc.data[:cut] + fx.garbage(700, seed=5) + enc.data[enc.frames[32].offset:])
    assert dec.frames_decoded == len(enc.frames) - 1
    # One frame fewer puts libmpg123's synthesis ring buffer at another phase: the float sums
    # round differently, by at most 1 LSB (measured: 4 samples of the last 40 frames).
    tail = slice(-40 * 1152, None)
    assert np.max(np.abs(pcm[tail].astype(int) - clean[tail])) <= 1


def test_long_garbage_mid_stream_is_rejected():
    enc = fx.stream(44100, 1, False)
    k = 10
    data = fx.insert_at_frame(enc, k, fx.garbage(MAX_GARBAGE_BYTES + 10, no_sync=True))
    start = enc.frames[k].offset
    message = rf"lost MPEG audio frame sync at byte {start} and found none in the next {MAX_GARBAGE_BYTES + 1} bytes"
    for chunk in (None, 4096):
        with pytest.raises(AudioFormatError, match=message):
            decode(data, chunk)


def test_pure_garbage_is_rejected_within_the_limit():
    junk = fx.garbage(4 * MAX_GARBAGE_BYTES, seed=3)
    message = rf"no MPEG audio frame sync found in the first {MAX_GARBAGE_BYTES + 1} bytes \(found: bytes "
    with pytest.raises(AudioFormatError, match=message):
        Mp3Decoder().feed(junk)
    dec = Mp3Decoder()
    with pytest.raises(AudioFormatError, match=message):
        for i in range(0, len(junk), 1000):
            dec.feed(junk[i:i + 1000])
    assert i == MAX_GARBAGE_BYTES // 1000 * 1000  # raised by the feed that crossed the limit


def test_short_garbage_is_rejected_at_flush():
    dec = Mp3Decoder()
    assert dec.feed(b"this is not audio at all" * 10) == b""
    with pytest.raises(AudioFormatError, match=r"no complete MPEG audio frame in the 240 bytes .*74 68 69 73"):
        dec.flush()


def test_trailing_garbage_and_truncated_last_frame_are_ignored():
    enc = fx.stream(44100, 1, False)
    clean, _ = decode(enc.data)
    pcm, _ = decode(enc.data + fx.garbage(5000, no_sync=True))
    assert np.array_equal(pcm, clean)
    pcm, _ = decode(enc.data[:-100])
    assert np.array_equal(pcm, clean[:-1152])


@pytest.mark.parametrize("kind, found", [
    ("ogg", "Ogg page"), ("webm", "EBML header: WebM/Matroska"), ("flac", "FLAC stream marker"),
])
def test_container_sent_as_mp3_is_named_at_once(kind, found):
    data = fx.container_bytes(kind)
    for chunk in (None, 1):
        dec = Mp3Decoder()
        with pytest.raises(AudioFormatError, match=f"expected MPEG audio frames at byte 0, found bytes .*{found}"):
            for i in range(0, len(data), chunk or len(data)):
                dec.feed(data[i:i + (chunk or len(data))])
        assert i <= 10  # rejected by its 11th byte (8 bytes of magic + 3 of header lookahead)


def test_wav_sent_as_mp3_is_named():
    data = fx.container_bytes("wav")
    dec = Mp3Decoder()
    dec.feed(data)  # a RIFF file may carry MP3 frames: it is searched, not rejected at once
    with pytest.raises(AudioFormatError, match=r"no complete MPEG audio frame .*\(a RIFF header: WAV sent as mp3\?\)"):
        dec.flush()
    with pytest.raises(AudioFormatError, match=r"first 65537 bytes \(found: bytes 52 49 46 46"):
        Mp3Decoder().feed(fx.container_bytes("wav", seconds=1.0))


@pytest.mark.parametrize("kind, found", [
    ("mp2", r"like an MPEG Layer II header: only Layer III is supported"),
    ("adts", r"like an AAC ADTS header: AAC sent as mp3\?"),
])
def test_other_mpeg_audio_is_named(kind, found):
    dec = Mp3Decoder()
    dec.feed(fx.container_bytes(kind))
    with pytest.raises(AudioFormatError, match=rf"no complete MPEG audio frame .*\(found: bytes ff f.*{found}\)"):
        dec.flush()


def test_libmpg123_error_codes_become_exceptions():
    from routeraudio._codec.mp3 import _mpg123_error

    exc = _mpg123_error(28, "MP3 decoding failed at byte 9")  # MPG123_RESYNC_FAIL
    assert isinstance(exc, AudioFormatError)
    assert str(exc).startswith("MP3 decoding failed at byte 9: libmpg123 error 28: Failed to find valid MPEG data")
    assert isinstance(_mpg123_error(7, "x"), MemoryError)  # MPG123_OUT_OF_MEM


def test_sample_rate_change_is_rejected():
    a, b = fx.stream(44100, 1, False), fx.stream(22050, 1, False)
    dec = Mp3Decoder()
    assert len(dec.feed(a.data)) // 2 == len(a.frames) * 1152  # all of the first stream
    message = rf"sample rate changed from 44100 to 22050 Hz at byte {len(a.data)}"
    with pytest.raises(AudioFormatError, match=message):
        dec.feed(b.data)
    with pytest.raises(AudioFormatError, match=message):  # errors are sticky until reset()
        dec.feed(b"")
    dec.reset()
    assert decode(b.data)[0].tobytes() == dec.feed(b.data) + dec.flush()


def test_channel_count_change_is_fine():
    mono, stereo = fx.stream(24000, 1, False), fx.stream(24000, 2, True)
    pcm, dec = decode(mono.data + stereo.data + mono.data)
    assert dec.frames_decoded == 2 * len(mono.frames) + len(stereo.frames)
    assert dec.channels == 1 and dec.sample_rate == 24000
    assert len(pcm) == dec.frames_decoded * 576


def test_no_stderr_output(capfd):
    enc = fx.stream(44100, 2, False)
    data = fx.insert_at_frame(enc, 5, fx.garbage(2000, seed=9)) + fx.id3v1_tag()
    decode(data, 7)
    with pytest.raises(AudioFormatError):
        decode(fx.garbage(MAX_GARBAGE_BYTES * 2, seed=4))
    assert capfd.readouterr().err == ""


# -- streaming -----------------------------------------------------------------------------------

def composite_stream() -> bytes:
    """Tags, a LAME header, random garbage mid-stream and a channel change: every code path."""
    a, b = fx.stream(32000, 2, True, seconds=0.5), fx.stream(32000, 1, False, seconds=0.5)
    return (fx.id3v2_tag(700, trap=a.data[:2000]) + fx.lame_header_frame(a)
            + fx.insert_at_frame(a, 5, fx.garbage(1500, seed=2)) + fx.id3v1_tag() + b.data
            + fx.garbage(100) + fx.apev2_tag() + fx.id3v1_tag())


COMPOSITE = composite_stream()
COMPOSITE_PCM = decode(COMPOSITE)[0].tobytes()


def test_composite_stream_decodes():
    assert len(COMPOSITE_PCM) > 16000 * 2


@pytest.mark.parametrize("chunk", [1, 17, 509, 4096])
def test_chunk_size_does_not_change_output(chunk):
    pcm, _ = decode(COMPOSITE, chunk)
    assert pcm.tobytes() == COMPOSITE_PCM


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, len(COMPOSITE)), max_size=40))
def test_random_splits_do_not_change_output(cuts):
    assert decode_splits(COMPOSITE, cuts) == COMPOSITE_PCM


def test_output_is_returned_as_soon_as_each_frame_is_complete():
    """Latency: gapless adds none; only a stream's first frame waits for the next header."""
    for data, expected_first in ((fx.stream(44100, 1, False).data, [0, 2 * 1152, 1152]),
                                 (fx.with_lame_header(fx.stream(44100, 1, False)), [0, 1152 - GAPLESS_TRIM, 1152])):
        frames = fx.parse_frames(data)
        dec = Mp3Decoder()
        got = [len(dec.feed(data[f.offset:f.offset + f.length])) // 2 for f in frames]
        assert got[:3] == expected_first
        assert all(n == 1152 for n in got[3:-1])  # every later frame comes out with its last byte
        assert len(dec.flush()) == 0


def test_single_frame_stream_is_decoded_at_flush():
    enc = fx.stream(44100, 1, False)
    one = enc.data[:enc.frames[0].length]
    dec = Mp3Decoder()
    assert dec.feed(one) == b""  # unconfirmed until the stream ends
    assert len(dec.flush()) == 2 * 1152
    assert dec.frames_decoded == 1


def test_buffer_types_and_api():
    enc = fx.stream(16000, 1, False)
    expected = decode(enc.data)[0].tobytes()
    for wrap in (bytes, bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8)):
        dec = Mp3Decoder()
        assert (dec.sample_rate, dec.channels, dec.frames_decoded, dec.samples_decoded) == (0, 0, 0, 0)
        assert dec.feed(wrap(b"")) == b""
        assert dec.feed(wrap(enc.data)) + dec.flush() == expected
        assert dec.flush() == b""  # flushing twice is harmless
        with pytest.raises(ValueError, match="after flush"):
            dec.feed(b"\xff")
        dec.reset()
        assert dec.sample_rate == 0
        assert dec.feed(enc.data) + dec.flush() == expected
    with pytest.raises(TypeError):
        Mp3Decoder().feed("not bytes")


def test_reset_mid_stream_starts_over():
    a, b = fx.stream(48000, 2, False), fx.stream(11025, 1, True)
    dec = Mp3Decoder()
    dec.feed(a.data[:5000])
    dec.reset()
    assert dec.feed(b.data) + dec.flush() == decode(b.data)[0].tobytes()
    assert dec.sample_rate == 11025 and dec.frames_decoded == len(b.frames)


def test_decoders_in_parallel_threads_agree():
    enc = fx.stream(44100, 2, True, seconds=2.0)
    expected = decode(enc.data, 417)[0].tobytes()
    results = [None] * 4

    def work(i):
        results[i] = decode(enc.data, 417)[0].tobytes()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


# -- half-rate synthesis (target_rate) ------------------------------------------------------------

@pytest.mark.parametrize("rate, target, half", [
    (44100, 16000, True), (48000, 16000, True), (48000, 24000, True), (44100, 24000, False),
    (32000, 16000, False), (22050, 8000, False), (44100, 0, False),
])
def test_half_rate_is_chosen_for_untagged_44k_and_48k_streams(rate, target, half):
    enc = fx.stream(rate, 2, False)
    pcm, dec = decode(enc.data, target_rate=target)
    assert (dec.sample_rate, dec.target_rate, dec.channels) == (rate, target, 2)
    assert dec.output_rate == (rate // 2 if half else rate)
    assert dec.frames_decoded == len(enc.frames)
    # Untagged: nothing is trimmed, every frame yields half its samples.
    assert len(pcm) == dec.samples_decoded == len(enc.frames) * enc.samples_per_frame // (2 if half else 1)


@pytest.mark.parametrize("lame_extension", [True, False], ids=["lame-header", "bare-xing"])
def test_streams_with_a_header_frame_stay_at_full_rate(lame_extension):
    # libmpg123 trims (delay + 529) >> 1 samples at half rate: with LAME's odd 1105 its samples
    # would sit one native sample off the encoder's grid, so gapless streams keep full rate.
    enc = fx.stream(44100, 1, False)
    data = fx.lame_header_frame(enc, lame_extension=lame_extension) + enc.data
    pcm, dec = decode(data, target_rate=16000)
    assert dec.output_rate == dec.sample_rate == 44100
    assert np.array_equal(pcm, decode(data)[0])


def test_half_rate_sample_k_is_full_rate_sample_2k():
    # The synthesis is evaluated at every other sample with the subbands above native / 4
    # dropped: while the signal stays well below 11 kHz the outputs differ by rounding only
    # (libmpg123's generic C synthesis at half rate, its AVX one at full rate; measured: at most
    # 2 LSB, 1 in 8 samples differ). Above that, full[::2] holds aliases that half does not.
    enc = fx.stream(44100, 1, False, seconds=1.0, signal="sweep")  # log sweep 100 Hz - 19.8 kHz
    full, _ = decode(enc.data)
    half, _ = decode(enc.data, target_rate=16000)
    below_6k = slice(0, 17000)  # the sweep reaches 6 kHz at 0.77 s
    assert np.max(np.abs(half[below_6k].astype(int) - full[::2][below_6k])) <= 2


def half_rate_composite() -> bytes:
    """Tags, random garbage mid-stream and a channel change, at 44.1 kHz without a header frame."""
    a, b = fx.stream(44100, 2, True, seconds=0.5), fx.stream(44100, 1, False, seconds=0.5)
    return (fx.id3v2_tag(700, trap=a.data[:2000]) + fx.insert_at_frame(a, 5, fx.garbage(1500, seed=2))
            + fx.id3v1_tag() + b.data + fx.garbage(100) + fx.apev2_tag() + fx.id3v1_tag())


HALF_COMPOSITE = half_rate_composite()
HALF_COMPOSITE_PCM = decode(HALF_COMPOSITE, target_rate=16000)[0].tobytes()


@pytest.mark.parametrize("chunk", [1, 17, 509])
def test_half_rate_chunk_size_does_not_change_output(chunk):
    pcm, dec = decode(HALF_COMPOSITE, chunk, target_rate=16000)
    assert dec.output_rate == 22050
    assert pcm.tobytes() == HALF_COMPOSITE_PCM


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, len(HALF_COMPOSITE)), max_size=40))
def test_half_rate_random_splits_do_not_change_output(cuts):
    assert decode_splits(HALF_COMPOSITE, cuts, target_rate=16000) == HALF_COMPOSITE_PCM


def test_half_rate_resync_after_garbage():
    enc = fx.stream(48000, 2, False, seconds=2.0)
    clean, _ = decode(enc.data, target_rate=16000)
    half_frame = 576
    k = len(enc.frames) // 2
    pcm, dec = decode(fx.insert_at_frame(enc, k, fx.garbage(3000, seed=k)), target_rate=16000)
    assert dec.frames_decoded == len(enc.frames) and dec.output_rate == 24000
    assert len(pcm) == len(clean)
    assert np.array_equal(pcm[:k * half_frame], clean[:k * half_frame])
    assert np.array_equal(pcm[(k + 4) * half_frame:], clean[(k + 4) * half_frame:])


def test_half_rate_output_comes_with_each_frame_and_rate_changes_are_rejected():
    enc = fx.stream(44100, 1, False)
    dec = Mp3Decoder(16000)
    got = [len(dec.feed(enc.data[f.offset:f.offset + f.length])) // 2 for f in enc.frames]
    assert got[:3] == [0, 2 * 576, 576] and all(n == 576 for n in got[3:])
    other = fx.stream(22050, 1, False)
    with pytest.raises(AudioFormatError, match=rf"sample rate changed from 44100 to 22050 Hz at byte {len(enc.data)}"):
        dec.feed(other.data)
    dec.reset()
    assert dec.target_rate == 16000 and dec.output_rate == 0
    assert dec.feed(enc.data) + dec.flush() == decode(enc.data, target_rate=16000)[0].tobytes()
    with pytest.raises(ValueError, match="target_rate"):
        Mp3Decoder(-1)


# -- fuzz smoke ------------------------------------------------------------------------------------

FUZZ_SEED = fx.id3v2_tag(60) + fx.with_lame_header(fx.stream(22050, 2, True, seconds=0.3)) + fx.id3v1_tag()

mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, len(FUZZ_SEED) - 1), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.integers(0, len(FUZZ_SEED)), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.integers(0, len(FUZZ_SEED)), st.integers(1, 600)),
    st.tuples(st.just("flip"), st.integers(0, len(FUZZ_SEED) - 1), st.integers(0, 7)),
)


def mutate(data: bytes, mutations) -> bytes:
    buf = bytearray(data)
    for kind, pos, arg in mutations:
        pos = min(pos, len(buf))
        if kind == "set":
            buf[pos:pos + len(arg)] = arg
        elif kind == "insert":
            buf[pos:pos] = arg
        elif kind == "delete":
            del buf[pos:pos + arg]
        elif pos < len(buf):
            buf[pos] ^= 1 << arg
    return bytes(buf)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=6), st.integers(1, 700), st.integers(0, 1))
def test_fuzz_mutated_streams_only_raise_audio_format_error(mutations, chunk, truncate):
    data = mutate(FUZZ_SEED, mutations)
    if truncate:
        data = data[:len(data) * 2 // 3]
    dec = Mp3Decoder()
    try:
        for i in range(0, len(data), chunk):
            out = dec.feed(data[i:i + chunk])
            assert len(out) % 2 == 0
        dec.flush()
    except AudioFormatError:
        pass
    assert dec.sample_rate == 0 or dec.sample_rate in fx.ALL_RATES
