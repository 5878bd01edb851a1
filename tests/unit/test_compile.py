"""``model.compile``: per-block torch.compile (inductor, CPU) matches eager and keeps the state-dict keys."""

import copy

import pytest
import torch

import vitforge.models as m
from vitforge.methods.mae import mae_loss
from vitforge.train.engine import compile_blocks


def _loss_and_grads(mae: m.MAE, imgs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)  # the same masking noise for both models
    pred, mask = mae(imgs, generator=g)
    loss = mae_loss(imgs, pred, mask, mae.encoder.patch_size)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in mae.named_parameters()}


@pytest.mark.slow  # inductor compiles forward and backward: ~25 s cold on 2 cores, ~5 s from its cache
def test_compiled_mae_matches_eager_loss_and_grads() -> None:
    eager = m.mae_for(m.vit_test_patch4(img_size=16), "test")
    compiled = copy.deepcopy(eager)
    assert compile_blocks(compiled, zero_stage=0) == 4 + 1  # encoder blocks + decoder block
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no "_orig_mod." prefixes
    imgs = torch.randn(4, 3, 16, 16)
    loss_e, grads_e = _loss_and_grads(eager, imgs)
    loss_c, grads_c = _loss_and_grads(compiled, imgs)
    assert torch.allclose(loss_c, loss_e, atol=1e-5), (loss_c, loss_e)
    for name, ge in grads_e.items():
        assert torch.allclose(grads_c[name], ge, atol=1e-5), (name, (grads_c[name] - ge).abs().max())
    # A compiled model's weights load into an eager one and the other way round.
    m.mae_for(m.vit_test_patch4(img_size=16), "test").load_state_dict(compiled.state_dict(), strict=True)


def test_compile_is_off_by_default_and_recorded() -> None:
    from vitforge.config import load_spec

    assert load_spec().model.compile is False
    assert load_spec(overrides=["model.compile=true"]).model_dump()["model"]["compile"] is True
