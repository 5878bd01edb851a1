"""CLOOB against CLIP over seeds, through the path users take: the shipped ``jobs/quickstart-cloob.yaml``
on a local Ray cluster (2 workers, DeepSpeed), and the same spec with ``stages.0.name=clip`` for
CLIP (same towers, data, budget and optimizer). Three data sets:

- ``shapes``: the quickstart's CLOOB half as ``vitforge quickstart`` runs it; held-out zero-shot
  top-1 on the shape kind (6 classes, chance 0.167) and on the colour (8, chance 0.125);
- the digit caption set of ``bench.explore.caption_set`` (4,191 / 400 pairs, 10 classes, 5 caption
  templates, 28 px): held-out zero-shot top-1 over its templates (chance 0.10) and image k-NN;
- ``mnist``: the same captions on 5,000 real MNIST digits (``bench.explore.mnist_folder``, 4,000 /
  1,000 pairs, 28 px): the closest stand-in for a user's real caption set.

Prints the mean, spread and per-seed values, and draws every run's epoch loss into
``bench/results/cloob_seeds.png`` (CLOOB's collapsed value 2 ln(B-1) / tau^-1 dashed).

    python -m bench.cloob_seeds [--smoke] [--only shapes|captions|mnist]   # about 15 min each
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from bench.common import RESULTS, local_ray, over_seeds, print_table, save_part

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
OBJECTIVES = ("cloob", "clip")
NAME = "cloob_seeds"


def _train(source: str, objective: str, seed: int, out: str, smoke: bool):
    from vitforge.config import load_spec
    from vitforge.train.run import run_job

    data = [] if source == "shapes" else [f"data.source={source}", "model.img_size=28"]
    budget = ["stages.0.epochs=2", "stages.0.infonce_epochs=1"] if smoke else []
    ident = [f"seed={seed}", f"stages.0.name={objective}", f"name=cloob-seeds-{Path(source).name}-{objective}-{seed}"]
    where = [f"checkpoint.storage_path={out}", "tracking.enabled=false"]
    spec = load_spec(ROOT / "jobs" / "quickstart-cloob.yaml", [*data, *budget, *ident, *where])
    return spec, run_job(spec, log=lambda m: None)[-1]


def _scores(source: str, spec, export: str) -> dict[str, float]:
    from vitforge.eval.evaluate import evaluate
    from vitforge.eval.zeroshot import shapes_zero_shot
    from vitforge.train.inputs import builtin_options

    if source == "shapes":
        return shapes_zero_shot(export, builtin_options(spec))
    from bench.explore.caption_set import NAMES, TEMPLATES

    m = evaluate(export, source, ks=(20,), probe=False, cluster=False, class_names=NAMES, templates=TEMPLATES)
    return {"zeroshot_top1": m["zeroshot_top1"], "knn20": m["knn20"]}


def _plot(rows: list[dict], path: Path) -> None:
    """Every run's epoch loss: one row of panels per data set, CLOOB left and CLIP right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = list(dict.fromkeys(r["data"] for r in rows))
    fig, axes = plt.subplots(len(sources), 2, figsize=(10, 3.6 * len(sources)), squeeze=False)
    for row in rows:
        ax = axes[sources.index(row["data"])][OBJECTIVES.index(row["objective"])]
        for seed, losses in zip(SEEDS, row["curves"], strict=False):
            ax.plot(range(1, len(losses) + 1), losses, marker=".", label=f"seed {seed}")
        if row["objective"] == "cloob":
            ax.axhline(row["collapsed_loss"], ls="--", c="grey", label="collapsed 2 ln(B-1)/τ⁻¹")
        ax.set_title(f"{row['objective'].upper()} on {row['data']}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("epoch loss (mean over workers)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(smoke: bool, only: list[str]) -> list[dict]:
    from bench.explore.caption_set import make

    out = tempfile.mkdtemp(prefix="bench-cloob-seeds-")
    sources = []
    if "shapes" in only:
        sources.append("shapes")
    if "captions" in only:
        make(Path(out) / "captions", 1 if smoke else 3, "jittered", 0)
        sources.append(str(Path(out) / "captions"))
    if "mnist" in only:
        make(Path(out) / "mnist", 1, "mnist", 0)
        sources.append(str(Path(out) / "mnist"))
    rows = []
    seeds = SEEDS[:1] if smoke else SEEDS
    with local_ray(env={"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}):
        for source in sources:
            for objective in OBJECTIVES:
                per_seed, curves = [], []
                for seed in seeds:
                    spec, res = _train(source, objective, seed, out, smoke)
                    curves.append([h["epoch_loss"] for h in res.history if "epoch_loss" in h])
                    per_seed.append(_scores(source, spec, res.export_dir) | {"final_loss": curves[-1][-1]})
                    print(source, objective, seed, per_seed[-1], f"{res.wall_s:.0f}s", flush=True)
                stage = spec.stages[0]
                row: dict = {"data": Path(source).name, "objective": objective, "seeds": len(per_seed)}
                for key in per_seed[0]:
                    row |= over_seeds(key, [s[key] for s in per_seed])
                row["curves"] = curves
                row["collapsed_loss"] = 2 * math.log(stage.global_batch_size - 1) / stage.inv_tau
                rows.append(row)
    if smoke:  # a smoke run writes nothing to results
        _plot(rows, Path(out) / "cloob_seeds.png")
        print(f"loss curves: {Path(out) / 'cloob_seeds.png'}")
    return rows


METRICS = ("zeroshot_top1", "knn20", "shape_top1", "colour_top1")
COLS = ["data", "objective", "seeds"]
COLS += [f"{m}{suffix}" for m in METRICS for suffix in ("", "_std", "_seeds")] + ["final_loss_seeds"]
TITLE = "CLOOB vs CLIP, the shipped quickstart-cloob spec, held-out zero-shot (mean, population std, seeds)"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="2 epochs, one seed; no results written")
    ap.add_argument("--only", nargs="+", choices=("shapes", "captions", "mnist"), default=["shapes", "captions"])
    args = ap.parse_args(argv)
    rows = run(args.smoke, args.only)
    print_table(TITLE, rows, COLS)
    if not args.smoke:  # the data sets not run this time keep their saved rows
        rows = save_part(NAME, rows, "data")
        _plot(rows, RESULTS / "cloob_seeds.png")
        print(f"loss curves: {RESULTS / 'cloob_seeds.png'}")
    return rows


if __name__ == "__main__":
    main()
