"""GPU training step: ViT-B/16 and ViT-L/16 MAE in bf16 with SDPA (flash) attention and
torch.compile, single GPU, images/s and MFU (model FLOPs / peak bf16 FLOPs), plain AdamW vs a
DeepSpeed ZeRO-2 engine. No Ray needed. Goal: >= 45% MFU for ViT-L/16 on an H100.

    python -m bench.gpu [--smoke] [--batch 128]     # one GPU (NCCL); skipped without CUDA
    python -m bench.gpu --device cpu --steps 2      # the same code path on CPU, so it cannot rot

``--device cpu`` is a dry run: a test-size model on 16² images, gloo instead of NCCL, bf16
through ``autocast("cpu")`` and DeepSpeed's CPU accelerator; it times nothing worth keeping and
writes no results.
"""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass

from bench.common import machine_name, print_table, save, timeit

ABBREV = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H"}  # ViT-B/16; "test" stays


@dataclass(frozen=True)
class Target:
    """Everything ``--device`` decides; the steps themselves are the same code on both."""

    device: str  # torch device type, also autocast's device_type
    backend: str  # torch.distributed backend of the one-rank group DeepSpeed needs
    sizes: tuple[tuple[str, int], ...]  # (size-table row, patch)
    img: int


def target(device: str, smoke: bool) -> Target:
    if device == "cuda":
        return Target("cuda", "nccl", (("base", 16),) if smoke else (("base", 16), ("large", 16)), 224)
    # DeepSpeed picks its accelerator when first imported: the CPU one for the dry run.
    os.environ["DS_ACCELERATOR"] = "cpu"
    return Target("cpu", "gloo", (("test", 4),), 16)


def _dist_init(backend: str) -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    dist.init_process_group(backend, rank=0, world_size=1)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _make_step(mode: str, mae, groups: list[dict], imgs, patch: int, batch: int, t: Target):
    """One optimizer step of the MAE: torch.compile'd AdamW in bf16 autocast, or a DeepSpeed ZeRO-2
    bf16 engine (compiled)."""
    import torch

    from vitforge.methods.mae import mae_loss

    if mode.startswith("DeepSpeed"):
        import deepspeed

        from vitforge.train.engine import skip_shm_inference_op

        _dist_init(t.backend)
        skip_shm_inference_op()  # the CPU dry run: no C++ build of an op training never uses
        engine, *_ = deepspeed.initialize(
            model=mae, optimizer=torch.optim.AdamW(groups, fused=True),
            config={"train_micro_batch_size_per_gpu": batch, "bf16": {"enabled": True},
                    "zero_optimization": {"stage": 2}, "zero_allow_untested_optimizer": True,
                    "gradient_clipping": 1.0, "steps_per_print": 10**9},
        )  # fmt: skip
        engine.compile()
        # The engine holds the module in bf16 and does not cast inputs (as the training loop does).
        low = imgs.to(torch.bfloat16)

        def ds_step() -> None:
            pred, mask = engine(low)
            engine.backward(mae_loss(imgs, pred.float(), mask, patch))
            engine.step()

        return ds_step
    opt = torch.optim.AdamW(groups, fused=True)  # fused kernels exist for CPU tensors too
    model = torch.compile(mae)

    def step() -> None:
        with torch.autocast(t.device, torch.bfloat16):
            pred, mask = model(imgs)
        mae_loss(imgs, pred.float(), mask, patch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _row(size: str, patch: int, mode: str, batch: int, median_s: float, flops_per_img: float, t: Target) -> dict:
    import torch

    from vitforge.train.flops import peak_flops

    peak, ips = peak_flops(), batch / median_s
    cuda = t.device == "cuda"
    return {"model": f"ViT-{ABBREV.get(size, size)}/{patch} MAE", "mode": mode, "batch": batch,
            "img_per_s": ips, "step_ms": 1000 * median_s, "mfu": ips * flops_per_img / peak if peak else None,
            "device": torch.cuda.get_device_name() if cuda else machine_name(),
            "max_mem_GiB": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}  # fmt: skip


def run(smoke: bool = False, batch: int = 128, device: str = "cuda", steps: int | None = None) -> list[dict]:
    """Rows of (model, mode): images/s, step time, MFU. ``steps`` timed steps after the warm-up."""
    import torch

    import vitforge.models as m
    from vitforge.methods import mae_param_groups
    from vitforge.train.flops import mae_train_flops_per_image

    if device == "cuda" and not torch.cuda.is_available():
        print("bench.gpu: skipped, no CUDA device")
        return []
    t = target(device, smoke)
    if t.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    warmup, timed = (2, 5) if smoke else (5, 20)
    timed = steps or timed
    warmup = min(warmup, timed)  # the warm-up holds the compile: at least one step
    rows = []
    for size, patch in t.sizes:
        for mode in ("AdamW + torch.compile", "DeepSpeed ZeRO-2 + torch.compile"):
            torch.manual_seed(0)
            mae = m.mae_for(m.vit(size, patch, img_size=t.img), size).to(t.device)
            groups = [{k: v for k, v in g.items() if k not in ("group", "lr_scale")}
                      for g in mae_param_groups(mae, 1.5e-4, 1.5e-4)]  # fmt: skip
            imgs = torch.randn(batch, 3, t.img, t.img, device=t.device)
            step = _make_step(mode, mae, groups, imgs, patch, batch, t)
            stats = timeit(lambda step=step: (step(), _sync(t.device)), warmup, timed)
            rows.append(_row(size, patch, mode, batch, stats["median_s"], mae_train_flops_per_image(mae), t))
            del mae
            if t.device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="ViT-B/16 only, batch 16, few steps; no results written")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the dry run (test size, gloo)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20, 5 with --smoke)")
    ap.add_argument("--batch", type=int, default=None, help="default 128 on GPU, 16 with --smoke, 8 on CPU")
    args = ap.parse_args(argv)
    batch = args.batch or (16 if args.smoke else 8 if args.device == "cpu" else 128)
    rows = run(args.smoke, batch, args.device, args.steps)
    if rows:
        dry = " (CPU dry run)" if args.device == "cpu" else ""
        print_table(f"GPU MAE training step (bf16, SDPA, torch.compile){dry}", rows,
                    ["model", "mode", "batch", "img_per_s", "step_ms", "mfu", "max_mem_GiB", "device"])  # fmt: skip
        if not args.smoke and args.device == "cuda":
            save("gpu", rows)
    return rows


if __name__ == "__main__":
    main()
