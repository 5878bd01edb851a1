"""The stages of a job spec: one pydantic class per stage kind, with the official recipe's
defaults, discriminated by ``name`` (a field of another stage is refused, naming it)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAE_CT_ORDER = ["mae", "nnclr_head", "contrastive_tuning"]
STAGE_NAMES = (*MAE_CT_ORDER, "cloob", "clip")


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OptimSpec(Spec):
    """TTUR: ``fast_lr`` for the fast group, ``slow_lr`` for the slow one (at batch ``base_batch``).

    Fields left out take the stage's official default (``optimizer_defaults`` of its stage class).
    """

    fast_lr: float = Field(1.5e-4, gt=0)
    slow_lr: float = Field(1.5e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = Field(0.0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    lr_scaling: Literal["linear", "none"] = "linear"
    base_batch: int = Field(256, gt=0)


class _Stage(Spec):
    """Fields every stage has. The stage classes below add their own; others are refused."""

    views: ClassVar[int] = 1  # augmented views per image; the lr scaling counts them (MAE-CT)
    tokens: ClassVar[bool] = False  # batches carry tokenized captions (image-text stages)
    optimizer_defaults: ClassVar[dict[str, Any]] = {}

    epochs: float = Field(1.0, gt=0)
    global_batch_size: int = Field(64, gt=0)
    optimizer: OptimSpec = Field(default_factory=OptimSpec)
    crop_scale: tuple[float, float] = (0.2, 1.0)  # RandomResizedCrop area fraction
    flip: bool = True  # random horizontal flip
    max_steps: int | None = Field(None, gt=0)  # cap (smoke runs and tests)

    @model_validator(mode="before")
    @classmethod
    def _optimizer_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.optimizer_defaults:
            given = data.get("optimizer")
            if given is None or isinstance(given, dict):
                data = {**data, "optimizer": {**cls.optimizer_defaults, **(given or {})}}
        return data

    @field_validator("crop_scale")
    @classmethod
    def _crop(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] <= 1:
            raise ValueError(f"crop_scale must be [low, high] with 0 < low <= high <= 1, got {list(v)}")
        return v


class MAEStage(_Stage):
    """MAE pretraining (facebookresearch/mae main_pretrain.py: crop (0.2, 1), flip, blr 1.5e-4)."""

    name: Literal["mae"]
    mask_ratio: float = Field(0.75, gt=0, lt=1)
    norm_pix: bool = True


class NNCLRStage(_Stage):
    """MAE-CT stages 2 and 3 (ml-jku/MAE-CT): two views, an NNCLR head, a queue of projections."""

    views: ClassVar[int] = 2
    crop_scale: tuple[float, float] = (0.08, 1.0)
    head_hidden_dim: int = Field(2048, gt=0)
    head_out_dim: int = Field(256, gt=0)
    predictor_hidden_dim: int = Field(4096, gt=0)
    queue_size: int = Field(65536, gt=0)
    temperature: float = Field(0.15, gt=0)
    head_weight_decay: float = Field(1e-5, ge=0)  # the head's; optimizer.weight_decay is the encoder's
    frozen_blocks: int | None = None  # None: stage default (all for nnclr_head, half for tuning)
    strong_aug: bool = False  # colour jitter, grey, blur, solarize on top of crop & flip


class NNCLRHeadStage(NNCLRStage):
    """Stage 2: the head on the frozen encoder; its online projector feeds queue and lookups."""

    name: Literal["nnclr_head"]
    topk: int = Field(1, ge=1)
    optimizer_defaults: ClassVar[dict[str, Any]] = {"fast_lr": 1e-4, "slow_lr": 1e-4, "weight_decay": 1e-5}


class ContrastiveTuningStage(NNCLRStage):
    """Stage 3: the upper half of the encoder tuned, an EMA target projector started from stage 2's."""

    name: Literal["contrastive_tuning"]
    topk: int = Field(20, ge=1)
    ema_momentum: float = Field(0.99, ge=0, le=1)
    layer_decay: float = Field(0.65, gt=0, le=1)
    optimizer_defaults: ClassVar[dict[str, Any]] = {"fast_lr": 1e-4, "slow_lr": 1e-4, "weight_decay": 0.05}


class _ImageTextStage(_Stage):
    """CLOOB / CLIP (ml-jku/cloob: crop (0.9, 1), no flip, lr 1e-3, wd 0.1)."""

    tokens: ClassVar[bool] = True

    crop_scale: tuple[float, float] = (0.9, 1.0)
    flip: bool = False
    optimizer_defaults: ClassVar[dict[str, Any]] = {
        "fast_lr": 1e-3,
        "slow_lr": 1e-3,
        "weight_decay": 0.1,
        "betas": (0.9, 0.98),
        "lr_scaling": "none",
    }


class CLOOBStage(_ImageTextStage):
    name: Literal["cloob"]
    inv_tau: float = Field(30.0, gt=0)
    hopfield_beta: float = Field(8.0, gt=0)
    # Epochs of InfoNCE (at the same fixed tau^-1) before InfoLOOB on Hopfield retrievals; not in
    # ml-jku/cloob. At initialisation the embeddings of a batch are close to each other (mean
    # pairwise cosine 0.7-0.95), the retrievals of every sample are then almost the same vector,
    # and the loss sits at its collapsed value 2 ln(B-1) tau (its gradient vanishes to second
    # order in the spread); which seeds leave it is luck. InfoNCE's gradient there is first order.
    infonce_epochs: float = Field(0.0, ge=0)
    # tau^-1 learned from ``inv_tau`` (ml-jku/cloob --learnable-inv-tau; clamped at 100 as CLIP's).
    learnable_inv_tau: bool = False


class CLIPStage(_ImageTextStage):
    """CLIP. It accepts CLOOB's fields so that ``--set stages.0.name=clip`` runs a CLOOB spec as
    CLIP on the same budget: ``inv_tau`` is where its learned logit scale starts (CLIP: 1/0.07 =
    14.3; clamped at 100 after each step); ``hopfield_beta``, ``infonce_epochs`` (its loss is
    InfoNCE throughout) and ``learnable_inv_tau`` (its scale is always learned) do not apply."""

    name: Literal["clip"]
    inv_tau: float = Field(1 / 0.07, gt=0)
    hopfield_beta: float | None = Field(None, gt=0)
    infonce_epochs: float | None = Field(None, ge=0)
    learnable_inv_tau: bool | None = None


StageSpec = Annotated[
    MAEStage | NNCLRHeadStage | ContrastiveTuningStage | CLOOBStage | CLIPStage, Field(discriminator="name")
]
AnyStage = MAEStage | NNCLRHeadStage | ContrastiveTuningStage | CLOOBStage | CLIPStage
