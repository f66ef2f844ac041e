"""Opus decoding with libopus: packets in, mono s16le at the target rate out.

Positions are kept in 48 kHz samples (the unit of OpusHead's pre-skip, Ogg granule positions and
WebM's CodecDelay) and mapped to the output rate by flooring; for a whole stream the output length is
``end // k - pre_skip // k`` samples with ``k = 48000 // out_rate``.
"""

from typing import NamedTuple, TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

OUT_RATES: tuple[int, ...]
"""The rates libopus decodes to directly: 8000, 12000, 16000, 24000, 48000."""
MAX_PACKET_SAMPLES_48K: int
"""5760: the longest packet (120 ms) RFC 6716 allows, in 48 kHz samples."""
OPUS_ERRORS: dict[int, tuple[str, str]]
"""libopus error code -> (constant name, what it means for the user's audio)."""
LIBOPUS_VERSION: str
"""The linked libopus, e.g. ``"libopus 1.3.1"``."""

class OpusHead(NamedTuple):
    """The fields of an Ogg Opus identification header (RFC 7845 section 5.1)."""

    version: int
    channels: int
    pre_skip: int
    """Samples at 48 kHz to drop from the start of the decoded output."""
    input_rate: int
    """The encoder's input rate: informational only, Opus always decodes at 8..48 kHz."""
    output_gain: int
    """Gain to apply to the output, Q7.8 dB (signed)."""
    mapping_family: int

def parse_opus_head(data: Buffer) -> OpusHead:
    """Parse and validate an OpusHead packet.

    Accepts version 1 and the versions RFC 7845 declares compatible (upper nibble 0), mapping family 0
    with 1 or 2 channels, and family 1 when it describes a plain mono/stereo stream. Raises
    ``AudioFormatError`` naming what was found otherwise (bad magic, 0 channels, surround family 1,
    other families).
    """

def packet_samples(packet: Buffer) -> int:
    """Duration of one Opus packet in 48 kHz samples, from its TOC (and frame count) byte alone.

    Raises ``AudioFormatError`` for an empty packet, a code 3 packet without its frame count byte,
    zero frames, or more than 120 ms. Cheap: no decoding.
    """

def opus_error_message(code: int, what: str = "") -> str:
    """The user-facing text for libopus error ``code``: ``OPUS_ERRORS`` plus ``opus_strerror``."""

class OpusDecoder:
    """Streaming Opus decoder: one logical stream's packets in, mono s16le at ``out_rate`` out.

    ``channels`` is the stream's channel count (1 or 2, from OpusHead). The output is always mono:
    libopus is opened with one output channel and folds stereo itself, and decodes straight to
    ``out_rate`` (no 48 kHz decode + resample). The first ``pre_skip`` samples (48 kHz units, scaled
    to ``out_rate``) of the stream are dropped, across packets. ``output_gain`` (Q7.8 dB) is applied
    by libopus.

    Every frame size from 2.5 to 120 ms, mono and stereo packets, SILK, CELT and hybrid modes are
    decoded. Packets are validated from their TOC before libopus sees them; a malformed packet raises
    ``AudioFormatError`` with libopus's reason and the packet's index in the stream. An empty packet
    is an error too (RFC 6716 requires a TOC byte), not a packet-loss marker: over a reliable
    connection an empty packet means a broken muxer, and concealing it would hide that.

    Memory is fixed: one 120 ms scratch buffer; output is allocated once per call at its exact size.
    The GIL is released while libopus runs, so decoders of different streams run in parallel
    threads; using one decoder object from two threads at once raises ``RuntimeError``.
    """

    def __init__(self, channels: int, out_rate: int, pre_skip: int = 0, output_gain: int = 0) -> None: ...
    @property
    def channels(self) -> int: ...
    @property
    def out_rate(self) -> int: ...
    @property
    def pre_skip(self) -> int:
        """Pre-skip in 48 kHz samples, as given."""
    @property
    def output_gain(self) -> int: ...
    @property
    def samples_decoded(self) -> int:
        """Audio returned so far (after pre-skip and trimming), in 48 kHz samples: ``/ 48000`` gives
        seconds, for metering."""
    @property
    def packets_decoded(self) -> int:
        """Packets decoded so far (the index the next packet will have in error messages)."""
    def decode(self, packet: Buffer, trim_end: int = 0) -> bytes:
        """Decode one packet; drop ``trim_end`` 48 kHz samples (scaled to ``out_rate``, at most the
        packet's duration) from the end of its output. Returns mono s16le."""
    def decode_many(self, packets: list[bytes], trim_end_of_last: int = 0) -> bytes:
        """Decode ``packets`` in order with one call and one output allocation; ``trim_end_of_last``
        applies to the last packet (a demuxer's ``trim_end``). Every packet is validated before any is
        decoded."""
    def flush(self) -> bytes:
        """End of stream. Opus has no decoder delay beyond pre-skip, so this is always ``b""``."""
    def reset(self) -> None:
        """Start a new stream: decoder state, position (pre-skip applies again) and counters."""

def _bench_decode_loop(packets: list[bytes], out_rate: int) -> int:
    """Benchmark floor only: bare libopus decode of ``packets`` in a C loop; returns nanoseconds."""
