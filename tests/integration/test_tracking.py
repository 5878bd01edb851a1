"""MLflow tracks jobs: embedded SQLite store and a real ``mlflow server`` on 127.0.0.1."""

import json
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
from vitforge.tracking import (
    Tracker,
    TrackingError,
    annotate_version,
    data_record,
    git_info,
    log_data_input,
    log_evaluation,
    use_tracking_uri,
)

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


KIND = "mlflow.experimentKind"


def test_experiments_open_in_model_training_mode(tmp_path: Path) -> None:
    """New experiments get the kind; an older one without it gets it; one whose kind a person
    chose in the UI keeps it."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'kind.db'}"
    client = MlflowClient(uri)
    Tracker(uri, "fresh")
    client.create_experiment("older")
    client.set_experiment_tag(client.create_experiment("chosen"), KIND, "genai_development")
    Tracker(uri, "older"), Tracker(uri, "chosen")
    kinds = {n: client.get_experiment_by_name(n).tags.get(KIND) for n in ("fresh", "older", "chosen")}
    assert kinds == {"fresh": "custom_model_development", "older": "custom_model_development",
                     "chosen": "genai_development"}  # fmt: skip


def test_data_is_a_dataset_input_without_reading_images(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    folder = tmp_path / "pets"
    folder.mkdir()  # no images: nothing is read
    tracker = Tracker(f"sqlite:///{tmp_path / 'data.db'}", "data")
    run = tracker.start_run("job")
    builtin = data_record("digits", "train", 1437, {"size": 16})
    log_data_input(tracker, run, builtin)
    log_data_input(tracker, run, data_record(str(folder), "train", 12, fmt="imagefolder"), context="eval")
    inputs = MlflowClient(tracker.uri).get_run(run).inputs.dataset_inputs
    got = {i.dataset.name: i for i in inputs}
    assert set(got) == {"digits:train", "pets:train"}
    digits, pets = got["digits:train"], got["pets:train"]
    assert digits.dataset.source_type == "code"
    assert json.loads(digits.dataset.source)["tags"] == {"vitforge.builtin": "digits", "size": 16}
    assert json.loads(digits.dataset.profile) == {"split": "train", "num_rows": 1437}
    assert pets.dataset.source_type == "local" and json.loads(pets.dataset.source) == {"uri": str(folder.resolve())}
    assert [(t.key, t.value) for t in digits.tags] == [("mlflow.data.context", "train")]
    assert [(t.key, t.value) for t in pets.tags] == [("mlflow.data.context", "eval")]
    # The digest names the data: same source and options, same digest; other options, another.
    assert builtin["digest"] == data_record("digits", "train", 1437, {"size": 16})["digest"] == digits.dataset.digest
    assert builtin["digest"] != data_record("digits", "train", 1437, {"size": 32})["digest"]


def test_git_source_only_for_tracked_code(tmp_path: Path) -> None:
    package = Path(__file__).resolve().parents[2] / "platform" / "vitforge" / "train"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True).stdout.strip()
    tags = git_info(package)
    assert tags["mlflow.source.git.commit"] == tags["git.commit"] == head
    assert tags["mlflow.source.type"] == "PROJECT" and tags["mlflow.source.name"]
    assert git_info(tmp_path) == {}  # not a checkout: nothing, quietly
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "untracked").mkdir()
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"], check=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})  # fmt: skip
    assert git_info(tmp_path / "untracked") == {}  # a checkout that does not hold the code: nothing


def test_evaluation_reaches_job_run_and_model_version(tmp_path: Path) -> None:
    """An evaluation after training: on the stage's run, the job's run, and the version registered
    from the stage's run (tags, and a paragraph after the description it had)."""
    from mlflow import MlflowClient

    tracker = Tracker(f"sqlite:///{tmp_path / 'eval.db'}", "evaluated")
    client = MlflowClient(tracker.uri)
    parent = tracker.start_run("job")
    child = tracker.start_run("1-contrastive_tuning", parent)
    client.create_registered_model("enc")
    version = client.create_model_version("enc", str(tmp_path), run_id=child).version
    annotate_version(tracker, "enc", version, {"loss": 1.5}, "stage `1-contrastive_tuning`", append=False)
    evals = {"MAE-CT": {"knn20": 0.75, "nmi": 0.5}, "MAE": {"knn20": 0.5, "nmi": 0.25}}
    row = {"eval_maect_knn20": 0.75, "eval_mae_knn20": 0.5}
    log_evaluation(tracker, child, row, model_metrics=evals["MAE-CT"], summary=evals)
    for run in (child, parent):
        assert client.get_run(run).data.metrics == row
    summary = Path(client.download_artifacts(parent, "eval_summary.json", str(tmp_path)))
    assert json.loads(summary.read_text()) == evals
    mv = client.get_model_version("enc", version)
    assert mv.tags == {"loss": "1.5", "knn20": "0.75", "nmi": "0.5"}
    assert mv.description == "stage `1-contrastive_tuning`\n\nHeld-out evaluation: knn20 0.7500, nmi 0.5000."


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
    from vitforge.train.inputs import load_train_data
    from vitforge.train.run import run_job

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stages = [
        {"name": "mae", "epochs": 5, "global_batch_size": 64, "max_steps": 8},
        {"name": "nnclr_head", "epochs": 5, "global_batch_size": 64, "max_steps": 6, **HEAD},
    ]
    spec = load_spec(data=job(tmp_path, "tracked", stages), overrides=["tracking.alias=champion"])
    results = run_job(spec)
    rows = len(load_train_data(spec))

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
    assert parent.data.tags["mlflow.source.git.commit"] == parent.data.tags["git.commit"]
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # The data as a dataset input of the job's and each stage's run: one dataset, the split's size.
    for run in (parent, *children):
        (data,) = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert data.dataset.name == "digits:train" and json.loads(data.dataset.profile)["num_rows"] == rows
    # Each stage's final loss (last step's, and its last epoch's mean) on the job's run.
    assert set(parent.data.metrics) == {f"{s}.{k}" for s in ("0-mae", "1-nnclr_head") for k in ("loss", "epoch_loss")}
    assert parent.data.metrics["1-nnclr_head.loss"] == results[-1].metrics["loss"]
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
    assert float(version.tags["loss"]) == results[-1].metrics["loss"]
    assert "stage `1-nnclr_head`" in version.description and "mae -> nnclr_head" in version.description
    assert "digits (split train)" in version.description and results[-1].export_dir in version.description
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
