# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Streaming Ogg demuxer for Ogg Opus (RFC 3533 pages, RFC 7845 Opus mapping).

Theory of operation. Bytes arrive in arbitrary chunks. Whole pages found inside a chunk are parsed in
place; only the tail of a page cut by a chunk boundary is copied into a pending buffer (at most one
page, 65307 bytes). Every page is CRC-checked. Pages then drive a small state machine:

    START   -> the first page must begin at byte 0 and carry the BOS flag, else the stream started
               mid-way (rejected).
    SCAN    -> BOS pages: the first one whose first packet is OpusHead selects the stream; other
               codecs are noted for the error message. A non-BOS page before any Opus BOS ends the
               search: "expected an Opus stream, found ...".
    HEADERS -> the next packet of the selected stream must be OpusTags; it is skipped (only its first
               8 bytes are kept, so a huge comment header costs no memory).
    AUDIO   -> packets are returned. Packets spanning pages are assembled (capped at 61440 bytes,
               more than any real Opus packet). Pages of other serials are ignored. On the EOS
               page the granule position is compared with the packets' TOC durations to compute
               ``trim_end`` (Ogg end trimming).
    ENDED   -> after EOS, a BOS page starting with OpusHead begins a chained stream: parsing stops
               *before* that page, ``head_changed`` is set, and the caller continues with
               ``feed(b"")`` (or ``flush()``) after finishing the previous stream's packets, so that
               the properties always describe the stream the returned packets belong to.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport int64_t, uint32_t, uint64_t, uint8_t
from libc.string cimport memcmp, memcpy

from routeraudio._codec.opus import packet_samples, parse_opus_head
from routeraudio.errors import AudioFormatError

cdef enum:
    HEADER = 27                   # fixed part of a page header
MAX_PAGE = 27 + 255 + 255 * 255   # 65307: the largest page the format can express
MAX_PACKET = 61440                # above 48 frames x 1275 bytes (RFC 6716's maximum) plus headers

cdef enum State:
    START, SCAN, HEADERS, AUDIO, ENDED, CLOSED

# First bytes of the identification packets of codecs found in Ogg, for "found ..." messages.
OGG_CODECS = (
    (b"OpusHead", "Opus"), (b"\x01vorbis", "Vorbis"), (b"\x7fFLAC", "FLAC"), (b"Speex   ", "Speex"),
    (b"\x80theora", "Theora"), (b"fishead\0", "Ogg Skeleton"), (b"\x80kate", "Kate"),
    (b"CELT    ", "CELT"), (b"PCM     ", "PCM"), (b"\x4fVP80", "VP8"),
)
# What a stream that is not Ogg at all most likely is, judged from its first bytes.
OTHER_FORMATS = (
    (b"\x1a\x45\xdf\xa3", "WebM/Matroska"), (b"ID3", "MP3 with an ID3 tag"), (b"RIFF", "WAV (RIFF)"),
    (b"fLaC", "FLAC"), (b"\xff\xfb", "MP3"), (b"\xff\xf3", "MP3"), (b"\xff\xe3", "MP3"),
)

cdef uint32_t CRC_TABLE[256]


cdef void _init_crc_table() noexcept nogil:
    cdef uint32_t r
    cdef int i, j
    for i in range(256):
        r = <uint32_t>i << 24
        for j in range(8):
            if r & <uint32_t>0x80000000U:
                r = (r << 1) ^ <uint32_t>0x04C11DB7U
            else:
                r = r << 1
        CRC_TABLE[i] = r


_init_crc_table()


cdef inline uint32_t _crc_update(uint32_t crc, const uint8_t *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        crc = (crc << 8) ^ CRC_TABLE[((crc >> 24) ^ p[i]) & 0xFF]
    return crc


cdef uint32_t _page_crc(const uint8_t *p, Py_ssize_t n) noexcept nogil:
    """CRC of a page as if its checksum field (bytes 22..25) were zero."""
    cdef uint8_t zeros[4]
    zeros[0] = zeros[1] = zeros[2] = zeros[3] = 0
    cdef uint32_t crc = _crc_update(0, p, 22)
    crc = _crc_update(crc, zeros, 4)
    return _crc_update(crc, p + 26, n - 26)


def ogg_crc32(data) -> int:
    """Ogg's CRC-32 of ``data`` (polynomial 0x04c11db7, zero initial value, no reflection)."""
    cdef const uint8_t[::1] v = memoryview(data).cast("B")
    if v.shape[0] == 0:
        return 0
    return _crc_update(0, &v[0], v.shape[0])


cdef inline uint32_t _u32(const uint8_t *p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline Py_ssize_t _page_size(const uint8_t *p, Py_ssize_t avail) noexcept nogil:
    """Total page length once the header and lacing table are available, else 0."""
    cdef Py_ssize_t nseg, i, size
    if avail < HEADER:
        return 0
    nseg = p[26]
    if avail < HEADER + nseg:
        return 0
    size = HEADER + nseg
    for i in range(nseg):
        size += p[HEADER + i]
    return size


def _show(bytes b):
    return " ".join(f"{x:02x}" for x in b) + f" ({b!r})"


cdef class OggDemuxer:
    """See ogg.pyi."""

    cdef uint8_t *_pend           # partial page carried over between feed() calls
    cdef Py_ssize_t _pend_len, _pend_cap
    cdef uint8_t *_asm            # packet spanning pages, under assembly
    cdef Py_ssize_t _asm_len, _asm_cap
    cdef bint _assembling
    cdef int64_t _offset          # stream offset of the next unparsed page
    cdef State _state
    cdef uint32_t _serial, _next_seq
    cdef int64_t _granule_prev    # granule of the last page of our stream that completed a packet
    cdef uint8_t _tags_prefix[8]
    cdef Py_ssize_t _tags_len
    cdef int _trim_end
    cdef bint _head_changed, _stop
    cdef object _head             # OpusHead namedtuple
    cdef bytes _head_raw
    cdef dict _others             # serial -> codec name of non-Opus streams seen in SCAN
    cdef list _out
    cdef bytes _backlog           # caller bytes left unparsed when stopping at a chained stream
    cdef bint _busy               # inside feed()/flush(): the CRC runs without the GIL

    def __cinit__(self):
        self._pend = NULL
        self._asm = NULL
        self.reset()

    def __dealloc__(self):
        PyMem_Free(self._pend)
        PyMem_Free(self._asm)

    def reset(self):
        """Forget everything; the next byte fed is byte 0 of a new physical stream."""
        if self._busy:
            raise RuntimeError("OggDemuxer.reset() while another thread is feeding it")
        self._pend_len = 0
        self._asm_len = 0
        self._assembling = False
        self._offset = 0
        self._state = START
        self._serial = 0
        self._next_seq = 0
        self._granule_prev = -1
        self._tags_len = 0
        self._trim_end = 0
        self._head_changed = False
        self._stop = False
        self._head = None
        self._head_raw = None
        self._others = {}
        self._out = []
        self._backlog = None

    # --- properties ---------------------------------------------------------------------------

    @property
    def opus_head(self):
        return self._head_raw

    @property
    def channels(self):
        return self._head.channels if self._head is not None else 0

    @property
    def pre_skip(self):
        return self._head.pre_skip if self._head is not None else 0

    @property
    def output_gain(self):
        return self._head.output_gain if self._head is not None else 0

    @property
    def trim_end(self):
        return self._trim_end

    @property
    def head_changed(self):
        return self._head_changed

    @property
    def offset(self):
        return self._offset

    # --- public verbs -------------------------------------------------------------------------

    def feed(self, data):
        """See ogg.pyi."""
        if self._state == CLOSED:
            raise ValueError("feed() after flush(): call reset() to start a new stream")
        self._begin_call()
        try:
            if self._backlog is not None:
                data = self._backlog + bytes(data)
                self._backlog = None
            self._consume_obj(data)
            return self._end_call()
        finally:
            self._busy = False

    def flush(self):
        """See ogg.pyi."""
        if self._state == CLOSED:
            return []
        self._begin_call()
        try:
            return self._flush()
        finally:
            self._busy = False

    cdef list _flush(self):
        cdef Py_ssize_t need
        if self._backlog is not None:
            data = self._backlog
            self._backlog = None
            self._consume_obj(data)
            if self._head_changed:
                return self._end_call()
        if self._pend_len:
            need = _page_size(self._pend, self._pend_len)
            if need:
                what = f"{self._pend_len} of its {need} bytes"
            else:
                what = f"only {self._pend_len} bytes of its header"
            raise AudioFormatError(
                f"truncated Ogg stream: it ends inside the page that starts at byte offset "
                f"{self._offset} ({what} arrived)")
        if self._assembling and self._state in (HEADERS, AUDIO):
            raise AudioFormatError(
                f"truncated Ogg stream: it ends at byte offset {self._offset} inside a packet whose "
                f"remaining pages never arrived")
        if self._state == SCAN:
            self._not_opus(self._offset)
        self._state = CLOSED
        return self._end_call()

    # --- internals ----------------------------------------------------------------------------

    cdef _begin_call(self):
        # Checked and set with the GIL held, so two threads cannot both pass.
        if self._busy:
            raise RuntimeError("OggDemuxer used from two threads at once; use one per stream")
        self._busy = True
        self._out = []
        self._trim_end = 0
        self._head_changed = False
        self._stop = False

    cdef list _end_call(self):
        out = self._out
        self._out = []
        return out

    cdef _consume_obj(self, data):
        cdef const uint8_t[::1] view
        cdef Py_ssize_t n, pos = 0
        if type(data) is bytes:
            n = PyBytes_GET_SIZE(data)
            if n:
                pos = self._consume(<const uint8_t *>PyBytes_AS_STRING(data), n)
        else:
            view = memoryview(data).cast("B")
            n = view.shape[0]
            if n:
                pos = self._consume(&view[0], n)
        if self._stop:
            rest = bytes(memoryview(data).cast("B")[pos:]) if n and pos < n else b""
            self._backlog = (self._backlog or b"") + rest

    cdef int _pend_reserve(self, Py_ssize_t size) except -1:
        cdef uint8_t *p
        if size > self._pend_cap:
            size = max(size, min(2 * self._pend_cap, MAX_PAGE))
            p = <uint8_t *>PyMem_Realloc(self._pend, size)
            if p == NULL:
                raise MemoryError()
            self._pend = p
            self._pend_cap = size
        return 0

    cdef int _check_sync(self, const uint8_t *p, Py_ssize_t avail) except -1:
        cdef Py_ssize_t m = avail if avail < 4 else 4
        if memcmp(p, b"OggS", m) == 0:
            return 0
        found = bytes(p[:avail if avail < 16 else 16])
        if self._offset == 0:
            hint = ""
            for magic, name in OTHER_FORMATS:
                if found.startswith(magic):
                    hint = f"; it looks like {name}"
            raise AudioFormatError(
                f"expected an Ogg stream (capture pattern 'OggS' at byte offset 0), found "
                f"{_show(found[:8])}{hint}")
        raise AudioFormatError(
            f"lost sync in the Ogg stream: expected a page (capture pattern 'OggS') at byte offset "
            f"{self._offset}, found {_show(found[:8])}; the data is corrupted or not Ogg")

    cdef Py_ssize_t _consume(self, const uint8_t *d, Py_ssize_t n) except -1:
        """Parse as much of ``d`` as possible; return how many bytes were used (less than ``n`` only
        when stopping before a chained stream)."""
        cdef Py_ssize_t pos = 0, total, target, take
        while pos < n and not self._stop:
            if self._pend_len == 0:
                self._check_sync(d + pos, n - pos)
                total = _page_size(d + pos, n - pos)
                if total and total <= n - pos:
                    self._page(d + pos, total)
                    if not self._stop:
                        pos += total
                    continue
                # The rest is a page head or a page cut by the chunk end: at most one page.
                take = n - pos
                self._pend_reserve(total if total else HEADER + 255)
                memcpy(self._pend, d + pos, take)
                self._pend_len = take
                pos = n
            else:
                if self._pend_len < HEADER:
                    target = HEADER
                elif self._pend_len < HEADER + self._pend[26]:
                    target = HEADER + self._pend[26]
                else:
                    target = _page_size(self._pend, self._pend_len)
                take = min(target - self._pend_len, n - pos)
                self._pend_reserve(target)
                memcpy(self._pend + self._pend_len, d + pos, take)
                self._pend_len += take
                pos += take
                self._check_sync(self._pend, self._pend_len)
                if self._pend_len == target and _page_size(self._pend, self._pend_len) == target:
                    self._page(self._pend, target)
                    if self._stop:
                        # The chained stream's first page goes back to the front of the backlog.
                        self._backlog = PyBytes_FromStringAndSize(<const char *>self._pend, target)
                    self._pend_len = 0
        return pos

    cdef int _page(self, const uint8_t *p, Py_ssize_t size) except -1:
        """One whole page at self._offset. On return self._offset has moved past it, unless the page
        is a chained stream's start and parsing stops before it (self._stop)."""
        cdef uint32_t stored, computed, serial, seq
        cdef int flags = p[5]
        cdef int64_t granule
        cdef int nseg = p[26]
        cdef bint bos
        cdef int64_t off = self._offset
        if p[4] != 0:
            raise AudioFormatError(
                f"unsupported Ogg page version {p[4]} at byte offset {off} (only version 0 exists)")
        serial = _u32(p + 14)
        seq = _u32(p + 18)
        stored = _u32(p + 22)
        with nogil:
            computed = _page_crc(p, size)
        if stored != computed:
            raise AudioFormatError(
                f"Ogg page CRC mismatch at byte offset {off} (stream serial {serial:#010x}, page "
                f"{seq}): stored {stored:#010x}, computed {computed:#010x}; the data is corrupted")
        if flags & ~7:
            raise AudioFormatError(
                f"invalid Ogg page header flags {flags:#04x} at byte offset {off}")
        granule = <int64_t>(_u32(p + 6) | (<uint64_t>_u32(p + 10) << 32))
        bos = flags & 2
        if self._state == START:
            if not bos:
                raise AudioFormatError(
                    f"the Ogg stream starts mid-way: the first page (serial {serial:#010x}, page "
                    f"{seq}) is not a beginning-of-stream page; send the stream from its first byte")
            self._state = SCAN
        if self._state == SCAN:
            if bos:
                if self._is_opus_head(p, nseg):
                    self._select(p, size, nseg, serial, seq)
                else:
                    self._others[serial] = self._codec_name(p, nseg)
            else:
                self._not_opus(off)
        elif self._state == ENDED:
            if bos and self._is_opus_head(p, nseg):
                self._stop = True
                self._head_changed = True
                self._state = SCAN
                self._others = {}
                return 0
            if serial == self._serial and not bos:
                raise AudioFormatError(
                    f"Ogg page at byte offset {off} (serial {serial:#010x}, page {seq}) follows the "
                    f"end-of-stream page of its stream")
        elif serial == self._serial:
            if bos:
                raise AudioFormatError(
                    f"a second beginning-of-stream page for serial {serial:#010x} at byte offset {off}")
            self._stream_page(p, size, nseg, flags, granule, seq, off)
        self._offset += size
        return 0

    cdef bint _is_opus_head(self, const uint8_t *p, int nseg):
        return nseg > 0 and p[HEADER] >= 8 and memcmp(p + HEADER + nseg, b"OpusHead", 8) == 0

    cdef str _codec_name(self, const uint8_t *p, int nseg):
        cdef Py_ssize_t first = p[HEADER] if nseg else 0
        ident = bytes(p[HEADER + nseg:HEADER + nseg + (first if first < 16 else 16)])
        for magic, name in OGG_CODECS:
            if ident.startswith(magic):
                return name
        return f"an unknown codec (first bytes {_show(ident[:8])})"

    cdef int _not_opus(self, int64_t off) except -1:
        if self._others:
            found = ", ".join(f"{name} (serial {s:#010x})" for s, name in self._others.items())
        else:
            found = "no stream"
        raise AudioFormatError(
            f"expected an Opus stream in this Ogg file, found {found}; the beginning-of-stream pages end "
            f"at byte offset {off} without an OpusHead")

    cdef int _select(self, const uint8_t *p, Py_ssize_t size, int nseg, uint32_t serial,
                     uint32_t seq) except -1:
        """Adopt the stream whose BOS page ``p`` carries OpusHead (RFC 7845: alone on its page)."""
        cdef Py_ssize_t body = HEADER + nseg
        cdef Py_ssize_t length = 0
        cdef int i = 0
        for i in range(nseg):
            length += p[HEADER + i]
            if p[HEADER + i] < 255:
                break
        if i != nseg - 1 or p[HEADER + nseg - 1] == 255:
            raise AudioFormatError(
                f"the OpusHead page at byte offset {self._offset} must hold exactly one complete "
                f"packet (RFC 7845 section 3)")
        raw = PyBytes_FromStringAndSize(<const char *>p + body, length)
        try:
            head = parse_opus_head(raw)
        except AudioFormatError as e:
            raise AudioFormatError(f"{e} (OpusHead page at byte offset {self._offset})") from None
        self._head = head
        self._head_raw = raw
        self._serial = serial
        self._next_seq = seq + 1
        self._state = HEADERS
        self._tags_len = 0
        self._granule_prev = -1
        self._assembling = False
        self._asm_len = 0
        return 0

    cdef int _stream_page(self, const uint8_t *p, Py_ssize_t size, int nseg, int flags,
                          int64_t granule, uint32_t seq, int64_t off) except -1:
        cdef Py_ssize_t i = 0, start, length, body = HEADER + nseg
        cdef Py_ssize_t first_out = len(self._out)
        cdef bint complete
        cdef int lace
        if seq != self._next_seq:
            raise AudioFormatError(
                f"expected page {self._next_seq} of Ogg stream serial {self._serial:#010x} at byte "
                f"offset {off}, found page {seq}: a page is missing or repeated")
        self._next_seq = seq + 1
        if flags & 1 and not self._assembling:
            raise AudioFormatError(
                f"the Ogg page at byte offset {off} continues a packet, but no packet was in progress")
        if not flags & 1 and self._assembling:
            raise AudioFormatError(
                f"the Ogg page at byte offset {off} does not continue the packet left unfinished by "
                f"the previous page: that packet is truncated")
        start = body
        while i < nseg:
            length = 0
            complete = False
            while i < nseg:
                lace = p[HEADER + i]
                i += 1
                length += lace
                if lace < 255:
                    complete = True
                    break
            self._packet(p + start, length, complete, off)
            start += length
        if flags & 4:
            if self._assembling:
                raise AudioFormatError(
                    f"the end-of-stream page at byte offset {off} leaves a packet unfinished")
            if self._state == AUDIO and len(self._out) > first_out and granule != -1:
                self._end_trim(first_out, granule, off)
            self._state = ENDED
        elif self._state == AUDIO and len(self._out) > first_out and granule != -1:
            self._granule_prev = granule
        return 0

    cdef int _packet(self, const uint8_t *data, Py_ssize_t length, bint complete, int64_t off) except -1:
        """A run of segments: a whole packet, or a piece of one that continues on the next page."""
        cdef Py_ssize_t take, cap
        cdef uint8_t *grown
        if self._state == HEADERS:
            take = min(8 - self._tags_len, length)
            if take > 0:
                memcpy(self._tags_prefix + self._tags_len, data, take)
                self._tags_len += take
            self._assembling = not complete
            if complete:
                if self._tags_len < 8 or memcmp(self._tags_prefix, b"OpusTags", 8) != 0:
                    raise AudioFormatError(
                        f"expected the OpusTags header after OpusHead (page at byte offset {off}), "
                        f"found {_show(bytes(self._tags_prefix[:self._tags_len]))}")
                self._state = AUDIO
            return 0
        if complete and not self._assembling:
            if length > MAX_PACKET:
                self._too_big(length, off)
            self._out.append(PyBytes_FromStringAndSize(<const char *>data, length))
            return 0
        if self._asm_len + length > MAX_PACKET:
            self._too_big(self._asm_len + length, off)
        if self._asm_len + length > self._asm_cap:
            cap = max(self._asm_len + length, min(2 * self._asm_cap, MAX_PACKET), 4096)
            grown = <uint8_t *>PyMem_Realloc(self._asm, cap)
            if grown == NULL:
                raise MemoryError()
            self._asm = grown
            self._asm_cap = cap
        memcpy(self._asm + self._asm_len, data, length)
        self._asm_len += length
        self._assembling = not complete
        if complete:
            self._out.append(PyBytes_FromStringAndSize(<const char *>self._asm, self._asm_len))
            self._asm_len = 0
        return 0

    cdef int _too_big(self, Py_ssize_t length, int64_t off) except -1:
        raise AudioFormatError(
            f"Opus packet of at least {length} bytes on the page at byte offset {off} exceeds the "
            f"{MAX_PACKET}-byte limit (no real Opus packet is that large); the stream is corrupted")

    cdef int _end_trim(self, Py_ssize_t first_out, int64_t granule, int64_t off) except -1:
        """RFC 7845 section 4.4: the EOS page's granule may end the stream before its last packet
        does. Whole packets that are entirely trimmed are dropped; the rest is ``trim_end``."""
        # Python integers: corrupted granules near 2**63 must not overflow.
        prev = self._granule_prev if self._granule_prev >= 0 else 0
        try:
            durations = [packet_samples(pkt) for pkt in self._out[first_out:]]
        except AudioFormatError as e:
            raise AudioFormatError(f"{e} (on the final page, at byte offset {off})") from None
        total = sum(durations)
        trim = prev + total - granule
        if trim <= 0:
            return 0
        if trim > total:
            raise AudioFormatError(
                f"the final Ogg page at byte offset {off} has granule position {granule}, before "
                f"the previous page's {prev}: the stream is corrupted")
        while durations and trim >= <int>durations[len(durations) - 1]:
            trim -= <int>durations.pop()
            self._out.pop()
        self._trim_end = <int>trim
        return 0
