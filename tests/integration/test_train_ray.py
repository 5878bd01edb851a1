"""Stages on 2 real Ray Train workers with real DeepSpeed engines (gloo, CPU; fp32 and bf16)."""

import json
import threading
import time
from pathlib import Path

import pytest
import torch

from vitforge.config import load_spec
from vitforge.inference import embed, load_encoder
from vitforge.train.export import probe_images

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# Small images take mild crops and no flips (README, "Recipes"): a crop of 8% of 16x16 pixels is noise.
HEAD = {"head_hidden_dim": 64, "head_out_dim": 16, "predictor_hidden_dim": 64, "queue_size": 256, "temperature": 0.2,
        "crop_scale": [0.6, 1.0], "flip": False}  # fmt: skip


def mae_ct(tmp_path: Path, zero: int, steps: tuple[int, int, int], **extra) -> dict:
    lr = {"lr_scaling": "none"}
    many = {"epochs": 10}  # max_steps decides the plan
    return {
        "name": f"mae-ct-z{zero}",
        "model": {"size": "test", "patch_size": 4, "img_size": 16},
        "data": {"source": "digits-cluttered"},
        "scaling": {"num_workers": 2},
        "deepspeed": {"zero_stage": zero},
        "stages": [
            {
                "name": "mae",
                **many,
                "global_batch_size": 64,
                "max_steps": steps[0],
                "optimizer": {**lr, "fast_lr": 2e-3, "slow_lr": 2e-3},
            },
            {
                "name": "nnclr_head",
                **many,
                "global_batch_size": 64,
                "max_steps": steps[1],
                **HEAD,
                "optimizer": {**lr, "fast_lr": 2e-3},
            },
            {
                "name": "contrastive_tuning",
                **many,
                "global_batch_size": 64,
                "max_steps": steps[2],
                "topk": 5,
                **HEAD,
                # The quickstart's rates: at 1e-3 / 3e-4 ten steps moved the loss less than its
                # batch-to-batch noise (a CI run fitted +0.006 per step: 3.93 ... 3.84, 4.11).
                "optimizer": {**lr, "fast_lr": 4e-3, "slow_lr": 2e-3},
            },
        ],
        "checkpoint": {"storage_path": str(tmp_path / "runs"), "keep": 2},
        "tracking": {"log_every_steps": 1},
        **extra,
    }


def falls(history: list[dict]) -> bool:
    """The least-squares slope of loss over steps is negative. Every point counts: with 6 noisy
    steps, first-vs-last compares two single batches (CI once saw 4.129 -> 4.139 on a curve whose
    fitted slope was -0.05 per step)."""
    losses = torch.tensor([h["loss"] for h in history], dtype=torch.float64)
    steps = torch.arange(len(losses), dtype=torch.float64)
    steps = steps - steps.mean()
    return float((steps * (losses - losses.mean())).sum()) < 0


def check_exports_reproduce_probe(results, spec, probe_dir: Path) -> None:
    for i, r in enumerate(results):
        model, card = load_encoder(r.export_dir)
        with torch.no_grad():
            again = embed(model, probe_images(spec), card["model"]["pool"])
        live = torch.load(probe_dir / f"{i}.pt", weights_only=True)
        if spec.deepspeed.precision == "fp32":
            assert torch.allclose(again, live, atol=1e-5), (r.name, (again - live).abs().max())
        else:  # the live model ran in bf16; the export holds the fp32 master weights
            cos = torch.nn.functional.cosine_similarity(again, live.float(), dim=-1)
            assert cos.min() > 0.98, (r.name, cos)
            w = model.patch_embed.weight if hasattr(model, "patch_embed") else model.image_encoder.patch_embed.weight
            assert (w != w.bfloat16().float()).any(), "the export holds bf16-rounded weights, not the fp32 master"


# ZeRO-2 runs in bf16 only: fp32 under ZeRO-2 differs from ZeRO-0 by the partitioning that ZeRO-2 bf16
# and ZeRO-3 fp32 both exercise (and the quickstart runs it).
@pytest.mark.parametrize(("zero", "precision"), [(0, "fp32"), (3, "fp32"), (2, "bf16")])
def test_mae_ct_three_stages(ray_cluster, tmp_path: Path, zero: int, precision: str) -> None:
    """bf16 runs the GPU path's casts on DeepSpeed's CPU accelerator: inputs sent in bf16, losses,
    NN lookups, BatchNorm and the EMA in fp32, the export from the fp32 master weights."""
    from vitforge.train.run import run_job

    # ZeRO-0: 20 contrastive-tuning steps; over 10 the loss of a queue still filling had a rising
    # fitted slope (4.003, 3.875, 3.941, 3.789, ... on CI, 2026-12-06) though training worked.
    steps = (20, 10, 20) if zero == 0 else (10, 6, 6)
    spec = load_spec(data=mae_ct(tmp_path, zero, steps, deepspeed={"zero_stage": zero, "precision": precision}))
    results = run_job(spec, probe_dir=str(tmp_path))
    assert [r.name for r in results] == ["mae", "nnclr_head", "contrastive_tuning"]
    for r, planned in zip(results, steps, strict=True):
        assert [h["step"] for h in r.history] == list(range(1, planned + 1)), r.name
        assert falls(r.history), (r.name, [round(h["loss"], 3) for h in r.history])
        assert r.history[-1]["lr_fast"] < r.history[0]["lr_fast"]  # cosine decay of the fast group
        print(
            f"ZeRO-{zero} {r.name}: {r.wall_s:.1f}s, {r.history[-1]['img_per_s_total']:.0f} img/s total,"
            f" loss {r.history[0]['loss']:.3f} -> {r.history[-1]['loss']:.3f}"
        )
    check_exports_reproduce_probe(results, spec, tmp_path)
    card = json.loads((Path(results[2].export_dir) / "model_card.json").read_text())
    assert card["stage"] == "contrastive_tuning" and card["init_from"] == results[1].export_dir
    # Re-running the same job resumes it: every stage is already exported, nothing retrains.
    again = run_job(spec)
    assert all(r.skipped for r in again)


def test_zero3_halves_per_worker_state(ray_cluster) -> None:
    """``bench.zero_memory``'s smoke rows, asserted: 2 Train workers, ZeRO-0 then ZeRO-3, the
    parameter and optimizer bytes read from each DeepSpeed engine (the largest rank)."""
    from bench import zero_memory

    rows = {r["zero"]: r for r in zero_memory.main(["--smoke"])}
    print(f"ZeRO-3 vs ZeRO-0, params + optimizer: {rows[3]['param_plus_opt_vs_zero0']:.2f}")
    assert rows[3]["param_plus_opt_vs_zero0"] < 0.6
    # The parameters themselves are split in two.
    assert abs(rows[3]["param_MiB"] / rows[0]["param_MiB"] - 0.5) < 0.05


@pytest.mark.parametrize(
    ("objective", "zero", "precision"), [("cloob", 3, "fp32"), ("clip", 0, "fp32"), ("cloob", 3, "bf16")]
)
def test_image_text_stage(ray_cluster, tmp_path: Path, objective: str, zero: int, precision: str) -> None:
    from vitforge.train.run import run_job

    lr = 3e-4 if objective == "cloob" else 2e-3
    spec = load_spec(
        data={
            "name": f"it-{objective}",
            "model": {"size": "test", "patch_size": 4, "img_size": 16, "embed_dim": 32, "context_length": 64},
            "data": {"source": "shapes", "builtin_options": {"n": 800}},
            "scaling": {"num_workers": 2},
            "deepspeed": {"zero_stage": zero, "precision": precision},
            "stages": [
                {
                    "name": objective,
                    "epochs": 10,
                    "global_batch_size": 64,
                    "max_steps": 20,
                    "optimizer": {"lr_scaling": "none", "fast_lr": lr, "slow_lr": lr, "weight_decay": 0.0},
                }
            ],
            "checkpoint": {"storage_path": str(tmp_path / "runs")},
            "tracking": {"log_every_steps": 1},
        }
    )
    results = run_job(spec, probe_dir=str(tmp_path))
    assert falls(results[0].history), [round(h["loss"], 3) for h in results[0].history]
    check_exports_reproduce_probe(results, spec, tmp_path)
    _, card = load_encoder(results[0].export_dir)
    assert card["kind"] == "image_text" and card["tokenizer"]["name"] == "clip-bpe"


def test_killed_worker_resumes_with_exact_steps(ray_cluster, tmp_path: Path) -> None:
    import os
    import signal

    from ray.util.state import list_actors

    from vitforge.train.run import job_dir, run_job

    data = mae_ct(tmp_path, 0, (24, 1, 1))
    data["stages"] = data["stages"][:1]
    data["checkpoint"].update(every_steps=4, max_failures=1)
    spec = load_spec(data=data)
    history = job_dir(spec) / "history-0-mae.jsonl"
    killed = {}

    def killer() -> None:
        deadline = time.time() + 600
        while time.time() < deadline:
            steps = [json.loads(x)["step"] for x in history.read_text().splitlines()] if history.exists() else []
            if steps and steps[-1] >= 8:
                workers = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
                pid = sorted(a.pid for a in workers)[-1]
                os.kill(pid, signal.SIGKILL)  # a real process kill, mid-run
                killed.update(pid=pid, at_step=steps[-1])
                return
            time.sleep(0.2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    results = run_job(spec)
    t.join(timeout=5)
    assert killed, "the worker was never killed"
    history = results[0].history
    assert history[-1]["step"] == 24 and results[0].metrics["step"] == 24
    # After the kill the run restarted from the last checkpoint (a multiple of 4) and went on from
    # there: no step beyond that checkpoint skipped, none before it redone.
    resumed_from = history[-1]["resumed_from"]
    assert resumed_from > 0 and resumed_from % 4 == 0
    after = [h["step"] for h in history if h["resumed_from"] == resumed_from]
    before = [h["step"] for h in history if h["resumed_from"] == 0]
    assert after == list(range(resumed_from + 1, 25))
    assert before[:resumed_from] == list(range(1, resumed_from + 1))
    print(
        f"killed pid {killed['pid']} after step {killed['at_step']} was reported; resumed from checkpoint"
        f" step {resumed_from}; steps before {before}, after {after}"
    )
