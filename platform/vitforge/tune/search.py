"""Ray Tune search over TTUR (fast, slow) learning-rate pairs of one stage.

Train V2: a trial is a function. In ``train`` mode it builds and fits a ``TorchTrainer`` (its
run named from the trial id, so a restarted trial resumes) and reports through
``TuneReportCallback``; in ``direct`` mode it trains in-process on one worker. Both report once
per epoch with ``epoch_loss`` (and ``knn20`` when the search ranks by it: ``tune.metric``), so
ASHA can stop the worst trials. The concurrency limit is the search algorithm's own (Tune ignores
``TuneConfig.max_concurrent_trials`` next to a ``BasicVariantGenerator``, with a warning).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitforge.config import JobSpec, TuneSpec, _set_path, dump_spec
from vitforge.tracking import Tracker
from vitforge.train import resume
from vitforge.train.run import ensure_ray
from vitforge.tune.best import write_best_job
from vitforge.tune.metric import resolve_metric
from vitforge.tune.report import (
    ERROR,
    STOPPED_EARLY,
    TERMINATED,
    best_line,
    heatmap_png,
    results_table,
    rungs,
    trial_lines,
)

TRIAL_DRIVER_CPU = 0.1  # a trial driver that only waits on its Train run; 0 is refused
# The MLflow run status each trial status gets. A trial stopped by the scheduler ran correctly for a
# smaller budget: FINISHED, with the tag ``stopped_early`` and its epochs (MLflow has no such status).
MLFLOW_STATUS = {TERMINATED: "FINISHED", STOPPED_EARLY: "FINISHED", ERROR: "FAILED"}


@dataclass
class SearchResult:
    table: list[dict]  # trials sorted by the metric, best first (failed trials last)
    metric: str  # what the trials were ranked by (``tune.metric``, or resolved from "auto")
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
        space = {k: tune.grid_search(v) for k, v in t.grid.items()}  # fast_lr x (slow_lr or ratio)
    else:
        # A range of one point is that value (ratio [1, 1]: a single-rate search, fast == slow).
        def draw(r: tuple[float, float]) -> Any:
            return r[0] if r[0] == r[1] else tune.loguniform(*r)

        space = {"fast_lr": draw(t.fast_lr)}
        if t.ratio is not None:
            space["ratio"] = draw(t.ratio)
        else:
            space["slow_lr"] = draw(t.slow_lr)
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


def epoch_reports(spec: JobSpec) -> JobSpec:
    """A trial's run reports (and checkpoints) at its epoch ends only: Tune wants the ranking metric
    in every report, and k-NN is measured at an epoch's end (a report every ``report_every_steps``
    mid-epoch stopped the search with "did not include the specified metric")."""
    data = spec.model_dump(mode="json")
    data["tracking"]["report_every_steps"] = 2**31 - 1
    data["checkpoint"]["every_steps"] = None
    return JobSpec.model_validate(data)


def _tracker(cfg: dict | None):

    return Tracker(**cfg, check=False) if cfg else None


def direct_trial(config: dict[str, Any]) -> None:
    """One trial in-process (one worker): the stage loop with a report to Tune per epoch."""

    import ray.tune

    from vitforge.eval.hook import knn_hook
    from vitforge.train.inputs import load_train_data
    from vitforge.train.loop import run_stage
    from vitforge.train.runners import local_context

    meta = config.pop("_vitforge")
    spec = epoch_reports(trial_spec(JobSpec.model_validate(meta["spec"]), config))
    i = stage_index(JobSpec.model_validate(meta["spec"]))
    tracker = _tracker(meta.get("tracker"))
    ctx_tune = ray.tune.get_context()
    run_id = tracker.start_run(f"trial-{ctx_tune.get_trial_id()}", meta.get("parent_run")) if tracker else None
    if tracker:
        tracker.log_params(run_id, {k: v for k, v in config.items()})

    def report(metrics: dict, directory: str | None) -> None:
        clean = {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}
        clean["wall_time"] = time.time()  # Tune's own timestamp is whole seconds: too coarse for spans
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
            ctx.eval_fn = knn_hook(spec, norm, load_train_data(spec), load_train_data(spec, spec.data.eval_split))
        try:
            run_stage(ctx, spec, i)
        except SystemExit:  # Tune's stop (ASHA): the reporting thread exits, it did not fail
            if tracker:
                tracker.set_tags(run_id, {"vitforge.trial_status": STOPPED_EARLY, "stopped_early": "true"})
                tracker.end_run(run_id, MLFLOW_STATUS[STOPPED_EARLY])
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
    spec = epoch_reports(trial_spec(base, config))
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
        knn=meta["metric"] == "knn20",
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


def _print_line(msg: str) -> None:
    # Not ``print`` itself as the default: Tune pickles the trial-lines callback with it, and Ray
    # Train swaps ``builtins.print`` in the driver, so the object no longer pickles by reference.
    print(msg, flush=True)


def run_search(spec: JobSpec, log=_print_line, fresh: bool = False, address: str | None = None) -> SearchResult:
    """Run (or resume, with the same spec only: ``resume.guard``) the search; write the table, the
    heatmap and the best spec. ``fresh`` deletes the earlier search first."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.tune is None:
        raise ValueError("the job spec has no 'tune' section")
    t = spec.tune
    i = stage_index(spec)
    stage = spec.stages[i]
    chosen = resolve_metric(spec)
    metric, mode = chosen.name, chosen.mode
    storage = str(Path(spec.checkpoint.storage_path).expanduser().resolve())
    name = f"{spec.name}-tune"
    out = Path(storage) / name
    if fresh:
        resume.remove([out], log)
    resume.guard(out, spec, has_work=out.exists(), search=True)
    log(chosen.line())
    ensure_ray(address)
    tracker = (
        Tracker(spec.tracking.tracking_uri, spec.tracking.experiment or spec.name) if spec.tracking.enabled else None
    )
    parent = tracker.start_run(name, tags={"vitforge.search": name}) if tracker else None
    if tracker:
        params = {f"tune.{k}": v for k, v in t.model_dump(mode="json").items()}
        tracker.log_params(parent, params | {"tune.metric": metric})  # "auto" logged as what it chose
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
    limit = max_concurrent(spec)
    log(f"at most {limit} trials at a time")
    fn = direct_trial if t.mode == "direct" else train_trial
    cpus = spec.scaling.cpus_per_worker if t.mode == "direct" else TRIAL_DRIVER_CPU
    trainable = tune.with_resources(fn, {"cpu": cpus})
    space = {**param_space(t), "_vitforge": meta}
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=0),
        verbose=0,  # no per-trial tables and config dumps: one line per finished trial instead
        callbacks=[trial_lines(metric, mode, log)],
    )
    if tune.Tuner.can_restore(str(out)):
        log(f"resuming search {out}")
        tuner = tune.Tuner.restore(str(out), trainable=trainable, resume_errored=False, restart_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, scheduler=scheduler, search_alg=search_algorithm(spec, limit),
                num_samples=1 if t.search_alg == "grid" else t.num_samples,
            ),
            run_config=run_config,
        )  # fmt: skip
    resume.record(out, spec, search=True)
    grid = tuner.fit()
    table = results_table(grid, metric, mode, spec, epochs)
    run_ids = _settle_trial_runs(tracker, parent, table) if tracker else {}
    best = next((r for r in table if r["status"] != ERROR and r["metric"] is not None), None)
    log(best_line(best, metric) + f" (ranked at the largest budget trials share; rungs {rungs(spec, epochs)})")
    best_path = heat = None
    if best is not None:
        best_spec = trial_spec(spec, {k: best[k] for k in ("fast_lr", "slow_lr")} | best["extra"])
        best_path = write_best_job(best_spec, name, metric, best, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trials.json").write_text(json.dumps(table, indent=2))
    heat = heatmap_png(table, metric, out / "heatmap.png", f"{name}: {metric} ({mode})")
    compute = sum(r["worker_s"] for r in table)
    if tracker:
        tracker.log_artifact(parent, heat, "plots")
        tracker.log_artifact(parent, out / "trials.json")
        summary = {"step": 0, "compute_worker_s": compute, "trials": len(table)}
        if best_path:
            tracker.log_artifact(parent, best_path)
            tags = {"best.fast_lr": best["fast_lr"], "best.slow_lr": best["slow_lr"], "best.trial": best["trial_id"],
                    f"best.{metric}": best["metric"], "best.epochs": best["epochs"],
                    "best.run_id": run_ids.get(best["trial_id"], "")}  # fmt: skip
            tracker.set_tags(parent, tags)
            summary |= {metric: best["metric"], "best_fast_lr": best["fast_lr"], "best_slow_lr": best["slow_lr"]}
        tracker.log_metrics(parent, [summary])
        tracker.end_run(parent)
    return SearchResult(table, metric, best, best_path, heat, out, compute)


def search_algorithm(spec: JobSpec, limit: int):
    """Tune's search algorithm for ``tune.search_alg``, holding the concurrency limit itself.

    Random and grid: a ``BasicVariantGenerator`` (grid points come from ``tune.grid_search`` in
    the space), seeded so the same spec samples the same pairs. Optuna: its searcher under a
    ``ConcurrencyLimiter``. ``TuneConfig.max_concurrent_trials`` is left unset: Tune drops it
    with only a warning when a ``BasicVariantGenerator`` is passed.
    """
    if spec.tune.search_alg == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(seed=spec.seed), max_concurrent=limit)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=spec.seed, max_concurrent=limit)


def _settle_trial_runs(tracker, parent: str | None, table: list[dict]) -> dict[str, str]:
    """Each trial's MLflow run gets the status Tune gave it and its budget. The
    trial's own process may not get to say: a trial stopped by ASHA is killed between reports and
    its run would stay RUNNING. Returns {trial id: run id}."""
    if not parent:
        return {}
    runs = tracker._safe(
        "search_runs",
        lambda: tracker.client.search_runs(
            [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'", max_results=10000
        ),
    )
    by_name = {r.info.run_name: r.info.run_id for r in runs or []}
    ids = {}
    for row in table:
        run_id = by_name.get(f"trial-{row['trial_id']}")
        if run_id:
            ids[row["trial_id"]] = run_id
            tags = {"vitforge.trial_status": row["status"], "vitforge.epochs": row["epochs"],
                    "stopped_early": str(row["status"] == STOPPED_EARLY).lower()}  # fmt: skip
            tracker.set_tags(run_id, tags)
            tracker.end_run(run_id, MLFLOW_STATUS[row["status"]])
    return ids
