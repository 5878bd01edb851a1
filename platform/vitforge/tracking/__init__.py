"""Every MLflow call goes through here.

- Embedded default: ``sqlite:///<cwd>/mlruns.db`` with artifacts in ``<cwd>/mlartifacts``;
  a tracking URI from the job spec or ``MLFLOW_TRACKING_URI`` points at a server instead.
- One parent run per job, a nested child run per stage and per Tune trial, in the job's
  experiment (tagged so that MLflow 3's UI opens it in model-training mode).
- The job's run carries the data as a dataset input, the git source, and each stage's final loss
  and evaluation; registered versions carry their metrics and a description.
- Logging never kills training: a failed call is retried with back-off, then warned about once,
  and dropped. A wrong URI at start fails fast with :class:`TrackingError`.

``store`` (URIs, :class:`Tracker`) <- ``report`` (loss plots, the Train callback), ``inputs`` (the
dataset input), ``registry`` (pyfunc model, versions) <- ``summary`` (numbers on the job's run).
"""

from vitforge.tracking.inputs import data_record, log_data_input
from vitforge.tracking.registry import annotate_version, describe_stage, register_encoder, versions_of_run
from vitforge.tracking.report import log_figure_rows, loss_curve_png, metrics_callback
from vitforge.tracking.store import (
    DEFAULT_ARTIFACTS,
    DEFAULT_DB,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    Tracker,
    TrackingError,
    check_reachable,
    default_artifact_root,
    flatten,
    git_info,
    resolve_uri,
    use_tracking_uri,
)
from vitforge.tracking.summary import log_evaluation, log_stage_summary, summary_metrics

__all__ = [
    "DEFAULT_ARTIFACTS",
    "DEFAULT_DB",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "Tracker",
    "TrackingError",
    "annotate_version",
    "check_reachable",
    "data_record",
    "default_artifact_root",
    "describe_stage",
    "flatten",
    "git_info",
    "log_data_input",
    "log_evaluation",
    "log_figure_rows",
    "log_stage_summary",
    "loss_curve_png",
    "metrics_callback",
    "register_encoder",
    "resolve_uri",
    "summary_metrics",
    "use_tracking_uri",
    "versions_of_run",
]
