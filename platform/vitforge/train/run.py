"""The driver: one ``TorchTrainer`` per stage, an export after each, the next stage starting from it.

Re-running a job with the same name and storage resumes it: finished stages (an export with a
model card) are skipped, and an unfinished stage resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vitforge.config import JobSpec
from vitforge.data import Source
from vitforge.inference import CARD
from vitforge.tracking import Tracker, flatten, git_info, log_figure_rows, log_stage_summary, metrics_callback
from vitforge.train import engine as eng
from vitforge.train import resume
from vitforge.train.export import save_export
from vitforge.train.inputs import load_train_data, make_batch_maker, normalization_for
from vitforge.train.progress import Progress
from vitforge.train.records import log_job_data, register_last_stage
from vitforge.train.story import JobResults, log_start


@dataclass
class StageResult:
    name: str
    export_dir: str
    wall_s: float
    metrics: dict
    history: list[dict] = field(default_factory=list)
    skipped: bool = False


def ensure_ray(address: str | None = None) -> str | None:
    """Ray for this process, set up once: the cluster at ``address`` (or ``RAY_ADDRESS``) if given,
    else a new local one for this machine.

    The local one has logical CPUs at twice the cores, so Ray Data's decode tasks still find a CPU
    while every core runs a Train worker (else the map stage waits forever); the dashboard on
    (finished Train runs otherwise leak placement groups); DS_ACCELERATOR passed on. It is
    isolated (``address="local"``) even when a ``ray start`` cluster runs on this machine: without
    that, ray.init() finds the cluster and refuses ``num_cpus``. Returns the dashboard's URL.
    """
    import ray

    from vitforge.train.engine import cpu_accelerator_env

    if ray.is_initialized():
        return getattr(ensure_ray, "dashboard_url", None)  # ray.init's, kept: it cannot be asked twice
    cpu_accelerator_env()
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ensure_ray.dashboard_url = ray.init(address=address).dashboard_url
        print(f"vitforge: connected to the Ray cluster at {address}")
        return ensure_ray.dashboard_url
    env = {k: os.environ[k] for k in ("DS_ACCELERATOR",) if k in os.environ}
    # Worker logs stay in the session's log folder; the driver shows progress bars instead.
    ensure_ray.dashboard_url = ray.init(
        address="local",
        num_cpus=max(4, 2 * (os.cpu_count() or 1)),
        include_dashboard=True,
        log_to_driver=False,
        runtime_env={"env_vars": env},
    ).dashboard_url
    print(
        f"vitforge: started a local Ray ({ray.cluster_resources().get('CPU', 0):.0f} logical CPUs);"
        " pass --address auto (or set RAY_ADDRESS) to use a running cluster instead"
    )
    return ensure_ray.dashboard_url


def job_dir(spec: JobSpec) -> Path:
    return Path(spec.checkpoint.storage_path).expanduser().resolve() / spec.name


def earlier_work(spec: JobSpec) -> list[Path]:
    """The job folder (exports, history, spec record) and Ray Train's stage folders (checkpoints)."""
    jd = job_dir(spec)
    stage_dir = re.compile(rf"{re.escape(spec.name)}-\d+-[a-z_]+")
    stages = [p for p in jd.parent.glob(f"{spec.name}-*") if stage_dir.fullmatch(p.name)] if jd.parent.is_dir() else []
    return [p for p in (jd, *sorted(stages)) if p.exists()]


def stage_run_name(spec: JobSpec, i: int) -> str:
    return f"{spec.name}-{i}-{spec.stages[i].name}"


def run_stage_on_ray(
    spec: JobSpec,
    stage_index: int,
    init_from: str | None,
    ds,
    normalization: dict,
    memory_report: str | None = None,
    probe_out: str | None = None,
    tracker_config: dict | None = None,
    run_id: str | None = None,
    extra_callbacks: list | None = None,
    knn: bool = False,
):
    """Fit one stage with a ``TorchTrainer``; returns the Ray Train ``Result``.

    Every report lands in ``<job>/history-<i>-<stage>.jsonl`` and, with ``run_id``, in MLflow.
    """
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from vitforge.train.runners import train_loop_per_worker

    stage = spec.stages[stage_index]
    sc = spec.scaling
    maker = make_batch_maker(spec, stage_index, normalization, normalize=False)  # uint8 through Ray Data
    history = job_dir(spec) / f"history-{stage_index}-{stage.name}.jsonl"
    history.parent.mkdir(parents=True, exist_ok=True)
    resources = {"CPU": sc.cpus_per_worker} | ({"GPU": sc.gpus_per_worker} if sc.use_gpu else {})
    callbacks = [metrics_callback(tracker_config or {}, run_id, str(history)), *(extra_callbacks or [])]
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "spec": spec.model_dump(mode="json"),
            "stage_index": stage_index,
            "init_from": init_from,
            "num_train_rows": len(ds),
            "normalization": normalization,
            "memory_report": memory_report,
            "probe_out": probe_out,
            "data": (ds, maker),  # metadata only: each rank streams its windows through Ray Data
            "knn_normalization": normalization if knn else None,  # k-NN at epoch ends (Tune's knn20)
        },
        scaling_config=ScalingConfig(
            num_workers=sc.num_workers,
            use_gpu=sc.use_gpu,
            resources_per_worker=resources,
            placement_strategy=sc.placement_strategy,
        ),
        torch_config=TorchConfig(backend="nccl" if sc.use_gpu else "gloo"),
        run_config=_run_config(spec, stage_index, callbacks),
    )
    return trainer.fit()


def _run_config(spec: JobSpec, stage_index: int, callbacks: list):
    """The stage's Ray Train run: its name (a re-run resumes it), storage, checkpoints kept,
    restarts after a worker failure, the metric callbacks, DeepSpeed's CPU accelerator on CPU."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    storage = spec.checkpoint.storage_path
    return RunConfig(
        name=stage_run_name(spec, stage_index),
        storage_path=storage if "://" in storage else str(Path(storage).expanduser().resolve()),
        checkpoint_config=CheckpointConfig(num_to_keep=spec.checkpoint.keep),
        failure_config=FailureConfig(max_failures=spec.checkpoint.max_failures),
        callbacks=callbacks,
        worker_runtime_env=None if spec.scaling.use_gpu else {"env_vars": {"DS_ACCELERATOR": "cpu"}},
    )


def export_stage(
    spec: JobSpec, stage_index: int, init_from: str | None, checkpoint_dir: str, normalization: dict, extra: dict
) -> Path:
    """Consolidate the stage's final checkpoint to fp32 and write the export (safetensors + card)."""
    from vitforge.train.tasks import build_task

    stage = spec.stages[stage_index]
    task = build_task(spec, stage_index, init_from)
    state = eng.consolidated_state_dict(checkpoint_dir, spec.deepspeed.zero_stage)
    if spec.deepspeed.precision != "fp32":
        # Frozen weights have no fp32 master: the checkpoint holds them rounded to bf16/fp16. Where
        # a tensor is exactly the rounding of its starting value, it did not train: keep the start.
        low = eng.compute_dtype(spec)
        start = task.state_dict()
        state = {
            k: start[k] if k in start and start[k].is_floating_point() and torch.equal(v, start[k].to(low).float())
            else v
            for k, v in state.items()
        }  # fmt: skip
    # Position embeddings are recomputed buffers; everything persistent must be in the checkpoint.
    task.load_state_dict(state, strict=True)
    out = job_dir(spec) / "exports" / f"{stage_index}-{stage.name}"
    return save_export(out, task.exports(), spec, stage.name, normalization, extra)


def run_job(
    spec: JobSpec,
    log: Callable[[str], None] = print,
    probe_dir: str | None = None,
    tracker: Tracker | None = None,
    show: bool = False,
    fresh: bool = False,
    address: str | None = None,
) -> list[StageResult]:
    """Run every stage of the job in order on the connected (or a new local) Ray cluster.

    Resuming needs the same spec (``resume.guard``: else ``SpecChanged`` before any work or run is
    logged); ``fresh`` deletes the job's earlier work first. A job whose stages are all exported
    already logs no new MLflow run. Ray: ``ensure_ray(address)``, after those checks.

    MLflow: one parent run for the job, a child run per stage (params, metric history, loss
    plot, DeepSpeed config, export); the last stage's encoder is registered under the job name.
    ``probe_dir``: each stage's live model writes embeddings of a fixed probe batch there
    (``<i>.pt``), to check that its export reproduces it.
    """

    if fresh:
        resume.remove(earlier_work(spec), log)
    resume.guard(job_dir(spec), spec, has_work=bool(earlier_work(spec)))
    exports = [job_dir(spec) / "exports" / f"{i}-{s.name}" for i, s in enumerate(spec.stages)]
    if all((e / CARD).is_file() for e in exports):
        log(f"job {spec.name}: every stage is exported already ({job_dir(spec) / 'exports'}); nothing to do")
        return [StageResult(s.name, str(e), 0.0, {}, skipped=True) for s, e in zip(spec.stages, exports, strict=True)]
    init_from = _checked_init_from(spec)  # a wrong or missing export before anything starts
    ds = load_train_data(spec)  # data errors too
    job = _Job(spec, ds, normalization_for(spec, ds), log, probe_dir, show)
    dashboard = ensure_ray(address)
    if tracker is None and spec.tracking.enabled:
        tracker = Tracker(spec.tracking.tracking_uri, spec.tracking.experiment or spec.name)
    log_start(log, spec, ds, exports, tracker, dashboard)  # the data, each stage's plan, where things go
    job.tracker, job.parent = tracker, (_start_job_run(tracker, spec, len(ds)) if tracker else None)
    results = JobResults.for_run(tracker, job.parent)
    try:
        for i, stage in enumerate(spec.stages):
            if (exports[i] / CARD).is_file():
                log(f"stage {i} {stage.name}: already exported at {exports[i]}, skipping")
                results.append(StageResult(stage.name, str(exports[i]), 0.0, {}, skipped=True))
            else:
                results.append(_train_stage(job, i, init_from))
            init_from = results[-1].export_dir
    except BaseException:
        if tracker:
            tracker.end_run(job.parent, "FAILED")
        raise
    if tracker:
        tracker.end_run(job.parent)
    return results


def _checked_init_from(spec: JobSpec) -> str | None:
    """The job's starting export as an absolute path (workers may run elsewhere), checked to fit."""
    if not spec.init_from:
        return None
    from vitforge.train.tasks import check_init_from

    path = str(Path(spec.init_from).expanduser().resolve())
    check_init_from(spec, path)
    return path


@dataclass
class _Job:
    """What every stage of a running job shares."""

    spec: JobSpec
    ds: Source
    normalization: dict
    log: Callable[[str], None]
    probe_dir: str | None
    show: bool
    tracker: Tracker | None = None
    parent: str | None = None


def _train_stage(job: _Job, i: int, init_from: str | None) -> StageResult:
    """One stage: its MLflow child run, the Ray Train run, the export, the logged results."""
    from vitforge.train.engine import deepspeed_config

    spec, stage, tracker, log = job.spec, job.spec.stages[i], job.tracker, job.log
    resume.record(job_dir(spec), spec)
    log(f"stage {i} {stage.name}: {spec.scaling.num_workers} workers, ZeRO-{spec.deepspeed.zero_stage}")
    child = tracker.start_run(f"{i}-{stage.name}", job.parent, {"vitforge.stage": stage.name}) if tracker else None
    try:
        if tracker:
            tracker.log_params(child, flatten(stage.model_dump(mode="json")))
            tracker.log_dict(child, deepspeed_config(spec, spec.micro_batch(i)), "deepspeed_config.json")
            log_job_data(tracker, child, spec, len(job.ds))
        t0 = time.perf_counter()
        history_path = job_dir(spec) / f"history-{i}-{stage.name}.jsonl"
        planned = _planned_steps(spec, i, len(job.ds))
        watcher = Progress(history_path, f"{i}-{stage.name}", planned) if job.show else None
        result = run_stage_on_ray(
            spec, i, init_from, job.ds, job.normalization,
            probe_out=str(Path(job.probe_dir) / f"{i}.pt") if job.probe_dir else None,
            tracker_config=tracker.config() if tracker else None, run_id=child,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        if watcher:
            watcher.stop()
        if result.error:
            raise result.error
        final = {k: v for k, v in result.metrics.items() if k != "history"}
        with result.checkpoint.as_directory() as d:
            extra = {"run": stage_run_name(spec, i), "final_metrics": final, "init_from": init_from}
            extra |= {"mlflow_run_id": child} if child else {}
            export = export_stage(spec, i, init_from, d, job.normalization, extra)
        history = [json.loads(x) for x in history_path.read_text().splitlines()] if history_path.exists() else []
        log(f"stage {i} {stage.name}: done in {wall:.1f}s, loss {final.get('loss', float('nan')):.4f}, export {export}")
        if tracker:
            _log_stage(tracker, child, spec, i, export, history, final, wall, log)
    except BaseException:
        if tracker:
            tracker.end_run(child, "FAILED")
        raise
    return StageResult(stage.name, str(export), wall, final, history)


def _log_stage(tracker: Tracker, child, spec: JobSpec, i: int, export: Path, history, final, wall, log) -> None:
    """The stage's MLflow run: wall time, loss plots, the export; its final loss (and evaluation) on
    the job's run as ``<i>-<stage>.<metric>``; the last stage's encoder registered."""
    stage = spec.stages[i]
    tracker.log_metrics(child, [{"step": final.get("step", 0), "stage_wall_s": wall}])
    log_stage_summary(tracker, tracker.parent_of(child), f"{i}-{stage.name}", final)
    log_figure_rows(tracker, child, history, f"{i}-{stage.name}")
    tracker.log_artifacts(child, export, "export")
    if i == len(spec.stages) - 1 and (registered := register_last_stage(tracker, child, spec, export, final)):
        log(f"registered {registered}")
    tracker.end_run(child)


def _planned_steps(spec: JobSpec, i: int, rows: int) -> int:
    from vitforge.train.loop import plan

    return plan(spec, i, rows)[1]


def _start_job_run(tracker: Tracker, spec: JobSpec, rows: int) -> str | None:
    """The parent run: flattened spec as params, the spec as YAML, the data (``rows`` examples) as a
    dataset input, git (also as MLflow's source), Ray job and cluster."""
    import ray

    from vitforge.config import dump_spec

    ctx = ray.get_runtime_context()
    tags = {
        "vitforge.job": spec.name,
        "ray.job_id": ctx.get_job_id(),
        "ray.submission_id": os.environ.get("VITFORGE_SUBMISSION_ID", ""),
        "ray.cluster_resources": json.dumps(ray.cluster_resources()),
        **git_info(Path(__file__).parent),
    }
    parent = tracker.start_run(spec.name, tags=tags)
    tracker.log_params(parent, flatten(spec.model_dump(mode="json")))
    tracker.log_text(parent, dump_spec(spec), "job_spec.yaml")
    log_job_data(tracker, parent, spec, rows)
    return parent
