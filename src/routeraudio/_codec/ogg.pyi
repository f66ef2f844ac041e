"""Streaming Ogg demuxer for Ogg Opus (RFC 3533 pages, RFC 7845 Opus mapping)."""

from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

MAX_PAGE: int
"""65307: the largest page the Ogg format can express; the most this demuxer ever buffers."""
MAX_PACKET: int
"""61440: larger audio packets are rejected (48 frames of at most 1275 bytes, RFC 6716's maximum,
plus headers stay below it)."""

def ogg_crc32(data: Buffer) -> int:
    """Ogg's CRC-32 of ``data`` (polynomial 0x04c11db7, zero initial value, no reflection, no final
    XOR); a page's checksum is this over the page with its checksum field zeroed."""

class OggDemuxer:
    """Push Ogg bytes in any chunks, get the Opus audio packets out, identical however it is split.

    What is accepted: a physical stream that starts at its first byte (the first page has the BOS
    flag; a stream joined mid-way is rejected), version 0 pages with valid CRCs, lacing and packets
    spanning pages, multiplexed streams (the FIRST logical stream whose first packet is OpusHead is
    used; other serials are ignored), and chained streams (see ``head_changed``). OpusHead is
    validated (``parse_opus_head``) and OpusTags skipped without buffering it. Everything else raises
    ``AudioFormatError`` naming what was expected, what was found and the byte offset: bytes that are
    not Ogg (with a guess at what they are), CRC mismatches, missing pages (sequence gaps), a non-Opus
    stream ("expected an Opus stream, found Vorbis ..."), unsupported channel mappings, oversized
    packets, truncation at ``flush()``. No resynchronisation: a corrupted page ends the stream.

    Memory is bounded: at most one partial page (65307 bytes) and one packet under assembly
    (61440 bytes) are buffered, besides unparsed caller bytes kept after a chained-stream stop.
    """

    def __init__(self) -> None: ...
    def feed(self, data: Buffer) -> list[bytes]:
        """Consume a chunk; return the complete audio packets now available, in order. Header
        packets (OpusHead, OpusTags) are consumed, not returned. ``trim_end`` refers to the last
        packet of this list. Raises ``ValueError`` after ``flush()``."""
    def flush(self) -> list[bytes]:
        """End of input: return what remains, or raise ``AudioFormatError`` if the stream ended inside
        a page or a packet (with the offset of that page), or never contained an Opus stream. The
        demuxer is then closed until ``reset()``; calling ``flush()`` again returns ``[]``.
        If it stops at a chained stream (``head_changed``), call ``flush()`` again to continue."""
    def reset(self) -> None:
        """Forget everything; the next byte fed is byte 0 of a new physical stream."""
    @property
    def opus_head(self) -> bytes | None:
        """The raw OpusHead packet of the current logical stream, once seen."""
    @property
    def channels(self) -> int:
        """Channel count from OpusHead (1 or 2); 0 before it is parsed."""
    @property
    def pre_skip(self) -> int:
        """Samples at 48 kHz to drop from the start of the decoded stream; 0 before OpusHead."""
    @property
    def output_gain(self) -> int:
        """OpusHead's output gain, Q7.8 dB; 0 before OpusHead."""
    @property
    def trim_end(self) -> int:
        """48 kHz samples to drop from the END of the decoded output of the LAST packet returned by
        the most recent ``feed()``/``flush()``: non-zero only when the final page's granule position
        ends the stream before its last packet does (Ogg end trimming). Packets that the final
        granule trims entirely are not returned at all."""
    @property
    def head_changed(self) -> bool:
        """True when the most recent call stopped at the start of a chained stream (a new BOS page
        with OpusHead after the current stream's EOS). Everything returned belongs to the previous
        stream, and the properties still describe it. Decode those packets, then call ``feed(b"")``
        (or ``flush()`` again at end of input): that call parses the new OpusHead, after which the
        properties describe the new stream, so create a new ``OpusDecoder`` from them. Ignoring the
        flag loses nothing: the next ``feed()`` continues from the same place.

        Typical loop::

            packets = demux.feed(data)
            pcm = decode(packets, demux.trim_end)
            while demux.head_changed:
                packets = demux.feed(b"")
                decoder = OpusDecoder(demux.channels, rate, demux.pre_skip, demux.output_gain)
                pcm += decode(packets, demux.trim_end)
        """
    @property
    def offset(self) -> int:
        """Byte offset in the physical stream of the next page to be parsed."""
