import numpy as np
import pytest
import torch

import vitforge.models as m
from vitforge.models.vit import SIZES, sincos_pos_embed_2d

CONSTRUCTORS = [n for n in m.__all__ if n.startswith("vit_")]


def formula_params(dim: int, depth: int, patch: int, chans: int = 3, mlp: float = 4.0) -> int:
    """Independent count: patch conv + cls + depth * (qkv, proj, 2 MLP linears, 2 norms) + final norm."""
    hidden = int(dim * mlp)
    block = 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + 2 * dim + (dim * hidden + hidden) + hidden * dim
    block += dim
    return chans * patch * patch * dim + dim + dim + depth * block + 2 * dim


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_every_size_shapes_and_params(name: str) -> None:
    size, patch = name.split("_")[1], int(name.split("patch")[1])
    s = SIZES[size]
    img = 224 if patch in (14, 16) else 32
    with torch.device("meta"):  # shapes and counts without allocating 600M parameters
        enc = getattr(m, name)(img_size=img)
        x = torch.empty(2, 3, img, img)
        assert enc(x).shape == (2, s.dim)
        assert enc(x, pool="mean_patch").shape == (2, s.dim)
        pred, mask = m.mae_for(enc, size)(x)
    n = (img // patch) ** 2
    assert pred.shape == (2, n, patch * patch * 3) and mask.shape == (2, n)
    assert m.count_params(enc) == formula_params(s.dim, s.depth, patch)


@pytest.mark.parametrize(
    ("name", "timm_total"),
    # timm's published counts for vit_{base,large}_patch16_224, which add a learned position
    # embedding (197 x D) and a 1000-class head to the encoder.
    [("vit_base_patch16", 86_567_656), ("vit_large_patch16", 304_326_632)],
)
def test_param_counts_match_published(name: str, timm_total: int) -> None:
    with torch.device("meta"):
        enc = getattr(m, name)()
    extra = 197 * enc.dim + enc.dim * 1000 + 1000
    assert m.count_params(enc) + extra == timm_total


def test_base_is_86m() -> None:
    with torch.device("meta"):
        assert round(m.count_params(m.vit_base_patch16()) / 1e6) == 86


def test_any_image_size_and_channels() -> None:
    enc = m.vit("test", patch_size=4, img_size=(8, 16), in_chans=1, class_token=False)
    out = enc(torch.randn(3, 1, 8, 16), pool="mean_patch")
    assert out.shape == (3, 32)
    assert enc.num_patches == 8
    with pytest.raises(ValueError, match="class_token"):
        enc(torch.randn(3, 1, 8, 16), pool="cls")
    with pytest.raises(ValueError, match=r"expected images of shape"):
        enc(torch.randn(3, 3, 8, 16))
    with pytest.raises(ValueError, match="not divisible"):
        m.vit("test", patch_size=5, img_size=32)


def test_unknown_size_names_allowed_values() -> None:
    with pytest.raises(ValueError, match="allowed: test, micro, mini, tiny, small, base, large, huge"):
        m.vit("gigantic")


def test_bad_pool_is_named() -> None:
    enc = m.vit_test_patch4(img_size=8)
    with pytest.raises(ValueError, match="'cls', 'mean_patch'"):
        enc(torch.randn(1, 3, 8, 8), pool="max")


def mae_reference_pos_embed(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """facebookresearch/mae util/pos_embed.py (get_2d_sincos_pos_embed), extended to h != w."""

    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(grid_w, dtype=np.float32), np.arange(grid_h, dtype=np.float32))  # w first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_h, grid_w])
    return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)


def test_sincos_positions_follow_mae() -> None:
    pe = sincos_pos_embed_2d(16, 3, 5)
    assert pe.shape == (15, 16)
    assert np.allclose(pe.numpy(), mae_reference_pos_embed(16, 3, 5), atol=1e-6)
    assert torch.cdist(pe, pe).add(torch.eye(15)).min() > 0  # every position distinct
    # The first half is the column's: positions in the same column (5 apart) share it.
    assert torch.equal(pe[0, :8], pe[5, :8]) and not torch.equal(pe[0, :8], pe[1, :8])
    legacy = sincos_pos_embed_2d(16, 3, 5, order="yx")  # row first: exports made before
    assert torch.equal(legacy, torch.cat([pe[:, 8:], pe[:, :8]], dim=1))


def test_positions_interpolated_from_a_trained_grid() -> None:
    """Weights trained on 14x14 used at 28x28: sin-cos at the coordinates bicubic resizing samples.
    It agrees with resizing the table (F.interpolate) away from the border, where bicubic clamps."""
    d, g, n = 768, 14, 28
    table = sincos_pos_embed_2d(d, g, g)
    assert torch.equal(sincos_pos_embed_2d(d, g, g, "xy", (g, g)), table)  # the trained grid: unchanged
    ours = sincos_pos_embed_2d(d, n, n, "xy", (g, g)).reshape(n, n, d)
    resized = torch.nn.functional.interpolate(
        table.reshape(1, g, g, d).permute(0, 3, 1, 2), size=(n, n), mode="bicubic", align_corners=False
    ).permute(0, 2, 3, 1)[0]  # (n, n, d)
    inner = (ours - resized)[2:-2, 2:-2].abs()
    assert inner.max() < 0.05 and (ours - resized).abs().mean() < 0.01
    enc = m.vit_test_patch4(img_size=32, pos_grid=4)  # a 16px checkpoint used at 32px
    assert enc.pos_grid == (4, 4) and torch.equal(enc.pos_embed[0], sincos_pos_embed_2d(32, 8, 8, "xy", (4, 4)))


def test_grad_checkpointing_matches() -> None:
    torch.manual_seed(0)
    a = m.vit_test_patch4(img_size=16)
    b = m.vit_test_patch4(img_size=16, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 16, 16)
    a(x).sum().backward()
    b(x).sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6), n


def test_flops_estimate_base() -> None:
    with torch.device("meta"):
        enc = m.vit_base_patch16()
    # ViT-B/16 at 224 is the often-quoted "17.6 GFLOPs", which counts multiply-adds: 35.2e9 FLOPs.
    assert 35.0e9 < enc.flops_per_image() < 35.4e9
