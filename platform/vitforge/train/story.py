"""What a user reads of a training job: the banner before the first stage (the data, each stage's
plan, where everything goes) and the summary after the last (results, exports, the MLflow run, the
next commands). ``banner`` and ``summary`` are pure functions of the spec and facts, so they are
tested without a run; lines are plain text, never truncated to the terminal's width, so paths
can be copied whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from vitforge.config import JobSpec
from vitforge.inference import CARD
from vitforge.train.inputs import builtin_options
from vitforge.train.loop import plan
from vitforge.train.schedule import base_lrs

# `ray get-auth-token` prints the token of a cluster with token auth (on when RAY_AUTH_MODE=token;
# ray.init sets that for a new local cluster); this is the file it reads by default.
RAY_TOKEN_FILE = "~/.ray/auth_token"


class JobResults(list):
    """``run_job``'s stage results (a list, as before) and where the job's MLflow parent run is:
    ``tracking_uri``, ``experiment_id``, ``parent_run_id`` (None when tracking is off)."""

    def __init__(
        self,
        items: Iterable = (),
        tracking_uri: str | None = None,
        experiment_id: str | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        super().__init__(items)
        self.tracking_uri, self.experiment_id, self.parent_run_id = tracking_uri, experiment_id, parent_run_id

    @classmethod
    def for_run(cls, tracker, parent_run_id: str | None) -> JobResults:
        """Empty results of a job logging to ``tracker`` (a ``tracking.Tracker`` or None)."""
        if tracker is None:
            return cls()
        return cls((), tracker.uri, tracker.experiment_id, parent_run_id)


def banner(
    spec: JobSpec,
    rows: int,
    classes: int | None,
    out_dir: str | Path,
    tracking_uri: str | None,
    dashboard_url: str | None,
    done: Sequence[bool] = (),
    token_auth: bool = False,
) -> list[str]:
    """The lines before the first stage: data, per stage its planned steps, batch (global and per
    worker) and learning rates after scaling (``schedule.base_lrs``, what the optimizer gets),
    the output folder, MLflow and the Ray dashboard."""
    sc, zero = spec.scaling, spec.deepspeed
    workers = max(sc.num_workers, 1)
    kinds = f"{'GPU' if sc.use_gpu else 'CPU'} workers, ZeRO-{zero.zero_stage}, {zero.precision}"
    lines = [f"job {spec.name}: {len(spec.stages)} stages on {sc.num_workers} {kinds}"]
    lines.append(f"data {spec.data.source}: {rows} examples" + (f", {classes} classes" if classes else ""))
    for i, stage in enumerate(spec.stages):
        if i < len(done) and done[i]:
            lines.append(f"stage {i} {stage.name}: exported already, skipped")
            continue
        per_epoch, steps = plan(spec, i, rows)
        lr, opt = base_lrs(stage), stage.optimizer
        scaled = f" ({opt.lr_scaling} scaling from {opt.fast_lr:.2e}, {opt.slow_lr:.2e})"
        epochs = "epoch" if stage.epochs == 1 else "epochs"
        micro = f", micro-batch {spec.micro_batch(i)} x {zero.grad_accum} accumulated" if zero.grad_accum > 1 else ""
        lines.append(
            f"stage {i} {stage.name}: {steps} steps ({stage.epochs:g} {epochs} of {per_epoch}),"
            f" batch {stage.global_batch_size} ({stage.global_batch_size // workers} per worker{micro}),"
            f" lr fast {lr['fast']:.2e} slow {lr['slow']:.2e}{scaled if opt.lr_scaling != 'none' else ''}"
        )
    lines.append(f"output {Path(out_dir)}")
    lines.append(f"MLflow {tracking_uri}" if tracking_uri else "MLflow off (tracking.enabled: false)")
    if dashboard_url:
        url = dashboard_url if "://" in dashboard_url else f"http://{dashboard_url}"
        auth = f" (token auth on: `ray get-auth-token` prints the token, from {RAY_TOKEN_FILE})" if token_auth else ""
        lines.append(f"Ray dashboard {url}{auth}")
    return lines


def log_start(
    log: Callable[[str], None], spec: JobSpec, ds, exports: Sequence[Path], tracker, dashboard_url: str | None
) -> None:
    """``banner`` for a job about to run (``run_job``): facts read from the data, the export
    folders and the environment."""
    rows, classes = len(ds), ds.num_classes  # from metadata: folder names, Parquet statistics
    done = [(e / CARD).is_file() for e in exports]
    token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    out = exports[0].parent.parent if exports else Path(spec.checkpoint.storage_path).expanduser().resolve()
    for line in banner(spec, rows, classes, out, tracker.uri if tracker else None, dashboard_url, done, token):
        log(line)


def summary(spec: JobSpec, results: Sequence) -> list[str]:
    """The lines after the last stage: per stage its steps, loss, speed and wall time with its
    export folder (absolute, on a line of its own); the MLflow parent run; the next commands."""
    lines = []
    for r in results:
        h = r.history
        if r.skipped or not h:
            lines.append(f"stage {r.name}: exported already (skipped)")
        else:
            ips = sum(x.get("img_per_s_total", 0.0) for x in h) / len(h)
            lines.append(
                f"stage {r.name}: {h[-1]['step']} steps, loss {h[0]['loss']:.4f} -> {h[-1]['loss']:.4f},"
                f" {ips:.0f} img/s, {r.wall_s:.1f} s"
            )
        lines.append(f"  {Path(r.export_dir).resolve()}")
    lines += mlflow_lines(results)
    if results:
        export = Path(results[-1].export_dir).resolve()
        # A built-in's options (the quickstart's clutter 0) go with it: eval on the data trained on.
        opts = spec.data.builtin_options if builtin_options(spec) is not None else {}
        options = "".join(f" --option {k}={v}" for k, v in opts.items())
        lines += [
            "next:",
            f"  vitforge eval {export} {spec.data.source}{options}",
            f"  vitforge serve up {spec.name}={export}",
            f"  vitforge export {export} ./{spec.name}-hf --format hf",
        ]
    return lines


def mlflow_lines(results) -> list[str]:
    """Where the job's parent run is: a server's URL, or for a local store (sqlite:, file:) the
    ``mlflow ui`` command that shows it and the run's path in that UI."""
    uri, exp, run = (getattr(results, a, None) for a in ("tracking_uri", "experiment_id", "parent_run_id"))
    if not (uri and run):
        return []
    path = f"#/experiments/{exp}/runs/{run}"
    if uri.startswith(("http://", "https://")):
        return [f"MLflow run {uri.rstrip('/')}/{path}"]
    return [
        f"MLflow run {run} in {uri}:",
        f"  mlflow ui --backend-store-uri {uri}",
        f"  then open http://127.0.0.1:5000/{path}",
    ]
