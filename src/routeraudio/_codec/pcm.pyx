# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Raw PCM: G.711 mu-law decoding, downmixing to mono, and the fused raw-PCM path (PcmConverter).

PcmConverter decodes, downmixes and resamples in one call with one output allocation: each block of
input frames is decoded and averaged straight into the resampler's float input slot (no intermediate
s16 buffer), and the output bytes object is allocated once at its exact final size
(Resampler.out_count). Downmixing takes the mean of the channels rounded half away from zero, the
same integer the standalone downmix_s16() returns, so PcmConverter is exactly the composition
Resampler(downmix_s16(mulaw_to_s16(data))).
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_CheckExact
from libc.stdint cimport int16_t, int32_t, int64_t
from libc.string cimport memcpy

from routeraudio._codec.resample cimport Resampler, RS_BLOCK
from routeraudio._codec.resample import RATES, OUTPUT_RATES
from routeraudio.errors import AudioFormatError

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    static int16_t pc_mulaw[256];

    /* Mean of C channel values summing to s, rounded half away from zero. With C a constant the
       division becomes a multiply; for C = 2 the branch-free form lets gcc vectorise. */
    #define PC_MEAN(s, C) ((C) == 1 ? (s) : (C) == 2 ? (((s) + 1 + ((s) >> 31)) >> 1) \\
                           : (s) >= 0 ? ((s) + (C) / 2) / (C) : -((-(s) + (C) / 2) / (C)))

    static inline int32_t pc_load_s16(const unsigned char *p, Py_ssize_t i) {
        int16_t v;
        memcpy(&v, p + 2 * i, 2);
        return v;
    }
    static inline int32_t pc_load_mulaw(const unsigned char *p, Py_ssize_t i) {
        return pc_mulaw[p[i]];
    }

    /* pc_mix_<enc>_<out>(src, n frames, channels, dst): decode and average n frames. */
    #define PC_MIX_C(LOAD, OUT_T, C)                                          \\
        for (Py_ssize_t i = 0; i < n; i++) {                                  \\
            int32_t s = 0;                                                    \\
            for (int ch = 0; ch < (C); ch++) s += LOAD(src, i * (C) + ch);    \\
            dst[i] = (OUT_T)PC_MEAN(s, (C));                                  \\
        }                                                                     \\
        return;
    #define PC_MIX(NAME, LOAD, OUT_T)                                                            \\
        static void NAME(const unsigned char *src, Py_ssize_t n, int channels, OUT_T *dst) {     \\
            switch (channels) {                                                                  \\
            case 1: PC_MIX_C(LOAD, OUT_T, 1)                                                     \\
            case 2: PC_MIX_C(LOAD, OUT_T, 2)                                                     \\
            case 3: PC_MIX_C(LOAD, OUT_T, 3)                                                     \\
            case 4: PC_MIX_C(LOAD, OUT_T, 4)                                                     \\
            case 5: PC_MIX_C(LOAD, OUT_T, 5)                                                     \\
            case 6: PC_MIX_C(LOAD, OUT_T, 6)                                                     \\
            case 7: PC_MIX_C(LOAD, OUT_T, 7)                                                     \\
            default: PC_MIX_C(LOAD, OUT_T, 8)                                                    \\
            }                                                                                    \\
        }
    PC_MIX(pc_mix_s16_s16, pc_load_s16, int16_t)
    PC_MIX(pc_mix_s16_f32, pc_load_s16, float)
    PC_MIX(pc_mix_mulaw_s16, pc_load_mulaw, int16_t)
    PC_MIX(pc_mix_mulaw_f32, pc_load_mulaw, float)
    """
    int16_t pc_mulaw[256]
    void pc_mix_s16_s16(const unsigned char* src, Py_ssize_t n, int channels, int16_t* dst) nogil
    void pc_mix_s16_f32(const unsigned char* src, Py_ssize_t n, int channels, float* dst) nogil
    void pc_mix_mulaw_s16(const unsigned char* src, Py_ssize_t n, int channels, int16_t* dst) nogil
    void pc_mix_mulaw_f32(const unsigned char* src, Py_ssize_t n, int channels, float* dst) nogil


cdef void _init_mulaw() noexcept:
    # G.711 mu-law expansion: the byte is sent inverted; 3 exponent bits e and 4 mantissa bits m give
    # the magnitude ((2m + 33) << e) - 33 in 14-bit units, i.e. ((8m + 132) << e) - 132 as s16.
    cdef int code, u, t
    for code in range(256):
        u = ~code & 0xFF
        t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
        pc_mulaw[code] = <int16_t>((0x84 - t) if (u & 0x80) else (t - 0x84))


_init_mulaw()

ENCODINGS = ("pcm_s16le", "pcm_mulaw")
MAX_CHANNELS = 8

cdef enum:
    S16 = 0
    MULAW = 1


def mulaw_to_s16(data):
    cdef Py_buffer view
    cdef bytes result
    cdef int16_t* out
    cdef const unsigned char* src
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        result = PyBytes_FromStringAndSize(NULL, 2 * view.len)
        out = <int16_t*>PyBytes_AS_STRING(result)
        src = <const unsigned char*>view.buf
        with nogil:
            pc_mix_mulaw_s16(src, view.len, 1, out)
        return result
    finally:
        PyBuffer_Release(&view)


def downmix_s16(data, int channels):
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"channels must be between 1 and {MAX_CHANNELS}, got {channels}")
    cdef Py_buffer view
    cdef bytes result
    cdef int16_t* out
    cdef const unsigned char* src
    cdef Py_ssize_t frames
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len % (2 * channels):
            raise AudioFormatError(
                f"s16le audio with {channels} channel(s) must be a multiple of {2 * channels} bytes "
                f"({channels} x 2-byte samples per frame), got {view.len} bytes: "
                f"{view.len % (2 * channels)} byte(s) of a partial frame at byte offset "
                f"{view.len - view.len % (2 * channels)}")
        frames = view.len // (2 * channels)
        result = PyBytes_FromStringAndSize(NULL, 2 * frames)
        out = <int16_t*>PyBytes_AS_STRING(result)
        src = <const unsigned char*>view.buf
        with nogil:
            pc_mix_s16_s16(src, frames, channels, out)
        return result
    finally:
        PyBuffer_Release(&view)


cdef class PcmConverter:
    """Raw PCM (s16le or mu-law, 1-8 channels) to mono s16le at out_rate; see pcm.pyi."""

    cdef readonly str encoding
    cdef readonly int in_rate
    cdef readonly int channels
    cdef readonly int out_rate
    cdef int enc
    cdef int frame_bytes
    cdef Resampler rs                # None when out_rate == in_rate
    cdef bint passthrough            # s16 mono, no resampling: output is the input
    cdef unsigned char pend[16]      # bytes of an incomplete frame, kept for the next feed()
    cdef int npend
    cdef int64_t frames              # complete frames consumed
    cdef bint done

    def __cinit__(self, str encoding, int in_rate, int channels, int out_rate):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be 'pcm_s16le' or 'pcm_mulaw', got {encoding!r}")
        if in_rate not in RATES:
            raise ValueError(f"in_rate must be one of {', '.join(map(str, RATES))} Hz, got {in_rate}")
        if not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be between 1 and {MAX_CHANNELS}, got {channels}")
        if out_rate != in_rate and out_rate not in OUTPUT_RATES:
            raise ValueError(f"out_rate must be 16000, 24000 or equal to in_rate ({in_rate}), got {out_rate}")
        self.encoding = encoding
        self.in_rate = in_rate
        self.channels = channels
        self.out_rate = out_rate
        self.enc = S16 if encoding == "pcm_s16le" else MULAW
        self.frame_bytes = channels * (2 if self.enc == S16 else 1)
        self.rs = Resampler(in_rate, out_rate) if out_rate != in_rate else None
        self.passthrough = self.rs is None and self.enc == S16 and channels == 1

    cdef Py_ssize_t _convert(self, const unsigned char* src, Py_ssize_t n, int16_t* out) noexcept nogil:
        # n complete frames -> mono output samples; returns how many were written.
        cdef Py_ssize_t done = 0, nb
        if self.rs is None:
            if self.passthrough:
                memcpy(out, src, 2 * n)
            elif self.enc == S16:
                pc_mix_s16_s16(src, n, self.channels, out)
            else:
                pc_mix_mulaw_s16(src, n, self.channels, out)
            return n
        while n > 0:
            nb = n if n < RS_BLOCK else RS_BLOCK
            if self.enc == S16:
                pc_mix_s16_f32(src, nb, self.channels, self.rs.slot())
            else:
                pc_mix_mulaw_f32(src, nb, self.channels, self.rs.slot())
            done += self.rs.run(nb, out + done)
            src += nb * self.frame_bytes
            n -= nb
        return done

    def feed(self, data):
        cdef Py_buffer view
        cdef const unsigned char* p
        cdef Py_ssize_t n, nframes, nout, k, need, got = 0
        cdef int fb = self.frame_bytes
        cdef bytes result
        cdef int16_t* out
        if self.done:
            raise ValueError("PcmConverter was flushed; call reset() to start a new stream")
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            p = <const unsigned char*>view.buf
            n = view.len
            nframes = (self.npend + n) // fb
            if self.passthrough and self.npend == 0 and not (n & 1) and PyBytes_CheckExact(data):
                self.frames += nframes
                return data  # immutable, so handing it back is a zero-cost copy
            nout = self.rs.out_count(nframes) if self.rs is not None else nframes
            result = PyBytes_FromStringAndSize(NULL, 2 * nout)
            if n == 0:
                return result
            out = <int16_t*>PyBytes_AS_STRING(result)
            with nogil:
                if self.npend:
                    need = fb - self.npend
                    if n < need:
                        memcpy(self.pend + self.npend, p, n)
                        self.npend += <int>n
                        n = 0
                    else:
                        memcpy(self.pend + self.npend, p, need)
                        got = self._convert(self.pend, 1, out)
                        self.npend = 0
                        p += need
                        n -= need
                k = n // fb
                if k:
                    got += self._convert(p, k, out + got)
                if n - k * fb:
                    self.npend = <int>(n - k * fb)
                    memcpy(self.pend, p + k * fb, self.npend)
            self.frames += nframes
            if got != nout:  # an internal invariant; never hand out unwritten bytes
                raise RuntimeError(f"PcmConverter produced {got} samples, expected {nout}")
            return result
        finally:
            PyBuffer_Release(&view)

    def flush(self):
        cdef bytes result
        cdef int16_t* out
        if self.done:
            return b""
        if self.npend:
            raise AudioFormatError(
                f"{self.encoding} audio with {self.channels} channel(s) ended inside a frame: "
                f"{self.npend} byte(s) left over at byte offset {self.frames * self.frame_bytes}; "
                f"expected a multiple of {self.frame_bytes} bytes ({self.channels} channel(s) x "
                f"{2 if self.enc == S16 else 1} byte(s) per sample)")
        self.done = True
        if self.rs is None:
            return b""
        result = PyBytes_FromStringAndSize(NULL, 2 * self.rs.tail_count())
        out = <int16_t*>PyBytes_AS_STRING(result)
        with nogil:
            self.rs.drain(out)
        return result

    def reset(self):
        self.npend = 0
        self.frames = 0
        self.done = False
        if self.rs is not None:
            self.rs.clear()

    @property
    def duration(self):
        return self.frames / <double>self.in_rate

    @property
    def latency(self):
        return self.rs.latency if self.rs is not None else 0.0

    def __repr__(self):
        return (f"PcmConverter({self.encoding!r}, in_rate={self.in_rate}, channels={self.channels}, "
                f"out_rate={self.out_rate})")
