# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: libraries = opus
"""Opus decoding with libopus: packets in, mono s16le at the target rate out.

The decoder is created with ONE output channel at the target rate, so libopus itself downmixes stereo
streams and skips its 48 kHz synthesis where it can: there is no separate downmix or resampling pass.

Positions inside a stream are kept in 48 kHz samples (the unit of OpusHead's pre-skip and of Ogg
granule positions) and mapped to the output rate by flooring, so that the total output of a stream is
``floor(end / k) - floor(pre_skip / k)`` with ``k = 48000 // out_rate`` however the packets arrive.
"""

from collections import namedtuple

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int16_t, int64_t, uint8_t
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from routeraudio.errors import AudioFormatError


cdef extern from "opus/opus.h" nogil:
    ctypedef struct COpusDecoder "OpusDecoder":
        pass
    ctypedef int opus_int32
    ctypedef int16_t opus_int16
    enum:
        OPUS_OK
        OPUS_BAD_ARG
        OPUS_BUFFER_TOO_SMALL
        OPUS_INTERNAL_ERROR
        OPUS_INVALID_PACKET
        OPUS_UNIMPLEMENTED
        OPUS_INVALID_STATE
        OPUS_ALLOC_FAIL
        OPUS_RESET_STATE
        OPUS_SET_GAIN_REQUEST
    COpusDecoder *opus_decoder_create(opus_int32 Fs, int channels, int *error)
    void opus_decoder_destroy(COpusDecoder *st)
    int opus_decoder_ctl(COpusDecoder *st, int request, ...)
    int opus_decode(COpusDecoder *st, const unsigned char *data, opus_int32 len, opus_int16 *pcm,
                    int frame_size, int decode_fec)
    int opus_packet_get_nb_samples(const unsigned char *packet, opus_int32 len, opus_int32 Fs)
    int opus_packet_get_samples_per_frame(const unsigned char *data, opus_int32 Fs)
    int opus_packet_parse(const unsigned char *data, opus_int32 len, unsigned char *out_toc,
                          const unsigned char **frames, opus_int16 *size, int *payload_offset)
    const char *opus_strerror(int error)
    const char *opus_get_version_string()


# The one table from libopus error codes to what a user is told (besides libopus's own words).
OPUS_ERRORS = {
    OPUS_BAD_ARG: ("OPUS_BAD_ARG", "an empty packet or an argument libopus refused"),
    OPUS_BUFFER_TOO_SMALL: ("OPUS_BUFFER_TOO_SMALL", "the packet decodes to more than 120 ms"),
    OPUS_INTERNAL_ERROR: ("OPUS_INTERNAL_ERROR", "libopus failed internally on this packet"),
    OPUS_INVALID_PACKET: ("OPUS_INVALID_PACKET", "the packet is corrupted or is not Opus"),
    OPUS_UNIMPLEMENTED: ("OPUS_UNIMPLEMENTED", "the packet uses a feature libopus does not implement"),
    OPUS_INVALID_STATE: ("OPUS_INVALID_STATE", "the decoder is in an invalid state"),
    OPUS_ALLOC_FAIL: ("OPUS_ALLOC_FAIL", "libopus could not allocate memory"),
}

OUT_RATES = (8000, 12000, 16000, 24000, 48000)
MAX_PACKET_SAMPLES_48K = 5760  # 120 ms: the longest packet RFC 6716 allows
# 48 frames of 1275 bytes plus headers stay far below; only padding could be longer, and anything near
# 2**31 would not even fit libopus's length argument.
cdef enum:
    MAX_PACKET_BYTES = 1 << 20

OpusHead = namedtuple("OpusHead", "version channels pre_skip input_rate output_gain mapping_family")
OpusHead.__doc__ = "The fields of an Ogg Opus identification header (RFC 7845 section 5.1)."


def opus_error_message(int code, str what=""):
    """The user-facing text for libopus error ``code`` (used by every AudioFormatError raised here)."""
    name, meaning = OPUS_ERRORS.get(code, (f"libopus error {code}", "unknown libopus error"))
    text = opus_strerror(code).decode("ascii", "replace")
    prefix = f"{what}: " if what else ""
    return f"{prefix}{meaning} ({name}: {text})"


cdef inline int _samples48(const uint8_t *p, Py_ssize_t n) noexcept nogil:
    """Duration of a packet in 48 kHz samples from its TOC, or a negative libopus error code.
    Zero frames (code 3 with M = 0) is invalid (RFC 6716 R5) though libopus counts it as 0 samples."""
    if n < 1:
        return OPUS_BAD_ARG
    cdef int r = opus_packet_get_nb_samples(p, <opus_int32>n, 48000)
    if r == 0:
        return OPUS_INVALID_PACKET
    return r


cdef inline int _checked_samples(const uint8_t *p, Py_ssize_t n, int rate) noexcept nogil:
    """Decoded length of a packet at ``rate`` after a full structural check (frame count and every
    frame length against the packet size, the 120 ms cap), or a negative libopus error code. Running
    it on every packet before decoding any means a bad batch changes no decoder state."""
    cdef opus_int16 sizes[48]
    cdef int frames = opus_packet_parse(p, <opus_int32>n, NULL, NULL, sizes, NULL)
    if frames <= 0:
        return frames if frames < 0 else OPUS_INVALID_PACKET
    return frames * opus_packet_get_samples_per_frame(p, rate)


def packet_samples(packet):
    """Duration of one Opus packet in 48 kHz samples, from its TOC byte (and frame count byte).

    Raises AudioFormatError for an empty packet, a missing frame count, zero frames or more than 120 ms.
    """
    cdef const uint8_t[::1] view
    cdef int r
    if isinstance(packet, bytes):
        r = _samples48(<const uint8_t *>PyBytes_AS_STRING(packet), PyBytes_GET_SIZE(packet))
    else:
        view = memoryview(packet).cast("B")
        r = _samples48(&view[0] if view.shape[0] else NULL, view.shape[0])
    if r < 0:
        raise AudioFormatError(opus_error_message(r, f"invalid Opus packet of {len(packet)} bytes"))
    return r


def parse_opus_head(data) -> OpusHead:
    """Parse and validate an OpusHead packet (RFC 7845 section 5.1).

    Accepts version 1 and the versions RFC 7845 declares compatible (upper nibble 0), channel mapping
    family 0 (1 or 2 channels) and family 1 when it is a plain mono/stereo layout; anything else raises
    AudioFormatError saying what was found.
    """
    cdef bytes head = bytes(data)
    if len(head) < 19 or head[:8] != b"OpusHead":
        raise AudioFormatError(
            f"expected an OpusHead header (magic 'OpusHead', >= 19 bytes), found {len(head)} bytes "
            f"starting {head[:8]!r}")
    version = head[8]
    if version >> 4:
        raise AudioFormatError(
            f"unsupported OpusHead version {version} (versions 0..15 share the format this decoder reads)")
    channels = head[9]
    pre_skip = int.from_bytes(head[10:12], "little")
    input_rate = int.from_bytes(head[12:16], "little")
    output_gain = int.from_bytes(head[16:18], "little", signed=True)
    family = head[18]
    if channels == 0:
        raise AudioFormatError("OpusHead declares 0 channels")
    if family == 0:
        if channels > 2:
            raise AudioFormatError(
                f"OpusHead declares {channels} channels with mapping family 0, which allows 1 or 2")
    elif family == 1 and channels <= 2:
        # Family 1 with one stream is a mono/stereo stream in disguise; anything else needs the
        # multistream decoder, which we do not carry.
        if len(head) < 21 + channels:
            raise AudioFormatError(
                f"OpusHead with mapping family 1 is {len(head)} bytes, needs {21 + channels}")
        streams, coupled = head[19], head[20]
        mapping = tuple(head[21:21 + channels])
        if streams != 1 or coupled != channels - 1 or mapping != tuple(range(channels)):
            raise AudioFormatError(
                f"unsupported Opus channel mapping (family 1, {streams} streams, {coupled} coupled, "
                f"mapping {list(mapping)}): only mono and stereo streams are supported")
    elif family == 1:
        raise AudioFormatError(
            f"unsupported Opus stream: mapping family 1 with {channels} channels (surround); "
            "only mono and stereo streams are supported")
    else:
        raise AudioFormatError(
            f"unsupported Opus channel mapping family {family} with {channels} channels; "
            "only families 0 and 1 (mono/stereo) are supported")
    return OpusHead(version, channels, pre_skip, input_rate, output_gain, family)


cdef class OpusDecoder:
    """See opus.pyi."""

    cdef COpusDecoder *_dec
    cdef int16_t *_scratch          # one 120 ms packet, for packets only partly kept
    cdef int _channels, _out_rate, _k, _max_out
    cdef int64_t _pre_skip48, _pos48, _samples_out48
    cdef int _output_gain
    cdef Py_ssize_t _packets
    cdef bint _busy                 # set while libopus runs without the GIL

    def __cinit__(self, int channels, int out_rate, int pre_skip=0, int output_gain=0):
        cdef int err = OPUS_OK
        if channels not in (1, 2):
            raise AudioFormatError(f"an Opus stream has 1 or 2 channels here, got {channels}")
        if out_rate not in OUT_RATES:
            raise ValueError(f"out_rate must be one of {OUT_RATES}, got {out_rate}")
        if pre_skip < 0 or pre_skip > 65535:
            raise ValueError(f"pre_skip must be 0..65535 (48 kHz samples), got {pre_skip}")
        if output_gain < -32768 or output_gain > 32767:
            raise ValueError(f"output_gain must be a signed 16-bit Q7.8 dB value, got {output_gain}")
        self._channels = channels
        self._out_rate = out_rate
        self._k = 48000 // out_rate
        self._max_out = MAX_PACKET_SAMPLES_48K // self._k
        self._pre_skip48 = pre_skip
        self._output_gain = output_gain
        self._scratch = <int16_t *>PyMem_Malloc(self._max_out * sizeof(int16_t))
        if self._scratch == NULL:
            raise MemoryError()
        # One output channel: libopus folds a stereo stream to mono during synthesis.
        self._dec = opus_decoder_create(out_rate, 1, &err)
        if self._dec == NULL or err != OPUS_OK:
            raise MemoryError(opus_error_message(err, "opus_decoder_create failed"))
        self._set_gain()

    def __dealloc__(self):
        if self._dec != NULL:
            opus_decoder_destroy(self._dec)
        PyMem_Free(self._scratch)

    cdef void _set_gain(self):
        if self._output_gain:
            opus_decoder_ctl(self._dec, OPUS_SET_GAIN_REQUEST, <opus_int32>self._output_gain)

    @property
    def channels(self):
        return self._channels

    @property
    def out_rate(self):
        return self._out_rate

    @property
    def pre_skip(self):
        return self._pre_skip48

    @property
    def output_gain(self):
        return self._output_gain

    @property
    def samples_decoded(self):
        return self._samples_out48

    @property
    def packets_decoded(self):
        return self._packets

    cdef int _claim(self) except -1:
        # Checked and set with the GIL held, so two threads cannot both pass.
        if self._busy:
            raise RuntimeError("OpusDecoder used from two threads at once; use one decoder per thread")
        self._busy = True
        return 0

    def reset(self):
        """Forget the stream: decoder state, position (pre-skip applies again) and counters."""
        if self._busy:
            raise RuntimeError("OpusDecoder.reset() while another thread is decoding with it")
        opus_decoder_ctl(self._dec, OPUS_RESET_STATE)
        self._set_gain()
        self._pos48 = 0
        self._samples_out48 = 0
        self._packets = 0

    def flush(self):
        """Opus has no decoder delay beyond pre-skip: always ``b""``."""
        return b""

    def decode(self, packet, int trim_end=0):
        """See opus.pyi."""
        cdef const uint8_t *ptr
        cdef Py_ssize_t n
        cdef const uint8_t[::1] view
        if trim_end < 0:
            raise ValueError(f"trim_end must be >= 0, got {trim_end}")
        if type(packet) is bytes:
            ptr = <const uint8_t *>PyBytes_AS_STRING(packet)
            n = PyBytes_GET_SIZE(packet)
        else:
            view = memoryview(packet).cast("B")
            n = view.shape[0]
            ptr = &view[0] if n else NULL
        return self._decode(&ptr, &n, 1, trim_end)

    def decode_many(self, list packets, int trim_end_of_last=0):
        """See opus.pyi."""
        cdef Py_ssize_t count = len(packets), i
        cdef const uint8_t **ptrs
        cdef Py_ssize_t *lens
        if trim_end_of_last < 0:
            raise ValueError(f"trim_end_of_last must be >= 0, got {trim_end_of_last}")
        if count == 0:
            return b""
        # Non-bytes items are copied once into bytes that live in `keep` for the call.
        keep = [p if type(p) is bytes else bytes(memoryview(p).cast("B")) for p in packets]
        ptrs = <const uint8_t **>PyMem_Malloc(count * (sizeof(uint8_t *) + sizeof(Py_ssize_t)))
        if ptrs == NULL:
            raise MemoryError()
        lens = <Py_ssize_t *>(ptrs + count)
        try:
            for i in range(count):
                obj = keep[i]
                ptrs[i] = <const uint8_t *>PyBytes_AS_STRING(obj)
                lens[i] = PyBytes_GET_SIZE(obj)
            return self._decode(ptrs, lens, count, trim_end_of_last)
        finally:
            PyMem_Free(ptrs)

    cdef bytes _decode(self, const uint8_t **ptrs, Py_ssize_t *lens, Py_ssize_t count, int trim_last):
        cdef Py_ssize_t i, total = 0, done = 0
        cdef int n_out, r = 0, skip, keep, k = self._k
        cdef int64_t pos48 = self._pos48, start48, end48, from48, trim48, kept48 = 0
        cdef int small[3]
        cdef int *plan = small
        cdef bytes out
        cdef int16_t *dst
        # Pass 1 (GIL held): validate every packet and plan which output samples survive pre-skip
        # and trimming, so that one exactly-sized bytes object is allocated.
        if count > 1:
            plan = <int *>PyMem_Malloc(count * 3 * sizeof(int))
            if plan == NULL:
                raise MemoryError()
        try:
            for i in range(count):
                if lens[i] > MAX_PACKET_BYTES:
                    raise AudioFormatError(
                        f"Opus packet {self._packets + i} (counting from 0) is {lens[i]} bytes; no valid "
                        f"packet exceeds {MAX_PACKET_BYTES}")
                if lens[i] == 0:
                    raise AudioFormatError(
                        f"empty Opus packet (packet {self._packets + i}, counting from 0): "
                        "an Opus packet has at least its TOC byte (RFC 6716 section 3.4, R1)")
                n_out = _checked_samples(ptrs[i], lens[i], self._out_rate)
                if n_out <= 0:
                    raise AudioFormatError(opus_error_message(
                        n_out if n_out < 0 else OPUS_INVALID_PACKET,
                        f"invalid Opus packet {self._packets + i} (counting from 0) of {lens[i]} bytes"))
                start48 = pos48
                pos48 += <int64_t>n_out * k
                trim48 = trim_last if i == count - 1 else 0
                if trim48 > <int64_t>n_out * k:
                    trim48 = <int64_t>n_out * k
                end48 = pos48 - trim48
                from48 = start48 if start48 > self._pre_skip48 else self._pre_skip48
                if from48 < end48:
                    skip = <int>(from48 // k - start48 // k)
                    keep = <int>(end48 // k - start48 // k) - skip
                    kept48 += end48 - from48
                else:
                    skip = 0
                    keep = 0
                plan[3 * i] = n_out
                plan[3 * i + 1] = skip
                plan[3 * i + 2] = keep
                total += keep
            out = PyBytes_FromStringAndSize(NULL, total * 2)
            dst = <int16_t *>PyBytes_AS_STRING(out)
            # Pass 2 (GIL released): decode. A fully kept packet is decoded in place.
            self._claim()
            with nogil:
                for i in range(count):
                    n_out = plan[3 * i]
                    skip = plan[3 * i + 1]
                    keep = plan[3 * i + 2]
                    if skip == 0 and keep == n_out:
                        r = opus_decode(self._dec, ptrs[i], <opus_int32>lens[i], dst, n_out, 0)
                    else:
                        r = opus_decode(self._dec, ptrs[i], <opus_int32>lens[i], self._scratch,
                                        self._max_out, 0)
                        if r == n_out and keep:
                            memcpy(dst, self._scratch + skip, keep * sizeof(int16_t))
                    if r != n_out:
                        break
                    dst += keep
                    done += 1
            self._busy = False
            if done < count:
                # Keep the position consistent with what libopus consumed before the failure.
                for i in range(done):
                    self._pos48 += <int64_t>plan[3 * i] * k
                self._packets += done
                raise AudioFormatError(opus_error_message(
                    r if r < 0 else OPUS_INTERNAL_ERROR,
                    f"cannot decode Opus packet {self._packets} (counting from 0) of {lens[done]} bytes"))
            self._pos48 = pos48
            self._packets += count
            self._samples_out48 += kept48
            return out
        finally:
            if plan != small:
                PyMem_Free(plan)


def _bench_decode_loop(list packets, int out_rate):
    """Benchmark floor: decode ``packets`` with bare libopus at ``out_rate`` (mono output) in a C loop
    without the GIL; returns the nanoseconds spent inside the loop. Not public API."""
    cdef Py_ssize_t count = len(packets), i
    cdef int err = 0, r = 0, max_out = out_rate * 3 // 25
    cdef COpusDecoder *dec
    cdef const uint8_t **ptrs
    cdef int *lens
    cdef int16_t *pcm
    cdef timespec t0, t1
    ptrs = <const uint8_t **>PyMem_Malloc(count * sizeof(uint8_t *) + 1)
    lens = <int *>PyMem_Malloc(count * sizeof(int) + 1)
    pcm = <int16_t *>PyMem_Malloc(max_out * sizeof(int16_t))
    dec = opus_decoder_create(out_rate, 1, &err)
    try:
        if dec == NULL or ptrs == NULL or lens == NULL or pcm == NULL:
            raise MemoryError()
        for i in range(count):
            ptrs[i] = <const uint8_t *>PyBytes_AS_STRING(packets[i])
            lens[i] = <int>PyBytes_GET_SIZE(packets[i])
        with nogil:
            clock_gettime(CLOCK_MONOTONIC, &t0)
            for i in range(count):
                r = opus_decode(dec, ptrs[i], lens[i], pcm, max_out, 0)
                if r < 0:
                    break
            clock_gettime(CLOCK_MONOTONIC, &t1)
        if r < 0:
            raise AudioFormatError(opus_error_message(r, "benchmark packet"))
        return (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)
    finally:
        if dec != NULL:
            opus_decoder_destroy(dec)
        PyMem_Free(ptrs)
        PyMem_Free(lens)
        PyMem_Free(pcm)


LIBOPUS_VERSION = opus_get_version_string().decode("ascii")
