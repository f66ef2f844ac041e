"""Raw PCM: G.711 mu-law, downmixing, and the fused raw-PCM path (compiled; see pcm.pyx)."""

from typing import Final, Literal, TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

ENCODINGS: Final[tuple[str, ...]]
MAX_CHANNELS: Final[int]

def mulaw_to_s16(data: Buffer) -> bytes:
    """Decode G.711 mu-law bytes to s16le (2 output bytes per input byte), exact for all 256 codes."""

def downmix_s16(data: Buffer, channels: int) -> bytes:
    """Average interleaved s16le frames of 1-8 channels to mono s16le.

    Each output sample is the mean of its frame, rounded half away from zero (so -1.5 -> -2 and
    1.5 -> 2: symmetric around zero, no DC offset); the sum is taken in 32 bits, so nothing
    overflows. Raises ValueError if channels is outside 1..8 and AudioFormatError if data is not a
    whole number of frames.
    """

class PcmConverter:
    """Raw PCM to mono s16le at out_rate: decode, downmix and resample in one call.

    ``PcmConverter(encoding, in_rate, channels, out_rate)`` with encoding ``"pcm_s16le"`` or
    ``"pcm_mulaw"``, in_rate one of resample.RATES, channels 1-8, out_rate 16000, 24000 or in_rate
    (then only decoding and downmixing; s16 mono at its own rate is passed through, and a bytes
    input is returned as is). Invalid arguments raise ValueError.

    The output equals ``Resampler(in_rate, out_rate)`` applied to
    ``downmix_s16(mulaw_to_s16(data), channels)`` and is identical however the input is split; a
    partial frame (odd byte count, incomplete multi-channel frame) waits for the next feed(). The GIL
    is released while samples are processed.
    """

    encoding: Final[Literal["pcm_s16le", "pcm_mulaw"]]
    in_rate: Final[int]
    channels: Final[int]
    out_rate: Final[int]

    def __init__(self, encoding: str, in_rate: int, channels: int, out_rate: int) -> None: ...
    def feed(self, data: Buffer) -> bytes:
        """Consume input bytes (any buffer); return mono s16le output now computable."""
    def flush(self) -> bytes:
        """End of stream: return the resampler's tail.

        Raises AudioFormatError, saying how many bytes of a partial frame are left at which byte
        offset, if the input was not a whole number of frames. Afterwards feed() raises ValueError
        until reset(); a second flush() returns b"".
        """
    def reset(self) -> None:
        """Forget all input and start a new stream."""
    @property
    def duration(self) -> float:
        """Seconds of input audio consumed so far (complete frames / in_rate)."""
    @property
    def latency(self) -> float:
        """Worst-case latency the resampler adds, in seconds (0.0 without resampling)."""
