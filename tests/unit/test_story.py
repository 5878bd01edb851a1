"""What `vitforge train` tells the user before and after a job: the plan, where things go, the
results with whole paths, the MLflow run and the next commands."""

from pathlib import Path

from vitforge.config import load_spec
from vitforge.train.run import StageResult
from vitforge.train.story import JobResults, banner, summary

TINY = load_spec("tiny-mae-ct", ["stages.0.optimizer.lr_scaling=linear", "deepspeed.grad_accum=2"])


def test_banner_plans_each_stage_with_lrs_after_scaling() -> None:
    lines = banner(TINY, 1000, 10, "/runs/tiny-mae-ct", "sqlite:////tmp/m.db", "127.0.0.1:8265", token_auth=True)
    text = "\n".join(lines)
    assert "job tiny-mae-ct: 3 stages on 2 CPU workers, ZeRO-0, fp32" in text
    assert "data digits-cluttered: 1000 examples, 10 classes" in text
    # 1000 rows // 64 = 15 steps per epoch; the MAE stage runs 2 epochs; 64 images over 2 workers.
    mae = next(x for x in lines if x.startswith("stage 0 mae:"))
    assert "30 steps (2 epochs of 15)" in mae and "batch 64 (32 per worker, micro-batch 16 x 2 accumulated)" in mae
    # Linear scaling: 1.5e-3 x 64 images / 256 = 3.75e-4; what the optimizer gets is shown.
    assert "lr fast 3.75e-04 slow 3.75e-04 (linear scaling from 1.50e-03, 1.50e-03)" in mae
    ct = next(x for x in lines if x.startswith("stage 2 contrastive_tuning:"))
    assert "15 steps" in ct and "lr fast 1.00e-03 slow 3.00e-04" in ct and "scaling" not in ct
    assert "output /runs/tiny-mae-ct" in lines and "MLflow sqlite:////tmp/m.db" in lines
    assert any(x.startswith("Ray dashboard http://127.0.0.1:8265 (token auth on: `ray get-auth-token`") for x in lines)


def test_banner_without_labels_tracking_or_dashboard_and_with_stages_done() -> None:
    lines = banner(TINY, 1000, None, "/r", None, None, done=[True, False, False])
    assert "data digits-cluttered: 1000 examples" in lines
    assert "stage 0 mae: exported already, skipped" in lines
    assert "MLflow off (tracking.enabled: false)" in lines and not any("Ray dashboard" in x for x in lines)


def _results(tmp: Path, **run) -> JobResults:
    hist = [{"step": 5, "loss": 1.5, "img_per_s_total": 100.0}, {"step": 30, "loss": 0.25, "img_per_s_total": 300.0}]
    deep = tmp / ("a-very-long-folder-name-" * 6) / "exports"
    return JobResults(
        [
            StageResult("mae", str(deep / "0-mae"), 0.0, {}, skipped=True),
            StageResult("contrastive_tuning", str(deep / "2-contrastive_tuning"), 12.34, {}, hist),
        ],
        **run,
    )


def test_summary_has_whole_paths_the_mlflow_run_and_next_commands(tmp_path: Path) -> None:
    res = _results(tmp_path, tracking_uri="sqlite:////tmp/m.db", experiment_id="3", parent_run_id="abc")
    lines = summary(TINY, res)
    export = str(tmp_path / ("a-very-long-folder-name-" * 6) / "exports" / "2-contrastive_tuning")
    assert lines[:4] == [
        "stage mae: exported already (skipped)",
        f"  {Path(res[0].export_dir)}",
        "stage contrastive_tuning: 30 steps, loss 1.5000 -> 0.2500, 200 img/s, 12.3 s",
        f"  {export}",
    ]
    assert "  mlflow ui --backend-store-uri sqlite:////tmp/m.db" in lines
    assert "  then open http://127.0.0.1:5000/#/experiments/3/runs/abc" in lines
    assert lines[-4:] == [
        "next:",
        f"  vitforge eval {export} digits-cluttered",
        f"  vitforge serve up tiny-mae-ct={export}",
        f"  vitforge export {export} ./tiny-mae-ct-hf --format hf",
    ]
    # A built-in's data options go with its eval command (the quickstart trains on clutter 0).
    quick = TINY.model_copy(update={"data": TINY.data.model_copy(update={"builtin_options": {"clutter": 0.0}})})
    assert f"  vitforge eval {export} digits-cluttered --option clutter=0.0" in summary(quick, res)


def test_summary_names_a_server_run_by_its_url_and_skips_mlflow_when_off(tmp_path: Path) -> None:
    res = _results(tmp_path, tracking_uri="http://mlflow:5000/", experiment_id="1", parent_run_id="r9")
    assert "MLflow run http://mlflow:5000/#/experiments/1/runs/r9" in summary(TINY, res)
    assert not any("MLflow" in x for x in summary(TINY, _results(tmp_path)))
