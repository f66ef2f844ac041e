"""Pure-Python G.711 mu-law decoder, written from the recommendation's description (test oracle).

G.711 (11/88), section 2 and Table 2a: a mu-law character is a sign bit, a 3-bit segment number and a
4-bit position within the segment, transmitted with every bit inverted. Segment s (0-7) covers the
14-bit magnitudes from ``SEGMENT_START[s]`` in steps of ``2 ** (s + 1)``; the decoder output for
position q is the middle of that step. Zero is coded twice (+0 and -0). The 14-bit value is returned
scaled to 16 bits (x 4), the convention of every s16 mu-law decoder.
"""

from __future__ import annotations

# First decision value of each segment, in 14-bit units (the mu = 255 law's piecewise-linear chords
# with endpoints 0, 31, 95, 223, 479, 991, 2015, 4063, 8159).
SEGMENT_START = (0, 31, 95, 223, 479, 991, 2015, 4063)


def decode_mulaw(code: int) -> int:
    """Decode one mu-law byte to a signed 16-bit sample."""
    if not 0 <= code <= 255:
        raise ValueError(code)
    bits = code ^ 0xFF  # undo the transmission inversion
    negative = bool(bits & 0x80)
    segment = (bits >> 4) & 0x7
    position = bits & 0x0F
    step = 2 ** (segment + 1)
    if segment == 0:
        # The first interval of segment 0 is half a step wide (0 to 1), so its outputs are 0, 2, ... 30.
        magnitude = position * step
    else:
        magnitude = SEGMENT_START[segment] + position * step + step // 2
    value = 4 * magnitude
    return -value if negative else value


def decode(data: bytes) -> list[int]:
    return [decode_mulaw(b) for b in data]
