"""The package as users get it: a wheel built from a clean copy (no git metadata, no build leftovers),
installed into a fresh venv, decodes real audio."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _clean_copy(dest: Path) -> None:
    """Copy what git would ship (tracked + untracked-but-not-ignored files), nothing else."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                               cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    else:
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                 and not any(part in (".venv", "build", ".git", "__pycache__") for part in p.parts)]
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not name.endswith((".so", ".c")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.mark.wheel
@pytest.mark.slow
def test_wheel_builds_installs_and_decodes(tmp_path):
    src = tmp_path / "src-copy"
    _clean_copy(src)
    assert not (src / ".git").exists()
    wheels = tmp_path / "wheels"
    # Build isolation off: the build requirements (Cython, setuptools-scm) come from this venv, so the
    # test needs no network; the wheel itself is what pip would build.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(src)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("routeraudio-*.whl")
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], check=True,
                           capture_output=True, text=True).stdout
    for module in ("pcm", "resample", "ogg", "webm", "opus", "mp3", "wsframe"):
        assert f"routeraudio/_codec/{module}." in names, f"{module} extension missing from the wheel"
    assert "routeraudio/data/sample.wav" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], check=True)
    fixture = tmp_path / "tone.ogg"
    _write_ogg_opus(fixture)
    script = textwrap.dedent(f"""
        import routeraudio, routeraudio.audio as a
        assert "site-packages" in routeraudio.__file__ and "{src}" not in routeraudio.__file__, routeraudio.__file__
        p = a.AudioPipeline("ogg_opus", 48000, 1, 16000)
        data = open({str(fixture)!r}, "rb").read()
        pcm = p.feed(data) + p.flush()
        print(len(pcm) // 2, p.duration, routeraudio.__version__)
    """)
    out = subprocess.run([str(py), "-c", script], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    samples, duration, version = out.split()
    assert int(samples) == 16000  # one second at 16 kHz, exact after pre-skip and end trimming
    assert float(duration) == pytest.approx(1.0, abs=0.03)
    assert version  # setuptools-scm's fallback without git metadata


def _write_ogg_opus(path: Path) -> None:
    import av
    import numpy as np

    t = np.arange(48000) / 48000
    pcm = (0.25 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16).reshape(1, -1)
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 48000
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            out.mux(packet)
