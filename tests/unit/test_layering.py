"""STYLE.md's dependency direction, enforced by walking imports."""

import ast
import re
from pathlib import Path


# The source tree, not the installed package: compiled modules ship without their .pyx.
PKG = Path(__file__).resolve().parents[2] / "src" / "routeraudio"
IO_MODULES = {"asyncio", "websockets", "uvloop", "socket", "ssl", "sqlite3"}


_PYX_IMPORT = re.compile(r"^\s*(?:from\s+(\S+)\s+(?:c?import)|c?import\s+([\w.]+))", re.M)


def _imports(path: Path) -> set[str]:
    if path.suffix == ".pyx":  # Cython is not Python syntax: read the import lines
        return {a or b for a, b in _PYX_IMPORT.findall(path.read_text())}
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            names.add(base)
    return names


def _sources(sub: str):
    root = PKG / sub
    return [p for p in root.rglob("*") if p.suffix in (".py", ".pyx")]


def test_codec_and_providers_do_no_io():
    for sub in ("_codec", "providers"):
        for path in _sources(sub):
            bad = {n for n in _imports(path) if n.split(".")[0] in IO_MODULES}
            assert not bad, f"{path.name} imports {bad}"


def test_providers_import_only_allowed_modules():
    allowed = {"..events", "..errors", "..config", ".base", ".", "..", "__future__"}
    for path in _sources("providers"):
        ours = {n for n in _imports(path) if n.startswith(".") or n.startswith("routeraudio")}
        assert ours <= allowed | {".base"}, f"{path.name}: {ours - allowed}"


def test_audio_and_events_do_no_io():
    for name in ("audio.py", "events.py", "errors.py", "config.py"):
        bad = {n for n in _imports(PKG / name) if n.split(".")[0] in IO_MODULES}
        assert not bad, f"{name} imports {bad}"


def test_codec_imports_nothing_of_ours_but_errors():
    for path in _sources("_codec"):
        ours = {n for n in _imports(path) if n.startswith("routeraudio") or n.startswith(".")}
        extra = {n for n in ours if n != "routeraudio.errors" and not n.startswith("routeraudio._codec")}
        assert not extra, f"{path.name} imports {extra}"
