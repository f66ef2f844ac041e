# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Streaming fixed-ratio polyphase resampler for mono s16 audio, built for low latency.

Theory of operation
-------------------
Resampling by out/in = L/M is upsampling by L (zero stuffing), a linear-phase low-pass FIR ``h`` at
the high rate ``F = L * in_rate``, then keeping every M-th sample. Only the kept outputs are computed,
and each reads only the non-zero taps: output ``j`` is ``sum_k x[k] * h[j*M + c - k*L]`` where ``c`` is
the filter's half-length. Offsetting by ``c`` aligns output ``j`` with input time ``j*M/L``, so the
stream starts at time 0 with no leading silence; the cost is that output ``j`` can only be computed
once the newest input it reads (about ``(j*M + c) / L``) has arrived. feed() emits every output that
is computable and no other, so the added latency is the filter's half-length ``c / F`` (``delay``),
plus, when decimating, under one input sample of sampling-grid granularity (``latency`` is the exact
worst case).

The filter is a Kaiser-windowed sinc with its cutoff exactly at the lower Nyquist frequency and a
transition band symmetric around it (PASSBAND_EDGE): passband up to ``edge x Nyquist``, stopband from
``(2 - edge) x Nyquist``, STOPBAND_DB of attenuation. Aliases of input above ``(2 - edge) x Nyquist``
and images of the passband are >= 60 dB down; input between Nyquist and the stopband edge folds into
the transition band above the passband edge. The half-length is the shortest that reaches the
attenuation over that transition width, which is what keeps every rate pair under 3 ms.

Two structures share that design:

* POLY (L * M <= 6: 8 kHz -> 16/24 kHz, 16 <-> 24 kHz, 48 kHz -> 16/24 kHz): the input is split into
  M sub-streams and the output into L phases; each (phase, sub-stream) pair is an ordinary FIR with
  ~K/M taps, computed 16 outputs at a time (one coefficient times 16 consecutive inputs: vectorises
  without reordering any sum). Because the cutoff is F/(2 max(L, M)), every max(L, M)-th tap from the
  centre is zero, so some pairs vanish and one is a pure delay: for 8k -> 16k every other output is
  an input sample, and 48k -> 16k needs 2/3 of the multiplies of a plain decimator.
* GENERAL (22.05 and 44.1 kHz input): L phases of K taps (K a multiple of 8, the padding spent on a
  longer window), one dot product per output with 8 partial sums, four outputs interleaved. Each
  output loads as many coefficients as samples, which makes these the slowest pairs; 44.1k -> 16k
  therefore runs as a half-band POLY stage to 22.05k whose float output feeds the 22.05k -> 16k
  filter directly (9% faster than one 44.1k -> 16k filter, for 0.6 ms more delay).

Coefficients are designed once per rate pair at first use (double precision, then float32), with each
phase normalised to unit DC gain so that a constant input gives a constant output. Arithmetic is
float32; outputs are rounded to nearest (ties to even) and saturated to s16. Every output is always
computed by the same code in the same order (blocks that run past the available input are recomputed
later, never emitted), which is why the output is bit-identical however the input is split.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.math cimport sin, sqrt, ceil, M_PI
from libc.stdint cimport int16_t, int64_t, INT64_MAX
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memmove, memset

from routeraudio.errors import AudioFormatError

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* The hot loops use GCC/Clang vector extensions: 4 x float maps to SSE2 on x86-64 and NEON on
       aarch64 without any -march flag. Other compilers get the same arithmetic in scalar form. */
    #if defined(__GNUC__) || defined(__clang__)
    #define RA_VECTOR 1
    typedef float ra_v4 __attribute__((vector_size(16)));
    typedef float ra_v4u __attribute__((vector_size(16), aligned(4), may_alias));
    #define RA_LD(p) (*(const ra_v4u *)(p))
    #endif

    /* y[t] = sum_u g[u] * x[t + u] for t < 16, each sum in tap order; with add, y[t] += that sum. */
    static inline void ra_fir16(const float *g, int K, const float *x, float *y, int add) {
    #ifdef RA_VECTOR
        ra_v4 a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
        for (int u = 0; u < K; u++) {
            const float gu = g[u];
            const float *xu = x + u;
            a0 += gu * RA_LD(xu);
            a1 += gu * RA_LD(xu + 4);
            a2 += gu * RA_LD(xu + 8);
            a3 += gu * RA_LD(xu + 12);
        }
        ra_v4u *yv = (ra_v4u *)y;
        if (add) {
            yv[0] += a0; yv[1] += a1; yv[2] += a2; yv[3] += a3;
        } else {
            yv[0] = a0; yv[1] = a1; yv[2] = a2; yv[3] = a3;
        }
    #else
        float a[16] = {0};
        for (int u = 0; u < K; u++)
            for (int t = 0; t < 16; t++) a[t] += g[u] * x[t + u];
        for (int t = 0; t < 16; t++) y[t] = add ? y[t] + a[t] : a[t];
    #endif
    }

    /* Four dot products of K taps (K a multiple of 8), interleaved so that their 8 independent
       partial sums each keep the FP units busy. Lane l sums the taps u = l (mod 8); the lanes are
       combined in the same fixed order for every output. */
    static inline void ra_dot8x4(const float *const g[4], const float *const x[4], int K, float *y) {
    #ifdef RA_VECTOR
        ra_v4 z = {0, 0, 0, 0}, a0 = z, a1 = z, b0 = z, b1 = z, c0 = z, c1 = z, d0 = z, d1 = z;
        const float *g0 = g[0], *g1 = g[1], *g2 = g[2], *g3 = g[3];
        const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
        for (int u = 0; u < K; u += 8) {
            a0 += RA_LD(g0 + u) * RA_LD(x0 + u); a1 += RA_LD(g0 + u + 4) * RA_LD(x0 + u + 4);
            b0 += RA_LD(g1 + u) * RA_LD(x1 + u); b1 += RA_LD(g1 + u + 4) * RA_LD(x1 + u + 4);
            c0 += RA_LD(g2 + u) * RA_LD(x2 + u); c1 += RA_LD(g2 + u + 4) * RA_LD(x2 + u + 4);
            d0 += RA_LD(g3 + u) * RA_LD(x3 + u); d1 += RA_LD(g3 + u + 4) * RA_LD(x3 + u + 4);
        }
        ra_v4 a = a0 + a1, b = b0 + b1, c = c0 + c1, d = d0 + d1;
        y[0] = (a[0] + a[2]) + (a[1] + a[3]);
        y[1] = (b[0] + b[2]) + (b[1] + b[3]);
        y[2] = (c[0] + c[2]) + (c[1] + c[3]);
        y[3] = (d[0] + d[2]) + (d[1] + d[3]);
    #else
        for (int o = 0; o < 4; o++) {
            float s[8] = {0};
            for (int u = 0; u < K; u += 8)
                for (int l = 0; l < 8; l++) s[l] += g[o][u + l] * x[o][u + l];
            y[o] = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
        }
    #endif
    }

    /* Round to nearest (ties to even), then saturate. Adding 1.5 * 2^23 leaves the rounded integer
       in the mantissa, exact for |v| < 2^22: outputs of s16-range inputs stay below 2^17. Clamping
       the integer (not the float) is what lets gcc vectorise this loop. */
    static inline void ra_f2s(const float *src, int16_t *dst, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) {
            int32_t k = (int32_t)((src[i] + 12582912.0f) - 12582912.0f);
            k = k > 32767 ? 32767 : k;
            k = k < -32768 ? -32768 : k;
            dst[i] = (int16_t)k;
        }
    }

    /* Little-endian s16 at any alignment to float. */
    static inline void ra_s2f(const unsigned char *src, float *dst, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, src + 2 * i, 2);
            dst[i] = (float)v;
        }
    }

    /* Split x into M = 2 or 3 sub-streams: s[q * cap + t] = x[t * M + q]. */
    static inline void ra_split(const float *x, float *s, Py_ssize_t cap, int M, Py_ssize_t n) {
        if (M == 2) {
            for (Py_ssize_t t = 0; t < n; t++) { s[t] = x[2 * t]; s[cap + t] = x[2 * t + 1]; }
        } else {
            for (Py_ssize_t t = 0; t < n; t++) {
                s[t] = x[3 * t]; s[cap + t] = x[3 * t + 1]; s[2 * cap + t] = x[3 * t + 2];
            }
        }
    }

    /* Interleave L = 2 or 3 rows of cap floats: y[t * L + r] = rows[r * cap + t]. */
    static inline void ra_merge(const float *rows, Py_ssize_t cap, int L, Py_ssize_t n, float *y) {
        if (L == 2) {
            for (Py_ssize_t t = 0; t < n; t++) { y[2 * t] = rows[t]; y[2 * t + 1] = rows[cap + t]; }
        } else {
            for (Py_ssize_t t = 0; t < n; t++) {
                y[3 * t] = rows[t]; y[3 * t + 1] = rows[cap + t]; y[3 * t + 2] = rows[2 * cap + t];
            }
        }
    }
    """
    void ra_fir16(const float* g, int K, const float* x, float* y, int add) nogil
    void ra_dot8x4(const float** g, const float** x, int K, float* y) nogil
    void ra_f2s(const float* src, int16_t* dst, Py_ssize_t n) nogil
    void ra_s2f(const unsigned char* src, float* dst, Py_ssize_t n) nogil
    void ra_split(const float* x, float* s, Py_ssize_t cap, int M, Py_ssize_t n) nogil
    void ra_merge(const float* rows, Py_ssize_t cap, int L, Py_ssize_t n, float* y) nogil

RATES = (8000, 16000, 22050, 24000, 44100, 48000)
OUTPUT_RATES = (16000, 24000)

# Passband edge as a fraction of the lower Nyquist frequency, per (in_rate, out_rate): 3.5 kHz for
# 8 kHz input (the telephone band ends at 3.4 kHz), 7 kHz at 16 kHz out, 10.5 kHz at 24 kHz out. The
# stopband starts at (2 - edge) x Nyquist. A higher edge costs latency and multiplies in proportion
# to 1 / (1 - edge); 0.875 keeps the worst pair under 2 ms and the 48 kHz stereo path under 2.7 us.
PASSBAND_EDGE = {
    (8000, 16000): 0.875, (8000, 24000): 0.875,
    (16000, 24000): 0.875,
    (22050, 16000): 0.875, (22050, 24000): 0.875,
    (24000, 16000): 0.875,
    (44100, 16000): 0.875, (44100, 24000): 0.875,
    (48000, 16000): 0.875, (48000, 24000): 0.875,
}
# Internal stages: 44.1 kHz -> 16 kHz runs as a half-band 44.1k -> 22.05k stage, then the 22.05k ->
# 16k filter (2/3 of the multiplies of one 44.1k -> 16k filter). The half-band passes 9 kHz (the
# second stage's stopband edge) and stops from 13.05 kHz, so nothing it aliases lands below 9 kHz.
_STAGE_EDGE = {(44100, 22050): 9000.0 / 11025.0}
_TWO_STAGE = {(44100, 16000): 22050}

# Kaiser design attenuation; the measured rejection is 61-64 dB (tests require >= 60 dB).
STOPBAND_DB = 62.0

cdef enum:
    IDENTITY = 0
    POLY = 1
    GENERAL = 2

_KIND_NAMES = ("identity", "poly", "general")


cdef int _gcd(int a, int b) noexcept:
    while b:
        a, b = b, a % b
    return a


cdef double _bessel_i0(double x) noexcept nogil:
    cdef double term = 1.0, total = 1.0, q = 0.25 * x * x
    cdef int k = 1
    while term > 1e-17 * total:
        term *= q / (<double>k * k)
        total += term
        k += 1
    return total


cdef double* _prototype(int L, int M, int c, double beta) except NULL:
    """Kaiser-windowed sinc of 2c+1 taps, cutoff F/(2*max(L, M)), each of the L phases summing to 1."""
    cdef int n = 2 * c + 1, Z = L if L > M else M, i, d, p
    cdef double* h = <double*>malloc(n * sizeof(double))
    cdef double i0b = _bessel_i0(beta), x, r, s
    if h == NULL:
        raise MemoryError()
    for i in range(n):
        d = i - c
        if d == 0:
            x = 1.0
        elif d % Z == 0:
            x = 0.0  # exact zeros: what makes whole sub-filters vanish or become pure delays
        else:
            x = sin(M_PI * d / Z) / (M_PI * d / Z)
        r = <double>d / c
        h[i] = x * _bessel_i0(beta * sqrt(1.0 - r * r)) / i0b
    for p in range(L):
        s = 0.0
        i = p
        while i < n:
            s += h[i]
            i += L
        i = p
        while i < n:
            h[i] /= s
            i += L
    return h


cdef class _Bank:
    """The coefficients of one rate pair, shared by every Resampler of that pair."""
    cdef int kind, L, M, c, K, nsub, oldest, reach
    cdef int sub_r[RS_MAXSUB]
    cdef int sub_q[RS_MAXSUB]
    cdef int sub_K[RS_MAXSUB]
    cdef int sub_off[RS_MAXSUB]
    cdef int sub_start[RS_MAXSUB]
    cdef int newest[6]
    cdef float* coef
    cdef int* lead
    cdef readonly double edge, beta

    def __dealloc__(self):
        free(self.coef)
        free(self.lead)


cdef dict _BANKS = {}


cdef _Bank _bank_for(int in_rate, int out_rate):
    key = (in_rate, out_rate)
    bank = _BANKS.get(key)
    if bank is None:
        bank = _design(in_rate, out_rate)
        _BANKS[key] = bank
    return bank


cdef _Bank _design(int in_rate, int out_rate):
    cdef _Bank b = _Bank.__new__(_Bank)
    cdef int g = _gcd(in_rate, out_rate)
    cdef int L = out_rate // g, M = in_rate // g, Z = L if L > M else M, LM = L * M
    cdef int c, K, i, u, p, r, q, e, A, z, n
    cdef double* h = NULL
    b.L = L
    b.M = M
    if L == M:
        b.kind = IDENTITY
        return b
    b.kind = POLY if LM <= 6 else GENERAL
    b.edge = PASSBAND_EDGE.get((in_rate, out_rate)) or _STAGE_EDGE[(in_rate, out_rate)]
    b.beta = 0.1102 * (STOPBAND_DB - 8.7)
    nyquist = min(in_rate, out_rate) / 2.0
    transition = 2.0 * (1.0 - b.edge) * nyquist / (<double>L * in_rate)  # cycles per high-rate sample
    c = <int>ceil((STOPBAND_DB - 7.95) / (2.285 * 2.0 * M_PI * transition) / 2.0)
    if b.kind == GENERAL:
        K = ((2 * c) // L + 8) // 8 * 8
        c = (K * L - 1) // 2  # spend the padding on a longer (better) window
        while c % Z == 0:
            c -= 1
    else:
        K = 0
        while c % Z == 0:
            c += 1
    b.c = c
    b.K = K
    h = _prototype(L, M, c, b.beta)
    try:
        if b.kind == GENERAL:
            b.coef = <float*>calloc(L * K, sizeof(float))
            b.lead = <int*>calloc(L, sizeof(int))
            if b.coef == NULL or b.lead == NULL:
                raise MemoryError()
            for p in range(L):
                for i in range(K):
                    if p + i * L <= 2 * c:
                        b.coef[p * K + K - 1 - i] = <float>h[p + i * L]
                while b.lead[p] < K and b.coef[p * K + K - 1 - b.lead[p]] == 0.0:
                    b.lead[p] += 1
            return b
        # POLY: output m*L + r reads sub-stream q (inputs n*M + q) at n = m + A - i with weight
        # h[i*L*M + p], where r*M - q*L + c = A*L*M + p.
        b.coef = <float*>calloc(2 * c + 1, sizeof(float))
        if b.coef == NULL:
            raise MemoryError()
        b.oldest = 1 << 30
        b.reach = -(1 << 30)
        n = 0
        for r in range(L):
            b.newest[r] = -(1 << 30)
            for q in range(M):
                e = r * M - q * L + c
                p = e % LM
                A = e // LM
                K = (2 * c - p) // LM + 1
                z = 0
                while z < K and h[z * LM + p] == 0.0:
                    z += 1
                while K > z and h[(K - 1) * LM + p] == 0.0:
                    K -= 1
                if K == z:
                    continue  # every tap on a zero of the sinc
                i = b.nsub
                b.nsub += 1
                b.sub_r[i] = r
                b.sub_q[i] = q
                b.sub_K[i] = K - z
                b.sub_off[i] = (A - z) - (K - z) + 1
                b.sub_start[i] = n
                for u in range(K - z):
                    b.coef[n + u] = <float>h[(K - 1 - u) * LM + p]
                n += K - z
                b.newest[r] = max(b.newest[r], (A - z) * M + q)
                b.oldest = min(b.oldest, b.sub_off[i] * M + q)
                b.reach = max(b.reach, b.sub_off[i] + b.sub_K[i] - 1)
        return b
    finally:
        free(h)


cdef class Resampler:
    """Streaming mono s16le resampler; see resample.pyi for the documentation."""

    def __cinit__(self, int in_rate, int out_rate, *, bint _stage=False):
        if not _stage:
            if in_rate not in RATES:
                raise ValueError(f"in_rate must be one of {', '.join(map(str, RATES))} Hz, got {in_rate}")
            if out_rate != in_rate and out_rate not in OUTPUT_RATES:
                raise ValueError(
                    f"out_rate must be 16000, 24000 or equal to in_rate ({in_rate}), got {out_rate}")
        cdef int stage_in = in_rate
        if not _stage and (in_rate, out_rate) in _TWO_STAGE:
            stage_in = _TWO_STAGE[(in_rate, out_rate)]
            self.pre = Resampler(in_rate, stage_in, _stage=True)
        cdef _Bank b = _bank_for(stage_in, out_rate)
        cdef int g = _gcd(in_rate, out_rate)
        self.tL = out_rate // g
        self.tM = in_rate // g
        self.F = <double>b.L * stage_in
        cdef int i, longest = b.K
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._bank = b
        self.kind = b.kind
        self.L = b.L
        self.M = b.M
        self.c = b.c
        self.K = b.K
        self.coef = b.coef
        self.lead = b.lead
        self.nsub = b.nsub
        self.oldest = b.oldest
        self.reach = b.reach
        for i in range(b.nsub):
            self.sub_r[i] = b.sub_r[i]
            self.sub_q[i] = b.sub_q[i]
            self.sub_K[i] = b.sub_K[i]
            self.sub_off[i] = b.sub_off[i]
            self.sub_add[i] = i > 0 and b.sub_r[i - 1] == b.sub_r[i]
            self.sub_g[i] = b.coef + b.sub_start[i]
            longest = max(longest, b.sub_K[i] * b.M)
        for i in range(b.L if b.kind == POLY else 0):
            self.newest[i] = b.newest[i]
        # History kept between runs stays below 2c/L + 2*longest + 8M samples (see _keep_from); the
        # pad covers what 16-row POLY blocks and 4-output GENERAL groups read past the valid input.
        cdef Py_ssize_t hist = 2 * b.c // b.L + 2 * longest + 8 * b.M + 64
        cdef Py_ssize_t pad = 32 * b.M + 2 * longest + 128
        cdef Py_ssize_t cap = hist + RS_BLOCK + pad
        self.buf = <float*>calloc(cap, sizeof(float))
        self.rowcap = cap // b.M + 64
        # POLY: L rows, then their interleaving; GENERAL: the outputs of one run, in order.
        self.rows = <float*>calloc(self.rowcap * (2 * b.L + 1) if b.kind == POLY else
                                   (cap * b.L) // b.M + 64, sizeof(float))
        self.sub_cap = cap // b.M + 8
        self.sub = <float*>calloc(self.sub_cap * b.M, sizeof(float))
        if self.buf == NULL or self.rows == NULL or self.sub == NULL:
            raise MemoryError()
        self.clear()

    def __dealloc__(self):
        free(self.buf)
        free(self.rows)
        free(self.sub)

    cdef void clear(self) noexcept nogil:
        cdef int64_t first
        if self.pre is not None:
            self.pre.clear()
        self.n_out = 0
        self.n_real = 0
        self.done = False
        self.has_odd = False
        # Inputs before time 0 are zeros: fill the history the first outputs reach back into.
        first = self._keep_from()
        self.base = first if first < 0 else 0
        self.fill = <Py_ssize_t>(-self.base)
        memset(self.buf, 0, self.fill * sizeof(float))

    cdef int64_t _newest(self, int64_t j) noexcept nogil:
        # The newest input index output j reads with a non-zero weight.
        cdef int64_t m, pos, hi
        if self.kind == IDENTITY:
            return j
        if self.kind == POLY:
            m = j // self.L
            return m * self.M + self.newest[j - m * self.L]
        pos = j * self.M + self.c
        hi = pos // self.L
        return hi - self.lead[pos - hi * self.L]

    cdef int64_t _count(self, int64_t n_in) noexcept nogil:
        # Length of the prefix of outputs whose inputs have all arrived. Every output j below the
        # formula's count reads nothing newer than floor((j*M + c) / L) <= n_in - 1; a few more may
        # qualify because their newest taps are zero (pure-delay phases).
        cdef int64_t t = n_in * self.L - 1 - self.c, n
        if self.kind == IDENTITY:
            return n_in
        n = t // self.M + 1 if t >= 0 else 0
        while self._newest(n) <= n_in - 1:
            n += 1
        return n

    cdef int64_t _keep_from(self) noexcept nogil:
        # Oldest absolute input index any output from n_out on still reads.
        cdef int64_t k
        if self.kind == IDENTITY:
            return self.n_out
        if self.kind == GENERAL:
            return (self.n_out * self.M + self.c) // self.L - self.K + 1
        # POLY: rounded down to a multiple of M, so that sub-stream n = base / M starts with q = 0.
        k = (self.n_out // self.L) * self.M + self.oldest
        return (k // self.M if k >= 0 else -((-k + self.M - 1) // self.M)) * self.M

    cdef int64_t _total_count(self, int64_t n_in) noexcept nogil:
        # Outputs of the whole chain after n_in input samples (feed() emits all it can).
        return self._count(self.pre._count(n_in) if self.pre is not None else n_in)

    cdef float* slot(self) noexcept nogil:
        """Where the caller writes up to RS_BLOCK new input samples before calling run()."""
        if self.pre is not None:
            return self.pre.slot()
        return self.buf + self.fill

    cdef Py_ssize_t out_count(self, Py_ssize_t n) noexcept nogil:
        """Exactly how many outputs feeding n more input samples produces."""
        cdef int64_t m = n
        if self.pre is not None:
            m = self.pre._count(self.pre.base + self.pre.fill + n) - self.pre.n_out
        return <Py_ssize_t>(self._count(self.base + self.fill + m) - self.n_out)

    cdef Py_ssize_t tail_count(self) noexcept nogil:
        """Exactly how many outputs drain() produces."""
        if self.done:
            return 0
        return <Py_ssize_t>((self.n_real * self.tL + self.tM - 1) // self.tM - self.n_out)

    cdef Py_ssize_t run(self, Py_ssize_t n, int16_t* out) noexcept nogil:
        """Consume n <= RS_BLOCK samples written at slot(); write the outputs now computable."""
        self.n_real += n
        if self.pre is not None:
            self.pre.n_real += n
            # The first stage's float output goes straight into this stage's slot.
            n = self.pre._run(n, NULL, self.buf + self.fill, INT64_MAX)
        return self._run(n, out, NULL, INT64_MAX)

    cdef Py_ssize_t process(self, const unsigned char* x, Py_ssize_t n, int16_t* out) noexcept nogil:
        """Resample n little-endian s16 samples (any alignment); out holds out_count(n) samples."""
        cdef Py_ssize_t done = 0, nb
        if self.kind == IDENTITY:
            memmove(out, x, 2 * n)
            self.n_real += n
            self.n_out += n
            self.base += n
            return n
        while n > 0:
            nb = n if n < RS_BLOCK else RS_BLOCK
            ra_s2f(x, self.slot(), nb)
            done += self.run(nb, out + done)
            x += 2 * nb
            n -= nb
        return done

    cdef Py_ssize_t drain(self, int16_t* out) noexcept nogil:
        """Flush: pad with silence until every output up to ceil(n_in * out_rate / in_rate) is out."""
        return self._drain(out, NULL)

    cdef Py_ssize_t _drain(self, int16_t* out, float* outf) noexcept nogil:
        cdef int64_t total = (self.n_real * self.tL + self.tM - 1) // self.tM
        cdef int64_t need
        cdef Py_ssize_t done = 0, nb
        if self.done:
            return 0
        if self.pre is not None:
            nb = self.pre._drain(NULL, self.buf + self.fill)  # the first stage's tail is real input
            done = self._run(nb, out, NULL, total)
        while self.n_out < total:
            need = (self.n_out * self.M + self.c) // self.L + 1 - (self.base + self.fill)
            nb = RS_BLOCK if need > RS_BLOCK else (<Py_ssize_t>need if need > 1 else 1)
            memset(self.buf + self.fill, 0, nb * sizeof(float))
            if outf != NULL:
                done += self._run(nb, NULL, outf + done, total)
            else:
                done += self._run(nb, out + done, NULL, total)
        self.done = True
        return done

    cdef Py_ssize_t _run(self, Py_ssize_t n, int16_t* out, float* outf, int64_t limit) noexcept nogil:
        # Outputs go to out as s16, or to outf as float (a first stage feeding the next).
        cdef int64_t n_end, m_first, m0, pos, hi, keep, shift
        cdef Py_ssize_t count, i, b, rows_n, nblk
        cdef int k, ph, dq, dr
        cdef const float* g[4]
        cdef const float* xs[4]
        cdef const float* src
        cdef float* x = self.buf
        cdef float* y = self.rows
        self.fill += n
        n_end = self._count(self.base + self.fill)
        if n_end > limit:
            n_end = limit
        count = <Py_ssize_t>(n_end - self.n_out)
        if count <= 0:
            return 0
        if self.kind == IDENTITY:
            y = x
        elif self.kind == GENERAL:
            # Step the window start and the phase without a division per output.
            pos = self.n_out * self.M + self.c
            hi = pos // self.L - self.K + 1 - self.base
            ph = <int>(pos % self.L)
            dq = self.M // self.L
            dr = self.M % self.L
            for i in range(0, count, 4):
                for k in range(4):
                    g[k] = self.coef + ph * self.K
                    xs[k] = x + hi
                    ph += dr
                    hi += dq
                    if ph >= self.L:
                        ph -= self.L
                        hi += 1
                ra_dot8x4(g, xs, self.K, y + i)
        else:  # POLY: rows m_first .. m_first + 16*nblk - 1 of every phase, then interleave
            m_first = self.n_out // self.L
            rows_n = <Py_ssize_t>((n_end - 1) // self.L - m_first + 1)
            nblk = (rows_n + 15) // 16
            if self.M == 1:
                m0 = self.base
                src = x
            else:
                m0 = self.base // self.M
                ra_split(x, self.sub, self.sub_cap, self.M,
                         <Py_ssize_t>(m_first + 16 * nblk + self.reach - m0))
                src = self.sub
            for i in range(self.nsub):
                for b in range(nblk):
                    ra_fir16(self.sub_g[i], self.sub_K[i],
                             src + self.sub_q[i] * self.sub_cap + (m_first + self.sub_off[i] - m0) + 16 * b,
                             y + self.sub_r[i] * self.rowcap + 16 * b, self.sub_add[i])
            if self.L == 1:
                y += self.n_out - m_first
            else:
                ra_merge(y, self.rowcap, self.L, rows_n, y + self.L * self.rowcap)
                y += self.L * self.rowcap + (self.n_out - m_first * self.L)
        if outf != NULL:
            memcpy(outf, y, count * sizeof(float))
        else:
            ra_f2s(y, out, count)
        self.n_out = n_end
        keep = self._keep_from()
        shift = keep - self.base
        if shift > 0:
            memmove(x, x + shift, (self.fill - shift) * sizeof(float))
            self.fill -= <Py_ssize_t>shift
            self.base = keep
        return count

    # -- Python API ---------------------------------------------------------------------------------

    def feed(self, data):
        cdef Py_buffer view
        cdef const unsigned char* p
        cdef Py_ssize_t n, nsamp, produced, expected
        cdef unsigned char pair[2]
        cdef bytes result
        cdef int16_t* out
        if self.done:
            raise ValueError("Resampler was flushed; call reset() to start a new stream")
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            p = <const unsigned char*>view.buf
            n = view.len
            nsamp = (n + self.has_odd) // 2
            expected = self.out_count(nsamp)
            result = PyBytes_FromStringAndSize(NULL, 2 * expected)
            out = <int16_t*>PyBytes_AS_STRING(result)
            produced = 0
            if nsamp > 0:
                with nogil:
                    if self.has_odd:
                        pair[0] = self.odd
                        pair[1] = p[0]
                        produced = self.process(pair, 1, out)
                        p += 1
                        n -= 1
                        self.has_odd = False
                        nsamp -= 1
                    produced += self.process(p, nsamp, out + produced)
                    p += 2 * nsamp
                    n -= 2 * nsamp
            if n:
                self.odd = p[0]
                self.has_odd = True
            if produced != expected:  # an internal invariant; never hand out unwritten bytes
                raise RuntimeError(f"Resampler produced {produced} samples, expected {expected}")
            return result
        finally:
            PyBuffer_Release(&view)

    def flush(self):
        cdef bytes result
        if self.done:
            return b""
        if self.has_odd:
            raise AudioFormatError(
                f"s16le stream ended with 1 byte of a partial sample at byte offset {2 * self.n_real}; "
                f"expected a multiple of 2 bytes")
        result = PyBytes_FromStringAndSize(NULL, 2 * self.tail_count())
        cdef int16_t* out = <int16_t*>PyBytes_AS_STRING(result)
        with nogil:
            self.drain(out)
        return result

    def reset(self):
        self.clear()

    @property
    def ratio(self):
        return self.out_rate / <double>self.in_rate

    @property
    def delay(self):
        if self.kind == IDENTITY:
            return 0.0
        return self.c / self.F + (self.pre.delay if self.pre is not None else 0.0)

    @property
    def latency(self):
        # Worst case over n of (newest input time - time of the newest output) after n inputs: the
        # pattern of output counts repeats every tM inputs, so two periods past the start-up cover it.
        cdef int64_t n, n0, j
        cdef double worst = 0.0, lag
        if self.kind == IDENTITY:
            return 0.0
        n0 = <int64_t>(self.delay * self.in_rate) + 4 * self.tM + 8
        for n in range(n0, n0 + 2 * self.tM):
            j = self._total_count(n) - 1
            lag = (n - 1) / <double>self.in_rate - j / <double>self.out_rate
            worst = max(worst, lag)
        return worst

    def _stages(self):
        """[(kind, L, M, c, prototype taps)] per stage, first stage first, for tests: the taps in use."""
        cdef _Bank b = <_Bank>self._bank
        cdef double* h
        cdef int i
        first = self.pre._stages() if self.pre is not None else []
        if b.kind == IDENTITY:
            return first + [("identity", 1, 1, 0, [1.0])]
        h = _prototype(b.L, b.M, b.c, b.beta)
        try:
            taps = [<float>h[i] for i in range(2 * b.c + 1)]
        finally:
            free(h)
        return first + [(_KIND_NAMES[b.kind], b.L, b.M, b.c, taps)]

    def __repr__(self):
        return f"Resampler({self.in_rate}, {self.out_rate})"
