"""Ray Tune TTUR searches on the real local cluster, tiny models, one worker per trial."""

import json
import logging
import warnings
from pathlib import Path

import pytest

from vitforge.config import load_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_asha_search_writes_table_heatmap_best_spec_and_mlflow(ray_cluster, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from vitforge.tune import run_search

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = load_spec(
        ROOT / "jobs" / "tiny-ttur.yaml",
        [f"checkpoint.storage_path={tmp_path}", f"tracking.tracking_uri={uri}", "tune.num_samples=6",
         "stages.0.epochs=4", "tune.max_concurrent_trials=1",  # sequential: ASHA's decisions are repeatable
         "tune.metric=epoch_loss"],  # the loss, not the default k-NN: the cheapest report per epoch
    )  # fmt: skip
    lines: list[str] = []
    res = run_search(spec, log=lines.append)
    assert len(res.table) == 6
    # One line per trial as it ends, with the best so far (no per-trial tables or config dumps).
    trial_lines = [x for x in lines if x.startswith("trial ")]
    assert len(trial_lines) == 6 and all("best " in x for x in trial_lines), lines
    epochs = [r["epochs"] for r in res.table]
    assert max(epochs) == 4 and min(epochs) < 4, epochs  # ASHA stopped the worst trials early
    for r in res.table:
        assert r["status"] == ("TERMINATED" if r["epochs"] == 4 else "STOPPED_EARLY"), r
    metrics = [r["metric"] for r in res.table]
    assert metrics == sorted(metrics)  # sorted, best (lowest loss) first
    assert res.heatmap_path.read_bytes()[:4] == b"\x89PNG"
    best = load_spec(res.best_spec_path)  # a runnable job spec with the best pair written in
    assert best.tune is None and best.stages[0].optimizer.fast_lr == pytest.approx(res.best["fast_lr"])
    assert json.loads((res.out_dir / "trials.json").read_text())[0]["trial_id"] == res.best["trial_id"]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny-ttur").experiment_id])
    parent = next(r for r in runs if r.info.run_name == "tiny-ttur-tune")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 6 and parent.data.tags["best.trial"] == res.best["trial_id"]
    # MLflow shows what Tune did: full trials finished, ASHA's stops killed (tagged), none failed.
    status = {r.info.run_name.removeprefix("trial-"): r.info.status for r in children}
    for r in res.table:
        assert status[r["trial_id"]] == ("FINISHED" if r["status"] == "TERMINATED" else "KILLED"), (r, status)
    assert {c.data.tags["vitforge.trial_status"] for c in children} == {"TERMINATED", "STOPPED_EARLY"}
    assert float(parent.data.tags["best.fast_lr"]) == pytest.approx(res.best["fast_lr"])
    assert any(a.path == "plots/heatmap.png" for a in client.list_artifacts(parent.info.run_id, "plots"))


def test_absurd_lr_trial_fails_alone(ray_cluster, tmp_path: Path) -> None:
    from vitforge.tune import run_search

    spec = load_spec(
        ROOT / "jobs" / "tiny-ttur.yaml",
        [f"checkpoint.storage_path={tmp_path}", "tracking.enabled=false", "tune.search_alg=grid",
         "tune.grid={fast_lr: [0.001, 1000000.0], slow_lr: [0.001]}", "tune.scheduler=none", "deepspeed.grad_clip=0",
         "stages.0.epochs=2", "name=ttur-fail"],
    )  # fmt: skip
    res = run_search(spec)
    by_lr = {r["fast_lr"]: r for r in res.table}
    assert by_lr[1e6]["status"] == "ERROR" and "loss is" in by_lr[1e6]["error"]
    assert by_lr[1e-3]["status"] == "TERMINATED" and by_lr[1e-3]["epochs"] == 2
    assert res.best["fast_lr"] == 1e-3


def test_max_concurrent_trials_is_honoured_without_a_warning(ray_cluster, tmp_path: Path) -> None:
    """4 trials of 1 CPU on a 4-CPU cluster, at most 2 at a time: Tune used to drop the limit next
    to the seeded BasicVariantGenerator (with only a warning) and ran all 4 at once."""
    from vitforge.tune import run_search

    spec = load_spec(
        ROOT / "jobs" / "tiny-ttur.yaml",
        [f"checkpoint.storage_path={tmp_path}", "tracking.enabled=false", "tune.num_samples=4",
         "tune.scheduler=none", "stages.0.epochs=1", "tune.metric=epoch_loss", "tune.max_concurrent_trials=2",
         "name=ttur-limit"],
    )  # fmt: skip
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("ray.tune").addHandler(handler)
    lines: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = run_search(spec, log=lines.append)
    finally:
        logging.getLogger("ray.tune").removeHandler(handler)
    said = [r.getMessage() for r in records] + [str(w.message) for w in caught]
    assert not [x for x in said if "max_concurrent" in x or "ignored" in x], said
    assert "at most 2 trials at a time" in lines and lines[0].startswith("metric: epoch_loss"), lines
    rows = res.table
    assert len(rows) == 4 and all(r["status"] == "TERMINATED" for r in rows), rows
    # The most trials alive at any moment, from each trial's start and last report.
    events = sorted([(r["started"], 1) for r in rows] + [(r["ended"], -1) for r in rows], key=lambda e: (e[0], e[1]))
    alive, most = 0, 0
    for _, step in events:
        alive += step
        most = max(most, alive)
    assert most == 2, rows  # the limit reached (trials did run side by side), never passed


def test_train_mode_trial_reports_knn20(ray_cluster, tmp_path: Path) -> None:
    """A trial as a Ray Train run ranks by held-out k-NN (the auto metric on labelled digits)."""
    from vitforge.tune import run_search

    spec = load_spec(
        ROOT / "jobs" / "tiny-ttur.yaml",
        [f"checkpoint.storage_path={tmp_path}", "tracking.enabled=false", "tune.mode=train", "tune.search_alg=grid",
         "tune.grid={fast_lr: [0.003], slow_lr: [0.0003]}", "tune.scheduler=none", "stages.0.epochs=1",
         "name=ttur-train-knn"],
    )  # fmt: skip
    lines: list[str] = []
    res = run_search(spec, log=lines.append)
    assert res.metric == "knn20" and lines[0].startswith("metric: knn20 (held-out k-NN, higher is better"), lines
    [row] = res.table
    assert row["status"] == "TERMINATED" and row["epochs"] == 1, row
    assert 0.0 < row["metric"] <= 1.0  # an accuracy, from the Train workers' epoch-end report
    head = res.best_spec_path.read_text().splitlines()[:5]
    assert f"knn20 {row['metric']:.4f}" in "\n".join(head), head
    assert head[-1] == f"# Train it: vitforge train {res.best_spec_path}"
