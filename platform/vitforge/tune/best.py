"""``best_job.yaml``: the best trial as a training job, headed by where it came from.

The body is ``config.dump_spec`` of the trial's spec (no ``tune:`` section, each stage with its
own kind's fields), so ``load_spec`` reads back exactly the spec the trial trained; the header is
YAML comments, so it costs the round trip nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from vitforge.config import JobSpec, dump_spec


def best_job_text(best_spec: JobSpec, search: str, metric: str, best: dict, out_dir: Path, path: Path) -> str:
    """The file's text: a comment block (search, date, metric and value, trial, folder, command)
    and the job spec."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    value = "n/a" if best.get("metric") is None else f"{best['metric']:.4f}"
    extra = "".join(f", {k}={v}" for k, v in (best.get("extra") or {}).items())
    header = [
        f"The best trial of the search {search!r} (vitforge tune), {when}.",
        f"{metric} {value} at the end of trial {best['trial_id']} ({best.get('epochs', '?')} epochs, "
        f"{best.get('status', '')}): training this spec gives that value again",
        f"  fast_lr={best['fast_lr']:.4g}, slow_lr={best['slow_lr']:.4g}{extra}",
        f"Search folder: {out_dir} (trials.json, heatmap.png)",
        f"Train it: vitforge train {path}",
    ]
    return "".join(f"# {line}\n" for line in header) + dump_spec(best_spec)


def write_best_job(best_spec: JobSpec, search: str, metric: str, best: dict, out_dir: Path) -> Path:
    path = out_dir / "best_job.yaml"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(best_job_text(best_spec, search, metric, best, out_dir, path))
    return path
