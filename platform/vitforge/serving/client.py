"""A small Python client for the embedding endpoints."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


class ClientError(RuntimeError):
    """The server refused a request: ``status`` and its JSON ``error`` message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _b64(image: Any) -> str:
    """bytes, a path, a PIL image or a uint8 (H, W, 3) array -> base64 PNG/JPEG/WebP."""
    if isinstance(image, str | Path):
        return base64.b64encode(Path(image).read_bytes()).decode()
    if isinstance(image, bytes | bytearray):
        return base64.b64encode(bytes(image)).decode()

    img = Image.fromarray(np.asarray(image, dtype=np.uint8)) if not hasattr(image, "save") else image
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class Client:
    """``Client("http://127.0.0.1:8000", api_key=...)``; every method raises :class:`ClientError`
    with the server's reason on a 4xx/5xx."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                msg = r.json().get("error", r.text)
            except ValueError:
                msg = r.text
            raise ClientError(r.status_code, msg)
        return r.json()

    def models(self) -> list[dict]:
        return self._call("GET", "/v1/models")

    def embed_images(self, images: Iterable[Any], model: str | None = None) -> np.ndarray:
        """(N, D) float32 L2-normalized embeddings."""
        body = {"images": [_b64(i) for i in images], "model": model, "encoding": "base64_float16"}
        rows = self._call("POST", "/v1/embeddings/image", json=body)["embeddings"]
        return np.stack([np.frombuffer(base64.b64decode(r), dtype="<f2") for r in rows]).astype(np.float32)

    def embed_texts(self, texts: list[str], model: str | None = None) -> np.ndarray:
        out = self._call("POST", "/v1/embeddings/text", json={"texts": texts, "model": model})
        return np.asarray(out["embeddings"], dtype=np.float32)

    def zero_shot(self, images: Iterable[Any], labels: list[str], template: str = "a {}", model: str | None = None):
        body = {"images": [_b64(i) for i in images], "labels": labels, "template": template, "model": model}
        return self._call("POST", "/v1/classify/zero-shot", json=body)["results"]

    def search(
        self,
        image: Any = None,
        text: str | None = None,
        k: int = 5,
        method: str = "hopfield",
        beta: float = 8.0,
        model: str | None = None,
    ) -> list[dict]:
        body = {"image": _b64(image) if image is not None else None, "text": text, "k": k, "method": method,
                "beta": beta, "model": model}  # fmt: skip
        return self._call("POST", "/v1/search", json=body)["hits"]


def embed_folder(
    client: Client,
    folder: str | Path,
    batch_size: int = 32,
    model: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """Embed every image under ``folder`` (recursively), ``batch_size`` per request.

    A batch the server refuses as bad input (4xx other than 401/404) is retried file by file, so
    one bad file costs only itself. Returns (embedded paths, (N, D) embeddings, [(path, reason)]
    for the files refused).
    """
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no .png/.jpg/.jpeg/.webp images under {folder}")
    done, chunks, skipped = [], [], []
    for i in range(0, len(paths), batch_size):
        batch = paths[i : i + batch_size]
        try:
            chunks.append(client.embed_images(batch, model))
            done += batch
        except ClientError as e:
            if e.status in (401, 404) or e.status >= 500:
                raise
            for p in batch:
                try:
                    chunks.append(client.embed_images([p], model))
                    done.append(p)
                except ClientError as one:
                    if one.status in (401, 404) or one.status >= 500:
                        raise
                    skipped.append((str(p), str(one).split("images[0]: ", 1)[-1]))
        if progress:
            progress(min(i + batch_size, len(paths)), len(paths))
    emb = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    return [str(p) for p in done], emb, skipped
