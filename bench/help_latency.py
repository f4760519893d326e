#!/usr/bin/env python
"""How fast `scripts/run_dpo.py --help` and recipe validation answer, against baselines run here and now.

Prints each median wall time and its ratio to a bare interpreter start, and to the cost of importing
TRL's DPOConfig the usual way (which is what a script without lazy imports would pay).
Target: --help under 2 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_seconds(cmd: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    py = sys.executable
    bare = median_seconds([py, "-c", "pass"])
    eager = median_seconds([py, "-c", "from trl import DPOConfig"], repeats=3)
    help_ = median_seconds([py, "scripts/run_dpo.py", "--help"])
    validate = median_seconds(
        [py, "scripts/global_batch.py", "dpo", "recipes/zephyr-7b-beta/dpo.yaml", "--world-size", "8"]
    )
    print(f"bare python start                 {bare:6.2f} s")
    print(f"eager 'from trl import DPOConfig' {eager:6.2f} s")
    print(
        f"run_dpo.py --help                 {help_:6.2f} s   x{help_ / bare:.1f} bare start, "
        f"{eager / help_:.1f}x faster than an eager import   target < 2 s: {'ok' if help_ < 2 else 'MISSED'}"
    )
    print(
        f"validate zephyr dpo recipe        {validate:6.2f} s   x{validate / bare:.1f} bare start, "
        f"{eager / validate:.1f}x faster than an eager import"
    )


if __name__ == "__main__":
    main()
