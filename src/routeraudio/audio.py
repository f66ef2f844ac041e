"""AudioPipeline: demux -> decode -> downmix -> resample, streaming, no I/O.

The server calls ``feed(bytes) -> bytes`` for every client frame and ``flush()`` at end of audio; it
gets s16le mono PCM at ``target_rate``. For containers the container's own rate and channel count win
over the declared ones. ``duration`` counts seconds of audio consumed (metering, pacing).

``AudioMeter`` is the same front half without decoding: it validates a stream that is forwarded
unchanged and measures its duration (Opus packets by their TOC, raw PCM by size).
"""

from __future__ import annotations

from .config import CONTAINER_ENCODINGS, ENCODINGS, SAMPLE_RATES
from .errors import AudioFormatError

#: Rates libopus decodes to directly (no resampling step).
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def _check(encoding: str, sample_rate: int, channels: int) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, got {sample_rate!r}")
    if not 1 <= channels <= 8:
        raise ValueError(f"channels must be 1..8, got {channels!r}")


class _OpusPath:
    """Ogg or WebM demuxer feeding one libopus decoder built when the stream's head is known."""

    __slots__ = ("demux", "decoder", "target_rate", "samples48")

    def __init__(self, encoding: str, target_rate: int) -> None:
        if encoding == "ogg_opus":
            from ._codec.ogg import OggDemuxer as Demuxer
        else:
            from ._codec.webm import WebmDemuxer as Demuxer
        if target_rate not in OPUS_RATES:
            raise ValueError(f"Opus decodes to {OPUS_RATES}, not {target_rate}")
        self.demux = Demuxer()
        self.decoder = None
        self.target_rate = target_rate
        self.samples48 = 0

    def _decode(self, packets: list) -> bytes:
        if not packets:
            return b""
        dec = self.decoder
        if dec is None:
            from ._codec.opus import OpusDecoder

            d = self.demux
            dec = self.decoder = OpusDecoder(d.channels, self.target_rate, d.pre_skip, d.output_gain)
        out = dec.decode_many(packets, self.demux.trim_end)
        self.samples48 = dec.samples_decoded
        return out

    def feed(self, data) -> bytes:
        return self._decode(self.demux.feed(data))

    def flush(self) -> bytes:
        out = self._decode(self.demux.flush())
        if self.decoder is not None:
            out += self.decoder.flush()
        return out

    @property
    def duration(self) -> float:
        return self.samples48 / 48000.0


class _Mp3Path:
    __slots__ = ("decoder", "resampler", "target_rate")

    def __init__(self, target_rate: int) -> None:
        from ._codec.mp3 import Mp3Decoder

        self.decoder = Mp3Decoder()
        self.resampler = None
        self.target_rate = target_rate

    def _resample(self, pcm: bytes, last: bool) -> bytes:
        rs = self.resampler
        if rs is None:
            rate = self.decoder.sample_rate
            if not rate:
                return b""
            from ._codec.resample import Resampler

            try:
                rs = self.resampler = Resampler(rate, self.target_rate)
            except ValueError:
                raise AudioFormatError(
                    f"MP3 at {rate} Hz cannot be converted; use one of {SAMPLE_RATES} Hz") from None
        out = rs.feed(pcm) if pcm else b""
        return out + rs.flush() if last else out

    def feed(self, data) -> bytes:
        return self._resample(self.decoder.feed(data), last=False)

    def flush(self) -> bytes:
        return self._resample(self.decoder.flush(), last=True)

    @property
    def duration(self) -> float:
        rate = self.decoder.sample_rate
        return self.decoder.samples_decoded / rate if rate else 0.0


class AudioPipeline:
    """Convert a client's stream to s16le mono at ``target_rate``.

    ``AudioPipeline(encoding, sample_rate, channels, target_rate)``; ``feed(data) -> bytes``,
    ``flush() -> bytes`` (then the pipeline is finished), ``duration`` (seconds consumed).
    Undecodable input raises ``routeraudio.errors.AudioFormatError``.
    """

    __slots__ = ("encoding", "sample_rate", "channels", "target_rate", "_path", "feed")

    def __init__(self, encoding: str, sample_rate: int, channels: int, target_rate: int) -> None:
        _check(encoding, sample_rate, channels)
        if encoding in ("ogg_opus", "webm"):
            path = _OpusPath(encoding, target_rate)
        elif encoding == "mp3":
            path = _Mp3Path(target_rate)
        else:
            from ._codec.pcm import PcmConverter

            path = PcmConverter(encoding, sample_rate, channels, target_rate)
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.channels = channels
        self.target_rate = target_rate
        self._path = path
        self.feed = path.feed  # the hot path: one bound-method call per client frame

    def flush(self) -> bytes:
        return self._path.flush()

    @property
    def duration(self) -> float:
        return self._path.duration


class AudioMeter:
    """Validate and measure audio that is forwarded unchanged. ``feed`` returns its input."""

    __slots__ = ("encoding", "_bytes", "_frame", "_rate_bytes", "_demux", "_samples48", "_mp3")

    def __init__(self, encoding: str, sample_rate: int, channels: int) -> None:
        _check(encoding, sample_rate, channels)
        self.encoding = encoding
        self._bytes = 0
        self._frame = channels * (1 if encoding == "pcm_mulaw" else 2)
        self._rate_bytes = sample_rate * self._frame
        self._demux = None
        self._mp3 = None
        self._samples48 = 0
        if encoding == "ogg_opus":
            from ._codec.ogg import OggDemuxer

            self._demux = OggDemuxer()
        elif encoding == "webm":
            from ._codec.webm import WebmDemuxer

            self._demux = WebmDemuxer()
        elif encoding == "mp3":
            from ._codec.mp3 import Mp3Decoder

            self._mp3 = Mp3Decoder()  # decoding MP3 costs ~5 us per frame: the honest meter

    def feed(self, data):
        if self._demux is not None:
            from ._codec.opus import packet_samples

            for p in self._demux.feed(data):
                self._samples48 += packet_samples(p)
        elif self._mp3 is not None:
            self._mp3.feed(data)
        else:
            self._bytes += len(data)
        return data

    def flush(self) -> bytes:
        if self._demux is not None:
            from ._codec.opus import packet_samples

            for p in self._demux.flush():
                self._samples48 += packet_samples(p)
        elif self._mp3 is not None:
            self._mp3.flush()
        elif self._bytes % self._frame:
            raise AudioFormatError(
                f"{self.encoding} stream ended inside a sample frame: {self._bytes} bytes is not a "
                f"multiple of {self._frame} (bytes per sample x channels)")
        return b""

    @property
    def duration(self) -> float:
        if self._demux is not None:
            return self._samples48 / 48000.0
        if self._mp3 is not None:
            rate = self._mp3.sample_rate
            return self._mp3.samples_decoded / rate if rate else 0.0
        return self._bytes / self._rate_bytes


__all__ = ["AudioMeter", "AudioPipeline", "AudioFormatError", "CONTAINER_ENCODINGS"]
