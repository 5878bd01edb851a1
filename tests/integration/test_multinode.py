"""Workers placed across nodes: a real two-node Ray cluster, one Train worker on each node, each
node reading its own worker's part of the data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_one_worker_per_node(tmp_path: Path) -> None:
    driver = Path(__file__).with_name("multinode_driver.py")
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    r = subprocess.run(
        [sys.executable, str(driver), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        check=False,
    )
    lines = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stderr[-4000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    assert out["error"] is None and out["step"] == 4
    assert len(out["cluster_nodes"]) == 2
    # STRICT_SPREAD: the two workers sit on the two different nodes.
    assert len(out["worker_nodes"]) == 2 and set(out["worker_nodes"]) == set(out["cluster_nodes"])
    # Each node reads its own worker's windows: the Ray Data tasks split evenly between the nodes
    # (each rank has as many windows; every window read where its rank runs).
    reads = out["read_nodes"]
    assert reads and {reads.count(n) for n in out["cluster_nodes"]} == {len(reads) // 2}, out
