"""Serve under large images: memory of the HTTP proxy, the gateway (ingress) and the encoder
replica per request in flight, and the latency of small requests while large ones are in flight.

Baseline: the same small requests with nothing else in flight, in the same run. The processes are
found by the titles Ray gives its actors (``ray::ProxyActor``, ``ray::ServeReplica:<app>:<name>``)
and their resident memory is sampled every 20 ms (peak) with psutil. A test-size ViT (32²): the
encoder is cheap, so what the table shows is the proxy's and the gateway's cost. Run by
``python -m bench.serve`` after its throughput table.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from bench.common import bench_main, local_ray

MIB = 2**20


def _b64(img, fmt: str) -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return base64.b64encode(buf.getvalue()).decode()


def large_bodies(smoke: bool) -> dict[str, bytes]:
    """Requests at the shipped limits, each costly in its own way (JSON bodies, ready to send)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    side = 512 if smoke else 1024
    noise = [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(4)]
    big = 1024 if smoke else 4096
    photo = Image.fromarray(rng.integers(0, 256, (big // 2, big // 2, 3), dtype=np.uint8))
    bodies = {
        f"4 noise PNGs of {side}² (big body)": {"images": [_b64(im, "PNG") for im in noise]},
        f"flat PNG of {big}² (big decode)": {"images": [_b64(Image.new("RGB", (big, big), (90, 30, 200)), "PNG")]},
        f"noise JPEG of {big // 2}²": {"images": [_b64(photo, "JPEG")]},
    }
    return {k: json.dumps(v).encode() for k, v in bodies.items()}


def serve_processes() -> dict[str, list[int]]:
    """Pids of the HTTP proxy, the gateway and the encoder replicas, by Ray's process titles."""
    import psutil

    found: dict[str, list[int]] = {"proxy": [], "gateway": [], "replica": []}
    for p in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        if title.startswith("ray::ProxyActor"):
            found["proxy"].append(p.info["pid"])
        elif title.startswith("ray::ServeReplica") and ":Gateway" in title:
            found["gateway"].append(p.info["pid"])
        elif title.startswith("ray::ServeReplica") and ":encoder-" in title:
            found["replica"].append(p.info["pid"])
    missing = [role for role, pids in found.items() if not pids]
    if missing:
        raise RuntimeError(f"no Serve process found for {missing} (Ray's process titles changed?)")
    return found


class RssSampler:
    """Resident memory (MiB, summed over each role's processes): now, and the peak while running."""

    def __init__(self, pids: dict[str, list[int]], every_s: float = 0.02) -> None:
        import psutil

        self.procs = {role: [psutil.Process(p) for p in ps] for role, ps in pids.items()}
        self.every_s = every_s
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> dict[str, float]:
        return {role: sum(p.memory_info().rss for p in ps) / MIB for role, ps in self.procs.items()}

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = {r: max(v, self.peak[r]) for r, v in self.now().items()}

    def __enter__(self) -> RssSampler:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


async def _post_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], int]:
    """Latencies (s) of ``bodies`` sent ``concurrency`` at a time, and the count of non-200 answers."""
    import httpx

    lat: list[float] = []
    errors = 0
    sem = asyncio.Semaphore(concurrency)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=concurrency)) as c:

        async def one(body: bytes) -> None:
            nonlocal errors
            async with sem:
                t = time.perf_counter()
                r = await c.post("/v1/embeddings/image", content=body, headers=headers)
                lat.append(time.perf_counter() - t)
                errors += r.status_code != 200

        await asyncio.gather(*(one(b) for b in bodies))
    return lat, errors


async def _small_with_large(url: str, small: bytes, n: int, clients: int, large: list[bytes] | None) -> tuple:
    """``n`` small requests from ``clients`` clients; meanwhile (if ``large``) 2 clients send the large
    bodies in turn until the small ones are done."""
    done = asyncio.Event()
    sent = 0

    async def large_stream() -> None:
        nonlocal sent
        while not done.is_set():
            await _post_all(url, [large[sent % len(large)]], 1)
            sent += 1

    streams = [asyncio.create_task(large_stream()) for _ in range(2 if large else 0)]
    await asyncio.sleep(0.5 if large else 0)  # the large ones are in flight before the first small one
    lat, errors = await _post_all(url, [small] * n, clients)
    done.set()
    await asyncio.gather(*streams)
    return lat, errors, sent


def _p(lat: list[float], q: float) -> float:
    s = sorted(lat)
    return 1000 * s[min(len(s) - 1, int(q * len(s)))]


@contextmanager
def fresh_serve(export: str, port: int, warm: list[bytes]) -> Iterator[tuple[str, dict[str, list[int]]]]:
    """Serve started anew (proxy, gateway, replica: no memory kept from an earlier phase), warmed
    with small requests; its URL and process ids."""
    from ray import serve

    from vitforge.serving.app import build_app

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app({"models": [{"name": "m", "model_ref": export, "num_cpus": 1}]}), name="mix",
                  route_prefix="/")  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        asyncio.run(_post_all(url, warm, 2))
        yield url, serve_processes()
    finally:
        serve.shutdown()


def run(smoke: bool = False) -> list[dict]:
    from PIL import Image

    from bench.serve import free_port, tiny_export

    export = str(tiny_export("test", 4, 32))
    small = json.dumps({"images": [_b64(Image.new("RGB", (32, 32), (10, 200, 30)), "PNG")]}).encode()
    small_jpeg = json.dumps({"images": [_b64(Image.new("RGB", (32, 32)), "JPEG")]}).encode()
    warm = [small] * 8 + [small_jpeg]  # every decoder used once: imports are not a request's memory
    large = large_bodies(smoke)
    n_small, clients, burst = (40, 4, 4) if smoke else (400, 4, 8)
    port = free_port()
    rows = []
    with local_ray(dashboard=False):
        with fresh_serve(export, port, warm) as (url, pids):
            for label, bodies in (
                ("small only (baseline)", None),
                ("small, large ones in flight", list(large.values())),
            ):
                with RssSampler(pids) as mem:
                    lat, errors, n_large = asyncio.run(_small_with_large(url, small, n_small, clients, bodies))
                rows.append({"what": label, "requests": f"{n_small} small + {n_large} large", "errors": errors,
                             "p50_ms": 1000 * statistics.median(lat), "p99_ms": _p(lat, 0.99),
                             **{f"{r}_peak_mib": v for r, v in mem.peak.items()}})  # fmt: skip
        for label, body in list(large.items())[: 1 if smoke else None]:  # each burst on a fresh Serve
            with fresh_serve(export, port, warm) as (url, pids), RssSampler(pids) as mem:
                before = mem.now()
                lat, errors = asyncio.run(_post_all(url, [body] * burst, burst))
                after = mem.now()
            size = f"{burst} at once ({len(body) / MIB:.1f} MiB each)"
            rows.append({"what": f"burst of {burst}: {label}", "requests": size, "errors": errors,
                         "p50_ms": 1000 * statistics.median(lat), "p99_ms": _p(lat, 0.99),
                         **{f"{r}_peak_mib": v for r, v in mem.peak.items()},
                         "proxy_mib_per_request": (mem.peak["proxy"] - before["proxy"]) / burst,
                         "gateway_mib_per_request": (mem.peak["gateway"] - before["gateway"]) / burst,
                         "gateway_after_mib": after["gateway"]})  # fmt: skip
    for r in rows[:2]:  # the small requests' p99, against the baseline's
        r["p99_vs_small_only"] = r["p99_ms"] / rows[0]["p99_ms"]
    return rows


COLS = ["what", "requests", "errors", "p50_ms", "p99_ms", "p99_vs_small_only", "proxy_peak_mib", "gateway_peak_mib",
        "replica_peak_mib", "proxy_mib_per_request", "gateway_mib_per_request", "gateway_after_mib"]  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    return bench_main("serve_mix", "Serve: large images (memory per request; small-request p99 vs small only)", run,
                      COLS, argv, __doc__)  # fmt: skip


if __name__ == "__main__":
    main()
