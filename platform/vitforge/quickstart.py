"""``vitforge quickstart``: the main job on the embedded default, end to end, in minutes on CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import yaml

from vitforge.config import JobSpec, load_spec

# The same job as jobs/quickstart.yaml (a test keeps them equal), so an installed package needs
# no checkout to run it.
QUICKSTART_YAML = """
name: quickstart
seed: 0
model: {size: test, patch_size: 4, img_size: 32}
data: {source: digits-cluttered, loader: ray}
scaling: {num_workers: 2, cpus_per_worker: 1}
deepspeed: {zero_stage: 2}
stages:
  - {name: mae, epochs: 10, global_batch_size: 128,
     optimizer: {fast_lr: 1.5e-3, slow_lr: 1.5e-3, warmup_epochs: 1, lr_scaling: none}}
  - {name: nnclr_head, epochs: 3, global_batch_size: 128, head_hidden_dim: 256, head_out_dim: 64,
     predictor_hidden_dim: 256, queue_size: 1024, temperature: 0.2,
     optimizer: {fast_lr: 1.0e-3, slow_lr: 1.0e-3, weight_decay: 1.0e-5, lr_scaling: none}}
  - {name: contrastive_tuning, epochs: 5, global_batch_size: 128, head_hidden_dim: 256, head_out_dim: 64,
     predictor_hidden_dim: 256, queue_size: 1024, topk: 5, temperature: 0.2,
     optimizer: {fast_lr: 1.0e-3, slow_lr: 5.0e-4, layer_decay: 0.65, lr_scaling: none}}
checkpoint: {storage_path: ./runs, keep: 2}
tracking: {log_every_steps: 5, report_every_steps: 25, alias: champion}
"""

CLOOB_YAML = """
name: quickstart-cloob
seed: 0
model: {size: test, patch_size: 4, img_size: 32, embed_dim: 64, context_length: 80}
data: {source: shapes, builtin_options: {n: 2000}, loader: ray}
scaling: {num_workers: 2}
deepspeed: {zero_stage: 0}
stages:
  - {name: cloob, epochs: 4, global_batch_size: 128,
     optimizer: {fast_lr: 1.0e-3, slow_lr: 1.0e-3, weight_decay: 0.05, warmup_epochs: 1, lr_scaling: none}}
checkpoint: {storage_path: ./runs, keep: 2}
tracking: {log_every_steps: 5, report_every_steps: 25}
"""


def default_spec() -> JobSpec:
    return load_spec(data=yaml.safe_load(QUICKSTART_YAML))


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
        cspec = load_spec(data=yaml.safe_load(CLOOB_YAML))
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
