"""The job spec: one pydantic schema for every entry point (train, tune, eval, submit).

Unknown fields are rejected; errors name the field, the bad value and the allowed values.
Cross-field checks that would otherwise fail inside a worker run here, before any worker starts.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from vitforge.models.vit import SIZES
from vitforge.stage_specs import MAE_CT_ORDER, STAGE_NAMES, AnyStage, MAEStage, NNCLRStage, Spec, StageSpec

SizeName = Literal[tuple(SIZES)]  # the size table's names, in its order (one place to add a size)


class ModelSpec(Spec):
    """Sizes come from the table in ``vitforge.models.vit.SIZES``."""

    size: SizeName = "test"
    patch_size: int = Field(4, gt=0)
    img_size: int = Field(32, gt=0)
    in_chans: int = Field(3, gt=0)
    # None: the official recipe's pooling for the size: class token for large/huge (MAE-CT L/16,
    # H/14), the mean of the patch tokens for smaller encoders (MAE-CT B/16).
    pool: Literal["cls", "mean_patch"] | None = None
    grad_checkpointing: bool = False
    # torch.compile each transformer block (encoder, MAE decoder, text tower) where training sets
    # the engine up; per block, since a whole-model compile breaks on ZeRO-3's parameter hooks.
    compile: bool = False
    # Sin-cos position channels: "xy" column first (MAE's order, official weights); "yx" row first
    # (exports made before cards recorded it load as "yx").
    pos_embed_order: Literal["xy", "yx"] = "xy"
    # None: positions for this image size's grid. N: the N x N grid the weights were trained on
    # (`vitforge import --img-size ... --interpolate-pos`): positions interpolated from it.
    pos_embed_grid: int | None = Field(None, gt=0)
    # Image-text models (CLOOB / CLIP).
    text_size: SizeName | None = None
    embed_dim: int = Field(64, gt=0)
    context_length: int = Field(77, ge=3)
    # clip-bpe: CLIP's BPE (lower-cased; as OpenAI, open_clip, ml-jku/cloob); byte: UTF-8 bytes.
    tokenizer: Literal["clip-bpe", "byte"] = "clip-bpe"

    @model_validator(mode="after")
    def _patch_divides(self) -> ModelSpec:
        if self.pool is None:
            self.pool = "cls" if self.size in ("large", "huge") else "mean_patch"
        if self.img_size % self.patch_size:
            raise ValueError(f"model.img_size {self.img_size} is not divisible by model.patch_size {self.patch_size}")
        return self


class DataSpec(Spec):
    source: str = "digits-cluttered"
    format: Literal["builtin", "imagefolder", "parquet", "arrow", "saved", "webdataset"] | None = None
    split: str = "train"
    eval_split: str = "test"
    image_column: str = "image"
    label_column: str | None = "label"
    caption_column: str | None = "caption"
    builtin_options: dict[str, Any] = Field(default_factory=dict)
    on_bad: Literal["raise", "skip"] = "raise"
    # Rows shuffled together (webdataset's shuffle buffer): pieces are permuted by (seed, epoch), then
    # cut into windows of at most this many rows, each shuffled and decoded by one task.
    window_rows: int = Field(2048, ge=1)
    # Windows each worker has read and decoded at once (Ray Data tasks in flight per rank): its
    # read-ahead. More where a node has spare cores for decoding; each holds a window's bytes.
    tasks_per_worker: int = Field(2, ge=1)
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    mean: tuple[float, float, float] | None = None  # None: measured from the data
    std: tuple[float, float, float] | None = None


class ScalingSpec(Spec):
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, ge=0)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"


class DeepSpeedSpec(Spec):
    zero_stage: Literal[0, 1, 2, 3] = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    offload_optimizer: bool = False
    grad_accum: int = Field(1, ge=1)
    grad_clip: float = Field(0.0, ge=0)  # 0: no clipping (none of the official recipes clips)


class CheckpointSpec(Spec):
    storage_path: str = "./runs"
    every_steps: int | None = Field(None, gt=0)  # None: once per epoch and at the end
    keep: int = Field(2, ge=1)
    max_failures: int = Field(0, ge=-1)


class TrackingSpec(Spec):
    enabled: bool = True
    tracking_uri: str | None = None  # None: MLFLOW_TRACKING_URI, else ./mlruns.db
    experiment: str | None = None  # None: the job name
    registered_model: str | None = None  # None: the job name; the last stage's encoder is registered
    alias: str | None = None  # e.g. "champion": models:/NAME@champion (MLflow reserves "latest")
    log_every_steps: int = Field(10, gt=0)  # metrics computed and kept (cheap, local)
    report_every_steps: int = Field(50, gt=0)  # metrics sent to Ray Train (a barrier): rarely


class TuneSpec(Spec):
    """A TTUR search over (fast, slow) learning rates of one stage, optionally with other fields."""

    stage: int = -1  # index into stages; -1 = the last stage
    fast_lr: tuple[float, float] = (1e-4, 1e-2)  # log-uniform range
    slow_lr: tuple[float, float] | None = (1e-5, 1e-3)  # log-uniform range, or None to use ratio
    ratio: tuple[float, float] | None = None  # fast / slow, log-uniform; ratio >= 1 enforces fast >= slow
    # {"fast_lr": [...], "slow_lr": [...]}: every pair; or {"fast_lr": [...], "ratio": [...]}: slow =
    # fast / ratio (ratio [1.0]: a single-rate search, fast == slow)
    grid: dict[str, list[float]] | None = None
    extra: dict[str, list[Any]] = Field(default_factory=dict)  # field path -> choices, e.g. stages.0.topk
    search_alg: Literal["random", "optuna", "grid"] = "random"
    scheduler: Literal["asha", "none"] = "asha"
    metric: Literal["epoch_loss", "knn20"] | None = None  # None: auto (tune.metric.resolve_metric)
    num_samples: int = Field(8, ge=1)
    grace_period: int = Field(1, ge=1)  # epochs before ASHA may stop a trial
    reduction_factor: int = Field(3, ge=2)
    mode: Literal["train", "direct"] = "direct"  # a Ray Train run per trial, or in-process
    max_concurrent_trials: int | None = Field(None, ge=1)  # None: derived from the cluster

    @model_validator(mode="after")
    def _ranges(self) -> TuneSpec:
        for name in ("fast_lr", "slow_lr", "ratio"):
            r = getattr(self, name)
            if r is not None and not 0 < r[0] <= r[1]:
                raise ValueError(f"tune.{name} must be [low, high] with 0 < low <= high, got {list(r)}")
        if self.search_alg == "grid" and not self.grid:
            raise ValueError("tune.search_alg 'grid' needs tune.grid with fast_lr and slow_lr lists")
        if self.grid is not None:
            keys = sorted(self.grid)
            if keys not in (["fast_lr", "slow_lr"], ["fast_lr", "ratio"]):
                raise ValueError(f"tune.grid needs the lists fast_lr and slow_lr, or fast_lr and ratio; got {keys}")
            if not all(v > 0 for values in self.grid.values() for v in values):
                raise ValueError(f"tune.grid values must be > 0, got {self.grid}")
        if self.slow_lr is None and self.ratio is None:
            raise ValueError("tune needs slow_lr or ratio")
        return self


class JobSpec(Spec):
    name: str = Field("quickstart", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 0
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    deepspeed: DeepSpeedSpec = Field(default_factory=DeepSpeedSpec)
    stages: list[StageSpec] = Field(default_factory=lambda: [MAEStage(name="mae")], min_length=1)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    init_from: str | None = None  # an export directory to start the first stage from
    tune: TuneSpec | None = None

    @field_validator("stages")
    @classmethod
    def _stage_order(cls, stages: list[AnyStage]) -> list[AnyStage]:
        names = [s.name for s in stages]
        image_text = {"cloob", "clip"}
        if any(n in image_text for n in names) and len(names) > 1:
            raise ValueError(f"stages: cloob/clip run as a single stage, got {names}")
        mae_ct = [n for n in names if n in MAE_CT_ORDER]
        if mae_ct != sorted(mae_ct, key=MAE_CT_ORDER.index) or len(set(mae_ct)) != len(mae_ct):
            raise ValueError(f"stages: MAE-CT stages run in the order {MAE_CT_ORDER}, got {names}")
        return stages

    def micro_batch(self, stage_index: int, workers: int | None = None) -> int:
        """Images per worker per forward/backward: global batch / (workers x grad_accum)."""
        n = max(self.scaling.num_workers if workers is None else workers, 1)
        return self.stages[stage_index].global_batch_size // (n * self.deepspeed.grad_accum)

    @model_validator(mode="after")
    def _feasible(self) -> JobSpec:
        workers = max(self.scaling.num_workers, 1)
        depth = SIZES[self.model.size].depth
        for i, st in enumerate(self.stages):
            where = f"stages[{i}] ({st.name})"
            per_step = workers * self.deepspeed.grad_accum
            if st.global_batch_size % per_step:
                raise ValueError(
                    f"{where}.global_batch_size {st.global_batch_size} is not divisible by"
                    f" scaling.num_workers x deepspeed.grad_accum = {per_step}"
                )
            if isinstance(st, NNCLRStage) and st.queue_size % st.global_batch_size:
                raise ValueError(
                    f"{where}.queue_size {st.queue_size} is not a multiple of global_batch_size {st.global_batch_size}"
                )
            frozen = getattr(st, "frozen_blocks", None)
            if frozen is not None and not 0 <= frozen <= depth:
                raise ValueError(
                    f"{where}.frozen_blocks {st.frozen_blocks} must be in [0, {depth}] for {self.model.size}"
                )
        if self.stages[0].tokens and self.model.text_size is None:
            self.model.text_size = self.model.size
        if self.deepspeed.precision == "fp16" and not self.scaling.use_gpu:
            raise ValueError(
                "deepspeed.precision 'fp16' needs scaling.use_gpu=true (DeepSpeed's CPU accelerator has no fp16);"
                " on CPU use 'bf16' (to check the GPU path) or 'fp32'"
            )
        return self


# Stage kind -> its class, for the field names a misspelt stage field is compared with.
_STAGE_CLASSES = {get_args(c.model_fields["name"].annotation)[0]: c for c in get_args(AnyStage)}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside a field's type (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for a in get_args(annotation) if (m := _model_in(a)) is not None), None)


def _did_you_mean(loc: tuple) -> str:
    """`` did you mean 'X'?`` for an unknown field at ``loc``: the closest field name of the model
    there (a stage's own kind for stage fields), or nothing when none is close."""
    model: type[BaseModel] | None = JobSpec
    for part in loc[:-1]:
        if model is None:
            return ""
        if isinstance(part, int):  # a list index: the model stays the list's element type
            continue
        if part in _STAGE_CLASSES and part not in model.model_fields:  # a stage's tag
            model = _STAGE_CLASSES[part]
        else:
            model = _model_in(model.model_fields[part].annotation) if part in model.model_fields else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def format_errors(err: ValidationError, source: str = "job spec") -> str:
    """One line per error: the dotted field, the message (with allowed values), the bad value."""
    lines = [f"invalid {source}:"]
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        msg = e["msg"].removeprefix("Value error, ")
        hint = _did_you_mean(e["loc"]) if e["type"] == "extra_forbidden" else ""
        # A stage's errors carry its tag (stages.0.mae.inv_tau): name the stage kind instead.
        if len(loc) > 2 and loc[0] == "stages" and loc[2] in STAGE_NAMES:
            tag = loc.pop(2)
            if e["type"] == "extra_forbidden" and len(loc) == 3:
                msg = f"not a field of a {tag!r} stage"
        if e["type"] == "union_tag_invalid":  # an unknown stage name
            loc.append("name")
            msg = f"unknown stage {e['ctx']['tag']!r}; allowed: {e['ctx']['expected_tags']}"
        value = e.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        lines.append(f"  {'.'.join(loc) or '(root)'}: {msg}{shown}{hint}")
    return "\n".join(lines)


class SpecError(ValueError):
    """A job spec that does not validate; ``str()`` lists every bad field."""


def _set_path(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur: Any = data
    for p in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[int(p)]
        else:
            if cur.get(p) is None:  # an absent or null section (``tune: null``) takes its fields
                cur[p] = {}
            cur = cur[p]
    if isinstance(cur, list):
        cur[int(parts[-1])] = value
    else:
        cur[parts[-1]] = value


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, Any]]:
    """``["a.b=3", "stages.0.epochs=0.5"]`` -> pairs with YAML-parsed values."""
    out = []
    for item in overrides or []:
        if "=" not in item:
            raise SpecError(f"override {item!r} must look like field.path=value")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw)))
    return out


def load_spec(path: str | Path | None = None, overrides: list[str] | None = None, data: dict | None = None) -> JobSpec:
    """Read a YAML job spec (or a dict), apply ``--set`` overrides, validate."""
    if data is not None:
        data = copy.deepcopy(data)  # overrides must not leak into the caller's dict
    else:
        if path is None:
            data = {}
        else:
            p = resolve_spec_path(path)
            try:
                data = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError as e:
                raise SpecError(f"job spec {str(path)!r} is not valid YAML: {e}") from None
            if not isinstance(data, dict):
                raise SpecError(f"job spec {str(path)!r} must be a mapping of fields")
    for key, value in parse_overrides(overrides):
        try:
            _set_path(data, key, value)
        except (IndexError, ValueError, TypeError):
            raise SpecError(f"override {key!r}: no such list entry or field") from None
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_errors(e, str(path) if path else "job spec")) from None


SHIPPED_JOBS = Path(__file__).parent / "jobs"  # the job specs that ship with the package


def shipped_jobs() -> list[str]:
    return sorted(p.stem for p in SHIPPED_JOBS.glob("*.yaml"))


def resolve_spec_path(path: str | Path) -> Path:
    """A YAML file, or the name of a shipped job spec (``quickstart``, ``tiny-cloob``, ...)."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = SHIPPED_JOBS / f"{p.name.removesuffix('.yaml')}.yaml"
    if p.parent == Path(".") and shipped.is_file():
        return shipped
    raise SpecError(f"job spec {str(path)!r} does not exist (shipped specs: {', '.join(shipped_jobs())})")


def dump_spec(spec: JobSpec) -> str:
    """The spec as YAML that ``load_spec`` reads back to the same spec; each stage with its own
    kind's fields only, and no ``tune:`` line on a job that searches nothing."""
    data = spec.model_dump(mode="json")
    if data.get("tune") is None:
        data.pop("tune", None)
    return yaml.safe_dump(data, sort_keys=False)
