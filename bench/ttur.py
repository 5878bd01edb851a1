"""Does TTUR pay? The best (fast, slow) pair against the best single learning rate (fast == slow), at
equal compute, for MAE-CT's contrastive tuning and for CLOOB.

Protocol, the same for both arms and both methods: each arm is a grid search of the same number of
trials of the same epochs (``vitforge tune``'s ``run_search``, grid, no early stopping), ranked by
held-out k-NN on seed 0; its winner is then trained again on seeds 1, 2 and 3 (never the selection
seed) and evaluated on the held-out split: k-NN (k=20) for both, zero-shot top-1 for CLOOB.

- TTUR arm: fast x slow over a 3 x 3 grid (its diagonal is three single rates);
- single-rate arm: fast == slow at 9 log-spaced rates over the same range.

MAE-CT: contrastive tuning (fast = the NNCLR head, slow = the encoder) of the quickstart's recipe
(``jobs/quickstart.yaml``: micro ViT, digits-cluttered at clutter 0), 10 of its 40 epochs, from its
MAE and NNCLR-head stages trained here once at their own epochs (20, 5); rates 1e-3 to 1e-2 around
the spec's 4e-3 / 2e-3. CLOOB: ``jobs/quickstart-cloob.yaml`` (fast = text tower, projections; slow =
the image tower) on the digit caption set of ``bench.explore.caption_set``, 28 px, 15 epochs of
which 3 InfoNCE (the spec's 30 and 6, halved); rates 3e-4 to 3e-3 around the spec's 1e-3 (3e-3
falls back onto CLOOB's collapsed point). Both searches rank by held-out k-NN.

    python -m bench.ttur [--smoke] [--only mae-ct|cloob]   # --only keeps the other part's saved rows
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.common import local_ray, over_seeds, print_table, save_part

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3)


def _grid(lo: float, hi: float, smoke: bool) -> dict[str, list[dict]]:
    """The two arms' (fast, slow) pairs, as many in each: an n x n grid and n^2 single rates over
    the same range (n = 3; 2 in a smoke run)."""
    n = 2 if smoke else 3
    side = [float(v) for v in np.geomspace(lo, hi, n)]
    return {
        "TTUR (fast, slow)": [{"fast_lr": f, "slow_lr": s} for f in side for s in side],
        "single rate": [{"fast_lr": float(v), "slow_lr": float(v)} for v in np.geomspace(lo, hi, n * n)],
    }


def _search(spec, pairs: list[dict], tag: str, out: str):
    """One arm's search over exactly these pairs: a fast x slow grid, or fast x ratio 1."""
    from vitforge.config import load_spec
    from vitforge.tune import run_search

    fasts = sorted({p["fast_lr"] for p in pairs})
    single = all(p["fast_lr"] == p["slow_lr"] for p in pairs)
    grid = (
        f"{{fast_lr: {fasts}, ratio: [1.0]}}"
        if single
        else f"{{fast_lr: {fasts}, slow_lr: {sorted({p['slow_lr'] for p in pairs})}}}"
    )
    where = [f"checkpoint.storage_path={out}", "tracking.enabled=false", f"name={spec.name}-{tag}"]
    search = ["tune.search_alg=grid", f"tune.grid={grid}", "tune.scheduler=none", "tune.mode=direct"]
    overrides = [*where, *search, "tune.metric=knn20"]
    return run_search(load_spec(data=spec.model_dump(mode="json"), overrides=overrides), log=lambda m: None)


def _retrain(spec, pair: dict, seed: int, init_from: str | None, zero_shot) -> dict[str, float]:
    """The winner again on another seed, in process; held-out k-NN (and zero-shot) at its end."""
    from vitforge.config import load_spec
    from vitforge.eval.hook import knn_hook
    from vitforge.train.inputs import load_train_data
    from vitforge.train.loop import run_stage
    from vitforge.train.runners import local_context
    from vitforge.tune.search import trial_spec

    s = trial_spec(spec, pair)
    s = load_spec(data=s.model_dump(mode="json"), overrides=[f"seed={seed}", "tracking.enabled=false"])
    ctx, norm = local_context(s, 0, lambda m, d: None, init_from=init_from, log=lambda m: None)
    knn = knn_hook(s, norm, load_train_data(s), load_train_data(s, s.data.eval_split))
    ctx.eval_fn = lambda task: knn(task) | (zero_shot(task, s, norm) if zero_shot else {})
    run_stage(ctx, s, 0)
    return {k: v for k, v in ctx.history[-1].items() if k in ("knn20", "zeroshot_top1")}


def _caption_zero_shot(task, spec, norm) -> dict[str, float]:
    from bench.explore.caption_set import NAMES, TEMPLATES
    from vitforge.data.tokenizers import make_tokenizer
    from vitforge.eval.features import extract_features
    from vitforge.eval.zeroshot import class_embeddings, zero_shot
    from vitforge.train.inputs import load_train_data

    model = task.exports()["model"]
    was = model.training
    model.eval()
    card = {"model": spec.model.model_dump(), "normalization": norm}
    x, y = extract_features(model, card, load_train_data(spec, spec.data.eval_split))
    tok = make_tokenizer(spec.model.tokenizer, spec.model.context_length)
    top1 = zero_shot(x, y, class_embeddings(model, tok, NAMES, TEMPLATES))["top1"]
    model.train(was)
    return {"zeroshot_top1": float(top1)}


def _method(name: str, spec, lo: float, hi: float, init_from: str | None, zs, smoke: bool, out: str) -> list[dict]:
    rows = []
    for arm, pairs in _grid(lo, hi, smoke).items():
        res = _search(spec, pairs, "ttur" if arm.startswith("TTUR") else "single", out)
        pair = {"fast_lr": res.best["fast_lr"], "slow_lr": res.best["slow_lr"]}
        scores = [_retrain(spec, pair, s, init_from, zs) for s in (SEEDS[:1] if smoke else SEEDS)]
        row = {"method": name, "arm": arm, "trials": len(res.table), **pair, "search_knn20": res.best["metric"]}
        for key in ("knn20", "zeroshot_top1"):
            vals = [sc[key] for sc in scores if key in sc]
            if vals:
                row |= over_seeds(key, vals)
        rows.append(row)
        print(row, flush=True)
    return rows


def _mae_ct(smoke: bool, out: str) -> list[dict]:
    """The quickstart's stages 1-2 once (2 Ray workers), then the two searches of stage 3 from their export."""
    from vitforge.config import load_spec
    from vitforge.train.run import run_job

    budget = ["stages.0.epochs=1", "stages.1.epochs=1"] if smoke else []
    where = [f"checkpoint.storage_path={out}", "tracking.enabled=false", "name=ttur-maect-init"]
    full = load_spec(ROOT / "jobs" / "quickstart.yaml", [*where, *budget]).model_dump(mode="json")
    init = run_job(load_spec(data=full | {"stages": full["stages"][:2]}), log=lambda m: None)[-1].export_dir
    ct = full | {"name": "ttur-ct", "stages": full["stages"][2:], "init_from": init}
    ct["stages"][0]["epochs"] = 1 if smoke else 10
    return _method("MAE-CT contrastive tuning", load_spec(data=ct), 1e-3, 1e-2, init, None, smoke, out)


def _cloob(smoke: bool, out: str) -> list[dict]:
    """CLOOB's two searches on the digit caption set."""
    from bench.explore.caption_set import make
    from vitforge.config import load_spec

    data = Path(out) / "captions"
    make(data, 1 if smoke else 3, "jittered", 0)
    epochs = (1, 0) if smoke else (15, 3)
    budget = [f"stages.0.epochs={epochs[0]}", f"stages.0.infonce_epochs={epochs[1]}"]
    overrides = [f"data.source={data}", "model.img_size=28", *budget, "name=ttur-cloob"]
    cloob = load_spec(ROOT / "jobs" / "quickstart-cloob.yaml", overrides)
    return _method("CLOOB", cloob, 3e-4, 3e-3, None, _caption_zero_shot, smoke, out)


PARTS = {"mae-ct": _mae_ct, "cloob": _cloob}


def run(smoke: bool = False, only: tuple[str, ...] = tuple(PARTS)) -> list[dict]:
    out = tempfile.mkdtemp(prefix="bench-ttur-")
    with local_ray(env={"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}):
        return [row for part in only for row in PARTS[part](smoke, out)]


COLS = ["method", "arm", "trials", "fast_lr", "slow_lr", "search_knn20"]
COLS += [f"{m}{s}" for m in ("knn20", "zeroshot_top1") for s in ("", "_std", "_seeds")]
TITLE = "TTUR pair vs single rate at equal compute (held-out, mean over seeds 1-3)"


def main(argv: list[str] | None = None) -> list[dict]:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="1 epoch, 2 x 2 grids, one seed; no results written")
    ap.add_argument("--only", nargs="+", choices=tuple(PARTS), default=list(PARTS))
    args = ap.parse_args(argv)
    rows = run(args.smoke, tuple(args.only))
    print_table(TITLE, rows, COLS)
    if not args.smoke:  # the part not run this time keeps its saved rows
        save_part("ttur", rows, "method")
    return rows


if __name__ == "__main__":
    main()
