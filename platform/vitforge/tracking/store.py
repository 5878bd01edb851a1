"""The store: which URI, is it reachable, and :class:`Tracker`, the failure-tolerant client."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_DB = "mlruns.db"
DEFAULT_ARTIFACTS = "mlartifacts"
# The MLflow 3 UI opens an experiment in the mode this tag names; without it, it guesses (and may
# guess GenAI). mlflow has no Python constant for it: the values are the UI's ExperimentKind enum.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


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
    """Commit, dirty flag, branch and remote of the code in ``path``, when git tracks it there: both
    vitforge's own tags and MLflow's ``mlflow.source.*``, which the UI shows as the run's source
    (named by the remote, else the checkout's folder). Empty when git does not track ``path`` (an
    installed package inside someone else's checkout, or no checkout at all)."""

    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        head = run("rev-parse", "HEAD", "--show-toplevel").splitlines()
        if len(head) != 2 or not run("ls-files", "--", "."):
            return {}
        dirty, branch = bool(run("status", "--porcelain")), run("branch", "--show-current")
        url = run("remote", "get-url", "origin")
    except (OSError, subprocess.SubprocessError):
        return {}
    commit, top = head
    tags = {"git.commit": commit, "git.dirty": str(dirty)}
    tags |= {"mlflow.source.git.commit": commit, "mlflow.source.git.dirty": str(dirty).lower()}
    tags |= {"mlflow.source.type": "PROJECT", "mlflow.source.name": url or top}
    tags |= {"mlflow.source.git.branch": branch} if branch else {}
    return tags | ({"mlflow.source.git.repoURL": url} if url else {})


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
            kind = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            if exp is None:
                root = default_artifact_root(self.uri)
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=root, tags=kind)
            else:
                self.experiment_id = exp.experiment_id
        except Exception as e:  # the store itself is unusable: that is a start-up error
            raise TrackingError(f"cannot use MLflow tracking store {self.uri}: {e}") from None
        if exp is not None and EXPERIMENT_KIND_TAG not in exp.tags:  # an older one; a kind set in the UI stays
            set_kind = self.client.set_experiment_tag
            self._safe("set_experiment_tag", lambda: set_kind(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND))

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

    def parent_of(self, run_id: str | None) -> str | None:
        """The job's run that ``run_id`` (a stage's) is nested in, if any."""
        run = self._safe("get_run", lambda: self.client.get_run(run_id)) if run_id else None
        return run.data.tags.get("mlflow.parentRunId") if run else None

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

    def log_inputs(self, run_id: str | None, datasets: list) -> None:
        """``mlflow.entities.DatasetInput`` records: what the run read (see ``tracking.inputs``)."""
        if run_id and datasets:
            self._safe("log_inputs", lambda: self.client.log_inputs(run_id, datasets=datasets))

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
