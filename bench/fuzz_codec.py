"""Coverage-guided fuzzing of the audio core with atheris (issue 5, item 20).

Targets: each demuxer/decoder and the whole AudioPipeline, fed the mutated input in random splits.
Only ``AudioFormatError`` may escape; anything else (another exception, a crash, a leak or an
AddressSanitizer report) is a finding, and atheris saves the input as ``crash-*`` in the work dir.

Build the core with AddressSanitizer and run (see README "Fuzzing"):

    ROUTERAUDIO_SANITIZE=1 .venv/bin/python setup.py build_ext --inplace
    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0,allocator_may_return_null=1 \\
        PYTHONPATH=src .venv/bin/python bench/fuzz_codec.py --target ogg -- -runs=100000

``--target all`` runs every target one after another with ``-runs`` each. Seeds come from real
encoders (PyAV libopus, lameenc) so the fuzzer starts inside the formats.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

TARGETS = ("ogg", "webm", "opus", "mp3", "pcm", "pipeline_ogg", "pipeline_webm", "pipeline_mp3")


def seeds(target: str) -> list[bytes]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import fixtures_mp3
    import fixtures_opus

    if "ogg" in target or target == "opus":
        data = fixtures_opus.ogg_opus(fixtures_opus.speech_like(0.3, channels=1))
        return [data] if target != "opus" else fixtures_opus.pyav_packets(data)[:20]
    if "webm" in target:
        return [fixtures_opus.webm_opus(fixtures_opus.speech_like(0.3, channels=2))]
    if "mp3" in target:
        enc = fixtures_mp3.encode(fixtures_mp3.speech_like(22050, 0.3, 1), 22050)
        return [fixtures_mp3.with_lame_header(enc)]
    return [bytes(range(256)) * 4]


def make_runner(target: str):
    from routeraudio.errors import AudioFormatError

    def split(data: bytes, fdp_bytes: bytes) -> list[bytes]:
        # the first byte picks the chunk size, so splits are part of what is explored
        step = 1 + (fdp_bytes[0] if fdp_bytes else 0) * 17
        return [data[i:i + step] for i in range(0, len(data), step)]

    if target in ("ogg", "webm"):
        from routeraudio._codec.ogg import OggDemuxer
        from routeraudio._codec.webm import WebmDemuxer

        cls = OggDemuxer if target == "ogg" else WebmDemuxer

        def run(data: bytes) -> None:
            d = cls()
            for chunk in split(data[1:], data[:1]):
                d.feed(chunk)
                while getattr(d, "head_changed", False):
                    d.feed(b"")
            d.flush()
    elif target == "opus":
        from routeraudio._codec.opus import OpusDecoder, packet_samples

        def run(data: bytes) -> None:
            dec = OpusDecoder(1 + (data[0] & 1) if data else 1, 16000, 312)
            packet_samples(data[1:] or b"\0")
            dec.decode(data[1:], trim_end=(data[0] >> 1) * 40 if data else 0)
    elif target == "mp3":
        from routeraudio._codec.mp3 import Mp3Decoder

        def run(data: bytes) -> None:
            d = Mp3Decoder()
            for chunk in split(data[1:], data[:1]):
                d.feed(chunk)
            d.flush()
    elif target == "pcm":
        from routeraudio._codec.pcm import PcmConverter

        rates = (8000, 16000, 22050, 24000, 44100, 48000)

        def run(data: bytes) -> None:
            if len(data) < 2:
                return
            enc = "pcm_mulaw" if data[0] & 1 else "pcm_s16le"
            conv = PcmConverter(enc, rates[data[0] % 6], 1 + (data[0] >> 5), (16000, 24000)[data[1] & 1])
            for chunk in split(data[2:], data[1:2]):
                conv.feed(chunk)
            conv.flush()
    else:
        from routeraudio.audio import AudioPipeline

        encoding = {"pipeline_ogg": "ogg_opus", "pipeline_webm": "webm", "pipeline_mp3": "mp3"}[target]

        def run(data: bytes) -> None:
            p = AudioPipeline(encoding, 48000, 1, 16000)
            for chunk in split(data[1:], data[:1]):
                p.feed(chunk)
            p.flush()

    def one(data: bytes) -> None:
        try:
            run(data)
        except AudioFormatError:
            pass

    return one


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=TARGETS + ("all",), default="all")
    ap.add_argument("--workdir", default="bench/results/fuzz")
    ap.add_argument("libfuzzer_args", nargs="*", help="after --, e.g. -runs=100000 -max_len=65536")
    args = ap.parse_args()
    if args.target == "all":
        code = 0
        for t in TARGETS:
            print(f"== {t}", flush=True)
            code |= subprocess.call([sys.executable, __file__, "--target", t, "--workdir", args.workdir, "--",
                                     *args.libfuzzer_args])
        return code
    import atheris

    corpus = Path(args.workdir) / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(args.target)):
        (corpus / f"seed-{i}").write_bytes(b"\x10" + seed if args.target not in ("opus",) else b"\x00" + seed)
    with atheris.instrument_imports():
        pass  # the codecs are compiled: coverage comes from their own instrumentation-free edges via ASAN
    one = make_runner(args.target)
    os.chdir(corpus.parent)
    atheris.Setup([sys.argv[0], *args.libfuzzer_args, str(corpus.name), f"-artifact_prefix={args.target}-"],
                  one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
