"""The image-text stage's objective schedule: CLOOB's InfoNCE warm start, a learnable tau^-1,
and CLIP's scale starting from the stage's ``inv_tau``."""

import math

import pytest
import torch

from vitforge.config import load_spec
from vitforge.methods.cloob import clip_loss, cloob_loss
from vitforge.train.tasks import build_task


def _task(stage: dict):
    spec = load_spec(
        data={
            "model": {"size": "test", "patch_size": 4, "img_size": 16, "embed_dim": 16, "context_length": 16},
            "data": {"source": "shapes", "builtin_options": {"n": 64}},
            "scaling": {"num_workers": 1},
            "stages": [{"global_batch_size": 8, **stage}],
        }
    )
    task = build_task(spec, 0, None)
    tokens = torch.randint(1, 400, (8, 16))
    return task, {"image": torch.randn(8, 3, 16, 16), "tokens": tokens}


def test_infonce_warm_start_then_cloob() -> None:
    task, batch = _task({"name": "cloob", "inv_tau": 14.3, "hopfield_beta": 8.0, "infonce_epochs": 1.5})
    img, txt = task.model(batch["image"], batch["tokens"])
    task.set_epoch(1.4)  # inside the warm start: InfoNCE at the fixed tau^-1, divided by it as InfoLOOB is
    assert task(batch).item() == pytest.approx(clip_loss(img, txt, 14.3).item() / 14.3, rel=1e-5)
    task.set_epoch(1.5)  # after it: CLOOB
    assert task(batch).item() == pytest.approx(cloob_loss(img, txt, 14.3, 8.0).item(), rel=1e-5)
    assert task.upper_bounds() == []  # a fixed tau^-1: nothing to clamp


def test_learnable_inv_tau_starts_at_inv_tau_and_trains() -> None:
    task, batch = _task({"name": "cloob", "inv_tau": 20.0, "learnable_inv_tau": True})
    assert task.model.logit_scale.exp().item() == pytest.approx(20.0)
    task(batch).backward()
    assert task.model.logit_scale.grad is not None and task.model.logit_scale.grad.abs().item() > 0
    [(param, high)] = task.upper_bounds()
    assert param is task.model.logit_scale and high == pytest.approx(math.log(100))
    fixed, _ = _task({"name": "cloob", "inv_tau": 20.0})
    fixed(batch).backward()
    assert fixed.model.logit_scale.grad is None  # unused: tau^-1 stays 20


def test_clip_scale_starts_at_the_stages_inv_tau() -> None:
    """So ``--set stages.0.name=clip`` turns a CLOOB spec (which sets inv_tau) into CLIP."""
    assert _task({"name": "clip"})[0].model.logit_scale.exp().item() == pytest.approx(1 / 0.07)
    task, batch = _task({"name": "clip", "inv_tau": 30.0})
    img, txt = task.model(batch["image"], batch["tokens"])
    assert task(batch).item() == pytest.approx(clip_loss(img, txt, 30.0).item(), rel=1e-5)
