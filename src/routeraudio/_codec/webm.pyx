# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Streaming WebM/Matroska demuxer: the Opus packets of the first ``A_OPUS`` track.

Theory of operation
-------------------
The stream is a sequence of EBML element headers (ID + size) and payloads. The parser is always in
one of four modes:

* SNIFF:  the first 4 bytes are collected to check the EBML magic, and to name what was sent
  instead (an ID3 tag, an MPEG frame sync, ``OggS``...).
* HEADER: collecting an element header; at most 12 bytes are kept across chunk boundaries.
* SKIP:   counting down the payload of an element nobody needs (Cues, Tags, SeekHead, Void, video
  blocks...): nothing is buffered, however large it is.
* HOLD:   copying the payload of an element needed whole: the EBML header, Tracks, a Block or
  SimpleBlock of the chosen track, a DiscardPadding. Each kind has a size cap checked before its
  payload is buffered, and the buffer grows only as bytes arrive, never to a declared size.

The masters descended into (Segment, Cluster, BlockGroup) sit on a small stack with their end
offset, -1 for an unknown size. A known-size master closes as soon as its last byte is consumed; an
unknown-size one (Segment and Cluster, as MediaRecorder writes them) closes when an element that
cannot be its child begins (RFC 8794 section 6.2): a Cluster at any level-1 element (Cluster, Cues,
Tags, ...) or at a new EBML header or Segment.

The byte loop runs without the GIL and appends packet bytes to one output buffer plus (offset,
length, trim) records; the ``bytes`` objects are made after it. The two elements that need a real
parse (the EBML header and Tracks, once per stream) suspend the loop and are read with the GIL. A
BlockGroup's packets stay tentative until the group closes, because its DiscardPadding may follow
the Block.
"""

import struct

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove

from routeraudio.errors import AudioFormatError

cdef enum:  # element IDs (with their length marker bits, as written in the stream)
    ID_EBML = 0x1A45DFA3, ID_EBML_READ_VERSION = 0x42F7, ID_EBML_MAX_ID_LENGTH = 0x42F2
    ID_EBML_MAX_SIZE_LENGTH = 0x42F3, ID_DOCTYPE = 0x4282
    ID_SEGMENT = 0x18538067, ID_SEEKHEAD = 0x114D9B74, ID_INFO = 0x1549A966, ID_TRACKS = 0x1654AE6B
    ID_CLUSTER = 0x1F43B675, ID_CUES = 0x1C53BB6B, ID_TAGS = 0x1254C367, ID_CHAPTERS = 0x1043A770
    ID_ATTACHMENTS = 0x1941A469, ID_VOID = 0xEC, ID_CRC32 = 0xBF
    ID_SIMPLEBLOCK = 0xA3, ID_BLOCKGROUP = 0xA0, ID_BLOCK = 0xA1, ID_DISCARD_PADDING = 0x75A2
    ID_TRACK_ENTRY = 0xAE, ID_TRACK_NUMBER = 0xD7, ID_CODEC_ID = 0x86, ID_CODEC_PRIVATE = 0x63A2
    ID_CODEC_DELAY = 0x56AA, ID_CONTENT_ENCODINGS = 0x6D80, ID_AUDIO = 0xE1
    ID_SAMPLING_FREQUENCY = 0xB5, ID_CHANNELS = 0x9F

cdef enum:  # parser modes
    M_SNIFF, M_HEADER, M_SKIP, M_HOLD

cdef enum:  # what a HOLD collects
    H_EBML, H_TRACKS, H_BLOCK, H_DISCARD

cdef enum:  # masters on the stack
    K_TOP, K_SEGMENT, K_CLUSTER, K_GROUP

cdef enum:  # what _run() stopped for
    ST_DONE, ST_ERROR, ST_EBML, ST_TRACKS

cdef enum:  # error codes raised from the nogil loop; _error_message() words them
    E_NOT_EBML = 1, E_BAD_ID, E_BAD_SIZE, E_UNKNOWN_SIZE, E_OVERRUN, E_TOO_BIG, E_NOT_SEGMENT
    E_CHAINED, E_NO_TRACKS, E_TRACK_NUMBER, E_BLOCK_SHORT, E_LACE_OVERRUN, E_LACE_FIXED
    E_LACE_VINT, E_NOMEM

cdef enum:  # caps on what is held; Opus needs far less (a 120 ms packet is < 8 KiB at 510 kb/s)
    EBML_HEADER_CAP = 4096
    TRACKS_CAP = 262144
    BLOCK_CAP = 1048576
    DISCARD_CAP = 8
    MAX_DEPTH = 4
    MAX_TRIM = 5760  # 120 ms at 48 kHz: no Opus packet decodes to more
    MAX_PRE_SKIP = 65535  # what OpusHead's 16-bit field can say

ELEMENT_NAMES = {
    ID_EBML: "EBML header", ID_SEGMENT: "Segment", ID_SEEKHEAD: "SeekHead", ID_INFO: "Info",
    ID_TRACKS: "Tracks", ID_CLUSTER: "Cluster", ID_CUES: "Cues", ID_TAGS: "Tags",
    ID_CHAPTERS: "Chapters", ID_ATTACHMENTS: "Attachments", ID_VOID: "Void", ID_CRC32: "CRC-32",
    ID_SIMPLEBLOCK: "SimpleBlock", ID_BLOCKGROUP: "BlockGroup", ID_BLOCK: "Block",
    ID_DISCARD_PADDING: "DiscardPadding", ID_TRACK_ENTRY: "TrackEntry", ID_AUDIO: "Audio",
    ID_CODEC_PRIVATE: "CodecPrivate", ID_CODEC_DELAY: "CodecDelay",
}


# Fields: name (of the element), off (its offset), a, b, c (per code), parent (the name of id b).
ERROR_MESSAGES = {
    E_BAD_ID: "invalid EBML element ID at offset {off}: corrupted or non-WebM data",
    E_BAD_SIZE: "invalid EBML size field in the element header at offset {off}: corrupted or "
                "non-WebM data",
    E_UNKNOWN_SIZE: "{name} at offset {off} has an unknown size, which WebM allows only for "
                    "Segment and Cluster",
    E_OVERRUN: "{name} at offset {off} declares {a} bytes, which overruns its parent {parent} "
               "(ends at offset {c})",
    E_TOO_BIG: "{name} at offset {off} declares {a} bytes, over the {b}-byte limit for that "
               "element: corrupted or not an audio WebM stream",
    E_NOT_SEGMENT: "expected a Segment after the EBML header, found {name} at offset {off}",
    E_CHAINED: "a second {name} at offset {off}: concatenated WebM streams are not supported; "
               "send each recording as its own stream",
    E_NO_TRACKS: "Cluster at offset {off} comes before the Tracks element: cannot tell which "
                 "blocks hold the audio",
    E_TRACK_NUMBER: "invalid track number in the {name} at offset {off}",
    E_BLOCK_SHORT: "{name} at offset {off} is too short ({a} bytes) for a block header",
    E_LACE_OVERRUN: "the lacing sizes of the {name} at offset {off} overrun the block ({a} bytes)",
    E_LACE_FIXED: "fixed-size lacing in the {name} at offset {off}: {a} bytes do not split into "
                  "{b} equal frames",
    E_LACE_VINT: "invalid EBML lace size in the {name} at offset {off}",
}


EBML_LIMITS = {ID_EBML_READ_VERSION: ("EBMLReadVersion", 1),
               ID_EBML_MAX_ID_LENGTH: ("EBMLMaxIDLength", 4),
               ID_EBML_MAX_SIZE_LENGTH: ("EBMLMaxSizeLength", 8)}


def _name(eid):
    return ELEMENT_NAMES.get(eid, f"element 0x{eid:X}")


cdef struct Rec:
    Py_ssize_t off
    Py_ssize_t length
    int trim


cdef inline int _vint_len(uint8_t b0) noexcept nogil:
    """Length of a VINT from its first byte; 0 for the invalid 0x00."""
    cdef int n = 1
    cdef uint8_t mask = 0x80
    if b0 == 0:
        return 0
    while not (b0 & mask):
        n += 1
        mask >>= 1
    return n


cdef int _read_header(const uint8_t* b, Py_ssize_t avail, uint32_t* eid, int64_t* size,
                      int* hlen) noexcept nogil:
    """Decode an element header: 1 done (size -1 = unknown), 0 need more bytes, -1 bad ID, -2 bad size.

    Errors are reported as soon as the offending byte is present, so they do not depend on how
    the stream was split.
    """
    cdef int il, sl, k
    cdef uint32_t v = 0
    cdef uint64_t sv
    cdef bint all_ones
    if avail < 1:
        return 0
    il = _vint_len(b[0])
    if il == 0 or il > 4:
        return -1
    if avail < il + 1:
        return 0
    sl = _vint_len(b[il])
    if sl == 0:
        return -2
    if avail < il + sl:
        return 0
    for k in range(il):
        v = (v << 8) | b[k]
    sv = b[il] & ((0x80 >> (sl - 1)) - 1)
    all_ones = sv == <uint64_t>((0x80 >> (sl - 1)) - 1)
    for k in range(1, sl):
        sv = (sv << 8) | b[il + k]
        all_ones = all_ones and b[il + k] == 0xFF
    eid[0] = v
    size[0] = -1 if all_ones else <int64_t>sv
    hlen[0] = il + sl
    return 1


cdef inline bint _is_level1(uint32_t eid) noexcept nogil:
    return (eid == ID_CLUSTER or eid == ID_CUES or eid == ID_TAGS or eid == ID_SEEKHEAD
            or eid == ID_INFO or eid == ID_TRACKS or eid == ID_CHAPTERS or eid == ID_ATTACHMENTS)


cdef bint _grow(void** buf, Py_ssize_t* cap, Py_ssize_t need, size_t item) noexcept nogil:
    cdef Py_ssize_t new_cap
    cdef void* p
    if need <= cap[0]:
        return True
    new_cap = cap[0] * 2 if cap[0] else 64
    if new_cap < need:
        new_cap = need
    p = realloc(buf[0], <size_t>new_cap * item)
    if p == NULL:
        return False
    buf[0] = p
    cap[0] = new_cap
    return True


cdef inline int _ns_to_48k(int64_t ns) noexcept nogil:
    # Rounded to nearest, as ffmpeg's av_rescale_q does, so trims agree with PyAV's side data.
    if ns <= 0:
        return 0
    if ns >= 120000000:
        return MAX_TRIM
    return <int>((ns * 48000 + 500000000) // 1000000000)


cdef class WebmDemuxer:
    cdef int mode, hdr_len, hold_kind, depth, err
    cdef uint8_t hdr[16]
    cdef int64_t pos, hdr_off, skip_left, hold_off, group_discard
    cdef uint8_t* hold
    cdef Py_ssize_t hold_cap, hold_len, hold_need
    cdef uint32_t hold_id, err_id
    cdef bint block_checked, ebml_seen, segment_seen, tracks_seen, _closed
    cdef int lv_kind[MAX_DEPTH]
    cdef uint32_t lv_id[MAX_DEPTH]
    cdef int64_t lv_off[MAX_DEPTH]
    cdef int64_t lv_end[MAX_DEPTH]
    cdef uint64_t track
    cdef uint8_t* out
    cdef Py_ssize_t out_cap, out_len
    cdef Rec* recs
    cdef Py_ssize_t rec_cap, nrec, ncommit
    cdef int64_t err_off, err_a, err_b, err_c
    cdef object _failed
    cdef list _queue, _trims
    cdef readonly object opus_head
    cdef readonly int channels, pre_skip, output_gain, trim_end
    cdef readonly double sampling_frequency

    def __cinit__(self):
        self.hold = <uint8_t*>malloc(64)
        self.out = <uint8_t*>malloc(4096)
        self.recs = <Rec*>malloc(64 * sizeof(Rec))
        if self.hold == NULL or self.out == NULL or self.recs == NULL:
            raise MemoryError()
        self.hold_cap = 64
        self.out_cap = 4096
        self.rec_cap = 64

    def __dealloc__(self):
        free(self.hold)
        free(self.out)
        free(self.recs)

    def __init__(self):
        self.reset()

    def reset(self):
        """Forget everything and expect a new stream from its first byte."""
        self.mode = M_SNIFF
        self.pos = self.hdr_off = self.skip_left = self.group_discard = self.track = 0
        self.hdr_len = self.depth = self.err = 0
        self.hold_len = self.hold_need = self.out_len = self.nrec = self.ncommit = 0
        self.ebml_seen = self.segment_seen = self.tracks_seen = self._closed = False
        self._failed = None
        self._queue, self._trims = [], []
        self.opus_head = None
        self.channels = self.pre_skip = self.output_gain = self.trim_end = 0
        self.sampling_frequency = 0.0

    # ---- Python surface -------------------------------------------------------------------------

    def feed(self, data):
        """Consume a chunk; return the complete Opus packets now available, in order."""
        cdef const uint8_t[::1] view
        cdef const uint8_t* ptr = NULL
        cdef Py_ssize_t i = 0, n
        cdef int st
        if self._failed is not None:
            raise AudioFormatError(self._failed)
        if self._closed:
            raise RuntimeError("WebmDemuxer.feed() after flush(); call reset() to start a new stream")
        try:
            view = data
        except (TypeError, ValueError, BufferError):
            view = bytes(memoryview(data))  # non-contiguous or non-byte views: copy once
        n = view.shape[0]
        if n:
            ptr = &view[0]
        try:
            while True:
                with nogil:
                    st = self._run(ptr, n, &i)
                if st == ST_DONE:
                    break
                if st == ST_ERROR:
                    raise AudioFormatError(self._error_message())
                if st == ST_EBML:
                    self._parse_ebml_header()
                else:
                    self._parse_tracks()
                self._end_hold()
        except AudioFormatError as exc:
            self._failed = str(exc)
            raise
        self._collect()
        return self._take(False)

    def flush(self):
        """End of stream: return the remaining packets, or raise if the stream was cut short."""
        if self._failed is not None:
            raise AudioFormatError(self._failed)
        if self._closed:
            self.trim_end = 0
            return []
        message = self._truncation()
        if message is not None:
            self._failed = message
            raise AudioFormatError(message)
        self._closed = True
        return self._take(True)

    # ---- the nogil loop -------------------------------------------------------------------------

    cdef int _fail(self, int code, int64_t off, uint32_t eid, int64_t a, int64_t b,
                   int64_t c) noexcept nogil:
        self.err, self.err_off, self.err_id = code, off, eid
        self.err_a, self.err_b, self.err_c = a, b, c
        return ST_ERROR

    cdef int _run(self, const uint8_t* data, Py_ssize_t n, Py_ssize_t* ip) noexcept nogil:
        cdef Py_ssize_t i = ip[0], k
        cdef int r, hl
        cdef uint32_t eid
        cdef int64_t size
        while True:
            if self.mode == M_SKIP:
                k = n - i
                if k == 0:
                    break
                if k > self.skip_left:
                    k = <Py_ssize_t>self.skip_left
                i += k
                self.pos += k
                self.skip_left -= k
                if self.skip_left == 0:
                    self.mode = M_HEADER
                    self._close_ended()
                continue
            if self.mode == M_HOLD:
                if i == n and self.hold_len < self.hold_need:
                    break
                r = self._hold_bytes(data, n, &i)
                if r != ST_DONE:
                    ip[0] = i
                    return r
                continue
            if i == n:
                break
            if self.mode == M_SNIFF:
                self.hdr[self.hdr_len] = data[i]
                self.hdr_len += 1
                i += 1
                self.pos += 1
                if self.hdr_len == 4:
                    if not (self.hdr[0] == 0x1A and self.hdr[1] == 0x45 and self.hdr[2] == 0xDF
                            and self.hdr[3] == 0xA3):
                        ip[0] = i
                        return self._fail(E_NOT_EBML, 0, 0, 0, 0, 0)
                    self.mode = M_HEADER
                continue
            # M_HEADER
            if self.hdr_len == 0:
                self.hdr_off = self.pos
                r = _read_header(data + i, n - i, &eid, &size, &hl)
                if r == 0:
                    # An incomplete header is shorter than the 12 bytes a header can take.
                    k = n - i
                    memcpy(self.hdr, data + i, k)
                    self.hdr_len = <int>k
                    i += k
                    self.pos += k
                    continue
                if r > 0:
                    i += hl
                    self.pos += hl
            else:
                self.hdr[self.hdr_len] = data[i]
                self.hdr_len += 1
                i += 1
                self.pos += 1
                r = _read_header(self.hdr, self.hdr_len, &eid, &size, &hl)
                if r == 0:
                    continue
                self.hdr_len = 0
            if r < 0:
                ip[0] = i
                return self._fail(E_BAD_ID if r == -1 else E_BAD_SIZE, self.hdr_off, 0, 0, 0, 0)
            r = self._start_element(eid, size)
            if r != ST_DONE:
                ip[0] = i
                return r
        ip[0] = i
        return ST_DONE

    cdef void _push(self, int kind, uint32_t eid, int64_t size) noexcept nogil:
        cdef int d = self.depth
        self.lv_kind[d], self.lv_id[d], self.lv_off[d] = kind, eid, self.hdr_off
        self.lv_end[d] = self.pos + size if size >= 0 else -1
        self.depth += 1
        if kind == K_GROUP:
            self.group_discard = 0
        self._close_ended()

    cdef void _pop_to(self, int d) noexcept nogil:
        while self.depth > d:
            self.depth -= 1
            if self.lv_kind[self.depth] == K_GROUP:
                if self.nrec > self.ncommit and self.group_discard > 0:
                    self.recs[self.nrec - 1].trim = _ns_to_48k(self.group_discard)
                self.ncommit = self.nrec

    cdef void _close_ended(self) noexcept nogil:
        cdef int d
        for d in range(self.depth):
            if self.lv_end[d] == self.pos:
                self._pop_to(d)
                return

    cdef int _skip(self, int64_t size) noexcept nogil:
        if size == 0:
            self._close_ended()
        else:
            self.mode = M_SKIP
            self.skip_left = size
        return ST_DONE

    cdef int _hold(self, int kind, uint32_t eid, int64_t size, int64_t cap) noexcept nogil:
        if cap and size > cap:
            return self._fail(E_TOO_BIG, self.hdr_off, eid, size, cap, 0)
        self.mode, self.hold_kind, self.hold_id, self.hold_off = M_HOLD, kind, eid, self.hdr_off
        self.hold_need, self.hold_len, self.block_checked = <Py_ssize_t>size, 0, False
        return ST_DONE

    cdef int _start_element(self, uint32_t eid, int64_t size) noexcept nogil:
        cdef int ctx, d
        cdef int64_t off = self.hdr_off
        # An unknown-size master ends where an element that cannot be its child begins.
        while self.depth > 0 and self.lv_end[self.depth - 1] < 0:
            ctx = self.lv_kind[self.depth - 1]
            if eid == ID_EBML or eid == ID_SEGMENT or (ctx == K_CLUSTER and _is_level1(eid)):
                self._pop_to(self.depth - 1)
            else:
                break
        ctx = self.lv_kind[self.depth - 1] if self.depth else K_TOP
        if size < 0:
            if not ((eid == ID_SEGMENT and ctx == K_TOP) or (eid == ID_CLUSTER and ctx == K_SEGMENT)):
                return self._fail(E_UNKNOWN_SIZE, off, eid, 0, 0, 0)
        else:
            d = self.depth - 1
            while d >= 0:
                if self.lv_end[d] >= 0:
                    if size > self.lv_end[d] - self.pos:
                        return self._fail(E_OVERRUN, off, eid, size, self.lv_id[d], self.lv_end[d])
                    break
                d -= 1
        if eid == ID_VOID or eid == ID_CRC32:
            return self._skip(size)
        if ctx == K_TOP:
            if eid == ID_EBML:
                if self.ebml_seen:
                    return self._fail(E_CHAINED, off, eid, 0, 0, 0)
                self.ebml_seen = True
                return self._hold(H_EBML, eid, size, EBML_HEADER_CAP)
            if eid == ID_SEGMENT:
                if self.segment_seen:
                    return self._fail(E_CHAINED, off, eid, 0, 0, 0)
                self.segment_seen = True
                self._push(K_SEGMENT, eid, size)
                return ST_DONE
            if not self.segment_seen:
                return self._fail(E_NOT_SEGMENT, off, eid, 0, 0, 0)
            return self._skip(size)
        if ctx == K_SEGMENT:
            if eid == ID_CLUSTER:
                if not self.tracks_seen:
                    return self._fail(E_NO_TRACKS, off, eid, 0, 0, 0)
                self._push(K_CLUSTER, eid, size)
                return ST_DONE
            if eid == ID_TRACKS and not self.tracks_seen:
                return self._hold(H_TRACKS, eid, size, TRACKS_CAP)
            return self._skip(size)
        if ctx == K_CLUSTER:
            if eid == ID_SIMPLEBLOCK:
                return self._hold(H_BLOCK, eid, size, 0)
            if eid == ID_BLOCKGROUP:
                self._push(K_GROUP, eid, size)
                return ST_DONE
            return self._skip(size)
        if eid == ID_BLOCK:
            return self._hold(H_BLOCK, eid, size, 0)
        if eid == ID_DISCARD_PADDING:
            return self._hold(H_DISCARD, eid, size, DISCARD_CAP)
        return self._skip(size)

    cdef int _hold_bytes(self, const uint8_t* data, Py_ssize_t n, Py_ssize_t* ip) noexcept nogil:
        cdef Py_ssize_t i = ip[0], k
        cdef int vl, j
        cdef uint64_t tn, u
        if self.hold_kind == H_BLOCK and not self.block_checked:
            # Byte by byte until the track number is known, so that blocks of other tracks (video)
            # are skipped without being buffered or held to the audio cap.
            while True:
                if self.hold_len > 0:
                    vl = _vint_len(self.hold[0])
                    if vl == 0:
                        ip[0] = i
                        return self._fail(E_TRACK_NUMBER, self.hold_off, self.hold_id, 0, 0, 0)
                    if self.hold_len >= vl:
                        break
                if self.hold_len == self.hold_need:
                    ip[0] = i
                    return self._fail(E_BLOCK_SHORT, self.hold_off, self.hold_id, self.hold_need, 0, 0)
                if i == n:
                    ip[0] = i
                    return ST_DONE
                self.hold[self.hold_len] = data[i]
                self.hold_len += 1
                i += 1
                self.pos += 1
            tn = self.hold[0] & ((0x80 >> (vl - 1)) - 1)
            for j in range(1, vl):
                tn = (tn << 8) | self.hold[j]
            self.block_checked = True
            if tn != self.track:
                self.skip_left = self.hold_need - self.hold_len
                self.hold_len = 0
                ip[0] = i
                self.mode = M_HEADER
                return self._skip(self.skip_left)
            if self.hold_need > BLOCK_CAP:
                ip[0] = i
                return self._fail(E_TOO_BIG, self.hold_off, self.hold_id, self.hold_need, BLOCK_CAP, 0)
        k = n - i
        if k > self.hold_need - self.hold_len:
            k = self.hold_need - self.hold_len
        if k > 0:
            if not _grow(<void**>&self.hold, &self.hold_cap, self.hold_len + k, 1):
                ip[0] = i
                return self._fail(E_NOMEM, self.pos, 0, 0, 0, 0)
            memcpy(self.hold + self.hold_len, data + i, k)
            self.hold_len += k
            i += k
            self.pos += k
        ip[0] = i
        if self.hold_len < self.hold_need:
            return ST_DONE
        if self.hold_kind == H_EBML:
            return ST_EBML
        if self.hold_kind == H_TRACKS:
            return ST_TRACKS
        if self.hold_kind == H_DISCARD:
            # A signed big-endian integer of 0-8 bytes: sign-extend from its first byte.
            u = 0
            for j in range(self.hold_len):
                u = (u << 8) | self.hold[j]
            if 0 < self.hold_len < 8 and self.hold[0] & 0x80:
                u |= (<uint64_t>0xFFFFFFFFFFFFFFFF) << (8 * self.hold_len)
            self.group_discard = <int64_t>u
        elif self._emit_block() != ST_DONE:
            return ST_ERROR
        self.hold_len = 0
        self.mode = M_HEADER
        self._close_ended()
        return ST_DONE

    cdef int _emit_block(self) noexcept nogil:
        cdef const uint8_t* b = self.hold
        cdef Py_ssize_t size = self.hold_len, p, acc = 0, j, count
        cdef int64_t sizes[256]
        cdef int64_t s, raw
        cdef int lacing, v, vl, k
        vl = _vint_len(b[0])
        if size < vl + 3:
            return self._fail(E_BLOCK_SHORT, self.hold_off, self.hold_id, size, 0, 0)
        lacing = (b[vl + 2] >> 1) & 3
        p = vl + 3
        if lacing == 0:
            return self._add(b + p, size - p)
        if p >= size:
            return self._fail(E_BLOCK_SHORT, self.hold_off, self.hold_id, size, 0, 0)
        count = b[p] + 1
        p += 1
        if lacing == 2:  # fixed-size: every frame the same length
            if (size - p) % count:
                return self._fail(E_LACE_FIXED, self.hold_off, self.hold_id, size - p, count, 0)
            for j in range(count):
                sizes[j] = (size - p) // count
        else:
            for j in range(count - 1):
                if lacing == 1:  # Xiph: runs of 255 plus a final byte
                    s = 0
                    while True:
                        if p >= size:
                            return self._fail(E_LACE_OVERRUN, self.hold_off, self.hold_id, size, 0, 0)
                        v = b[p]
                        p += 1
                        s += v
                        if v != 255:
                            break
                else:  # EBML: a VINT, then signed VINT differences
                    if p >= size:
                        return self._fail(E_LACE_OVERRUN, self.hold_off, self.hold_id, size, 0, 0)
                    vl = _vint_len(b[p])
                    if vl == 0 or p + vl > size:
                        return self._fail(E_LACE_VINT, self.hold_off, self.hold_id, 0, 0, 0)
                    raw = b[p] & ((0x80 >> (vl - 1)) - 1)
                    for k in range(1, vl):
                        raw = (raw << 8) | b[p + k]
                    p += vl
                    if j == 0:
                        s = raw
                    else:
                        s = sizes[j - 1] + raw - ((<int64_t>1 << (7 * vl - 1)) - 1)
                    if s < 0:
                        return self._fail(E_LACE_VINT, self.hold_off, self.hold_id, 0, 0, 0)
                sizes[j] = s
                acc += s
                if acc > size - p:
                    return self._fail(E_LACE_OVERRUN, self.hold_off, self.hold_id, size, 0, 0)
            sizes[count - 1] = size - p - acc
        for j in range(count):
            if self._add(b + p, sizes[j]) != ST_DONE:
                return ST_ERROR
            p += sizes[j]
        return ST_DONE

    cdef int _add(self, const uint8_t* frame, Py_ssize_t length) noexcept nogil:
        if length == 0:  # an empty frame carries nothing (and would ask an Opus decoder for PLC)
            return ST_DONE
        if (not _grow(<void**>&self.out, &self.out_cap, self.out_len + length, 1)
                or not _grow(<void**>&self.recs, &self.rec_cap, self.nrec + 1, sizeof(Rec))):
            return self._fail(E_NOMEM, self.pos, 0, 0, 0, 0)
        memcpy(self.out + self.out_len, frame, length)
        self.recs[self.nrec] = Rec(self.out_len, length, 0)
        self.out_len += length
        self.nrec += 1
        if self.hold_id == ID_SIMPLEBLOCK:
            self.ncommit = self.nrec
        return ST_DONE

    # ---- with the GIL ---------------------------------------------------------------------------

    cdef void _end_hold(self) noexcept:
        self.hold_len = 0
        self.mode = M_HEADER
        self._close_ended()

    cdef int _collect(self) except -1:
        """Turn committed records into bytes; move tentative (open BlockGroup) ones to the front."""
        cdef Py_ssize_t j, base
        cdef Rec r
        for j in range(self.ncommit):
            r = self.recs[j]
            self._queue.append(PyBytes_FromStringAndSize(<char*>self.out + r.off, r.length))
            if r.trim:
                self._trims.append([len(self._queue) - 1, r.trim])
        if self.ncommit == self.nrec:
            self.out_len = 0
        else:
            base = self.recs[self.ncommit].off
            memmove(self.out, self.out + base, self.out_len - base)
            self.out_len -= base
            for j in range(self.ncommit, self.nrec):
                self.recs[j - self.ncommit] = self.recs[j]
                self.recs[j - self.ncommit].off -= base
        self.nrec -= self.ncommit
        self.ncommit = 0
        # Give back what one big feed(), block or Tracks element needed; a failed shrink keeps the
        # old buffer.
        cdef void* p
        if self.out_cap > 1048576 and self.out_len <= 4096:
            p = realloc(self.out, 4096)
            if p != NULL:
                self.out, self.out_cap = <uint8_t*>p, 4096
        if self.hold_cap > 65536 and self.mode != M_HOLD:
            p = realloc(self.hold, 64)
            if p != NULL:
                self.hold, self.hold_cap = <uint8_t*>p, 64
        return 0

    cdef list _take(self, bint everything):
        cdef list out
        cdef Py_ssize_t cut
        if not self._trims:
            out = self._queue
            self._queue = []
            self.trim_end = 0
            return out
        if everything:
            out = self._queue
            last = self._trims[len(self._trims) - 1]
            self.trim_end = last[1] if last[0] == len(out) - 1 else 0
            self._queue = []
            self._trims = []
            return out
        # Only the last packet of a call can carry a trim: stop after the first trimmed packet
        # and hand the rest out on the next feed()/flush() call.
        cut, self.trim_end = self._trims.pop(0)
        out = self._queue[:cut + 1]
        self._queue = self._queue[cut + 1:]
        for t in self._trims:
            t[0] -= cut + 1
        return out

    cdef object _truncation(self):
        """Why the stream cannot end here, or None."""
        cdef int d
        if self.pos == 0:
            return None
        if self.mode == M_SNIFF:
            return (f"the stream ended at offset {self.pos}, before a complete EBML header "
                    "(1A 45 DF A3): expected a WebM stream")
        if self.mode == M_HEADER and self.hdr_len:
            return (f"the stream ended at offset {self.pos} inside an element header that starts "
                    f"at offset {self.hdr_off}: truncated WebM")
        if self.mode == M_HOLD:
            return (f"the stream ended at offset {self.pos} inside the {_name(self.hold_id)} at "
                    f"offset {self.hold_off} ({self.hold_need - self.hold_len} of its bytes missing): "
                    "truncated WebM")
        if self.mode == M_SKIP:
            return (f"the stream ended at offset {self.pos} with {self.skip_left} bytes of an "
                    "element still to come: truncated WebM")
        for d in range(self.depth - 1, -1, -1):  # the innermost unfinished element says most
            if self.lv_end[d] >= 0:
                return (f"the stream ended at offset {self.pos} inside the {_name(self.lv_id[d])} at "
                        f"offset {self.lv_off[d]}, declared to end at offset {self.lv_end[d]}: "
                        "truncated WebM")
        return None

    cdef str _error_message(self):
        if self.err == E_NOT_EBML:
            return _sniff(bytes(self.hdr[:4]))
        if self.err == E_NOMEM:
            raise MemoryError()
        return ERROR_MESSAGES[self.err].format(
            name=_name(self.err_id), off=self.err_off, a=self.err_a, b=self.err_b, c=self.err_c,
            parent=_name(self.err_b))

    cdef void _parse_ebml_header(self) except *:
        payload = PyBytes_FromStringAndSize(<char*>self.hold, self.hold_len)
        base = self.hold_off
        doctype = None
        for eid, start, end in _children(payload, 0, len(payload), self.pos - len(payload),
                                         "EBML header"):
            value = payload[start:end]
            if eid == ID_DOCTYPE:
                doctype = value.rstrip(b"\0").decode("ascii", "replace")
            elif eid in EBML_LIMITS and _uint(value, base) > EBML_LIMITS[eid][1]:
                field, limit = EBML_LIMITS[eid]
                raise AudioFormatError(f"the EBML header at offset {base} has {field} "
                                       f"{_uint(value, base)}; this reader handles at most {limit}")
        if doctype not in ("webm", "matroska"):
            found = "no DocType" if doctype is None else f"DocType {doctype!r}"
            raise AudioFormatError(f"expected DocType webm or matroska in the EBML header at offset "
                                   f"{base}, found {found}")

    cdef void _parse_tracks(self) except *:
        payload = PyBytes_FromStringAndSize(<char*>self.hold, self.hold_len)
        base = self.pos - len(payload)
        entries = [_track_entry(payload, start, end, base)
                   for eid, start, end in _children(payload, 0, len(payload), base, "Tracks")
                   if eid == ID_TRACK_ENTRY]
        opus = next((t for t in entries if t["codec"] == "A_OPUS"), None)
        if opus is None:
            vorbis = next((t for t in entries if t["codec"] == "A_VORBIS"), None)
            if vorbis is not None:
                raise AudioFormatError(
                    f"the audio track (TrackEntry at offset {vorbis['offset']}) has CodecID A_VORBIS: "
                    "Vorbis audio is not supported; record with audio/webm;codecs=opus")
            found = ", ".join(t["codec"] or "no CodecID" for t in entries) or "no tracks"
            raise AudioFormatError(f"no Opus track in the Tracks element at offset {self.hold_off} "
                                   f"(found {found}); expected CodecID A_OPUS, e.g. from "
                                   "MediaRecorder with audio/webm;codecs=opus")
        where = f"the Opus track (TrackEntry at offset {opus['offset']})"
        if not opus["number"]:
            raise AudioFormatError(f"{where} has no TrackNumber")
        if opus["encodings"]:
            raise AudioFormatError(f"{where} is compressed or encrypted (ContentEncodings), which is "
                                   "not supported")
        head = opus["private"]
        channels = opus["channels"] or 1
        pre_skip = gain = 0
        if head is not None:
            channels, pre_skip, gain = _opus_head(head, where)
        if opus["delay"] is not None:
            pre_skip = _ns_to_48k_exact(opus["delay"])
            if pre_skip > MAX_PRE_SKIP:
                raise AudioFormatError(f"{where} has CodecDelay {opus['delay']} ns, over the "
                                       f"{MAX_PRE_SKIP}-sample pre-skip an Opus stream can declare")
        self.opus_head, self.channels, self.pre_skip, self.output_gain = head, channels, pre_skip, gain
        self.sampling_frequency = opus["sampling_frequency"]
        self.track = opus["number"]
        self.tracks_seen = True


cdef list _children(bytes payload, Py_ssize_t start, Py_ssize_t end, int64_t base, str parent):
    """The (id, payload start, payload end) of each child in payload[start:end]."""
    cdef const uint8_t* b = payload
    cdef uint32_t eid
    cdef int64_t size
    cdef int hl, r
    cdef list out = []
    while start < end:
        r = _read_header(b + start, end - start, &eid, &size, &hl)
        if r <= 0:
            raise AudioFormatError(f"malformed element header at offset {base + start} inside the "
                                   f"{parent}")
        if size < 0:
            raise AudioFormatError(f"{_name(eid)} at offset {base + start} inside the {parent} has an "
                                   "unknown size, which WebM allows only for Segment and Cluster")
        if size > end - start - hl:
            raise AudioFormatError(f"{_name(eid)} at offset {base + start} declares {size} bytes, "
                                   f"which overruns the {parent}")
        out.append((eid, start + hl, start + hl + size))
        start += hl + size
    return out


def _uint(bytes value, base):
    if len(value) > 8:
        raise AudioFormatError(f"an unsigned integer of {len(value)} bytes inside the element at "
                               f"offset {base}; at most 8 are allowed")
    return int.from_bytes(value, "big")


def _track_entry(bytes payload, Py_ssize_t start, Py_ssize_t end, int64_t base):
    track = {"offset": base + start, "number": 0, "codec": "", "private": None, "delay": None,
             "channels": 0, "sampling_frequency": 0.0, "encodings": False}
    for eid, s, e in _children(payload, start, end, base, "TrackEntry"):
        value = payload[s:e]
        if eid == ID_TRACK_NUMBER:
            track["number"] = _uint(value, base + s)
        elif eid == ID_CODEC_ID:
            track["codec"] = value.rstrip(b"\0").decode("ascii", "replace")
        elif eid == ID_CODEC_PRIVATE:
            track["private"] = value
        elif eid == ID_CODEC_DELAY:
            track["delay"] = _uint(value, base + s)
        elif eid == ID_CONTENT_ENCODINGS:
            track["encodings"] = True
        elif eid == ID_AUDIO:
            for aid, a, z in _children(payload, s, e, base, "Audio"):
                if aid == ID_CHANNELS:
                    track["channels"] = min(_uint(payload[a:z], base + a), 255)
                elif aid == ID_SAMPLING_FREQUENCY:
                    if z - a == 4:
                        track["sampling_frequency"] = struct.unpack(">f", payload[a:z])[0]
                    elif z - a == 8:
                        track["sampling_frequency"] = struct.unpack(">d", payload[a:z])[0]
                    elif z != a:
                        raise AudioFormatError(f"SamplingFrequency at offset {base + a} is {z - a} "
                                               "bytes; a float is 4 or 8")
    return track


def _opus_head(bytes head, str where):
    """(channels, pre_skip, output_gain) from an OpusHead (RFC 7845 section 5.1)."""
    if len(head) < 19 or head[:8] != b"OpusHead":
        raise AudioFormatError(f"the CodecPrivate of {where} is not an OpusHead: found {len(head)} "
                               f"bytes starting {head[:8]!r}")
    if head[8] >> 4:
        raise AudioFormatError(f"the OpusHead of {where} has version {head[8]}; only version 0.x "
                               "is defined")
    channels = head[9]
    family = head[18]
    if channels == 0 or (family == 0 and channels > 2):
        raise AudioFormatError(f"the OpusHead of {where} declares {channels} channels with mapping "
                               f"family {family}")
    if family != 0 and len(head) < 21 + channels:
        raise AudioFormatError(f"the OpusHead of {where} is too short for its channel mapping table")
    pre_skip, _, gain = struct.unpack_from("<HIh", head, 10)
    return channels, pre_skip, gain


def _ns_to_48k_exact(ns):
    return (ns * 48000 + 500000000) // 1000000000


def _sniff(bytes first):
    """What the first bytes of a stream that is not WebM look like, worded for the client."""
    if first[:3] == b"ID3":
        found = "an ID3 tag (an MP3 file?)"
    elif first[0] == 0xFF and first[1] & 0xE0 == 0xE0:
        found = "an MPEG audio frame sync (an MP3 stream?)"
    elif first == b"OggS":
        found = "OggS (an Ogg stream: use encoding=ogg_opus)"
    elif first == b"RIFF":
        found = "RIFF (a WAV file?)"
    elif first == b"fLaC":
        found = "fLaC (a FLAC file)"
    else:
        found = "bytes " + first.hex(" ").upper()
    return f"expected a WebM stream (EBML header 1A 45 DF A3), found {found} at offset 0"
