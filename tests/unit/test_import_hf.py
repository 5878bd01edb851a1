"""``vitforge import``: transformers' ViTMAE and ViTModel folders, official MAE .pth files and MAE-CT
.th files become exports whose encoder and MAE compute what the source model computes."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vitforge.models as m
from hf_checkpoints import N, official_mae_state, save_mae_ct, save_official_mae, tiny_hf_mae
from vitforge.hub import CheckpointError, import_checkpoint
from vitforge.inference import load_encoder, load_part, read_card

pytest.importorskip("transformers")

IMGS = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
IN_ORDER = torch.arange(N, dtype=torch.float32).expand(3, N)  # ViTMAE's noise that keeps patch order


def tokens(encoder: m.ViT, imgs: torch.Tensor) -> torch.Tensor:
    return encoder.encode_tokens(encoder.patch_tokens(imgs))  # (B, 1 + N, D), every patch


def imported(source: Path, out: Path, **kw) -> tuple[m.ViT, dict]:
    import_checkpoint(source, out, log=lambda _: None, **kw)
    return load_encoder(out)


@torch.no_grad()
def test_hf_vitmae_features_and_reconstructions_match_transformers(tmp_path: Path) -> None:
    hf = tiny_hf_mae()
    hf.save_pretrained(tmp_path / "hf")
    enc, card = imported(tmp_path / "hf", tmp_path / "export")
    assert card["parts"] == ["encoder", "mae"] and card["model"]["size"] == "test"
    assert card["imported_from"]["positions"]["order"] == "xy" and card["imported_from"]["layout"] == "hf"

    hf.config.mask_ratio = 0.0  # every patch, in image order: the encoder's features
    want = hf.vit(IMGS, noise=IN_ORDER).last_hidden_state
    feat_diff = (tokens(enc, IMGS) - want).abs().max().item()
    hf.config.mask_ratio = 0.75
    noise = torch.rand(3, N, generator=torch.Generator().manual_seed(2))
    out = hf(IMGS, noise=noise)
    mae = load_part(m.mae_for(enc, "test"), tmp_path / "export", "mae").eval()
    pred, mask = mae(IMGS, noise=noise)
    rec_diff = (pred - out.logits).abs().max().item()
    print(f"HF ViTMAE -> vitforge: features max |diff| {feat_diff:.2e}, reconstruction {rec_diff:.2e}")
    assert feat_diff < 1e-5 and rec_diff < 1e-5
    assert torch.equal(mask, out.mask)


def test_transformers_5_names_import_the_same(tmp_path: Path) -> None:
    """A state dict saved under transformers 5's module names (q_proj, layers.N) is the same model."""
    hf = tiny_hf_mae()
    hf.save_pretrained(tmp_path / "hub")
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text((tmp_path / "hub" / "config.json").read_text())
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(tmp_path / "t5" / "model.safetensors"))
    assert any(".q_proj." in k for k in load_file(str(tmp_path / "t5" / "model.safetensors")))
    a, _ = imported(tmp_path / "hub", tmp_path / "a")
    b, _ = imported(tmp_path / "t5", tmp_path / "b")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k


@torch.no_grad()
def test_official_mae_pth_imports_identical_to_hf(tmp_path: Path) -> None:
    hf = tiny_hf_mae()
    hf.save_pretrained(tmp_path / "hf")
    pth = save_official_mae(hf, tmp_path / "mae_pretrain_vit_test.pth")
    from_hf, _ = imported(tmp_path / "hf", tmp_path / "a")
    from_pth, card = imported(pth, tmp_path / "b")
    assert card["imported_from"]["layout"] == "mae" and card["parts"] == ["encoder", "mae"]
    for part in ("encoder", "mae"):
        a, b = (load_file(str(tmp_path / d / f"{part}.safetensors")) for d in ("a", "b"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert torch.equal(from_pth(IMGS, "mean_patch"), from_hf(IMGS, "mean_patch"))


@torch.no_grad()
def test_encoder_only_releases_and_mae_ct_checkpoints(tmp_path: Path) -> None:
    """MAE's released pretrain files hold the encoder only; MAE-CT's keep positions without a class row."""
    hf = tiny_hf_mae()
    hf.config.mask_ratio = 0.0
    want = hf.vit(IMGS, noise=IN_ORDER).last_hidden_state
    for name, path in (
        ("mae", save_official_mae(hf, tmp_path / "enc.pth", encoder_only=True)),
        ("mae-ct", save_mae_ct(hf, tmp_path / "maect_test4.th")),
    ):
        enc, card = imported(path, tmp_path / name)
        assert card["parts"] == ["encoder"] and card["imported_from"]["layout"] == name
        assert (tokens(enc, IMGS) - want).abs().max() < 1e-5, name
    enc, card = imported(save_official_mae(hf, tmp_path / "full.pth"), tmp_path / "eo", encoder_only=True)
    assert card["parts"] == ["encoder"] and card["imported_from"]["dropped"]["decoder_embed.weight"] == "--encoder-only"


@torch.no_grad()
def test_vit_model_with_mae_positions_imports_and_learned_positions_are_refused(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=128, image_size=16,
                    patch_size=4, layer_norm_eps=1e-6)  # fmt: skip
    vit = ViTModel(cfg).eval()
    vit.save_pretrained(tmp_path / "learned")
    with pytest.raises(CheckpointError, match=r"position_embeddings is not a fixed 2-D sin-cos table"):
        import_checkpoint(tmp_path / "learned", tmp_path / "x", log=lambda _: None)
    # A ViTModel holding MAE weights (e.g. ViTModel.from_pretrained of a ViTMAE checkpoint) imports.
    mae = tiny_hf_mae()
    vit.embeddings.position_embeddings.copy_(mae.vit.embeddings.position_embeddings)
    vit.embeddings.cls_token.copy_(mae.vit.embeddings.cls_token)
    vit.embeddings.position_embeddings[:, 0].normal_()  # a learned class position: added to the token
    vit.save_pretrained(tmp_path / "vit")
    enc, card = imported(tmp_path / "vit", tmp_path / "y")
    assert set(card["imported_from"]["dropped"]) == {"pooler.dense.weight", "pooler.dense.bias"}
    diff = (tokens(enc, IMGS) - vit(IMGS).last_hidden_state).abs().max().item()
    print(f"HF ViTModel -> vitforge: features max |diff| {diff:.2e}")
    assert diff < 1e-5


def test_hub_layer_norm_eps_and_preprocessor_are_recorded(tmp_path: Path) -> None:
    hf = tiny_hf_mae(layer_norm_eps=1e-12)  # what the Hub's converted MAE configs say
    hf.save_pretrained(tmp_path / "hf")
    pre = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    (tmp_path / "hf" / "preprocessor_config.json").write_text(json.dumps(pre))
    import_checkpoint(tmp_path / "hf", tmp_path / "out", log=lambda _: None)
    card = read_card(tmp_path / "out")
    assert card["imported_from"]["layer_norm_eps"] == {"checkpoint": 1e-12, "vitforge": 1e-6}
    assert card["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3}


def test_official_names_cover_every_tensor(tmp_path: Path) -> None:
    """The test's own renaming (from models_mae.py) names each HF tensor once: no tensor left out."""
    hf = tiny_hf_mae()
    assert sum(t.numel() for t in official_mae_state(hf).values()) == sum(t.numel() for t in hf.state_dict().values())
