# C-level interface of the streaming resampler, for the other codec modules (PcmConverter, the
# Opus and MP3 paths): they write decoded samples straight into ``slot()`` and call ``run()``,
# or hand s16 samples to ``process()``, without any Python object per frame.

from libc.stdint cimport int16_t, int64_t

cdef enum:
    # The most input samples one run() call accepts; process() loops over blocks of this size.
    RS_BLOCK = 1024
    RS_MAXSUB = 8     # sub-filters of the POLY structure (L * M <= 6)


cdef class Resampler:
    cdef readonly int in_rate
    cdef readonly int out_rate
    cdef object _bank              # the cached coefficient bank; keeps the pointers below alive
    cdef Resampler pre             # 44.1k -> 16k: the half-band 44.1k -> 22.05k stage feeding this one
    cdef int tL, tM                # overall out/in ratio (L/M are this stage's)
    cdef double F                  # this stage's high rate, L * (its input rate)
    cdef int kind
    cdef int L, M                  # out/in = L/M in lowest terms
    cdef int c                     # half-length of the prototype filter, in samples at L*in_rate
    cdef int K                     # GENERAL: taps per phase (a multiple of 8)
    cdef const float* coef         # GENERAL: L phases of K taps, oldest tap first
    cdef const int* lead           # GENERAL: zero taps at the newest end of each phase
    cdef int nsub                  # POLY: sub-filters, grouped by output phase
    cdef int sub_r[RS_MAXSUB]      # output phase r (outputs m*L + r)
    cdef int sub_q[RS_MAXSUB]      # input sub-stream q (inputs n*M + q)
    cdef int sub_K[RS_MAXSUB]
    cdef int sub_off[RS_MAXSUB]    # first sub-stream sample read for output row m: m + off
    cdef bint sub_add[RS_MAXSUB]   # adds to its row (not the first sub-filter of that phase)
    cdef const float* sub_g[RS_MAXSUB]
    cdef int newest[6]             # POLY: newest input read by output m*L + r is m*M + newest[r]
    cdef int oldest                # POLY: oldest input read by row m is m*M + oldest
    cdef int reach                 # POLY: newest sub-stream sample read by row m is m + reach
    cdef float* buf                # input history, then the slot, then a read-ahead pad
    cdef float* rows               # float outputs (POLY: one row per phase, then interleaved)
    cdef float* sub                # POLY with M > 1: the M input sub-streams
    cdef Py_ssize_t rowcap, sub_cap
    cdef Py_ssize_t fill           # valid samples in buf
    cdef int64_t base              # absolute input index of buf[0] (negative before the stream starts)
    cdef int64_t n_out             # outputs emitted
    cdef int64_t n_real            # input samples received (excludes flush padding)
    cdef bint done
    cdef bint has_odd
    cdef unsigned char odd

    cdef float* slot(self) noexcept nogil
    cdef Py_ssize_t run(self, Py_ssize_t n, int16_t* out) noexcept nogil
    cdef Py_ssize_t process(self, const unsigned char* x, Py_ssize_t n, int16_t* out) noexcept nogil
    cdef Py_ssize_t out_count(self, Py_ssize_t n) noexcept nogil
    cdef Py_ssize_t tail_count(self) noexcept nogil
    cdef Py_ssize_t drain(self, int16_t* out) noexcept nogil
    cdef void clear(self) noexcept nogil
    cdef Py_ssize_t _run(self, Py_ssize_t n, int16_t* out, float* outf, int64_t limit) noexcept nogil
    cdef Py_ssize_t _drain(self, int16_t* out, float* outf) noexcept nogil
    cdef int64_t _total_count(self, int64_t n_in) noexcept nogil
    cdef int64_t _newest(self, int64_t j) noexcept nogil
    cdef int64_t _count(self, int64_t n_in) noexcept nogil
    cdef int64_t _keep_from(self) noexcept nogil
