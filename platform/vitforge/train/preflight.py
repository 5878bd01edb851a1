"""``--dry-run``: what can be checked before a job starts, each check one line (✓ or ✗ and why)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from vitforge.config import JobSpec
from vitforge.data import sample_rows
from vitforge.tracking import check_reachable, resolve_uri
from vitforge.train.inputs import load_train_data, make_batch_maker, normalization_for


def preflight(spec: JobSpec, log: Callable[[str], None] = print) -> bool:
    """Data (both splits exist, one sample decodes through every stage's views), resources of the
    cluster (when one is named) or this machine, storage, and the MLflow store. True when all pass;
    each check reports its own failure and the others still run."""
    ok = True
    checks = (("data", _data), ("eval split", _eval_split), ("resources", _resources), ("storage", _storage),
              ("MLflow", _tracking))  # fmt: skip
    for name, check in checks:
        try:
            log(f"✓ {name}: {check(spec)}")
        except Exception as e:
            ok = False
            log(f"✗ {name}: {e}")
    return ok


def _data(spec: JobSpec) -> str:
    ds = load_train_data(spec)
    norm = normalization_for(spec, ds)
    first = {k: v[:1] for k, v in sample_rows(ds, 1, spec.seed).items()}
    for i in range(len(spec.stages)):
        out = make_batch_maker(spec, i, norm)(first, 0)
        if len(out["index"]) != 1:
            raise ValueError(f"the first row does not decode for stage {i} ({spec.stages[i].name})")
    classes = ds.num_classes or 0
    return f"{len(ds)} examples, {classes} classes, the first decodes to {tuple(out['image'].shape[1:])}"


def _eval_split(spec: JobSpec) -> str:
    return f"{len(load_train_data(spec, spec.data.eval_split))} examples in '{spec.data.eval_split}'"


def _resources(spec: JobSpec) -> str:
    sc = spec.scaling
    need = sc.num_workers * sc.cpus_per_worker
    address = os.environ.get("RAY_ADDRESS")
    if address:
        import ray  # only when a cluster is named: connecting is the check

        ray.init(address=address, logging_level="ERROR")
        have = ray.cluster_resources()
        want, gpus = sc.num_workers * sc.gpus_per_worker, have.get("GPU", 0)
        if sc.use_gpu and gpus < want:
            raise ValueError(f"{sc.num_workers} workers need {want:g} GPUs, the cluster has {gpus:g}")
        cpus = have.get("CPU", 0)
    else:
        cpus = max(4, 2 * (os.cpu_count() or 1))  # what a local Ray gets (see ensure_ray)
        if sc.use_gpu:
            raise ValueError("scaling.use_gpu is set, but no cluster is named (RAY_ADDRESS) for the GPUs")
    if cpus < need:
        raise ValueError(f"{sc.num_workers} workers x {sc.cpus_per_worker} CPUs = {need}, the cluster has {cpus}")
    return f"{need:g} CPUs for {sc.num_workers} workers, {cpus:g} available ({address or 'a local Ray'})"


def _storage(spec: JobSpec) -> str:
    path = spec.checkpoint.storage_path
    if "://" in path:
        return f"{path} (a URI: every node must reach it)"
    absolute = Path(path).expanduser().resolve()
    absolute.mkdir(parents=True, exist_ok=True)
    note = "" if Path(path).is_absolute() else " (relative: submit makes it absolute; a cluster needs it shared)"
    return f"{absolute} writable{note}"


def _tracking(spec: JobSpec) -> str:
    if not spec.tracking.enabled:
        return "off"
    uri = resolve_uri(spec.tracking.tracking_uri)
    check_reachable(uri)
    return uri
