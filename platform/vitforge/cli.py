"""The ``vitforge`` command. The only module that parses command-line arguments."""

from __future__ import annotations

import time

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Pretrain (MAE-CT, CLOOB), tune, evaluate and serve ViT encoders on Ray."""


@app.command()
def quickstart(steps: int = typer.Option(60, help="MAE steps on the digits demo.")) -> None:
    """Demo of the models: a tiny MAE learns to reconstruct scikit-learn's real digits.

    Example: vitforge quickstart --steps 60
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    import vitforge.models as m
    from vitforge.methods import mae_param_groups
    from vitforge.methods.mae import mae_loss

    torch.manual_seed(0)
    digits = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8)
    imgs = F.interpolate(digits, size=16, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    mae = m.mae_for(m.vit_test_patch4(img_size=16), "test")
    opt = torch.optim.AdamW(mae_param_groups(mae, fast_lr=1e-3, slow_lr=1e-3))
    typer.echo(f"tiny MAE: {m.count_params(mae):,} parameters, {len(imgs)} real 8x8 digits resized to 16x16")
    start = time.perf_counter()
    for step in range(steps):
        batch = imgs[torch.randint(len(imgs), (64,))]
        pred, mask = mae(batch)
        loss = mae_loss(batch, pred, mask, patch_size=4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            typer.echo(f"step {step:4d}  mae_loss {loss.item():.4f}")
    typer.echo(f"done in {time.perf_counter() - start:.1f}s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
