"""Every DeepSpeed call: the engine from a job spec, checkpoints, ZeRO-aware EMA, state sizes.

Sharding and precision are applied here, from outside the model (torchtitan's parallelize.py).
Runs with or without Ray: rank and world size come from torch.distributed.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitforge.config import JobSpec
from vitforge.models.vit import Block
from vitforge.stage_specs import AnyStage

CKPT_TAG = "ckpt"


COMPUTE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compute_dtype(spec: JobSpec) -> torch.dtype:
    """The dtype DeepSpeed casts the module to; float inputs must be sent in it (losses are fp32)."""
    return COMPUTE_DTYPES[spec.deepspeed.precision]


def deepspeed_config(spec: JobSpec, micro_batch: int) -> dict[str, Any]:
    ds = spec.deepspeed
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": ds.grad_accum,
        "gradient_clipping": ds.grad_clip,
        "zero_optimization": {"stage": ds.zero_stage},
        # Our optimizer is torch's AdamW (or DeepSpeedCPUAdam with offload): allowed with ZeRO.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if ds.precision == "bf16":
        cfg["bf16"] = {"enabled": True}
    elif ds.precision == "fp16":
        cfg["fp16"] = {"enabled": True, "initial_scale_power": 16}
    if ds.offload_optimizer:
        if ds.zero_stage == 0:
            raise ValueError("deepspeed.offload_optimizer needs deepspeed.zero_stage >= 1")
        cfg["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": spec.scaling.use_gpu}
    if ds.zero_stage == 3:
        # Small models: keep whole parameters resident below 1M elements per module.
        cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    return cfg


def build_optimizer(groups: list[dict], stage: AnyStage, offload: bool) -> torch.optim.Optimizer:
    opt = stage.optimizer
    clean = [{k: v for k, v in g.items() if k not in ("group", "lr_scale")} for g in groups]
    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(clean, lr=opt.slow_lr, betas=opt.betas, adamw_mode=True)
    return torch.optim.AdamW(clean, lr=opt.slow_lr, betas=opt.betas)


def compile_blocks(task: nn.Module, zero_stage: int) -> int:
    """``torch.compile`` the forward of every transformer block of ``task`` in place (encoder, MAE
    decoder, text tower), before DeepSpeed wraps it; returns how many.

    Per block, because a whole-model compile breaks on ZeRO-3's parameter hooks. Only ``forward``
    is compiled, so each module's hooks run outside the graph: ``torch.compile(module)`` would add
    ``_orig_mod.`` to the state-dict keys, and ``Module.compile()`` traces the hooks too (under
    ZeRO-3 DeepSpeed's ``torch.compiler.disable``d hooks then cut every block into pieces until the
    recompile limit). Keys stay as eager ones: checkpoints and exports are unchanged. Under ZeRO-3
    each block is made a leaf, so DeepSpeed gathers its parameters once on entry instead of hooking
    every Linear inside the compiled forward. All blocks share Block.forward's compiled code: one
    graph for the first sequence length, a dynamic-length one after the second (encoder
    (B, 1 + kept, D) vs decoder (B, 1 + N, D)), and one more under no_grad (evaluation).
    """
    blocks = [mod for mod in task.modules() if isinstance(mod, Block)]
    if zero_stage == 3 and blocks:
        from deepspeed.utils import set_z3_leaf_modules

        set_z3_leaf_modules(task, [Block])
    for blk in blocks:
        blk.forward = torch.compile(blk.forward)  # an instance attribute: not a parameter or buffer
    return len(blocks)


def skip_shm_inference_op() -> None:
    """DeepSpeed's CPU accelerator JIT-compiles a shared-memory all-reduce (``deepspeed_shm_comm``,
    C++ with ninja) when its comm backend starts, and rebuilds it for every new environment path.
    Only ``inference_all_reduce`` uses it; training all-reduces through torch.distributed (gloo
    here, NCCL on GPUs, where the op does not exist). Marking it incompatible skips ~90 s of
    compiling per fresh environment on 2 cores and the load per engine; the gradients are the same.
    """
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cpu":  # elsewhere the op does not exist: leave the probe alone
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def init_engine(task: nn.Module, groups: list[dict], spec: JobSpec, stage: AnyStage, micro_batch: int):
    """Wrap ``task`` in a DeepSpeed engine. torch.distributed must be initialised (Ray Train does it)."""
    import deepspeed

    if not any(p.requires_grad for g in groups for p in g["params"]):
        raise ValueError(f"stage {stage.name}: no trainable parameters")
    optimizer = build_optimizer(groups, stage, spec.deepspeed.offload_optimizer)
    skip_shm_inference_op()
    engine, optimizer, _, _ = deepspeed.initialize(
        model=task, optimizer=optimizer, config=deepspeed_config(spec, micro_batch), dist_init_required=False
    )
    return engine


def clamp_after_step(bounds: list[tuple[nn.Parameter, float]]) -> None:
    """Clamp each parameter at its upper bound after an optimizer step (CLIP's log logit scale at
    ln 100, as open_clip does), the optimizer's fp32 master copy included: under ZeRO 1-3 or bf16
    that copy lives apart from the module's parameter, and clamping the module alone would be
    undone by the next step. Every rank calls it (ZeRO-3 gathers the full parameter)."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

    for param, high in bounds:
        master = safe_get_full_fp32_param(param)  # None where the module's parameter is the master
        if master is not None and bool((master > high).any()):
            safe_set_full_fp32_param(param, master.clamp(max=high))
        with torch.no_grad():
            param.clamp_(max=high)


def save_checkpoint(engine, directory: str | Path, client_state: dict) -> None:
    """Every rank writes its shard (collective); ``client_state`` lands with rank 0's model states."""
    engine.save_checkpoint(str(directory), tag=CKPT_TAG, client_state=client_state)


def load_checkpoint(engine, directory: str | Path) -> dict:
    """Restore model, optimizer and scheduler shards; returns the client state saved with them."""
    _, client_state = engine.load_checkpoint(str(directory), tag=CKPT_TAG, load_optimizer_states=True)
    if client_state is None:
        raise FileNotFoundError(f"no DeepSpeed checkpoint with tag {CKPT_TAG!r} in {directory}")
    return client_state


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def state_bytes(engine) -> dict[str, int]:
    """This rank's bytes of model parameters (ZeRO-3: its partition), gradients and optimizer state
    (moments plus fp32 master partitions), read from the engine's own tensors."""
    module_params = list(engine.module.parameters())
    ids = {id(p) for p in module_params}
    params = sum(_nbytes(p.ds_tensor) if hasattr(p, "ds_tensor") else _nbytes(p) for p in module_params)
    grads = sum(_nbytes(p.grad) for p in module_params if p.grad is not None)
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    opt = 0
    for st in inner.state.values():
        opt += sum(_nbytes(v) for v in st.values() if torch.is_tensor(v) and v.dim() > 0)
    for g in inner.param_groups:  # master copies, unless they are the module's own parameters
        for p in g["params"]:
            if id(p) not in ids:
                opt += _nbytes(p)
                if p.grad is not None:
                    grads += _nbytes(p.grad)
    return {"param_bytes": params, "grad_bytes": grads, "optimizer_bytes": opt}


def consolidated_state_dict(checkpoint_dir: str | Path, zero_stage: int) -> dict[str, torch.Tensor]:
    """fp32 weights of the whole task module from a (possibly sharded) checkpoint directory.

    Runs anywhere with DeepSpeed installed (the driver): ZeRO >= 1 through DeepSpeed's
    ``zero_to_fp32``; ZeRO-0 from rank 0's model states. Only the run's own checkpoints are read.
    """
    d = Path(checkpoint_dir)
    if zero_stage >= 1:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its prints
            sd = get_fp32_state_dict_from_zero_checkpoint(str(d), tag=CKPT_TAG)
    else:
        states = torch.load(d / CKPT_TAG / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        sd = states["module"]
    return {k: v.float() for k, v in sd.items()}


def cpu_accelerator_env() -> None:
    """DeepSpeed picks its accelerator at import: select the CPU one where there is no GPU."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
