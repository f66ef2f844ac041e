# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: libraries = mpg123
"""Streaming MP3 (MPEG-1/2/2.5 Layer III) decoder on libmpg123's feed API.

Theory of operation
-------------------
Bytes go through two stages, both without the GIL:

1. A framing layer written here finds MPEG Layer III frames in the byte stream, skips ID3v2, ID3v1
   and APE tags, drops Xing/Info frames after the first one, and hands libmpg123 nothing but whole,
   validated frames. A frame found right where the previous one ended, with the same MPEG version
   and sample rate, is passed on as soon as its last byte arrives (no added latency). Any other
   candidate (the first frame, a frame after garbage, a header announcing another rate) must be
   confirmed by a matching header exactly one frame later, the check libmpg123 itself applies only
   to the first frame of a stream.
2. libmpg123 decodes each frame to signed 16-bit mono (its own MONO_MIX: (L+R)/2 before synthesis)
   at the stream's native rate, with gapless trimming from the LAME header, or at half the native
   rate when the caller's ``target_rate`` allows it (see Policies).

Why not leave resynchronisation to libmpg123: after garbage it accepts the first header that
merely looks valid, so random bytes decode as noise frames at random sample rates (measured: 20 KiB
of random bytes after 4 KB of a 44.1 kHz stream produced frames at 11025, 22050 and 16000 Hz), and
its resync/junk limits are counted per call, so whether a stream fails depended on how it was split
into chunks. The framing layer is deterministic in the bytes alone, which makes the output (and
every error) identical however the input is chunked.

Policies
--------
* Gapless: MPG123_GAPLESS is on. With a LAME/Info header the encoder delay plus libmpg123's 529
  samples of decoder delay are cut from the start and the padding from the end, so the decoded
  sample count equals the encoder's input. This adds no latency: libmpg123 knows the trim points
  from the header and trims the first and last frames in place. Streams without that header (most
  live encoders, lameenc) are decoded untrimmed: every frame yields 1152 (MPEG-1) or 576 samples.
* Half-rate synthesis: with ``Mp3Decoder(target_rate=T)``, a 44.1 or 48 kHz stream whose first
  frame is not a Xing/Info header, and whose half rate is still >= T, is synthesised at half rate
  (libmpg123's MPG123_DOWN_SAMPLE = 1: subbands above native/4 are dropped, the polyphase
  synthesis is evaluated at every other output sample); ``output_rate`` then reads native / 2.
  The choice is made once, at the first confirmed frame, before libmpg123 sees a byte. It saves
  the caller's first decimation stage (44.1k -> 22.05k), not decoding time: libmpg123 has SIMD
  synthesis only at full rate, so its half-rate decode is 5% slower (bench/bench_mp3.py: 8.7
  against 8.2 us per 20 ms, bare libmpg123 1.31) and the MP3 -> 16 kHz path 6% faster (11.5
  against 12.3 us).
  Streams with a Xing/Info header stay at full rate: libmpg123's gapless trim at half rate is
  ``(delay + 529) >> 1`` samples from the start and the end point is halved the same way, so with
  LAME's odd 576 + 529 the half-rate samples fall on odd encoder-input positions (a 1/native s
  shift, about 10 dB SNR against the full-rate path in 0-7 kHz) and the length is rounded. Without
  the header nothing is trimmed and half-rate sample k is full-rate sample 2k exactly.
  Other rates keep full rate: 32 kHz / 2 would reach 16 kHz with libmpg123's decimation as the
  only anti-alias filter, a pair the pipeline does not support today.
* Sample-rate changes: a confirmed frame at another rate raises AudioFormatError ("sample rate
  changed from X to Y Hz at byte N"): the pipeline cannot silently retarget its resampler. A
  change of channel count is fine (the output is mono either way); ``channels`` follows it.
* Garbage: skipped; after ``MAX_GARBAGE_BYTES`` (64 KiB) without a confirmed frame the stream is
  rejected, naming what was found. Ogg, WebM/EBML, FLAC and MP4 are rejected as soon as their
  8-byte magic is seen at the start; WAV is searched (RIFF files may carry MP3 frames).
* Frames after garbage: libmpg123 is fed one junk byte first, so that its own resync logic drops
  the bit reservoir of the frames before the garbage; the first frame then decodes its reservoir
  part as silence. Measured on 174 cases where garbage replaced one or two frames: without the
  byte, 55 produced output above the whole clean signal's peak (noise from unrelated reservoir
  bytes), with it 1. When garbage was only inserted, the cost is up to 3 frames that differ from
  the clean decode.
* Tags: ID3v2 (at most ``MAX_TAG_BYTES``), ID3v1 and APEv2 are skipped where a frame could start;
  they are never buffered, whatever their size.
* Not supported: free-format streams (bitrate index 0) and MPEG Layer I/II; both are reported as
  such when they are all the stream contains.
* Errors are sticky: after one, ``feed()``/``flush()`` raise it again until ``reset()``.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy, memmove

from routeraudio.errors import AudioFormatError

cdef extern from "mpg123.h" nogil:
    ctypedef struct mpg123_handle:
        pass
    enum:
        MPG123_OK
        MPG123_ERR
        MPG123_DONE
        MPG123_NEW_FORMAT
        MPG123_NEED_MORE
        MPG123_OUT_OF_MEM
        MPG123_NO_GAPLESS
        MPG123_VERBOSE
        MPG123_FLAGS
        MPG123_QUIET
        MPG123_MONO_MIX
        MPG123_DOWN_SAMPLE
        MPG123_GAPLESS
        MPG123_SKIP_ID3V2
        MPG123_MONO
        MPG123_ENC_SIGNED_16
    mpg123_handle *mpg123_new(const char *decoder, int *error)
    void mpg123_delete(mpg123_handle *mh)
    int mpg123_param(mpg123_handle *mh, int key, long value, double fvalue)
    int mpg123_format_none(mpg123_handle *mh)
    int mpg123_format(mpg123_handle *mh, long rate, int channels, int encodings)
    void mpg123_rates(const long **rates, size_t *number)
    int mpg123_open_feed(mpg123_handle *mh)
    int mpg123_feed(mpg123_handle *mh, const unsigned char *data, size_t size)
    # ``num`` is an off_t* whose width depends on the large-file API; we only ever pass NULL.
    int mpg123_decode_frame(mpg123_handle *mh, void *num, unsigned char **audio, size_t *nbytes)
    int mpg123_getformat(mpg123_handle *mh, long *rate, int *channels, int *encoding)
    int mpg123_errcode(mpg123_handle *mh)
    const char *mpg123_plain_strerror(int errcode)

cdef extern from *:
    """
    #include <mpg123.h>
    /* mpg123_init() was required before API 46 (1.27) and is a deprecated no-op since. */
    static int routeraudio_mpg123_init(void) {
    #if MPG123_API_VERSION < 46
        return mpg123_init();
    #else
        return MPG123_OK;
    #endif
    }
    /* Since API 45 (1.26): decode the first frame without waiting for the next header (the
       framing layer has confirmed it already), and always little-endian output. */
    #if MPG123_API_VERSION >= 45
    #define ROUTERAUDIO_MPG123_EXTRA_FLAGS (MPG123_NO_READAHEAD | MPG123_FORCE_ENDIAN)
    #else
    #define ROUTERAUDIO_MPG123_EXTRA_FLAGS 0
    #endif
    """
    int routeraudio_mpg123_init() nogil
    long ROUTERAUDIO_MPG123_EXTRA_FLAGS

_init_status = routeraudio_mpg123_init()
if _init_status != MPG123_OK:
    raise ImportError(f"libmpg123 failed to initialise: {mpg123_plain_strerror(_init_status).decode()}")

MAX_GARBAGE_BYTES = 65536
MAX_TAG_BYTES = 16 * 1024 * 1024

cdef Py_ssize_t _MAX_GARBAGE = MAX_GARBAGE_BYTES
cdef long long _MAX_TAG = MAX_TAG_BYTES
# Input is appended to the pending buffer in slices of at most this size, so that a huge feed()
# never buffers more than this plus one partial frame.
cdef Py_ssize_t _SLICE = 65536
cdef Py_ssize_t _SNIFF = 12
# The PCM buffer is kept between calls up to this size (about 12 s at 44.1 kHz).
cdef size_t _KEEP_OUT = 1 << 20

# Status codes of the nogil stage; the details live in the decoder's _err_* fields.
cdef enum:
    ST_OK = 0
    ST_NO_SYNC = 1
    ST_RATE_CHANGED = 2
    ST_TAG_TOO_BIG = 3
    ST_MPG123 = 4
    ST_NO_MEMORY = 5
    ST_BAD_FORMAT = 6
    ST_NOT_MPEG = 7

# Header fields: sync(11) version(2) layer(2) crc(1) bitrate(4) rate(2) pad(1) priv(1) mode(2) ...
# Frames belong to the same stream when sync, version, layer and rate index agree.
cdef unsigned int _STREAM_MASK = 0xFFFE0C00u
cdef int _BASE_RATES[3]
_BASE_RATES[:] = [44100, 48000, 32000]
cdef int _BITRATES_V1[16]
_BITRATES_V1[:] = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0]
cdef int _BITRATES_V2[16]
_BITRATES_V2[:] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0]

# libmpg123 error codes that are not about the audio. Everything else is the stream's fault.
_MPG123_EXCEPTIONS = {MPG123_OUT_OF_MEM: MemoryError}


def _mpg123_error(int code, str context):
    """The exception for libmpg123 error ``code``: the one place its codes become Python errors."""
    cdef const char *text = mpg123_plain_strerror(code)
    cls = _MPG123_EXCEPTIONS.get(code, AudioFormatError)
    return cls(f"{context}: libmpg123 error {code}: {text.decode('utf-8', 'replace')}")


# What a stream that is not MP3 usually starts with: (offset, magic, description).
MISLABEL_MAGIC = (
    (0, b"OggS", "an Ogg page: Ogg audio sent as mp3?"),
    (0, b"\x1a\x45\xdf\xa3", "an EBML header: WebM/Matroska sent as mp3?"),
    (0, b"RIFF", "a RIFF header: WAV sent as mp3?"),
    (0, b"fLaC", "a FLAC stream marker: FLAC sent as mp3?"),
    (4, b"ftyp", "an MP4 'ftyp' box: MP4/M4A sent as mp3?"),
    (0, b"#!AMR", "an AMR header: AMR sent as mp3?"),
    (0, b"ID3", "a malformed ID3v2 tag header"),
)


def describe_bytes(head):
    """Show the first bytes of ``head`` and name the format they look like, for error messages."""
    head = bytes(head)
    if not head:
        return "no bytes"
    shown = "bytes " + head[:8].hex(" ")
    for offset, magic, text in MISLABEL_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return f"{shown} ({text})"
    if len(head) >= 3 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        layer = (head[1] >> 1) & 3
        if layer == 0:
            return f"{shown} (like an AAC ADTS header: AAC sent as mp3?)"
        if layer in (2, 3):
            return f"{shown} (like an MPEG Layer {'I' * (4 - layer)} header: only Layer III is supported)"
        if head[2] >> 4 == 0:
            return f"{shown} (like a free-format MPEG header: free format is not supported)"
    return shown


cdef inline unsigned int _header_at(const unsigned char *p) noexcept nogil:
    return (<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) | (<unsigned int>p[2] << 8) | p[3]


cdef inline bint _valid_l3(unsigned int h) noexcept nogil:
    # Reserved values are rejected, emphasis 2 included: no encoder writes it, and every rejected
    # pattern makes a false sync in garbage less likely.
    return ((h & 0xFFE00000u) == 0xFFE00000u and ((h >> 19) & 3) != 1 and ((h >> 17) & 3) == 1
            and ((h >> 12) & 15) != 0 and ((h >> 12) & 15) != 15 and ((h >> 10) & 3) != 3
            and (h & 3) != 2)


cdef inline int _rate(unsigned int h) noexcept nogil:
    cdef int version = (h >> 19) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    cdef int base = _BASE_RATES[(h >> 10) & 3]
    return base if version == 3 else (base >> 1 if version == 2 else base >> 2)


cdef inline Py_ssize_t _frame_len(unsigned int h) noexcept nogil:
    cdef int padding = (h >> 9) & 1
    cdef int index = (h >> 12) & 15
    if ((h >> 19) & 3) == 3:
        return 144000 * _BITRATES_V1[index] // _rate(h) + padding
    return 72000 * _BITRATES_V2[index] // _rate(h) + padding


cdef inline bint _mono(unsigned int h) noexcept nogil:
    return ((h >> 6) & 3) == 3


cdef inline bint _same_stream(unsigned int a, unsigned int b) noexcept nogil:
    return (a & _STREAM_MASK) == (b & _STREAM_MASK)


cdef inline int _side_info_len(unsigned int h) noexcept nogil:
    if ((h >> 19) & 3) == 3:
        return 17 if _mono(h) else 32
    return 9 if _mono(h) else 17


cdef inline bint _is_info_frame(const unsigned char *p, Py_ssize_t length, unsigned int h) noexcept nogil:
    """A Xing/Info (LAME) header frame: all-zero side info, then 'Xing' or 'Info'."""
    cdef int side = _side_info_len(h)
    cdef int start = 4 if (h >> 16) & 1 else 6  # after the header and the CRC, if any
    cdef int i
    if length < 4 + side + 8:
        return False
    for i in range(start, 4 + side):
        if p[i] != 0:
            return False
    p += 4 + side
    return memcmp(p, b"Xing", 4) == 0 or memcmp(p, b"Info", 4) == 0


cdef inline bint _is_tag_start(const unsigned char *p, Py_ssize_t avail) noexcept nogil:
    return avail >= 3 and (memcmp(p, b"TAG", 3) == 0 or memcmp(p, b"ID3", 3) == 0
                           or memcmp(p, b"APE", 3) == 0)


cdef inline bint _container_magic(const unsigned char *p) noexcept nogil:
    """Containers that never hold a raw MP3 frame stream (descriptions in MISLABEL_MAGIC)."""
    return (memcmp(p, b"OggS", 4) == 0 or memcmp(p, b"\x1a\x45\xdf\xa3", 4) == 0
            or memcmp(p, b"fLaC", 4) == 0 or memcmp(p + 4, b"ftyp", 4) == 0)


cdef class Mp3Decoder:
    """Streaming MP3 decoder: s16le mono PCM at ``output_rate`` (see the module docstring)."""

    cdef mpg123_handle *_mh
    # Pending input: _buf[_pos:_len] is not consumed yet; _buf[0] is byte _buf_off of the stream.
    cdef unsigned char *_buf
    cdef Py_ssize_t _pos, _len, _cap
    cdef long long _buf_off
    cdef long long _skip            # tag bytes still to skip
    cdef unsigned int _est          # header of the last accepted frame, 0 before the first
    cdef bint _synced               # _pos is where the last accepted frame ended
    cdef bint _boundary             # _pos is at a frame/tag boundary (a tag may start here)
    cdef bint _forwarded_any        # libmpg123 has seen a frame
    cdef bint _need_resync_byte     # sync was lost after frames reached libmpg123
    cdef long long _gap_start       # stream offset where the current run of garbage began
    cdef unsigned char _sniff[12]   # first bytes of that garbage, for the error message
    cdef Py_ssize_t _sniff_len
    # Decoded PCM of the current call.
    cdef unsigned char *_out
    cdef size_t _out_len, _out_cap
    cdef int _sample_rate, _channels
    cdef int _target_rate           # the caller's final rate; 0: always decode at the native rate
    cdef int _down                  # 1 when libmpg123 synthesises at half the native rate
    cdef long long _frames, _samples
    cdef bint _closed, _busy
    cdef object _error
    cdef long long _err_offset
    cdef long _err_a, _err_b

    def __cinit__(self, int target_rate=0):
        if target_rate < 0:
            raise ValueError(f"target_rate must be >= 0, got {target_rate}")
        self._target_rate = target_rate
        self._buf = NULL
        self._out = NULL
        self._mh = NULL
        self._open()

    def __dealloc__(self):
        if self._mh != NULL:
            mpg123_delete(self._mh)
        free(self._buf)
        free(self._out)

    cdef _open(self):
        cdef int err = MPG123_OK
        cdef const long *rates
        cdef size_t n_rates, i
        cdef long flags = (MPG123_QUIET | MPG123_MONO_MIX | MPG123_GAPLESS | MPG123_SKIP_ID3V2
                           | ROUTERAUDIO_MPG123_EXTRA_FLAGS)
        if self._mh != NULL:
            mpg123_delete(self._mh)
        self._mh = mpg123_new(NULL, &err)
        if self._mh == NULL:
            raise _mpg123_error(err, "cannot create an MP3 decoder")
        err = mpg123_param(self._mh, MPG123_FLAGS, flags, 0.0)
        if err != MPG123_OK and mpg123_errcode(self._mh) == MPG123_NO_GAPLESS:
            # A libmpg123 built without gapless support: decode untrimmed rather than not at all.
            err = mpg123_param(self._mh, MPG123_FLAGS, flags & ~(<long>MPG123_GAPLESS), 0.0)
        if err == MPG123_OK:
            err = mpg123_param(self._mh, MPG123_VERBOSE, 0, 0.0)
        # Only the MPEG rates (a native rate, or the half rate MPG123_DOWN_SAMPLE asks for), mono,
        # s16: the output format can never change width or channel count, and libmpg123's crude
        # internal resampler is never used (MPG123_AUTO_RESAMPLE is not among the flags).
        if err == MPG123_OK:
            err = mpg123_format_none(self._mh)
        mpg123_rates(&rates, &n_rates)
        i = 0
        while err == MPG123_OK and i < n_rates:
            err = mpg123_format(self._mh, rates[i], MPG123_MONO, MPG123_ENC_SIGNED_16)
            i += 1
        if err == MPG123_OK:
            err = mpg123_open_feed(self._mh)
        if err != MPG123_OK:
            raise _mpg123_error(mpg123_errcode(self._mh), "cannot configure the MP3 decoder")
        self._pos = self._len = 0
        self._buf_off = self._skip = 0
        self._est = 0
        self._synced = False
        self._boundary = True
        self._forwarded_any = self._need_resync_byte = False
        self._gap_start = 0
        self._sniff_len = 0
        self._out_len = 0
        self._sample_rate = self._channels = 0
        self._down = 0
        self._frames = self._samples = 0
        self._closed = False
        self._error = None

    # -- public API --------------------------------------------------------------------------

    def feed(self, data):
        """Push any chunk of the MP3 byte stream; return all PCM decodable so far (s16le mono)."""
        cdef Py_buffer view
        cdef int status = ST_OK
        cdef Py_ssize_t done = 0, n
        self._enter()
        try:
            if self._closed:
                raise ValueError("Mp3Decoder.feed() after flush(); call reset() to decode a new stream")
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                with nogil:
                    while done < view.len and status == ST_OK:
                        n = view.len - done
                        if n > _SLICE:
                            n = _SLICE
                        status = self._append(<const unsigned char *>view.buf + done, n)
                        if status == ST_OK:
                            status = self._process(False)
                        done += n
            finally:
                PyBuffer_Release(&view)
            return self._result(status)
        finally:
            self._busy = False

    def flush(self):
        """End of stream: decode what remains and return it. The decoder is then closed."""
        cdef int status
        self._enter()
        try:
            if self._closed:
                return b""
            self._closed = True
            with nogil:
                status = self._process(True)
            if status == ST_OK and self._frames == 0 and self._gap_bytes() > 0:
                self._err_offset = self._gap_start
                status = ST_NO_SYNC
            return self._result(status)
        finally:
            self._busy = False

    def reset(self):
        """Forget the stream (and any error): ready for a new stream, with the same target_rate."""
        if self._busy:
            raise RuntimeError("Mp3Decoder is in use by another thread")
        self._open()

    @property
    def sample_rate(self):
        """Native sample rate of the stream in Hz; 0 until the first frame is decoded."""
        return self._sample_rate

    @property
    def output_rate(self):
        """Rate of the returned PCM in Hz: sample_rate, or half of it (see target_rate); 0 before."""
        return self._sample_rate >> self._down

    @property
    def target_rate(self):
        """The rate given to the constructor (0: none)."""
        return self._target_rate

    @property
    def channels(self):
        """Channel count of the stream's latest frame (the output is always mono); 0 before it."""
        return self._channels

    @property
    def frames_decoded(self):
        """MPEG audio frames decoded so far (the Xing/Info header frame is not counted)."""
        return self._frames

    @property
    def samples_decoded(self):
        """Mono samples returned so far, at output_rate (after gapless trimming)."""
        return self._samples

    # -- Python-level helpers ------------------------------------------------------------------

    cdef _enter(self):
        if self._busy:
            raise RuntimeError("Mp3Decoder is in use by another thread")
        if self._error is not None:
            raise AudioFormatError(self._error)
        self._busy = True

    cdef long long _gap_bytes(self):
        return self._buf_off + self._len - self._gap_start

    cdef object _result(self, int status):
        cdef bytes out = PyBytes_FromStringAndSize(<char *>self._out, self._out_len)
        self._out_len = 0
        if self._out_cap > _KEEP_OUT:  # one huge feed() must not pin its buffer for the session
            free(self._out)
            self._out = NULL
            self._out_cap = 0
        if status == ST_OK:
            return out
        if status == ST_NO_MEMORY:
            raise MemoryError("Mp3Decoder: out of memory")
        if status == ST_MPG123:
            exc = _mpg123_error(self._err_a, f"MP3 decoding failed at byte {self._err_offset}")
        else:
            exc = AudioFormatError(self._error_message(status))
        if isinstance(exc, AudioFormatError):
            self._error = str(exc)
        raise exc

    cdef str _error_message(self, int status):
        cdef long long end = self._buf_off + self._pos
        if status == ST_NO_SYNC:
            head = bytes(self._sniff[:self._sniff_len])
            if len(head) < _SNIFF:
                head += bytes(self._buf[self._pos:min(self._len, self._pos + _SNIFF - len(head))])
            found = describe_bytes(head)
            if self._est == 0 and self._closed:
                return (f"no complete MPEG audio frame in the {end} bytes of the stream "
                        f"(found: {found})")
            if self._est == 0:
                return f"no MPEG audio frame sync found in the first {end} bytes (found: {found})"
            return (f"lost MPEG audio frame sync at byte {self._gap_start} and found none in the "
                    f"next {end - self._gap_start} bytes (found: {found})")
        if status == ST_NOT_MPEG:
            return (f"expected MPEG audio frames at byte {self._err_offset}, found "
                    f"{describe_bytes(self._sniff[:self._sniff_len])}")
        if status == ST_RATE_CHANGED:
            return (f"sample rate changed from {self._err_a} to {self._err_b} Hz at byte "
                    f"{self._err_offset}; one MP3 stream must keep one sample rate")
        if status == ST_TAG_TOO_BIG:
            return (f"tag at byte {self._err_offset} declares {self._err_a} bytes, more than the "
                    f"{MAX_TAG_BYTES}-byte limit")
        return (f"libmpg123 chose output format rate={self._err_a} channels={self._err_b} at "
                f"byte {self._err_offset}, expected s16 mono")

    # -- nogil stage ---------------------------------------------------------------------------

    cdef int _append(self, const unsigned char *data, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t need, cap
        cdef unsigned char *grown
        if self._pos > 0:  # keep only the unconsumed tail (at most about one frame)
            memmove(self._buf, self._buf + self._pos, self._len - self._pos)
            self._buf_off += self._pos
            self._len -= self._pos
            self._pos = 0
        need = self._len + n
        if need > self._cap:
            cap = need if need > 2 * self._cap else 2 * self._cap
            grown = <unsigned char *>realloc(self._buf, cap)
            if grown == NULL:
                return ST_NO_MEMORY
            self._buf = grown
            self._cap = cap
        memcpy(self._buf + self._len, data, n)
        self._len += n
        return ST_OK

    cdef int _process(self, bint eof) noexcept nogil:
        """Consume _buf[_pos:_len]; at ``eof`` nothing more will come."""
        cdef const unsigned char *p
        cdef Py_ssize_t avail, length, rest, k
        cdef unsigned int h, h2
        cdef long long tag
        cdef bint confirmed
        cdef int status
        while True:
            avail = self._len - self._pos
            p = self._buf + self._pos
            if self._skip > 0:
                k = avail if avail < self._skip else <Py_ssize_t>self._skip
                self._pos += k
                self._skip -= k
                if self._skip > 0:
                    return ST_OK
                self._gap_start = self._buf_off + self._pos
                continue
            if avail == 0 or (avail < 4 and not eof):
                return ST_OK
            if self._boundary and avail >= 3:
                tag = self._tag_size(p, avail, eof)
                if tag == -2:
                    return ST_OK  # a tag header is still incomplete
                if tag > _MAX_TAG:
                    self._err_offset = self._buf_off + self._pos
                    self._err_a = <long>tag
                    return ST_TAG_TOO_BIG
                if tag > 0:
                    self._skip = tag
                    continue
            h = _header_at(p) if avail >= 4 else 0
            if _valid_l3(h):
                length = _frame_len(h)
                if self._synced and _same_stream(h, self._est):
                    # In sync: pass the frame on as soon as it is complete.
                    if avail < length:
                        if eof:  # truncated last frame: nothing to decode
                            self._pos = self._len
                        return ST_OK
                    status = self._accept(p, length, h)
                    if status != ST_OK:
                        return status
                    continue
                # Anything else must be confirmed by the header one frame later.
                if avail >= length + 4:
                    h2 = _header_at(p + length)
                    confirmed = ((_valid_l3(h2) and _same_stream(h, h2) and _mono(h) == _mono(h2))
                                 or _is_tag_start(p + length, 4))
                elif not eof:
                    return ST_OK
                else:
                    rest = avail - length
                    confirmed = rest >= 0 and (rest == 0 or _is_tag_start(p + length, rest)
                                               or (rest < 4 and p[length] == 0xFF))
                if confirmed:
                    if self._est != 0 and not _same_stream(h, self._est):
                        self._err_offset = self._buf_off + self._pos
                        self._err_a = _rate(self._est)
                        self._err_b = _rate(h)
                        return ST_RATE_CHANGED
                    status = self._accept(p, length, h)
                    if status != ST_OK:
                        return status
                    continue
            # Not a frame: garbage, one byte at a time.
            if self._synced or self._boundary:
                self._synced = self._boundary = False
                self._need_resync_byte = self._forwarded_any
                self._gap_start = self._buf_off + self._pos
                self._sniff_len = 0
            if self._sniff_len < _SNIFF:
                self._sniff[self._sniff_len] = p[0]
                self._sniff_len += 1
                if self._sniff_len == 8 and self._est == 0 and _container_magic(self._sniff):
                    self._err_offset = self._gap_start
                    return ST_NOT_MPEG
            self._pos += 1
            if self._buf_off + self._pos - self._gap_start > _MAX_GARBAGE:
                return ST_NO_SYNC

    cdef long long _tag_size(self, const unsigned char *p, Py_ssize_t avail, bint eof) noexcept nogil:
        """Bytes of the tag starting at ``p``; 0 if none, -2 if its header is still incomplete."""
        cdef long long size
        if memcmp(p, b"TAG", 3) == 0:  # ID3v1: fixed 128 bytes
            return 128
        if memcmp(p, b"ID3", 3) == 0:
            if avail < 10:
                return 0 if eof else -2
            if p[3] == 0xFF or p[4] == 0xFF or (p[6] | p[7] | p[8] | p[9]) & 0x80:
                return 0
            size = (<long long>p[6] << 21) | (<long long>p[7] << 14) | (p[8] << 7) | p[9]
            return 10 + size + (10 if p[5] & 0x10 else 0)  # header, body, footer
        if avail >= 4 and memcmp(p, b"APET", 4) == 0:
            if avail < 32:
                return 0 if eof else -2
            if memcmp(p, b"APETAGEX", 8) != 0:
                return 0
            size = (<long long>p[12] | (<long long>p[13] << 8) | (<long long>p[14] << 16)
                    | (<long long>p[15] << 24))
            # The size covers the items and the footer; a header (flag bit 29) comes before them.
            return 32 + size if p[23] & 0x20 else 32
        return 0

    cdef int _accept(self, const unsigned char *p, Py_ssize_t length, unsigned int h) noexcept nogil:
        cdef int status = ST_OK
        cdef bint info = _is_info_frame(p, length, h)
        cdef unsigned char junk = 0
        self._pos += length
        self._est = h
        self._synced = self._boundary = True
        self._gap_start = self._buf_off + self._pos
        self._channels = 1 if _mono(h) else 2
        if info and self._forwarded_any:
            return ST_OK  # a second stream's header frame: silence, not audio
        if self._need_resync_byte:
            # libmpg123 drops its bit reservoir when it has to resync; the reservoir of the frames
            # before the garbage does not belong to this frame.
            self._need_resync_byte = False
            if mpg123_feed(self._mh, &junk, 1) != MPG123_OK:
                return self._mpg123_failed(length)
        if not self._forwarded_any:
            self._choose_rate(_rate(h), info)
        if mpg123_feed(self._mh, p, length) != MPG123_OK:
            return self._mpg123_failed(length)
        self._forwarded_any = True
        if not info:
            self._frames += 1
        return self._drain(length)

    cdef void _choose_rate(self, int native, bint info) noexcept nogil:
        # Before libmpg123's first frame: its output format is chosen from the first header.
        if (self._target_rate > 0 and not info and (native == 44100 or native == 48000)
                and native >> 1 >= self._target_rate):
            # A build without down-sampling refuses the value; the stream then decodes at full rate.
            if mpg123_param(self._mh, MPG123_DOWN_SAMPLE, 1, 0.0) == MPG123_OK:
                self._down = 1

    cdef int _drain(self, Py_ssize_t length) noexcept nogil:
        cdef unsigned char *audio
        cdef size_t nbytes, cap
        cdef unsigned char *grown
        cdef long rate
        cdef int channels, encoding, ret
        while True:
            ret = mpg123_decode_frame(self._mh, NULL, &audio, &nbytes)
            if ret == MPG123_OK:
                if nbytes == 0:
                    continue
                if self._out_len + nbytes > self._out_cap:
                    cap = 2 * self._out_cap
                    if cap < self._out_len + nbytes:
                        cap = self._out_len + nbytes
                    grown = <unsigned char *>realloc(self._out, cap)
                    if grown == NULL:
                        return ST_NO_MEMORY
                    self._out = grown
                    self._out_cap = cap
                memcpy(self._out + self._out_len, audio, nbytes)
                self._out_len += nbytes
                self._samples += nbytes // 2
            elif ret == MPG123_NEW_FORMAT:
                mpg123_getformat(self._mh, &rate, &channels, &encoding)
                self._err_offset = self._buf_off + self._pos - length
                if channels != 1 or encoding != MPG123_ENC_SIGNED_16:
                    self._err_a = rate
                    self._err_b = channels
                    return ST_BAD_FORMAT
                rate <<= self._down  # the native rate
                if self._sample_rate != 0 and rate != self._sample_rate:
                    self._err_a = self._sample_rate
                    self._err_b = rate
                    return ST_RATE_CHANGED
                self._sample_rate = rate
            elif ret == MPG123_NEED_MORE or ret == MPG123_DONE:
                return ST_OK
            else:
                return self._mpg123_failed(length)

    cdef int _mpg123_failed(self, Py_ssize_t length) noexcept nogil:
        self._err_offset = self._buf_off + self._pos - length
        self._err_a = mpg123_errcode(self._mh)
        return ST_NO_MEMORY if self._err_a == MPG123_OUT_OF_MEM else ST_MPG123
