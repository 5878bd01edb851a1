"""``model.compile``: an MAE training step (forward, backward, AdamW) with every transformer block
compiled the way training compiles them (``vitforge.train.engine.compile_blocks``, inductor) vs
the same model eager, same process, same threads, same weights and batch; eager and compiled
alternate in rounds so that load from other processes falls on both.

    python -m bench.compile_step             # ViT-mini/4 MAE, 32², batch 16, CPU (GPU when present)
    python -m bench.compile_step --smoke     # test size, 16², seconds after the compile (CI)
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from bench.common import bench_main, pin_threads, timeit


def _step_fn(mae, imgs: torch.Tensor, device: str):
    """One optimizer step; synchronised on GPU so the timer sees the work."""
    from vitforge.methods.mae import mae_loss

    opt = torch.optim.AdamW(mae.parameters(), lr=1e-4)
    patch = mae.encoder.patch_size

    def step() -> None:
        pred, mask = mae(imgs)
        mae_loss(imgs, pred, mask, patch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def run(smoke: bool = False, device: str | None = None) -> list[dict]:
    import vitforge.models as m
    from vitforge.train.engine import compile_blocks

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = pin_threads()
    size, img, patch, batch = ("test", 16, 4, 4) if smoke else ("mini", 32, 4, 16)
    rounds, repeats = (1, 3) if smoke else (3, 10)
    torch.manual_seed(0)
    eager = m.mae_for(m.vit(size, patch, img_size=img), size).to(device)
    compiled = copy.deepcopy(eager)
    n_blocks = compile_blocks(compiled, zero_stage=0)
    imgs = torch.randn(batch, 3, img, img, device=device)
    steps = {"eager": _step_fn(eager, imgs, device), "compiled blocks": _step_fn(compiled, imgs, device)}
    # The compiled side's first steps compile: the encoder's sequence length, then a dynamic one
    # for the decoder's. Timed apart from the steady-state steps.
    t0 = time.perf_counter()
    for _ in range(3):
        steps["compiled blocks"]()
    compile_s = time.perf_counter() - t0
    medians: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            medians[name].append(timeit(fn, 1, repeats)["median_s"])
    base = statistics.median(medians["eager"])
    rows = []
    for name, ts in medians.items():
        t = statistics.median(ts)
        rows.append({"mode": name, "step_ms": 1000 * t, "img_per_s": batch / t, "speedup_vs_eager": base / t,
                     "rounds_ms": ", ".join(f"{1000 * x:.1f}" for x in ts),
                     "first_3_steps_s": compile_s if name != "eager" else None})  # fmt: skip
    for r in rows:
        r.update(config=f"{size}/{patch} {img}px batch {batch}", blocks=n_blocks, device=device, threads=threads)
    return rows


COLS = ["mode", "config", "step_ms", "img_per_s", "speedup_vs_eager", "rounds_ms", "first_3_steps_s"]


def main(argv: list[str] | None = None) -> list[dict]:
    return bench_main("compile_step", "MAE training step: per-block torch.compile vs eager", run, COLS, argv, __doc__)


if __name__ == "__main__":
    main()
