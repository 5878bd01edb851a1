"""What the serving tests share: two exported test-size models with a gallery, and a Serve app
started on a free port of 127.0.0.1 and waited for until ready."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from vitforge.config import ModelSpec, load_spec
from vitforge.inference import build_encoder, build_image_text
from vitforge.train.export import save_export

NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
MODEL = {"size": "test", "patch_size": 4, "img_size": 16, "embed_dim": 32}


def export_models(root: Path) -> dict[str, Path]:
    """An image-only ViT (``vit``), an image-text CLOOB model (``cloob``) and a 20-item gallery of it."""
    from vitforge.serving.gallery import build_gallery

    torch.manual_seed(0)
    spec = load_spec(data={"model": MODEL})
    vit_dir = save_export(root / "vit", {"encoder": build_encoder(spec.model)}, spec, "mae", NORM)
    it_spec = load_spec(data={"model": MODEL, "stages": [{"name": "cloob"}]})
    model = build_image_text(ModelSpec.model_validate(it_spec.model.model_dump()))
    it_dir = save_export(root / "cloob", {"encoder": model.image_encoder, "model": model}, it_spec, "cloob", NORM)
    gallery = build_gallery(str(it_dir), "shapes", "test", root / "gallery", builtin_options={"n": 100, "size": 16})
    return {"vit": vit_dir, "cloob": it_dir, "gallery": gallery}


def two_models(exports: dict[str, Path]) -> list[dict[str, Any]]:
    """``build_app``'s ``models`` for both exports, half a CPU each."""
    return [
        {"name": "vit", "model_ref": str(exports["vit"]), "max_batch_size": 16, "num_cpus": 0.5},
        {"name": "cloob", "model_ref": str(exports["cloob"]), "max_batch_size": 8,
         "gallery": str(exports["gallery"]), "num_cpus": 0.5},
    ]  # fmt: skip


def start_serve(args: dict[str, Any]) -> str:
    """Serve on a free port, ``build_app(args)`` at ``/``; returns its URL once ``/readyz`` answers."""
    from ray import serve

    from vitforge.serving.app import build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args), name="embed", route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60) as c:
        for _ in range(240):
            try:
                if c.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    return url
