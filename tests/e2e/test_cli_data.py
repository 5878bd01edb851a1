"""The ``vitforge`` command as a user runs it (a real subprocess)."""

import io
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
    assert "format parquet, split test: 400 rows in 2 pieces, 6 labels, with captions" in r.stdout


def test_user_errors_have_no_traceback(tmp_path: Path) -> None:
    r = vitforge("data", "export", "cifar", str(tmp_path))
    assert r.returncode == 2 and "allowed: digits, digits-cluttered, shapes" in r.stderr
    assert "Traceback" not in r.stderr
    r = vitforge("data", "info", str(tmp_path / "missing"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_prepare_caps_images_names_bad_files_and_resumes(tmp_path: Path) -> None:
    """``data prepare``: a class folder (with one corrupt file) as Parquet shards of 4 rows, images
    capped at 32 pixels, labels kept; the bad file named and counted; a re-run writes nothing new;
    the shards read back through the same source planner training uses."""
    import numpy as np
    from PIL import Image

    from vitforge.data import iter_rows, load_source

    for cls in ("cat", "dog"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((60, 90, 3), 40 * i, np.uint8)).save(tmp_path / "src" / cls / f"{i}.png")
    (tmp_path / "src" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    args = ("data", "prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--shard-size", "4", "--max-side", "32")
    r = vitforge(*args, "--local")
    assert r.returncode == 0, r.stderr
    assert "broken.jpg" in r.stdout and "10 rows in 3 new shards, 1 bad images skipped" in r.stdout
    out = load_source(str(tmp_path / "out"))
    assert len(out) == 10 and len(out.pieces) == 3 and out.num_classes == 2
    rows = [r for batch in iter_rows(out) for r in zip(batch["image"], batch["label"], strict=True)]
    assert sorted(label for _, label in rows) == [0] * 5 + [1] * 5
    assert all(max(Image.open(io.BytesIO(img)).size) == 32 for img, _ in rows)
    again = vitforge(*args, "--local")
    assert again.returncode == 0 and "0 rows in 0 new shards" in again.stdout
