"""Ray Tune search over TTUR (fast, slow) learning-rate pairs of one stage.

Train V2: a trial is a function. In ``train`` mode it builds and fits a ``TorchTrainer`` (its
run named from the trial id, so a restarted trial resumes) and reports through
``TuneReportCallback``; in ``direct`` mode it trains in-process on one worker. Both report once
per epoch with ``epoch_loss`` (and ``knn20`` with that metric), so ASHA can stop the worst trials.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitforge.config import JobSpec, TuneSpec, _set_path, dump_spec
from vitforge.tracking import Tracker
from vitforge.train import resume
from vitforge.train.run import ensure_ray

TRIAL_DRIVER_CPU = 0.1  # a trial driver that only waits on its Train run; 0 is refused
# A trial's status in the table: ran every epoch, stopped by the scheduler, or raised.
TERMINATED, STOPPED_EARLY, ERROR = "TERMINATED", "STOPPED_EARLY", "ERROR"
# ... and the MLflow run status each gets (MLflow has no "stopped early": KILLED plus a tag).
MLFLOW_STATUS = {TERMINATED: "FINISHED", STOPPED_EARLY: "KILLED", ERROR: "FAILED"}


@dataclass
class SearchResult:
    table: list[dict]  # trials sorted by the metric, best first (failed trials last)
    best: dict | None
    best_spec_path: Path | None
    heatmap_path: Path | None
    out_dir: Path
    compute_worker_s: float


def stage_index(spec: JobSpec) -> int:
    i = spec.tune.stage if spec.tune else -1
    return i % len(spec.stages)


def param_space(t: TuneSpec) -> dict[str, Any]:
    from ray import tune

    if t.search_alg == "grid":
        space = {"fast_lr": tune.grid_search(t.grid["fast_lr"]), "slow_lr": tune.grid_search(t.grid["slow_lr"])}
    else:
        space = {"fast_lr": tune.loguniform(*t.fast_lr)}
        if t.ratio is not None:
            space["ratio"] = tune.loguniform(*t.ratio)
        else:
            space["slow_lr"] = tune.loguniform(*t.slow_lr)
    for path, choices in t.extra.items():
        space[path] = tune.choice(choices)
    return space


def trial_spec(spec: JobSpec, config: dict[str, Any]) -> JobSpec:
    """The job spec of one trial: the sampled pair (and extra fields) written into the stage."""
    i = stage_index(spec)
    data = spec.model_dump(mode="json")
    fast = float(config["fast_lr"])
    slow = float(config["slow_lr"]) if "slow_lr" in config else fast / float(config["ratio"])
    data["stages"][i]["optimizer"].update(fast_lr=fast, slow_lr=slow)
    for path, value in config.items():
        if "." in path:
            _set_path(data, path, value)
    data["tune"] = None
    return JobSpec.model_validate(data)


def _metric_mode(t: TuneSpec) -> tuple[str, str]:
    return t.metric, "min" if t.metric == "epoch_loss" else "max"


def _tracker(cfg: dict | None):

    return Tracker(**cfg, check=False) if cfg else None


def direct_trial(config: dict[str, Any]) -> None:
    """One trial in-process (one worker): the stage loop with a report to Tune per epoch."""

    import ray.tune

    from vitforge.eval.hook import knn_hook
    from vitforge.train.loop import run_stage
    from vitforge.train.runners import local_context

    meta = config.pop("_vitforge")
    spec = trial_spec(JobSpec.model_validate(meta["spec"]), config)
    i = stage_index(JobSpec.model_validate(meta["spec"]))
    tracker = _tracker(meta.get("tracker"))
    ctx_tune = ray.tune.get_context()
    run_id = tracker.start_run(f"trial-{ctx_tune.get_trial_id()}", meta.get("parent_run")) if tracker else None
    if tracker:
        tracker.log_params(run_id, {k: v for k, v in config.items()})

    def report(metrics: dict, directory: str | None) -> None:
        clean = {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}
        if tracker:
            tracker.log_metrics(run_id, [m for m in metrics.get("history", []) if isinstance(m, dict)])
        ckpt = ray.tune.Checkpoint.from_directory(directory) if directory else None
        ray.tune.report(clean, checkpoint=ckpt)

    resume = ray.tune.get_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        resume_dir = resume.to_directory(tmp) if resume else None
        ctx, norm = local_context(
            spec, i, report, resume_dir=resume_dir, init_from=meta.get("init_from"), log=lambda m: None
        )
        if meta["metric"] == "knn20":
            ctx.eval_fn = knn_hook(spec, norm)
        try:
            run_stage(ctx, spec, i)
        except SystemExit:  # Tune's stop (ASHA): the reporting thread exits, it did not fail
            if tracker:
                tracker.set_tags(run_id, {"vitforge.trial_status": STOPPED_EARLY})
                tracker.end_run(run_id, "KILLED")
            raise
        except BaseException:
            if tracker:
                tracker.end_run(run_id, "FAILED")
            raise
    if tracker:
        tracker.end_run(run_id)


def train_trial(config: dict[str, Any]) -> None:
    """One trial as a Ray Train run on ``scaling.num_workers`` workers (Train V2 inside Tune)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from vitforge.train.inputs import load_train_data, normalization_for
    from vitforge.train.run import run_stage_on_ray

    meta = config.pop("_vitforge")
    base = JobSpec.model_validate(meta["spec"])
    spec = trial_spec(base, config)
    i = stage_index(base)
    trial_id = ray.tune.get_context().get_trial_id()
    spec.name = f"{base.name}-trial-{trial_id}"  # the Train run name: a restarted trial resumes
    ds = load_train_data(spec)
    result = run_stage_on_ray(
        spec,
        i,
        meta.get("init_from"),
        ds,
        normalization_for(spec, ds),
        extra_callbacks=[TuneReportCallback()],
    )
    if result.error:
        raise result.error


def max_concurrent(spec: JobSpec) -> int:
    """Trials that fit at once: each needs its workers' CPUs (train) or one worker's (direct) plus
    a fraction for its driver; starving the workers deadlocks small clusters."""
    import ray

    t = spec.tune
    if t.max_concurrent_trials:
        return t.max_concurrent_trials
    cpus = ray.cluster_resources().get("CPU", 1)
    sc = spec.scaling
    per_trial = (sc.num_workers * sc.cpus_per_worker + TRIAL_DRIVER_CPU) if t.mode == "train" else sc.cpus_per_worker
    return max(1, int(cpus // per_trial))


def run_search(spec: JobSpec, log=print, fresh: bool = False, address: str | None = None) -> SearchResult:
    """Run (or resume, with the same spec only: ``resume.guard``) the search; write the table, the
    heatmap and the best spec. ``fresh`` deletes the earlier search first."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.tune is None:
        raise ValueError("the job spec has no 'tune' section")
    t = spec.tune
    i = stage_index(spec)
    stage = spec.stages[i]
    metric, mode = _metric_mode(t)
    storage = str(Path(spec.checkpoint.storage_path).expanduser().resolve())
    name = f"{spec.name}-tune"
    out = Path(storage) / name
    if fresh:
        resume.remove([out], log)
    resume.guard(out, spec, has_work=out.exists(), search=True)
    ensure_ray(address)
    tracker = (
        Tracker(spec.tracking.tracking_uri, spec.tracking.experiment or spec.name) if spec.tracking.enabled else None
    )
    parent = tracker.start_run(name, tags={"vitforge.search": name}) if tracker else None
    if tracker:
        tracker.log_params(parent, {f"tune.{k}": v for k, v in t.model_dump(mode="json").items()})
        tracker.log_text(parent, dump_spec(spec), "job_spec.yaml")
    meta = {"spec": spec.model_dump(mode="json"), "init_from": spec.init_from, "metric": metric,
            "tracker": tracker.config() if tracker else None, "parent_run": parent}  # fmt: skip
    epochs = max(1, math.ceil(stage.epochs))
    scheduler = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=epochs,
            grace_period=t.grace_period,
            reduction_factor=t.reduction_factor,
        )
        if t.scheduler == "asha"
        else FIFOScheduler()
    )
    search_alg = None
    if t.search_alg == "random":  # seeded: the same spec samples the same pairs
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=spec.seed)
    if t.search_alg == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=spec.seed)
    fn = direct_trial if t.mode == "direct" else train_trial
    cpus = spec.scaling.cpus_per_worker if t.mode == "direct" else TRIAL_DRIVER_CPU
    trainable = tune.with_resources(fn, {"cpu": cpus})
    space = {**param_space(t), "_vitforge": meta}
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=0),
        verbose=0,  # no per-trial tables and config dumps: one line per finished trial instead
        callbacks=[_trial_lines(metric, mode, log)],
    )
    if tune.Tuner.can_restore(str(out)):
        log(f"resuming search {out}")
        tuner = tune.Tuner.restore(str(out), trainable=trainable, resume_errored=False, restart_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, scheduler=scheduler, search_alg=search_alg,
                num_samples=1 if t.search_alg == "grid" else t.num_samples,
                max_concurrent_trials=max_concurrent(spec),
            ),
            run_config=run_config,
        )  # fmt: skip
    resume.record(out, spec, search=True)
    grid = tuner.fit()
    table = _table(grid, metric, mode, spec, epochs)
    if tracker:
        _settle_trial_runs(tracker, parent, table)
    best = next((r for r in table if r["status"] != ERROR and r["metric"] is not None), None)
    best_path = heat = None
    if best is not None:
        best_spec = trial_spec(spec, {k: best[k] for k in ("fast_lr", "slow_lr")} | best["extra"])
        best_path = out / "best_job.yaml"
        out.mkdir(parents=True, exist_ok=True)
        best_path.write_text(dump_spec(best_spec))
    out.mkdir(parents=True, exist_ok=True)
    (out / "trials.json").write_text(json.dumps(table, indent=2))
    heat = heatmap_png(table, metric, out / "heatmap.png", f"{name}: {metric} ({mode})")
    compute = sum(r["worker_s"] for r in table)
    if tracker:
        tracker.log_artifact(parent, heat, "plots")
        tracker.log_artifact(parent, out / "trials.json")
        if best_path:
            tracker.log_artifact(parent, best_path)
            tracker.set_tags(parent, {"best.fast_lr": best["fast_lr"], "best.slow_lr": best["slow_lr"],
                                      "best.trial": best["trial_id"], f"best.{metric}": best["metric"]})  # fmt: skip
        tracker.log_metrics(parent, [{"step": 0, "compute_worker_s": compute, "trials": len(table)}])
        tracker.end_run(parent)
    return SearchResult(table, best, best_path, heat, out, compute)


def _trial_lines(metric: str, mode: str, log):
    """A Tune callback: one line per finished, stopped or failed trial, with the best so far."""
    from ray import tune

    class TrialLines(tune.Callback):
        def __init__(self) -> None:
            self.best: tuple[float, str] | None = None
            self.done = 0

        def _line(self, trial, status: str) -> None:
            self.done += 1
            value = (trial.last_result or {}).get(metric)
            cfg = trial.config or {}
            pair = f"fast {float(cfg.get('fast_lr', 0)):.2e}" + (
                f" slow {float(cfg['slow_lr']):.2e}" if "slow_lr" in cfg else f" ratio {float(cfg.get('ratio', 1)):.1f}"
            )
            if value is not None and (
                self.best is None or (value < self.best[0] if mode == "min" else value > self.best[0])
            ):
                self.best = (value, trial.trial_id)
            shown = "" if value is None else f" {metric} {value:.4f}"
            best = f"; best {self.best[0]:.4f} ({self.best[1]})" if self.best else ""
            iters = (trial.last_result or {}).get("training_iteration", 0)
            log(f"trial {trial.trial_id} {status} after {iters} epochs: {pair}{shown}{best} [{self.done} done]")

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self._line(trial, "finished")

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._line(trial, "FAILED")

    return TrialLines()


def _settle_trial_runs(tracker, parent: str | None, table: list[dict]) -> None:
    """Each trial's MLflow run gets the status Tune gave it. The trial's own process may not get
    to say: a trial stopped by ASHA is killed between reports and its run would stay RUNNING."""
    if not parent:
        return
    runs = tracker._safe(
        "search_runs",
        lambda: tracker.client.search_runs(
            [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'", max_results=10000
        ),
    )
    by_name = {r.info.run_name: r.info.run_id for r in runs or []}
    for row in table:
        run_id = by_name.get(f"trial-{row['trial_id']}")
        if run_id:
            tracker.set_tags(run_id, {"vitforge.trial_status": row["status"], "vitforge.epochs": row["epochs"]})
            tracker.end_run(run_id, MLFLOW_STATUS[row["status"]])


def _table(grid, metric: str, mode: str, spec: JobSpec, epochs: int) -> list[dict]:
    workers = spec.scaling.num_workers if spec.tune.mode == "train" else 1
    rows = []
    for r in grid:
        cfg = {k: v for k, v in (r.config or {}).items() if k != "_vitforge"}
        fast = float(cfg.get("fast_lr", 0))
        slow = float(cfg["slow_lr"]) if "slow_lr" in cfg else fast / float(cfg.get("ratio", 1))
        df = r.metrics_dataframe
        series = df[metric].dropna().tolist() if df is not None and metric in df else []
        best_val = (min(series) if mode == "min" else max(series)) if series else None
        elapsed = float(df["time_total_s"].max()) if df is not None and "time_total_s" in df else 0.0
        rows.append({
            "trial_id": (r.metrics or {}).get("trial_id") or Path(r.path).name,
            "fast_lr": fast, "slow_lr": slow,
            "extra": {k: v for k, v in cfg.items() if "." in k},
            "status": ERROR if r.error else STOPPED_EARLY if len(series) < epochs else TERMINATED,
            "error": _error_line(r.error),
            "metric": best_val, "epochs": len(series), "worker_s": elapsed * workers,
        })  # fmt: skip
    sign = 1 if mode == "min" else -1
    return sorted(rows, key=lambda x: (x["metric"] is None, sign * (x["metric"] or 0.0)))


def _error_line(error: BaseException | None) -> str | None:
    """The exception's own message (Ray wraps it under a header line and a traceback)."""
    if error is None:
        return None
    lines = [x.strip() for x in str(error).splitlines() if x.strip()]
    return next((x for x in reversed(lines) if "Error" in x or "Loss" in x), lines[-1] if lines else "")[:300]


def heatmap_png(table: list[dict], metric: str, out: Path, title: str) -> Path:
    """The metric over the (fast, slow) plane: a grid heatmap when the pairs form a grid, else a
    log-log scatter coloured by the metric; failed trials marked with a cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fasts = sorted({r["fast_lr"] for r in table})
    slows = sorted({r["slow_lr"] for r in table})
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    is_grid = len(fasts) * len(slows) == len(table) and len(table) > 1
    if is_grid:
        m = np.full((len(slows), len(fasts)), np.nan)
        for r in table:
            if r["metric"] is not None:
                m[slows.index(r["slow_lr"]), fasts.index(r["fast_lr"])] = r["metric"]
        im = ax.imshow(m, origin="lower", cmap="viridis")
        ax.set_xticks(range(len(fasts)), [f"{v:.0e}" for v in fasts], rotation=45)
        ax.set_yticks(range(len(slows)), [f"{v:.0e}" for v in slows])
        for (yy, xx), v in np.ndenumerate(m):
            ax.text(xx, yy, "failed" if np.isnan(v) else f"{v:.3f}", ha="center", va="center", fontsize=7,
                    color="white")  # fmt: skip
    else:
        ok = [r for r in table if r["metric"] is not None]
        im = ax.scatter([r["fast_lr"] for r in ok], [r["slow_lr"] for r in ok], c=[r["metric"] for r in ok],
                        cmap="viridis", s=80, edgecolors="k")  # fmt: skip
        bad = [r for r in table if r["metric"] is None]
        ax.scatter([r["fast_lr"] for r in bad], [r["slow_lr"] for r in bad], marker="x", c="red", s=80, label="failed")
        ax.set(xscale="log", yscale="log")
        if bad:
            ax.legend()
    ax.set(xlabel="fast lr", ylabel="slow lr", title=title)
    fig.colorbar(im, ax=ax, label=metric)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
