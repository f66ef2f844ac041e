import os
import sys
from pathlib import Path

import pytest

# tests/ itself is importable (reference oracles, fixture generators) without touching src/:
# the package under test is the installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(__file__).resolve().parent.parent / ".hypothesis"))


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return d
