"""What `vitforge submit` sends: relative local paths made absolute, URIs left alone."""

from pathlib import Path

import pytest

from vitforge.config import load_spec
from vitforge.submit import cluster_paths


def test_relative_paths_become_absolute_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec, notes = cluster_paths(load_spec("tiny-mae-ct", ["checkpoint.storage_path=./runs"]))
    assert spec.checkpoint.storage_path == str(tmp_path.resolve() / "runs")
    assert spec.tracking.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlruns.db'}"  # the default store
    assert len(notes) == 2 and "'./runs' ->" in notes[0]
    start, notes = cluster_paths(load_spec("mae-ct-vit-b16-from-mae", ["tracking.enabled=false"]))
    assert start.init_from == str(tmp_path.resolve() / "mae-b16")
    assert notes == [f"init_from './mae-b16' -> {start.init_from}"]
    rel, _ = cluster_paths(load_spec("tiny-mae-ct", ["tracking.tracking_uri=sqlite:///sub/m.db"]))
    assert rel.tracking.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'sub' / 'm.db'}"


def test_uris_and_absolute_paths_stay(tmp_path: Path) -> None:
    given = ["checkpoint.storage_path=s3://bucket/runs", "tracking.tracking_uri=http://mlflow:5000"]
    spec, notes = cluster_paths(load_spec("tiny-mae-ct", given))
    assert spec.checkpoint.storage_path == "s3://bucket/runs" and spec.tracking.tracking_uri == "http://mlflow:5000"
    assert notes == []
    local = [f"checkpoint.storage_path={tmp_path}", "tracking.enabled=false"]
    spec, notes = cluster_paths(load_spec("tiny-mae-ct", local))
    assert spec.checkpoint.storage_path == str(tmp_path) and notes == []
