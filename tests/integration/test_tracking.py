"""MLflow tracks jobs: embedded SQLite store and a real ``mlflow server`` on 127.0.0.1."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from vitforge.config import load_spec
from vitforge.tracking import Tracker, TrackingError, use_tracking_uri

HEAD = {"head_hidden_dim": 64, "head_out_dim": 16, "predictor_hidden_dim": 64, "queue_size": 256}


def job(tmp_path: Path, name: str, stages: list[dict], uri: str | None = None) -> dict:
    return {
        "name": name,
        "model": {"size": "test", "patch_size": 4, "img_size": 16},
        "data": {"source": "digits"},
        "scaling": {"num_workers": 2},
        "stages": stages,
        "checkpoint": {"storage_path": str(tmp_path / "runs")},
        "tracking": {"tracking_uri": uri, "log_every_steps": 1, "report_every_steps": 2},
    }


def test_wrong_uri_fails_fast() -> None:
    t0 = time.time()
    with pytest.raises(TrackingError, match=r"http://127\.0\.0\.1:9 is not reachable"):
        Tracker("http://127.0.0.1:9")
    assert time.time() - t0 < 30


@pytest.mark.ray
@pytest.mark.slow
def test_embedded_store_records_job(ray_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    from vitforge.inference import encode_images, load_encoder
    from vitforge.train.run import run_job

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stages = [
        {"name": "mae", "epochs": 5, "global_batch_size": 64, "max_steps": 8},
        {"name": "nnclr_head", "epochs": 5, "global_batch_size": 64, "max_steps": 6, **HEAD},
    ]
    spec = load_spec(data=job(tmp_path, "tracked", stages), overrides=["tracking.alias=champion"])
    results = run_job(spec)

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert (tmp_path / "mlruns.db").is_file() and (tmp_path / "mlartifacts").is_dir()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tracked")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and sorted(r.info.run_name for r in children) == ["0-mae", "1-nnclr_head"]
    parent = parents[0]
    assert parent.data.params["model.size"] == "test" and parent.data.params["stages.1.name"] == "nnclr_head"
    assert "git.commit" in parent.data.tags and parent.data.tags["ray.job_id"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"job_spec.yaml"}
    for child, planned in zip(sorted(children, key=lambda r: r.info.run_name), (8, 6), strict=True):
        hist = client.get_metric_history(child.info.run_id, "loss")
        assert [m.step for m in hist] == list(range(1, planned + 1))
        assert len(client.get_metric_history(child.info.run_id, "lr_fast")) == planned
        assert client.get_metric_history(child.info.run_id, "sys_rss_gib")
        plots = [a.path for a in client.list_artifacts(child.info.run_id, "plots")]
        assert plots == [f"plots/loss_{child.info.run_name}.png"]
        png = Path(client.download_artifacts(child.info.run_id, plots[0], str(tmp_path)))
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
        exported = {a.path for a in client.list_artifacts(child.info.run_id, "export")}
        assert {"export/encoder.safetensors", "export/model_card.json"} <= exported
        assert child.info.status == "FINISHED"
    # The last stage's encoder is registered; the pyfunc gives the export's embeddings.
    version = client.get_model_version_by_alias("tracked", "champion")
    last_stage_run = next(r for r in children if r.info.run_name == "1-nnclr_head")
    assert str(version.version) == "1" and version.run_id == last_stage_run.info.run_id
    with use_tracking_uri(uri):
        pyfunc = mlflow.pyfunc.load_model("models:/tracked@champion")
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    model, card = load_encoder(results[-1].export_dir)
    assert np.allclose(pyfunc.predict(images), encode_images(model, card, images).numpy(), atol=1e-5)
    assert torch.equal(torch.as_tensor(pyfunc.predict(images)).norm(dim=1).round(decimals=4), torch.ones(3))


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real ``mlflow server`` (SQLite backend, local artifact root) in its own process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--default-artifact-root", str(tmp_path / "server-artifacts"), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("mlflow server did not answer /health within 60 s")

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group: mlflow leaves workers behind otherwise
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    yield uri, stop
    stop()


@pytest.mark.ray
@pytest.mark.slow
def test_server_tracking_and_server_loss_mid_run(ray_cluster, tmp_path: Path, mlflow_server) -> None:
    from mlflow import MlflowClient

    from vitforge.train.run import run_job

    uri, stop = mlflow_server
    stages = [{"name": "mae", "epochs": 5, "global_batch_size": 64, "max_steps": 24}]
    spec = load_spec(data=job(tmp_path, "served", stages, uri))
    stopped = {}

    def stop_when_training() -> None:
        # Stop the server once the stage's run exists: everything the stage logs after that fails.
        client = MlflowClient(uri)
        deadline = time.time() + 600
        while time.time() < deadline:
            exp = client.get_experiment_by_name("served")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if any(r.info.run_name == "0-mae" for r in runs):
                stopped["runs_before"] = len(runs)
                stop()
                return
            time.sleep(0.2)

    t = threading.Thread(target=stop_when_training, daemon=True)
    t.start()
    with pytest.warns(UserWarning, match="MLflow logging to http://127.0.0.1"):
        results = run_job(spec)
    t.join(5)
    assert stopped, "the server was never stopped"
    assert stopped["runs_before"] == 2  # the job and stage runs reached the server while it was up
    assert results[0].history[-1]["step"] == 24  # training finished all its steps regardless
    assert (Path(results[0].export_dir) / "encoder.safetensors").is_file()
