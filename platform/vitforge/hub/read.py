"""Open a public checkpoint as plain tensors, never unpickling anything but weights.

Three layouts: a Hugging Face folder (``config.json`` + ``model.safetensors``), a torch file
(official MAE ``{"model": ...}``, ml-jku/MAE-CT ``{"state_dict": ..., "ctor_kwargs": ...}`` or a
bare state dict) and a ``.safetensors`` state dict. Naming is ``hub/names.py``'s job.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file


class CheckpointError(ValueError):
    """A checkpoint vitforge cannot import as it is; the message names the tensor and the fix."""


@dataclass
class Opened:
    """What a source holds: its layout, its tensors under their own names, and its metadata."""

    layout: str  # "hf" | "mae" (facebookresearch/mae) | "mae-ct" (ml-jku/MAE-CT) | "timm" (a bare state dict)
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)  # HF config.json, or MAE-CT's ctor_kwargs
    files: dict[str, str] = field(default_factory=dict)  # other files read (HF preprocessor_config.json)


def open_checkpoint(source: str | Path) -> Opened:
    """Read ``source`` (a folder or a file) into tensors; unsupported layouts raise ``CheckpointError``."""
    path = Path(source)
    if path.is_dir():
        return _open_hf(path)
    if not path.is_file():
        raise CheckpointError(f"{source} does not exist (expected a .pth/.th/.safetensors file or a HF model folder)")
    if path.suffix == ".safetensors":
        return Opened("timm", load_file(str(path)))
    return _from_torch_object(_torch_load(path), path)


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} is not a weights file that loads with torch.load(weights_only=True) ({first});"
            " vitforge unpickles nothing but tensors. If it is your own training checkpoint (MAE's also"
            " pickles its argparse 'args'), save only the weights from a Python you trust:"
            f" torch.save({{'model': torch.load('{path}', weights_only=False)['model']}}, 'weights.pth')"
        ) from None


def _from_torch_object(obj: Any, path: Path) -> Opened:
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return Opened("mae", _only_tensors(obj["model"], path, "['model']"))
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        kwargs = obj.get("ctor_kwargs")
        return Opened("mae-ct", _only_tensors(obj["state_dict"], path, "['state_dict']"), dict(kwargs or {}))
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return Opened("timm", dict(obj))
    keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(
        f"{path} holds no state dict vitforge knows (found {keys}); expected an official MAE checkpoint"
        " {'model': state_dict}, an ml-jku/MAE-CT checkpoint {'state_dict': ..., 'ctor_kwargs': ...}"
        " or a bare state dict of tensors"
    )


def _only_tensors(sd: dict, path: Path, where: str) -> dict[str, torch.Tensor]:
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}{where} holds non-tensor entries {bad[:5]}: not a state dict")
    return dict(sd)


def _open_hf(path: Path) -> Opened:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{path} is a folder without config.json: not a Hugging Face model folder")
    config = json.loads(cfg_path.read_text())
    if (path / "model.safetensors").is_file():
        tensors = load_file(str(path / "model.safetensors"))
    elif (path / "pytorch_model.bin").is_file():
        obj = _torch_load(path / "pytorch_model.bin")
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path / 'pytorch_model.bin'} holds a {type(obj).__name__}, not a state dict")
        tensors = _only_tensors(obj, path / "pytorch_model.bin", "")
    else:
        raise CheckpointError(
            f"{path} has config.json but no model.safetensors (sharded checkpoints are not supported:"
            " load it with transformers and save_pretrained(..., max_shard_size='100GB') first)"
        )
    files = {}
    if (path / "preprocessor_config.json").is_file():
        files["preprocessor_config.json"] = (path / "preprocessor_config.json").read_text()
    return Opened("hf", tensors, config, files)
