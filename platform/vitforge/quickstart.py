"""``vitforge quickstart``: the main job on the embedded default, end to end, in minutes on CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from vitforge.config import JobSpec, load_spec
from vitforge.tracking import Tracker, log_evaluation


def default_spec() -> JobSpec:
    """The shipped ``jobs/quickstart.yaml`` (package data: no checkout needed)."""
    return load_spec("quickstart")


def evaluate_mae_ct(spec: JobSpec, mae_export: str, final_export: str, tracker=None) -> dict[str, dict]:
    """Held-out k-NN, linear probe and clustering of raw pixels, a randomly initialised encoder of
    the same size, the MAE encoder and the MAE-CT encoder; logged on the MAE-CT stage's run and the
    job's run, the MAE-CT encoder's own numbers also on its registered model version."""
    import torch

    from vitforge.eval.evaluate import evaluate, raw_pixel_card
    from vitforge.inference import build_encoder, read_card
    from vitforge.train.inputs import builtin_options

    card = read_card(final_export)
    opts = builtin_options(spec)
    common = {"source": spec.data.source, "train_split": spec.data.split, "test_split": spec.data.eval_split}
    common |= {"ks": (20,), "builtin_options": opts}
    torch.manual_seed(spec.seed)
    random_encoder = build_encoder(spec.model)  # before any evaluation: the linear probe reseeds torch
    norm = card["normalization"]
    evals = {
        "raw pixels": evaluate(None, card=raw_pixel_card(spec.model.img_size, norm["mean"], norm["std"]), **common),
        "random init": evaluate(None, card=card, encoder=random_encoder, **common),
    }
    for label, export in (("MAE", mae_export), ("MAE-CT", final_export)):
        evals[label] = evaluate(export, out_dir=Path(export) / "eval", name=label, **common)
    if tracker is not None and card.get("mlflow_run_id"):
        run_id = card["mlflow_run_id"]
        row = {}
        for label, m in evals.items():
            key = label.lower().replace(" ", "_").replace("-", "")
            row |= {f"eval_{key}_{k}": v for k, v in m.items()}
        log_evaluation(tracker, run_id, row, model_metrics=evals["MAE-CT"], summary=evals)
        tracker.log_artifacts(run_id, Path(final_export) / "eval", "eval")
    return evals


def summary_table(evals: dict[str, dict], source: str, table_cls):
    """The quickstart's table: one row per encoder, held-out split."""
    table = table_cls(title=f"quickstart: {source}, held-out split (k-NN chance = 1 / number of classes)")
    for col in ("encoder", "k-NN (k=20)", "linear probe", "clustering acc", "NMI"):
        table.add_column(col)
    for label, m in evals.items():
        table.add_row(label, f"{m['knn20']:.3f}", f"{m['linear_probe']:.3f}", f"{m['cluster_accuracy']:.3f}",
                      f"{m['nmi']:.3f}")  # fmt: skip
    return table


def run_quickstart(
    spec_path: str | None, cloob: bool, echo: Callable[[str], None] = print, seed: int | None = None
) -> dict:
    """Both jobs, the evaluation and the summary; ``seed`` overrides both specs' seeds (the same
    seed gives the same table: data order, augmentations and initialisation all follow it)."""
    from rich.console import Console
    from rich.table import Table

    from vitforge.eval.zeroshot import shapes_zero_shot
    from vitforge.inference import read_card
    from vitforge.train.inputs import builtin_options
    from vitforge.train.run import ensure_ray, run_job

    console = Console()
    ensure_ray()
    spec = load_spec(spec_path) if spec_path else default_spec()
    if seed is not None:
        spec.seed = seed
    t0 = time.perf_counter()
    results = run_job(spec, log=lambda m: console.print(f"[bold cyan]vitforge[/] {m}"), show=True)
    mae_export, final_export = results[0].export_dir, results[-1].export_dir
    tracker = Tracker(spec.tracking.tracking_uri, spec.tracking.experiment or spec.name, check=False)
    with console.status("evaluating raw pixels, a random encoder, MAE and MAE-CT (k-NN, linear probe, k-means)"):
        evals = evaluate_mae_ct(spec, mae_export, final_export, tracker)
    table = summary_table(evals, spec.data.source, Table)
    zs = None
    if cloob:
        cspec = load_spec("quickstart-cloob")
        if seed is not None:
            cspec.seed = seed
        cres = run_job(cspec, log=lambda m: console.print(f"[bold cyan]vitforge[/] {m}"), show=True)
        zs = shapes_zero_shot(cres[-1].export_dir, builtin_options(cspec))
        evals["CLOOB"] = zs
        run_id = read_card(cres[-1].export_dir).get("mlflow_run_id")
        log_evaluation(tracker, run_id, {f"eval_zeroshot_{k}": v for k, v in zs.items()}, model_metrics=zs)
    console.print(table)
    if zs:
        console.print(
            f"CLOOB on shapes, held-out zero-shot top-1 (chance 0.167 and 0.125):"
            f" shape kind {zs['shape_top1']:.3f}, colour {zs['colour_top1']:.3f}"
        )
    console.print(f"done in {time.perf_counter() - t0:.0f}s. MLflow: mlflow ui --backend-store-uri {tracker.uri}")
    console.print("serve and query the MAE-CT encoder:")
    console.print(f"  vitforge serve up encoder={final_export}")
    console.print("  vitforge serve embed ./my-images --url http://127.0.0.1:8000   # or POST /v1/embeddings/image")
    console.print(f"  (registered as models:/{spec.tracking.registered_model or spec.name}@{spec.tracking.alias})")
    return evals
