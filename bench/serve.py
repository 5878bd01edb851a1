"""Serve throughput and latency: the batched deployment vs (a) the same model's batched forward
in-process and (b) a non-batched deployment, at 1, 16 and 64 concurrent clients, in one run.

ViT-S/16 at 224² (a forward pass costs more than the HTTP round trip). The client shares this
machine's cores: its own CPU time is reported next to each row. Then ``bench.serve_mix``: memory
per request and small-request latency under large images.

    python -m bench.serve [--smoke]
"""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import serve_mix
from bench.common import bench_main, local_ray, pin_threads, timeit


def _png(size: int, seed: int) -> str:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


async def _load(url: str, payload: dict, clients: int, requests: int) -> dict:
    import httpx
    import psutil

    proc = psutil.Process()
    cpu0 = proc.cpu_times()
    lat: list[float] = []
    errors = 0
    sem = asyncio.Semaphore(clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=clients)) as c:

        async def one() -> None:
            nonlocal errors
            async with sem:
                t = time.perf_counter()
                r = await c.post("/v1/embeddings/image", json=payload)
                lat.append(time.perf_counter() - t)
                errors += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(requests)))
        wall = time.perf_counter() - t0
    cpu1 = proc.cpu_times()
    lat.sort()
    return {
        "img_per_s": requests / wall,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "errors": errors,
        "client_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "wall_s": wall,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_export(size_name: str, patch: int, img: int) -> Path:
    """A randomly initialised MAE encoder export of that size (what is served does not matter here)."""
    from vitforge.config import load_spec
    from vitforge.inference import build_encoder
    from vitforge.train.export import save_export

    spec = load_spec(data={"model": {"size": size_name, "patch_size": patch, "img_size": img}})
    return save_export(tempfile.mkdtemp(prefix="bench-serve-"), {"encoder": build_encoder(spec.model)}, spec, "mae",
                       {"mean": [0.5] * 3, "std": [0.25] * 3})  # fmt: skip


def run(smoke: bool = False) -> list[dict]:
    import torch
    from ray import serve

    from vitforge.inference import encode_images, load_encoder
    from vitforge.serving.app import build_app

    size_name, patch, img = ("test", 4, 32) if smoke else ("small", 16, 224)
    clients_list, per_client = ((1, 4), 4) if smoke else ((1, 16, 64), 12)
    batch = 16
    export = tiny_export(size_name, patch, img)
    payload = {"images": [_png(img, 0)]}

    # (a) the same model's batched forward in-process, same threads as one replica.
    threads = torch.get_num_threads()  # restored below: the test suite runs this in its own process
    pin_threads(1)
    model, card = load_encoder(export)
    imgs = np.stack([np.random.default_rng(i).integers(0, 256, (img, img, 3), dtype=np.uint8) for i in range(batch)])
    t = timeit(lambda: encode_images(model, card, imgs), 1, 3)
    rows = [{"what": f"in-process batched forward (batch {batch}, 1 thread)", "clients": "-",
             "img_per_s": batch / t["median_s"], "p50_ms": 1000 * t["median_s"], "p99_ms": 1000 * t["max_s"],
             "errors": 0, "client_cpu_s": 0.0}]  # fmt: skip
    torch.set_num_threads(threads)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with local_ray(dashboard=False):
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            for label, max_batch in (("batched deployment", batch), ("non-batched deployment", 1)):
                app = build_app({"models": [{"name": "m", "model_ref": str(export), "max_batch_size": max_batch,
                                              "batch_wait_timeout_s": 0.01, "max_ongoing_requests": 64,
                                              "num_cpus": 1}]})  # fmt: skip
                serve.run(app, name="bench", route_prefix="/")
                asyncio.run(_load(url, payload, 4, 8))  # warm-up
                for clients in clients_list:
                    r = asyncio.run(_load(url, payload, clients, clients * per_client if clients > 1 else 16))
                    rows.append({"what": label, "clients": clients, **r})
                serve.delete("bench")
        finally:
            serve.shutdown()
    base = rows[0]["img_per_s"]
    top = max(c for c in clients_list)
    nonb = next(r["img_per_s"] for r in rows if r["what"] == "non-batched deployment" and r["clients"] == top)
    for r in rows:
        r["vs_in_process"] = r["img_per_s"] / base
        r["vs_non_batched"] = r["img_per_s"] / nonb if r["clients"] == top else None
        r["model"] = f"ViT-{size_name}/{patch} {img}px"
    return rows


COLS = ["what", "clients", "img_per_s", "p50_ms", "p99_ms", "errors", "client_cpu_s", "vs_in_process", "vs_non_batched"]


def main(argv: list[str] | None = None) -> list[dict]:
    rows = bench_main("serve", "Serve: images/s and latency (one CPU replica)", run, COLS, argv, __doc__)
    return rows + serve_mix.main(argv)


if __name__ == "__main__":
    main()
