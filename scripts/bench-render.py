#!/usr/bin/env python3
"""Median time of `kustomize build` for each overlay, with the flags and key the tests use.

usage: scripts/bench-render.py [--runs N]      (after scripts/bootstrap.sh)
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS / "render"), str(TESTS)]  # render.py and the agekeys it uses
from render import TARGETS, build  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    for name, path in TARGETS.items():
        build(path)  # warm the file cache and Python's bytecode
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            build(path)
            times.append(time.perf_counter() - start)
        print(f"{name:12} median {statistics.median(times):.3f} s  "
              f"min {min(times):.3f} s  max {max(times):.3f} s  ({args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
