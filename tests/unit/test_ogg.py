"""OggDemuxer against PyAV's Ogg demuxer and hand-built page layouts: packets byte for byte, exact
durations through OpusDecoder, chunk invariance, multiplexed and chained streams, every rejection
path, and a mutation fuzz smoke test."""

from __future__ import annotations

import random

import numpy as np
import opuslib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures_opus import (ogg_crc, ogg_mux, ogg_opus, ogg_other_codec, ogg_page, ogg_pages, ogg_rewrite,
                           pyav_extradata, pyav_packets, sine_sweep, speech_like, toc_samples)
from routeraudio._codec.ogg import MAX_PACKET, MAX_PAGE, OggDemuxer, ogg_crc32
from routeraudio._codec.opus import OpusDecoder, packet_samples
from routeraudio.errors import AudioFormatError

# (channels, frame_ms, application, bitrate, page_ms)
CASES = [(1, 20, None, None, 100), (2, 20, None, None, None), (1, 2.5, None, None, 20),
         (2, 60, "voip", 24000, 200), (1, 120, "voip", 12000, 100), (2, 10, "audio", 32000, 50),
         (1, 40, "lowdelay", 64000, None)]


class File:
    def __init__(self, channels, frame_ms, application=None, bitrate=None, page_ms=None, seconds=0.7,
                 signal="speech"):
        pcm = speech_like(seconds, channels) if signal == "speech" else sine_sweep(seconds, channels)
        self.data = ogg_opus(pcm, frame_ms, application=application, bitrate=bitrate, page_ms=page_ms)
        self.packets = pyav_packets(self.data)
        self.head = pyav_extradata(self.data)
        self.pre_skip = int.from_bytes(self.head[10:12], "little")
        self.channels = channels
        self.samples = len(pcm)
        self.granule = int.from_bytes(ogg_pages(self.data)[-1][6:14], "little")


@pytest.fixture(scope="session")
def files() -> list[File]:
    return [File(*case) for case in CASES] + [File(2, 20, signal="sweep")]


@pytest.fixture(scope="session")
def small() -> File:
    return File(1, 20, page_ms=60, seconds=0.25)


def demux(data, chunks=None) -> tuple[list[bytes], int]:
    """All packets and the trim_end of the call that returned the last one."""
    d = OggDemuxer()
    packets, trim = [], 0
    for chunk in (chunks if chunks is not None else [data]):
        got = d.feed(chunk)
        if got:
            packets += got
            trim = d.trim_end
    got = d.flush()
    if got:
        packets += got
        trim = d.trim_end
    return packets, trim


def decode_chain(chunks, rate: int) -> bytes:
    """Demux + decode as AudioPipeline does, including the chained-stream protocol."""
    d = OggDemuxer()
    dec = None
    out = []

    def run(packets):
        nonlocal dec
        if dec is None and d.opus_head is not None:
            dec = OpusDecoder(d.channels, rate, d.pre_skip, d.output_gain)
        if packets:
            out.append(dec.decode_many(packets, d.trim_end))

    for chunk in list(chunks) + [None]:
        run(d.feed(chunk) if chunk is not None else d.flush())
        while d.head_changed:
            packets = d.feed(b"") if chunk is not None else d.flush()
            dec = None
            run(packets)
    return b"".join(out)


def split(data: bytes, cuts) -> list[bytes]:
    cuts = sorted(set(cuts))
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


# --- against PyAV ------------------------------------------------------------------------------

def test_packets_equal_pyav_byte_for_byte(files):
    for f in files:
        packets, trim = demux(f.data)
        assert packets == f.packets
        # PyAV ends the stream with a granule that trims the last packet's padding
        assert 0 <= trim < packet_samples(f.packets[-1])
        assert sum(packet_samples(p) for p in packets) - trim == f.granule
        d = OggDemuxer()
        d.feed(f.data[:4096])
        assert d.opus_head == f.head
        assert (d.channels, d.pre_skip, d.output_gain) == (f.channels, f.pre_skip, 0)


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_decoded_duration_is_exact_and_equals_opuslib(files, rate):
    k = 48000 // rate
    for f in files:
        got = np.frombuffer(decode_chain([f.data], rate), np.int16)
        assert len(got) == f.granule // k - f.pre_skip // k == f.samples // k
        ref = opuslib.Decoder(rate, 1)
        full = np.frombuffer(b"".join(ref.decode(p, rate * 3 // 25) for p in f.packets), np.int16)
        np.testing.assert_array_equal(got, full[f.pre_skip // k:f.granule // k])


def test_properties_before_the_head_are_zero():
    d = OggDemuxer()
    assert (d.opus_head, d.channels, d.pre_skip, d.output_gain, d.trim_end) == (None, 0, 0, 0, 0)
    assert d.flush() == []  # an empty stream is not an error


# --- chunk invariance --------------------------------------------------------------------------

def test_one_byte_and_fixed_size_feeds(files):
    f = files[0]
    whole = demux(f.data)
    for size in (1, 17, 509, 4096):
        chunks = [f.data[i:i + size] for i in range(0, len(f.data), size)]
        assert demux(f.data, chunks) == whole
    assert demux(f.data, [memoryview(f.data), bytearray()]) == whole


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_splits_give_the_same_packets_and_pcm(files, data):
    f = data.draw(st.sampled_from(files))
    cuts = data.draw(st.lists(st.integers(0, len(f.data)), max_size=40))
    chunks = split(f.data, cuts)
    assert demux(f.data, chunks) == demux(f.data)
    assert decode_chain(chunks, 16000) == decode_chain([f.data], 16000)


# --- page layouts PyAV does not write ---------------------------------------------------------

@pytest.mark.parametrize("max_segments", [1, 2, 3, 7, 255])
def test_packets_spanning_pages(files, max_segments):
    f = files[3]
    data = ogg_mux(f.packets, head=f.head, max_segments=max_segments, final_granule=f.granule)
    assert pyav_packets(data) == f.packets
    chunks = [data[i:i + 13] for i in range(0, len(data), 13)]
    assert demux(data, chunks) == demux(f.data)
    big = [bytes([0xFC]) + bytes(range(256)) * 4, bytes([0xFC]) + b"\x01" * 254, bytes([0xFC]) * 510]
    assert demux(ogg_mux(big, head=f.head, max_segments=max_segments))[0] == big


def test_end_trim_can_drop_whole_packets(small):
    f = small
    n = len(f.packets)
    # The final page holds the last 3 packets (20 ms each) but its granule keeps only 500 samples of
    # them: two packets vanish and 460 samples are trimmed from the one that remains.
    body = ogg_pages(ogg_mux(f.packets[:n - 3], head=f.head))
    body[-1] = ogg_rewrite(body[-1], flags=body[-1][5] & ~4)
    prev_granule = sum(toc_samples(p) for p in f.packets[:n - 3])
    last = ogg_page(0x1234, len(body), prev_granule + 500, f.packets[n - 3:], flags=4)
    packets, trim = demux(b"".join(body) + last)
    assert packets == f.packets[:n - 2]
    assert trim == 960 - 500
    bad = ogg_page(0x1234, len(body), prev_granule - 1, f.packets[n - 3:], flags=4)
    with pytest.raises(AudioFormatError, match="granule position .* before the previous page"):
        demux(b"".join(body) + bad)


def test_single_audio_page_stream_trims_from_zero(small):
    f = small
    pages = ogg_pages(ogg_mux(f.packets[:5], head=f.head))
    last = ogg_rewrite(pages[-1], granule=5 * 960 - 100)
    packets, trim = demux(b"".join(pages[:-1]) + last)
    assert packets == f.packets[:5] and trim == 100


# --- multiplexed and chained -------------------------------------------------------------------

def interleave(a: list[bytes], b: list[bytes]) -> bytes:
    """BOS pages first (as RFC 3533 requires), then the other pages alternately."""
    out = [a[0], b[0]]
    rest_a, rest_b = a[1:], b[1:]
    while rest_a or rest_b:
        if rest_a:
            out.append(rest_a.pop(0))
        if rest_b:
            out.append(rest_b.pop(0))
    return b"".join(out)


def with_serial(data: bytes, serial: int) -> list[bytes]:
    return [ogg_rewrite(p, serial=serial) for p in ogg_pages(data)]


def test_multiplexed_takes_the_first_opus_stream(files):
    a, b = files[0], files[3]
    pa, pb = with_serial(a.data, 0xA), with_serial(b.data, 0xB)
    mixed = interleave(pa, pb)
    assert demux(mixed) == demux(a.data)
    assert demux(interleave(pb, pa)) == demux(b.data)
    cuts = random.Random(1).sample(range(len(mixed)), 30)
    assert decode_chain(split(mixed, cuts), 16000) == decode_chain([a.data], 16000)


def test_multiplexed_skips_a_vorbis_stream_before_the_opus_one(files):
    vorbis = with_serial(ogg_other_codec("vorbis"), 0x5)
    opus = with_serial(files[1].data, 0x6)
    assert demux(interleave(vorbis, opus)) == demux(files[1].data)


def test_chained_streams_continue_with_a_new_decoder(files):
    a, b = files[0], files[3]  # mono 20 ms then stereo 60 ms: channels and pre-skip change
    chained = a.data + b"".join(with_serial(b.data, 0xBEEF))
    expected = decode_chain([a.data], 16000) + decode_chain([b.data], 16000)
    assert decode_chain([chained], 16000) == expected
    for size in (1, 100, 4096):
        assert decode_chain([chained[i:i + size] for i in range(0, len(chained), size)], 16000) == expected
    d = OggDemuxer()
    first = d.feed(chained)
    assert d.head_changed and d.channels == 1 and first == demux(a.data)[0]
    assert d.trim_end == demux(a.data)[1]
    second = d.feed(b"")
    assert not d.head_changed and d.channels == 2 and d.opus_head == b.head
    assert second + d.flush() == demux(b.data)[0]


def test_chained_stream_may_reuse_the_serial_and_flush_continues(files):
    a, b = files[0], files[1]
    d = OggDemuxer()
    assert d.feed(a.data + b.data[:-5]) == demux(a.data)[0]
    assert d.head_changed
    with pytest.raises(AudioFormatError, match="truncated"):
        while True:
            d.flush()


# --- errors -------------------------------------------------------------------------------------

def test_crc_corruption_names_the_page_offset(files):
    f = files[0]
    pages = ogg_pages(f.data)
    offset = sum(map(len, pages[:3]))
    bad = bytearray(f.data)
    bad[offset + len(pages[3]) // 2] ^= 0x10
    with pytest.raises(AudioFormatError, match=f"CRC mismatch at byte offset {offset} "):
        demux(bytes(bad))
    for i in range(0, 300, 7):
        blob = random.Random(i).randbytes(i)
        assert ogg_crc32(blob) == ogg_crc(blob)


def test_truncated_page_is_reported_at_flush(files):
    f = files[0]
    pages = ogg_pages(f.data)
    start = sum(map(len, pages[:4]))
    for cut in (start + 1, start + 26, start + 30, start + len(pages[4]) - 1):
        d = OggDemuxer()
        d.feed(f.data[:cut])
        message = f"truncated Ogg stream.*page that starts at byte offset {start}"
        with pytest.raises(AudioFormatError, match=message):
            d.flush()
    d = OggDemuxer()
    d.feed(f.data[:start])  # a stream cut at a page boundary just lacks its EOS: fine
    d.flush()


def test_truncated_packet_spanning_pages(small):
    big = [bytes([0xFC]) + bytes(600)]
    data = ogg_mux(big, head=small.head, max_segments=1)
    pages = ogg_pages(data)
    d = OggDemuxer()
    d.feed(b"".join(pages[:-1]))
    with pytest.raises(AudioFormatError, match="inside a packet"):
        d.flush()
    with pytest.raises(AudioFormatError, match="expected page .* found page .*: a page is missing"):
        demux(b"".join(pages[:-2] + pages[-1:]))
    not_continued = b"".join(pages[:-1] + [ogg_rewrite(pages[-1], flags=pages[-1][5] & ~1)])
    with pytest.raises(AudioFormatError, match="does not continue the packet"):
        demux(not_continued)


def test_stream_starting_mid_way_is_rejected(files):
    pages = ogg_pages(files[0].data)
    with pytest.raises(AudioFormatError, match="starts mid-way.*not a beginning-of-stream page"):
        demux(b"".join(pages[2:]))
    with pytest.raises(AudioFormatError, match="expected an Ogg stream.*byte offset 0"):
        demux(files[0].data[100:])


@pytest.mark.parametrize("codec, name", [("vorbis", "Vorbis"), ("flac", "FLAC")])
def test_non_opus_stream_is_rejected(codec, name):
    with pytest.raises(AudioFormatError, match=f"expected an Opus stream in this Ogg file, found {name}"):
        demux(ogg_other_codec(codec))
    bos_only = ogg_pages(ogg_other_codec(codec))[0]
    with pytest.raises(AudioFormatError, match=f"expected an Opus stream.*found {name}"):
        demux(bos_only)


@pytest.mark.parametrize("blob, hint", [
    (b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(100), "looks like MP3"),
    (b"\x1a\x45\xdf\xa3" + bytes(100), "looks like WebM"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "looks like WAV"),
    (b"\x00" * 64, "found 00 00"),
    (b"O", None),
])
def test_garbage_is_rejected_at_offset_zero(blob, hint):
    d = OggDemuxer()
    if hint is None:  # a single correct byte is a valid prefix; the end of input makes it truncated
        d.feed(blob)
        with pytest.raises(AudioFormatError, match="truncated"):
            d.flush()
        return
    with pytest.raises(AudioFormatError, match=f"byte offset 0.*{hint}"):
        OggDemuxer().feed(blob)
    with pytest.raises(AudioFormatError, match="expected an Ogg stream .* at byte offset 0"):
        d.feed(blob[:1])  # fails on the first wrong byte, however little arrived


def test_garbage_between_pages_loses_sync(files):
    pages = ogg_pages(files[0].data)
    offset = sum(map(len, pages[:3]))
    data = b"".join(pages[:3]) + b"junk" + b"".join(pages[3:])
    with pytest.raises(AudioFormatError, match=f"lost sync.*byte offset {offset}"):
        demux(data)


def test_absurd_segment_count_is_bounded_by_the_page_format(small):
    pages = ogg_pages(small.data)
    # 255 segments of 255 bytes claims the largest possible page; only 100 bytes follow.
    header = b"OggS\x00\x00" + bytes(8) + (0x1234).to_bytes(4, "little") + bytes(8) + b"\xff" + b"\xff" * 255
    d = OggDemuxer()
    d.feed(b"".join(pages[:2]))
    d.feed(header + bytes(100))
    with pytest.raises(AudioFormatError, match=f"{27 + 255 + 100} of its {MAX_PAGE} bytes"):
        d.flush()


def test_oversized_packet_is_rejected(small):
    data = ogg_mux([bytes([0xFC]) + bytes(MAX_PACKET)], head=small.head)
    with pytest.raises(AudioFormatError, match=f"exceeds the {MAX_PACKET}-byte limit"):
        demux(data)


def test_header_errors(small):
    pages = ogg_pages(small.data)
    body = pages[2:]
    cases = [
        # OpusTags missing: the audio follows the head directly
        ([pages[0]] + [ogg_rewrite(p, sequence=i + 1) for i, p in enumerate(body)], "expected the OpusTags"),
        # a bad OpusHead
        ([ogg_page(1, 0, 0, [b"OpusHead\x01\x05" + bytes(9)], flags=2)] + body, "5 channels"),
        ([ogg_page(1, 0, 0, [b"OpusHead\x01\x06" + bytes(8) + b"\x01\x04\x02" + bytes(range(6))], flags=2)],
         "family 1 with 6 channels"),
        # OpusHead sharing its page with another packet
        ([ogg_page(1, 0, 0, [small.head, b"OpusTags"], flags=2)], "exactly one complete packet"),
        # a version 1 page, and unknown flag bits
        ([ogg_rewrite(pages[0][:4] + b"\x01" + pages[0][5:])], "page version 1"),
        ([ogg_rewrite(pages[0], flags=0x0A)], "header flags 0x0a"),
        # a second BOS for the selected serial
        ([pages[0], pages[1], ogg_rewrite(pages[2], flags=2)], "second beginning-of-stream"),
        # pages after EOS
        (pages + [ogg_rewrite(pages[-1], sequence=99, flags=0)], "follows the end-of-stream page"),
        # continued flag without a packet in progress
        (pages[:2] + [ogg_rewrite(pages[2], flags=1)], "no packet was in progress"),
    ]
    for page_list, message in cases:
        with pytest.raises(AudioFormatError, match=message):
            demux(b"".join(page_list))


def test_feed_after_flush_and_reset(small):
    d = OggDemuxer()
    packets = d.feed(small.data) + d.flush()
    assert d.flush() == []
    with pytest.raises(ValueError, match="after flush"):
        d.feed(b"OggS")
    d.reset()
    assert d.feed(bytearray(small.data)) + d.flush() == packets


# --- fuzz ---------------------------------------------------------------------------------------

def _mutate(data: bytes, draw, fix_crc: bool) -> bytes:
    pages = [bytearray(p) for p in ogg_pages(data)]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(pages) - 1))
        page = pages[i]
        op = draw(st.sampled_from(["flip", "byte", "cut", "dup", "drop", "header"]))
        if not page:
            continue
        if op == "flip":
            page[draw(st.integers(0, len(page) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            page[draw(st.integers(0, len(page) - 1))] = draw(st.integers(0, 255))
        elif op == "header" and len(page) > 27:
            page[draw(st.integers(4, 26))] = draw(st.integers(0, 255))
        elif op == "cut":
            del page[draw(st.integers(0, len(page))):]
        elif op == "dup":
            pages.insert(i, bytearray(page))
        elif len(pages) > 1:
            del pages[i]
    out = []
    for p in pages:
        if fix_crc and len(p) >= 27:
            p[22:26] = bytes(4)
            p[22:26] = ogg_crc(bytes(p)).to_bytes(4, "little")
        out.append(bytes(p))
    return b"".join(out)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mutated_streams_only_raise_audio_format_error(small, data):
    mutated = _mutate(small.data, data.draw, fix_crc=data.draw(st.booleans()))
    cuts = data.draw(st.lists(st.integers(0, len(mutated)), max_size=4))
    try:
        pcm = decode_chain(split(mutated, cuts), data.draw(st.sampled_from([16000, 48000])))
    except AudioFormatError:
        return
    assert len(pcm) <= 2 * 48000 * 4  # bounded by what the input could possibly hold
