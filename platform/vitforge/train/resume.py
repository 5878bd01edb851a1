"""Resume only the same work: a job (or search) folder records the resolved spec it was started
with, and a later run with another spec stops with the fields that differ instead of silently
reusing the old exports or trials."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from vitforge.config import JobSpec

RECORD = "spec.json"
# Fields that do not change what is trained: where it is stored and tracked, how often it reports.
UNTRACKED = ("name", "checkpoint", "tracking")


class SpecChanged(ValueError):
    """The folder holds work of another spec (the message lists the fields and the ways on)."""


def fingerprint(spec: JobSpec, search: bool = False) -> dict[str, Any]:
    """The part of the resolved spec that decides the results; the tune section only for a search."""
    data = spec.model_dump(mode="json")
    for key in (*UNTRACKED, *(() if search else ("tune",))):
        data.pop(key, None)
    return data


def spec_diff(old: Any, new: Any, path: str = "") -> list[str]:
    """``a.b: old -> new`` for every leaf that differs (lists compared element by element)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(old.keys() | new.keys(), key=str):
            if k not in old and new[k] is None:
                continue  # a field added since the record was written, left at its "off" default
            out += spec_diff(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (a, b) in enumerate(zip(old, new, strict=True)) for line in spec_diff(a, b, f"{path}.{i}")]
    return [] if old == new else [f"{path}: {json.dumps(old)} -> {json.dumps(new)}"]


def guard(folder: Path, spec: JobSpec, has_work: bool, search: bool = False) -> None:
    """Check that the spec recorded in ``folder`` is this one (``record`` writes it when work starts).

    ``has_work``: something of an earlier run exists (checkpoints, exports, trials), so that a
    folder without a record (made before records existed) is not taken as the same spec.
    """
    record, now = folder / RECORD, fingerprint(spec, search)
    what = "search" if search else "job"
    ways = (
        f"To start over, run again with --fresh (deletes this {what}'s checkpoints, exports and history);"
        f" to keep it, give the new one another name (--set name=...)."
    )
    if record.is_file():
        lines = spec_diff(json.loads(record.read_text()), now)
        if lines:
            shown = "\n  ".join(lines[:20]) + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
            raise SpecChanged(f"{what} {spec.name!r} in {folder} was started with another spec:\n  {shown}\n{ways}")
        return
    if has_work:
        raise SpecChanged(f"{what} {spec.name!r} has earlier work in {folder} but no record of its spec. {ways}")


def record(folder: Path, spec: JobSpec, search: bool = False) -> None:
    """Write the spec's record, once the work really starts (a run that fails before, e.g. on a
    wrong data path, leaves nothing that would refuse the corrected spec)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / RECORD).is_file():
        (folder / RECORD).write_text(json.dumps(fingerprint(spec, search), indent=1, sort_keys=True))


def remove(paths: list[Path], log=print) -> None:
    """Delete earlier work (``--fresh``), saying what goes."""
    for p in paths:
        if p.exists():
            log(f"--fresh: removing {p}")
            shutil.rmtree(p) if p.is_dir() else p.unlink()
