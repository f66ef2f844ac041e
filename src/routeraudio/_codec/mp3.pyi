"""Streaming MP3 (MPEG-1/2/2.5 Layer III) decoder on libmpg123's feed API.

Output is s16le mono at the stream's native rate, mixed (L + R) / 2 by libmpg123, or at half that
rate for untagged 44.1/48 kHz streams when a ``target_rate`` allows it (``output_rate``). Gapless: with a
LAME/Info header the encoder delay and padding are trimmed, so the sample count equals what the
encoder was given; streams without one decode untrimmed. ID3v2, ID3v1 and APEv2 tags are skipped,
Xing/Info header frames are never audio, garbage is skipped up to ``MAX_GARBAGE_BYTES`` between
frames. A change of sample rate inside a stream raises ``AudioFormatError``.
"""

from typing import Final, TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

MAX_GARBAGE_BYTES: Final[int]
"""Bytes without a confirmed MPEG frame (at the start or after losing sync) before the stream is rejected."""

MAX_TAG_BYTES: Final[int]
"""Largest ID3v2/APE tag accepted (tags are skipped, never buffered)."""

MISLABEL_MAGIC: Final[tuple[tuple[int, bytes, str], ...]]
"""(offset, magic bytes, description) of formats that are often sent by mistake as mp3."""

def describe_bytes(head: Buffer) -> str:
    """The first bytes of ``head`` in hex, with the format they look like: for error messages."""

class Mp3Decoder:
    """Push MP3 bytes in any chunking; get PCM as soon as each frame is complete.

    Latency: a frame is decoded as soon as its last byte arrives, except the first frame of a
    stream (and the first after garbage), which waits for the 4 header bytes of the frame after
    it, or for ``flush()``. Gapless trimming adds no latency.

    Errors (``routeraudio.errors.AudioFormatError``, message with the byte offset) are sticky:
    once raised, ``feed()`` and ``flush()`` raise the same error until ``reset()``. One decoder
    must not be used from two threads at once (that raises ``RuntimeError``); separate decoders
    decode in parallel, the GIL is released while decoding.
    """

    def __init__(self, target_rate: int = 0) -> None:
        """``target_rate``: the rate the caller will resample the output to (0: none).

        When it is given, a 44.1 or 48 kHz stream that starts without a Xing/Info header frame, and
        whose half rate is >= ``target_rate``, is decoded at half its native rate by libmpg123
        (``output_rate`` = ``sample_rate`` / 2): output sample k is the full-rate output's sample
        2k with the content above native / 4 removed by the synthesis filter bank. Streams with
        that header (gapless trimming) and all other rates are decoded at the native rate.
        Raises ``ValueError`` if it is negative.
        """
    def feed(self, data: Buffer) -> bytes:
        """Push a chunk of the stream; return all PCM (s16le mono) that became decodable.

        Raises ``AudioFormatError`` for a stream that is not MP3 (named when recognisable: Ogg,
        WebM, FLAC, MP4 at once; WAV and others after ``MAX_GARBAGE_BYTES``), a sample-rate
        change, too much garbage or an oversized tag; ``ValueError`` after ``flush()``.
        """
    def flush(self) -> bytes:
        """End of stream: return the PCM that remains. The decoder is then closed.

        Raises ``AudioFormatError`` if the stream held bytes but not one complete frame. A
        truncated last frame or trailing garbage is dropped silently.
        """
    def reset(self) -> None:
        """Forget the current stream and any error; ready for a new stream (same target_rate)."""
    @property
    def sample_rate(self) -> int:
        """Native sample rate in Hz; 0 until the first frame is decoded."""
    @property
    def output_rate(self) -> int:
        """Rate of the returned PCM in Hz: ``sample_rate`` or half of it; 0 until the first frame."""
    @property
    def target_rate(self) -> int:
        """The ``target_rate`` given to the constructor (0: none)."""
    @property
    def channels(self) -> int:
        """Channels of the latest frame (1 or 2; the output is mono regardless); 0 before it."""
    @property
    def frames_decoded(self) -> int:
        """MPEG audio frames decoded (not counting the Xing/Info header frame)."""
    @property
    def samples_decoded(self) -> int:
        """Mono samples returned so far, at ``output_rate``, after gapless trimming."""
