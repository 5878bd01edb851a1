"""The search's heatmap draws every kind of table a search can produce (pure matplotlib)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitforge.tune.report import heatmap_png


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
