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



# libmpg123 alone, configured like Mp3Decoder (mono mix, s16 little-endian, gapless, no readahead)
# but without its framing layer: the stream is fed in ``chunk``-byte pieces and every frame decoded
# as soon as it can be, all in C, so that no per-call Python cost hides in the floor.
_BARE_SOURCE = r"""
#include <mpg123.h>
long bare_decode(const unsigned char *data, long size, long chunk, int down_sample) {
    int err = MPG123_OK;
    long samples = 0;
    mpg123_handle *mh = mpg123_new(NULL, &err);
    const long *rates;
    size_t n_rates, i;
    if (mh == NULL) return -1;
    mpg123_param(mh, MPG123_FLAGS, MPG123_QUIET | MPG123_MONO_MIX | MPG123_GAPLESS
                 | MPG123_FORCE_ENDIAN | MPG123_NO_READAHEAD, 0.0);
    if (mpg123_param(mh, MPG123_DOWN_SAMPLE, down_sample, 0.0) != MPG123_OK) samples = -1;
    mpg123_format_none(mh);
    mpg123_rates(&rates, &n_rates);
    for (i = 0; i < n_rates; i++) mpg123_format(mh, rates[i], MPG123_MONO, MPG123_ENC_SIGNED_16);
    if (samples == 0 && mpg123_open_feed(mh) != MPG123_OK) samples = -1;
    for (long at = 0; samples >= 0 && at < size; at += chunk) {
        unsigned char *audio;
        size_t nbytes;
        int ret;
        mpg123_feed(mh, data + at, size - at < chunk ? size - at : chunk);
        while ((ret = mpg123_decode_frame(mh, NULL, &audio, &nbytes)) != MPG123_NEED_MORE) {
            if (ret == MPG123_OK) samples += nbytes / 2;
            else if (ret != MPG123_NEW_FORMAT) { samples = -1; break; }
        }
    }
    mpg123_delete(mh);
    return samples;
}
"""


class BareMpg123:
    """libmpg123 alone (see _BARE_SOURCE), compiled on first use with the C compiler Python was
    built with; ``available()`` is False without a compiler or libmpg123's headers.

    ``feed()`` takes the whole stream and returns the count of samples decoded (as a ``range``,
    so that ``len()`` works without a copy). ``down_sample=1`` asks for half-rate synthesis.
    """

    chunk = 160
    _fn = None
    _tried = False

    @classmethod
    def available(cls) -> bool:
        if not cls._tried:
            cls._tried = True
            cls._fn = cls._build()
        return cls._fn is not None

    @staticmethod
    def _build():
        import ctypes
        import shlex
        import subprocess
        import sysconfig
        import tempfile
        from pathlib import Path

        out = Path(tempfile.mkdtemp(prefix="bare_mpg123_"))
        (out / "bare.c").write_text(_BARE_SOURCE)
        cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
        cmd = [*cc, "-O2", "-shared", "-fPIC", "-o", str(out / "bare.so"), str(out / "bare.c"), "-lmpg123"]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            return None
        fn = ctypes.CDLL(str(out / "bare.so")).bare_decode
        fn.restype = ctypes.c_long
        fn.argtypes = [ctypes.c_char_p, ctypes.c_long, ctypes.c_long, ctypes.c_int]
        return fn

    def __init__(self, down_sample: int = 0) -> None:
        if not self.available():
            raise RuntimeError("cannot build the bare libmpg123 harness")
        self.down_sample = down_sample

    def feed(self, data: bytes) -> range:
        samples = self._fn(data, len(data), self.chunk, self.down_sample)
        if samples < 0:
            raise RuntimeError("libmpg123 failed")
        return range(samples)

    def flush(self) -> bytes:
        return b""
