"""Exports record their position order; older exports (no record) load with row-first positions."""

import json
from pathlib import Path

import pytest
import torch

from vitforge.config import load_spec
from vitforge.inference import build_encoder, embed, load_encoder
from vitforge.train.export import save_export
from vitforge.train.tasks import build_task

NORM = {"mean": [0.5] * 3, "std": [0.25] * 3}


def job(**model):
    return load_spec(data={"model": {"size": "test", "patch_size": 4, "img_size": 16, **model},
                           "stages": [{"name": "mae"}, {"name": "nnclr_head", "global_batch_size": 32,
                                                         "queue_size": 64}]})  # fmt: skip


def test_card_records_order_and_old_cards_load_row_first(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    for order in ("xy", "yx"):
        spec = job(pos_embed_order=order)
        enc = build_encoder(spec.model).eval()
        out = save_export(tmp_path / order, {"encoder": enc}, spec, "mae", NORM)
        card = json.loads((out / "model_card.json").read_text())
        assert card["model"]["pos_embed_order"] == order
        if order == "yx":  # as written before the order was recorded
            del card["model"]["pos_embed_order"]
            (out / "model_card.json").write_text(json.dumps(card))
        back, _ = load_encoder(out)
        assert back.pos_order == order
        with torch.no_grad():
            assert torch.allclose(embed(back, x, "cls"), embed(enc, x, "cls"), atol=1e-6)


def test_a_stage_does_not_start_from_weights_of_the_other_order(tmp_path: Path) -> None:
    spec = job(pos_embed_order="yx")
    out = save_export(tmp_path / "old", {"encoder": build_encoder(spec.model)}, spec, "mae", NORM)
    with pytest.raises(ValueError, match=r"model\.pos_embed_order=yx"):
        build_task(job(), 1, str(out))
    assert build_task(spec, 1, str(out)).encoder.pos_order == "yx"
