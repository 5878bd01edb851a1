"""Test tiers: unmarked = pure torch, seconds; ``ray`` = real local cluster; ``slow``; ``gpu``."""

from __future__ import annotations

import os

import pytest
import torch

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS_DIR)  # bench/ is importable from here (pyproject: pythonpath)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session: ``ray.init`` costs ~5 s and ~0.7 GiB here.

    4 logical CPUs on 2 cores, so 2 Train workers and their controller fit; a small object
    store; the dashboard on (without it finished Train runs leak placement groups).
    """
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    ctx = ray.init(
        num_cpus=4,
        object_store_memory=200 * 1024**2,
        include_dashboard=True,
        log_to_driver=False,
        # Workers import test and benchmark modules (their loop functions) by name: put them on their path.
        runtime_env={
            "env_vars": {
                "DS_ACCELERATOR": "cpu",
                "OMP_NUM_THREADS": "1",
                "PYTHONPATH": os.pathsep.join([TESTS_DIR, ROOT, os.environ.get("PYTHONPATH", "")]),
            }
        },
    )
    yield ctx
    ray.shutdown()
