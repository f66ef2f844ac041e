"""Opus test fixtures made with a real encoder (PyAV's libopus), shared by the Ogg, Opus and WebM tests.

Everything is generated in memory, deterministically (fixed seeds, no dither), so a failing test can be
re-run bit for bit. Signals are int16 arrays shaped ``(samples, channels)`` at 48 kHz.

Encoder knobs that matter for coverage: ``frame_ms`` (2.5 .. 120), ``application`` and ``bitrate``,
which steer libopus between its three modes. Roughly: ``lowdelay`` (and 2.5/5 ms frames) gives CELT,
``voip`` at <= 16 kbit/s gives SILK, ``voip``/``audio`` at ~24-32 kbit/s fullband gives hybrid.
``toc_modes`` reports what an encoded stream really contains, so tests check rather than assume.
"""

from __future__ import annotations

import fractions
import io

import av
import numpy as np

RATE = 48000
FRAME_MS = (2.5, 5, 10, 20, 40, 60, 80, 100, 120)


def speech_like(seconds: float = 1.0, channels: int = 1, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """A voiced-speech stand-in: harmonics of a gliding pitch under formant-ish weights and a
    syllable-rate envelope, plus a little noise. Channel 2 (if any) uses a different pitch track so
    that a downmix is not the same as either channel."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    out = np.empty((n, channels), dtype=np.int16)
    for ch in range(channels):
        f0 = 120.0 + 40.0 * ch + 30.0 * np.sin(2 * np.pi * (0.7 + 0.2 * ch) * t)  # Hz, gliding
        phase = 2 * np.pi * np.cumsum(f0) / rate
        x = np.zeros(n)
        for k in range(1, 30):
            # two broad "formants" near 500 Hz and 1.5 kHz; harmonics above 8 kHz carry nothing
            fk = k * 150.0
            weight = np.exp(-((fk - 500.0) / 400.0) ** 2) + 0.5 * np.exp(-((fk - 1500.0) / 600.0) ** 2) + 0.02
            x += weight / k**0.5 * np.sin(k * phase)
        envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + ch) ** 2  # ~4 syllables per second
        x = x * envelope + 0.01 * rng.standard_normal(n)
        out[:, ch] = np.round(x / np.max(np.abs(x)) * 0.5 * 32767).astype(np.int16)
    return out


def sine_sweep(seconds: float = 1.0, channels: int = 1, f_start: float = 50.0, f_end: float = 16000.0,
               rate: int = RATE, amplitude: float = 0.4) -> np.ndarray:
    """A logarithmic sine sweep; channel 2 (if any) sweeps downwards."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    out = np.empty((n, channels), dtype=np.int16)
    for ch in range(channels):
        a, b = (f_start, f_end) if ch % 2 == 0 else (f_end, f_start)
        kk = np.log(b / a)
        phase = 2 * np.pi * a * seconds / kk * (np.exp(t / seconds * kk) - 1.0)
        out[:, ch] = np.round(amplitude * 32767 * np.sin(phase)).astype(np.int16)
    return out


def encode_opus(pcm: np.ndarray, container: str = "ogg", frame_ms: float = 20, *,
                bitrate: int | None = None, application: str | None = None,
                chunk: int = 4800, page_ms: float | None = None) -> bytes:
    """Encode int16 ``(samples, channels)`` 48 kHz PCM with libopus into ``container``
    (``"ogg"`` or ``"webm"``) and return the file's bytes.

    PyAV writes a real pre-skip into OpusHead (312 samples for SILK/hybrid-capable settings, 120 for
    CELT-only) and, for Ogg, a final granule position that trims the padding of the last packet, so
    ``final granule - pre_skip == len(pcm)``. ``page_ms`` sets the Ogg muxer's page duration
    (FFmpeg's default is one page per second).
    """
    if pcm.ndim == 1:
        pcm = pcm[:, None]
    channels = pcm.shape[1]
    buf = io.BytesIO()
    fmt = {"ogg": "ogg", "webm": "webm"}[container]
    muxer_options = {"page_duration": str(int(page_ms * 1000))} if page_ms and fmt == "ogg" else {}
    out = av.open(buf, "w", format=fmt, options=muxer_options)
    options = {"frame_duration": str(frame_ms)}
    if application:
        options["application"] = application
    stream = out.add_stream("libopus", rate=RATE, options=options)
    stream.layout = "mono" if channels == 1 else "stereo"
    if bitrate:
        stream.bit_rate = bitrate
    pts = 0
    for start in range(0, len(pcm), chunk):
        block = np.ascontiguousarray(pcm[start:start + chunk])
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=stream.layout.name)
        frame.sample_rate = RATE
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, RATE)
        pts += len(block)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()
    return buf.getvalue()


def ogg_opus(pcm: np.ndarray, frame_ms: float = 20, **kw) -> bytes:
    """Ogg/Opus bytes of ``pcm`` (see ``encode_opus``)."""
    return encode_opus(pcm, "ogg", frame_ms, **kw)


def webm_opus(pcm: np.ndarray, frame_ms: float = 20, **kw) -> bytes:
    """WebM/Opus bytes of ``pcm`` (known-size Segment, as PyAV writes it; see ``encode_opus``)."""
    return encode_opus(pcm, "webm", frame_ms, **kw)


def pyav_packets(data: bytes) -> list[bytes]:
    """The audio packets PyAV's demuxer finds in ``data`` (the oracle for our demuxers)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return [bytes(p) for p in container.demux(stream) if p.size]


def pyav_extradata(data: bytes) -> bytes:
    """The OpusHead PyAV reports for the first audio stream of ``data``."""
    with av.open(io.BytesIO(data)) as container:
        return bytes(container.streams.audio[0].codec_context.extradata)


def toc_modes(packets: list[bytes]) -> set[str]:
    """Which Opus modes (``"silk"``, ``"hybrid"``, ``"celt"``) the packets' TOC bytes use."""
    modes = set()
    for p in packets:
        config = p[0] >> 3
        modes.add("silk" if config < 12 else "hybrid" if config < 16 else "celt")
    return modes


# --- Ogg page surgery, for building multiplexed/chained/corrupt streams by hand --------------------

def ogg_pages(data: bytes) -> list[bytes]:
    """Split a well-formed Ogg stream into its pages (no validation beyond the lengths)."""
    pages, pos = [], 0
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS", pos
        nseg = data[pos + 26]
        body = sum(data[pos + 27:pos + 27 + nseg])
        end = pos + 27 + nseg + body
        pages.append(data[pos:end])
        pos = end
    return pages


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04c11db7, MSB first, no reflection, zero init) of a page whose
    checksum field is zeroed. Written from the spec, independently of the Cython one."""
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def ogg_rewrite(page: bytes, *, serial: int | None = None, flags: int | None = None,
                granule: int | None = None, sequence: int | None = None, fix_crc: bool = True) -> bytes:
    """A copy of ``page`` with header fields replaced and the CRC recomputed."""
    p = bytearray(page)
    if flags is not None:
        p[5] = flags
    if granule is not None:
        p[6:14] = (granule & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    if serial is not None:
        p[14:18] = serial.to_bytes(4, "little")
    if sequence is not None:
        p[18:22] = sequence.to_bytes(4, "little")
    if fix_crc:
        p[22:26] = b"\0\0\0\0"
        p[22:26] = ogg_crc(bytes(p)).to_bytes(4, "little")
    return bytes(p)


def ogg_page(serial: int, sequence: int, granule: int, packets: list[bytes], flags: int = 0) -> bytes:
    """Build one page holding ``packets`` whole (each must be < 255*255 bytes in total)."""
    lacing = bytearray()
    for pkt in packets:
        lacing += b"\xff" * (len(pkt) // 255) + bytes([len(pkt) % 255])
    assert len(lacing) <= 255
    header = (b"OggS\0" + bytes([flags]) + (granule & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
              + serial.to_bytes(4, "little") + sequence.to_bytes(4, "little") + b"\0\0\0\0"
              + bytes([len(lacing)]) + bytes(lacing))
    return ogg_rewrite(header + b"".join(packets))


def ogg_mux(packets: list[bytes], *, head: bytes, serial: int = 0x1234, final_granule: int | None = None,
            max_segments: int = 255, tags: bytes | None = None) -> bytes:
    """A minimal Ogg Opus muxer: ``head`` alone on a BOS page, OpusTags on the next page(s), then
    ``packets`` laced into pages of at most ``max_segments`` segments (small values make packets span
    pages). Granule positions follow RFC 7845: the TOC durations of all packets completed so far,
    pre-skip included (-1 on a page that completes none); the last page gets the EOS flag and
    ``final_granule`` if given. For page layouts PyAV never writes."""
    if tags is None:
        tags = b"OpusTags" + (5).to_bytes(4, "little") + b"tests" + bytes(4)
    out = [ogg_page(serial, 0, 0, [head], flags=2)]
    seq = 1

    def lace(packet: bytes, index: int) -> list[tuple[int, bytes, int | None]]:
        units = []
        for pos in range(0, len(packet) + 1, 255):
            piece = packet[pos:pos + 255]
            units.append((len(piece), piece, index if len(piece) < 255 else None))
        return units

    def page(units, granule: int, flags: int) -> bytes:
        header = (b"OggS\0" + bytes([flags]) + (granule & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
                  + serial.to_bytes(4, "little") + seq.to_bytes(4, "little") + b"\0\0\0\0"
                  + bytes([len(units)]) + bytes(u[0] for u in units))
        return ogg_rewrite(header + b"".join(u[1] for u in units))

    tag_units = lace(tags, -1)
    for i in range(0, len(tag_units), 255):
        out.append(page(tag_units[i:i + 255], 0, 1 if i else 0))
        seq += 1
    units = [u for index, packet in enumerate(packets) for u in lace(packet, index)]
    granule = 0  # counts every decoded sample, pre-skip included
    continued = False
    for i in range(0, len(units), max_segments):
        chunk = units[i:i + max_segments]
        done = [u[2] for u in chunk if u[2] is not None]
        granule += sum(toc_samples(packets[k]) for k in done)
        last = i + max_segments >= len(units)
        g = granule if done else -1
        if last and final_granule is not None:
            g = final_granule
        out.append(page(chunk, g, (1 if continued else 0) | (4 if last else 0)))
        seq += 1
        continued = chunk[-1][2] is None
    return b"".join(out)


def toc_samples(packet: bytes) -> int:
    """Packet duration in 48 kHz samples from the TOC (RFC 6716 section 3.1), in pure Python: an
    oracle independent of libopus's parser."""
    config, code = packet[0] >> 3, packet[0] & 3
    if config < 12:
        per_frame = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:
        per_frame = (480, 960)[config & 1]
    else:
        per_frame = (120, 240, 480, 960)[config & 3]
    frames = 1 if code == 0 else 2 if code in (1, 2) else packet[1] & 0x3F
    return per_frame * frames


def ogg_other_codec(codec: str = "vorbis", seconds: float = 0.5) -> bytes:
    """A real Ogg file of another codec (``"vorbis"`` or ``"flac"``), for "not Opus" tests."""
    buf = io.BytesIO()
    out = av.open(buf, "w", format="ogg")
    n = int(seconds * RATE)
    if codec == "vorbis":
        stream = out.add_stream("vorbis", rate=RATE, options={"strict": "-2"})  # FFmpeg's is "experimental"
        stream.layout = "stereo"
        x = (0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
    else:
        stream = out.add_stream(codec, rate=RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(speech_like(seconds)[:, 0][None, :], format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = 0
    frame.time_base = fractions.Fraction(1, RATE)
    for packet in stream.encode(frame):
        out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()
    return buf.getvalue()
