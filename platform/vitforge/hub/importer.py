"""``vitforge import``: a public checkpoint -> a vitforge export, the same folder a stage writes.

open (``read``) -> official MAE names (``names``) -> size row and positions (``geometry``) ->
vitforge's modules, loaded all-or-nothing (``convert``) -> ``train.export.save_export`` with the
provenance in the card. Every stage (``init_from``), ``vitforge eval`` and Serve then read it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import vitforge.models as m
from vitforge.config import JobSpec, ModelSpec
from vitforge.hub.convert import load_checked, to_vitforge
from vitforge.hub.geometry import Geometry, check_decoder, infer_geometry, position_order
from vitforge.hub.names import to_mae_names
from vitforge.hub.read import CheckpointError, open_checkpoint
from vitforge.inference import build_encoder
from vitforge.train.export import save_export

# MAE and MAE-CT train on ImageNet statistics (timm's IMAGENET_DEFAULT_MEAN / _STD).
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
VITFORGE_LN_EPS = 1e-6


def import_checkpoint(
    source: str | Path,
    out: str | Path,
    img_size: int | None = None,
    interpolate_pos: bool = False,
    pool: str | None = None,
    encoder_only: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Convert ``source`` (official MAE .pth, a HF ViTMAE/ViT folder, an ml-jku/MAE-CT .th) into ``out``.

    ``img_size``: another resolution than the checkpoint's, only with ``interpolate_pos`` (the
    positions are then interpolated from the trained grid; the card records it). ``pool``: the
    card's pooling (default: the MAE-CT recipe's for the size). Raises ``CheckpointError``.
    """
    opened = open_checkpoint(source)
    renamed = to_mae_names(opened)
    geo = infer_geometry(renamed, opened.config)
    t = renamed.tensors
    if not geo.has_decoder and "mask_token" in t:  # an encoder-only release that kept the mask token
        renamed.dropped[renamed.origin["mask_token"]] = "MAE's mask token without its decoder"
        t.pop("mask_token")
    if geo.has_decoder and encoder_only:
        for k in [k for k in t if k.startswith("decoder") or k == "mask_token"]:
            renamed.dropped[renamed.origin[k]] = "--encoder-only"
            t.pop(k)
    decoder = geo.has_decoder and not encoder_only
    if decoder:
        check_decoder(geo, t, opened.config)
    positions = _positions(geo, t, renamed.origin, decoder, opened.config)
    model = _model_spec(geo, img_size, interpolate_pos, pool, positions["order"], renamed.origin["pos_embed"])
    enc_state, dec_state, src = to_vitforge(t, renamed.origin, geo.cls_row)
    encoder = build_encoder(model)
    what = f"vitforge's ViT-{geo.size}/{geo.patch_size}"
    load_checked(encoder, enc_state, src, what)
    parts: dict[str, Any] = {"encoder": encoder}
    if decoder:  # dec_state is empty otherwise: every decoder tensor was dropped above, and listed
        mae = m.mae_for(encoder, geo.size)
        load_checked(mae, {f"encoder.{k}": v for k, v in enc_state.items()} | dec_state, src, f"{what}'s MAE")
        parts["mae"] = mae
    provenance = _provenance(source, opened, renamed.dropped, positions, geo, model)
    name = "import-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source).resolve().name)
    spec = JobSpec(name=name, model=model)
    norm = _normalization(opened.files)
    path = save_export(out, parts, spec, "import", norm, {"imported_from": provenance})
    order, diff = positions["order"], positions["max_abs_diff"]
    log(f"{opened.layout} checkpoint: ViT-{geo.size}/{geo.patch_size} at {model.img_size}px, parts {sorted(parts)},"
        f" positions {order} (max |diff| from sin-cos {diff:.2g}), pool {model.pool}")  # fmt: skip
    if provenance["layer_norm_eps"]:
        log(f"note: the checkpoint's LayerNorm eps is {positions['layer_norm_eps']:g}; vitforge's (and MAE's) is 1e-6")
    for k, why in renamed.dropped.items():
        log(f"dropped {k}: {why}")
    return path


def _positions(geo: Geometry, t: dict, origin: dict, decoder: bool, config: dict) -> dict[str, Any]:
    """Both position tables must be the sin-cos of one order; MAE's decoder class row must be zero."""
    rows = slice(1, None) if geo.cls_row else slice(None)
    order, diff = position_order(t["pos_embed"][0, rows], geo.grid, origin["pos_embed"])
    if decoder:
        dpe = t.get("decoder_pos_embed")
        if dpe is None:
            raise CheckpointError("decoder_pos_embed is missing: the decoder's positions cannot be checked")
        d_order, d_diff = position_order(dpe[0, rows], geo.grid, origin["decoder_pos_embed"])
        if d_order != order:
            raise CheckpointError(f"{origin['decoder_pos_embed']} is in order {d_order!r}, the encoder's in {order!r}")
        if geo.cls_row and float(dpe[0, 0].abs().max()) > 1e-6:
            raise CheckpointError(f"{origin['decoder_pos_embed']}: a non-zero class row (vitforge's decoder adds none)")
        diff = max(diff, d_diff)
    eps = config.get("layer_norm_eps", VITFORGE_LN_EPS)
    return {"order": order, "max_abs_diff": diff, "layer_norm_eps": eps}


def _model_spec(geo: Geometry, img_size: int | None, interpolate: bool, pool: str | None, order: str, pos_name: str):
    size = img_size or geo.img_size
    if size != geo.img_size and not interpolate:
        raise CheckpointError(
            f"{pos_name} holds positions for {geo.grid}x{geo.grid} patches ({geo.img_size}px, patch {geo.patch_size});"
            f" --img-size {size} needs {size // geo.patch_size}x{size // geo.patch_size}: add --interpolate-pos to"
            " interpolate them (the model card records it), or leave out --img-size"
        )
    if size % geo.patch_size:
        raise CheckpointError(f"--img-size {size} is not a multiple of the checkpoint's patch size {geo.patch_size}")
    return ModelSpec(
        size=geo.size, patch_size=geo.patch_size, img_size=size, in_chans=geo.in_chans, pool=pool,
        pos_embed_order=order, pos_embed_grid=geo.grid if size != geo.img_size else None,
    )  # fmt: skip


def _provenance(source, opened, dropped: dict, positions: dict, geo: Geometry, model: ModelSpec) -> dict[str, Any]:
    path = Path(source).resolve()
    weights = path / "model.safetensors" if path.is_dir() else path
    eps = positions["layer_norm_eps"]
    return {
        "source": str(path),
        "layout": opened.layout,
        "sha256": _sha256(weights) if weights.is_file() else None,
        "architectures": opened.config.get("architectures"),
        "positions": {
            "order": positions["order"],
            "max_abs_diff_from_sincos": positions["max_abs_diff"],
            "trained_grid": geo.grid,
            "interpolated_to": model.img_size // geo.patch_size if model.pos_embed_grid else None,
        },
        "layer_norm_eps": {"checkpoint": eps, "vitforge": VITFORGE_LN_EPS} if eps != VITFORGE_LN_EPS else None,
        "dropped": dropped,
    }


def _normalization(files: dict[str, str]) -> dict[str, list[float]]:
    pre = json.loads(files["preprocessor_config.json"]) if "preprocessor_config.json" in files else {}
    if "image_mean" in pre and "image_std" in pre:
        return {"mean": list(pre["image_mean"]), "std": list(pre["image_std"])}
    return IMAGENET


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()
