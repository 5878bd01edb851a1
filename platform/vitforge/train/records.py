"""What a job's MLflow runs carry besides params and metric histories: the data as a dataset
input, and the last stage's encoder registered with its final metrics and a description."""

from __future__ import annotations

from pathlib import Path

from vitforge.config import JobSpec
from vitforge.tracking import Tracker, data_record, describe_stage, log_data_input, register_encoder, summary_metrics
from vitforge.train.inputs import builtin_options


def log_job_data(tracker: Tracker, run_id: str | None, spec: JobSpec, rows: int) -> None:
    """The training split as the run's dataset input (source, digest, ``rows`` examples)."""
    d = spec.data
    log_data_input(tracker, run_id, data_record(d.source, d.split, rows, builtin_options(spec), d.format))


def register_last_stage(tracker: Tracker, run_id: str | None, spec: JobSpec, export: Path, final: dict) -> str | None:
    """The last stage's export registered from its run ``run_id``; ``models:/NAME/VERSION`` (and
    ``@alias``) for the log, or None when tracking is unavailable."""
    i, stage = len(spec.stages) - 1, spec.stages[-1].name
    name, alias = spec.tracking.registered_model or spec.name, spec.tracking.alias
    metrics = summary_metrics(final)
    method = " -> ".join(s.name for s in spec.stages)
    data = f"{spec.data.source} (split {spec.data.split})"
    description = describe_stage(spec.name, f"{i}-{stage}", method, data, export, metrics)
    version = register_encoder(tracker, run_id, export, name, alias, metrics, description)
    if not version:
        return None
    return f"models:/{name}/{version}" + (f" and models:/{name}@{alias}" if alias else "")
