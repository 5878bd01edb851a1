"""One module per stage that owns every trained parameter and returns the loss: what DeepSpeed wraps.

The stage's kind is resolved once here (``build_task``); the loop talks to the ``Task`` contract.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, Protocol

import torch
from torch import nn

import vitforge.models as m
from vitforge.config import JobSpec
from vitforge.inference import build_encoder, build_image_text, load_part, read_card
from vitforge.methods import (
    cloob_param_groups,
    freeze_lower_blocks,
    gather_features,
    mae_ct_param_groups,
    mae_param_groups,
)
from vitforge.methods.cloob import clip_loss, cloob_loss
from vitforge.methods.mae import mae_loss
from vitforge.methods.nnclr import symmetric_nnclr_loss
from vitforge.stage_specs import AnyStage, CLIPStage, CLOOBStage, ContrastiveTuningStage, MAEStage


class Task(Protocol):
    """What the loop, the driver and Tune ask of a stage (``nn.Module``s that DeepSpeed wraps)."""

    views: ClassVar[int]  # augmented views of each image per batch ("image", "image2", ...)

    def forward(self, batch: dict[str, torch.Tensor], rank: int = 0, world_size: int = 1) -> torch.Tensor:
        """The loss of this rank's batch; cross-rank terms gathered inside (``rank``/``world_size``)."""

    def param_groups(self, lr_fast: float, lr_slow: float, wd: float) -> list[dict]:
        """Optimizer groups, each tagged ``group`` ("fast"/"slow") and ``lr_scale`` (layer decay)."""

    def exports(self) -> dict[str, nn.Module]:
        """The parts written to the export (``<part>.safetensors``): always ``encoder``."""

    def after_step(self) -> None:
        """Called after every optimizer step (EMA targets)."""

    def set_epoch(self, epoch: float) -> None:
        """The stage's position in epochs (fractional), set by the loop before every step: for
        objectives that change over training (CLOOB's InfoNCE warm start)."""

    def upper_bounds(self) -> list[tuple[nn.Parameter, float]]:
        """Parameters clamped from above after every step (``engine.clamp_after_step``)."""


class MAETask(nn.Module):
    views = 1

    def __init__(self, encoder: m.ViT, stage: MAEStage, size: str) -> None:
        super().__init__()
        self.mae = m.mae_for(encoder, size, stage.mask_ratio)
        self.norm_pix = stage.norm_pix

    def forward(self, batch: dict[str, torch.Tensor], rank: int = 0, world_size: int = 1) -> torch.Tensor:
        imgs = batch["image"]
        pred, mask = self.mae(imgs)
        # The loss in fp32 whatever the module's precision (as MAE's autocast does).
        return mae_loss(imgs.float(), pred.float(), mask, self.mae.encoder.patch_size, self.norm_pix)

    def param_groups(self, lr_fast: float, lr_slow: float, wd: float) -> list[dict]:
        return mae_param_groups(self.mae, lr_fast, lr_slow, wd)

    def exports(self) -> dict[str, nn.Module]:
        return {"encoder": self.mae.encoder, "mae": self.mae}

    def after_step(self) -> None:
        pass

    def upper_bounds(self) -> list[tuple[nn.Parameter, float]]:
        return []

    def set_epoch(self, epoch: float) -> None:
        pass


class NNCLRTask(nn.Module):
    """MAE-CT stages 2 and 3: the NNCLR head on two views; the encoder frozen or partly tuned."""

    views = 2

    def __init__(self, encoder: m.ViT, stage: AnyStage, pool: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.pool = pool
        self.tune_encoder = isinstance(stage, ContrastiveTuningStage)
        # Stage 2: the online projector feeds queue and lookups; stage 3: an EMA target does.
        self.head = m.NNCLRHead(
            encoder.dim,
            stage.head_hidden_dim,
            stage.head_out_dim,
            stage.predictor_hidden_dim,
            stage.queue_size,
            stage.ema_momentum if self.tune_encoder else None,
        )
        self.layer_decay = stage.layer_decay if self.tune_encoder else 1.0
        self.head_weight_decay = stage.head_weight_decay
        default_frozen = encoder.depth // 2 if self.tune_encoder else encoder.depth
        self.frozen_blocks = freeze_lower_blocks(
            encoder, default_frozen if stage.frozen_blocks is None else stage.frozen_blocks
        )
        if not self.tune_encoder:  # stage 2: the encoder is a fixed feature extractor
            encoder.requires_grad_(False)
        self.topk, self.temperature = stage.topk, stage.temperature

    def forward(self, batch: dict[str, torch.Tensor], rank: int = 0, world_size: int = 1) -> torch.Tensor:
        ids = batch["index"]
        with torch.set_grad_enabled(self.tune_encoder and torch.is_grad_enabled()):
            f1 = self.encoder(batch["image"], self.pool)  # (B, D)
            f2 = self.encoder(batch["image2"], self.pool)
        (p1, t1), (p2, t2) = self.head(f1), self.head(f2)
        p1, t1, p2, t2 = p1.float(), t1.float(), p2.float(), t2.float()  # lookups and loss in fp32
        if int(self.head.queue.ptr) == 0 and bool((self.head.queue.ids < 0).all()):
            # Empty queue at the very start: seed it with this global batch's other view.
            self.head.queue.push(
                gather_features(t2, rank, world_size), gather_features(ids, rank, world_size) + (1 << 40)
            )
        nn1 = self.head.queue.nearest(t1, ids, self.topk)
        nn2 = self.head.queue.nearest(t2, ids, self.topk)
        loss = symmetric_nnclr_loss(p1, p2, nn1, nn2, self.temperature, rank, world_size)
        if self.training:
            # Every rank enqueues the same global batch, so the queues stay identical.
            self.head.queue.push(gather_features(t1, rank, world_size), gather_features(ids, rank, world_size))
        return loss

    def param_groups(self, lr_fast: float, lr_slow: float, wd: float) -> list[dict]:
        return mae_ct_param_groups(
            self.encoder, self.head, lr_fast, lr_slow, wd, self.layer_decay, self.head_weight_decay
        )

    def exports(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "head": self.head}

    def after_step(self) -> None:
        self.head.update_target()  # stage 3's EMA target (a no-op in stage 2)

    def upper_bounds(self) -> list[tuple[nn.Parameter, float]]:
        return []

    def set_epoch(self, epoch: float) -> None:
        pass


class ImageTextTask(nn.Module):
    views = 1

    def __init__(self, model: m.ImageTextModel, stage: CLOOBStage | CLIPStage) -> None:
        super().__init__()
        self.model = model
        self.objective = stage.name
        self.inv_tau = stage.inv_tau
        self.beta = stage.hopfield_beta
        self.infonce_epochs = stage.infonce_epochs or 0.0
        self.learned_scale = stage.name == "clip" or bool(stage.learnable_inv_tau)
        self.epoch = 0.0

    def set_epoch(self, epoch: float) -> None:
        self.epoch = epoch

    def forward(self, batch: dict[str, torch.Tensor], rank: int = 0, world_size: int = 1) -> torch.Tensor:
        img, txt = self.model(batch["image"], batch["tokens"])
        img, txt = img.float(), txt.float()  # similarities, Hopfield softmax and loss in fp32
        # tau^-1: CLIP's learned scale (its log clamped at ln 100 after each step, upper_bounds, as
        # open_clip does: a clamp here would stop its gradient for good once it passed 100);
        # CLOOB's fixed one, or learned the same way (learnable_inv_tau).
        inv_tau = self.model.logit_scale.exp() if self.learned_scale else self.inv_tau
        if self.objective == "cloob":
            if self.epoch < self.infonce_epochs:
                # The warm start: InfoNCE on the embeddings themselves at the same fixed tau^-1
                # (divided by it, as InfoLOOB is), until they are spread enough for the Hopfield
                # retrievals to tell them apart (CLOOBStage.infonce_epochs says why).
                return clip_loss(img, txt, inv_tau, rank, world_size) / inv_tau
            return cloob_loss(img, txt, inv_tau, self.beta, rank, world_size)
        return clip_loss(img, txt, inv_tau, rank, world_size)

    def param_groups(self, lr_fast: float, lr_slow: float, wd: float) -> list[dict]:
        return cloob_param_groups(self.model, lr_fast, lr_slow, wd)

    def exports(self) -> dict[str, nn.Module]:
        return {"encoder": self.model.image_encoder, "model": self.model}

    def after_step(self) -> None:
        pass

    def upper_bounds(self) -> list[tuple[nn.Parameter, float]]:
        return [(self.model.logit_scale, math.log(100))] if self.learned_scale else []


def build_task(spec: JobSpec, stage_index: int, init_from: str | None) -> Task:
    """The stage's module, initialised from the previous stage's export when ``init_from`` is set."""
    stage = spec.stages[stage_index]
    if init_from:
        check_init_from(spec, init_from)
    if stage.name in ("cloob", "clip"):
        model = build_image_text(spec.model)
        if init_from:
            load_part(model.image_encoder, init_from, "encoder")
        with torch.no_grad():  # CLIP's learned scale starts there, and CLOOB's when learnable
            model.logit_scale.fill_(math.log(stage.inv_tau))
        return ImageTextTask(model, stage)
    encoder = build_encoder(spec.model)
    if init_from:
        load_part(encoder, init_from, "encoder")
    if stage.name == "mae":
        return MAETask(encoder, stage, spec.model.size)
    task = NNCLRTask(encoder, stage, spec.model.pool)
    if stage.name == "contrastive_tuning" and init_from and _has_part(init_from, "head"):
        load_part(task.head, init_from, "head")  # MAE-CT: the head fitted in stage 2
        task.head.reset_target()  # the EMA target starts as stage 2's online projector
    return task


# What an export's weights fix: a job that builds anything else cannot start from them.
_GEOMETRY = ("size", "patch_size", "img_size", "in_chans", "pos_embed_grid")


def check_init_from(spec: JobSpec, init_from: str) -> None:
    """The export's encoder must be the one the job builds: size, patch, image size, positions.

    Weights trained with one position order (or on another grid) must not silently run with other
    positions; a size mismatch is named here rather than as a state-dict error inside a worker.
    """
    model = read_card(init_from)["model"]
    trained = model.get("pos_embed_order", "yx")  # absent: an older export
    if trained != spec.model.pos_embed_order:
        raise ValueError(
            f"{init_from} was trained with position order {trained!r}, the job builds"
            f" {spec.model.pos_embed_order!r}: set model.pos_embed_order={trained} to start from it"
        )
    wrong = [k for k in _GEOMETRY if model.get(k) != getattr(spec.model, k)]
    if wrong:
        has = ", ".join(f"{k}={model.get(k)}" for k in wrong)
        builds = ", ".join(f"{k}={getattr(spec.model, k)}" for k in wrong)
        fix = " ".join(f"--set model.{k}={'null' if model.get(k) is None else model.get(k)}" for k in wrong)
        raise ValueError(f"{init_from} holds an encoder with {has}; the job builds {builds}: start from it with {fix}")


def _has_part(export_dir: str, part: str) -> bool:

    return (Path(export_dir) / f"{part}.safetensors").is_file()
