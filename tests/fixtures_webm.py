"""WebM fixtures: a small EBML writer/reader, written from the Matroska spec, that rebuilds real
Opus packets (encoded by PyAV's libopus, see fixtures_opus) into the layouts browsers and muxers
produce: MediaRecorder's unknown-size Segment and Cluster, BlockGroups with DiscardPadding, the
three lacing schemes, extra top-level elements, a video track before the audio, a Vorbis track.

Everything is deterministic and in memory. ``Stream`` is what a test needs to compare against:
the packets, the OpusHead and the encoder's CodecDelay / DiscardPadding.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import struct

import av

from fixtures_opus import encode_opus, pyav_packets, speech_like

UNKNOWN = object()  # size marker for el(): write the 8-byte "unknown" value 0x01FFFFFFFFFFFFFF

EBML, SEGMENT, SEEKHEAD, INFO, TRACKS, CLUSTER = 0x1A45DFA3, 0x18538067, 0x114D9B74, 0x1549A966, 0x1654AE6B, 0x1F43B675
CUES, TAGS, CHAPTERS, ATTACHMENTS, VOID, CRC32 = 0x1C53BB6B, 0x1254C367, 0x1043A770, 0x1941A469, 0xEC, 0xBF
SIMPLEBLOCK, BLOCKGROUP, BLOCK, BLOCKDURATION, REFERENCEBLOCK, DISCARDPADDING = 0xA3, 0xA0, 0xA1, 0x9B, 0xFB, 0x75A2
TIMECODE, TRACKENTRY, TRACKNUMBER, TRACKUID, TRACKTYPE, CODECID = 0xE7, 0xAE, 0xD7, 0x73C5, 0x83, 0x86
CODECPRIVATE, CODECDELAY, SEEKPREROLL, AUDIO, SAMPLINGFREQ, CHANNELS = 0x63A2, 0x56AA, 0x56BB, 0xE1, 0xB5, 0x9F
VIDEO, PIXELWIDTH, PIXELHEIGHT, TIMECODESCALE, MUXINGAPP, WRITINGAPP = 0xE0, 0xB0, 0xBA, 0x2AD7B1, 0x4D80, 0x5741
MASTERS = {SEGMENT, CLUSTER, BLOCKGROUP, TRACKS, TRACKENTRY, AUDIO, INFO}


# --- writing -------------------------------------------------------------------------------------

def vint(value: int, length: int | None = None) -> bytes:
    """EBML variable-size integer (a size): the shortest form unless ``length`` is given."""
    if length is None:
        length = 1
        while value >= (1 << (7 * length)) - 1:  # all ones is reserved for "unknown"
            length += 1
    assert value < (1 << (7 * length)) - 1 and length <= 8
    return ((1 << (7 * length)) | value).to_bytes(length, "big")


def el(eid: int, payload: bytes = b"", size=None) -> bytes:
    """An element: ``size`` is None (shortest), an int (size field length) or UNKNOWN."""
    head = eid.to_bytes((eid.bit_length() + 7) // 8, "big")
    if size is UNKNOWN:
        return head + b"\x01\xff\xff\xff\xff\xff\xff\xff" + payload
    return head + vint(len(payload), size) + payload


def uint_el(eid: int, value: int) -> bytes:
    return el(eid, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def str_el(eid: int, value: str) -> bytes:
    return el(eid, value.encode("ascii"))


def ebml_header(doctype: str = "webm") -> bytes:
    return el(EBML, uint_el(0x4286, 1) + uint_el(0x42F7, 1) + uint_el(0x42F2, 4) + uint_el(0x42F3, 8)
              + str_el(0x4282, doctype) + uint_el(0x4287, 4) + uint_el(0x4285, 2))


def opus_track(number: int, head: bytes | None, channels: int, codec_delay_ns: int | None) -> bytes:
    body = uint_el(TRACKNUMBER, number) + uint_el(TRACKUID, 0x1234 + number) + uint_el(TRACKTYPE, 2)
    body += str_el(CODECID, "A_OPUS")
    if codec_delay_ns is not None:
        body += uint_el(CODECDELAY, codec_delay_ns) + uint_el(SEEKPREROLL, 80_000_000)
    body += el(AUDIO, el(SAMPLINGFREQ, struct.pack(">f", 48000.0)) + uint_el(CHANNELS, channels))
    if head is not None:
        body += el(CODECPRIVATE, head)
    return el(TRACKENTRY, body)


def other_track(number: int, codec: str) -> bytes:
    if codec.startswith("V_"):
        extra = el(VIDEO, uint_el(PIXELWIDTH, 320) + uint_el(PIXELHEIGHT, 240)) + uint_el(TRACKTYPE, 1)
    else:  # A_VORBIS: CodecPrivate would be Xiph-laced headers; its content is never read
        audio = el(SAMPLINGFREQ, struct.pack(">d", 44100.0)) + uint_el(CHANNELS, 2)
        extra = uint_el(TRACKTYPE, 2) + el(AUDIO, audio) + el(CODECPRIVATE, b"\x02\x1e\x30" + bytes(80))
    ident = uint_el(TRACKNUMBER, number) + uint_el(TRACKUID, 0x9999 + number) + str_el(CODECID, codec)
    return el(TRACKENTRY, ident + extra)


def block_payload(track: int, timecode: int, frames: list[bytes], lacing: str = "none",
                  flags: int = 0x80) -> bytes:
    """The payload of a (Simple)Block holding ``frames`` with the given lacing."""
    bits = {"none": 0, "xiph": 0x02, "fixed": 0x04, "ebml": 0x06}[lacing]
    head = vint(track) + struct.pack(">h", timecode) + bytes([flags | bits])
    if lacing == "none":
        assert len(frames) == 1
        return head + frames[0]
    sizes = [len(f) for f in frames]
    lace = bytes([len(frames) - 1])
    if lacing == "xiph":
        for s in sizes[:-1]:
            lace += b"\xff" * (s // 255) + bytes([s % 255])
    elif lacing == "ebml":
        lace += vint(sizes[0])
        for prev, cur in zip(sizes[:-2], sizes[1:-1]):
            lace += signed_vint(cur - prev)
    else:
        assert len(set(sizes)) == 1, "fixed-size lacing needs equal frames"
    return head + lace + b"".join(frames)


def signed_vint(delta: int) -> bytes:
    length = 1
    while not -((1 << (7 * length - 1)) - 1) <= delta <= (1 << (7 * length - 1)) - 1:
        length += 1
    return vint(delta + (1 << (7 * length - 1)) - 1, length)


# --- reading (for rewriting PyAV's output) ------------------------------------------------------

def read_vint(b: bytes, i: int, keep_marker: bool = False) -> tuple[int, int]:
    length = 9 - b[i].bit_length()
    value = b[i] if keep_marker else b[i] & (0xFF >> length)
    for k in range(1, length):
        value = value << 8 | b[i + k]
    return value, length


def children(b: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(id, header start, payload start, payload end) of each element in b[start:end]."""
    out = []
    while start < end:
        eid, il = read_vint(b, start, keep_marker=True)
        size, sl = read_vint(b, start + il)
        out.append((eid, start, start + il + sl, start + il + sl + size))
        start += il + sl + size
    return out


def rewrite_unknown_sizes(data: bytes, clusters: bool = True) -> bytes:
    """PyAV's WebM with the Segment (and each Cluster) size set to "unknown", as MediaRecorder writes."""
    out = b""
    for eid, h, s, e in children(data, 0, len(data)):
        if eid != SEGMENT:
            out += data[h:e]
            continue
        body = b""
        for cid, ch, cs, ce in children(data, s, e):
            if cid == CLUSTER and clusters:
                body += el(CLUSTER, data[cs:ce], UNKNOWN)
            else:
                body += data[ch:ce]
        out += el(SEGMENT, body, UNKNOWN)
    return out


# --- streams ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Stream:
    """Real Opus packets and header data, as PyAV's muxer and demuxer see them."""

    webm: bytes  # what PyAV wrote (known sizes, CodecDelay, a final BlockGroup with DiscardPadding)
    packets: list
    head: bytes
    channels: int
    codec_delay_ns: int
    discard_ns: int  # DiscardPadding of the last block
    samples: int  # input length at 48 kHz


@functools.cache
def stream(channels: int = 1, seconds: float = 1.0, bitrate: int | None = None, cbr: bool = False,
           frame_ms: float = 20) -> Stream:
    pcm = speech_like(seconds, channels)
    kw = {"bitrate": bitrate} if bitrate else {}
    if cbr:
        data = _encode_cbr(pcm, frame_ms, bitrate or 32000)
    else:
        data = encode_opus(pcm, "webm", frame_ms, **kw)
    with av.open(io.BytesIO(data)) as c:
        head = bytes(c.streams.audio[0].codec_context.extradata)
    delay = discard = 0
    for eid, h, s, e in children(data, 0, len(data)):
        if eid == SEGMENT:
            delay, discard = _delay_and_discard(data, s, e)
    return Stream(data, pyav_packets(data), head, channels, delay, discard, len(pcm))


def _encode_cbr(pcm, frame_ms, bitrate) -> bytes:
    """Hard-CBR Opus (every packet the same size), for fixed-size lacing."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        st = out.add_stream("libopus", rate=48000, options={"vbr": "off", "frame_duration": str(frame_ms)})
        st.layout = "mono" if pcm.shape[1] == 1 else "stereo"
        st.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=st.layout.name)
        frame.sample_rate = 48000
        frame.pts = 0
        for p in list(st.encode(frame)) + list(st.encode(None)):
            out.mux(p)
    return buf.getvalue()


def _delay_and_discard(data, s, e) -> tuple[int, int]:
    delay = discard = 0
    for cid, _, cs, ce in children(data, s, e):
        if cid == TRACKS:
            for _, _, ts, te in children(data, cs, ce):
                for fid, _, fs, fe in children(data, ts, te):
                    if fid == CODECDELAY:
                        delay = int.from_bytes(data[fs:fe], "big")
        elif cid == CLUSTER:
            for bid, _, bs, be in children(data, cs, ce):
                if bid == BLOCKGROUP:
                    for gid, _, gs, ge in children(data, bs, be):
                        if gid == DISCARDPADDING:
                            discard = int.from_bytes(data[gs:ge], "big", signed=True)
    return delay, discard


def build(s: Stream, *, lacing: str = "none", per_block: int = 1, per_cluster: int = 25,
          unknown_segment: bool = True, unknown_cluster: bool = True, codec_delay: bool = False,
          head: bytes | None | str = "stream", discard_ns: int | None = None, discard_first: bool = False,
          blockgroups: bool = False, extras: bool = False, video_first: bool = False,
          vorbis_only: bool = False, doctype: str = "webm") -> bytes:
    """A WebM holding ``s.packets`` laid out as asked. The defaults are Chrome's MediaRecorder:
    unknown-size Segment and Clusters of SimpleBlocks, OpusHead but no CodecDelay, no Cues.

    ``discard_ns`` puts the last block in a BlockGroup with that DiscardPadding (before the Block
    when ``discard_first``); ``blockgroups`` puts every block in a BlockGroup; ``extras`` adds
    SeekHead, Void, CRC-32, Tags, Cues, Chapters, Attachments and unknown elements everywhere a
    demuxer must skip them; ``video_first`` adds a VP8 track numbered 1 (the audio becomes 2) whose
    blocks, one of them 2 MiB, interleave with the audio.
    """
    opus_head = s.head if head == "stream" else head
    audio = 2 if video_first else 1
    tracks = b""
    if video_first:
        tracks += other_track(1, "V_VP8")
    if vorbis_only:
        tracks += other_track(1, "A_VORBIS")
    else:
        tracks += opus_track(audio, opus_head, s.channels, s.codec_delay_ns if codec_delay else None)
    seg = b""
    if extras:
        seg += el(SEEKHEAD, el(0x4DBB, el(0x53AB, TRACKS.to_bytes(4, "big")) + uint_el(0x53AC, 0)))
        seg += el(VOID, bytes(40)) + el(VOID, b"", 8)
    seg += el(INFO, uint_el(TIMECODESCALE, 1_000_000) + str_el(MUXINGAPP, "Chrome") + str_el(WRITINGAPP, "Chrome"))
    seg += el(TRACKS, tracks)
    if extras:
        seg += el(TAGS, el(0x7373, el(0x67C8, str_el(0x45A3, "ENCODER") + str_el(0x4487, "test"))))
        seg += el(CHAPTERS, el(0x45B9, bytes(10)))
    blocks = [s.packets[i:i + per_block] for i in range(0, len(s.packets), per_block)]
    for c, first in enumerate(range(0, len(blocks), per_cluster)):
        body = uint_el(TIMECODE, first * 20)
        if extras:
            body = el(CRC32, b"\0\0\0\0") + body + el(VOID, bytes(3)) + el(0xA7, b"\x10") + el(0x4D4D, b"?")
        for k, frames in enumerate(blocks[first:first + per_cluster]):
            last = first + k == len(blocks) - 1
            if video_first and k % 10 == 0:
                size = 2 * 1024 * 1024 if (c, k) == (0, 0) else 100 + 37 * k
                body += el(SIMPLEBLOCK, block_payload(1, k, [bytes([k % 251]) * size]))
            if vorbis_only:
                body += el(SIMPLEBLOCK, block_payload(1, k, [b"\x00vorbis"]))
                continue
            padded = last and discard_ns is not None
            if padded or blockgroups:
                inner = el(BLOCK, block_payload(audio, k, frames, lacing, flags=0))
                pad = el(DISCARDPADDING, discard_ns.to_bytes(4, "big", signed=True)) if padded else b""
                extra = uint_el(BLOCKDURATION, 20) + (el(REFERENCEBLOCK, b"\xec") if extras else b"")
                body += el(BLOCKGROUP, pad + inner + extra if discard_first else inner + extra + pad)
            else:
                body += el(SIMPLEBLOCK, block_payload(audio, k, frames, lacing))
        seg += el(CLUSTER, body, UNKNOWN if unknown_cluster else None)
        if extras and c == 0:
            seg += el(CUES, el(0xBB, uint_el(0xB3, 0)))
    if extras:
        seg += el(ATTACHMENTS, el(0x61A7, str_el(0x466E, "a.txt") + el(0x465C, b"hello")))
        seg += el(TAGS, b"")
    return ebml_header(doctype) + el(SEGMENT, seg, UNKNOWN if unknown_segment else None)


def feed_all(demuxer, data: bytes, cuts=()) -> tuple[list[bytes], list[tuple[int, int]]]:
    """Feed ``data`` split at ``cuts`` and flush: (packets, [(index of a packet, trim_end)])."""
    packets, trims = [], []
    bounds = [0, *sorted(cuts), len(data)]
    for a, b in zip(bounds, bounds[1:]):
        packets += demuxer.feed(data[a:b])
        if demuxer.trim_end:
            trims.append((len(packets) - 1, demuxer.trim_end))
    packets += demuxer.flush()
    if demuxer.trim_end:
        trims.append((len(packets) - 1, demuxer.trim_end))
    return packets, trims
