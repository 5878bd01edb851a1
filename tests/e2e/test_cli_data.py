"""The ``vitforge`` command as a user runs it (a real subprocess)."""

import subprocess
import sys
from pathlib import Path


def vitforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vitforge.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_data_export_then_info(tmp_path: Path) -> None:
    r = vitforge("data", "export", "shapes", str(tmp_path / "shapes"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "shapes" / "train.parquet").exists() and "test.parquet" in r.stdout
    r = vitforge("data", "info", str(tmp_path / "shapes"), "--split", "test")
    assert r.returncode == 0, r.stderr
    assert "format parquet, split test: 400 rows in 2 pieces, 8 labels, with captions" in r.stdout


def test_user_errors_have_no_traceback(tmp_path: Path) -> None:
    r = vitforge("data", "export", "cifar", str(tmp_path))
    assert r.returncode == 2 and "allowed: digits, digits-cluttered, shapes" in r.stderr
    assert "Traceback" not in r.stderr
    r = vitforge("data", "info", str(tmp_path / "missing"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
