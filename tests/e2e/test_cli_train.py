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

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable, "-m", "vitforge.cli", "train", str(ROOT / "jobs" / "tiny-cloob.yaml"),
                "--set", f"checkpoint.storage_path={tmp_path}", "--set", "stages.0.max_steps=6",
                "--set", "data.builtin_options={n: 400}", *extra,
            ],
            capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path, check=False,
        )  # fmt: skip

    r = run()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "job tiny-cloob" in r.stdout and "cloob" in r.stdout
    card = json.loads((tmp_path / "tiny-cloob" / "exports" / "0-cloob" / "model_card.json").read_text())
    assert card["kind"] == "image_text" and card["final_metrics"]["step"] == 6
    # The banner plans the stage; the summary gives the export whole, on a line of its own, the
    # MLflow run and what to run next.
    export = (tmp_path / "tiny-cloob" / "exports" / "0-cloob").resolve()
    assert "stage 0 cloob: 6 steps (" in r.stdout and "Ray dashboard http" in r.stdout, r.stdout[-3000:]
    assert f"\n  {export}\n" in r.stdout and f"vitforge serve up tiny-cloob={export}" in r.stdout, r.stdout[-3000:]
    assert "mlflow ui --backend-store-uri sqlite:///" in r.stdout
    assert f"vitforge eval {export} shapes --option n=400" in r.stdout  # the data it trained on

    # A changed spec does not reuse the export: it stops, names the fields and the ways on, logs nothing.
    changed = run("--set", "stages.0.optimizer.fast_lr=0.01")
    assert changed.returncode == 2 and "Traceback" not in changed.stderr, changed.stderr[-3000:]
    assert "stages.0.optimizer.fast_lr: " in changed.stderr and "-> 0.01" in changed.stderr
    assert "--fresh" in changed.stderr
    # The same spec again: nothing to do, and no MLflow run for work that was not done.
    same = run()
    assert same.returncode == 0 and "nothing to do" in same.stdout, same.stdout[-3000:] + same.stderr[-3000:]
    runs = mlflow_runs(tmp_path / "mlruns.db")
    assert sorted(runs) == ["0-cloob", "tiny-cloob"], runs
    # --fresh deletes the earlier work and trains the changed spec.
    fresh = run("--set", "stages.0.optimizer.fast_lr=0.01", "--fresh")
    assert fresh.returncode == 0, fresh.stdout[-3000:] + fresh.stderr[-3000:]
    assert "--fresh: removing" in fresh.stdout
    assert (tmp_path / "tiny-cloob" / "exports" / "0-cloob" / "model_card.json").is_file()
    record = json.loads((tmp_path / "tiny-cloob" / "spec.json").read_text())
    assert record["stages"][0]["optimizer"]["fast_lr"] == 0.01

    # eval on the built-in the job trained on: its data options through --option, checked by name.
    def evaluate(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vitforge.cli", "eval", str(export), "shapes", "--no-probe",
                               "--out-dir", str(tmp_path / "eval"), *extra],
                              capture_output=True, text=True, timeout=600, env=env, check=False)  # fmt: skip

    ok = evaluate("--option", "n=400")
    assert ok.returncode == 0 and "zeroshot_top1" in ok.stdout, ok.stdout[-2000:] + ok.stderr[-2000:]
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0.0 <= written["zeroshot_top1"] <= 1.0 and "knn20" in written
    unknown = evaluate("--option", "n=400", "--option", "clutter=0")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "shapes: unknown option(s) clutter; allowed: n, seed, size, test_fraction" in unknown.stderr
    malformed = evaluate("--option", "n")
    assert malformed.returncode == 2 and "--option must look like KEY=VALUE" in malformed.stderr
    bad_value = evaluate("--option", "n=abc")
    assert bad_value.returncode == 2 and "shapes: bad option value" in bad_value.stderr, bad_value.stderr[-2000:]
    assert "Traceback" not in bad_value.stderr


def mlflow_runs(db: Path) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return [r.info.run_name for r in client.search_runs(ids)]


def test_train_bad_spec_exits_2_naming_field(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "vitforge.cli", "train", str(ROOT / "jobs" / "tiny-mae-ct.yaml"),
         "--set", "stages.1.queue_size=500"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "queue_size 500 is not a multiple of global_batch_size 64" in r.stderr


def test_runtime_errors_are_one_line_with_the_traceback_kept(tmp_path: Path) -> None:
    """A missing data folder: one line naming it, exit 1, the traceback in a file (or with --debug)."""
    cmd = [sys.executable, "-m", "vitforge.cli", "train", "tiny-mae-ct", "--set", "data.source=/no/such/folder",
           "--set", f"checkpoint.storage_path={tmp_path}"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 2 and "data source '/no/such/folder' does not exist" in lines[0], lines
    log = lines[1].split("traceback in ", 1)[1].split(";")[0]
    assert "Traceback" in Path(log).read_text()
    debug = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    # Nothing recorded for the job: the corrected spec is not refused as "another spec".
    assert not (tmp_path / "tiny-mae-ct" / "spec.json").exists()
