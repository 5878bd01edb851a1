"""The search's heatmap draws every kind of table a search can produce (pure matplotlib)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitforge.tune.report import best_line, heatmap_png, rank_key, rungs


def _row(fast: float, slow: float, metric: float | None, epochs: int = 2) -> dict:
    return {"fast_lr": fast, "slow_lr": slow, "metric": metric, "epochs": epochs}


def _random(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = [_row(10 ** rng.uniform(-4, -2), 10 ** rng.uniform(-5, -3), float(rng.uniform(0.3, 0.9)), int(e))
            for e in rng.integers(1, 4, n)]  # fmt: skip
    return sorted(rows, key=lambda r: -r["metric"])  # best first, as results_table sorts


CASES = {
    "random": _random(8),
    "random with a failed trial": [*_random(5), _row(1e-2, 1e-3, None, 0)],
    "grid": sorted(
        [_row(f, s, f * 10 + s * 100, 2) for f in (1e-3, 1e-2) for s in (1e-4, 1e-3)], key=lambda r: -r["metric"]
    ),
    "collinear (a ratio search)": [_row(10.0**-k, 10.0 ** (-k - 1), 0.5 + 0.1 * k, 1) for k in (2, 3, 4)],
    "single rate (fast == slow): a curve": sorted(
        [_row(10.0**-k, 10.0**-k, 0.9 - 0.1 * abs(k - 3), 4 if k < 4 else 1) for k in (2, 3, 4, 5)]
        + [_row(1.0, 1.0, None, 0)],
        key=lambda r: rank_key(r["epochs"], r["metric"], "max"),
    ),
    "every trial failed": [_row(1e-3, 1e-4, None, 0), _row(1e-2, 1e-4, None, 0)],
    "one trial": [_row(1e-3, 1e-4, 0.7, 3)],
}


@pytest.mark.parametrize("case", CASES)
def test_heatmap_draws_every_search(case: str, tmp_path: Path) -> None:
    out = heatmap_png(CASES[case], "knn20", tmp_path / "heat.png", case)
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape[0] > 300 and img.shape[1] > 300
    # Something was drawn: the plot is not a blank canvas (the best mark is pure red where drawn).
    assert img.std() > 10
    red = ((img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)).sum()
    has_best = any(r["metric"] is not None for r in CASES[case])
    has_failed = any(r["metric"] is None for r in CASES[case])
    assert (red > 50) == (has_best or has_failed)


def test_the_png_names_the_tables_best(tmp_path: Path) -> None:
    rows = sorted(_random(8), key=lambda r: rank_key(r["epochs"], r["metric"], "max"))
    out = heatmap_png(rows, "knn20", tmp_path / "heat.png", "t")
    assert Image.open(out).info["Description"] == best_line(rows[0], "knn20")
    assert rows[0]["epochs"] == max(r["epochs"] for r in rows)  # the best ran the full budget


def test_trials_rank_at_the_largest_budget_they_share() -> None:
    """A trial stopped early never outranks one that ran further, whatever its value; at the same
    budget the value decides; a trial without a value is last."""
    rows = [_row(1, 1, 0.9, 1), _row(2, 2, 0.5, 4), _row(3, 3, 0.6, 4), _row(4, 4, None, 0), _row(5, 5, 0.7, 2)]
    order = sorted(rows, key=lambda r: rank_key(r["epochs"], r["metric"], "max"))
    assert [r["fast_lr"] for r in order] == [3, 2, 5, 1, 4]
    order = sorted(rows, key=lambda r: rank_key(r["epochs"], r["metric"], "min"))  # a loss: lower first
    assert [r["fast_lr"] for r in order] == [2, 3, 5, 1, 4]


def test_rungs_are_ashas() -> None:
    from vitforge.config import load_spec

    root = Path(__file__).resolve().parents[2]
    spec = load_spec(root / "jobs" / "tiny-ttur.yaml", ["stages.0.epochs=8"])  # grace 1, factor 2
    assert rungs(spec, 8) == [1, 2, 4, 8]
    assert rungs(load_spec(root / "jobs" / "tiny-ttur.yaml", ["tune.scheduler=none"]), 4) == [4]
