"""GPU training step: ViT-B/16 and ViT-L/16 MAE in bf16 with SDPA (flash) attention and
torch.compile, single GPU, images/s and MFU (model FLOPs / peak bf16 FLOPs), plain AdamW vs a
DeepSpeed ZeRO-2 engine. Runs only where CUDA is present (no Ray needed). Goal: >= 45% MFU for
ViT-L/16 on an H100.

    python -m bench.gpu [--smoke] [--batch 128]
"""

from __future__ import annotations

import argparse
import os
import socket

from bench.common import print_table, save, timeit


def _dist_init() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    dist.init_process_group("nccl", rank=0, world_size=1)


def _make_step(mode: str, mae, groups: list[dict], imgs, patch: int, batch: int):
    """One optimizer step of the MAE: torch.compile'd AdamW in bf16 autocast, or a DeepSpeed ZeRO-2
    bf16 engine (compiled)."""
    import torch

    from vitforge.methods.mae import mae_loss

    if mode.startswith("DeepSpeed"):
        import deepspeed

        _dist_init()
        engine, *_ = deepspeed.initialize(
            model=mae, optimizer=torch.optim.AdamW(groups, fused=True),
            config={"train_micro_batch_size_per_gpu": batch, "bf16": {"enabled": True},
                    "zero_optimization": {"stage": 2}, "zero_allow_untested_optimizer": True,
                    "gradient_clipping": 1.0, "steps_per_print": 10**9},
        )  # fmt: skip
        engine.compile()

        def ds_step() -> None:
            pred, mask = engine(imgs)
            engine.backward(mae_loss(imgs, pred.float(), mask, patch))
            engine.step()

        return ds_step
    opt = torch.optim.AdamW(groups, fused=True)
    model = torch.compile(mae)

    def step() -> None:
        with torch.autocast("cuda", torch.bfloat16):
            pred, mask = model(imgs)
        mae_loss(imgs, pred.float(), mask, patch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def run(smoke: bool = False, batch: int = 128) -> list[dict]:
    import torch

    import vitforge.models as m
    from vitforge.methods import mae_param_groups
    from vitforge.train.flops import peak_flops, transformer_flops

    if not torch.cuda.is_available():
        print("bench.gpu: skipped, no CUDA device")
        return []
    torch.backends.cuda.matmul.allow_tf32 = True
    peak = peak_flops()
    sizes = [("base", 16)] if smoke else [("base", 16), ("large", 16)]
    steps = (2, 5) if smoke else (5, 20)
    rows = []
    for size, patch in sizes:
        for mode in ("AdamW + torch.compile", "DeepSpeed ZeRO-2 + torch.compile"):
            torch.manual_seed(0)
            mae = m.mae_for(m.vit(size, patch), size).cuda()
            enc = mae.encoder
            keep = round(enc.num_patches * 0.25) + 1
            fwd = transformer_flops(keep, enc.dim, enc.depth) + transformer_flops(enc.num_patches + 1, 512, 8)
            flops_per_img = 3 * fwd
            groups = [{k: v for k, v in g.items() if k not in ("group", "lr_scale")}
                      for g in mae_param_groups(mae, 1.5e-4, 1.5e-4)]  # fmt: skip
            imgs = torch.randn(batch, 3, 224, 224, device="cuda")
            step = _make_step(mode, mae, groups, imgs, patch, batch)

            t = timeit(lambda step=step: (step(), torch.cuda.synchronize()), *steps)
            ips = batch / t["median_s"]
            rows.append({"model": f"ViT-{size[0].upper()}/{patch} MAE", "mode": mode, "batch": batch,
                         "img_per_s": ips, "step_ms": 1000 * t["median_s"],
                         "mfu": ips * flops_per_img / peak if peak else None,
                         "device": torch.cuda.get_device_name(),
                         "max_mem_GiB": torch.cuda.max_memory_allocated() / 2**30})  # fmt: skip
            del mae
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args(argv)
    rows = run(args.smoke, args.batch if not args.smoke else 16)
    if rows:
        print_table("GPU MAE training step (bf16, SDPA, torch.compile)", rows,
                    ["model", "mode", "batch", "img_per_s", "step_ms", "mfu", "max_mem_GiB", "device"])  # fmt: skip
        if not args.smoke:
            save("gpu", rows)
    return rows


if __name__ == "__main__":
    main()
