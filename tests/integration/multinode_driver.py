"""Run one MAE stage on a real two-node Ray cluster (two raylets on this machine), one worker per
node; print the node of each Train worker as JSON. Run as a script by test_multinode.py."""

import json
import sys


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(storage: str) -> None:
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors, list_tasks

    from vitforge.config import load_spec
    from vitforge.train.inputs import load_train_data, normalization_for
    from vitforge.train.run import run_stage_on_ray

    cluster = Cluster(
        initialize_head=True,
        # Its own dashboard port: the test session's cluster holds the default one.
        head_node_args={
            "num_cpus": 2,
            "object_store_memory": 150 * 2**20,
            "include_dashboard": True,
            "dashboard_port": _free_port(),
        },
    )
    cluster.add_node(num_cpus=2, object_store_memory=150 * 2**20)
    try:
        ray.init(address=cluster.address, runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}})
        spec = load_spec(
            data={
                "name": "two-nodes",
                "model": {"size": "test", "patch_size": 4, "img_size": 16},
                "data": {"source": "digits"},
                "scaling": {"num_workers": 2, "placement_strategy": "STRICT_SPREAD"},
                "stages": [{"name": "mae", "global_batch_size": 32, "max_steps": 4}],
                "checkpoint": {"storage_path": storage},
                "tracking": {"log_every_steps": 1},
            }
        )
        ds = load_train_data(spec)
        result = run_stage_on_ray(spec, 0, None, ds, normalization_for(spec, ds))
        workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True)
        reads = [t for t in list_tasks(detail=True, limit=10000) if "_WindowTask" in t.name]
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        print(
            "RESULT "
            + json.dumps(
                {
                    "error": repr(result.error) if result.error else None,
                    "step": result.metrics.get("step"),
                    "worker_nodes": sorted(a.node_id for a in workers),
                    "read_nodes": sorted(t.node_id for t in reads),
                    "read_names": sorted({t.name for t in reads}),
                    "cluster_nodes": sorted(nodes),
                }
            )
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
