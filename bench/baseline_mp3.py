"""The straightforward MP3 path the Cython core is measured against.

PyAV (FFmpeg's parser and mp3float decoder) decodes each chunk as it arrives; python-soxr's
``ResampleStream`` at HQ brings the float samples to 16 kHz; numpy turns them into s16le bytes.
This is what one would write without a compiled core, one Python object per frame and per step.
"""

from __future__ import annotations

import av
import numpy as np
import soxr

_EMPTY = np.zeros(0, dtype=np.float32)


class PyAVMp3Decoder:
    """Streaming MP3 to float32 mono (channels averaged) with PyAV."""

    def __init__(self) -> None:
        self._ctx = av.CodecContext.create("mp3float", "r")

    def _decode(self, packets) -> np.ndarray:
        out = []
        for packet in packets:
            for frame in self._ctx.decode(packet):
                planes = frame.to_ndarray()  # fltp: (channels, samples)
                out.append(planes[0] if planes.shape[0] == 1 else planes.mean(axis=0, dtype=np.float32))
        if not out:
            return _EMPTY
        return out[0] if len(out) == 1 else np.concatenate(out)

    def feed(self, data: bytes) -> np.ndarray:
        return self._decode(self._ctx.parse(data))

    def flush(self) -> np.ndarray:
        return self._decode([*self._ctx.parse(None), None])


class BaselineMp3To16k:
    """PyAV decode + python-soxr HQ stream to ``out_rate``, returning s16le bytes like the core."""

    def __init__(self, in_rate: int = 44100, out_rate: int = 16000) -> None:
        self._decoder = PyAVMp3Decoder()
        self._resampler = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def _s16(self, samples: np.ndarray) -> bytes:
        return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()

    def feed(self, data: bytes) -> bytes:
        return self._s16(self._resampler.resample_chunk(self._decoder.feed(data)))

    def flush(self) -> bytes:
        return self._s16(self._resampler.resample_chunk(self._decoder.flush(), last=True))
