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


def _opus_batches(demux, packets: list, final: bool):
    """Yield (packets, trim_end, new_stream) until the demuxer has nothing more for this input.

    The demuxers stop early in two cases so that ``trim_end`` and stream properties stay unambiguous:
    at a chained Ogg stream (``head_changed``: later packets need a new decoder) and after a WebM
    packet carrying DiscardPadding. Calling ``feed(b"")`` (``flush()`` at end of input) resumes.
    """
    new_stream = False
    while True:
        yield packets, demux.trim_end, new_stream
        if getattr(demux, "head_changed", False):
            new_stream = True
        elif packets and demux.trim_end and not final:
            new_stream = False
        else:
            return
        packets = demux.flush() if final else demux.feed(b"")


def _opus_demuxer(encoding: str):
    if encoding == "ogg_opus":
        from ._codec.ogg import OggDemuxer

        return OggDemuxer()
    from ._codec.webm import WebmDemuxer

    return WebmDemuxer()


class _OpusPath:
    """Ogg or WebM demuxer feeding a libopus decoder, built when the stream's head is known (and
    again for each chained Ogg stream)."""

    __slots__ = ("demux", "decoder", "target_rate", "samples48_done")

    def __init__(self, encoding: str, target_rate: int) -> None:
        if target_rate not in OPUS_RATES:
            raise ValueError(f"Opus decodes to {OPUS_RATES}, not {target_rate}")
        self.demux = _opus_demuxer(encoding)
        self.decoder = None
        self.target_rate = target_rate
        self.samples48_done = 0  # from decoders of earlier chained streams

    def _run(self, packets: list, final: bool) -> bytes:
        out = b""
        for batch, trim_end, new_stream in _opus_batches(self.demux, packets, final):
            if new_stream and self.decoder is not None:
                self.samples48_done += self.decoder.samples_decoded
                self.decoder = None
            if not batch:
                continue
            dec = self.decoder
            if dec is None:
                from ._codec.opus import OpusDecoder

                d = self.demux
                dec = self.decoder = OpusDecoder(d.channels, self.target_rate, d.pre_skip, d.output_gain)
            out += dec.decode_many(batch, trim_end)
        return out

    def feed(self, data) -> bytes:
        packets = self.demux.feed(data)
        if not packets and not getattr(self.demux, "head_changed", False):
            return b""
        return self._run(packets, False)

    def flush(self) -> bytes:
        return self._run(self.demux.flush(), True)

    @property
    def duration(self) -> float:
        dec = self.decoder
        return (self.samples48_done + (dec.samples_decoded if dec is not None else 0)) / 48000.0


class _Mp3Path:
    """Mp3Decoder, then a Resampler from its output rate, built at the first frame. The decoder is
    told the target so that it may decode a 44.1/48 kHz stream at half rate (one decimation stage
    less: see mp3.pyx, Policies)."""

    __slots__ = ("decoder", "resampler", "target_rate")

    def __init__(self, target_rate: int) -> None:
        from ._codec.mp3 import Mp3Decoder

        self.decoder = Mp3Decoder(target_rate)
        self.resampler = None
        self.target_rate = target_rate

    def _resample(self, pcm: bytes, last: bool) -> bytes:
        rs = self.resampler
        if rs is None:
            rate = self.decoder.output_rate
            if not rate:
                return b""
            from ._codec.resample import Resampler

            try:
                rs = self.resampler = Resampler(rate, self.target_rate)
            except ValueError:
                rate = self.decoder.sample_rate
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
        rate = self.decoder.output_rate
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
            from ._codec.resample import OUTPUT_RATES

            if target_rate != sample_rate and target_rate not in OUTPUT_RATES:
                raise ValueError(f"raw PCM is converted to {OUTPUT_RATES} Hz (or kept at its rate), "
                                 f"not {target_rate}")
            # The PcmConverter comes with the first audio: an idle session holds no resampler
            # buffers (70 KiB for 44.1 -> 24 kHz, 33 KiB for 8 -> 16 kHz).
            path = None
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.channels = channels
        self.target_rate = target_rate
        self._path = path
        # the hot path: one bound-method call per client frame
        self.feed = path.feed if path is not None else self._first_feed

    def _pcm_path(self):
        from ._codec.pcm import PcmConverter

        path = self._path = PcmConverter(self.encoding, self.sample_rate, self.channels, self.target_rate)
        self.feed = path.feed
        return path

    def _first_feed(self, data) -> bytes:
        return self._pcm_path().feed(data)

    def flush(self) -> bytes:
        return (self._path if self._path is not None else self._pcm_path()).flush()

    @property
    def duration(self) -> float:
        return self._path.duration if self._path is not None else 0.0


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
        if encoding in ("ogg_opus", "webm"):
            self._demux = _opus_demuxer(encoding)
        elif encoding == "mp3":
            from ._codec.mp3 import Mp3Decoder

            self._mp3 = Mp3Decoder()  # decoding MP3 costs ~5 us per frame: the honest meter

    def _count(self, packets: list, final: bool) -> None:
        from ._codec.opus import packet_samples

        for batch, trim_end, _ in _opus_batches(self._demux, packets, final):
            for p in batch:
                self._samples48 += packet_samples(p)
            if batch:
                self._samples48 -= trim_end

    def feed(self, data):
        if self._demux is not None:
            packets = self._demux.feed(data)
            if packets or getattr(self._demux, "head_changed", False):
                self._count(packets, False)
        elif self._mp3 is not None:
            self._mp3.feed(data)
        else:
            self._bytes += len(data)
        return data

    def count(self, nbytes: int) -> None:
        """Meter ``nbytes`` of raw PCM that went by without ``feed`` (the server's relay path)."""
        self._bytes += nbytes

    @property
    def raw_bytes_per_second(self) -> int:
        """Bytes per second of raw PCM; 0 for containers, whose bytes are not a measure of time."""
        return self._rate_bytes if self._demux is None and self._mp3 is None else 0

    @property
    def bytes_in(self) -> int:
        """Raw PCM bytes metered so far (0 for containers)."""
        return self._bytes

    def flush(self) -> bytes:
        if self._demux is not None:
            self._count(self._demux.flush(), True)
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
            rate = self._mp3.output_rate  # the native rate: no target_rate here
            return self._mp3.samples_decoded / rate if rate else 0.0
        return self._bytes / self._rate_bytes


__all__ = ["AudioMeter", "AudioPipeline", "AudioFormatError", "CONTAINER_ENCODINGS"]
