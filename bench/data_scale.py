"""Does the driver stay flat as the data grows? A CLOOB stage on 2 Ray Train workers over Parquet
image–caption shards at 1x, 4x and 16x the rows, the same number of steps each time.

Per size: the driver's peak resident memory (sampled every 50 ms), the growth of the driver's
disk caches (Hugging Face's and vitforge's), the object store's peak (``/dev/shm`` in use on this
node since Ray started; tmpfs keeps a page once the store touched it, so a row is the most used up
to it), the planning time (listing and footers) and the trainers' images/s. Baseline: the 1x row;
flat is a ratio near 1 in every column but rows.

    python -m bench.data_scale [--smoke]

The shards hold noise JPEGs of 256x256 (the issue's stand-in for an image–caption corpus, about
60 KB a row); one shard is written and copied under new names, so 16x costs disk, not time.
"""

from __future__ import annotations

import io
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import bench_main, local_ray

CACHES = [Path.home() / ".cache" / "huggingface", Path.home() / ".cache" / "vitforge"]


def _shard(path: Path, rows: int, side: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(rows):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
        images.append(buf.getvalue())
    captions = [f"a photo of noise number {i}" for i in range(rows)]
    pq.write_table(pa.table({"image": images, "caption": captions}), path, row_group_size=500)


def _du(paths: list[Path]) -> int:
    return sum(f.stat().st_size for p in paths if p.exists() for f in p.rglob("*") if f.is_file())


class _Peak:
    """Samples this process's RSS and /dev/shm's use (above ``shm0``, its use before Ray started:
    the object store's pages, which tmpfs keeps once touched) in a thread; keeps the peaks."""

    def __init__(self, shm0: int) -> None:
        import psutil

        self.proc, self.rss, self.shm, self._stop = psutil.Process(), 0, 0, threading.Event()
        self.shm0 = shm0
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.rss = max(self.rss, self.proc.memory_info().rss)
            self.shm = max(self.shm, shutil.disk_usage("/dev/shm").used - self.shm0)
            time.sleep(0.05)

    def __enter__(self) -> _Peak:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def _spec(source: str, storage: str, steps: int, name: str):
    from vitforge.config import load_spec

    return load_spec(
        "tiny-cloob",
        [f"name={name}", f"data.source={source}", f"checkpoint.storage_path={storage}", "tracking.enabled=false",
         f"stages.0.max_steps={steps}", "stages.0.epochs=1", "data.window_rows=512", "data.mean=[0.5,0.5,0.5]",
         "data.std=[0.29,0.29,0.29]"],
    )  # fmt: skip


def run(smoke: bool = False) -> list[dict]:
    from vitforge.train.inputs import load_train_data
    from vitforge.train.run import job_dir, run_stage_on_ray

    base_rows, side, steps = (200, 64, 3) if smoke else (2000, 256, 20)
    rows_out = []
    shm0 = shutil.disk_usage("/dev/shm").used
    with tempfile.TemporaryDirectory() as tmp, local_ray():
        first = Path(tmp) / "one.parquet"
        _shard(first, base_rows, side)
        for scale in (1, 4) if smoke else (1, 4, 16):
            data = Path(tmp) / f"x{scale}"
            data.mkdir()
            for i in range(scale):
                shutil.copyfile(first, data / f"train-{i:05d}.parquet")
            spec = _spec(str(data), f"{tmp}/runs", steps, f"scale{scale}")
            disk0 = _du(CACHES)
            with _Peak(shm0) as peak:
                t0 = time.perf_counter()
                source = load_train_data(spec)
                plan_s = time.perf_counter() - t0
                result = run_stage_on_ray(spec, 0, None, source, {"mean": [0.5] * 3, "std": [0.29] * 3})
            if result.error:
                raise result.error
            hist = [h for h in _history(job_dir(spec)) if "img_per_s_total" in h]
            rows_out.append(
                {
                    "scale": f"{scale}x",
                    "rows": len(source),
                    "data_gib": sum(f.stat().st_size for f in data.iterdir()) / 2**30,
                    "plan_s": plan_s,
                    "driver_peak_gib": peak.rss / 2**30,
                    "driver_disk_mib": (_du(CACHES) - disk0) / 2**20,
                    "object_store_peak_gib": peak.shm / 2**30,
                    "img_per_s": statistics.median(h["img_per_s_total"] for h in hist[1:] or hist),
                }
            )
            shutil.rmtree(data)
    for r in rows_out:
        r["driver_peak_vs_1x"] = r["driver_peak_gib"] / rows_out[0]["driver_peak_gib"]
        r["object_store_vs_1x"] = r["object_store_peak_gib"] / max(rows_out[0]["object_store_peak_gib"], 1e-9)
    return rows_out


def _history(jd: Path) -> list[dict]:
    import json

    return [json.loads(x) for f in jd.glob("history-*.jsonl") for x in f.read_text().splitlines()]


COLS = ["scale", "rows", "data_gib", "plan_s", "driver_peak_gib", "driver_peak_vs_1x", "driver_disk_mib",
        "object_store_peak_gib", "object_store_vs_1x", "img_per_s"]  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    return bench_main("data_scale", "Driver memory, disk and object store vs data size", run, COLS, argv, __doc__)


if __name__ == "__main__":
    main()
