"""Declares the compiled audio core. Everything else is in pyproject.toml.

Each ``src/routeraudio/_codec/*.pyx`` becomes ``routeraudio._codec.<name>``. Per-module link flags
(``libraries = opus``) live in the ``# distutils:`` header of the .pyx, next to the code that needs
them, so adding a codec never touches this file.
"""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

CODEC_DIR = Path("src/routeraudio/_codec")
# -O3 lets gcc vectorise the FIR and mixing loops; no -march: wheels must run on any x86-64/aarch64.
COMPILE_ARGS = ["-O3", "-fno-strict-aliasing"]
LINK_ARGS: list[str] = []
# Developer builds only (README "Fuzzing"): ROUTERAUDIO_SANITIZE=1 adds AddressSanitizer and UBSan;
# ROUTERAUDIO_SANITIZE=fuzz (with CC=clang) also instruments for libFuzzer/atheris coverage.
SANITIZE = os.environ.get("ROUTERAUDIO_SANITIZE", "")
if SANITIZE:
    flags = "-fsanitize=address,fuzzer-no-link" if SANITIZE == "fuzz" else "-fsanitize=address,undefined"
    COMPILE_ARGS += ["-O1", "-g", "-fno-omit-frame-pointer", flags]
    LINK_ARGS += [flags]

extensions = [
    Extension(
        f"routeraudio._codec.{pyx.stem}",
        [str(pyx)],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS,
    )
    for pyx in sorted(CODEC_DIR.glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True,
                             "initializedcheck": False, "embedsignature": True},
    )
)
