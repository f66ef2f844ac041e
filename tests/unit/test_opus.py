"""OpusDecoder, parse_opus_head and packet_samples against libopus through opuslib (the reference
decoder) and PyAV-encoded fixtures: every frame size, mono/stereo, SILK/hybrid/CELT, every output
rate, pre-skip and end trimming to the sample, malformed packets, fuzz."""

from __future__ import annotations

import threading

import numpy as np
import opuslib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures_opus import (FRAME_MS, ogg_opus, pyav_extradata, pyav_packets, sine_sweep, speech_like,
                           toc_modes, toc_samples)
from routeraudio._codec.opus import (MAX_PACKET_SAMPLES_48K, OPUS_ERRORS, OUT_RATES, OpusDecoder, OpusHead,
                                     packet_samples, parse_opus_head)
from routeraudio.errors import AudioFormatError

# (application, bitrate) -> the libopus mode it yields for speech at 10..120 ms frames
SETTINGS = {"celt": (None, None), "silk": ("voip", 12000), "hybrid": ("voip", 24000)}


class Stream:
    def __init__(self, channels: int, frame_ms: float, mode: str, signal: str = "speech"):
        pcm = (speech_like(0.6, channels) if signal == "speech" else sine_sweep(0.6, channels))
        app, rate = SETTINGS[mode]
        self.data = ogg_opus(pcm, frame_ms, application=app, bitrate=rate)
        self.packets = pyav_packets(self.data)
        self.head = parse_opus_head(pyav_extradata(self.data))
        self.samples = len(pcm)  # == final granule - pre_skip (PyAV writes an exact end trim)
        self.channels, self.frame_ms, self.mode = channels, frame_ms, mode

    def __repr__(self):
        return f"<{self.channels}ch {self.frame_ms} ms {self.mode}>"


def _matrix():
    cases = [(ch, ms, "celt") for ch in (1, 2) for ms in FRAME_MS]
    cases += [(ch, ms, mode) for ch in (1, 2) for ms in (10, 20, 60, 120) for mode in ("silk", "hybrid")]
    return cases


@pytest.fixture(scope="session")
def streams() -> list[Stream]:
    return [Stream(*case) for case in _matrix()] + [Stream(2, 20, "celt", "sweep")]


def reference(packets: list[bytes], rate: int) -> np.ndarray:
    """opuslib: same libopus, a different binding, decoding each packet to mono at ``rate``."""
    dec = opuslib.Decoder(rate, 1)
    return np.frombuffer(b"".join(dec.decode(p, rate * 3 // 25) for p in packets), np.int16)


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.int16)


def test_fixtures_cover_every_mode_frame_size_and_channel_count(streams):
    modes = set().union(*(toc_modes(s.packets) for s in streams))
    assert modes == {"silk", "hybrid", "celt"}
    durations = {packet_samples(p) for s in streams for p in s.packets}
    assert {120, 240, 480, 960, 1920, 2880, 3840, 4800, 5760} <= durations
    assert {bool(p[0] & 4) for s in streams for p in s.packets} == {False, True}  # mono and stereo TOCs


@pytest.mark.parametrize("rate", OUT_RATES)
def test_decode_equals_opuslib_sample_for_sample(streams, rate):
    for s in streams:
        dec = OpusDecoder(s.channels, rate)
        got = pcm(b"".join(dec.decode(p) for p in s.packets))
        np.testing.assert_array_equal(got, reference(s.packets, rate), err_msg=repr(s))


@pytest.mark.parametrize("rate", OUT_RATES)
def test_pre_skip_and_end_trim_give_exact_duration(streams, rate):
    k = 48000 // rate
    for s in streams:
        total48 = sum(packet_samples(p) for p in s.packets)
        end48 = s.head.pre_skip + s.samples  # the final granule position
        trim = total48 - end48
        assert 0 <= trim < packet_samples(s.packets[-1]), s
        dec = OpusDecoder(s.channels, rate, s.head.pre_skip)
        got = pcm(dec.decode_many(s.packets, trim))
        assert len(got) == end48 // k - s.head.pre_skip // k, s
        if s.head.pre_skip % k == 0:
            assert len(got) == s.samples // k
        np.testing.assert_array_equal(got, reference(s.packets, rate)[s.head.pre_skip // k:end48 // k])
        assert dec.samples_decoded == s.samples


def test_pre_skip_spanning_several_packets():
    s = Stream(1, 2.5, "celt")  # 120-sample packets
    for pre_skip in (0, 1, 119, 120, 121, 312, 1000, 10**4, 65535):
        for rate in (8000, 16000, 48000):
            k = 48000 // rate
            dec = OpusDecoder(1, rate, pre_skip)
            got = pcm(b"".join(dec.decode(p) for p in s.packets))
            ref = reference(s.packets, rate)
            np.testing.assert_array_equal(got, ref[pre_skip // k:])


def test_decode_many_equals_decode_one_by_one(streams):
    s = streams[3]
    one = OpusDecoder(s.channels, 16000, 312)
    a = b"".join(one.decode(p) for p in s.packets[:-1]) + one.decode(s.packets[-1], 500)
    b = OpusDecoder(s.channels, 16000, 312).decode_many(s.packets, 500)
    c = OpusDecoder(s.channels, 16000, 312).decode_many([bytearray(p) for p in s.packets], 500)
    assert a == b == c
    assert OpusDecoder(1, 16000).decode_many([]) == b""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_decode_is_split_invariant(streams, data):
    s = data.draw(st.sampled_from(streams))
    rate = data.draw(st.sampled_from(OUT_RATES))
    trim = data.draw(st.integers(0, packet_samples(s.packets[-1])))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(s.packets)), max_size=8)))
    whole = OpusDecoder(s.channels, rate, s.head.pre_skip).decode_many(s.packets, trim)
    dec = OpusDecoder(s.channels, rate, s.head.pre_skip)
    parts, start = [], 0
    for cut in cuts + [len(s.packets)]:
        last = cut == len(s.packets)
        parts.append(dec.decode_many(s.packets[start:cut], trim if last else 0))
        start = cut
    assert b"".join(parts) == whole


def test_trim_end_clamps_to_the_packet_and_rejects_negative():
    s = Stream(1, 20, "celt")
    dec = OpusDecoder(1, 16000)
    assert dec.decode(s.packets[0], 10**6) == b""
    assert len(dec.decode(s.packets[1], 480)) == 2 * (320 - 160)
    with pytest.raises(ValueError):
        dec.decode(s.packets[2], -1)


def test_reset_starts_a_new_stream():
    s = Stream(2, 20, "hybrid")
    dec = OpusDecoder(2, 24000, 312)
    first = dec.decode_many(s.packets)
    assert dec.packets_decoded == len(s.packets)
    dec.reset()
    assert dec.samples_decoded == 0 and dec.packets_decoded == 0
    assert dec.decode_many(s.packets) == first
    assert dec.flush() == b""


def test_output_gain_matches_libopus_gain():
    s = Stream(1, 20, "silk")
    for gain in (-6 * 256, 3 * 256):
        ours = pcm(OpusDecoder(1, 16000, 0, gain).decode_many(s.packets))
        ref = opuslib.Decoder(16000, 1)
        ref.gain = gain
        expected = np.frombuffer(b"".join(ref.decode(p, 1920) for p in s.packets), np.int16)
        np.testing.assert_array_equal(ours, expected)
        plain = reference(s.packets, 16000).astype(float)
        ratio = np.sqrt(np.mean(ours.astype(float) ** 2) / np.mean(plain**2))
        assert ratio == pytest.approx(10 ** (gain / 256 / 20), rel=0.05)


def test_stereo_stream_is_downmixed_by_libopus():
    s = Stream(2, 20, "celt")
    mono = pcm(OpusDecoder(2, 48000).decode_many(s.packets)).astype(float)
    ref = opuslib.Decoder(48000, 2)
    lr = np.frombuffer(b"".join(ref.decode(p, 5760) for p in s.packets), np.int16).reshape(-1, 2)
    mean = lr.astype(float).mean(axis=1)
    snr = 10 * np.log10(np.sum(mean**2) / np.sum((mono - mean) ** 2))
    assert snr > 40  # the downmix is the channel average (up to libopus rounding)


def test_parallel_threads_give_the_same_output():
    streams = [Stream(1, 20, "celt"), Stream(2, 60, "hybrid")]
    expected = [OpusDecoder(s.channels, 16000).decode_many(s.packets * 20) for s in streams]
    results = [None, None]

    def work(i):
        results[i] = OpusDecoder(streams[i].channels, 16000).decode_many(streams[i].packets * 20)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


# --- packet_samples ------------------------------------------------------------------------------

def test_packet_samples_matches_a_pure_python_toc_parse_for_every_toc():
    for toc in range(256):
        for count in range(1, 64):
            packet = bytes([toc, count, 0, 0])
            expected = toc_samples(packet)
            if expected > MAX_PACKET_SAMPLES_48K:
                with pytest.raises(AudioFormatError, match="OPUS_INVALID_PACKET"):
                    packet_samples(packet)
            else:
                assert packet_samples(packet) == expected
                assert packet_samples(memoryview(packet)) == expected
            if toc & 3 != 3:
                break


@pytest.mark.parametrize("packet, reason", [
    (b"", "OPUS_BAD_ARG"),
    (bytes([0xFB]), "OPUS_INVALID_PACKET"),           # code 3 without its frame count byte
    (bytes([0xFB, 0x00]), "OPUS_INVALID_PACKET"),     # code 3 with zero frames
    (bytes([0x1B, 0x03]), "OPUS_INVALID_PACKET"),     # 3 x 60 ms SILK = 180 ms
])
def test_packet_samples_rejects_malformed_tocs(packet, reason):
    with pytest.raises(AudioFormatError, match=reason):
        packet_samples(packet)


# --- malformed packets -------------------------------------------------------------------------

def test_invalid_packet_names_the_libopus_error_and_the_packet_index():
    s = Stream(1, 20, "celt")
    dec = OpusDecoder(1, 16000)
    dec.decode_many(s.packets[:3])
    bad = bytes([0xFA, 0xFF, 0xFF]) + b"\0" * 4  # code 2: first frame claims more bytes than exist
    with pytest.raises(AudioFormatError, match=r"packet 4 .*OPUS_INVALID_PACKET") as e:
        dec.decode_many([s.packets[3], bad])
    assert "corrupted" in str(e.value)
    with pytest.raises(AudioFormatError, match=r"empty Opus packet \(packet 3"):
        dec.decode(b"")
    with pytest.raises(AudioFormatError, match="OPUS_INVALID_PACKET"):
        dec.decode(bytes([0x1B, 0x03]))  # 180 ms
    assert dec.packets_decoded == 3  # failed batches validate first and decode nothing


def test_two_byte_packet_claiming_120_ms_is_bounded():
    # CELT 20 ms, code 3, CBR, 6 frames, no payload: libopus treats the empty frames as lost and
    # conceals them. Whatever it does, the output is at most 120 ms and nothing sized by a claim.
    packet = bytes([(31 << 3) | 3, 6])
    assert packet_samples(packet) == 5760
    for rate in OUT_RATES:
        dec = OpusDecoder(1, rate)
        try:
            out = dec.decode(packet)
        except AudioFormatError:
            continue
        assert len(out) == 2 * rate * 120 // 1000


def test_constructor_validates_its_arguments():
    with pytest.raises(AudioFormatError, match="1 or 2 channels"):
        OpusDecoder(3, 16000)
    with pytest.raises(ValueError, match="out_rate"):
        OpusDecoder(1, 44100)
    with pytest.raises(ValueError, match="pre_skip"):
        OpusDecoder(1, 16000, -1)
    with pytest.raises(ValueError, match="output_gain"):
        OpusDecoder(1, 16000, 0, 40000)


def test_error_table_covers_every_libopus_error_code():
    assert sorted(OPUS_ERRORS) == list(range(-7, 0))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mutated_packets_only_raise_audio_format_error(streams, data):
    s = data.draw(st.sampled_from(streams))
    packet = bytearray(data.draw(st.sampled_from(s.packets)))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "toc"]))
        if op == "flip" and packet:
            packet[data.draw(st.integers(0, len(packet) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "truncate":
            del packet[data.draw(st.integers(0, len(packet))):]
        elif op == "insert":
            packet[data.draw(st.integers(0, len(packet))):0] = data.draw(st.binary(max_size=8))
        elif packet:
            packet[0] = data.draw(st.integers(0, 255))
    dec = OpusDecoder(s.channels, data.draw(st.sampled_from(OUT_RATES)), data.draw(st.integers(0, 6000)))
    try:
        out = dec.decode(bytes(packet), data.draw(st.integers(0, 6000)))
    except AudioFormatError:
        return
    assert len(out) <= 2 * dec.out_rate * 120 // 1000


# --- OpusHead ------------------------------------------------------------------------------------

def _head(version=1, channels=1, pre_skip=312, rate=48000, gain=0, family=0, tail=b""):
    return (b"OpusHead" + bytes([version, channels]) + pre_skip.to_bytes(2, "little")
            + rate.to_bytes(4, "little") + gain.to_bytes(2, "little", signed=True) + bytes([family]) + tail)


def test_parse_opus_head_reads_every_field():
    assert parse_opus_head(_head(1, 2, 3840, 44100, -512)) == OpusHead(1, 2, 3840, 44100, -512, 0)
    s = Stream(2, 20, "celt")
    assert parse_opus_head(pyav_extradata(s.data)) == OpusHead(1, 2, 312, 48000, 0, 0)
    assert parse_opus_head(_head(family=1, channels=2, tail=bytes([1, 1, 0, 1]))).channels == 2
    assert parse_opus_head(_head(version=15)).version == 15  # RFC 7845: same major version


@pytest.mark.parametrize("head, message", [
    (b"OpusHead\x01", "expected an OpusHead"),
    (_head()[:18], "expected an OpusHead"),
    (b"OpusTags" + _head()[8:], "expected an OpusHead"),
    (_head(version=16), "version 16"),
    (_head(channels=0), "0 channels"),
    (_head(channels=3), "3 channels with mapping family 0"),
    (_head(channels=6, family=1, tail=bytes([4, 2, 0, 4, 1, 2, 3, 5])),
     "unsupported.*family 1 with 6 channels"),
    (_head(channels=2, family=1, tail=bytes([2, 0, 0, 1])), "unsupported Opus channel mapping"),
    (_head(channels=2, family=1), "needs 23"),
    (_head(family=255), "unsupported Opus channel mapping family 255"),
])
def test_parse_opus_head_rejects_with_a_clear_message(head, message):
    with pytest.raises(AudioFormatError, match=message):
        parse_opus_head(head)
