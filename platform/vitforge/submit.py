"""Submitting jobs to a Ray cluster with ``JobSubmissionClient`` and following them.

The job spec travels in the working directory with the vitforge package (``py_modules``), so the
cluster runs the same code and spec. The submission id is derived from the job name, so a
re-submit of a finished or failed job gets the next id in a deterministic series and resumes
from the job's checkpoints; a re-submit of a running job just follows it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import vitforge
from vitforge.config import JobSpec, dump_spec
from vitforge.tracking import resolve_uri

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def client(address: str | None = None):
    """A ``JobSubmissionClient`` for ``address`` / ``RAY_ADDRESS``, sending Ray's auth token (see
    :func:`auth_token`) as a bearer token when there is one (Ray 2.60 token authentication)."""
    from ray.job_submission import JobSubmissionClient

    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ValueError("no Ray cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    token = auth_token()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return JobSubmissionClient(address, headers=headers)


def auth_token() -> str | None:
    """Ray's auth token: ``RAY_AUTH_TOKEN``, else the file at ``RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token`` (where ``ray start`` writes it); None when there is none."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    if token:
        return token.strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    return path.read_text().strip() if path.is_file() else None


def submission_id(spec: JobSpec, attempt: int = 0) -> str:
    return f"vitforge-{spec.name}" + (f"-r{attempt}" if attempt else "")


# The job's driver runs under the Python of the Ray head, not whatever `python` is first on the
# head's PATH (a head started as `.venv/bin/ray start` has the system's, without vitforge's
# dependencies). Ray runs the entrypoint with `sh -c` as a child of its job supervisor, a process
# of the head's Python environment with Ray's `_raylet` library mapped from that environment's
# site-packages: its `bin/python` is the interpreter (not /proc/$PPID/exe, which is the resolved
# binary outside the venv; not the command line, which Ray overwrites). Elsewhere: python3.
ENTRYPOINT = (
    "S=$(grep -o '/[^ ]*/site-packages/ray/' /proc/$PPID/maps 2>/dev/null | head -n1); "
    'P="${S%%/lib/python*}/bin/python"; [ -n "$S" ] && [ -x "$P" ] || P=python3; '
    'exec "$P" -m vitforge.cli train job.yaml'
)


def cluster_paths(spec: JobSpec) -> tuple[JobSpec, list[str]]:
    """The spec with relative local paths made absolute, and a note for each.

    A relative ``checkpoint.storage_path``, ``init_from`` or SQLite/file MLflow store would resolve inside Ray's
    temporary copy of the working directory on the head, where nobody finds the exports or runs.
    Absolute paths on this machine are right for a head on this machine or on a shared file
    system; for other clusters use URIs (s3://, an MLflow server).
    """

    spec = spec.model_copy(deep=True)
    notes = []
    storage = spec.checkpoint.storage_path
    if "://" not in storage and not Path(storage).expanduser().is_absolute():
        spec.checkpoint.storage_path = str(Path(storage).expanduser().resolve())
        notes.append(f"checkpoint.storage_path {storage!r} -> {spec.checkpoint.storage_path}")
    start = spec.init_from  # an imported or earlier export, read by the job on the cluster
    if start and "://" not in start and not Path(start).expanduser().is_absolute():
        spec.init_from = str(Path(start).expanduser().resolve())
        notes.append(f"init_from {start!r} -> {spec.init_from}")
    if spec.tracking.enabled:
        uri = resolve_uri(spec.tracking.tracking_uri)  # the default store: absolute, in this folder
        path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else uri if "://" not in uri else None
        if path is not None and not Path(path).is_absolute():
            absolute = str(Path(path).resolve())
            uri = f"sqlite:///{absolute}" if uri.startswith("sqlite:") else absolute
        if uri != spec.tracking.tracking_uri:
            notes.append(f"tracking.tracking_uri {spec.tracking.tracking_uri!r} -> {uri}")
            spec.tracking.tracking_uri = uri
    return spec, notes


def _working_dir(spec: JobSpec) -> str:
    """A folder holding only the resolved spec (the code travels as a py_module)."""
    d = tempfile.mkdtemp(prefix="vitforge-submit-")
    (Path(d) / "job.yaml").write_text(dump_spec(spec))
    return d


def submit(
    spec: JobSpec,
    address: str | None = None,
    extra_env: dict[str, str] | None = None,
    wait_s: float = 120.0,
    log: Callable[[str], None] = print,
) -> tuple[str, bool]:
    """Submit ``vitforge train job.yaml``; returns (submission id, whether it was newly submitted).

    Relative local paths are made absolute first (``cluster_paths``), each change logged."""

    spec, notes = cluster_paths(spec)
    for note in notes:
        log(f"submit: {note} (a relative path would land in Ray's temporary working directory)")
    c = client(address)
    attempt = 0
    while True:
        sid = submission_id(spec, attempt)
        try:
            info = c.get_job_info(sid)
        except RuntimeError:  # no such submission: use this id
            break
        if info.status not in TERMINAL:
            return sid, False  # already running: follow it
        attempt += 1
    env = {k: v for k, v in os.environ.items() if k in ("MLFLOW_TRACKING_URI", "DS_ACCELERATOR")}
    env.update(extra_env or {})
    env["VITFORGE_SUBMISSION_ID"] = sid  # tagged on the job's MLflow run
    wd = _working_dir(spec)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                c.submit_job(
                    entrypoint=ENTRYPOINT,
                    submission_id=sid,
                    runtime_env={
                        "working_dir": wd,
                        "py_modules": [str(Path(vitforge.__file__).parent)],
                        "env_vars": env,
                    },
                    # job_name is what Ray's dashboard shows as the job's name.
                    metadata={
                        "job_name": spec.name,
                        "vitforge.job": spec.name,
                        "vitforge.stages": ",".join(st.name for st in spec.stages),
                        "vitforge.version": vitforge.__version__,
                        "vitforge.storage": spec.checkpoint.storage_path,
                    },
                )
                return sid, True
            except RuntimeError as e:
                # A head that just started has no job agent yet: wait for it, then give up.
                if "No available agent" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(2)
    finally:
        shutil.rmtree(wd, ignore_errors=True)


def follow(sid: str, address: str | None = None, out: Callable[[str], None] = print, poll_s: float = 1.0) -> str:
    """Stream the job's logs until it ends; returns its final status."""
    c = client(address)
    seen = 0
    while True:
        logs = c.get_job_logs(sid)
        if len(logs) > seen:
            out(logs[seen:].rstrip("\n"))
            seen = len(logs)
        status = str(c.get_job_status(sid))
        status = status.split(".")[-1]
        if status in TERMINAL:
            logs = c.get_job_logs(sid)
            if len(logs) > seen:
                out(logs[seen:].rstrip("\n"))
            return status
        time.sleep(poll_s)
