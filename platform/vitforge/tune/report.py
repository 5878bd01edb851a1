"""What a search shows: one line per trial as it ends, the table of trials (with when each ran,
so the concurrency limit can be checked), and the heatmap over the (fast, slow) plane."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitforge.config import JobSpec

# A trial's status in the table: ran every epoch, stopped by the scheduler, or raised.
TERMINATED, STOPPED_EARLY, ERROR = "TERMINATED", "STOPPED_EARLY", "ERROR"


def trial_lines(metric: str, mode: str, log):
    """A Tune callback: one line per finished, stopped or failed trial, with the best so far."""
    from ray import tune

    class TrialLines(tune.Callback):
        def __init__(self) -> None:
            self.best: tuple[float, str] | None = None
            self.done = 0

        def _line(self, trial, status: str) -> None:
            self.done += 1
            value = (trial.last_result or {}).get(metric)
            cfg = trial.config or {}
            pair = f"fast {float(cfg.get('fast_lr', 0)):.2e}" + (
                f" slow {float(cfg['slow_lr']):.2e}" if "slow_lr" in cfg else f" ratio {float(cfg.get('ratio', 1)):.1f}"
            )
            if value is not None and (
                self.best is None or (value < self.best[0] if mode == "min" else value > self.best[0])
            ):
                self.best = (value, trial.trial_id)
            shown = "" if value is None else f" {metric} {value:.4f}"
            best = f"; best {self.best[0]:.4f} ({self.best[1]})" if self.best else ""
            iters = (trial.last_result or {}).get("training_iteration", 0)
            log(f"trial {trial.trial_id} {status} after {iters} epochs: {pair}{shown}{best} [{self.done} done]")

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self._line(trial, "finished")

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._line(trial, "FAILED")

    return TrialLines()


def results_table(grid, metric: str, mode: str, spec: JobSpec, epochs: int) -> list[dict]:
    workers = spec.scaling.num_workers if spec.tune.mode == "train" else 1
    rows = []
    for r in grid:
        cfg = {k: v for k, v in (r.config or {}).items() if k != "_vitforge"}
        fast = float(cfg.get("fast_lr", 0))
        slow = float(cfg["slow_lr"]) if "slow_lr" in cfg else fast / float(cfg.get("ratio", 1))
        df = r.metrics_dataframe
        series = df[metric].dropna().tolist() if df is not None and metric in df else []
        best_val = (min(series) if mode == "min" else max(series)) if series else None
        elapsed = float(df["time_total_s"].max()) if df is not None and "time_total_s" in df else 0.0
        rows.append({
            "trial_id": (r.metrics or {}).get("trial_id") or Path(r.path).name,
            "fast_lr": fast, "slow_lr": slow,
            "extra": {k: v for k, v in cfg.items() if "." in k},
            "status": ERROR if r.error else STOPPED_EARLY if len(series) < epochs else TERMINATED,
            "error": error_line(r.error),
            "metric": best_val, "epochs": len(series), "worker_s": elapsed * workers,
            **trial_span(df),
        })  # fmt: skip
    sign = 1 if mode == "min" else -1
    return sorted(rows, key=lambda x: (x["metric"] is None, sign * (x["metric"] or 0.0)))


def trial_span(df) -> dict[str, float | None]:
    """When the trial started and last reported (epoch seconds): from the trials' own float
    ``wall_time`` where they send it (direct trials), else Tune's whole-second ``timestamp``."""
    if df is None or df.empty or "time_this_iter_s" not in df:
        return {"started": None, "ended": None}
    clock = "wall_time" if "wall_time" in df and df["wall_time"].notna().all() else "timestamp"
    first = df.iloc[0]
    return {"started": float(first[clock] - first["time_this_iter_s"]), "ended": float(df[clock].iloc[-1])}


def error_line(error: BaseException | None) -> str | None:
    """The exception's own message (Ray wraps it under a header line and a traceback)."""
    if error is None:
        return None
    lines = [x.strip() for x in str(error).splitlines() if x.strip()]
    return next((x for x in reversed(lines) if "Error" in x or "Loss" in x), lines[-1] if lines else "")[:300]


def heatmap_png(table: list[dict], metric: str, out: Path, title: str) -> Path:
    """The metric over the (fast, slow) plane: a grid heatmap when the pairs form a grid, else a
    log-log scatter coloured by the metric; failed trials marked with a cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fasts = sorted({r["fast_lr"] for r in table})
    slows = sorted({r["slow_lr"] for r in table})
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    is_grid = len(fasts) * len(slows) == len(table) and len(table) > 1
    if is_grid:
        m = np.full((len(slows), len(fasts)), np.nan)
        for r in table:
            if r["metric"] is not None:
                m[slows.index(r["slow_lr"]), fasts.index(r["fast_lr"])] = r["metric"]
        im = ax.imshow(m, origin="lower", cmap="viridis")
        ax.set_xticks(range(len(fasts)), [f"{v:.0e}" for v in fasts], rotation=45)
        ax.set_yticks(range(len(slows)), [f"{v:.0e}" for v in slows])
        for (yy, xx), v in np.ndenumerate(m):
            ax.text(xx, yy, "failed" if np.isnan(v) else f"{v:.3f}", ha="center", va="center", fontsize=7,
                    color="white")  # fmt: skip
    else:
        ok = [r for r in table if r["metric"] is not None]
        im = ax.scatter([r["fast_lr"] for r in ok], [r["slow_lr"] for r in ok], c=[r["metric"] for r in ok],
                        cmap="viridis", s=80, edgecolors="k")  # fmt: skip
        bad = [r for r in table if r["metric"] is None]
        ax.scatter([r["fast_lr"] for r in bad], [r["slow_lr"] for r in bad], marker="x", c="red", s=80, label="failed")
        ax.set(xscale="log", yscale="log")
        if bad:
            ax.legend()
    ax.set(xlabel="fast lr", ylabel="slow lr", title=title)
    fig.colorbar(im, ax=ax, label=metric)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
