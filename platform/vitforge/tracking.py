"""Every MLflow call goes through here.

- Embedded default: ``sqlite:///<cwd>/mlruns.db`` with artifacts in ``<cwd>/mlartifacts``;
  a tracking URI from the job spec or ``MLFLOW_TRACKING_URI`` points at a server instead.
- One parent run per job, a nested child run per stage and per Tune trial, in the job's
  experiment.
- Logging never kills training: a failed call is retried with back-off, then warned about once,
  and dropped. A wrong URI at start fails fast with :class:`TrackingError`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import vitforge

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_DB = "mlruns.db"
DEFAULT_ARTIFACTS = "mlartifacts"


class TrackingError(RuntimeError):
    """The tracking store cannot be used at all (wrong URI, server down at start)."""


def resolve_uri(uri: str | None = None, workdir: str | Path | None = None) -> str:
    """The job spec's URI, else ``MLFLOW_TRACKING_URI``, else the embedded SQLite store."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(workdir or os.getcwd()).resolve() / DEFAULT_DB}"


def default_artifact_root(uri: str, workdir: str | Path | None = None) -> str | None:
    """Artifacts beside the embedded store; servers choose their own root."""
    if uri.startswith("sqlite:"):
        return (Path(workdir or os.getcwd()).resolve() / DEFAULT_ARTIFACTS).as_uri()
    return None


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast, naming the URI, when a tracking server does not answer ``/health``."""
    if not uri.startswith(("http://", "https://")):
        return

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as r:
            if r.status != 200:
                raise TrackingError(f"MLflow tracking server {uri} answered /health with {r.status}")
    except (urllib.error.URLError, OSError) as e:
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable ({e}); check tracking.tracking_uri or"
            " MLFLOW_TRACKING_URI, or unset both to use the embedded store ./mlruns.db"
        ) from None


@contextmanager
def use_tracking_uri(uri: str):
    """MLflow's fluent API with ``uri``, then the previous setting back: ``mlflow.set_tracking_uri``
    also writes ``MLFLOW_TRACKING_URI`` into the environment, which would leak into later jobs."""
    import mlflow

    old_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        if old_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested spec -> {"a.b.c": "value"}; lists indexed (``stages.0.name``)."""
    out: dict[str, str] = {}
    items: Iterable[tuple[Any, Any]] = d.items() if isinstance(d, dict) else enumerate(d)
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, dict | list) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, dict | list) else str(v)
    return out


def git_info(path: str | Path = ".") -> dict[str, str]:
    """Commit and dirty flag of the code being run, when it is a git checkout."""

    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = run("rev-parse", "HEAD")
        if not commit:
            return {}
        return {"git.commit": commit, "git.dirty": str(bool(run("status", "--porcelain")))}
    except (OSError, subprocess.SubprocessError):
        return {}


class Tracker:
    """A thin, failure-tolerant wrapper over ``MlflowClient`` for one experiment."""

    DOWN_S = 60.0

    def __init__(
        self,
        uri: str | None = None,
        experiment: str = "vitforge",
        retries: int = 3,
        backoff_s: float = 0.5,
        check: bool = True,
    ) -> None:
        from mlflow import MlflowClient

        # MLflow's own HTTP client retries for minutes by default; ours retries briefly, then backs off.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        # MLflow draws a "Downloading artifacts" bar per file of a registered model: not for users' logs.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        self.uri = resolve_uri(uri)
        if check:
            check_reachable(self.uri)
        self.retries, self.backoff_s = retries, backoff_s
        self._warned = False
        self._down_until = 0.0  # after a failed call: drop calls until then, then try again
        self.client = MlflowClient(self.uri)
        self.experiment_name = experiment
        try:
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                exp.experiment_id
                if exp
                else self.client.create_experiment(experiment, artifact_location=default_artifact_root(self.uri))
            )
        except Exception as e:  # the store itself is unusable: that is a start-up error
            raise TrackingError(f"cannot use MLflow tracking store {self.uri}: {e}") from None

    def config(self) -> dict[str, Any]:
        """What a Train callback needs to rebuild this tracker in another process."""
        return {"uri": self.uri, "experiment": self.experiment_name}

    # -- failure-tolerant calls -------------------------------------------------------------

    def _safe(self, what: str, fn: Callable[[], T]) -> T | None:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as e:
                if attempt == self.retries:
                    if not self._warned:
                        warnings.warn(
                            f"MLflow logging to {self.uri} failed ({what}: {e}); training goes on,"
                            " further tracking failures are dropped silently",
                            stacklevel=3,
                        )
                        self._warned = True
                    log.debug("dropped MLflow call %s: %s", what, e)
                    return None
                time.sleep(delay)
                delay *= 2
        return None

    def start_run(self, name: str, parent_id: str | None = None, tags: dict[str, str] | None = None) -> str | None:
        all_tags = dict(tags or {})
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        run = self._safe("create_run", lambda: self.client.create_run(self.experiment_id, run_name=name, tags=all_tags))
        return run.info.run_id if run else None

    def end_run(self, run_id: str | None, status: str = "FINISHED") -> None:
        if run_id:
            self._safe("end_run", lambda: self.client.set_terminated(run_id, status))

    def log_params(self, run_id: str | None, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        if not run_id:
            return
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # log_batch takes at most 100 params
            chunk = items[i : i + 100]
            self._safe("log_params", lambda chunk=chunk: self.client.log_batch(run_id, params=chunk))

    def set_tags(self, run_id: str | None, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        if run_id and tags:
            batch = [RunTag(k, str(v)) for k, v in tags.items()]
            self._safe("set_tags", lambda: self.client.log_batch(run_id, tags=batch))

    def log_metrics(self, run_id: str | None, rows: list[dict], step_key: str = "step") -> None:
        """Numeric fields of each row as metrics at ``row[step_key]``, in one batched call per 1,000."""
        from mlflow.entities import Metric

        if not run_id:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, int(r.get(step_key, 0)))
            for r in rows
            for k, v in r.items()
            if k != step_key and isinstance(v, int | float) and not isinstance(v, bool)
        ]
        for i in range(0, len(metrics), 1000):
            chunk = metrics[i : i + 1000]
            self._safe("log_metrics", lambda chunk=chunk: self.client.log_batch(run_id, metrics=chunk))

    def log_artifact(self, run_id: str | None, path: str | Path, artifact_path: str | None = None) -> None:
        if run_id:
            self._safe("log_artifact", lambda: self.client.log_artifact(run_id, str(path), artifact_path))

    def log_artifacts(self, run_id: str | None, directory: str | Path, artifact_path: str | None = None) -> None:
        if run_id:
            self._safe("log_artifacts", lambda: self.client.log_artifacts(run_id, str(directory), artifact_path))

    def log_text(self, run_id: str | None, text: str, artifact_file: str) -> None:
        if run_id:
            self._safe("log_text", lambda: self.client.log_text(run_id, text, artifact_file))

    def log_dict(self, run_id: str | None, data: dict, artifact_file: str) -> None:
        if run_id:
            self._safe("log_dict", lambda: self.client.log_dict(run_id, data, artifact_file))


def loss_curve_png(history: list[dict], title: str, out: str | Path) -> Path:
    """Loss (and the two learning rates) against step, as a PNG a person can read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    ax1.plot(steps, [h["loss"] for h in history], color="tab:blue", lw=1.5)
    ax1.set(xlabel="step", ylabel="loss", title=f"{title}: loss")
    ax1.grid(alpha=0.3)
    # The slow group dashed, so both stay visible when the pair is equal.
    for key, colour, style in (("lr_fast", "tab:red", "-"), ("lr_slow", "tab:green", "--")):
        if any(key in h for h in history):
            values = [h.get(key, float("nan")) for h in history]
            ax2.plot(steps, values, color=colour, ls=style, lw=1.5, label=key.replace("_", " "))
    ax2.set(xlabel="step", ylabel="learning rate", title="TTUR learning rates")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


def metrics_callback(tracker_config: dict, run_id: str | None, history_path: str):
    """A Ray Train ``UserCallback`` (it runs in the Train controller): every report's rank-0 metric
    history goes to the stage's MLflow run and to a JSONL file. Tracking failures never stop it."""
    from ray.train import UserCallback

    class MetricsCallback(UserCallback):
        def __init__(self) -> None:
            self._tracker: Tracker | None = None

        def _get_tracker(self) -> Tracker | None:
            if self._tracker is None and run_id:
                try:
                    self._tracker = Tracker(**tracker_config, check=False)
                except TrackingError as e:
                    warnings.warn(f"MLflow unavailable in the Train controller: {e}", stacklevel=2)
            return self._tracker

        def after_report(self, run_context, metrics, checkpoint) -> None:
            # One dict per worker; rank 0's carries every step logged since the last report.
            if not metrics or not metrics[0]:
                return
            rows = [r for r in metrics[0].get("history", [metrics[0]]) if isinstance(r, dict)]
            with open(history_path, "a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            tracker = self._get_tracker()
            if tracker:
                tracker.log_metrics(run_id, rows)

    return MetricsCallback()


def log_figure_rows(tracker: Tracker, run_id: str | None, history: list[dict], name: str) -> None:
    """Loss-curve PNG of ``history`` logged under ``plots/``."""
    if not history:
        return
    with tempfile.TemporaryDirectory() as d:
        png = loss_curve_png(history, name, Path(d) / f"loss_{name}.png")
        tracker.log_artifact(run_id, png, "plots")


def _pyfunc_class():
    import mlflow.pyfunc

    class EncoderModel(mlflow.pyfunc.PythonModel):
        """``predict(images)``: uint8 (N, H, W, 3) -> L2-normalized embeddings (N, D), float32.

        Loads the vitforge export (safetensors + model card) shipped as the ``export`` artifact.
        """

        def load_context(self, context) -> None:
            from vitforge.inference import load_encoder

            self.model, self.card = load_encoder(context.artifacts["export"])

        def predict(self, context, model_input, params=None):

            from vitforge.inference import encode_images

            return encode_images(self.model, self.card, np.asarray(model_input)).numpy().astype("float32")

    return EncoderModel


def register_encoder(
    tracker: Tracker, run_id: str | None, export_dir: str | Path, name: str, alias: str | None = None
) -> str | None:
    """Log the export as an MLflow pyfunc model in ``run_id`` and register it as ``name``.

    Returns the registered version (``models:/NAME/VERSION``, ``models:/NAME/latest``, and
    ``models:/NAME@alias`` when ``alias`` is given), or None when tracking is unavailable.
    """
    import mlflow
    from mlflow.models import infer_signature

    from vitforge.inference import encode_images, load_encoder

    if not run_id:
        return None
    model, card = load_encoder(export_dir)
    size = card["model"]["img_size"]
    example = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    signature = infer_signature(example, encode_images(model, card, example).numpy())
    code = str(Path(vitforge.__file__).parent)

    def log() -> str:
        with use_tracking_uri(tracker.uri), mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="encoder",
                python_model=_pyfunc_class()(),
                artifacts={"export": str(export_dir)},
                signature=signature,
                input_example=example,
                code_paths=[code],
                # Listing requirements skips a slow environment inference.
                pip_requirements=["torch", "numpy", "safetensors", "pydantic", "pyyaml", "pillow"],
                registered_model_name=name,
            )
        return str(info.registered_model_version)

    version = tracker._safe("register_model", log)
    if version and alias:
        tracker._safe("set_alias", lambda: tracker.client.set_registered_model_alias(name, alias, version))
    return version
