# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""WebSocket data frames on the audio hot path (RFC 6455 section 5), in C.

The server reads audio from clients and writes it to providers as masked binary frames, 50 times a
second per stream, and carries the providers' JSON back. Control frames, fragments and the close
handshake go through the websockets library; this module only ever takes *whole, unfragmented data
frames* from the start of a buffer and stops at the first byte that is anything else, leaving it to
the caller's slow path. It never raises on bad input: what it does not take, websockets judges.

* ``split_binary_frames``: the unmasked payloads of the leading audio frames.
* ``relay_binary_frames``: the leading audio frames re-masked for the upstream connection, as one
  ``bytes`` ready for one write. A client frame and the frame forwarded for it have the same length
  (same header, a 4-byte key, the payload), so relaying is one copy plus one XOR per payload word
  with ``old_key ^ new_key``: the payload is never unmasked into a buffer of its own.
* ``masked_binary_frame`` / ``binary_frame`` / ``text_frame``: one data frame, masked as a client
  sends it or unmasked as a server does.
* ``split_data_frames``: the messages in the leading unmasked text and binary frames a provider
  sends (text decoded as strict UTF-8).

Masking keys are fresh random bytes from ``os.urandom``, drawn from a pool of 4 KiB (1,024 keys) so
that a frame costs no system call. Empty binary frames are never taken: an empty frame is the
client's end-of-audio signal, which the caller's slow path handles.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

import os

cdef enum:
    POOL = 4096

cdef uint8_t _pool[POOL]
cdef Py_ssize_t _pool_pos = POOL


cdef inline uint32_t _new_key() except? 0xFFFFFFFF:
    """A fresh random masking key (native byte order: only ever applied byte-wise via memcpy)."""
    global _pool_pos
    cdef uint32_t key
    cdef bytes fresh
    if _pool_pos >= POOL:
        fresh = os.urandom(POOL)
        memcpy(_pool, PyBytes_AS_STRING(fresh), POOL)
        _pool_pos = 0
    memcpy(&key, &_pool[_pool_pos], 4)
    _pool_pos += 4
    return key


cdef inline void _xor(uint8_t *dst, const uint8_t *src, Py_ssize_t n, uint32_t key) noexcept nogil:
    """dst[i] = src[i] ^ key_bytes[i % 4]; dst may equal src. Eight bytes at a time."""
    cdef uint64_t k8 = (<uint64_t>key) | ((<uint64_t>key) << 32)
    cdef uint64_t w
    cdef Py_ssize_t i = 0
    cdef uint8_t kb[4]
    memcpy(kb, &key, 4)
    while i + 8 <= n:
        memcpy(&w, src + i, 8)
        w ^= k8
        memcpy(dst + i, &w, 8)
        i += 8
    while i < n:
        dst[i] = src[i] ^ kb[i & 3]
        i += 1


cdef inline Py_ssize_t _frame_at(const uint8_t *p, Py_ssize_t avail, Py_ssize_t limit,
                                 Py_ssize_t *head, bint empty_ok) noexcept nogil:
    """Payload length of the whole masked FIN binary frame at p (head: bytes before the payload,
    key included), or -1 if what is at p is not one (incomplete, another opcode, a fragment, RSV
    bits, unmasked, over ``limit``, empty unless ``empty_ok``, or a 64-bit length, which no audio
    frame needs)."""
    cdef Py_ssize_t ln, hdr
    if avail < 6 or p[0] != 0x82 or not (p[1] & 0x80):
        return -1
    ln = p[1] & 0x7F
    hdr = 6
    if ln == 126:
        if avail < 8:
            return -1
        ln = (<Py_ssize_t>p[2] << 8) | p[3]
        hdr = 8
    elif ln == 127 or (ln == 0 and not empty_ok):
        return -1
    if ln > limit or avail - hdr < ln:
        return -1
    head[0] = hdr
    return ln


def split_binary_frames(bytes data, Py_ssize_t limit):
    """``(payloads, used)``: the unmasked payloads of the whole masked binary frames (each at most
    ``limit`` bytes; an empty one included) at the start of ``data``, and how many bytes they took."""
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos = 0, ln, hdr = 0
    cdef uint32_t key
    cdef bytes payload
    cdef list out = []
    while True:
        ln = _frame_at(p + pos, n - pos, limit, &hdr, True)
        if ln < 0:
            break
        memcpy(&key, p + pos + hdr - 4, 4)
        payload = PyBytes_FromStringAndSize(NULL, ln)
        _xor(<uint8_t *>PyBytes_AS_STRING(payload), p + pos + hdr, ln, key)
        out.append(payload)
        pos += hdr + ln
    return out, pos


def relay_binary_frames(bytes data, Py_ssize_t limit, Py_ssize_t budget):
    """``(wire, frames, payload_bytes, used)``: the whole, non-empty masked binary frames at the
    start of ``data`` re-masked with fresh keys, concatenated (``len(wire) == used``), how many, and
    their payload bytes. Stops after the frame that brings the payload total to ``budget`` or beyond."""
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos = 0, ln, hdr = 0, total = 0, frames = 0
    # First pass: how far the relayable frames go, so the output is allocated once at its size.
    while total < budget:
        ln = _frame_at(p + pos, n - pos, limit, &hdr, False)
        if ln < 0:
            break
        pos += hdr + ln
        total += ln
        frames += 1
    if frames == 0:
        return b"", 0, 0, 0
    cdef bytes wire = PyBytes_FromStringAndSize(NULL, pos)
    cdef uint8_t *w = <uint8_t *>PyBytes_AS_STRING(wire)
    cdef Py_ssize_t at = 0
    cdef uint32_t old, new
    while at < pos:
        ln = _frame_at(p + at, pos - at, limit, &hdr, False)
        memcpy(w + at, p + at, hdr - 4)
        memcpy(&old, p + at + hdr - 4, 4)
        new = _new_key()
        memcpy(w + at + hdr - 4, &new, 4)
        _xor(w + at + hdr, p + at + hdr, ln, old ^ new)
        at += hdr + ln
    return wire, frames, total, pos


cdef bytes _frame(int opcode, const uint8_t *src, Py_ssize_t n, bint mask):
    cdef Py_ssize_t hdr = (2 if n < 126 else (4 if n < 65536 else 10)) + (4 if mask else 0)
    cdef bytes frame = PyBytes_FromStringAndSize(NULL, hdr + n)
    cdef uint8_t *f = <uint8_t *>PyBytes_AS_STRING(frame)
    cdef uint8_t mbit = 0x80 if mask else 0
    cdef uint32_t key
    cdef int i
    f[0] = 0x80 | opcode
    if n < 126:
        f[1] = mbit | n
    elif n < 65536:
        f[1] = mbit | 126
        f[2] = (n >> 8) & 0xFF
        f[3] = n & 0xFF
    else:
        f[1] = mbit | 127
        for i in range(8):
            f[2 + i] = (<uint64_t>n >> (56 - 8 * i)) & 0xFF
    if mask:
        key = _new_key()
        memcpy(f + hdr - 4, &key, 4)
        _xor(f + hdr, src, n, key)
    else:
        memcpy(f + hdr, src, n)
    return frame


def binary_frame(data, bint mask):
    """One unfragmented binary frame carrying ``data`` (bytes-like); masked as a client sends it,
    or not, as a server does."""
    if type(data) is not bytes:
        data = bytes(data)
    return _frame(2, <const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), mask)


def masked_binary_frame(data):
    """One unfragmented, masked binary frame carrying ``data`` (bytes-like), as a client sends it."""
    return binary_frame(data, True)


def text_frame(str text, bint mask):
    """One unfragmented text frame carrying ``text`` as UTF-8; masked or not, as ``binary_frame``."""
    cdef bytes data = text.encode("utf-8")
    return _frame(1, <const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), mask)


def split_data_frames(bytes data, Py_ssize_t limit):
    """``(messages, used)``: the whole, unmasked, unfragmented text and binary frames (as a server
    sends them, each at most ``limit`` bytes) at the start of ``data``: text as ``str``, binary as
    ``bytes``. Stops before anything else, including a text frame that is not valid UTF-8 (which
    websockets then fails with 1007)."""
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos = 0, ln, hdr
    cdef uint64_t ln64
    cdef int i
    cdef list out = []
    cdef object message
    while n - pos >= 2:
        if (p[pos] != 0x81 and p[pos] != 0x82) or p[pos + 1] & 0x80:
            break
        ln = p[pos + 1] & 0x7F
        hdr = 2
        if ln == 126:
            if n - pos < 4:
                break
            ln = (<Py_ssize_t>p[pos + 2] << 8) | p[pos + 3]
            hdr = 4
        elif ln == 127:
            if n - pos < 10:
                break
            ln64 = 0
            for i in range(8):
                ln64 = (ln64 << 8) | p[pos + 2 + i]
            if ln64 > <uint64_t>limit:
                break
            ln = <Py_ssize_t>ln64
            hdr = 10
        if ln > limit or n - pos - hdr < ln:
            break
        if p[pos] == 0x82:
            message = PyBytes_FromStringAndSize(<const char *>p + pos + hdr, ln)
        else:
            try:
                message = (<const char *>p + pos + hdr)[:ln].decode("utf-8")
            except UnicodeDecodeError:
                break
        out.append(message)
        pos += hdr + ln
    return out, pos
