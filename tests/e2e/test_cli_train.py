"""``vitforge train`` end to end: a real subprocess, a local Ray it starts, a shipped tiny spec."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.ray
def test_train_tiny_cloob_spec(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run(
        [
            sys.executable, "-m", "vitforge.cli", "train", str(ROOT / "jobs" / "tiny-cloob.yaml"),
            "--set", f"checkpoint.storage_path={tmp_path}", "--set", "stages.0.max_steps=6",
            "--set", "data.builtin_options={n: 400}",
        ],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "job tiny-cloob" in r.stdout and "cloob" in r.stdout
    card = json.loads((tmp_path / "tiny-cloob" / "exports" / "0-cloob" / "model_card.json").read_text())
    assert card["kind"] == "image_text" and card["final_metrics"]["step"] == 6


def test_train_bad_spec_exits_2_naming_field(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "vitforge.cli", "train", str(ROOT / "jobs" / "tiny-mae-ct.yaml"),
         "--set", "stages.1.queue_size=500"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "queue_size 500 is not a multiple of global_batch_size 64" in r.stderr
