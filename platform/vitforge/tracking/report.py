"""Loss curves and the Ray Train callback that sends each report's metric history to MLflow."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

from vitforge.tracking.store import Tracker, TrackingError


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
