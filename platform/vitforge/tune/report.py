"""What a search shows: one line per trial as it ends, the table of trials (with when each ran,
so the concurrency limit can be checked), and the heatmap over the (fast, slow) plane.

One definition of "best" serves them all, and MLflow and ``best_job.yaml`` too (``rank_key``): a
trial's value is the metric **at its end** (Tune's ``scope="last"``), and trials are compared at
the largest budget they share: one that ran more epochs ranks above one stopped earlier, trials
with the same budget rank by value. Why the last value and not the best epoch's: ``best_job.yaml``
trains the trial's spec again, and what it gives is the value at the end of that schedule (a
cosine schedule over 4 epochs is not the first 2 epochs of one over 2), and the last value is the
one ASHA itself compared at its rungs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitforge.config import JobSpec

# A trial's status in the table: ran every epoch, stopped by the scheduler, or raised.
TERMINATED, STOPPED_EARLY, ERROR = "TERMINATED", "STOPPED_EARLY", "ERROR"


def rank_key(epochs: int, value: float | None, mode: str) -> tuple[bool, int, float]:
    """The sort key of a trial, smallest first: trials with a value before those without, then the
    furthest budget (epochs reached), then the value at the trial's end (lower or higher is better
    by ``mode``)."""
    sign = 1 if mode == "min" else -1
    return (value is None, -epochs, sign * (value if value is not None else 0.0))


def rungs(spec: JobSpec, epochs: int) -> list[int]:
    """The budgets a search compares trials at: ASHA's rungs (``grace_period * reduction_factor**k``
    up to the stage's epochs, which is always one), or only the full budget without ASHA."""
    t = spec.tune
    out = [epochs]
    if t is not None and t.scheduler == "asha":
        r = t.grace_period
        while r < epochs:
            out.append(r)
            r *= t.reduction_factor
    return sorted(set(out))


def trial_lines(metric: str, mode: str, log):
    """A Tune callback: one line per finished, stopped or failed trial, with the best so far."""
    from ray import tune

    class TrialLines(tune.Callback):
        def __init__(self) -> None:
            self.best: tuple[tuple, float, int, str] | None = None  # (rank key, value, epochs, trial)
            self.done = 0

        def _line(self, trial, status: str) -> None:
            self.done += 1
            value = (trial.last_result or {}).get(metric)  # the trial's last report: its end
            iters = int((trial.last_result or {}).get("training_iteration", 0))
            cfg = trial.config or {}
            pair = f"fast {float(cfg.get('fast_lr', 0)):.2e}" + (
                f" slow {float(cfg['slow_lr']):.2e}" if "slow_lr" in cfg else f" ratio {float(cfg.get('ratio', 1)):.1f}"
            )
            key = rank_key(iters, value, mode)
            if value is not None and (self.best is None or key < self.best[0]):
                self.best = (key, value, iters, trial.trial_id)
            shown = "" if value is None else f" {metric} {value:.4f}"
            best = f"; best {self.best[1]:.4f} ({self.best[3]}, {self.best[2]} epochs)" if self.best else ""
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
        series = [float(v) for v in df[metric].dropna()] if df is not None and metric in df else []
        elapsed = float(df["time_total_s"].max()) if df is not None and "time_total_s" in df else 0.0
        rows.append({
            "trial_id": (r.metrics or {}).get("trial_id") or Path(r.path).name,
            "fast_lr": fast, "slow_lr": slow,
            "extra": {k: v for k, v in cfg.items() if "." in k},
            "status": ERROR if r.error else STOPPED_EARLY if len(series) < epochs else TERMINATED,
            "error": error_line(r.error),
            "metric": series[-1] if series else None,  # at the trial's end (scope "last")
            "epochs": len(series), "history": series, "worker_s": elapsed * workers,
            **trial_span(df),
        })  # fmt: skip
    return sorted(rows, key=lambda x: rank_key(x["epochs"], x["metric"], mode))


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
    """The metric over the (fast, slow) plane at the full budget, the best pair marked.

    Only trials that ran the largest budget in the table are coloured (a grid's cells, a random
    search's points and, through 3 or more of them, an interpolated log-log surface); a trial
    stopped early is a grey mark with its epochs and value, never part of the colour scale or the
    surface; failed trials are red crosses. The best trial (the table's first row with a value)
    is also written in the PNG's ``Description`` text chunk.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in table if r["metric"] is not None]
    budget = max((r["epochs"] for r in ok), default=0)
    full = [r for r in ok if r["epochs"] == budget]
    stopped = [r for r in ok if r["epochs"] < budget]
    bad = [r for r in table if r["metric"] is None]
    best = ok[0] if ok else None  # the table is sorted best first (rank_key): a full-budget trial
    fasts = sorted({r["fast_lr"] for r in table})
    slows = sorted({r["slow_lr"] for r in table})
    fig, ax = plt.subplots(figsize=(6.8, 5.2), dpi=110)
    im = None
    if len(fasts) > 1 and all(r["fast_lr"] == r["slow_lr"] for r in table):  # a single-rate search: a curve
        _rate_curve(ax, full, stopped, bad, best, metric, budget)
    elif len(fasts) * len(slows) == len(table) > 1:  # a grid: one cell per pair
        cell = {(r["fast_lr"], r["slow_lr"]): (fasts.index(r["fast_lr"]), slows.index(r["slow_lr"])) for r in table}
        m = np.full((len(slows), len(fasts)), np.nan)
        for r in full:
            xx, yy = cell[r["fast_lr"], r["slow_lr"]]
            m[yy, xx] = r["metric"]
        im = ax.imshow(m, origin="lower", cmap="viridis", aspect="auto") if full else None
        ax.set_xticks(range(len(fasts)), [f"{v:.0e}" for v in fasts], rotation=45)
        ax.set_yticks(range(len(slows)), [f"{v:.0e}" for v in slows])
        lo, hi = (np.nanmin(m), np.nanmax(m)) if full else (0.0, 1.0)
        for r in full:
            xx, yy = cell[r["fast_lr"], r["slow_lr"]]
            bright = (r["metric"] - lo) > 0.6 * (hi - lo) > 0  # viridis turns yellow: dark text there
            ax.text(xx, yy, f"{r['metric']:.3f}\n{_epochs(r)}", ha="center", va="center", fontsize=7,
                    color="black" if bright else "white")  # fmt: skip
        for r in stopped:
            xx, yy = cell[r["fast_lr"], r["slow_lr"]]
            ax.add_patch(plt.Rectangle((xx - 0.5, yy - 0.5), 1, 1, color="0.8", zorder=2))
            ax.text(xx, yy, f"stopped\n{_epochs(r)}\n{r['metric']:.3f}", ha="center", va="center", fontsize=6,
                    color="0.25", zorder=3)  # fmt: skip
        if bad:
            ax.scatter(*zip(*[cell[r["fast_lr"], r["slow_lr"]] for r in bad], strict=True), marker="x", c="red",
                       s=120, label="failed", zorder=4)  # fmt: skip
        if best is not None:
            bx, by = cell[best["fast_lr"], best["slow_lr"]]
            ax.add_patch(plt.Rectangle((bx - 0.5, by - 0.5), 1, 1, fill=False, ec="red", lw=2.5, label="best"))
        ax.set(xlabel="fast lr", ylabel="slow lr")
    else:

        def logxy(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
            return np.log10([r["fast_lr"] for r in rows]), np.log10([r["slow_lr"] for r in rows])

        x, y = logxy(full)
        z = np.array([r["metric"] for r in full], dtype=float)
        if len(full) >= 3:
            try:  # Delaunay fails on collinear points (e.g. a ratio search): then points only
                im = ax.tricontourf(x, y, z, levels=12, cmap="viridis", alpha=0.85)
            except (RuntimeError, ValueError):
                im = None
        if full:
            pts = ax.scatter(x, y, c=z, cmap="viridis", s=60, edgecolors="k", zorder=3,
                             label=f"ran {_epochs({'epochs': budget})}")  # fmt: skip
            im = im or pts
        for r, xx, yy in zip(full, x, y, strict=True):
            ax.annotate(f"{r['metric']:.3f}", (xx, yy), xytext=(4, 4), textcoords="offset points", fontsize=7, zorder=4)
        if stopped:
            sx, sy = logxy(stopped)
            ax.scatter(sx, sy, facecolors="none", edgecolors="0.5", s=50, zorder=3, label="stopped early")
            for r, xx, yy in zip(stopped, sx, sy, strict=True):
                ax.annotate(f"{r['metric']:.3f} @{r['epochs']}", (xx, yy), xytext=(4, -9), textcoords="offset points",
                            fontsize=6, color="0.4", zorder=4)  # fmt: skip
        if bad:
            bx, by = logxy(bad)
            ax.scatter(bx, by, marker="x", c="red", s=80, label="failed", zorder=3)
        if best is not None:
            ax.scatter([np.log10(best["fast_lr"])], [np.log10(best["slow_lr"])], marker="*", s=320, c="red",
                       edgecolors="white", zorder=5, label=f"best {best['metric']:.4g}")  # fmt: skip
        ax.set(xlabel="log10 fast lr", ylabel="log10 slow lr")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{title}\ncoloured: trials that ran the full {_epochs({'epochs': budget})}" if ok else title,
                 fontsize=10)  # fmt: skip
    if im is not None:
        fig.colorbar(im, ax=ax, label=f"{metric} at the end of the trial")
    fig.tight_layout()
    fig.savefig(out, metadata={"Description": best_line(best, metric)})
    plt.close(fig)
    return out


def _rate_curve(ax, full: list[dict], stopped: list[dict], bad: list[dict], best: dict | None, metric: str,
                budget: int) -> None:  # fmt: skip
    """A single-rate search (fast == slow): the metric against the rate, the full-budget trials
    joined, stopped ones grey with their epochs, failed ones red crosses on the axis."""
    full = sorted(full, key=lambda r: r["fast_lr"])
    if full:
        ax.plot([r["fast_lr"] for r in full], [r["metric"] for r in full], "o-", c="tab:blue", zorder=3,
                label=f"ran {_epochs({'epochs': budget})}")  # fmt: skip
    if stopped:
        ax.scatter([r["fast_lr"] for r in stopped], [r["metric"] for r in stopped], facecolors="none",
                   edgecolors="0.5", s=50, zorder=3, label="stopped early")  # fmt: skip
        for r in stopped:
            ax.annotate(f"@{r['epochs']}", (r["fast_lr"], r["metric"]), xytext=(4, -9), textcoords="offset points",
                        fontsize=6, color="0.4")  # fmt: skip
    if bad:
        y0 = min((r["metric"] for r in full + stopped), default=0.0)
        ax.scatter([r["fast_lr"] for r in bad], [y0] * len(bad), marker="x", c="red", s=80, label="failed", zorder=3)
    if best is not None:
        ax.scatter([best["fast_lr"]], [best["metric"]], marker="*", s=320, c="red", edgecolors="white", zorder=5,
                   label=f"best {best['metric']:.4g}")  # fmt: skip
    ax.set(xscale="log", xlabel="learning rate (fast = slow)", ylabel=f"{metric} at the end of the trial")


def best_line(best: dict | None, metric: str) -> str:
    """``best knn20 0.6128 trial 00000 (4 epochs)``: the one sentence every report of a search shares."""
    if best is None:
        return f"best {metric}: none (no trial reported it)"
    return f"best {metric} {best['metric']:.4f} trial {best.get('trial_id', '?')} ({_epochs(best)})"


def _epochs(row: dict) -> str:
    n = row.get("epochs") or 0
    return f"{n} epoch" if n == 1 else f"{n} epochs"
