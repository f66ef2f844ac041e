"""WebmDemuxer against PyAV's demuxer (the oracle) on real Opus streams in every layout browsers and
muxers write, plus the errors a client can provoke. Fixtures: tests/fixtures_webm.py."""

from __future__ import annotations

import struct

import lameenc
import numpy as np
import opuslib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixtures_webm as F
from fixtures_opus import encode_opus, pyav_packets, speech_like
from routeraudio._codec.webm import WebmDemuxer
from routeraudio.errors import AudioFormatError


def demux(data: bytes, cuts=()):
    return F.feed_all(WebmDemuxer(), data, cuts)


def error_of(data: bytes, cuts=()) -> str:
    with pytest.raises(AudioFormatError) as info:
        demux(data, cuts)
    return str(info.value)


def head_with(pre_skip: int, gain: int = 0, channels: int = 1) -> bytes:
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, 48000, gain, 0)


def variants():
    """(name, bytes, expected packets, expected trims) for every layout, small enough for 1-byte feeds."""
    s, s2 = F.stream(1), F.stream(2)
    big, cbr = F.stream(1, bitrate=128000), F.stream(1, cbr=True)
    last = len(s.packets) - 1
    return [
        ("pyav-mono", s.webm, s.packets, [(last, 648)]),
        ("pyav-stereo", s2.webm, s2.packets, [(last, 648)]),
        ("unknown-segment-and-clusters", F.rewrite_unknown_sizes(s.webm), s.packets, [(last, 648)]),
        ("unknown-segment-only", F.rewrite_unknown_sizes(s.webm, clusters=False), s.packets, [(last, 648)]),
        ("chrome-mediarecorder", F.build(s), s.packets, []),
        ("firefox-like-known-clusters", F.build(s2, unknown_cluster=False), s2.packets, []),
        ("xiph-lacing", F.build(big, lacing="xiph", per_block=5), big.packets, []),
        ("ebml-lacing", F.build(big, lacing="ebml", per_block=7), big.packets, []),
        ("fixed-lacing", F.build(cbr, lacing="fixed", per_block=4), cbr.packets, []),
        ("blockgroups-and-extras", F.build(s, extras=True, blockgroups=True, discard_ns=s.discard_ns),
         s.packets, [(last, 648)]),
        ("known-sizes-discard-first", F.build(s, unknown_segment=False, unknown_cluster=False,
                                              discard_ns=5_000_000, discard_first=True), s.packets, [(last, 240)]),
    ]


VARIANTS = variants()


@pytest.mark.parametrize("name,data,expected,trims", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_packets_equal_pyav(name, data, expected, trims):
    assert pyav_packets(data) == expected  # the fixture is a WebM PyAV reads the same way
    packets, got_trims = demux(data)
    assert packets == expected
    assert got_trims == trims


@pytest.mark.parametrize("name,data,expected,trims", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_one_byte_feeds(name, data, expected, trims):
    assert demux(data, range(1, len(data))) == (expected, trims)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(VARIANTS), st.lists(st.floats(0, 1), max_size=40))
def test_random_splits(variant, fractions):
    _, data, expected, trims = variant
    cuts = {int(f * len(data)) for f in fractions}
    assert demux(data, cuts) == (expected, trims)


def test_track_metadata_from_codec_delay_and_opus_head():
    s2 = F.stream(2)
    d = WebmDemuxer()
    assert d.opus_head is None and d.channels == 0
    d.feed(s2.webm)
    assert (d.opus_head, d.channels, d.pre_skip, d.output_gain) == (s2.head, 2, 312, 0)
    assert d.sampling_frequency == 48000.0
    # No CodecDelay (Chrome): pre-skip and gain come from OpusHead.
    d = WebmDemuxer()
    d.feed(F.build(F.stream(1), head=head_with(100, gain=-256)))
    assert (d.pre_skip, d.output_gain, d.channels) == (100, -256, 1)
    # CodecDelay wins over OpusHead: 6.5 ms = 312 samples at 48 kHz.
    d = WebmDemuxer()
    d.feed(F.build(F.stream(1), head=head_with(100), codec_delay=True))
    assert d.pre_skip == 312
    # No CodecPrivate at all: Channels element, no pre-skip.
    d = WebmDemuxer()
    d.feed(F.build(F.stream(2), head=None))
    assert (d.opus_head, d.channels, d.pre_skip) == (None, 2, 0)


def test_duration_exact_after_pre_skip_and_trim():
    """Decoded with opuslib, the packets minus pre-skip and trim are exactly the encoded input."""
    for channels in (1, 2):
        s = F.stream(channels)
        d = WebmDemuxer()
        packets = d.feed(s.webm)
        trim = d.trim_end
        assert trim == round(s.discard_ns * 48000 / 1e9) == 648
        assert d.flush() == [] and d.trim_end == 0
        dec = opuslib.Decoder(48000, channels)
        total = sum(len(dec.decode(p, 5760)) // (2 * channels) for p in packets)
        assert total - d.pre_skip - trim == s.samples


def test_discard_padding_mid_stream_splits_the_return():
    """A trimmed packet is always the last of a call; what follows comes with the next call."""
    s = F.stream(1, seconds=0.3)
    more = s.packets[:3]
    # A BlockGroup with 3 ms of DiscardPadding, then one more Cluster in the same unknown-size Segment.
    data = F.build(s, discard_ns=3_000_000) + F.el(F.CLUSTER, b"".join(
        F.el(F.SIMPLEBLOCK, F.block_payload(1, k, [p])) for k, p in enumerate(more)), F.UNKNOWN)
    d = WebmDemuxer()
    assert d.feed(data) == s.packets and d.trim_end == 144
    assert d.feed(b"") == more and d.trim_end == 0  # no new input needed to release them
    assert d.flush() == [] and d.trim_end == 0
    everything = s.packets + more
    assert demux(data) == (everything, [(len(s.packets) - 1, 144)])
    assert demux(data, range(1, len(data))) == (everything, [(len(s.packets) - 1, 144)])


def test_negative_discard_padding_is_not_an_end_trim():
    s = F.stream(1, seconds=0.2)
    assert demux(F.build(s, discard_ns=-2_000_000)) == (s.packets, [])


def test_video_track_first_and_big_video_block_skipped():
    s = F.stream(1)
    data = F.build(s, video_first=True)
    assert len(data) > 2 * 1024 * 1024  # a 2 MiB video block: over the audio cap, skipped unbuffered
    assert demux(data) == (s.packets, [])
    assert demux(data, range(0, len(data), 4096))[0] == s.packets


def test_accepts_any_buffer():
    s = F.stream(1, seconds=0.2)
    strided = np.repeat(np.frombuffer(s.webm, np.uint8), 2)[::2]
    assert not strided.flags.c_contiguous
    for obj in (bytearray(s.webm), memoryview(s.webm), np.frombuffer(s.webm, np.uint8), strided):
        assert WebmDemuxer().feed(obj) == s.packets
    with pytest.raises(TypeError):
        WebmDemuxer().feed("not bytes")


def test_reset_and_lifecycle():
    s = F.stream(1, seconds=0.2)
    d = WebmDemuxer()
    assert d.flush() == []  # an empty stream is not an error
    with pytest.raises(RuntimeError):
        d.feed(s.webm)
    d.reset()
    assert d.feed(s.webm[:1000]) + d.feed(s.webm[1000:]) + d.flush() == s.packets
    assert d.flush() == []
    d.reset()
    with pytest.raises(AudioFormatError):
        d.feed(b"OggS" + bytes(30))
    with pytest.raises(AudioFormatError):  # errors are sticky until reset()
        d.feed(s.webm)
    d.reset()
    assert d.feed(s.webm) + d.flush() == s.packets


# --- errors --------------------------------------------------------------------------------------

def test_vorbis_rejected():
    msg = error_of(F.build(F.stream(1), vorbis_only=True))
    assert "Vorbis audio is not supported; record with audio/webm;codecs=opus" in msg


def test_no_opus_track():
    tracks = F.el(F.TRACKS, F.other_track(1, "V_VP8"))
    msg = error_of(F.ebml_header() + F.el(F.SEGMENT, tracks, F.UNKNOWN))
    assert "no Opus track" in msg and "V_VP8" in msg and "A_OPUS" in msg


def _mp3(id3: bool) -> bytes:
    enc = lameenc.Encoder()
    enc.set_bit_rate(64)
    enc.set_in_sample_rate(16000)
    enc.set_channels(1)
    data = bytes(enc.encode(speech_like(0.2, rate=16000).tobytes()) + enc.flush())
    return (b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10) if id3 else b"") + data


@pytest.mark.parametrize("data,found", [
    (_mp3(True), "an ID3 tag"),
    (_mp3(False), "an MPEG audio frame sync"),
    (encode_opus(speech_like(0.2), "ogg"), "OggS"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "RIFF"),
    (bytes(range(100)), "bytes 00 01 02 03"),
])
def test_other_formats_named(data, found):
    for cuts in ((), range(1, 50)):
        msg = error_of(data, cuts)
        assert "expected a WebM stream" in msg and found in msg and "offset 0" in msg


def test_huge_sizes_never_allocated():
    # A 4 GiB EBML header.
    msg = error_of(b"\x1a\x45\xdf\xa3" + F.vint(4 << 30, 8) + b"B\x86\x81\x01")
    assert "EBML header at offset 0 declares 4294967296 bytes" in msg
    s = F.stream(1, seconds=0.1)
    start = F.ebml_header() + F.el(F.SEGMENT, F.el(F.TRACKS, F.opus_track(1, s.head, 1, None)), F.UNKNOWN)
    # A 4 GiB SimpleBlock of the audio track in an unknown-size Cluster: over the 1 MiB cap.
    msg = error_of(start + F.el(F.CLUSTER, b"", F.UNKNOWN) + b"\xa3" + F.vint(4 << 30, 8) + b"\x81")
    assert "SimpleBlock" in msg and "4294967296" in msg and "limit" in msg
    # The same in a known-size Cluster: it cannot fit in its parent.
    cluster = F.el(F.CLUSTER, b"\xa3" + F.vint(4 << 30, 8) + b"\x81\x00\x00\x80")
    msg = error_of(start + cluster)
    assert "overruns its parent Cluster" in msg
    # Tracks over its cap.
    msg = error_of(F.ebml_header() + F.el(F.SEGMENT, b"", F.UNKNOWN) + b"\x16\x54\xae\x6b" + F.vint(1 << 40, 8))
    assert "Tracks at offset" in msg and "limit" in msg


def test_truncation_at_flush():
    s = F.stream(1, seconds=0.3)
    mr = F.build(s)  # unknown sizes: ending at any element boundary is MediaRecorder stopping
    d = WebmDemuxer()
    d.feed(mr)
    assert d.flush() == []
    # Cut in the middle of the last SimpleBlock.
    cut = mr[:-5]
    d = WebmDemuxer()
    assert d.feed(cut) == s.packets[:-1]
    with pytest.raises(AudioFormatError, match=r"ended at offset \d+ inside the SimpleBlock at offset \d+ \(5 of"):
        d.flush()
    # Cut inside an element header.
    last_block = F.el(F.SIMPLEBLOCK, F.block_payload(1, 0, [s.packets[-1]]))
    assert "inside an element header" in error_of(mr[:len(mr) - len(last_block) + 1])
    # A known-size Segment that ends early (at a block boundary) is truncated, too.
    known = F.build(s, unknown_segment=False, unknown_cluster=False)
    msg = error_of(known[:len(known) - len(last_block)])
    assert "inside the Cluster" in msg and "declared to end at offset" in msg
    # A stream of 3 bytes.
    assert "before a complete EBML header" in error_of(b"\x1a\x45\xdf")


def _block_cluster(payload: bytes) -> bytes:
    s = F.stream(1, seconds=0.1)
    return (F.ebml_header() + F.el(F.SEGMENT, F.el(F.TRACKS, F.opus_track(1, s.head, 1, None))
                                   + F.el(F.CLUSTER, F.el(F.SIMPLEBLOCK, payload)), F.UNKNOWN))


def test_lacing_errors():
    head = F.vint(1) + b"\x00\x00"
    assert "overrun the block" in error_of(_block_cluster(head + b"\x82\x02\xff\xff\x10" + bytes(100)))
    assert "overrun the block" in error_of(_block_cluster(head + b"\x86\x01" + F.vint(500) + bytes(100)))
    assert "overrun the block" in error_of(_block_cluster(head + b"\x82\x05"))
    assert "do not split into 3 equal frames" in error_of(_block_cluster(head + b"\x84\x02" + bytes(100)))
    assert "invalid EBML lace size" in error_of(_block_cluster(head + b"\x86\x02\x00" + bytes(10)))
    assert "invalid EBML lace size" in error_of(_block_cluster(head + b"\x86\x02\x85\x80" + bytes(10)))
    assert "too short" in error_of(_block_cluster(F.vint(1) + b"\x00"))
    assert "invalid track number" in error_of(_block_cluster(b"\x00\x01\x02\x03"))
    # A laced block of three frames of the right sizes works, including an empty middle frame.
    packets, _ = demux(_block_cluster(head + b"\x82\x02\x03\x00abcdefg"))
    assert packets == [b"abc", b"defg"]


def test_structure_errors():
    s = F.stream(1, seconds=0.1)
    tracks = F.el(F.TRACKS, F.opus_track(1, s.head, 1, None))
    assert "DocType webm or matroska" in error_of(F.ebml_header("mkv3d") + F.el(F.SEGMENT, tracks))
    assert "expected a Segment after the EBML header, found Tracks" in error_of(F.ebml_header() + tracks)
    msg = error_of(F.ebml_header() + F.el(F.SEGMENT, F.el(F.CLUSTER, b"") + tracks, F.UNKNOWN))
    assert "before the Tracks element" in msg
    msg = error_of(F.ebml_header() + F.el(F.SEGMENT, tracks + F.el(F.CLUSTER, F.el(F.BLOCKGROUP, b"", F.UNKNOWN))))
    assert "BlockGroup at offset" in msg and "unknown size" in msg
    msg = error_of(F.build(s) + F.build(s))  # concatenated MediaRecorder sessions
    assert "second EBML header" in msg and "not supported" in msg
    msg = error_of(F.ebml_header() + F.el(F.SEGMENT, tracks) + F.el(F.SEGMENT, tracks))
    assert "second Segment" in msg
    assert "invalid EBML element ID" in error_of(F.ebml_header() + F.el(F.SEGMENT, tracks, F.UNKNOWN) + b"\x00\x00")
    assert "invalid EBML size" in error_of(F.ebml_header() + b"\x18\x53\x80\x67\x00")
    bad_head = F.el(F.TRACKS, F.opus_track(1, b"NotOpusHead" + bytes(20), 1, None))
    assert "not an OpusHead" in error_of(F.ebml_header() + F.el(F.SEGMENT, bad_head))
    with_enc = F.el(F.TRACKS, F.el(F.TRACKENTRY, F.uint_el(F.TRACKNUMBER, 1) + F.str_el(F.CODECID, "A_OPUS")
                                   + F.el(0x6D80, b"")))
    assert "ContentEncodings" in error_of(F.ebml_header() + F.el(F.SEGMENT, with_enc))


def test_garbage_after_a_valid_header():
    rng = np.random.default_rng(1)
    s = F.stream(1, seconds=0.1)
    start = F.ebml_header() + F.el(F.SEGMENT, F.el(F.TRACKS, F.opus_track(1, s.head, 1, None)), F.UNKNOWN)
    for seed in range(20):
        garbage = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
        d = WebmDemuxer()
        try:
            d.feed(start + garbage)
            d.flush()
        except AudioFormatError:
            pass


# --- fuzz smoke: only AudioFormatError may escape --------------------------------------------------

def _seeds():
    s = F.stream(1, seconds=0.3, bitrate=128000)
    return [F.build(s, extras=True, blockgroups=True, discard_ns=s.discard_ns, lacing="xiph", per_block=3),
            F.build(s, lacing="ebml", per_block=4, unknown_cluster=False),
            F.rewrite_unknown_sizes(F.stream(2, seconds=0.3).webm)]


SEEDS = _seeds()

mutation = st.one_of(
    st.tuples(st.just("set"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 64)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
)


def _mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, where, arg in ops:
        i = min(int(where * len(b)), max(len(b) - 1, 0))
        if not b:
            break
        if op == "set":
            b[i] = arg
        elif op == "flip":
            b[i] ^= 1 << arg
        elif op == "insert":
            b[i:i] = arg
        elif op == "delete":
            del b[i:i + arg]
        else:
            del b[i:]
    return bytes(b)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SEEDS))), st.lists(mutation, min_size=1, max_size=4),
       st.lists(st.floats(0, 1), max_size=3))
def test_fuzz_only_audio_format_error(seed, ops, cut_fractions):
    data = _mutate(SEEDS[seed], ops)
    cuts = {int(f * len(data)) for f in cut_fractions}
    d = WebmDemuxer()
    try:
        packets, _ = F.feed_all(d, data, cuts)
    except AudioFormatError as exc:
        assert "offset" in str(exc)
        return
    assert all(isinstance(p, bytes) and p for p in packets)
