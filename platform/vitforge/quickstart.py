"""``vitforge quickstart``: the main job on the embedded default, end to end, in minutes on CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from vitforge.config import JobSpec, load_spec


def default_spec() -> JobSpec:
    """The shipped ``jobs/quickstart.yaml`` (package data: no checkout needed)."""
    return load_spec("quickstart")


def run_quickstart(spec_path: str | None, cloob: bool, echo: Callable[[str], None] = print) -> dict:
    import ray
    from rich.console import Console
    from rich.table import Table

    from vitforge.eval.evaluate import evaluate
    from vitforge.tracking import Tracker
    from vitforge.train.engine import cpu_accelerator_env
    from vitforge.train.export import read_card
    from vitforge.train.run import run_job

    console = Console()
    cpu_accelerator_env()
    if not ray.is_initialized():
        from vitforge.train.run import local_ray

        local_ray()
    spec = load_spec(spec_path) if spec_path else default_spec()
    t0 = time.perf_counter()
    results = run_job(spec, log=lambda m: console.print(f"[bold cyan]vitforge[/] {m}"), show=True)
    mae_export, final_export = results[0].export_dir, results[-1].export_dir
    tracker = Tracker(spec.tracking.tracking_uri, spec.tracking.experiment or spec.name, check=False)
    table = Table(title="quickstart: digits-cluttered, held-out split")
    for col in ("encoder", "k-NN (k=20)", "linear probe", "clustering acc", "NMI"):
        table.add_column(col)
    evals = {}
    with console.status("evaluating MAE and MAE-CT encoders (k-NN, linear probe, k-means)"):
        for label, export in (("MAE", mae_export), ("MAE-CT", final_export)):
            m = evaluate(export, spec.data.source, ks=(20,), out_dir=Path(export) / "eval", name=label)
            evals[label] = m
            run_id = read_card(export).get("mlflow_run_id")
            tracker.log_metrics(run_id, [{"step": 0, **{f"eval_{k}": v for k, v in m.items()}}])
            tracker.log_artifacts(run_id, Path(export) / "eval", "eval")
            table.add_row(label, f"{m['knn20']:.3f}", f"{m['linear_probe']:.3f}", f"{m['cluster_accuracy']:.3f}",
                          f"{m['nmi']:.3f}")  # fmt: skip
    zs = None
    if cloob:
        cspec = load_spec("quickstart-cloob")
        cres = run_job(cspec, log=lambda m: console.print(f"[bold cyan]vitforge[/] {m}"), show=True)
        zs = evaluate(cres[-1].export_dir, "shapes", ks=(20,), probe=False, cluster=False,
                      builtin_options={"n": 2000, "size": 32})  # fmt: skip
        evals["CLOOB"] = zs
    console.print(table)
    if zs:
        console.print(
            f"CLOOB on shapes: zero-shot top-1 {zs['zeroshot_top1']:.3f}, top-5 {zs['zeroshot_top5']:.3f} (8 classes)"
        )
    console.print(f"done in {time.perf_counter() - t0:.0f}s. MLflow: mlflow ui --backend-store-uri {tracker.uri}")
    console.print("serve and query the MAE-CT encoder:")
    console.print(f"  vitforge serve up encoder={final_export}")
    console.print("  vitforge serve embed ./my-images --url http://127.0.0.1:8000   # or POST /v1/embeddings/image")
    console.print(f"  (registered as models:/{spec.tracking.registered_model or spec.name}@{spec.tracking.alias})")
    return evals
