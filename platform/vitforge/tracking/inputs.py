"""The job's data as an MLflow dataset input: where it comes from and a digest, never the images.

MLflow's ``mlflow.data`` classes either hold the data (pandas, numpy, HF) or resolve the source
through a registry that warns on every local path; the run only needs the record, so it is built
directly as the entity ``MlflowClient.log_inputs`` takes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vitforge.tracking.store import Tracker

CONTEXT_TAG = "mlflow.data.context"  # mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT


def data_record(
    source: str, split: str, rows: int | None, builtin_options: dict[str, Any] | None = None, fmt: str | None = None
) -> dict[str, str | None]:
    """Name, digest, source type, source, profile of a data source (``mlflow.entities.Dataset``'s
    fields). ``builtin_options`` not None: ``source`` names a built-in (generated in code).

    The digest covers what selects the data (source, split, format, options) and, for a local path,
    its modification time, so a folder rewritten in place gets a new digest; it reads no file.
    """
    if builtin_options is not None:
        name, source_type = source, "code"
        where: dict[str, Any] = {"tags": {"vitforge.builtin": source, **builtin_options}}
        identity: dict[str, Any] = {"builtin": source, "options": builtin_options}
    else:
        local = "://" not in source
        uri = str(Path(source).expanduser().resolve()) if local else source
        name, source_type = Path(uri.rstrip("/")).name or uri, "local" if local else uri.split("://", 1)[0]
        where = {"uri": uri}
        mtime = Path(uri).stat().st_mtime_ns if local and Path(uri).exists() else None
        identity = {"uri": uri, "format": fmt, "mtime_ns": mtime}
    identity |= {"split": split, "rows": rows}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    profile = {"split": split} | ({"num_rows": rows} if rows is not None else {})
    return {
        "name": f"{name}:{split}",
        "digest": digest,
        "source_type": source_type,
        "source": json.dumps(where, sort_keys=True, default=str),
        "profile": json.dumps(profile),
    }


def log_data_input(tracker: Tracker, run_id: str | None, record: dict[str, str | None], context: str = "train") -> None:
    """``record`` (from :func:`data_record`) as the run's dataset input, tagged with ``context``."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    if run_id:
        tracker.log_inputs(run_id, [DatasetInput(Dataset(**record), tags=[InputTag(CONTEXT_TAG, context)])])
