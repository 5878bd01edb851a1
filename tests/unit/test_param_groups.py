import pytest
import torch

import vitforge.models as m
from vitforge.methods import (
    cloob_param_groups,
    freeze_lower_blocks,
    mae_ct_param_groups,
    mae_param_groups,
)
from vitforge.methods.nnclr import symmetric_nnclr_loss


def _ids(groups: list[dict], **match) -> set[int]:
    return {id(p) for g in groups if all(g[k] == v for k, v in match.items()) for p in g["params"]}


def test_mae_ct_groups_layer_decay_and_no_decay() -> None:
    enc = m.vit_test_patch4(img_size=8)  # depth 4
    head = m.NNCLRHead(enc.dim, 16, 8, 16, queue_size=32)
    n_frozen = freeze_lower_blocks(enc)
    assert n_frozen == 2
    groups = mae_ct_param_groups(enc, head, fast_lr=1e-3, slow_lr=1e-4, layer_decay=0.5)
    # Every trainable parameter exactly once; frozen and target parameters never.
    listed = [id(p) for g in groups for p in g["params"]]
    trainable = [p for p in list(enc.parameters()) + list(head.parameters()) if p.requires_grad]
    assert sorted(listed) == sorted(id(p) for p in trainable)
    assert _ids(groups, group="fast") == {id(p) for p in head.parameters() if p.requires_grad}
    # Block 3 (last) has layer id 4 = depth: scale 0.5 ** 1; the final norm gets the full rate.
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(enc.blocks[3].attn.qkv.weight)] == pytest.approx(1e-4 * 0.5)
    assert lr_of[id(enc.blocks[2].attn.qkv.weight)] == pytest.approx(1e-4 * 0.25)
    assert lr_of[id(enc.norm.weight)] == pytest.approx(1e-4)
    assert lr_of[id(head.projector[0].weight)] == pytest.approx(1e-3)
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert wd_of[id(enc.blocks[3].attn.qkv.weight)] > 0
    assert wd_of[id(enc.blocks[3].attn.qkv.bias)] == 0 and wd_of[id(enc.norm.weight)] == 0
    # The head's weight decay is its own (MAE-CT: 1e-5 beside the encoder's 0.05).
    assert wd_of[id(head.projector[0].weight)] == 1e-5 and wd_of[id(enc.blocks[3].mlp[0].weight)] == 0.05


def test_mae_and_cloob_splits() -> None:
    mae = m.mae_for(m.vit_test_patch4(img_size=8), "test")
    g = mae_param_groups(mae, 1e-3, 1e-4)
    # Tokens are decayed as in facebookresearch/mae (timm's add_weight_decay skips 1-D tensors only).
    assert id(mae.mask_token) in _ids(g, group="fast", weight_decay=0.05)
    assert id(mae.encoder.cls_token) in _ids(g, group="slow", weight_decay=0.05)
    assert _ids(g, group="slow") == {id(p) for p in mae.encoder.parameters()}
    model = m.ImageTextModel(m.vit_test_patch4(img_size=8), m.TextEncoder(32, 1, 2, 8), embed_dim=16)
    g = cloob_param_groups(model, 1e-3, 1e-4)
    assert _ids(g, group="slow") == {id(p) for p in model.image_encoder.parameters()}
    assert {id(model.logit_scale), id(model.text_proj.weight)} <= _ids(g, group="fast")


def test_freeze_bounds() -> None:
    with pytest.raises(ValueError, match="num_frozen"):
        freeze_lower_blocks(m.vit_test_patch4(img_size=8), 7)


def test_mae_ct_gradients_reach_exactly_the_right_parameters() -> None:
    enc = m.vit_test_patch4(img_size=8)
    head = m.NNCLRHead(enc.dim, 16, 8, 16, queue_size=32)
    freeze_lower_blocks(enc)
    head.queue.push(torch.randn(32, 8), torch.arange(100, 132))
    x1, x2, ids = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), torch.arange(4)
    p1, t1 = head(enc(x1))
    p2, t2 = head(enc(x2))
    nn1, nn2 = head.queue.nearest(t1, ids), head.queue.nearest(t2, ids)
    symmetric_nnclr_loss(p1, p2, nn1, nn2, 0.2).backward()
    for name, p in enc.named_parameters():
        lower = name.startswith(("cls_token", "patch_embed", "blocks.0.", "blocks.1."))
        assert (p.grad is None) == lower, name
        if not lower:
            assert p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in head.target_projector.parameters())
    assert all(p.grad is not None for p in head.projector.parameters())
