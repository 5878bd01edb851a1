"""The job's numbers where a person looks first: on the parent run, and on the registered versions.

A stage's run has its whole history; the job's run gets each stage's final loss and evaluation
(``<stage>.loss``, ``<stage>.knn20``), and an evaluation after training (quickstart's table) lands
on the stage's run, the job's run and the model versions registered from that stage's run.
"""

from __future__ import annotations

import re
from typing import Any

from vitforge.tracking.registry import annotate_version, versions_of_run
from vitforge.tracking.store import Tracker

# Final numbers worth a column in the runs table: loss and evaluation scores, not rates or memory.
SUMMARY_KEY = re.compile(r"(epoch_)?loss|knn\d+|linear_probe|cluster_accuracy|nmi|.*top1")


def summary_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The loss and evaluation entries of ``metrics`` (numbers only), keys prefixed ``<prefix>.``."""
    head = f"{prefix}." if prefix else ""
    return {
        f"{head}{k}": float(v)
        for k, v in metrics.items()
        if SUMMARY_KEY.fullmatch(k) and isinstance(v, int | float) and not isinstance(v, bool)
    }


def log_stage_summary(tracker: Tracker, parent: str | None, stage: str, final: dict[str, Any]) -> None:
    """A finished stage's final loss and evaluation on the job's run, as ``<stage>.<metric>``."""
    row = summary_metrics(final, stage)
    if row:
        tracker.log_metrics(parent, [{"step": 0, **row}])


def log_evaluation(
    tracker: Tracker,
    run_id: str | None,
    row: dict[str, float],
    model_metrics: dict[str, float] | None = None,
    summary: dict | None = None,
) -> None:
    """An evaluation of the encoder exported by stage run ``run_id``: ``row`` on that run and on
    its job's run, ``summary`` (the whole table) as ``eval_summary.json`` on the job's run, and
    ``model_metrics`` (the encoder's own scores) on every model version registered from the run."""
    if not run_id:
        return
    parent = tracker.parent_of(run_id)
    for run in (run_id, parent):
        tracker.log_metrics(run, [{"step": 0, **row}])
    if summary is not None and parent:
        tracker.log_dict(parent, summary, "eval_summary.json")
    if model_metrics:
        note = "Held-out evaluation: " + ", ".join(f"{k} {v:.4f}" for k, v in model_metrics.items()) + "."
        for name, version in versions_of_run(tracker, run_id):
            annotate_version(tracker, name, version, model_metrics, note)
