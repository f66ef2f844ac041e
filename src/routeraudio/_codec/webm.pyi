"""Streaming WebM/Matroska demuxer for Opus audio (what MediaRecorder's ``audio/webm;codecs=opus`` writes)."""

from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

class WebmDemuxer:
    """Push WebM bytes in, get the Opus packets of the first ``A_OPUS`` track out.

    Handles known- and unknown-size Segment and Cluster, SimpleBlock and BlockGroup/Block,
    Xiph/EBML/fixed-size lacing, and skips (without buffering) Void, CRC-32, SeekHead, Info, Cues,
    Tags, Chapters, Attachments, unknown elements and the blocks of other tracks. Output does not
    depend on how the input is split.

    Only what must be parsed whole is buffered, each with a cap: the EBML header (4 KiB), Tracks
    (256 KiB) and one Block/SimpleBlock of the Opus track (1 MiB). Bad input raises
    ``AudioFormatError`` naming what was expected, what was found and the byte offset; the error is
    sticky (every later call raises it again) until ``reset()``.

    Track metadata (``opus_head``, ``channels``, ``pre_skip``, ``output_gain``,
    ``sampling_frequency``) is set once the Tracks element has been read, which is before the first
    packet is returned; until then ``channels`` is 0.
    """

    def __init__(self) -> None: ...
    def feed(self, data: Buffer) -> list[bytes]:
        """Consume a chunk (any buffer: bytes, bytearray, memoryview...) and return the complete Opus
        packets now available, in stream order. Laced blocks give several packets; empty laced
        frames are dropped.

        ``trim_end`` applies to the last packet returned. So that one value suffices, a call returns
        packets up to and including the first one that carries a DiscardPadding trim; the packets
        after it are returned by the next call, even ``feed(b"")``, without waiting for input.

        Raises ``AudioFormatError`` for input that is not WebM/Opus (the message names an MP3, Ogg,
        WAV... found at offset 0), a Vorbis track, malformed elements or lacing, sizes that overrun
        their parent or exceed the caps, concatenated WebM streams, or a Cluster before Tracks.
        Raises ``RuntimeError`` after ``flush()``.
        """
    def flush(self) -> list[bytes]:
        """End of stream: return the packets still held back (see ``feed``), all of them; ``trim_end``
        is that of the last. The demuxer is then closed; a second ``flush()`` returns ``[]``.

        Lenient: a stream may end at any element boundary while only unknown-size masters are open
        (MediaRecorder just stops), and an empty stream is not an error. Raises ``AudioFormatError``
        with the offsets if the stream ended inside an element header, inside an element's payload
        (a truncated block, say), or inside a known-size Segment/Cluster/BlockGroup.
        """
    def reset(self) -> None:
        """Forget everything and expect a new stream from its first byte."""
    @property
    def opus_head(self) -> bytes | None:
        """The Opus track's CodecPrivate (an OpusHead, validated), or None if it has none."""
    @property
    def channels(self) -> int:
        """Channel count: from OpusHead, else the track's Channels element, else 1; 0 until known."""
    @property
    def pre_skip(self) -> int:
        """Samples at 48 kHz to drop from the start of the decoded stream: CodecDelay (ns, rounded to
        the nearest sample) if the track has one, else OpusHead's pre-skip, else 0."""
    @property
    def output_gain(self) -> int:
        """OpusHead's output gain, Q7.8 dB (0 without an OpusHead)."""
    @property
    def trim_end(self) -> int:
        """Samples at 48 kHz to drop from the end of the decoded output of the last packet returned by
        the most recent ``feed()``/``flush()``: its BlockGroup's DiscardPadding (ns, rounded to the
        nearest sample, at most 5760); 0 otherwise. A negative DiscardPadding (padding at the start)
        is ignored. If one call's final batch holds several trimmed packets (only possible in
        ``flush()``), only the last one's trim is reported."""
    @property
    def sampling_frequency(self) -> float:
        """The track's SamplingFrequency element, for information (Opus always decodes at 48 kHz);
        0.0 if absent or not yet known."""
