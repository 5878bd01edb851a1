"""``vitforge submit`` against a real Ray head started with ``ray start --head`` on 127.0.0.1,
and the same entrypoint through Ray's own ``ray job submit``."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A separate Ray head (its own ports and temp dir), stopped by its own address afterwards."""
    tmp = tmp_path_factory.mktemp("head")
    port, dash = free_port(), free_port()
    # As `.venv/bin/ray start` leaves it: the `python` on the head's PATH is another one (here the
    # system's, without typer); vitforge's entrypoint must still run under the head's own Python.
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != BIN)
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "RAY_ADDRESS": "", "PATH": path}
    cmd = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
           f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--num-cpus=4",
           "--object-store-memory=150000000", "--include-dashboard=true", f"--temp-dir={tmp / 'ray'}",
           # Its own agent ports: the test session's cluster holds the defaults (52365, ...).
           f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
           f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    # Token authentication is on: clients pass the head's token from the environment.
    from vitforge.submit import auth_token

    token = auth_token()
    if token:  # `ray job submit` sends it only in token mode
        env.update(RAY_AUTH_TOKEN=token, RAY_AUTH_MODE="token")
    yield {"address": f"http://127.0.0.1:{dash}", "gcs": f"127.0.0.1:{port}", "tmp": tmp, "env": env}
    # Stop only this head's processes: every Ray process of this session's temp dir.
    subprocess.run(["pkill", "-f", str(tmp / "ray")], check=False)


def write_spec(tmp: Path, name: str, relative: bool = False) -> Path:
    """``relative``: storage and MLflow store given relative to the submitting folder (``tmp``)."""
    spec = {
        "name": name,
        "model": {"size": "test", "patch_size": 4, "img_size": 16},
        "data": {"source": "digits"},
        "scaling": {"num_workers": 2},
        "stages": [{"name": "mae", "global_batch_size": 32, "max_steps": 4}],
        "checkpoint": {"storage_path": "runs" if relative else str(tmp / "runs")},
        "tracking": {"tracking_uri": "sqlite:///mlruns.db" if relative else f"sqlite:///{tmp / 'mlruns.db'}",
                     "log_every_steps": 1},
    }  # fmt: skip
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def test_vitforge_submit_follows_logs_and_succeeds(ray_head) -> None:
    from mlflow import MlflowClient

    tmp = ray_head["tmp"]
    spec = write_spec(tmp, "submitted", relative=True)
    r = subprocess.run(
        [sys.executable, "-m", "vitforge.cli", "submit", str(spec), "--address", ray_head["address"]],
        capture_output=True, text=True, timeout=900, env=ray_head["env"], cwd=tmp, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "submitted vitforge-submitted" in r.stdout
    # Relative paths were made absolute (and said so): the exports and runs are where the user is.
    assert f"checkpoint.storage_path 'runs' -> {tmp.resolve() / 'runs'}" in r.stdout
    assert (tmp / "runs" / "submitted" / "exports" / "0-mae" / "model_card.json").is_file()
    assert "stage 0 mae: done" in r.stdout  # the job's own log lines, streamed
    assert "job vitforge-submitted: SUCCEEDED" in r.stdout
    status = subprocess.run(
        [sys.executable, "-m", "vitforge.cli", "jobs", "status", "vitforge-submitted",
         "--address", ray_head["address"]],
        capture_output=True, text=True, timeout=120, env=ray_head["env"], check=False,
    )  # fmt: skip
    assert status.returncode == 0 and status.stdout.strip() == "SUCCEEDED"
    listed = subprocess.run(
        [sys.executable, "-m", "vitforge.cli", "jobs", "list", "--address", ray_head["address"]],
        capture_output=True, text=True, timeout=120, env=ray_head["env"], check=False,
    )  # fmt: skip
    assert "vitforge-submitted\tSUCCEEDED" in listed.stdout
    client = MlflowClient(f"sqlite:///{tmp / 'mlruns.db'}")
    exp = client.get_experiment_by_name("submitted")
    runs = client.search_runs([exp.experiment_id])
    assert {r.info.run_name for r in runs} == {"submitted", "0-mae"}
    assert any(r.data.tags.get("ray.submission_id") == "vitforge-submitted" for r in runs)


def test_ray_job_submit_same_entrypoint(ray_head) -> None:
    tmp = ray_head["tmp"]
    spec = write_spec(tmp, "raw-submit")
    wd = tmp / "wd"
    wd.mkdir(exist_ok=True)
    (wd / "job.yaml").write_text(spec.read_text())
    r = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", ray_head["address"], "--working-dir", str(wd),
         "--submission-id", "raw-1", "--", sys.executable, "-m", "vitforge.cli", "train", "job.yaml"],
        capture_output=True, text=True, timeout=900, env=ray_head["env"], check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "succeeded" in r.stdout.lower()
    assert (tmp / "runs" / "raw-submit" / "exports" / "0-mae" / "model_card.json").is_file()
