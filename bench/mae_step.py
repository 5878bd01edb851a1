"""ViT-B/16 MAE forward+backward: vitforge vs Hugging Face ``ViTMAEForPreTraining``, same config.

Baseline: transformers' ViTMAEForPreTraining (SDPA attention, norm_pix_loss, mask ratio 0.75,
decoder 512 wide / 8 deep / 16 heads), measured in the same process with the same threads.

    python -m bench.mae_step                 # batch 8, 224², CPU (or GPU when present)
    python -m bench.mae_step --smoke         # tiny config, seconds (CI)
"""

from __future__ import annotations

import torch

from bench.common import bench_main, pin_threads, timeit


def build_pair(size: str, img: int, patch: int, device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    import transformers

    import vitforge.models as m

    s = m.SIZES[size]
    ours = m.mae_for(m.vit(size, patch, img_size=img), size).to(device)
    cfg = transformers.ViTMAEConfig(
        hidden_size=s.dim,
        num_hidden_layers=s.depth,
        num_attention_heads=s.heads,
        intermediate_size=int(s.dim * s.mlp_ratio),
        image_size=img,
        patch_size=patch,
        decoder_hidden_size=s.decoder_dim,
        decoder_num_hidden_layers=s.decoder_depth,
        decoder_num_attention_heads=s.decoder_heads,
        decoder_intermediate_size=int(s.decoder_dim * 4),
        mask_ratio=0.75,
        norm_pix_loss=True,
        attn_implementation="sdpa",
    )
    theirs = transformers.ViTMAEForPreTraining(cfg).to(device)
    return ours, theirs


def run(smoke: bool = False, device: str | None = None) -> list[dict]:
    from vitforge.methods.mae import mae_loss

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = pin_threads()
    size, img, patch, batch = ("test", 32, 4, 4) if smoke else ("base", 224, 16, 8)
    warmup, repeats = (1, 3) if smoke else (3, 10)
    ours, theirs = build_pair(size, img, patch, device)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    imgs = torch.randn(batch, 3, img, img, device=device)

    def step_ours() -> None:
        pred, mask = ours(imgs)
        mae_loss(imgs, pred, mask, patch).backward()
        ours.zero_grad(set_to_none=True)

    def step_theirs() -> None:
        theirs(pixel_values=imgs).loss.backward()
        theirs.zero_grad(set_to_none=True)

    rows = []
    t_theirs = timeit(step_theirs, warmup, repeats)
    t_ours = timeit(step_ours, warmup, repeats)
    for name, t, n in (("hf ViTMAEForPreTraining", t_theirs, n_theirs), ("vitforge MAE", t_ours, n_ours)):
        rows.append(
            {
                "impl": name,
                "params": n,
                "step_s_median": t["median_s"],
                "step_s_min": t["min_s"],
                "step_s_max": t["max_s"],
                "img_per_s": batch / t["median_s"],
                "speedup_vs_hf": t_theirs["median_s"] / t["median_s"],
            }
        )
    for r in rows:
        r.update(device=device, threads=threads, config=f"{size}/{patch} {img}px batch {batch}")
    return rows


COLS = ["impl", "config", "params", "step_s_median", "img_per_s", "speedup_vs_hf"]


def main(argv: list[str] | None = None) -> list[dict]:
    return bench_main("mae_step", "MAE forward+backward step", run, COLS, argv, __doc__)


if __name__ == "__main__":
    main()
