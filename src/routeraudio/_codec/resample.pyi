"""Streaming fixed-ratio polyphase resampler for mono s16le audio (compiled; see resample.pyx).

Rate pairs: from each of RATES to each of OUTPUT_RATES, and any rate to itself (a copy). The filters
are linear-phase Kaiser-windowed sincs designed for low latency (``delay`` and ``latency`` below are
the properties of the same names; rejection as measured by tests/unit/test_resample.py):

==============  ==========  ========================  =======  =========  =========
pair            passband    stopband from             delay    latency    rejection
==============  ==========  ========================  =======  =========  =========
8000 -> 16000   0-3500 Hz   4500 Hz (images)          1.94 ms  1.88 ms    76.1 dB
8000 -> 24000   0-3500 Hz   4500 Hz (images)          1.92 ms  1.83 ms    68.6 dB
16000 -> 24000  0-7000 Hz   9000 Hz (images)          0.96 ms  0.94 ms    68.6 dB
22050 -> 16000  0-7000 Hz   9000 Hz (aliases)         1.09 ms  1.11 ms    62.8 dB
22050 -> 24000  0-9647 Hz   12403 Hz (images)         0.73 ms  0.72 ms    64.6 dB
24000 -> 16000  0-7000 Hz   9000 Hz (aliases)         0.96 ms  0.98 ms    66.3 dB
44100 -> 16000  0-7000 Hz   9000 Hz (aliases)         1.56 ms  1.60 ms    62.7 dB
44100 -> 24000  0-10500 Hz  13500 Hz (aliases)        0.63 ms  0.65 ms    67.9 dB
48000 -> 16000  0-7000 Hz   9000 Hz (aliases)         0.96 ms  1.00 ms    69.5 dB
48000 -> 24000  0-10500 Hz  13500 Hz (aliases)        0.65 ms  0.67 ms    69.7 dB
==============  ==========  ========================  =======  =========  =========

The passband edge is 0.875 x the lower Nyquist frequency (PASSBAND_EDGE) and flat within +-0.01 dB;
the stopband starts at 1.125 x Nyquist with 62 dB design attenuation, for aliases of input above it
(decimation) and images of the passband (interpolation). Input between the lower Nyquist frequency
and the stopband edge folds into the transition band above the passband edge. 44100 -> 16000 runs
as two stages (a half-band filter to 22050 Hz, then the 22050 -> 16000 filter).
"""

from typing import Final, TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

RATES: Final[tuple[int, ...]]
OUTPUT_RATES: Final[tuple[int, ...]]
PASSBAND_EDGE: Final[dict[tuple[int, int], float]]
"""Passband edge as a fraction of the lower Nyquist frequency, per (in_rate, out_rate)."""
STOPBAND_DB: Final[float]

class Resampler:
    """Streaming resampler: mono s16le in, mono s16le out, from in_rate to out_rate.

    Output sample ``j`` is aligned with input time ``j / out_rate`` (no leading delay to trim), and
    feed() returns every output sample that the input so far determines, and no other; flush()
    returns the rest. Over a whole stream of ``n`` input samples the output has exactly
    ``ceil(n * out_rate / in_rate)`` samples. The output is bit-identical however the input is split
    into feed() calls (odd byte counts included: a trailing half sample waits for the next feed()).

    Arithmetic is float32; outputs are rounded to nearest and saturated to s16. The GIL is released
    while samples are processed; one Resampler must not be fed from two threads at once.

    Raises ValueError for a rate pair outside RATES x (OUTPUT_RATES + {in_rate}).
    """

    in_rate: Final[int]
    out_rate: Final[int]

    def __init__(self, in_rate: int, out_rate: int) -> None: ...
    def feed(self, data: Buffer) -> bytes:
        """Consume s16le mono samples (any buffer); return the output samples now computable."""
    def flush(self) -> bytes:
        """End of stream: return the remaining output (the input is padded with silence).

        Raises AudioFormatError if the stream ended with half a sample. Afterwards feed() raises
        ValueError until reset(); a second flush() returns b"".
        """
    def reset(self) -> None:
        """Forget all input and start a new stream (the filter design is kept)."""
    @property
    def ratio(self) -> float:
        """out_rate / in_rate."""
    @property
    def delay(self) -> float:
        """Filter delay in seconds: the half-length of the linear-phase filter.

        An input sample at time t contributes to output samples up to t + delay, so the output
        sample for time t can only be emitted once the input up to t + delay has arrived.
        """
    @property
    def latency(self) -> float:
        """Worst-case added latency in seconds, over every way of splitting the input.

        After any feed(), let t_in be the time of the newest input sample received and t_out the time
        (on the same timeline) of the newest output sample returned; latency is the maximum of
        t_in - t_out. It equals delay, minus up to one output period when interpolating, plus under
        one input period of sampling-grid granularity when decimating. Nothing computable is
        withheld: the output sample after t_out reads input newer than t_in.
        """
