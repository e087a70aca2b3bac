"""Parameter size and CPU forward time of every compared method (chapter 9).

Usage: ``python benchmarks/bench_methods.py [--size 128] [--repeats 3] [--threads N]``

Prints, per method of Tables 2-3 (and the classical baseline): our parameters (millions, and
MiB of float32), the paper's Table 3 "Params (MB)" (unit undefined in the paper), and the
median forward time at ``size``² (batch 1, no grad, eval mode, random initialisation, after
one warm-up pass; methods take turns) relative to BGNet's S2 in the same run.  Timings
depend on the machine and its load; they are not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from bench_model import forward_seconds, random_pair

from bgnet_lite.methods.summary import build_offline, parameter_rows, table_methods

REFERENCE = "bgnet-s2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [REFERENCE] + table_methods()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; wall-clock, batch 1, no grad, eval, "
          f"{args.size}², median of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
    models = {name: build_offline(name).eval() for name in names}
    template, sample = random_pair(args.size)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up: allocator and kernel selection
        forward_seconds(models[name], template, sample)
    for _ in range(args.repeats):  # round robin: other load hits every method alike
        for name in names:
            timings[name].append(forward_seconds(models[name], template, sample, time.perf_counter))
    seconds = {name: statistics.median(values) for name, values in timings.items()}
    header = (f"{'method':16s} | {'family':26s} | {'M params':>8s} | {'MiB':>7s} | "
              f"{'paper MB':>8s} | {'ms':>8s} | {'x S2':>5s}")
    print(header)
    print("-" * len(header))
    for row in parameter_rows(names[1:]):
        name = row["method"]
        paper = "—" if row["paper_params_mb"] is None else f"{row['paper_params_mb']:.2f}"
        print(f"{name:16s} | {row['family']:26s} | {row['params_m']:8.2f} | "
              f"{row['params_mb']:7.2f} | {paper:>8s} | "
              f"{seconds[name] * 1e3:8.1f} | {seconds[name] / seconds[REFERENCE]:5.2f}")
    print(f"reference {REFERENCE}: {seconds[REFERENCE] * 1e3:.1f} ms; "
          f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
