"""Run the benchmark suite: ``python -m bench [--smoke] [--only NAME ...]``.

Every benchmark prints a table of ratios against a baseline measured in the same run and
(outside smoke mode) merges its rows into ``bench/results/<machine>.json``.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = [
    "mae_step",
    "compile_step",
    "ray_overhead",
    "zero_memory",
    "loader",
    "data_scale",
    "serve",
    "tune_asha",
    "gpu",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny configs, seconds each; no results written")
    ap.add_argument("--only", nargs="*", choices=BENCHMARKS, default=BENCHMARKS)
    args = ap.parse_args()
    for name in args.only:
        importlib.import_module(f"bench.{name}").main(["--smoke"] if args.smoke else [])


if __name__ == "__main__":
    main()
