"""The straightforward raw-PCM path the Cython core is measured against.

numpy decodes mu-law with a 256-entry lookup table and averages the channels; python-soxr's
``ResampleStream`` at HQ resamples; numpy turns the result back into s16le bytes. This is what one
would write without a compiled core: a few numpy objects per frame and per step.
"""

from __future__ import annotations

import numpy as np
import soxr


def mulaw_table() -> np.ndarray:
    """G.711 mu-law expansion of every code, as s16."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


class BaselinePcm:
    """Same interface as PcmConverter: feed(bytes) -> s16le mono bytes at out_rate; flush()."""

    def __init__(self, encoding: str, in_rate: int, channels: int, out_rate: int) -> None:
        self._table = mulaw_table() if encoding == "pcm_mulaw" else None
        self._channels = channels
        self._stream = (soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
                        if out_rate != in_rate else None)

    def _mono(self, data: bytes) -> np.ndarray:
        if self._table is not None:
            x = self._table[np.frombuffer(data, dtype=np.uint8)]
        else:
            x = np.frombuffer(data, dtype="<i2")
        ch = self._channels
        if ch > 1:
            # Strided sums in place: numpy's reshape(-1, ch).mean(axis=1) is 4x slower on 20 ms frames.
            s = x[0::ch].astype(np.int32)
            for c in range(1, ch):
                s += x[c::ch]
            s += ch // 2
            s //= ch
            x = s.astype(np.int16)
        return x

    def feed(self, data: bytes) -> bytes:
        x = self._mono(data)
        if self._stream is not None:
            x = self._stream.resample_chunk(x)
        return x.tobytes()

    def flush(self) -> bytes:
        if self._stream is None:
            return b""
        return self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True).tobytes()
