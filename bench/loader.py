"""Data loader throughput vs the ViT-B/16 MAE step's demand, per worker, on this machine.

Loader: JPEG decode + RandomResizedCrop(224) + flip + normalize in one process with one thread
(what one Ray Data map task does). Demand: images/s that one training worker consumes in a
ViT-B/16 MAE forward+backward at batch 8, measured in the same run. Goal: ratio >= 3.

    python -m bench.loader [--smoke]
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from bench.common import bench_main, pin_threads, timeit


def _jpegs(n: int, w: int, h: int) -> list[bytes]:
    """Smooth random photos-alike (JPEG-friendly), ImageNet-like size."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        small = rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _float_first(maker, rows: dict) -> list:
    """The loader before 2026-12: each decoded image made float at full size, then the views
    (which then resize floats, as they did)."""
    from vitforge.data.sources import load_image

    out = []
    for i, cell in enumerate(rows["image"]):
        x = torch.from_numpy(np.asarray(load_image(cell, "bench"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        out.append([v(x, torch.Generator().manual_seed(i * 2 + k)) for k, v in enumerate(maker.views)])
    return out


def _prepared_rows(size: int, n: int, repeats: int) -> list[dict]:
    """The reader's whole path (list, read, decode, crop, uint8 out) with one thread, from a folder
    of full-size photos (2048x1536 JPEGs, a phone's) and from the same folder prepared as Parquet
    shards with the longest side capped at 1.25x the training size (``vitforge data prepare``)."""
    import tempfile
    from pathlib import Path

    from vitforge.data import BatchMaker, build_view, iter_batches, load_source
    from vitforge.data.prepare import Reader, shard_plan, write_shard

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos" / "a"
        folder.mkdir(parents=True)
        for i, data in enumerate(_jpegs(n, 2048, 1536)):
            (folder / f"{i}.jpg").write_bytes(data)
        full = load_source(str(folder.parent))
        for w, path in shard_plan(full, f"{tmp}/shards", 1000, "parquet"):
            Path(path).parent.mkdir(exist_ok=True)
            write_shard(Reader.of(full), w, path, "parquet", max_side=round(1.25 * size))
        maker = BatchMaker([build_view(size, normalize=False)], "bench", seed=0)
        for what, src in (("full-size folder (2048x1536)", full), (f"prepared shards (max side {round(1.25 * size)})",
                          load_source(f"{tmp}/shards"))):  # fmt: skip
            t = timeit(lambda src=src: sum(1 for _ in iter_batches(src, maker, 16)), 1, repeats)
            out.append({"what": f"reader, MAE (1 view), 1 thread: {what}", "img_per_s": n / t["median_s"]})
    return out


def run(smoke: bool = False) -> list[dict]:
    import vitforge.models as m
    from vitforge.data import BatchMaker, build_view
    from vitforge.methods.mae import mae_loss

    size, n = (64, 16) if smoke else (224, 64)
    rows_in = {"id": list(range(n)), "image": _jpegs(n, 2 * size, int(1.6 * size)), "label": [0] * n}
    rows_in["caption"] = [None] * n
    rows = []
    pin_threads(1)
    for views, name in ((1, "MAE (1 view)"), (2, "MAE-CT (2 views)")):
        maker = BatchMaker([build_view(size) for _ in range(views)], "bench", seed=0)
        raw = BatchMaker([build_view(size, normalize=False) for _ in range(views)], "bench", seed=0)
        for what, fn in (
            ("float at full size, normalized (before)", lambda maker=maker: _float_first(maker, rows_in)),
            ("uint8 resize, normalized", lambda maker=maker: maker(rows_in, 0)),
            ("uint8 resize, uint8 out (normalized on the device)", lambda raw=raw: raw(rows_in, 0)),
        ):
            t = timeit(fn, 1, 2 if smoke else 5)
            rows.append({"what": f"loader, {name}, 1 thread: {what}", "img_per_s": n / t["median_s"]})

    rows += _prepared_rows(size, 8 if smoke else 48, 2 if smoke else 3)
    threads = pin_threads()
    size_name, patch, batch = ("test", 4, 4) if smoke else ("base", 16, 8)
    mae = m.mae_for(m.vit(size_name, patch, img_size=size), size_name)
    imgs = torch.randn(batch, 3, size, size)

    def step() -> None:
        pred, mask = mae(imgs)
        mae_loss(imgs, pred, mask, patch).backward()
        mae.zero_grad(set_to_none=True)

    t = timeit(step, 1 if smoke else 2, 3 if smoke else 5)
    demand = batch / t["median_s"]
    rows.append({"what": f"ViT-{size_name}/{patch} MAE step demand ({threads} threads)", "img_per_s": demand})
    for r in rows:
        r["ratio_vs_step"] = r["img_per_s"] / demand
        r["size"] = size
    return rows


COLS = ["what", "size", "img_per_s", "ratio_vs_step"]


def main(argv: list[str] | None = None) -> list[dict]:
    return bench_main("loader", "Loader vs step demand (per worker)", run, COLS, argv, __doc__)


if __name__ == "__main__":
    main()
