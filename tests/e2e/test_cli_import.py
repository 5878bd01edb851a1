"""``vitforge import`` and ``vitforge export --format hf`` as a user runs them (real subprocesses)."""

import subprocess
import sys
from pathlib import Path

import pytest

from hf_checkpoints import save_official_mae, tiny_hf_mae

pytest.importorskip("transformers")


def vitforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vitforge.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_import_then_export_hf(tmp_path: Path) -> None:
    pth = str(save_official_mae(tiny_hf_mae(), tmp_path / "mae_pretrain_vit_test.pth"))
    bad = vitforge("import", pth, str(tmp_path / "x"), "--img-size", "32")
    assert bad.returncode == 2 and "--interpolate-pos" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    r = vitforge("import", pth, str(tmp_path / "mae-test4"))
    assert r.returncode == 0, r.stderr
    assert "mae checkpoint: ViT-test/4 at 16px, parts ['encoder', 'mae'], positions xy" in r.stdout
    r = vitforge("export", str(tmp_path / "mae-test4"), str(tmp_path / "hf"), "--format", "hf")
    assert r.returncode == 0, r.stderr
    files = {p.name for p in (tmp_path / "hf").iterdir()}
    assert files == {"config.json", "model.safetensors", "preprocessor_config.json"}
