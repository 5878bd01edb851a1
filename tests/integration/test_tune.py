"""Ray Tune TTUR searches on the real local cluster, tiny models, one worker per trial."""

import logging
import warnings
from pathlib import Path

import pytest

from vitforge.config import load_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_asha_search_gives_one_best_everywhere(ray_cluster, tmp_path: Path) -> None:
    """The live lines, the table, MLflow, best_job.yaml and the heatmap name the same best trial
    with the same value: the value at its end, among the trials that ran the whole budget; and
    training best_job.yaml gives that value again."""
    from mlflow import MlflowClient
    from PIL import Image

    from vitforge.eval.hook import knn_hook
    from vitforge.train.inputs import load_train_data
    from vitforge.train.loop import run_stage
    from vitforge.train.runners import local_context
    from vitforge.tune import run_search

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = load_spec(
        ROOT / "jobs" / "tiny-ttur.yaml",
        [f"checkpoint.storage_path={tmp_path}", f"tracking.tracking_uri={uri}", "tune.num_samples=6",
         "stages.0.epochs=4", "tune.max_concurrent_trials=1",  # sequential: ASHA's decisions are repeatable
         "tracking.report_every_steps=5"],  # mid-epoch reports: a trial still reports only at epoch ends
    )  # fmt: skip
    lines: list[str] = []
    res = run_search(spec, log=lines.append)
    table, best = res.table, res.best
    assert res.metric == "knn20" and len(table) == 6
    # 1. The table: each value is the trial's last; full-budget trials first, best (highest) first.
    for r in table:
        assert r["metric"] == r["history"][-1] and r["epochs"] == len(r["history"]), r
        assert r["status"] == ("TERMINATED" if r["epochs"] == 4 else "STOPPED_EARLY"), r
    epochs = [r["epochs"] for r in table]
    assert epochs == sorted(epochs, reverse=True) and min(epochs) < 4, epochs  # ASHA stopped some early
    full = [r["metric"] for r in table if r["epochs"] == 4]
    assert full == sorted(full, reverse=True) and best is table[0] and best["epochs"] == 4
    # 2. The live lines: the last one's "best so far" is the table's best.
    trial_lines = [x for x in lines if x.startswith("trial ")]
    assert len(trial_lines) == 6, lines
    assert f"best {best['metric']:.4f} ({best['trial_id']}, 4 epochs)" in trial_lines[-1], trial_lines
    said = f"best knn20 {best['metric']:.4f} trial {best['trial_id']} (4 epochs)"
    assert any(x.startswith(said) for x in lines), lines
    # 3. best_job.yaml: the same trial, value and pair; 4. the heatmap: the same sentence.
    head = res.best_spec_path.read_text()
    assert f"knn20 {best['metric']:.4f} at the end of trial {best['trial_id']} (4 epochs" in head, head
    assert Image.open(res.heatmap_path).info["Description"] == said
    # 5. MLflow: the parent run carries the metric, the pair and the best trial's run; trials that
    # ASHA stopped are FINISHED, tagged stopped_early with their budget.
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny-ttur").experiment_id])
    parent = next(r for r in runs if r.info.run_name == "tiny-ttur-tune")
    children = {r.info.run_name.removeprefix("trial-"): r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}  # fmt: skip
    assert len(children) == 6
    assert parent.data.metrics["knn20"] == pytest.approx(best["metric"])
    assert parent.data.metrics["best_fast_lr"] == pytest.approx(best["fast_lr"])
    assert parent.data.tags["best.trial"] == best["trial_id"]
    assert parent.data.tags["best.run_id"] == children[best["trial_id"]].info.run_id
    for r in table:
        child = children[r["trial_id"]]
        assert child.info.status == "FINISHED", (r, child.info)
        assert child.data.tags["stopped_early"] == str(r["epochs"] < 4).lower()
        assert child.data.tags["vitforge.epochs"] == str(r["epochs"])
        assert child.data.metrics["knn20"] == pytest.approx(r["metric"])  # MLflow's latest = the end value
    assert any(a.path == "plots/heatmap.png" for a in client.list_artifacts(parent.info.run_id, "plots"))
    # The search's point: training the best spec again gives the value it was chosen for.
    again = load_spec(res.best_spec_path, ["tracking.enabled=false", f"checkpoint.storage_path={tmp_path}/again"])
    ctx, norm = local_context(again, 0, lambda metrics, directory: None, log=lambda m: None)
    ctx.eval_fn = knn_hook(again, norm, load_train_data(again), load_train_data(again, again.data.eval_split))
    run_stage(ctx, again, 0)
    knn = [h["knn20"] for h in ctx.history if "knn20" in h]
    assert knn and knn[-1] == pytest.approx(best["metric"], abs=0.01), (knn, best)


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
         "name=ttur-train-knn", "tracking.report_every_steps=5"],  # a trial reports at epoch ends only
    )  # fmt: skip
    lines: list[str] = []
    res = run_search(spec, log=lines.append)
    assert res.metric == "knn20" and lines[0].startswith("metric: knn20 (held-out k-NN, higher is better"), lines
    [row] = res.table
    assert row["status"] == "TERMINATED" and row["epochs"] == 1, row
    assert 0.0 < row["metric"] <= 1.0  # an accuracy, from the Train workers' epoch-end report
    assert "report_every_steps: 5" in res.best_spec_path.read_text()  # the user's, not the trial's
    head = res.best_spec_path.read_text().splitlines()[:5]
    assert f"knn20 {row['metric']:.4f}" in "\n".join(head), head
    assert head[-1] == f"# Train it: vitforge train {res.best_spec_path}"
