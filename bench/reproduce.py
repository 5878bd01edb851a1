"""The papers' claims at small scale, on built-in offline data, tiny ViTs on CPU, one seed budget.

1. digits and digits-cluttered (with the quickstart's options: clutter 0), the quickstart's
   recipe: raw pixels vs MAE vs MAE-CT vs MAE-CT with strong augmentations: k-NN (k=20), linear
   probe and clustering accuracy on the held-out split. Paper's direction: MAE-CT >> MAE on k-NN
   and clustering, > MAE on linear probe. (At full clutter, 2026-11-24: raw pixels 0.72 k-NN,
   MAE 0.16, MAE-CT 0.14: a test-size ViT does not learn through it at this budget.)
2. shapes: CLIP vs CLOOB zero-shot top-1 on held-out images, several seeds, on the shape kind
   (the label) and on the colour named in the caption. Paper's direction: CLOOB > CLIP.

Stages run in-process (``vitforge.train.runners.run_local``: the same loop, engine and data path as
on Ray, without the per-stage start-up), then ``vitforge.eval.evaluate``.

    python -m bench.reproduce                # the table in bench/README.md (about 40 min here)
    python -m bench.reproduce --smoke        # a few steps each (CI)
    python -m bench.reproduce --only shapes  # some parts (table.json keeps the others)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, print_table

PARTS = ("digits", "digits-cluttered", "shapes")


def _spec(name: str, storage: str, stages: list[dict], model: dict, source: str, seed: int, **data):
    from vitforge.config import load_spec

    return load_spec(
        data={
            "name": name,
            "seed": seed,
            "model": model,
            "data": {"source": source, **data},
            "scaling": {"num_workers": 1},
            "stages": stages,
            "checkpoint": {"storage_path": storage, "keep": 1},
            "tracking": {"enabled": False, "log_every_steps": 20},
        }
    )


def _train(spec, storage: str) -> list[str]:
    """Every stage of ``spec`` in process; returns the export folders."""
    from vitforge.train.inputs import load_train_data, normalization_for
    from vitforge.train.run import export_stage, job_dir
    from vitforge.train.runners import run_local

    norm = normalization_for(spec, load_train_data(spec))
    exports, init = [], spec.init_from
    for i, stage in enumerate(spec.stages):
        ck = Path(storage) / f"{spec.name}-ck{i}"
        ctx = run_local(spec, i, str(ck), init_from=init)
        last = max(ck.iterdir(), key=lambda p: int(p.name.split("-")[1]))
        out = export_stage(spec, i, init, str(last), norm, {"final_metrics": ctx.history[-1] if ctx.history else {}})
        print(f"  {spec.name} {stage.name}: loss {ctx.history[0]['loss']:.3f} -> {ctx.history[-1]['loss']:.3f}")
        exports.append(str(out))
        init = str(out)
    del job_dir
    return exports


def mae_ct_rows(storage: str, source: str, epochs: dict[str, float], seed: int, out_dir: Path) -> list[dict]:
    from vitforge.config import load_spec
    from vitforge.eval.evaluate import evaluate, raw_pixel_card
    from vitforge.inference import read_card

    # The quickstart's recipe, stage by stage (jobs/quickstart.yaml says where it leaves the papers').
    qs = load_spec("quickstart")
    model = qs.model.model_dump(mode="json")
    mae_stage, head, tune = (
        {**st.model_dump(mode="json", exclude={"max_steps"}), "epochs": epochs[key]}
        for st, key in zip(qs.stages, ("mae", "head", "tune"), strict=True)
    )
    # The quickstart's data options where it is the quickstart's source (digits-cluttered: clutter 0).
    data = {"builtin_options": qs.data.builtin_options} if source == qs.data.source else {}
    rows = []
    t0 = time.perf_counter()
    mae_export = _train(_spec(f"mae-{source}", storage, [mae_stage], model, source, seed, **data), storage)[-1]
    t_mae = time.perf_counter() - t0
    card = read_card(mae_export)
    variants = {"raw pixels": None, "MAE": mae_export}
    for label, strong in (("MAE-CT", False), ("MAE-CT + augs", True)):
        st = [{**head, "strong_aug": strong}, {**tune, "strong_aug": strong}]
        spec = _spec(f"maect-{source}-{int(strong)}", storage, st, model, source, seed, **data)
        spec.init_from = mae_export
        variants[label] = _train(spec, storage)[-1]
    for label, export in variants.items():
        kw = (
            {"card": raw_pixel_card(model["img_size"], card["normalization"]["mean"], card["normalization"]["std"])}
            if export is None
            else {}
        )
        name = f"{source}_{label.replace(' ', '_')}"
        m = evaluate(export, source, ks=(20,), out_dir=out_dir / source, name=name, **data, **kw)
        rows.append({"method": label, "knn20": m["knn20"], "linear_probe": m["linear_probe"],
                     "cluster_acc": m["cluster_accuracy"], "nmi": m["nmi"]})  # fmt: skip
    print(f"  ({source}: MAE pretraining took {t_mae:.0f}s)")
    return rows


def cloob_rows(storage: str, epochs: float, seeds: list[int]) -> list[dict]:
    from vitforge.eval.zeroshot import shapes_zero_shot

    model = {"size": "test", "patch_size": 4, "img_size": 32, "embed_dim": 64, "context_length": 32}
    opts = {"n": 4000, "size": 32}
    rows = []
    for objective in ("clip", "cloob"):
        accs: dict[str, list[float]] = {"shape": [], "colour": []}
        for seed in seeds:
            stage = {"name": objective, "epochs": epochs, "global_batch_size": 128,
                     "optimizer": {"lr_scaling": "none", "fast_lr": 3e-3, "slow_lr": 3e-3, "weight_decay": 0.05,
                                   "warmup_epochs": 1}}  # fmt: skip
            spec = _spec(f"{objective}-{seed}", storage, [stage], model, "shapes", seed, builtin_options={"n": 4000})
            for k, v in shapes_zero_shot(_train(spec, storage)[-1], opts).items():
                accs[k.removesuffix("_top1")].append(v)
        row = {"method": objective.upper()}
        for k, v in accs.items():
            row[f"{k}_top1_mean"] = sum(v) / len(v)
            row[f"{k}_top1_each"] = [round(a, 3) for a in v]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", choices=PARTS, default=PARTS, help="parts to run (default: all)")
    args = ap.parse_args(argv)
    storage = tempfile.mkdtemp(prefix="vitforge-repro-")
    out_dir = RESULTS / "reproduce" if not args.smoke else Path(storage) / "plots"
    if args.smoke:
        epochs, cl_epochs, seeds = {"mae": 0.2, "head": 0.2, "tune": 0.2}, 0.1, [0]
    else:
        epochs, cl_epochs, seeds = {"mae": 60, "head": 20, "tune": 60}, 30, [0, 1, 2]
    t0 = time.perf_counter()
    cols = ["method", "knn20", "linear_probe", "cluster_acc", "nmi"]
    tables = {}
    for source in (p for p in PARTS[:2] if p in args.only):
        tables[source] = mae_ct_rows(storage, source, epochs, args.seed, out_dir)
        print_table(f"{source} (held-out split)", tables[source], cols)
    b = cloob_rows(storage, cl_epochs, seeds) if "shapes" in args.only else []
    zs = ["method", "shape_top1_mean", "shape_top1_each", "colour_top1_mean", "colour_top1_each"]
    if b:
        print_table("shapes zero-shot (chance 0.125 for both)", b, zs)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s; epochs {epochs}, CLIP/CLOOB {cl_epochs} epochs, seeds {seeds}")
    if not args.smoke:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "table.json"  # a run of some parts keeps the others' rows
        old = json.loads(path.read_text()) if path.is_file() else {}
        new = {**tables, **({"shapes": b, "clip_cloob_epochs": cl_epochs} if b else {}), "epochs": epochs}
        path.write_text(json.dumps({**old, **new}, indent=2))


if __name__ == "__main__":
    main()
