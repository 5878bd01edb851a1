"""Timing helpers shared by the benchmarks: warm-up, repeats, median and spread, pinned threads."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def pin_threads(n: int | None = None) -> int:
    """Both sides of a comparison run with the same intra-op thread count."""
    n = n or int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(n)
    return n


def timeit(fn: Callable[[], object], warmup: int, repeats: int) -> dict[str, float]:
    """Median and spread (min, max, stdev) of ``repeats`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "stdev_s": statistics.stdev(times) if len(times) > 1 else 0.0,
        "repeats": repeats,
    }


def over_seeds(key: str, vals: list[float]) -> dict:
    """A metric over seeds as the README's tables give it: the mean, the population std and each
    seed's value."""
    return {
        key: statistics.mean(vals),
        f"{key}_std": statistics.pstdev(vals),
        f"{key}_seeds": " ".join(f"{v:.3f}" for v in vals),
    }


def machine_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0).replace(" ", "-").lower()
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def save(name: str, rows: list[dict]) -> Path:
    """Merge ``rows`` under ``name`` into bench/results/<machine>.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{machine_name()}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = {"host": socket.gethostname(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    return path


def save_part(name: str, rows: list[dict], part: str) -> list[dict]:
    """Save ``rows`` under ``name`` replacing only the saved rows of the same ``part`` (a row field,
    e.g. the data set): a run of some parts keeps the others' rows. Returns every row saved."""
    path = RESULTS / f"{machine_name()}.json"
    saved = json.loads(path.read_text()).get(name, {}).get("rows", []) if path.is_file() else []
    ran = {r[part] for r in rows}
    rows = [r for r in saved if r[part] not in ran] + rows
    save(name, rows)
    return rows


def print_table(title: str, rows: list[dict], cols: list[str]) -> None:
    print(f"\n{title}")
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(cols, widths, strict=True)))


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def bench_main(name: str, title: str, run, cols: list[str], argv: list[str] | None, doc: str | None) -> list[dict]:
    """The shared command line of a benchmark: ``--smoke`` runs tiny configs and writes nothing."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny configuration, seconds; no results written")
    args = ap.parse_args(argv)
    rows = run(args.smoke)
    if rows:
        print_table(title, rows, cols)
        if not args.smoke:
            save(name, rows)
    return rows


@contextlib.contextmanager
def local_ray(num_cpus: int = 4, dashboard: bool = True, env: dict[str, str] | None = None) -> Iterator[None]:
    """A small local Ray for one benchmark, or the one this process already runs (the test suite's
    shared cluster): a benchmark shuts down only the cluster it started."""
    import ray

    started = not ray.is_initialized()
    if started:
        env = env or {"OMP_NUM_THREADS": "1"}
        ray.init(num_cpus=num_cpus, include_dashboard=dashboard, log_to_driver=False,
                 object_store_memory=200 * 2**20, runtime_env={"env_vars": env})  # fmt: skip
    try:
        yield
    finally:
        if started:
            ray.shutdown()
