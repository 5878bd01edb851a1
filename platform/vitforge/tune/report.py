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
    """The metric over the (fast, slow) plane, each trial's epochs written at its point and the best
    pair (the table's first row with a value) marked. A grid search fills its cells; a random or
    optuna search is filled by interpolating between the trials (log-log), its points on top;
    failed trials are red crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in table if r["metric"] is not None]
    best = ok[0] if ok else None  # the table is sorted best first
    fasts = sorted({r["fast_lr"] for r in table})
    slows = sorted({r["slow_lr"] for r in table})
    fig, ax = plt.subplots(figsize=(6.5, 5), dpi=110)
    im = None
    if len(fasts) * len(slows) == len(table) > 1:  # a grid: one cell per pair
        m = np.full((len(slows), len(fasts)), np.nan)
        for r in ok:
            m[slows.index(r["slow_lr"]), fasts.index(r["fast_lr"])] = r["metric"]
        im = ax.imshow(m, origin="lower", cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(fasts)), [f"{v:.0e}" for v in fasts], rotation=45)
        ax.set_yticks(range(len(slows)), [f"{v:.0e}" for v in slows])
        lo, hi = np.nanmin(m) if ok else 0.0, np.nanmax(m) if ok else 1.0
        for r in ok:
            xx, yy = fasts.index(r["fast_lr"]), slows.index(r["slow_lr"])
            bright = (r["metric"] - lo) > 0.6 * (hi - lo) > 0  # viridis turns yellow: dark text there
            ax.text(xx, yy, f"{r['metric']:.3f}\n{_epochs(r)}", ha="center", va="center", fontsize=7,
                    color="black" if bright else "white")  # fmt: skip
        bad = [(fasts.index(r["fast_lr"]), slows.index(r["slow_lr"])) for r in table if r["metric"] is None]
        if bad:
            ax.scatter(*zip(*bad, strict=True), marker="x", c="red", s=120, label="failed")
        if best is not None:
            bx, by = fasts.index(best["fast_lr"]), slows.index(best["slow_lr"])
            ax.add_patch(plt.Rectangle((bx - 0.5, by - 0.5), 1, 1, fill=False, ec="red", lw=2.5, label="best"))
    else:
        x = np.log10([r["fast_lr"] for r in ok])
        y = np.log10([r["slow_lr"] for r in ok])
        z = np.array([r["metric"] for r in ok], dtype=float)
        if len(ok) >= 3:
            try:  # Delaunay fails on collinear points (e.g. a ratio search): then points only
                im = ax.tricontourf(x, y, z, levels=12, cmap="viridis", alpha=0.85)
            except (RuntimeError, ValueError):
                im = None
        pts = ax.scatter(x, y, c=z, cmap="viridis", s=60, edgecolors="k", zorder=3)
        im = im or (pts if ok else None)
        for r, xx, yy in zip(ok, x, y, strict=True):
            ax.annotate(_epochs(r), (xx, yy), xytext=(4, 4), textcoords="offset points", fontsize=7, zorder=4)
        bad = [r for r in table if r["metric"] is None]
        if bad:
            ax.scatter(np.log10([r["fast_lr"] for r in bad]), np.log10([r["slow_lr"] for r in bad]), marker="x",
                       c="red", s=80, label="failed", zorder=3)  # fmt: skip
        if best is not None:
            ax.scatter([np.log10(best["fast_lr"])], [np.log10(best["slow_lr"])], marker="*", s=320, c="red",
                       edgecolors="white", zorder=5, label=f"best {best['metric']:.4g}")  # fmt: skip
        ax.set(xlabel="log10 fast lr", ylabel="log10 slow lr")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    if ax.get_xlabel() == "":
        ax.set(xlabel="fast lr", ylabel="slow lr")
    ax.set_title(title)
    if im is not None:
        fig.colorbar(im, ax=ax, label=metric)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _epochs(row: dict) -> str:
    n = row.get("epochs") or 0
    return f"{n} epoch" if n == 1 else f"{n} epochs"
