"""``vitforge export --format hf``: transformers' AutoModel loads the folder and gives vitforge's features."""

import json
from pathlib import Path

import pytest
import torch

from vitforge.config import load_spec
from vitforge.hub import export_hf
from vitforge.inference import build_encoder, load_encoder
from vitforge.train.export import save_export

transformers = pytest.importorskip("transformers")
NORM = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
IMGS = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def export(tmp_path: Path, **model) -> Path:
    spec = load_spec(data={"model": {"size": "test", "patch_size": 4, "img_size": 16, **model}})
    enc = build_encoder(spec.model)
    with torch.no_grad():  # LayerNorms off their 1/0 init, so that the test sees them
        for p in enc.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return save_export(tmp_path / "export", {"encoder": enc}, spec, "contrastive_tuning", NORM)


@pytest.mark.parametrize(("pool", "order"), [("mean_patch", "xy"), ("cls", "yx")])
@torch.no_grad()
def test_round_trip_features_equal_vitforge(tmp_path: Path, pool: str, order: str) -> None:
    ours, _ = load_encoder(export(tmp_path, pool=pool, pos_embed_order=order))
    out = export_hf(tmp_path / "export", tmp_path / "hf")
    hf = transformers.AutoModel.from_pretrained(out).eval()
    assert type(hf).__name__ == "ViTMAEModel" and hf.config.mask_ratio == 0.0
    meta = hf.config.vitforge
    assert meta["pool"] == pool and meta["normalization"] == NORM and meta["pos_embed_order"] == order
    h = hf(IMGS).last_hidden_state  # (B, 1 + N, D), patch tokens in ViTMAE's random order
    pooled = h[:, 0] if pool == "cls" else h[:, 1:].mean(dim=1)  # as config.vitforge["how_to_pool"] says
    diff = (pooled - ours(IMGS, pool)).abs().max().item()
    n = ours.num_patches
    in_order = hf(IMGS, noise=torch.arange(n, dtype=torch.float32).expand(3, n)).last_hidden_state
    tok_diff = (in_order - ours.encode_tokens(ours.patch_tokens(IMGS))).abs().max().item()
    print(f"vitforge -> HF ViTMAEModel ({pool}, {order}): pooled max |diff| {diff:.2e}, tokens {tok_diff:.2e}")
    assert diff < 1e-5 and tok_diff < 1e-5
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["image_mean"] == NORM["mean"] and pre["size"] == {"height": 16, "width": 16}
    processor = transformers.AutoImageProcessor.from_pretrained(out)
    assert processor(images=[torch.zeros(3, 16, 16)], return_tensors="pt")["pixel_values"].shape == (1, 3, 16, 16)


@torch.no_grad()
def test_interpolated_positions_travel(tmp_path: Path) -> None:
    """An encoder whose positions come from another grid (an import at another size) keeps them."""
    ours, _ = load_encoder(export(tmp_path, img_size=32, pos_embed_grid=4))
    hf = transformers.AutoModel.from_pretrained(export_hf(tmp_path / "export", tmp_path / "hf")).eval()
    x = torch.randn(2, 3, 32, 32)
    assert (hf(x).last_hidden_state[:, 1:].mean(1) - ours(x, "mean_patch")).abs().max() < 1e-5
