"""MP3 fixtures for the Mp3Decoder tests: encoded with lameenc, then tagged and damaged here.

lameenc turns LAME's VBR tag off (``lame_set_bWriteVbrTag(0)``: it has no file to seek back
into), so its output is bare frames. ``with_lame_header`` writes the Xing/Info + LAME header frame
that the ``lame`` command line tool would, including the encoder delay and padding that make
gapless decoding exact. Everything is deterministic and cached per parameter set.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import lameenc
import numpy as np

MPEG1_RATES = (44100, 48000, 32000)
MPEG2_RATES = (22050, 24000, 16000)
MPEG25_RATES = (8000, 11025, 12000)
ALL_RATES = MPEG1_RATES + MPEG2_RATES + MPEG25_RATES

ENCODER_DELAY = 576  # LAME 3.100's fixed encoder delay (measured: output lags input by 576 + 529)
DECODER_DELAY = 529  # the MP3 synthesis filter bank's delay, which decoders trim with gapless on

_BASE_RATES = (44100, 48000, 32000)
_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0)


# -- signals ---------------------------------------------------------------------------------

def speech_like(rate: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """Voiced syllables (glottal pulses through three formant resonators) with noise bursts.

    Returns int16 samples shaped (n, channels); channel 1 is a delayed, quieter copy, so that a
    stereo downmix is not just a copy of one channel.
    """
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    pitch = 120 + 20 * np.sin(2 * np.pi * 1.5 * t)
    phase = np.cumsum(pitch / rate)
    source = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)
    voiced = np.zeros(n)
    for formant, bandwidth in ((700, 130), (1220, 70), (2600, 160)):
        if formant >= rate / 2 - bandwidth:
            continue
        # The two-pole resonator's impulse response, added at every glottal pulse.
        r = np.exp(-np.pi * bandwidth / rate)
        w = 2 * np.pi * formant / rate
        k = np.arange(rate // 20)
        response = r ** k * np.sin(w * (k + 1)) / np.sin(w)
        y = np.zeros(n + len(k))
        for i in np.flatnonzero(source):
            y[i:i + len(k)] += response
        voiced += y[:n] / np.max(np.abs(y))
    envelope = np.clip(np.sin(2 * np.pi * 3.7 * t), 0, None) ** 0.7
    noise = rng.standard_normal(n) * (np.sin(2 * np.pi * 3.7 * t + 2.5) > 0.8)
    mono = voiced * envelope + 0.3 * noise
    mono *= 12000 / np.max(np.abs(mono))
    chans = [mono] + [0.6 * np.roll(mono, 37)] * (channels - 1)
    return np.stack(chans, axis=1).round().astype("<i2")


def sweep(rate: int, seconds: float, channels: int) -> np.ndarray:
    """A logarithmic sine sweep from 100 Hz to 0.45 x rate; the right channel sweeps downwards."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    f0, f1 = 100.0, 0.45 * rate
    k = np.log(f1 / f0) / seconds
    up = np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    down = up[::-1]
    chans = [up, down][:channels]
    return (np.stack(chans, axis=1) * 9000).round().astype("<i2")


# -- MPEG frame parsing (an independent implementation, for building fixtures) -------------------

@dataclass(frozen=True)
class Frame:
    offset: int
    length: int
    header: int

    @property
    def rate(self) -> int:
        return header_rate(self.header)

    @property
    def samples(self) -> int:
        return 1152 if (self.header >> 19) & 3 == 3 else 576


def header_rate(h: int) -> int:
    version = (h >> 19) & 3
    base = _BASE_RATES[(h >> 10) & 3]
    return base if version == 3 else base // 2 if version == 2 else base // 4


def frame_length(h: int) -> int:
    version = (h >> 19) & 3
    index = (h >> 12) & 15
    if version == 3:
        return 144000 * _BITRATES_V1[index] // header_rate(h) + ((h >> 9) & 1)
    return 72000 * _BITRATES_V2[index] // header_rate(h) + ((h >> 9) & 1)


def parse_frames(data: bytes) -> list[Frame]:
    """Split a clean stream of Layer III frames (no tags, no junk) into frames."""
    frames = []
    pos = 0
    while pos < len(data):
        h = int.from_bytes(data[pos:pos + 4], "big")
        if h >> 21 != 0x7FF:
            raise ValueError(f"no frame header at byte {pos}")
        frames.append(Frame(pos, frame_length(h), h))
        pos += frames[-1].length
    if pos != len(data):
        raise ValueError("stream ends inside a frame")
    return frames


# -- encoding --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Encoded:
    pcm: np.ndarray  # int16, (n, channels): what went into the encoder
    rate: int
    channels: int
    vbr: bool
    data: bytes  # bare frames, as lameenc writes them
    frames: tuple[Frame, ...]

    @property
    def n(self) -> int:
        return len(self.pcm)

    @property
    def mono(self) -> np.ndarray:
        """The encoder input, downmixed like libmpg123's MONO_MIX: (L + R) / 2."""
        return self.pcm.astype(float).mean(axis=1)

    @property
    def samples_per_frame(self) -> int:
        return self.frames[0].samples

    @property
    def padding(self) -> int:
        """Samples appended by LAME after the input (they include the 529 decoder-delay samples)."""
        return len(self.frames) * self.samples_per_frame - ENCODER_DELAY - self.n


def cbr_bitrate(rate: int, channels: int) -> int:
    base = 64 if rate >= 32000 else 32 if rate >= 16000 else 16
    return base * channels


def encode(pcm: np.ndarray, rate: int, *, vbr: bool = False, bitrate: int | None = None) -> Encoded:
    channels = pcm.shape[1]
    enc = lameenc.Encoder()
    enc.set_channels(channels)
    enc.set_in_sample_rate(rate)
    enc.set_out_sample_rate(rate)  # otherwise LAME may pick a lower rate for low bitrates
    enc.set_quality(5)
    enc.silence()
    if vbr:
        enc.set_vbr(4)  # vbr_mtrh, LAME's default VBR mode
        enc.set_vbr_quality(5)
    else:
        enc.set_bit_rate(bitrate or cbr_bitrate(rate, channels))
    data = bytes(enc.encode(np.ascontiguousarray(pcm).tobytes())) + bytes(enc.flush())
    return Encoded(pcm, rate, channels, vbr, data, tuple(parse_frames(data)))


@functools.lru_cache(maxsize=None)
def stream(rate: int, channels: int, vbr: bool = False, seconds: float = 1.0,
           signal: str = "speech") -> Encoded:
    pcm = speech_like(rate, seconds, channels) if signal == "speech" else sweep(rate, seconds, channels)
    return encode(pcm, rate, vbr=vbr)


# -- the LAME header frame -------------------------------------------------------------------

def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes, crc: int = 0) -> int:
    """CRC-16/ARC, the checksum of LAME's header (ffmpeg: ff_crcA001_update)."""
    for byte in data:
        crc = (crc >> 8) ^ _CRC16[(crc ^ byte) & 0xFF]
    return crc


def lame_header_frame(enc: Encoded, *, delay: int = ENCODER_DELAY, padding: int | None = None,
                      lame_extension: bool = True) -> bytes:
    """A Xing (VBR) or Info (CBR) frame with a LAME extension, laid out as LAME 3.100 writes it.

    Without ``lame_extension`` it is a bare Xing/Info header (frame count, byte count, TOC), as
    some other encoders write it: no delay or padding.
    """
    padding = enc.padding if padding is None else padding
    first = enc.frames[0].header
    mono = (first >> 6) & 3 == 3
    mpeg1 = (first >> 19) & 3 == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    needed = 4 + side + 4 + 4 + 4 + 4 + 100 + 4 + 36
    template = (first & 0xFFFF0DC0) | 0x00010000  # same version, rate and mode; no CRC, no padding
    for index in range(1, 15):
        h = template | (index << 12)
        if frame_length(h) >= needed:
            break
    length = frame_length(h)
    audio_bytes = sum(f.length for f in enc.frames)
    total = length + audio_bytes
    positions = [length + f.offset for f in enc.frames]
    toc = bytes(min(255, positions[len(positions) * i // 100] * 256 // total) for i in range(100))
    body = bytearray(length)
    body[0:4] = h.to_bytes(4, "big")
    at = 4 + side
    body[at:at + 4] = b"Xing" if enc.vbr else b"Info"
    body[at + 4:at + 8] = (0x0F).to_bytes(4, "big")  # frames, bytes, TOC, quality
    body[at + 8:at + 12] = len(enc.frames).to_bytes(4, "big")
    body[at + 12:at + 16] = total.to_bytes(4, "big")
    body[at + 16:at + 116] = toc
    body[at + 116:at + 120] = (57).to_bytes(4, "big")
    if not lame_extension:
        return bytes(body)
    lame = at + 120
    body[lame:lame + 9] = b"LAME3.100"
    body[lame + 9] = 4 if enc.vbr else 1  # tag revision 0, VBR method (1: CBR, 4: VBR mtrh)
    body[lame + 10] = 170  # lowpass / 100 Hz
    kbps = round(8 * audio_bytes * enc.rate / (len(enc.frames) * enc.samples_per_frame) / 1000)
    body[lame + 20] = min(255, kbps)
    body[lame + 21:lame + 24] = ((delay << 12) | padding).to_bytes(3, "big")
    body[lame + 28:lame + 32] = total.to_bytes(4, "big")  # music length: header frame + audio
    body[lame + 32:lame + 34] = crc16(enc.data).to_bytes(2, "big")
    body[lame + 34:lame + 36] = crc16(bytes(body[:lame + 34])).to_bytes(2, "big")
    return bytes(body)


def with_lame_header(enc: Encoded, **kwargs) -> bytes:
    return lame_header_frame(enc, **kwargs) + enc.data


# -- tags and damage -------------------------------------------------------------------------

def _syncsafe(n: int) -> bytes:
    return bytes(((n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F))


def id3v2_tag(payload_size: int = 4000, *, footer: bool = False, trap: bytes = b"") -> bytes:
    """An ID3v2.4 tag: a title frame, then a private frame of ``payload_size`` bytes.

    ``trap`` is repeated through the private frame: pass MP3 frames to check that nothing inside
    a tag is ever decoded.
    """
    title = b"\x03" + "Spoken wörds".encode()
    frames = b"TIT2" + _syncsafe(len(title)) + b"\x00\x00" + title
    private = b"routeraudio\x00" + (trap * (payload_size // max(1, len(trap)) + 1))[:payload_size]
    frames += b"PRIV" + _syncsafe(len(private)) + b"\x00\x00" + private
    flags = 0x10 if footer else 0
    header = b"ID3\x04\x00" + bytes([flags]) + _syncsafe(len(frames))
    return header + frames + ((b"3DI" + header[3:]) if footer else b"")


def id3v1_tag() -> bytes:
    def field(text: str, size: int) -> bytes:
        return text.encode("latin-1").ljust(size, b"\x00")
    tag = (b"TAG" + field("Title", 30) + field("Artist", 30) + field("Album", 30) + b"2024"
           + field("comment", 28) + b"\x00\x01" + b"\x0c")
    assert len(tag) == 128
    return tag


def apev2_tag() -> bytes:
    """An APEv2 tag with header and footer, as found before an ID3v1 tag at the end of files."""
    item = (5).to_bytes(4, "little") + (0).to_bytes(4, "little") + b"Title\x00" + b"Hello"
    size = len(item) + 32
    def block(is_header: bool) -> bytes:
        flags = 0x80000000 | 0x40000000 | (0x20000000 if is_header else 0)  # has header/footer
        return (b"APETAGEX" + (2000).to_bytes(4, "little") + size.to_bytes(4, "little")
                + (1).to_bytes(4, "little") + flags.to_bytes(4, "little") + bytes(8))
    return block(True) + item + block(False)


def garbage(size: int, seed: int = 1, *, no_sync: bool = False) -> bytes:
    """Random bytes; with ``no_sync`` no 0xFF byte, so that nothing in them can look like a frame."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 255 if no_sync else 256, size, dtype=np.uint8)
    return data.tobytes()


def insert_at_frame(enc: Encoded, index: int, junk: bytes) -> bytes:
    """The bare stream with ``junk`` between frame ``index - 1`` and frame ``index``."""
    cut = enc.frames[index].offset
    return enc.data[:cut] + junk + enc.data[cut:]


# -- other formats, for mislabel tests; and the reference decoder ------------------------------

def container_bytes(kind: str, seconds: float = 0.5) -> bytes:
    """A short real file of another format, written by PyAV (FFmpeg): ogg, webm, wav, flac, mp2
    (MPEG-1 Layer II) or adts (AAC)."""
    import av

    codec = {"ogg": "libopus", "webm": "libopus", "wav": "pcm_s16le", "flac": "flac", "mp2": "mp2",
             "adts": "aac"}[kind]
    rate = 48000
    pcm = speech_like(rate, seconds, 1)
    buf = io.BytesIO()
    with av.open(buf, "w", format=kind) as out:
        st = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.T.copy(), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in st.encode(frame):
            out.mux(packet)
        for packet in st.encode(None):
            out.mux(packet)
    return buf.getvalue()


def reference_decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode with FFmpeg's mp3float decoder through PyAV: (float mono in s16 units, rate).

    Channels are averaged like libmpg123's MONO_MIX. FFmpeg's MP3 demuxer applies the LAME header's
    delay/padding like libmpg123's gapless mode, and trims nothing without that header.
    """
    import av

    chunks = []
    rate = 0
    with av.open(io.BytesIO(data), format="mp3") as container:
        for frame in container.decode(audio=0):
            rate = frame.sample_rate
            planes = frame.to_ndarray()  # fltp: (channels, samples)
            chunks.append(planes.reshape(len(frame.layout.channels), -1).mean(axis=0))
    return np.concatenate(chunks) * 32768.0, rate
